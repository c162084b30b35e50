"""ECG / physiological-signal classifiers: Hannun et al., Ribeiro et al., xresnet1d, InceptionTime
(inception1d) and Hong's Net1D."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------------------------------- Hannun 2019
class HannunBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, k: int, subsample: int, first: bool, dropout: float = 0.2) -> None:
        super().__init__()
        self.first, self.zero_pad = first, c_out != c_in
        self.pool = nn.MaxPool1d(subsample)
        self.bn1 = nn.BatchNorm1d(c_in)
        self.conv1 = nn.Conv1d(c_in, c_out, k, stride=subsample, padding=(k - subsample) // 2 if subsample > 1 else "same")
        self.bn2 = nn.BatchNorm1d(c_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(c_out, c_out, k, padding="same")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.pool(x)
        if self.zero_pad:  # Keras' zeropad: concatenate zero channels
            shortcut = torch.cat([shortcut, torch.zeros_like(shortcut)], dim=1)
        h = x if self.first else F.relu(self.bn1(x))
        h = self.conv1(h)
        h = self.conv2(self.drop(F.relu(self.bn2(h))))
        return h + shortcut


class HannunECG(nn.Module):
    """Arrhythmia network of Hannun et al., "Cardiologist-level arrhythmia detection and classification in
    ambulatory electrocardiograms using a deep neural network", Nature Medicine 2019,
    doi:10.1038/s41591-018-0268-3 (stanfordmlgroup/ecg, Keras).

    Faithful: conv (k=16) + BN + ReLU, pre-activation residual blocks (BN-ReLU-conv-BN-ReLU-Dropout-conv)
    subsampling by 2 every other block (strided conv on the main path, max pool on the shortcut), filters
    doubling every 4th block with the shortcut's new channels zero-filled by concatenating
    ``zeros_like``, Keras 'same' padding, a per-frame (time-distributed) Dense via ``transpose`` + softmax:
    one label per 2**n samples, a sequence output.
    Shrunk: 4 blocks instead of 16, 8 -> 16 filters, 4 classes.
    """

    def __init__(self, c_in: int = 1, k: int = 16, classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, 8, k, padding="same")
        self.bn = nn.BatchNorm1d(8)
        specs = [(8, 8, 1, True), (8, 8, 2, False), (8, 16, 1, False), (16, 16, 2, False)]
        self.blocks = nn.ModuleList([HannunBlock(a, b, k, s, f) for a, b, s, f in specs])
        self.bn_out = nn.BatchNorm1d(16)
        self.dense = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)))
        for blk in self.blocks:
            x = blk(x)
        x = F.relu(self.bn_out(x))
        return torch.softmax(self.dense(x.transpose(1, 2)), dim=-1)


# ---------------------------------------------------------------------------------------- Ribeiro 2020
def _padding(downsample: int, kernel_size: int) -> int:
    return max(0, int(np.floor((kernel_size - downsample + 1) / 2)))


def _downsample(n_samples_in: int, n_samples_out: int) -> int:
    downsample = int(n_samples_in // n_samples_out)
    if downsample < 1:
        raise ValueError("Number of samples should always decrease")
    if n_samples_in % n_samples_out != 0:
        raise ValueError("Number of samples for two consecutive blocks should always decrease by an integer factor.")
    return downsample


class ResBlock1d(nn.Module):
    def __init__(self, n_filters_in: int, n_filters_out: int, downsample: int, kernel_size: int, dropout_rate: float) -> None:
        super().__init__()
        padding = _padding(1, kernel_size)
        self.conv1 = nn.Conv1d(n_filters_in, n_filters_out, kernel_size, padding=padding, bias=False)
        self.bn1 = nn.BatchNorm1d(n_filters_out)
        self.relu = nn.ReLU()
        self.dropout1 = nn.Dropout(dropout_rate)
        padding = _padding(downsample, kernel_size)
        self.conv2 = nn.Conv1d(n_filters_out, n_filters_out, kernel_size, stride=downsample, padding=padding, bias=False)
        self.bn2 = nn.BatchNorm1d(n_filters_out)
        self.dropout2 = nn.Dropout(dropout_rate)
        skip = []
        if downsample > 1:
            skip += [nn.MaxPool1d(downsample, stride=downsample)]
        if n_filters_in != n_filters_out:
            skip += [nn.Conv1d(n_filters_in, n_filters_out, 1, bias=False)]
        self.skip_connection = nn.Sequential(*skip) if skip else None

    def forward(self, x: torch.Tensor, y: torch.Tensor):
        if self.skip_connection is not None:
            y = self.skip_connection(y)
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.dropout1(x)
        x = self.conv2(x)
        x += y
        y = x
        x = self.bn2(x)
        x = self.relu(x)
        x = self.dropout2(x)
        return x, y


class RibeiroResNet1d(nn.Module):
    """Automatic 12-lead ECG diagnosis network of Ribeiro et al., "Automatic diagnosis of the 12-lead ECG
    using a deep neural network", Nature Communications 2020, doi:10.1038/s41467-020-15432-4.

    Faithful: the block API ``forward(x, y) -> (x, y)`` carrying the un-normalised residual stream,
    conv k=17 with padding from ``_padding(downsample, k)``, skip = MaxPool1d(downsample) + 1x1 conv,
    ``x += y`` in place, post-add BN-ReLU-Dropout, ``x.view(x.size(0), -1)`` + Linear head; the block
    sizes are derived from (filters, samples) pairs as in the paper's code.
    Shrunk: 12 leads x 256 samples (not 4096), filters 8/12/16, 2 blocks downsampling 4 each.
    """

    def __init__(self, input_dim=(12, 256), blocks_dim=((8, 64), (12, 16), (16, 4)), n_classes: int = 6,
                 kernel_size: int = 17, dropout_rate: float = 0.8) -> None:
        super().__init__()
        n_filters_in, n_filters_out = input_dim[0], blocks_dim[0][0]
        n_samples_in, n_samples_out = input_dim[1], blocks_dim[0][1]
        downsample = _downsample(n_samples_in, n_samples_out)
        padding = _padding(downsample, kernel_size)
        self.conv1 = nn.Conv1d(n_filters_in, n_filters_out, kernel_size, bias=False, stride=downsample, padding=padding)
        self.bn1 = nn.BatchNorm1d(n_filters_out)
        self.res_blocks = nn.ModuleList()
        for n_filters, n_samples in blocks_dim[1:]:
            n_filters_in, n_filters_out = n_filters_out, n_filters
            n_samples_in, n_samples_out = n_samples_out, n_samples
            downsample = _downsample(n_samples_in, n_samples_out)
            self.res_blocks.append(ResBlock1d(n_filters_in, n_filters_out, downsample, kernel_size, dropout_rate))
        self.lin = nn.Linear(blocks_dim[-1][0] * blocks_dim[-1][1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.bn1(x)
        y = x
        for blk in self.res_blocks:
            x, y = blk(x, y)
        x = x.view(x.size(0), -1)
        return self.lin(x)


# ---------------------------------------------------------------------------------------- xresnet1d
class ConvLayer(nn.Sequential):
    def __init__(self, ni: int, nf: int, ks: int = 5, stride: int = 1, act: bool = True, zero_bn: bool = False) -> None:
        layers: list[nn.Module] = [nn.Conv1d(ni, nf, ks, stride=stride, padding=ks // 2, bias=False), nn.BatchNorm1d(nf)]
        if zero_bn:
            nn.init.zeros_(layers[1].weight)
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class XResBlock(nn.Module):
    def __init__(self, ni: int, nf: int, stride: int = 1, ks: int = 5) -> None:
        super().__init__()
        self.convpath = nn.Sequential(ConvLayer(ni, nf, ks, stride=stride), ConvLayer(nf, nf, ks, act=False, zero_bn=True))
        idpath: list[nn.Module] = []
        if ni != nf:
            idpath.append(ConvLayer(ni, nf, 1, act=False))
        if stride != 1:
            idpath.insert(0, nn.AvgPool1d(stride, ceil_mode=True))
        self.idpath = nn.Sequential(*idpath)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convpath(x) + self.idpath(x))


class AdaptiveConcatPool1d(nn.Module):
    def __init__(self, size: int = 1) -> None:
        super().__init__()
        self.ap, self.mp = nn.AdaptiveAvgPool1d(size), nn.AdaptiveMaxPool1d(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.mp(x), self.ap(x)], 1)


class XResNet1d(nn.Module):
    """xresnet1d of Strodthoff, Wagner, Schaeffter & Samek, "Deep Learning for ECG Analysis: Benchmarks and
    Insights from PTB-XL", IEEE JBHI 2021, arXiv:2004.13701 (1-D port of fastai's XResNet, He et al.,
    "Bag of Tricks", arXiv:1812.01187).

    Faithful: 3-conv stem (k=5, first strided), MaxPool1d(3, 2, padding=1), basic residual blocks whose
    identity path is ``AvgPool1d(stride, ceil_mode=True)`` + 1x1 ConvLayer, zero-initialised last BN
    (randomised here like every BN), ReLU(inplace=True); head AdaptiveConcatPool1d (max + avg) -> Flatten
    -> BN -> Dropout -> Linear.
    Shrunk: 12 leads, stem 8/8/16, 2 stages of 1 block (16, 32 channels), 5 classes.
    """

    def __init__(self, c_in: int = 12, classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(ConvLayer(c_in, 8, stride=2), ConvLayer(8, 8), ConvLayer(8, 16),
                                  nn.MaxPool1d(kernel_size=3, stride=2, padding=1))
        self.blocks = nn.Sequential(XResBlock(16, 16), XResBlock(16, 32, stride=2))
        self.head = nn.Sequential(AdaptiveConcatPool1d(), nn.Flatten(), nn.BatchNorm1d(64), nn.Dropout(0.5),
                                  nn.Linear(64, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


# ---------------------------------------------------------------------------------------- InceptionTime
class InceptionBlock1d(nn.Module):
    def __init__(self, ni: int, nb_filters: int, kss=(39, 19, 9), bottleneck_size: int = 32) -> None:
        super().__init__()
        self.bottleneck = nn.Conv1d(ni, bottleneck_size, 1, bias=False) if ni > 1 and bottleneck_size > 0 else None
        c = bottleneck_size if self.bottleneck is not None else ni
        self.convs = nn.ModuleList([nn.Conv1d(c, nb_filters, ks, padding=(ks - 1) // 2, bias=False) for ks in kss])
        self.conv_bottle = nn.Sequential(nn.MaxPool1d(3, stride=1, padding=1), nn.Conv1d(ni, nb_filters, 1, bias=False))
        self.bn_relu = nn.Sequential(nn.BatchNorm1d((len(kss) + 1) * nb_filters), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bottled = self.bottleneck(x) if self.bottleneck is not None else x
        out = self.bn_relu(torch.cat([c(bottled) for c in self.convs] + [self.conv_bottle(x)], dim=1))
        return out


class Shortcut1d(nn.Module):
    def __init__(self, ni: int, nf: int) -> None:
        super().__init__()
        self.act_fn = nn.ReLU(True)
        self.conv = nn.Conv1d(ni, nf, 1, bias=False)
        self.bn = nn.BatchNorm1d(nf)

    def forward(self, inp: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return self.act_fn(out + self.bn(self.conv(inp)))


class Inception1d(nn.Module):
    """InceptionTime of Ismail Fawaz et al., "InceptionTime: Finding AlexNet for Time Series
    Classification", Data Mining and Knowledge Discovery 2020, arXiv:1909.04939 (as the PTB-XL benchmark's
    inception1d writes it).

    Faithful: inception modules (1x1 bottleneck, three convs k=39/19/9 with (k-1)/2 padding, MaxPool1d(3, 1,
    1) + 1x1 branch, cat, BN, ReLU), a residual shortcut (1x1 conv + BN, add, ReLU) every 3 modules, global
    average pooling head.
    Shrunk: depth 3 (one residual group), 4 filters per branch, bottleneck 8, 3 channels in, 5 classes.
    """

    def __init__(self, c_in: int = 3, nb_filters: int = 4, depth: int = 3, bottleneck: int = 8, classes: int = 5) -> None:
        super().__init__()
        nf = 4 * nb_filters
        self.im = nn.ModuleList([InceptionBlock1d(c_in if d == 0 else nf, nb_filters, bottleneck_size=bottleneck)
                                 for d in range(depth)])
        self.sk = nn.ModuleList([Shortcut1d(c_in if d == 0 else nf, nf) for d in range(depth // 3)])
        self.gap = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(nf, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        input_res = x
        for d, m in enumerate(self.im):
            x = m(x)
            if d % 3 == 2:
                x = self.sk[d // 3](input_res, x)
                input_res = x
        return self.fc(torch.flatten(self.gap(x), 1))


# ---------------------------------------------------------------------------------------- Net1D
class MyConv1dPadSame(nn.Module):
    """Conv1d with TensorFlow 'SAME' padding worked out from the input length in forward."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int = 1) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = x
        in_dim = net.shape[-1]
        out_dim = (in_dim + self.stride - 1) // self.stride
        p = max(0, (out_dim - 1) * self.stride + self.kernel_size - in_dim)
        pad_left = p // 2
        pad_right = p - pad_left
        net = F.pad(net, (pad_left, pad_right), "constant", 0)
        return self.conv(net)


