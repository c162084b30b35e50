"""Sound event tagging / detection on log-mel spectrograms: PANNs CNN6 and a DCASE-style CRNN."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvBlock5x5(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, (5, 5), stride=(1, 1), padding=(2, 2), bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, pool_size=(2, 2), pool_type: str = "avg") -> torch.Tensor:
        x = F.relu_(self.bn1(self.conv1(x)))
        if pool_type == "max":
            return F.max_pool2d(x, kernel_size=pool_size)
        if pool_type == "avg":
            return F.avg_pool2d(x, kernel_size=pool_size)
        raise ValueError(pool_type)


class PANNsCnn6(nn.Module):
    """CNN6 of Kong et al., "PANNs: Large-Scale Pretrained Audio Neural Networks for Audio Pattern
    Recognition", IEEE/ACM TASLP 2020, arXiv:1912.10211 (log-mel input; the STFT/mel front end left out).

    Faithful: BatchNorm over mel bins applied by transposing the mel axis into the channel slot,
    4 ConvBlock5x5 (Conv2d 5x5, BN2d, ``F.relu_``, ``F.avg_pool2d`` 2x2), ``torch.mean`` over frequency,
    ``torch.max`` + ``torch.mean`` over time, dropout, fc1 + ReLU, sigmoid clip-wise output.
    Changed: the input is (batch, mel, time), time last, unsqueezed to (batch, 1, mel, time): PANNs itself
    uses (batch, 1, time, mel), which a stream (time on the last axis) cannot take.
    Shrunk: 16 mel bins, channels 4/8/8/16 (not 64..512), 2x2 pooling in blocks 1-3 and none in block 4
    (the paper pools every block), 10 classes.
    """

    def __init__(self, mel_bins: int = 16, classes: int = 10, chans=(4, 8, 8, 16)) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(mel_bins)
        self.conv_block1 = ConvBlock5x5(1, chans[0])
        self.conv_block2 = ConvBlock5x5(chans[0], chans[1])
        self.conv_block3 = ConvBlock5x5(chans[1], chans[2])
        self.conv_block4 = ConvBlock5x5(chans[2], chans[3])
        self.fc1 = nn.Linear(chans[3], chans[3])
        self.fc_audioset = nn.Linear(chans[3], classes)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        x = input.unsqueeze(1)  # (batch, 1, mel, time)
        x = x.transpose(1, 2)
        x = self.bn0(x)
        x = x.transpose(1, 2)
        x = self.conv_block1(x, pool_size=(2, 2), pool_type="avg")
        x = F.dropout(x, p=0.2, training=self.training)
        x = self.conv_block2(x, pool_size=(2, 2), pool_type="avg")
        x = F.dropout(x, p=0.2, training=self.training)
        x = self.conv_block3(x, pool_size=(2, 2), pool_type="avg")
        x = F.dropout(x, p=0.2, training=self.training)
        x = self.conv_block4(x, pool_size=(1, 1), pool_type="avg")
        x = F.dropout(x, p=0.2, training=self.training)
        x = torch.mean(x, dim=2)  # over mel
        (x1, _) = torch.max(x, dim=2)
        x2 = torch.mean(x, dim=2)
        x = x1 + x2
        x = F.dropout(x, p=0.5, training=self.training)
        x = F.relu_(self.fc1(x))
        return torch.sigmoid(self.fc_audioset(x))


class CRNN(nn.Module):
    """Convolutional recurrent network for sound event detection of Cakir et al., "Convolutional Recurrent
    Neural Networks for Polyphonic Sound Event Detection", IEEE/ACM TASLP 2017, arXiv:1702.06286 (the
    DCASE SED baseline family).

    Faithful: Conv2d 3x3 blocks (BN2d, ReLU, MaxPool2d over frequency only so the frame rate is kept,
    dropout), ``permute`` to (batch, time, channels, mel) and ``reshape`` to (batch, time, features), a
    unidirectional batch-first GRU, a frame-wise Linear + sigmoid: per-frame event activities (batch, time,
    classes).
    Changed: input (batch, mel, time), time last (the papers use (time, mel)). Shrunk: 16 mel bins,
    8 channels, 3 blocks pooling frequency by 2, GRU of 16, 6 classes.
    """

    def __init__(self, mel_bins: int = 16, ch: int = 8, hidden: int = 16, classes: int = 6) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 1
        for _ in range(3):
            layers += [nn.Conv2d(c, ch, 3, padding=1), nn.BatchNorm2d(ch), nn.ReLU(), nn.MaxPool2d((2, 1)),
                       nn.Dropout(0.25)]
            c = ch
        self.cnn = nn.Sequential(*layers)
        self.gru = nn.GRU(ch * (mel_bins // 8), hidden, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cnn(x.unsqueeze(1))  # (batch, ch, mel', time)
        x = x.permute(0, 3, 1, 2)
        x = x.reshape(x.size(0), x.size(1), -1)
        x, _ = self.gru(x)
        return torch.sigmoid(self.fc(x))
