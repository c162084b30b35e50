"""Time-series classification baselines (Wang et al. FCN and ResNet) and a 1-D MobileNetV2."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, k: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, k, padding="same")
        self.bn = nn.BatchNorm1d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class FCN(nn.Module):
    """Fully convolutional network of Wang, Yan & Oates, "Time Series Classification from Scratch with Deep
    Neural Networks: A Strong Baseline", IJCNN 2017, arXiv:1611.06455.

    Faithful: three conv blocks (k = 8, 5, 3; 'same' padding, also for the even kernel; BN; ReLU), global
    average pooling by ``x.mean(dim=-1)``, Linear (softmax left to the loss).
    Shrunk: 8/16/8 filters instead of 128/256/128; 3 input channels, 4 classes.
    """

    def __init__(self, c_in: int = 3, classes: int = 4, filters=(8, 16, 8)) -> None:
        super().__init__()
        self.block1 = ConvBlock(c_in, filters[0], 8)
        self.block2 = ConvBlock(filters[0], filters[1], 5)
        self.block3 = ConvBlock(filters[1], filters[2], 3)
        self.fc = nn.Linear(filters[2], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(x)))
        return self.fc(x.mean(dim=-1))


class ResBlockTSC(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv1d(c_in, c_out, 8, padding="same"), nn.BatchNorm1d(c_out), nn.ReLU(),
            nn.Conv1d(c_out, c_out, 5, padding="same"), nn.BatchNorm1d(c_out), nn.ReLU(),
            nn.Conv1d(c_out, c_out, 3, padding="same"), nn.BatchNorm1d(c_out))
        self.shortcut = nn.Sequential(nn.Conv1d(c_in, c_out, 1), nn.BatchNorm1d(c_out)) if c_in != c_out else nn.BatchNorm1d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.convs(x) + self.shortcut(x))


class ResNetTSC(nn.Module):
    """ResNet baseline of Wang, Yan & Oates 2017 (arXiv:1611.06455), as benchmarked by Ismail Fawaz et al.,
    "Deep learning for time series classification: a review", DMKD 2019, arXiv:1809.04356.

    Faithful: three residual blocks of three conv-BN(-ReLU) layers (k = 8, 5, 3, 'same'), shortcut 1x1 conv
    + BN when the width changes (BN alone otherwise), ReLU after the add, global average pooling via
    ``nn.AdaptiveAvgPool1d(1)`` + ``squeeze(-1)``, Linear.
    Shrunk: 8/16/16 filters instead of 64/128/128; 2 input channels, 3 classes.
    """

    def __init__(self, c_in: int = 2, classes: int = 3) -> None:
        super().__init__()
        self.blocks = nn.Sequential(ResBlockTSC(c_in, 8), ResBlockTSC(8, 16), ResBlockTSC(16, 16))
        self.gap = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.gap(self.blocks(x)).squeeze(-1))


class ConvBNReLU(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(nn.Conv1d(c_in, c_out, k, stride, (k - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm1d(c_out), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(inp, hidden, k=1))
        layers += [ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv1d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm1d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNet1d(nn.Module):
    """MobileNetV2 of Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018,
    arXiv:1801.04381, in the 1-D form used for accelerometer / ECG classification.

    Faithful: strided ConvBNReLU6 stem, inverted residual blocks (1x1 expansion + ReLU6, depthwise k=3
    with stride + ReLU6, linear 1x1 projection, residual only when stride 1 and widths match), last 1x1
    ConvBNReLU6, ``F.adaptive_avg_pool1d(x, 1)`` + ``torch.flatten(x, 1)``, Dropout + Linear classifier.
    Shrunk: 3 input axes, settings (t, c, n, s) = (1, 8, 1, 1), (4, 12, 2, 2), (4, 16, 2, 2); last 32.
    """

    def __init__(self, c_in: int = 3, classes: int = 6) -> None:
        super().__init__()
        features: list[nn.Module] = [ConvBNReLU(c_in, 8, stride=2)]
        inp = 8
        for t, c, n, s in [(1, 8, 1, 1), (4, 12, 2, 2), (4, 16, 2, 2)]:
            for i in range(n):
                features.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
                inp = c
        features.append(ConvBNReLU(inp, 32, k=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(32, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = F.adaptive_avg_pool1d(x, 1)
        x = torch.flatten(x, 1)
        return self.classifier(x)
