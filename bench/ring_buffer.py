"""The floor: a minimal hand-written ring-buffer step in plain PyTorch.

Each temporal layer keeps the input frames its future outputs still need (``span - 1`` frames for a
convolution, the incomplete group for a non-overlapping pooling layer), concatenates the new frames to
them and computes only the outputs the new frames make computable. No graph, no dict of named state,
no counters: a list of tensors, one per layer, and a loop over a list of precomputed layer records.

Two uses:

* continuous (``RingNet(..., frames=None)``): ``step(x, state)`` returns the new trunk frames; the
  concatenation of the outputs over any chunking equals the trunk run on the whole signal (causal
  layers; layers with right padding lag by their look-ahead).
* window (``frames=F``): the last ``F`` feature frames live in a ring; each step runs the head on the
  window's features. Layers with right ("same") padding owe frames at the window's right edge; as in
  thinkonce's ``edge="exact"``, a second short pass computes them against zero padding without
  committing them (the committed frames are recomputed when their right context arrives). This
  equals the model on the window extended to the left by real signal, features cropped to the window.

The records are written by hand per network (:func:`for_network`); nothing is traced or converted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CONV, POOL, POINT = 0, 1, 2


@dataclass
class Layer:
    kind: int
    in_channels: int = 0
    weight: Tensor | None = None
    bias: Tensor | None = None
    dilation: int = 1
    pad_left: int = 0
    pad_right: int = 0
    k: int = 1  # kernel (pooling: kernel == stride)
    pool_max: bool = False
    fn: Callable[[Tensor], Tensor] | None = None

    @property
    def span(self) -> int:
        return self.dilation * (self.k - 1) + 1


def conv(m: nn.Conv1d, pad_left: int, pad_right: int = 0, dense: bool = False) -> Layer:
    """A stride-1 convolution. ``dense=True`` runs a dilated kernel as the equivalent undilated kernel
    with zeros between its taps (more MACs, but PyTorch's CPU dilated path, ``slow_conv_dilated2d``,
    costs several times more per call at small batch)."""
    if m.stride[0] != 1 or m.groups != 1:
        raise ValueError("the hand-written floor covers stride-1, ungrouped convolutions")
    w, d, k = m.weight.detach(), m.dilation[0], m.kernel_size[0]
    if dense and d > 1:
        wd = w.new_zeros((w.shape[0], w.shape[1], d * (k - 1) + 1))
        wd[:, :, ::d] = w
        w, d, k = wd, 1, d * (k - 1) + 1
    return Layer(CONV, m.in_channels, w, None if m.bias is None else m.bias.detach(), d, pad_left, pad_right, k)


def pool(k: int, channels: int, is_max: bool) -> Layer:
    return Layer(POOL, channels, k=k, pool_max=is_max)


def point(fn: Callable[[Tensor], Tensor]) -> Layer:
    return Layer(POINT, fn=fn)


def bn(m: nn.BatchNorm1d) -> Layer:
    rm, rv, w, b, eps = m.running_mean, m.running_var, m.weight, m.bias, m.eps
    return point(lambda x: F.batch_norm(x, rm, rv, w, b, False, 0.0, eps))


class RingNet:
    """Hand-written streaming step over a list of :class:`Layer` records (see module docstring)."""

    def __init__(self, layers: list[Layer], in_channels: int, head: Callable[[Tensor], Tensor] | None = None,
                 frames: int | None = None, feat_channels: int = 0, stride: int = 1) -> None:
        self.layers = layers
        self.in_channels = in_channels
        self.head = head
        self.frames = frames
        self.feat_channels = feat_channels
        self.stride = stride  # total downsampling of the trunk
        self.edge = any(L.kind == CONV and L.pad_right for L in layers)

    # ---------------------------------------------------------------- state
    def _zero_bufs(self, batch: int, like: Tensor) -> list[Tensor]:
        bufs = []
        c = self.in_channels
        for L in self.layers:
            if L.kind == CONV:
                bufs.append(like.new_zeros((batch, L.in_channels, L.pad_left)))
                c = L.weight.shape[0]
            elif L.kind == POOL:
                bufs.append(like.new_zeros((batch, c, 0)))
            else:
                bufs.append(like.new_zeros(0))
        return bufs

    def init_state(self, batch: int = 1, preroll: int = 0) -> list:
        """Fresh buffers (zero left padding). Window mode: then ``preroll`` zero samples (a multiple of
        the trunk stride, >= receptive field + window) so that every buffer holds a zero history."""
        like = self.layers[0].weight if self.layers[0].weight is not None else torch.zeros(0)
        bufs = self._zero_bufs(batch, like)
        if self.frames is None:
            return bufs
        ring = like.new_zeros((batch, self.feat_channels, self.frames))
        st = [bufs, ring]
        if preroll:
            with torch.no_grad():
                _, st = self.step(like.new_zeros((batch, self.in_channels, preroll)), st)
        return st

    def nbytes(self, state: list) -> int:
        """Bytes per stream held by the state."""
        flat = state if self.frames is None else [*state[0], state[1]]
        b = max(t.shape[0] for t in flat if t.dim())
        return sum(t.numel() * t.element_size() for t in flat) // b

    # ---------------------------------------------------------------- step
    def _commit(self, x: Tensor, bufs: list[Tensor]) -> tuple[Tensor | None, list[Tensor]]:
        new = list(bufs)
        for i, L in enumerate(self.layers):
            kind = L.kind
            if kind == POINT:
                x = L.fn(x)
            elif kind == CONV:
                z = torch.cat((bufs[i], x), 2)
                n = z.shape[2] - L.span + 1
                if n <= 0:
                    new[i] = z
                    return None, new
                x = F.conv1d(z, L.weight, L.bias, 1, 0, L.dilation)
                new[i] = z[:, :, n:]
            else:
                b = bufs[i]
                z = torch.cat((b, x), 2) if b.shape[2] else x
                n = z.shape[2] // L.k
                if n == 0:
                    new[i] = z
                    return None, new
                used = z[:, :, : n * L.k] if z.shape[2] != n * L.k else z
                x = F.max_pool1d(used, L.k) if L.pool_max else F.avg_pool1d(used, L.k)
                new[i] = z[:, :, n * L.k:]
        return x, new

    def _edge(self, bufs: list[Tensor], batch: int) -> Tensor:
        """Frames the right padding owes now (zero right context), computed without committing."""
        x = None
        for i, L in enumerate(self.layers):
            if L.kind == POINT:
                if x is not None:
                    x = L.fn(x)
            elif L.kind == CONV:
                parts = [bufs[i]] if x is None else [bufs[i], x]
                if L.pad_right:
                    parts.append(bufs[i].new_zeros((batch, bufs[i].shape[1], L.pad_right)))
                z = torch.cat(parts, 2) if len(parts) > 1 else parts[0]
                n = z.shape[2] - L.span + 1
                x = F.conv1d(z, L.weight, L.bias, 1, 0, L.dilation) if n > 0 else None
            else:
                if x is None:
                    continue
                z = torch.cat((bufs[i], x), 2) if bufs[i].shape[2] else x
                n = z.shape[2] // L.k
                used = z[:, :, : n * L.k]
                x = (F.max_pool1d(used, L.k) if L.pool_max else F.avg_pool1d(used, L.k)) if n else None
        return x

    def step(self, x: Tensor, state: list) -> tuple[Tensor | None, list]:
        """Feed ``x`` (batch, channels, n). Continuous: returns the new trunk frames (None if none).
        Window: returns the head's output for the window ending now, or None before a frame completes."""
        with torch.no_grad():
            if self.frames is None:
                return self._commit(x, state)
            bufs, ring = state
            feats, bufs = self._commit(x, bufs)
            if feats is not None:
                ring = torch.cat((ring, feats), 2)[:, :, -self.frames:]
            win = ring
            if self.edge:
                tail = self._edge(bufs, x.shape[0])
                if tail is not None:
                    win = torch.cat((ring, tail), 2)[:, :, -self.frames:]
            return self.head(win), [bufs, ring]

    __call__ = step

    # ---------------------------------------------------------------- receptive-field minimum
    def min_state(self, dtype_bytes: int = 4) -> dict[str, int]:
        """The receptive-field minimum of the state: every temporal layer keeps ``(span - 1) x C_in``
        input frames (a convolution its kernel span; a pooling layer of kernel k up to ``k - 1`` frames
        of an incomplete group), plus the head's window of ``frames x C_feat`` features.
        ``trunk_aligned_bytes`` leaves the pooling groups out: all a causal trunk needs at a hop that
        the pooling divides (with "same" padding the committed frames lag the hop, and groups stay
        open)."""
        trunk = aligned = 0
        c = self.in_channels
        for L in self.layers:
            if L.kind == CONV:
                trunk += (L.span - 1) * L.in_channels
                aligned += (L.span - 1) * L.in_channels
                c = L.weight.shape[0]
            elif L.kind == POOL:
                trunk += (L.k - 1) * c
        head = (self.frames or 0) * self.feat_channels
        return {"trunk_bytes": trunk * dtype_bytes, "trunk_aligned_bytes": aligned * dtype_bytes,
                "head_bytes": head * dtype_bytes, "total_bytes": (trunk + head) * dtype_bytes}


