"""Filling the skipped slots where a half-rate deep path meets full-rate data again.

A deep path after an S-CC has one frame ``y[j]`` per two input frames; frame ``y[j]`` belongs to slot
``2j`` (it was computed there). Back at full rate, slot ``2j`` is ``y[j]`` and slot ``2j + 1`` is filled:

* :class:`Extrapolate` (causal, no delay) from ``y[j]`` alone: ``"duplicate"`` clones it (the paper's
  S-CC clone; no weights), ``"tconv"`` is a learned transposed convolution (kernel 2, stride 2: both
  slots learned, initialised as duplication), ``"hybrid"`` keeps slot ``2j`` exact and learns slot
  ``2j + 1`` (``y[j] + W y[j]``, ``W`` initialised to zero; no bias, which would shift slot ``2j`` too).
* :class:`Interpolate` from the neighbouring computed frames (non-causal: the stream's
  :attr:`~thinkonce.Stream.delay` reports it): ``"nearest"`` takes ``y[j + 1]``, ``"linear"`` the mean of
  ``y[j]`` and ``y[j + 1]`` (one frame of delay), ``"cubic"`` the Keys cubic (a = -0.75, as PyTorch's
  bicubic) of ``y[j - 1] .. y[j + 2]`` (three frames of delay). Frames past the ends are clamped.

``forward(y, like=None)``: with ``like`` (a full-rate tensor, e.g. the skip connection the result is
added to, or the S-CC's input) the result is cropped to ``like``'s time length; without it the result
has ``2 * y.shape[-1]`` frames (one more than the signal when its length is odd). In a stream the crop
waits for ``like``'s frames, so a fill computed ahead (FP) is held until its slot arrives.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

EXTRAPOLATE_MODES = ("duplicate", "tconv", "hybrid")
INTERPOLATE_MODES = ("nearest", "linear", "cubic")

_A = -0.75  # Keys cubic parameter (PyTorch's bicubic)
#: weights of slot 2j+1 on (y[j-1], y[j], y[j+1], y[j+2]); ``ahead`` computed frames needed past y[j]
INTERPOLATION_WEIGHTS: dict[str, tuple[tuple[float, ...], int]] = {
    "nearest": ((0.0, 0.0, 1.0), 1),
    "linear": ((0.0, 0.5, 0.5), 1),
    "cubic": ((_A * (1.5**3 - 5 * 1.5**2 + 8 * 1.5 - 4), (_A + 2) * 0.5**3 - (_A + 3) * 0.5**2 + 1,
               (_A + 2) * 0.5**3 - (_A + 3) * 0.5**2 + 1, _A * (1.5**3 - 5 * 1.5**2 + 8 * 1.5 - 4)), 2),
}


def duplicate(y: Tensor) -> Tensor:
    """Every frame twice along the last axis (the S-CC clone)."""
    return torch.repeat_interleave(y, 2, dim=-1)


def crop_like(y: Tensor, like: Tensor) -> Tensor:
    """``y`` cut to ``like``'s time length (the last axis); ``like`` only lends its length."""
    n = like.shape[-1]
    if y.shape[-1] < n:
        raise ValueError(f"the filled deep path has {y.shape[-1]} frames, fewer than the {n} of the full-rate "
                         "tensor it is cropped to; pass like= a tensor at the S-CC's input rate")
    return y.narrow(-1, 0, n)


def interpolate_pairs(q: Tensor, weights: Sequence[float]) -> tuple[Tensor, Tensor]:
    """For a left-clamped frame sequence ``q`` (``q[0] = y[0]``, ``q[i + 1] = y[i]``): the odd slots
    (weights over windows of ``len(weights)`` frames) and the even slots that follow them (``q[j + 2]``)."""
    w = len(weights)
    n = q.shape[-1] - w + 1
    odd = None
    for i, c in enumerate(weights):
        if c:
            term = q.narrow(-1, i, n) * c
            odd = term if odd is None else odd + term
    assert odd is not None
    even = q.narrow(-1, 2, n)
    return odd, even


def interleave(a: Tensor, b: Tensor) -> Tensor:
    """Frames ``a[0], b[0], a[1], b[1], ...`` along the last axis."""
    return torch.stack([a, b], dim=-1).reshape(*a.shape[:-1], 2 * a.shape[-1])