class MyMaxPool1dPadSame(nn.Module):
    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.max_pool = nn.MaxPool1d(kernel_size=kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = max(0, self.kernel_size - 1)
        return self.max_pool(F.pad(x, (p // 2, p - p // 2), "constant", 0))


class Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class Net1DBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, ratio: float, kernel_size: int, stride: int, groups: int,
                 downsample: bool, is_first_block: bool) -> None:
        super().__init__()
        self.c_in, self.c_out = c_in, c_out
        self.downsample, self.is_first_block, self.stride = downsample, is_first_block, stride if downsample else 1
        mid = int(c_out * ratio)
        self.bn1 = nn.BatchNorm1d(c_in)
        self.act1 = Swish()
        self.do1 = nn.Dropout(0.5)
        self.conv1 = MyConv1dPadSame(c_in, mid, 1, 1)
        self.bn2 = nn.BatchNorm1d(mid)
        self.act2 = Swish()
        self.conv2 = MyConv1dPadSame(mid, mid, kernel_size, self.stride, groups)
        self.bn3 = nn.BatchNorm1d(mid)
        self.act3 = Swish()
        self.conv3 = MyConv1dPadSame(mid, c_out, 1, 1)
        self.se_fc1 = nn.Linear(c_out, c_out // 2)
        self.se_fc2 = nn.Linear(c_out // 2, c_out)
        self.max_pool = MyMaxPool1dPadSame(kernel_size=self.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = x
        if not self.is_first_block:
            out = self.do1(self.act1(self.bn1(out)))
        out = self.conv1(out)
        out = self.conv2(self.act2(self.bn2(out)))
        out = self.conv3(self.act3(self.bn3(out)))
        se = out.mean(-1)
        se = torch.sigmoid(self.se_fc2(Swish()(self.se_fc1(se))))
        out = torch.einsum("abc,ab->abc", out, se)
        if self.downsample:
            identity = self.max_pool(identity)
        if self.c_out != self.c_in:
            identity = identity.transpose(-1, -2)
            ch1 = (self.c_out - self.c_in) // 2
            ch2 = self.c_out - self.c_in - ch1
            identity = F.pad(identity, (ch1, ch2), "constant", 0)
            identity = identity.transpose(-1, -2)
        return out + identity


class Net1D(nn.Module):
    """Net1D of Hong et al., "HOLMES: Health OnLine Model Ensemble Serving for Deep Learning Models in
    Intensive Care Units", KDD 2020, arXiv:2008.04063 (hsd1503/resnet1d).

    Faithful: TF-'SAME' convs and max pools whose padding is computed in forward from ``x.shape[-1]``
    (with Python ``max``), Swish, bottleneck blocks (1x1, grouped k conv with stride, 1x1) with
    squeeze-excitation by ``out.mean(-1)`` and ``torch.einsum``, max-pooled identity, channel growth by
    zero-padding the transposed identity, ``mean(-1)`` + Linear head.
    Shrunk: 1 input channel, 2 stages of 1 block (8 -> 16 channels), kernel 9, 4 classes.
    """

    def __init__(self, c_in: int = 1, base: int = 8, kernel_size: int = 9, classes: int = 4) -> None:
        super().__init__()
        self.first_conv = MyConv1dPadSame(c_in, base, kernel_size, 2)
        self.first_bn = nn.BatchNorm1d(base)
        self.first_act = Swish()
        self.stages = nn.Sequential(Net1DBlock(base, base, 0.5, kernel_size, 2, 2, True, True),
                                    Net1DBlock(base, 2 * base, 0.5, kernel_size, 2, 2, True, False))
        self.dense = nn.Linear(2 * base, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.first_act(self.first_bn(self.first_conv(x)))
        out = self.stages(out)
        return self.dense(out.mean(-1))
