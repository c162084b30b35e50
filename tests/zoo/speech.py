"""Speech: ASR encoders (QuartzNet, Wav2Letter, wav2vec 2.0 feature encoder), keyword spotting
(TC-ResNet) and speaker embeddings (x-vector TDNN, ECAPA-TDNN, a SincNet-style front end)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------------------------------- QuartzNet
class SeparableConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        pad = (k // 2) * dilation
        self.depthwise = nn.Conv1d(c_in, c_in, k, stride=stride, dilation=dilation, padding=pad, groups=c_in, bias=False)
        self.pointwise = nn.Conv1d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class JasperBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, k: int, repeat: int, residual: bool = True, stride: int = 1,
                 dilation: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = c_in
        for r in range(repeat):
            layers += [SeparableConv(ch, c_out, k, stride, dilation), nn.BatchNorm1d(c_out, eps=1e-3)]
            if r < repeat - 1:
                layers += [nn.ReLU(), nn.Dropout(dropout)]
            ch = c_out
        self.mconv = nn.Sequential(*layers)
        self.res = nn.Sequential(nn.Conv1d(c_in, c_out, 1, bias=False), nn.BatchNorm1d(c_out, eps=1e-3)) if residual else None
        self.mout = nn.Sequential(nn.ReLU(), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.mconv(x)
        if self.res is not None:
            out = out + self.res(x)
        return self.mout(out)


class QuartzNet(nn.Module):
    """QuartzNet of Kriman et al., "QuartzNet: Deep Automatic Speech Recognition with 1D Time-Channel
    Separable Convolutions", ICASSP 2020, arXiv:1910.10261 (NeMo's encoder + CTC decoder).

    Faithful: ``forward(audio_signal, length=None)`` with the optional lengths the NeMo encoder takes and
    returns; C1 separable conv stride 2; B blocks of R separable convs (depthwise + pointwise, BN, ReLU,
    dropout) with a 1x1 conv + BN residual added before the last ReLU; C2 dilated (2) separable conv, C3
    1x1; CTC decoder 1x1 conv then ``transpose(1, 2)`` and ``log_softmax(dim=-1)``.
    Shrunk: 16 mel bins, channels 16/24, 2 blocks of R=2, kernels 11/13/15/17, 10 output symbols.
    """

    def __init__(self, n_mels: int = 16, vocab: int = 10) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            JasperBlock(n_mels, 16, 11, 1, residual=False, stride=2),
            JasperBlock(16, 16, 13, 2),
            JasperBlock(16, 24, 15, 2),
            JasperBlock(24, 24, 17, 1, residual=False, dilation=2),
            nn.Sequential(nn.Conv1d(24, 32, 1, bias=False), nn.BatchNorm1d(32, eps=1e-3), nn.ReLU()),
        )
        self.decoder = nn.Conv1d(32, vocab + 1, 1)

    def forward(self, audio_signal: torch.Tensor, length: torch.Tensor | None = None):
        enc = self.encoder(audio_signal)
        logp = F.log_softmax(self.decoder(enc).transpose(1, 2), dim=-1)
        if length is None:
            return logp
        return logp, (length + 1) // 2


# ---------------------------------------------------------------------------------------- Wav2Letter
class Wav2Letter(nn.Module):
    """Wav2Letter of Collobert, Puhrsch & Synnaeve, "Wav2Letter: an End-to-End ConvNet-based Speech
    Recognition System", 2016, arXiv:1609.03193 (the MFCC front end variant).

    Faithful: a strided (2) wide conv (k=48), 7 convs k=7, a wide conv k=32, two 1x1 convs, ReLU, all
    with symmetric padding, ``F.log_softmax(x, dim=1)`` over letters per frame.
    Shrunk: 13 MFCC, channels 16 / 32, 3 instead of 7 middle convs, 12 letters.
    """

    def __init__(self, n_feat: int = 13, classes: int = 12) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv1d(n_feat, 16, 48, stride=2, padding=23), nn.ReLU()]
        for _ in range(3):
            layers += [nn.Conv1d(16, 16, 7, padding=3), nn.ReLU()]
        layers += [nn.Conv1d(16, 32, 32, padding=16), nn.ReLU(), nn.Conv1d(32, 32, 1), nn.ReLU(),
                   nn.Conv1d(32, classes, 1)]
        self.acoustic_model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.acoustic_model(x), dim=1)


# ---------------------------------------------------------------------------------------- wav2vec 2.0
class Fp32GroupNorm(nn.GroupNorm):
    def forward(self, input: torch.Tensor) -> torch.Tensor:
        output = F.group_norm(input.float(), self.num_groups,
                              self.weight.float() if self.weight is not None else None,
                              self.bias.float() if self.bias is not None else None, self.eps)
        return output.type_as(input)


class Fp32LayerNorm(nn.LayerNorm):
    def forward(self, input: torch.Tensor) -> torch.Tensor:
        output = F.layer_norm(input.float(), self.normalized_shape,
                              self.weight.float() if self.weight is not None else None,
                              self.bias.float() if self.bias is not None else None, self.eps)
        return output.type_as(input)


class TransposeLast(nn.Module):
    def __init__(self, deconstruct_idx=None) -> None:
        super().__init__()
        self.deconstruct_idx = deconstruct_idx

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deconstruct_idx is not None:
            x = x[self.deconstruct_idx]
        return x.transpose(-2, -1)


class Wav2Vec2FeatureExtractor(nn.Module):
    """wav2vec 2.0 convolutional feature encoder of Baevski, Zhou, Mohamed & Auli, "wav2vec 2.0: A
    Framework for Self-Supervised Learning of Speech Representations", NeurIPS 2020, arXiv:2006.11477.

    Faithful: raw waveform input (batch, time) unsqueezed to one channel, 7 bias-free convs (10,5),
    (3,2) x 4, (2,2) x 2 (stride 320), GELU; mode "default": fp32 GroupNorm with one group per channel
    after the first conv only (the BASE model); mode "layer_norm": every conv followed by
    TransposeLast -> fp32 LayerNorm over channels (``F.layer_norm``) -> TransposeLast (the LARGE/LV-60 models).
    Shrunk: 16 channels instead of 512.
    """

    def __init__(self, mode: str = "default", dim: int = 16,
                 conv_layers=((16, 10, 5),) + ((16, 3, 2),) * 4 + ((16, 2, 2),) * 2) -> None:
        super().__init__()
        assert mode in ("default", "layer_norm")

        def block(n_in, n_out, k, stride, is_layer_norm=False, is_group_norm=False):
            conv = nn.Conv1d(n_in, n_out, k, stride=stride, bias=False)
            if is_layer_norm:
                return nn.Sequential(conv, nn.Dropout(0.0),
                                     nn.Sequential(TransposeLast(), Fp32LayerNorm(n_out, elementwise_affine=True),
                                                   TransposeLast()),
                                     nn.GELU())
            if is_group_norm:
                return nn.Sequential(conv, nn.Dropout(0.0), Fp32GroupNorm(n_out, n_out, affine=True), nn.GELU())
            return nn.Sequential(conv, nn.Dropout(0.0), nn.GELU())

        in_d = 1
        self.conv_layers = nn.ModuleList()
        for i, (d, k, s) in enumerate(conv_layers):
            self.conv_layers.append(block(in_d, d, k, s, is_layer_norm=mode == "layer_norm",
                                          is_group_norm=mode == "default" and i == 0))
            in_d = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1)  # BxT -> BxCxT
        for conv in self.conv_layers:
            x = conv(x)
        return x


# ---------------------------------------------------------------------------------------- TC-ResNet
class TCResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(c_in, c_out, 9, stride=stride, padding=4, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, 9, padding=4, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm1d(c_out), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + identity)


class TCResNet8(nn.Module):
    """TC-ResNet8 of Choi et al., "Temporal Convolution for Real-time Keyword Spotting on Mobile Devices",
    Interspeech 2019, arXiv:1904.03814.

    Faithful: MFCCs as channels (temporal convolution), first conv k=3 without bias, 3 residual blocks
    of two k=9 convs (first strided 2) with BN/ReLU and a 1x1 conv + BN + ReLU shortcut, average pooling
    whose kernel is the whole remaining length (``F.avg_pool1d(x, x.size(-1))``), FC, softmax.
    Shrunk: width multiplier 0.5 (channels 8/12/16/24), 12 keywords.
    """

    def __init__(self, n_mfcc: int = 40, classes: int = 12, width=(8, 12, 16, 24)) -> None:
        super().__init__()
        self.conv = nn.Conv1d(n_mfcc, width[0], 3, padding=1, bias=False)
        self.blocks = nn.Sequential(*[TCResBlock(width[i], width[i + 1], 2) for i in range(3)])
        self.fc = nn.Linear(width[-1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.conv(x))
        x = F.avg_pool1d(x, x.size(-1))
        x = x.view(x.size(0), -1)
        return F.softmax(self.fc(x), dim=-1)


# ---------------------------------------------------------------------------------------- x-vector
class XVector(nn.Module):
    """x-vector TDNN of Snyder et al., "X-Vectors: Robust DNN Embeddings for Speaker Recognition",
    ICASSP 2018, doi:10.1109/ICASSP.2018.8461375.

    Faithful: frame layers as unpadded Conv1d with contexts [t-2, t+2], {t-2, t, t+2}, {t-3, t, t+3}, {t},
    {t} (kernel 5; kernel 3 dilation 2; kernel 3 dilation 3; 1x1; 1x1), each ReLU + BatchNorm; statistics
    pooling (mean and standard deviation over time, concatenated), segment layers Linear-ReLU-BN; the
    embedding is segment6's affine output.
    Shrunk: 24 filterbanks, 32 frame channels, 64 pooled, 16-d embedding.
    """

    def __init__(self, n_feat: int = 24, ch: int = 32, pooled: int = 64, emb: int = 16) -> None:
        super().__init__()

        def tdnn(c_in, c_out, k, d):
            return nn.Sequential(nn.Conv1d(c_in, c_out, k, dilation=d), nn.ReLU(), nn.BatchNorm1d(c_out))

        self.frame = nn.Sequential(tdnn(n_feat, ch, 5, 1), tdnn(ch, ch, 3, 2), tdnn(ch, ch, 3, 3),
                                   tdnn(ch, ch, 1, 1), tdnn(ch, pooled, 1, 1))
        self.segment6 = nn.Linear(2 * pooled, emb)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.frame(x)
        mean = x.mean(dim=2)
        std = x.std(dim=2)
        stats = torch.cat((mean, std), 1)
        return self.segment6(stats)


# ---------------------------------------------------------------------------------------- ECAPA-TDNN
class SEModule(nn.Module):
    def __init__(self, channels: int, bottleneck: int = 8) -> None:
        super().__init__()
        self.se = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Conv1d(channels, bottleneck, 1), nn.ReLU(),
                                nn.Conv1d(bottleneck, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.se(x)


class Bottle2neck(nn.Module):
    def __init__(self, inplanes: int, planes: int, kernel_size: int, dilation: int, scale: int = 4) -> None:
        super().__init__()
        width = planes // scale
        self.conv1 = nn.Conv1d(inplanes, width * scale, 1)
        self.bn1 = nn.BatchNorm1d(width * scale)
        self.nums = scale - 1
        pad = (kernel_size // 2) * dilation
        self.convs = nn.ModuleList([nn.Conv1d(width, width, kernel_size, dilation=dilation, padding=pad)
                                    for _ in range(self.nums)])
        self.bns = nn.ModuleList([nn.BatchNorm1d(width) for _ in range(self.nums)])
        self.conv3 = nn.Conv1d(width * scale, planes, 1)
        self.bn3 = nn.BatchNorm1d(planes)
        self.relu = nn.ReLU()
        self.width = width
        self.se = SEModule(planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        out = self.bn1(self.relu(self.conv1(x)))
        spx = torch.split(out, self.width, 1)
        for i in range(self.nums):
            sp = spx[i] if i == 0 else sp + spx[i]
            sp = self.bns[i](self.relu(self.convs[i](sp)))
            out = sp if i == 0 else torch.cat((out, sp), 1)
        out = torch.cat((out, spx[self.nums]), 1)
        out = self.bn3(self.relu(self.conv3(out)))
        out = self.se(out)
        return out + residual


class ECAPATDNN(nn.Module):
    """ECAPA-TDNN of Desplanques, Thienpondt & Demuynck, "ECAPA-TDNN: Emphasized Channel Attention,
    Propagation and Aggregation in TDNN Based Speaker Verification", Interspeech 2020, arXiv:2005.07143.

    Faithful: conv k=5 + ReLU + BN; three SE-Res2Net blocks (1x1, Res2Net split with ``torch.split``
    along channels and hierarchical k=3 dilated convs, 1x1, squeeze-excitation by global average pooling,
    residual) with dilations 2, 3, 4 and summed inputs (x1, x1+x2); multi-layer feature aggregation
    (cat of block outputs, 1x1 conv, ReLU); attentive statistics pooling with global context (mean and std
    over time repeated along time and concatenated, attention conv + tanh + conv, softmax over time,
    weighted mean and std); BN, Linear, BN.
    Shrunk: 24 filterbanks, C=16, scale 4, attention bottleneck 8, 12-d embedding.
    """

    def __init__(self, n_feat: int = 24, C: int = 16, emb: int = 12) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(n_feat, C, 5, padding=2)
        self.relu = nn.ReLU()
        self.bn1 = nn.BatchNorm1d(C)
        self.layer1 = Bottle2neck(C, C, 3, 2)
        self.layer2 = Bottle2neck(C, C, 3, 3)
        self.layer3 = Bottle2neck(C, C, 3, 4)
        self.layer4 = nn.Conv1d(3 * C, 24, 1)
        self.attention = nn.Sequential(nn.Conv1d(24 * 3, 8, 1), nn.ReLU(), nn.BatchNorm1d(8), nn.Tanh(),
                                       nn.Conv1d(8, 24, 1), nn.Softmax(dim=2))
        self.bn5 = nn.BatchNorm1d(48)
        self.fc6 = nn.Linear(48, emb)
        self.bn6 = nn.BatchNorm1d(emb)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.relu(self.conv1(x)))
        x1 = self.layer1(x)
        x2 = self.layer2(x + x1)
        x3 = self.layer3(x + x1 + x2)
        x = self.relu(self.layer4(torch.cat((x1, x2, x3), dim=1)))
        t = x.size()[-1]
        global_x = torch.cat((x, torch.mean(x, dim=2, keepdim=True).repeat(1, 1, t),
                              torch.sqrt(torch.var(x, dim=2, keepdim=True).clamp(min=1e-4)).repeat(1, 1, t)), dim=1)
        w = self.attention(global_x)
        mu = torch.sum(x * w, dim=2)
        sg = torch.sqrt((torch.sum((x ** 2) * w, dim=2) - mu ** 2).clamp(min=1e-4))
        x = torch.cat((mu, sg), 1)
        return self.bn6(self.fc6(self.bn5(x)))


# ---------------------------------------------------------------------------------------- SincNet-like
class SincNetLayerNorm(nn.Module):
    """SincNet's own layer norm: statistics over the last axis, gain/bias over the full (C, T) shape."""

    def __init__(self, features, eps: float = 1e-6) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(features))
        self.beta = nn.Parameter(torch.zeros(features))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True)
        return self.gamma * (x - mean) / (std + self.eps) + self.beta


