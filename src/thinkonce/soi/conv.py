"""The convolutions of Scattered Online Inference (Stefanski et al., NeurIPS 2024), in training form.

All of them are causal along time (the last axis) and keep ``nn.Conv1d`` / ``nn.Conv2d`` as their base
class, so weights, ``in_channels`` and initialisation are the usual ones and an existing conv's weights
can be loaded into them. Along time:

* :class:`StridedClonedConv1d` / ``2d`` (S-CC, the paper's op C): output frame ``j`` is the causal conv
  at input frame ``2j``; the layers after it see half the frame rate. The skipped slots are filled where
  the deep path meets full-rate data again (:class:`~thinkonce.soi.fill.Extrapolate`,
  :class:`~thinkonce.soi.fill.Interpolate`). Output length ``ceil(T / 2)``.
* :class:`ShiftedConv1d` / ``2d`` (op D): output frame ``t`` is the causal conv at input frame ``t - 1``
  (moved one frame into the future: a prediction; frame 0 sees only padding). Length ``T``.
* :class:`ShiftedStridedClonedConv1d` / ``2d`` (op E, the shifted S-CC): frame ``j`` is the causal conv
  at input frame ``2j - 1``, so the deep path for slots ``2j, 2j + 1`` is known one step before slot
  ``2j`` arrives: a stream can compute it ahead (:meth:`thinkonce.Stream.precompute`), the fully
  predictive (FP) schedule. Length ``ceil(T / 2)``.

The stream ops that run them are in :mod:`thinkonce.soi.ops`; the training form here and the stream
compute the same function (tests/test_soi.py).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

_FORBIDDEN = ("padding_mode",)


def _one(v: Any, what: str) -> int:
    if isinstance(v, (tuple, list)):
        if len(v) != 1:
            raise ValueError(f"{what} must be an int for a 1-D SOI conv, got {v!r}")
        v = v[0]
    return int(v)


def _check_kwargs(kwargs: dict[str, Any], cls: str) -> None:
    for k in _FORBIDDEN:
        if kwargs.get(k, "zeros") != "zeros":
            raise ValueError(f"{cls} pads time causally with zeros; padding_mode={kwargs[k]!r} is not supported")


class _Causal1d(nn.Conv1d):
    """A causal Conv1d with time stride ``time_stride`` whose input is shifted by ``shift`` frames."""

    time_stride: int = 1
    shift: int = 0

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, **conv_kwargs: Any) -> None:
        _check_kwargs(conv_kwargs, type(self).__name__)
        for k in ("stride", "padding"):
            if k in conv_kwargs:
                raise ValueError(f"{type(self).__name__} sets the time {k} itself (stride {self.time_stride}, causal "
                                 f"left padding); drop {k}={conv_kwargs[k]!r}")
        super().__init__(in_channels, out_channels, _one(kernel_size, "kernel_size"), stride=self.time_stride,
                         padding=0, **conv_kwargs)

    @property
    def causal_padding(self) -> int:
        """Zero frames in front of the signal: the kernel's extent minus one, plus the shift."""
        return self.dilation[0] * (self.kernel_size[0] - 1) + self.shift

    def forward(self, x: Tensor) -> Tensor:
        if self.shift:
            x = x.narrow(-1, 0, max(x.shape[-1] - self.shift, 0))
        x = F.pad(x, (self.causal_padding, 0))
        return F.conv1d(x, self.weight, self.bias, self.time_stride, 0, self.dilation, self.groups)


class StridedClonedConv1d(_Causal1d):
    """S-CC: a causal conv computed on every other frame (stride 2 along time).

    ``StridedClonedConv1d(in_channels, out_channels, kernel_size, dilation=1, groups=1, bias=True)``;
    stride and padding are fixed by the pattern (stride 2, causal left padding ``dilation*(k-1)``).
    """

    time_stride = 2


class ShiftedConv1d(_Causal1d):
    """A causal conv whose output is moved one frame into the future (predicts frame t from frames < t)."""

    shift = 1


class ShiftedStridedClonedConv1d(_Causal1d):
    """The shifted S-CC: frame ``j`` is computed from input frames up to ``2j - 1`` (fully predictive)."""

    time_stride = 2
    shift = 1


def _freq_pair(v: Any, what: str, default: int) -> int:
    """The frequency component of a Conv2d argument; the time component is the pattern's."""
    if v is None:
        return default
    if isinstance(v, (tuple, list)):
        raise ValueError(f"{what} of a 2-D SOI conv applies to the frequency axis only (time is fixed by the "
                         f"pattern); pass an int, got {v!r}")
    if isinstance(v, str):
        raise ValueError(f"{what}={v!r}: pass an int (frequency axis)")
    return int(v)


class _Causal2d(nn.Conv2d):
    """A Conv2d on (batch, channels, freq, time), causal along time, time stride ``time_stride``."""

    time_stride: int = 1
    shift: int = 0

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, **conv_kwargs: Any) -> None:
        _check_kwargs(conv_kwargs, type(self).__name__)
        sf = _freq_pair(conv_kwargs.pop("stride", None), "stride", 1)
        pf = _freq_pair(conv_kwargs.pop("padding", None), "padding", 0)
        dil = conv_kwargs.pop("dilation", 1)
        df, dt = (int(dil[0]), int(dil[1])) if isinstance(dil, (tuple, list)) else (int(dil), int(dil))
        k = (int(kernel_size[0]), int(kernel_size[1])) if isinstance(kernel_size, (tuple, list)) else (int(kernel_size),) * 2
        super().__init__(in_channels, out_channels, k, stride=(sf, self.time_stride), padding=(pf, 0),
                         dilation=(df, dt), **conv_kwargs)

    @property
    def causal_padding(self) -> int:
        return self.dilation[1] * (self.kernel_size[1] - 1) + self.shift

    def forward(self, x: Tensor) -> Tensor:
        if self.shift:
            x = x.narrow(-1, 0, max(x.shape[-1] - self.shift, 0))
        x = F.pad(x, (self.causal_padding, 0))
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class StridedClonedConv2d(_Causal2d):
    """S-CC on (batch, channels, freq, time): stride 2 and causal padding along time; ``stride``,
    ``padding`` and ``dilation`` keyword arguments as ints apply to the frequency axis (dilation: both)."""

    time_stride = 2


class ShiftedConv2d(_Causal2d):
    """:class:`ShiftedConv1d` on (batch, channels, freq, time)."""

    shift = 1


class ShiftedStridedClonedConv2d(_Causal2d):
    """:class:`ShiftedStridedClonedConv1d` on (batch, channels, freq, time)."""

    time_stride = 2
    shift = 1


SOI_CONVS = (StridedClonedConv1d, ShiftedConv1d, ShiftedStridedClonedConv1d,
             StridedClonedConv2d, ShiftedConv2d, ShiftedStridedClonedConv2d)


def is_entry(m: nn.Module) -> bool:
    """Whether ``m`` halves the frame rate (an S-CC, shifted or not)."""
    return isinstance(m, (_Causal1d, _Causal2d)) and m.time_stride == 2

