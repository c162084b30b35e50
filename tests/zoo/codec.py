"""Neural audio codecs and vocoders: the SEANet/EnCodec encoder and the HiFi-GAN generator."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import remove_weight_norm, weight_norm
from torch.nn.utils.parametrizations import weight_norm as pweight_norm


def get_extra_padding_for_conv1d(x: torch.Tensor, kernel_size: int, stride: int, padding_total: int = 0) -> int:
    length = x.shape[-1]
    n_frames = (length - kernel_size + padding_total) / stride + 1
    ideal_length = (math.ceil(n_frames) - 1) * stride + (kernel_size - padding_total)
    return ideal_length - length


def pad1d(x: torch.Tensor, paddings: tuple[int, int], mode: str = "zeros", value: float = 0.0) -> torch.Tensor:
    """F.pad that also reflects inputs shorter than the padding (by zero-extending them first)."""
    length = x.shape[-1]
    padding_left, padding_right = paddings
    if mode == "reflect":
        max_pad = max(padding_left, padding_right)
        extra_pad = 0
        if length <= max_pad:
            extra_pad = max_pad - length + 1
            x = F.pad(x, (0, extra_pad))
        padded = F.pad(x, paddings, mode, value)
        end = padded.shape[-1] - extra_pad
        return padded[..., :end]
    return F.pad(x, paddings, mode, value)


class NormConv1d(nn.Module):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        self.conv = pweight_norm(nn.Conv1d(*args, **kwargs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SConv1d(nn.Module):
    """Conv1d with the padding worked out in forward: causal (all on the left) plus the extra right
    padding that makes the last window complete."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, dilation: int = 1,
                 causal: bool = True, pad_mode: str = "reflect") -> None:
        super().__init__()
        self.conv = NormConv1d(in_ch, out_ch, kernel_size, stride, dilation=dilation)
        self.causal, self.pad_mode = causal, pad_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, T = x.shape
        kernel_size = self.conv.conv.kernel_size[0]
        stride = self.conv.conv.stride[0]
        dilation = self.conv.conv.dilation[0]
        kernel_size = (kernel_size - 1) * dilation + 1
        padding_total = kernel_size - stride
        extra_padding = get_extra_padding_for_conv1d(x, kernel_size, stride, padding_total)
        if self.causal:
            x = pad1d(x, (padding_total, extra_padding), mode=self.pad_mode)
        else:
            padding_right = padding_total // 2
            padding_left = padding_total - padding_right
            x = pad1d(x, (padding_left, padding_right + extra_padding), mode=self.pad_mode)
        return self.conv(x)


class SEANetResnetBlock(nn.Module):
    def __init__(self, dim: int, dilations=(1, 1), kernel_sizes=(3, 1), compress: int = 2, causal: bool = True,
                 pad_mode: str = "reflect") -> None:
        super().__init__()
        hidden = dim // compress
        block = []
        for i, (k, d) in enumerate(zip(kernel_sizes, dilations)):
            in_ch = dim if i == 0 else hidden
            out_ch = dim if i == len(kernel_sizes) - 1 else hidden
            block += [nn.ELU(alpha=1.0), SConv1d(in_ch, out_ch, k, dilation=d, causal=causal, pad_mode=pad_mode)]
        self.block = nn.Sequential(*block)
        self.shortcut = nn.Identity()  # true_skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)