def interpolate(y: Tensor, mode: str) -> Tensor:
    """The whole-signal form of :class:`Interpolate`: ``2 * y.shape[-1]`` frames."""
    weights, ahead = INTERPOLATION_WEIGHTS[mode]
    if y.shape[-1] == 0:
        return duplicate(y)
    first, last = y.narrow(-1, 0, 1), y.narrow(-1, y.shape[-1] - 1, 1)
    q = torch.cat([first, y] + [last] * ahead, dim=-1)
    odd, even = interpolate_pairs(q, weights)
    z = torch.cat([first, interleave(odd, even)], dim=-1)
    return z.narrow(-1, 0, 2 * y.shape[-1])


# leaves of an fx trace: the converter streams them by their registered ops (thinkonce.soi.ops)
torch.fx.wrap("duplicate")
torch.fx.wrap("crop_like")
torch.fx.wrap("interpolate")


def _check_mode(mode: str, modes: tuple[str, ...], what: str) -> None:
    if mode not in modes:
        raise ValueError(f"{what} mode must be one of {modes}, got {mode!r}")


class Extrapolate(nn.Module):
    """Back to full rate from the computed frames alone (causal): see the module docstring.

    ``channels`` is needed by the learned modes; ``dim`` is 1 for (batch, channels, time) and 2 for
    (batch, channels, freq, time).
    """

    def __init__(self, mode: str = "duplicate", channels: int | None = None, dim: int = 1) -> None:
        super().__init__()
        _check_mode(mode, EXTRAPOLATE_MODES, "Extrapolate")
        if dim not in (1, 2):
            raise ValueError(f"dim must be 1 (batch, channels, time) or 2 (batch, channels, freq, time), got {dim}")
        self.mode, self.dim = mode, dim
        self.channels = channels
        if mode != "duplicate":
            if not isinstance(channels, int) or channels < 1:
                raise ValueError(f"Extrapolate({mode!r}) learns weights: pass channels=C (the deep path's channels)")
            eye = torch.eye(channels)
            if mode == "tconv":  # both slots learned, starting as duplication
                self.weight = nn.Parameter(torch.stack([eye, eye], dim=-1))  # (C_in, C_out, 2)
                self.bias = nn.Parameter(torch.zeros(channels))
            else:  # hybrid: slot 2j exact, slot 2j+1 = y + W y
                self.delta = nn.Parameter(torch.zeros(channels, channels))
                self.register_buffer("eye", eye, persistent=False)

    def _kernel(self) -> tuple[Tensor, Tensor | None]:
        """Transposed-conv weight (C, C, [1,] 2) and bias of the learned modes."""
        if self.mode == "tconv":
            w, b = self.weight, self.bias
        else:
            w = torch.stack([self.eye, self.eye + self.delta], dim=-1)
            b = None
        if self.dim == 2:
            w = w.unsqueeze(2)
        return w, b

    def forward(self, y: Tensor, like: Tensor | None = None) -> Tensor:
        if self.mode == "duplicate":
            z = duplicate(y)
        else:
            w, b = self._kernel()
            if self.dim == 1:
                z = F.conv_transpose1d(y, w, b, stride=2)
            else:
                z = F.conv_transpose2d(y, w, b, stride=(1, 2))
        if like is not None:
            z = crop_like(z, like)
        return z

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, channels={self.channels}, dim={self.dim}"


class Interpolate(nn.Module):
    """Back to full rate by interpolating between computed frames (non-causal; see the module docstring)."""

    def __init__(self, mode: str = "linear") -> None:
        super().__init__()
        _check_mode(mode, INTERPOLATE_MODES, "Interpolate")
        self.mode = mode

    @property
    def delay_frames(self) -> int:
        """Full-rate frames the fill waits for: slot 2j+1 needs y[j + ahead], computed at slot 2j + 2*ahead."""
        return 2 * INTERPOLATION_WEIGHTS[self.mode][1] - 1

    def forward(self, y: Tensor, like: Tensor | None = None) -> Tensor:
        z = interpolate(y, self.mode)
        if like is not None:
            z = crop_like(z, like)
        return z

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"
