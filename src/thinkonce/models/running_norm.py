"""Causal running normalisation: per channel, subtract the mean of the last ``length`` samples and divide
by the RMS of that detrended signal over the last ``length`` samples.

Why: a model fed raw device units (PPG from different sensors differs by orders of magnitude in gain
and offset) needs a normalisation that is the same function of the signal on every device and that a
stream can compute frame by frame. A statistic over the whole window is neither causal nor streamable;
a running one over the past ``length`` samples is both. It is built from causal average pools only
(zero left padding), so ``thinkonce.stream`` streams it like any other sliding op.

At the left edge of a plain window there are fewer than ``length`` past samples. Dividing the padded
sums by the padded count of an all-ones branch averages over the samples available only, instead of
mixing in zeros: normal windowed inference stays well defined, and a
stream (whose past is real signal) sees full-length statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CausalRunningNorm"]


class CausalRunningNorm(nn.Module):
    """``c / sqrt(mean(c^2) + eps)`` with ``c = x - mean(x)``, both means over the last ``length`` samples.

    The power is that of the detrended signal ``c`` (each sample minus its own running mean), not the
    window variance ``E[x^2] - E[x]^2``: the latter cancels catastrophically in float32 when raw units
    carry a large offset (PPG of 2000 +- 1). Both are invariant to the device's gain and offset.

    Args:
        length: samples in the running statistics (64 = 2 s at 32 Hz: a few heart beats).
        eps: variance floor in squared input units (a flat channel maps to 0, not to noise / 0).
        clip: the output is clamped to ``[-clip, clip]`` so a step (strap contact) cannot blow up.
    """

    def __init__(self, length: int = 64, eps: float = 1e-6, clip: float = 8.0) -> None:
        super().__init__()
        if length < 2:
            raise ValueError(f"length must be at least 2 samples, got {length}")
        self.length = int(length)
        self.eps = float(eps)
        self.clip = float(clip)

    def _mean(self, x: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        s = F.avg_pool1d(F.pad(x, (self.length - 1, 0)), self.length, stride=1)
        return s / count

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ones = x * 0.0 + 1.0  # a frame-wise all-ones branch (ones_like has no ATen streaming rule)
        count = F.avg_pool1d(F.pad(ones, (self.length - 1, 0)), self.length, stride=1)
        mean = self._mean(x, count)
        centred = x - mean
        var = self._mean(centred * centred, count)
        return torch.clamp(centred / torch.sqrt(var + self.eps), -self.clip, self.clip)