class SincNetLike(nn.Module):
    """The CNN of SincNet, Ravanelli & Bengio, "Speaker Recognition from Raw Waveform with SincNet",
    SLT 2018, arXiv:1808.00158, with an ordinary learned first conv instead of sinc band-pass filters.

    Faithful: raw waveform (batch, time) reshaped with ``x.view(batch, 1, seq_len)``, input layer norm over
    the waveform, conv (long kernel) -> ``torch.abs`` -> ``F.max_pool1d(3)`` -> SincNet LayerNorm over
    (C, T) -> leaky ReLU, two more conv(k=5)-pool-LN-leaky-ReLU layers, ``x.view(batch, -1)``, an MLP head.
    Shrunk: 8 filters of length 31 (not 80 x 251), 8 / 8 channels, window 400 samples, 1 hidden layer of 32.
    """

    def __init__(self, input_dim: int = 400, n_filt=(8, 8, 8), filt_len=(31, 5, 5), pool=(3, 3, 3),
                 hidden: int = 32, classes: int = 10) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.ln0 = SincNetLayerNorm(input_dim)
        self.conv = nn.ModuleList()
        self.ln = nn.ModuleList()
        cur, c_in = input_dim, 1
        for n, k, p in zip(n_filt, filt_len, pool):
            self.conv.append(nn.Conv1d(c_in, n, k))
            cur = (cur - k + 1) // p
            self.ln.append(SincNetLayerNorm([n, cur]))
            c_in = n
        self.out_dim = c_in * cur
        self.fc1 = nn.Linear(self.out_dim, hidden)
        self.bn1 = nn.BatchNorm1d(hidden, momentum=0.05)
        self.fc2 = nn.Linear(hidden, classes)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        seq_len = x.shape[1]
        x = self.ln0(x)
        x = x.view(batch, 1, seq_len)
        for i, conv in enumerate(self.conv):
            if i == 0:
                x = F.leaky_relu(self.ln[i](F.max_pool1d(torch.abs(conv(x)), self.pool[i])), 0.2)
            else:
                x = F.leaky_relu(self.ln[i](F.max_pool1d(conv(x), self.pool[i])), 0.2)
        x = x.view(batch, -1)
        x = F.leaky_relu(self.bn1(self.fc1(x)), 0.2)
        return F.log_softmax(self.fc2(x), dim=1)
