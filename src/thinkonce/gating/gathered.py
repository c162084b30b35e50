"""The layers of a deployed gated model: switched-off kernels are not computed.

Values between a gate's conv and the next conv are *compact*: only the channels of engaged kernels
exist, with ``idx`` (a LongTensor, or ``None`` = every channel) saying which. Each layer gathers the
weights it needs on the fly: the gated conv its engaged filters (rows of the weight, and their biases),
the next conv the matching input channels (columns), a BatchNorm between them its per-channel
statistics. Gathering costs one copy of the kept weights, small next to the convolution itself (which
reuses every weight at every output position).

A batch of several inputs shares one compact layout: the *union* of the inputs' engaged kernels, with
each input's own switches applied as a mask inside it (exactly the masked dense computation). When the
union is almost every kernel, gathering saves little and costs a copy, so each gate decides at run time,
per layer and per batch: above ``crossover`` (share of kernels in the union) it runs the dense weights
with the mask.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .lkam import LKAM

Idx = Tensor | None


class DeployedGate(nn.Module):
    """The LKAM at inference: ``(h, in_idx) -> (idx, mask)``.

    ``idx``: the kernels to compute (``None``: all); ``mask``: ``(batch, len(idx))`` switches inside that
    set, or ``None`` when every input engages exactly the set (always so at batch 1).
    """

    def __init__(self, lkam: LKAM, crossover: float = 1.0) -> None:
        super().__init__()
        self.lkam = lkam
        self.crossover = crossover
        self.register_buffer("_offsets", torch.arange(lkam.group), persistent=False)

    def forward(self, h: Tensor, in_idx: Idx) -> tuple[Idx, Tensor | None]:
        g = self.lkam
        w = g.proj.weight if in_idx is None else g.proj.weight.index_select(1, in_idx)
        pooled = h.mean(tuple(range(2, h.dim())))  # compact input: absent channels are zero, their columns dropped
        if h.shape[0] == 1 and g.budget >= 1.0:  # the main case, in as few ops as possible
            sw = (F.linear(pooled, w, g.proj.bias)[0] > g.logit_threshold).nonzero().squeeze(1)
            if sw.numel() == g.n_switches:
                return None, None
            if sw.numel() == 0:  # nothing engaged: keep one kernel, masked to zero (torch refuses 0 channels)
                return sw.new_zeros(1), h.new_zeros(1, 1)
            return (sw if g.group == 1 else (sw[:, None] * g.group + self._offsets).flatten()), None
        z = F.linear(pooled, w, g.proj.bias)
        on = g.expand(g.hard(z)) > 0  # (batch, n_kernels)
        n = on.shape[1]
        if on.shape[0] == 1:
            idx = on[0].nonzero().squeeze(1)
            if idx.numel() == n:
                return None, None
            if idx.numel() == 0:  # nothing engaged: keep one kernel, masked to zero (torch refuses 0 channels)
                return idx.new_zeros(1), h.new_zeros(1, 1)
            return idx, None
        union = on.any(0)
        k = int(union.sum())
        if k == 0:
            return union.nonzero().new_zeros(1), h.new_zeros(on.shape[0], 1)
        same = bool((on == on[:1]).all())
        if k / n > self.crossover or k == n:
            return None, None if (same and k == n) else on.to(h.dtype)
        idx = union.nonzero().squeeze(1)
        return idx, None if same else on.index_select(1, idx).to(h.dtype)


class GatheredConv(nn.Module):
    """A conv computing only the output kernels ``out_idx`` from the input channels ``in_idx``.

    Gathered weights are kept for the last ``cache`` distinct (in, out) patterns: a trained gate
    engages few distinct patterns, and a cache hit saves the two or three gather operators, which at
    batch 1 cost about as much as a small convolution (per-operator overhead). The cache is cleared
    whenever the conv's weights change version (training, loading).
    """

    def __init__(self, conv: nn.Conv1d | nn.Conv2d, cache: int = 64) -> None:
        super().__init__()
        self.conv = conv
        self.cache_size = cache
        self._cache: dict[tuple, tuple[Tensor, Tensor | None]] = {}
        self._version: tuple[int, int] | None = None

    def _gather(self, in_idx: Idx, out_idx: Idx) -> tuple[Tensor, Tensor | None]:
        c = self.conv
        w, b = c.weight, c.bias
        if out_idx is not None:
            w = w.index_select(0, out_idx)
            b = None if b is None else b.index_select(0, out_idx)
        if in_idx is not None:
            w = w.index_select(1, in_idx)
        return w, b

    def forward(self, x: Tensor, in_idx: Idx, out_idx: Idx) -> Tensor:
        c = self.conv
        if in_idx is None and out_idx is None:
            return c._conv_forward(x, c.weight, c.bias)
        if self.cache_size <= 0 or torch.is_grad_enabled():
            w, b = self._gather(in_idx, out_idx)
            return c._conv_forward(x, w, b)
        version = (c.weight._version, -1 if c.bias is None else c.bias._version)
        if version != self._version:
            self._cache.clear()
            self._version = version
        key = (None if in_idx is None else tuple(in_idx.tolist()), None if out_idx is None else tuple(out_idx.tolist()))
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) >= self.cache_size:
                self._cache.pop(next(iter(self._cache)))
            hit = self._cache[key] = self._gather(in_idx, out_idx)
        return c._conv_forward(x, hit[0], hit[1])

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_cache"] = {}
        state["_version"] = None
        return state


class GatheredNorm(nn.Module):
    """An eval-mode BatchNorm on the compact channels ``idx``."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        self.bn = bn

    def forward(self, x: Tensor, idx: Idx) -> Tensor:
        bn = self.bn
        if idx is None:
            return bn(x)
        sel = lambda t: None if t is None else t.index_select(0, idx)  # noqa: E731
        return F.batch_norm(x, sel(bn.running_mean), sel(bn.running_var), sel(bn.weight), sel(bn.bias), False, 0.0,
                            bn.eps)


class Masked(nn.Module):
    """Each input's own switches inside the compact layout (a no-op at batch 1)."""

    def forward(self, x: Tensor, m: Tensor | None) -> Tensor:
        if m is None:
            return x
        return x * m.reshape(*m.shape, *([1] * (x.dim() - 2)))


class Expand(nn.Module):
    """Compact channels back into all ``channels`` (zeros for the switched-off ones), for layers that read
    every channel (a Linear head, a residual sum)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: Tensor, idx: Idx) -> Tensor:
        if idx is None:
            return x
        out = x.new_zeros((x.shape[0], self.channels, *x.shape[2:]))
        out.index_copy_(1, idx, x)
        return out