class SLSTM(nn.Module):
    def __init__(self, dimension: int, num_layers: int = 1, skip: bool = True) -> None:
        super().__init__()
        self.skip = skip
        self.lstm = nn.LSTM(dimension, dimension, num_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(2, 0, 1)
        y, _ = self.lstm(x)
        if self.skip:
            y = y + x
        return y.permute(1, 2, 0)


class SEANetEncoder(nn.Module):
    """SEANet encoder as used by EnCodec: Défossez, Copet, Synnaeve & Adi, "High Fidelity Neural Audio
    Compression", 2022, arXiv:2210.13438 (SEANet: Tagliasacchi et al. 2020, arXiv:2009.02095).

    Faithful: causal SConv1d (padding computed in forward from ``x.shape[-1]`` with ``math.ceil``, reflect
    padding, ``B, C, T = x.shape``), parametrized weight norm, residual units [ELU, conv k=3 dilation 3^j,
    ELU, conv 1x1] + identity skip, ELU + strided conv (k = 2 x ratio) downsampling doubling channels,
    one-layer LSTM with skip behind ``permute(2, 0, 1)``, ELU, final conv k=7 to the latent dimension.
    Shrunk: 4 base filters, ratios (4, 2), 1 residual unit per stage, latent 8.
    """

    def __init__(self, channels: int = 1, dimension: int = 8, n_filters: int = 4, ratios=(2, 4),
                 n_residual_layers: int = 1, kernel_size: int = 7, last_kernel_size: int = 7,
                 residual_kernel_size: int = 3, dilation_base: int = 2, lstm: int = 1, causal: bool = True,
                 pad_mode: str = "reflect") -> None:
        super().__init__()
        self.ratios = list(reversed(ratios))
        mult = 1
        model: list[nn.Module] = [SConv1d(channels, mult * n_filters, kernel_size, causal=causal, pad_mode=pad_mode)]
        for ratio in self.ratios:
            for j in range(n_residual_layers):
                model += [SEANetResnetBlock(mult * n_filters, dilations=(dilation_base ** j, 1),
                                            kernel_sizes=(residual_kernel_size, 1), causal=causal, pad_mode=pad_mode)]
            model += [nn.ELU(alpha=1.0),
                      SConv1d(mult * n_filters, mult * n_filters * 2, ratio * 2, stride=ratio, causal=causal,
                              pad_mode=pad_mode)]
            mult *= 2
        if lstm:
            model += [SLSTM(mult * n_filters, num_layers=lstm)]
        model += [nn.ELU(alpha=1.0), SConv1d(mult * n_filters, dimension, last_kernel_size, causal=causal,
                                             pad_mode=pad_mode)]
        self.model = nn.Sequential(*model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


LRELU_SLOPE = 0.1


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    return int((kernel_size * dilation - dilation) / 2)


class ResBlock1(nn.Module):
    def __init__(self, channels: int, kernel_size: int = 3, dilation=(1, 3, 5)) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList([
            weight_norm(nn.Conv1d(channels, channels, kernel_size, 1, dilation=d, padding=get_padding(kernel_size, d)))
            for d in dilation])
        self.convs2 = nn.ModuleList([
            weight_norm(nn.Conv1d(channels, channels, kernel_size, 1, dilation=1, padding=get_padding(kernel_size, 1)))
            for _ in dilation])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            xt = F.leaky_relu(x, LRELU_SLOPE)
            xt = c1(xt)
            xt = F.leaky_relu(xt, LRELU_SLOPE)
            xt = c2(xt)
            x = xt + x
        return x

    def remove_weight_norm(self) -> None:
        for layer in self.convs1:
            remove_weight_norm(layer)
        for layer in self.convs2:
            remove_weight_norm(layer)


class HiFiGANGenerator(nn.Module):
    """HiFi-GAN generator of Kong, Kim & Bae, "HiFi-GAN: Generative Adversarial Networks for Efficient and
    High Fidelity Speech Synthesis", NeurIPS 2020, arXiv:2010.05646.

    Faithful: weight-normed conv_pre (k=7), upsampling by leaky ReLU(0.1) + ConvTranspose1d(k=2u, s=u,
    padding (k-u)/2), multi-receptive-field fusion (ResBlock1 with dilations 1,3,5, outputs summed with
    ``xs += ...`` and divided by the number of kernels), leaky ReLU, conv_post (k=7), tanh; the factory
    calls ``remove_weight_norm()`` as the authors' inference script does.
    Shrunk: 8 mel bins, 16 initial channels, upsample rates (4, 4), resblock kernels (3, 5).
    """

    def __init__(self, n_mels: int = 8, initial_channel: int = 16, upsample_rates=(4, 4),
                 upsample_kernel_sizes=(8, 8), resblock_kernel_sizes=(3, 5),
                 resblock_dilation_sizes=((1, 3, 5), (1, 3, 5))) -> None:
        super().__init__()
        self.num_kernels = len(resblock_kernel_sizes)
        self.num_upsamples = len(upsample_rates)
        self.conv_pre = weight_norm(nn.Conv1d(n_mels, initial_channel, 7, 1, padding=3))
        self.ups = nn.ModuleList()
        for i, (u, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes)):
            self.ups.append(weight_norm(nn.ConvTranspose1d(initial_channel // (2 ** i), initial_channel // (2 ** (i + 1)),
                                                           k, u, padding=(k - u) // 2)))
        self.resblocks = nn.ModuleList()
        for i in range(len(self.ups)):
            ch = initial_channel // (2 ** (i + 1))
            for k, d in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(ResBlock1(ch, k, d))
        self.conv_post = weight_norm(nn.Conv1d(ch, 1, 7, 1, padding=3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(x)
        for i in range(self.num_upsamples):
            x = F.leaky_relu(x, LRELU_SLOPE)
            x = self.ups[i](x)
            xs = None
            for j in range(self.num_kernels):
                if xs is None:
                    xs = self.resblocks[i * self.num_kernels + j](x)
                else:
                    xs += self.resblocks[i * self.num_kernels + j](x)
            x = xs / self.num_kernels
        x = F.leaky_relu(x)
        x = self.conv_post(x)
        return torch.tanh(x)

    def remove_weight_norm(self) -> None:
        for layer in self.ups:
            remove_weight_norm(layer)
        for block in self.resblocks:
            block.remove_weight_norm()
        remove_weight_norm(self.conv_pre)
        remove_weight_norm(self.conv_post)
