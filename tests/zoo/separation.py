"""Waveform-domain separation / enhancement: Conv-TasNet (causal) and Demucs (causal denoiser)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class CumulativeLayerNorm(nn.Module):
    """cLN: at frame t, normalise with the mean/variance of all channels of frames 0..t."""

    def __init__(self, dim: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps
        self.gain = nn.Parameter(torch.ones(1, dim, 1))
        self.bias = nn.Parameter(torch.zeros(1, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, T = x.shape
        step_sum = x.sum(1)
        step_pow_sum = x.pow(2).sum(1)
        cum_sum = torch.cumsum(step_sum, dim=1)
        cum_pow_sum = torch.cumsum(step_pow_sum, dim=1)
        entry_cnt = torch.arange(C, C * (T + 1), C, dtype=x.dtype, device=x.device).view(1, -1)
        cum_mean = cum_sum / entry_cnt
        cum_var = (cum_pow_sum - 2 * cum_mean * cum_sum) / entry_cnt + cum_mean.pow(2)
        cum_std = (cum_var + self.eps).sqrt()
        x = (x - cum_mean.unsqueeze(1)) / cum_std.unsqueeze(1)
        return x * self.gain + self.bias


class DepthConv1d(nn.Module):
    def __init__(self, in_ch: int, hidden: int, skip: int, kernel: int, dilation: int, causal: bool = True) -> None:
        super().__init__()
        self.causal = causal
        self.padding = (kernel - 1) * dilation if causal else (kernel - 1) * dilation // 2
        self.conv1d = nn.Conv1d(in_ch, hidden, 1)
        self.dconv1d = nn.Conv1d(hidden, hidden, kernel, dilation=dilation, groups=hidden, padding=self.padding)
        self.res_out = nn.Conv1d(hidden, in_ch, 1)
        self.skip_out = nn.Conv1d(hidden, skip, 1)
        self.nonlinearity1 = nn.PReLU()
        self.nonlinearity2 = nn.PReLU()
        self.reg1 = CumulativeLayerNorm(hidden)
        self.reg2 = CumulativeLayerNorm(hidden)

    def forward(self, x: torch.Tensor):
        out = self.reg1(self.nonlinearity1(self.conv1d(x)))
        if self.causal:
            out = self.reg2(self.nonlinearity2(self.dconv1d(out)[:, :, :-self.padding]))
        else:
            out = self.reg2(self.nonlinearity2(self.dconv1d(out)))
        return self.res_out(out), self.skip_out(out)


class ConvTasNet(nn.Module):
    """Conv-TasNet of Luo & Mesgarani, "Conv-TasNet: Surpassing Ideal Time-Frequency Magnitude Masking for
    Speech Separation", IEEE/ACM TASLP 2019, arXiv:1809.07454; the causal configuration.

    Faithful: linear encoder Conv1d(1, N, L, stride L/2, no bias), cumulative layer norm (cLN) written
    with ``B, C, T = x.shape`` and ``torch.cumsum``, bottleneck 1x1, repeats of 1-D conv blocks (1x1 ->
    PReLU -> cLN -> depthwise dilated conv with (k-1)d padding trimmed by ``[:, :, :-p]`` -> PReLU -> cLN
    -> residual and skip 1x1 convs), skip sum -> PReLU -> 1x1 -> sigmoid masks, masked encoder output
    decoded by ConvTranspose1d(N, 1, L, stride L/2) per source.
    Shrunk: N=8, L=8, bottleneck 8, hidden 16, 1 repeat of 3 blocks, 2 sources.
    """

    def __init__(self, N: int = 8, L: int = 8, B: int = 8, H: int = 16, P: int = 3, X: int = 3, R: int = 1,
                 sources: int = 2) -> None:
        super().__init__()
        self.C, self.N = sources, N
        self.encoder = nn.Conv1d(1, N, L, stride=L // 2, bias=False)
        self.ln = CumulativeLayerNorm(N)
        self.bn = nn.Conv1d(N, B, 1)
        self.blocks = nn.ModuleList([DepthConv1d(B, H, B, P, 2 ** x) for _ in range(R) for x in range(X)])
        self.output = nn.Sequential(nn.PReLU(), nn.Conv1d(B, sources * N, 1))
        self.decoder = nn.ConvTranspose1d(N, 1, L, stride=L // 2, bias=False)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        w = F.relu(self.encoder(mix))
        out = self.bn(self.ln(w))
        skip = 0.0
        for blk in self.blocks:
            res, s = blk(out)
            out = out + res
            skip = skip + s
        masks = torch.sigmoid(self.output(skip)).view(mix.size(0), self.C, self.N, -1)
        masked = w.unsqueeze(1) * masks
        est = self.decoder(masked.view(mix.size(0) * self.C, self.N, -1))
        return est.view(mix.size(0), self.C, -1)


class BLSTM(nn.Module):
    def __init__(self, dim: int, bi: bool = False) -> None:
        super().__init__()
        self.lstm = nn.LSTM(bidirectional=bi, num_layers=2, hidden_size=dim, input_size=dim)
        self.linear = nn.Linear(2 * dim, dim) if bi else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(2, 0, 1)
        x = self.lstm(x)[0]
        if self.linear is not None:
            x = self.linear(x)
        return x.permute(1, 2, 0)


class Demucs(nn.Module):
    """Causal Demucs denoiser of Défossez, Synnaeve & Adi, "Real Time Speech Enhancement in the Waveform
    Domain", Interspeech 2020, arXiv:2006.12847.

    Faithful: ``if mix.dim() == 2`` unsqueeze, mono std normalisation, ``F.pad`` to the valid length
    computed from ``x.shape[-1]``, encoder [Conv1d(k=8, s=4) ReLU Conv1d 1x1 GLU(dim=1)], unidirectional
    2-layer seq-first LSTM behind ``permute(2, 0, 1)``, decoder [Conv1d 1x1 GLU ConvTranspose1d(k=8, s=4)
    ReLU] with U-Net skips trimmed by ``skip[..., :x.shape[-1]]``, output cropped to the input length and
    rescaled by std.
    Shrunk: depth 3, hidden 4, growth 2, resample=1 (the sinc 2x up/down-sampling is left out, a
    documented option of the model).
    """

    def __init__(self, chin: int = 1, chout: int = 1, hidden: int = 4, depth: int = 3, kernel_size: int = 8,
                 stride: int = 4, growth: int = 2, normalize: bool = True, floor: float = 1e-3) -> None:
        super().__init__()
        self.depth, self.kernel_size, self.stride = depth, kernel_size, stride
        self.normalize, self.floor = normalize, floor
        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for index in range(depth):
            self.encoder.append(nn.Sequential(
                nn.Conv1d(chin, hidden, kernel_size, stride), nn.ReLU(), nn.Conv1d(hidden, hidden * 2, 1), nn.GLU(1)))
            dec = [nn.Conv1d(hidden, 2 * hidden, 1), nn.GLU(1), nn.ConvTranspose1d(hidden, chout, kernel_size, stride)]
            if index > 0:
                dec.append(nn.ReLU())
            self.decoder.insert(0, nn.Sequential(*dec))
            chout = hidden
            chin = hidden
            hidden = int(growth * hidden)
        self.lstm = BLSTM(chin, bi=False)

    def valid_length(self, length: int) -> int:
        for _ in range(self.depth):
            length = math.ceil((length - self.kernel_size) / self.stride) + 1
            length = max(length, 1)
        for _ in range(self.depth):
            length = (length - 1) * self.stride + self.kernel_size
        return int(length)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        if mix.dim() == 2:
            mix = mix.unsqueeze(1)
        if self.normalize:
            mono = mix.mean(dim=1, keepdim=True)
            std = mono.std(dim=-1, keepdim=True)
            mix = mix / (self.floor + std)
        else:
            std = 1
        length = mix.shape[-1]
        x = F.pad(mix, (0, self.valid_length(length) - length))
        skips = []
        for encode in self.encoder:
            x = encode(x)
            skips.append(x)
        x = self.lstm(x)
        for decode in self.decoder:
            skip = skips.pop(-1)
            x = x + skip[..., :x.shape[-1]]
            x = decode(x)
        x = x[..., :length]
        return std * x
