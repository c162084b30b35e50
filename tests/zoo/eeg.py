"""EEG / sleep: EEGNet (2-D convs, time on the last axis) and the DeepSleepNet feature extractor."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class EEGNet(nn.Module):
    """EEGNet-8,2 of Lawhern et al., "EEGNet: a compact convolutional neural network for EEG-based
    brain-computer interfaces", J. Neural Eng. 2018, arXiv:1611.08024, doi:10.1088/1741-2552/aace8c.

    Faithful: input (batch, 1, electrodes, time) with time on the last axis; temporal Conv2d (1, k) with
    'same' padding, BN2d; depthwise spatial Conv2d (C, 1) with groups=F1 and depth multiplier D, BN2d,
    ELU, AvgPool2d((1, 4)), Dropout; separable conv = depthwise (1, 16) + pointwise 1x1, BN2d, ELU,
    AvgPool2d((1, 8)), Dropout; ``x.view(x.size(0), -1)`` + Linear.
    Shrunk: 4 electrodes, F1=4, D=2, F2=8, temporal kernel 16 (half the sampling rate of 32 Hz), 128-sample
    windows, 3 classes.
    """

    def __init__(self, chans: int = 4, samples: int = 128, classes: int = 3, F1: int = 4, D: int = 2, F2: int = 8,
                 kern: int = 16, dropout: float = 0.5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, F1, (1, kern), padding="same", bias=False)
        self.bn1 = nn.BatchNorm2d(F1)
        self.depthwise = nn.Conv2d(F1, F1 * D, (chans, 1), groups=F1, bias=False)
        self.bn2 = nn.BatchNorm2d(F1 * D)
        self.pool1 = nn.AvgPool2d((1, 4))
        self.drop1 = nn.Dropout(dropout)
        self.separable_dw = nn.Conv2d(F1 * D, F1 * D, (1, 16), padding="same", groups=F1 * D, bias=False)
        self.separable_pw = nn.Conv2d(F1 * D, F2, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(F2)
        self.pool2 = nn.AvgPool2d((1, 8))
        self.drop2 = nn.Dropout(dropout)
        self.fc = nn.Linear(F2 * (samples // 32), classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dim() == 4, "EEGNet expects (batch, 1, electrodes, time)"
        x = self.bn1(self.conv1(x))
        x = self.drop1(self.pool1(F.elu(self.bn2(self.depthwise(x)))))
        x = self.separable_pw(self.separable_dw(x))
        x = self.drop2(self.pool2(F.elu(self.bn3(x))))
        x = x.view(x.size(0), -1)
        return self.fc(x)


class DeepSleepNetCNN(nn.Module):
    """Representation-learning part of DeepSleepNet, Supratak, Dong, Wu & Guo, "DeepSleepNet: a Model for
    Automatic Sleep Stage Scoring based on Raw Single-Channel EEG", IEEE TNSRE 2017, arXiv:1703.04046.

    Faithful: two CNN branches on the raw 30-s epoch; small filters (first conv k = fs/2, stride fs/16,
    max pool 8/8, three convs k=8, max pool 4/4) for temporal detail and large filters (first conv k = 4 fs,
    stride fs/2, max pool 4/4, three convs k=6, max pool 2/2) for frequency content; BN + ReLU after
    every conv, dropout after the first pools; each branch flattened with ``x.view(x.size(0), -1)``,
    concatenated; a softmax layer as in the pre-training stage.
    Shrunk: fs = 32 Hz (epoch 960 samples), 8 filters instead of 64/128, 5 stages.
    """

    def __init__(self, fs: int = 32, ch: int = 8, classes: int = 5, epoch_s: int = 30) -> None:
        super().__init__()

        def cbr(c_in, c_out, k, s=1, p=0):
            return [nn.Conv1d(c_in, c_out, k, stride=s, padding=p, bias=False), nn.BatchNorm1d(c_out), nn.ReLU()]

        self.small = nn.Sequential(
            *cbr(1, ch, fs // 2, fs // 16, (fs // 2 - fs // 16) // 2), nn.MaxPool1d(8, 8), nn.Dropout(0.5),
            *cbr(ch, ch, 8, p="same"), *cbr(ch, ch, 8, p="same"), *cbr(ch, ch, 8, p="same"), nn.MaxPool1d(4, 4))
        self.large = nn.Sequential(
            *cbr(1, ch, fs * 4, fs // 2, (fs * 4 - fs // 2) // 2), nn.MaxPool1d(4, 4), nn.Dropout(0.5),
            *cbr(ch, ch, 6, p="same"), *cbr(ch, ch, 6, p="same"), *cbr(ch, ch, 6, p="same"), nn.MaxPool1d(2, 2))
        with torch.no_grad():
            n = self._features(torch.zeros(1, 1, fs * epoch_s)).shape[1]
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(n, classes)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.small(x)
        x2 = self.large(x)
        x1 = x1.view(x1.size(0), -1)
        x2 = x2.view(x2.size(0), -1)
        return torch.cat((x1, x2), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self._features(x)))