# -------------------------------------------------------------------- the networks, by hand
def for_network(name: str, model: nn.Module, window: bool = True, dense: bool = False) -> RingNet:
    """The hand-written ring buffer of one of the benchmark networks (``window=False``: trunk only,
    continuous; ``dense=True``: dilated kernels run as zero-filled undilated kernels, see :func:`conv`)."""
    relu = point(F.relu)
    if name == "anchor":
        layers = []
        for m in model.trunk:
            if isinstance(m, nn.Conv1d):
                layers += [conv(m, pad_left=m.kernel_size[0] - 1), relu]
            elif isinstance(m, nn.MaxPool1d):
                layers.append(pool(m.kernel_size, layers[-2].weight.shape[0], True))
        fc = model.fc
        head = (lambda f: fc(f.mean(-1))) if window else None
        return RingNet(layers, 1, head, model.WINDOW // 2 if window else None, fc.in_features, stride=2)
    if name == "ppg":
        off, sc = model.ppg_offset, model.ppg_scale
        layers = [point(lambda x: (x - off) / sc)]
        c = 1
        for blk in model.blocks:
            for cv in blk.convs:
                layers += [conv(cv, pad_left=(cv.kernel_size[0] - 1) * cv.dilation[0], dense=dense), relu]
                c = cv.out_channels
            layers.append(pool(blk.pool.kernel_size[0], c, False))
        ho, hs = model.hr_offset, model.hr_scale
        head = lambda f: model.head(f) * hs + ho  # noqa: E731
        return RingNet(layers, 1, head, model.n_frames, model.FILTERS[-1], stride=16)
    if name == "eeg":
        layers, c = [], model.in_channels
        mods = list(model.features)
        for m in mods:
            if isinstance(m, nn.Conv1d):
                p = m.padding[0]
                layers.append(conv(m, p, p))
                c = m.out_channels
            elif isinstance(m, nn.BatchNorm1d):
                layers.append(bn(m))
            elif isinstance(m, nn.ReLU):
                layers.append(relu)
            elif isinstance(m, nn.MaxPool1d):
                layers.append(pool(m.kernel_size, c, True))
        hd = model.head
        stride = 1
        for m in mods:
            if isinstance(m, nn.MaxPool1d):
                stride *= m.kernel_size
        return RingNet(layers, model.in_channels, lambda f: torch.flatten(hd(f), 1), model.head_kernel, c,
                       stride=stride)
    if name == "acc":
        layers, c = [], model.in_channels
        for m in model.features:
            if isinstance(m, nn.Conv1d):
                k = m.kernel_size[0]
                layers.append(conv(m, (k - 1) // 2, k // 2))
                c = m.out_channels
            elif isinstance(m, nn.BatchNorm1d):
                layers.append(bn(m))
            elif isinstance(m, nn.ReLU):
                layers.append(relu)
        hd = model.head
        return RingNet(layers, model.in_channels, lambda f: hd(f.mean(-1)), model.window, c)
    raise ValueError(f"no hand-written ring buffer for {name!r}")
