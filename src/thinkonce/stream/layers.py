"""Streaming counterparts of temporal layers.

Every op here is *stateless code over explicit state*: ``run(xs, state, mode)`` takes the new frames of
its inputs and the op's own state (a dict of batch-first tensors) and returns the new output frames and
a new state dict. Nothing is modified in place, so an old state stays valid and a step can be replayed.

``mode`` is one of

* ``"step"``  - commit: emit only the frames whose whole input context is known;
* ``"flush"`` - end of signal: also emit what the right-edge padding owes (the stream ends here);
* ``"stale"`` - StreamiNNC's cheap edge: emit the right-edge frames computed against zero padding *and
  keep them* (the paper's reuse of stale edge frames), instead of recomputing them later.

Rows of a batch advance in lock-step (same chunk length), so phase counters are equal across rows; they
are stored per row anyway so the state stays batch-first everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

State = dict[str, Tensor]

MODES = ("step", "flush", "stale")


def _counter(batch: int, value: int, device: torch.device) -> Tensor:
    return torch.full((batch,), int(value), dtype=torch.int64, device=device)


def _empty_like_frames(x: Tensor, dim: int, n: int = 0, channels: int | None = None, dim_c: int = 1) -> Tensor:
    shape = list(x.shape)
    shape[dim] = n
    if channels is not None:
        shape[dim_c] = channels
    return x.new_zeros(shape)


@dataclass(frozen=True)
class TimeFacts:
    """What an op does to the time axis, in frames of its input. The converter, ``analyze`` and the
    bounds read these instead of knowing op classes: a new op declares them and is understood.

    ``stride``: input frames per output frame (2: halves the rate; 1/2: doubles it). ``span``: input
    frames one output frame reads (kernel extent with dilation). ``pad_left``/``pad_right``: frames of
    padding added before/after the signal (negative: frames trimmed). ``rf_frames``: how far the
    receptive field grows, in input frames (an upper bound).
    """

    stride: Fraction = Fraction(1)
    span: int = 1
    pad_left: int = 0
    pad_right: int = 0
    rf_frames: int = 0


class StreamOp:
    """Base class: a temporal op with explicit state. Subclasses document their state keys."""

    #: short human name used in error messages and reports
    kind: str = "op"
    #: state entries whose frame count depends on more than the stride phase (e.g. an SOI shifted S-CC's
    #: held frame after ``Stream.precompute``); traced backends key their graphs on these frame counts
    layout_keys: tuple[str, ...] = ()

    def facts(self) -> TimeFacts:
        """Time-axis facts (see :class:`TimeFacts`); the default is a frame-wise op."""
        return TimeFacts()

    def taint(self, n: int, left: int, right: int) -> tuple[int, int, int]:
        """Zero-padding reach: given ``n`` input frames of which the first ``left`` and last ``right``
        depend on zero padding, the output's frame count and its tainted prefix and suffix."""
        raise NotImplementedError(f"zero-padding reach: {type(self).__name__} declares no rule")

    def owes_at_end(self) -> bool:
        """Whether the op can still emit frames when the stream ends (right padding, held frames)."""
        return True

    def init_state(self, batch: int, like: Tensor) -> State:  # pragma: no cover - interface
        raise NotImplementedError

    def run(self, xs: Sequence[Tensor], st: State, mode: str) -> tuple[Tensor, State]:  # pragma: no cover
        raise NotImplementedError


@dataclass
class SlidingOp(StreamOp):
    """Conv1d / MaxPool1d / AvgPool1d: a kernel sliding over time with stride, dilation and padding.

    State: ``buf`` holds the input frames (padding frames included) that later outputs still need, at
    most ``span - 1`` of them; ``skip`` counts future input frames to discard when the stride is larger
    than the kernel span. Left padding is the initial content of ``buf``; right padding is appended only
    when the stream ends (``flush``) or provisionally (``stale``).
    """

    fn: Callable[[Tensor], Tensor]  # applies the op with padding=0 to a contiguous block of frames
    kernel: int
    stride: int
    dilation: int
    pad_left: int
    pad_right: int
    pad_value: float
    in_channels: int
    out_channels: int | None  # None: same as input (pooling)
    kind: str = "conv"

    @property
    def span(self) -> int:
        return self.dilation * (self.kernel - 1) + 1

    def owes_at_end(self) -> bool:
        return self.pad_right > 0

    def facts(self) -> TimeFacts:
        span = self.span
        return TimeFacts(Fraction(self.stride), span, self.pad_left, self.pad_right,
                         span - 1 + max(self.pad_left - (span - 1), 0))

    def taint(self, n: int, left: int, right: int) -> tuple[int, int, int]:
        """Output frame j reads padded-input frames [j*s, j*s + span - 1] (always its first and last)."""
        s, span = self.stride, self.span
        total = self.pad_left + n + self.pad_right
        n_out = (total - span) // s + 1 if total >= span else 0
        tl = self.pad_left + min(left, n)  # tainted padded-input frames at the left
        tr = self.pad_right + min(right, n)
        out_left = min(n_out, -(-tl // s)) if tl > 0 else 0
        out_right = 0
        if tr > 0:
            first = max(0, -(-(total - tr - span + 1) // s))  # first output reading a tainted right frame
            out_right = max(0, n_out - first)
        return n_out, out_left, min(out_right, n_out)

    def init_state(self, batch: int, like: Tensor) -> State:
        buf = like.new_full((batch, self.in_channels, self.pad_left), self.pad_value)
        return {"buf": buf, "skip": _counter(batch, 0, like.device)}

    def run(self, xs: Sequence[Tensor], st: State, mode: str) -> tuple[Tensor, State]:
        (x,) = xs
        buf = torch.cat([st["buf"], x], dim=2) if x.shape[2] else st["buf"]
        # the skip counter can only become non-zero when the stride outruns the kernel span (or stale
        # right padding outruns it); otherwise reading it back is pure overhead
        may_skip = self.stride > self.span or self.pad_right > self.span - self.stride
        skip = int(st["skip"][0]) if may_skip and st["skip"].numel() else 0
        if skip:
            drop = min(skip, buf.shape[2])
            buf = buf.narrow(2, drop, buf.shape[2] - drop)
            skip -= drop
        real = buf.shape[2]
        ext = buf
        virtual = 0  # right-pad positions swallowed by a pending skip (stride larger than span)
        if mode != "step" and self.pad_right:
            virtual = min(skip, self.pad_right)
            npad = self.pad_right - virtual
            if npad:
                pad = buf.new_full((buf.shape[0], buf.shape[1], npad), self.pad_value)
                ext = torch.cat([buf, pad], dim=2)
        span, s = self.span, self.stride
        n_out = (ext.shape[2] - span) // s + 1 if ext.shape[2] >= span else 0
        if n_out:
            used = (n_out - 1) * s + span
            y = self.fn(ext if used == ext.shape[2] else ext.narrow(2, 0, used))  # no no-op slice in traced graphs; narrow is one op where [:, :, a:b] traces as three
        else:
            c = self.out_channels if self.out_channels is not None else buf.shape[1]
            y = buf.new_zeros((buf.shape[0], c, 0))
        consume = n_out * s
        if consume == 0:
            pass
        elif consume <= real:
            buf = buf.narrow(2, consume, buf.shape[2] - consume)
        else:
            skip = virtual + consume - real
            buf = buf.narrow(2, real, buf.shape[2] - real)
        if mode == "flush":
            buf = buf.narrow(2, 0, 0)
        old = st["skip"]
        if not may_skip:
            return y, {"buf": buf, "skip": old}
        return y, {"buf": buf, "skip": torch.full_like(old, skip)}


@dataclass
class TransposedConvOp(StreamOp):
    """ConvTranspose1d by overlap-add (tSTMC): each input frame is multiplied once.

    ``F.conv_transpose1d`` over the new frames gives their full overlap-add block; the first frames of
    the block are final (no later input reaches them) and are emitted, the tail is carried in ``carry``
    and added to the next block. Padding and output_padding are applied by a following :class:`TrimOp`
    and the extra zero frames this op appends at the end of the stream.

    State: ``carry`` (B, C_out, max(span - stride, 0)) partial sums, ``started`` (B,) 0 before the first frame.
    """

    weight: Tensor
    bias: Tensor | None
    stride: int
    dilation: int
    groups: int
    output_padding: int
    out_channels: int
    kind: str = "conv_transpose"

    @property
    def span(self) -> int:
        return self.dilation * (self.weight.shape[2] - 1) + 1

    def facts(self) -> TimeFacts:
        reach = math.ceil(self.span / self.stride)  # input frames the widest output frame sums
        return TimeFacts(Fraction(1, self.stride), reach, 0, 0, reach)

    def init_state(self, batch: int, like: Tensor) -> State:
        tail = max(self.span - self.stride, 0)
        return {
            "carry": like.new_zeros((batch, self.out_channels, tail)),
            "started": _counter(batch, 0, like.device),
        }

    def _bias(self, y: Tensor) -> Tensor:
        return y if self.bias is None else y + self.bias.view(1, -1, 1)

    def run(self, xs: Sequence[Tensor], st: State, mode: str) -> tuple[Tensor, State]:
        (x,) = xs
        started = int(st["started"][0]) if st["started"].numel() else 0
        carry = st["carry"]
        s, span = self.stride, self.span
        tail = max(span - s, 0)
        out = carry.new_zeros((x.shape[0], self.out_channels, 0))
        if x.shape[2]:
            y = F.conv_transpose1d(x, self.weight, None, stride=s, dilation=self.dilation, groups=self.groups)
            if started and span < s:  # zero frames between the previous block and this one
                y = torch.cat([y.new_zeros((y.shape[0], y.shape[1], s - span)), y], dim=2)
            if tail:
                y = torch.cat([y.narrow(2, 0, tail) + carry, y.narrow(2, tail, y.shape[2] - tail)], dim=2)
            out = y.narrow(2, 0, y.shape[2] - tail)
            carry = y.narrow(2, y.shape[2] - tail, tail)
            started = 1
        if mode == "flush" and started:
            extra = carry.new_zeros((carry.shape[0], carry.shape[1], self.output_padding))
            out = torch.cat([out, carry, extra], dim=2)
            carry = carry.narrow(2, 0, 0)
        new = {"carry": carry, "started": torch.full_like(st["started"], started)}
        return self._bias(out), new


@dataclass
class TrimOp(StreamOp):
    """Drop ``left`` frames at the start and ``right`` frames at the end of a stream (negative padding).

    The last ``right`` frames cannot be known to be last until the stream ends, so they are held back in
    ``held``: that is a delay of ``right`` frames, which :attr:`Stream.delay` reports.
    """

    left: int
    right: int
    dim: int = 2
    kind: str = "trim"

    def facts(self) -> TimeFacts:
        return TimeFacts(pad_left=-self.left, pad_right=-self.right)

    def taint(self, n: int, left: int, right: int) -> tuple[int, int, int]:
        n_out = max(0, n - self.left - self.right)
        return n_out, min(n_out, max(0, left - self.left)), min(n_out, max(0, right - self.right))

    def init_state(self, batch: int, like: Tensor) -> State:
        return {"drop": _counter(batch, self.left, like.device)}

    def run(self, xs: Sequence[Tensor], st: State, mode: str) -> tuple[Tensor, State]:
        (x,) = xs
        d = self.dim
        if "held" in st:
            x = torch.cat([st["held"], x], dim=d)
        drop = int(st["drop"][0]) if st["drop"].numel() else 0
        if drop:
            k = min(drop, x.shape[d])
            x = x.narrow(d, k, x.shape[d] - k)
            drop -= k
        new: State = {"drop": torch.full_like(st["drop"], drop)}
        if mode == "flush":
            keep = max(x.shape[d] - self.right, 0)
            return x.narrow(d, 0, keep), new
        keep = max(x.shape[d] - self.right, 0)
        new["held"] = x.narrow(d, keep, x.shape[d] - keep)
        return x.narrow(d, 0, keep), new


@dataclass
class PadOp(StreamOp):
    """Constant padding on the time axis (``F.pad`` / ``ConstantPad1d``) that could not be fused into
    the following sliding op: ``left`` frames are emitted with the first chunk, ``right`` at the end."""

    left: int
    right: int
    value: float
    dim: int = 2
    kind: str = "pad"

    def facts(self) -> TimeFacts:
        return TimeFacts(pad_left=self.left, pad_right=self.right, rf_frames=self.left + self.right)

    def taint(self, n: int, left: int, right: int) -> tuple[int, int, int]:
        n_out = n + self.left + self.right
        return n_out, min(n_out, self.left + left), min(n_out, self.right + right)

    def init_state(self, batch: int, like: Tensor) -> State:
        return {"started": _counter(batch, 0, like.device)}

    def _frames(self, x: Tensor, n: int) -> Tensor:
        shape = list(x.shape)
        shape[self.dim] = n
        return x.new_full(shape, self.value)

    def run(self, xs: Sequence[Tensor], st: State, mode: str) -> tuple[Tensor, State]:
        (x,) = xs
        started = int(st["started"][0]) if st["started"].numel() else 0
        parts = []
        if not started and self.left:
            parts.append(self._frames(x, self.left))
        parts.append(x)
        if mode == "flush" and self.right:
            parts.append(self._frames(x, self.right))
        y = torch.cat(parts, dim=self.dim) if len(parts) > 1 else x
        return y, {"started": torch.full_like(st["started"], 1)}


@dataclass
class UpsampleOp(StreamOp):
    """Nearest-neighbour upsampling by an integer factor: every frame repeated, no state needed."""

    factor: int
    dim: int = 2
    kind: str = "upsample"

    def facts(self) -> TimeFacts:
        return TimeFacts(stride=Fraction(1, self.factor), rf_frames=1)

    def init_state(self, batch: int, like: Tensor) -> State:
        return {}

    def owes_at_end(self) -> bool:
        return False

    def run(self, xs: Sequence[Tensor], st: State, mode: str) -> tuple[Tensor, State]:
        (x,) = xs
        return torch.repeat_interleave(x, self.factor, dim=self.dim), st


@dataclass
class ChainOp(StreamOp):
    """Several ops applied in sequence for one graph node (ConvTranspose1d = overlap-add, then trim)."""

    ops: tuple[StreamOp, ...]
    kind: str = "chain"

    def taint(self, n: int, left: int, right: int) -> tuple[int, int, int]:
        for op in self.ops:
            n, left, right = op.taint(n, left, right)
        return n, left, right

    def owes_at_end(self) -> bool:
        return any(op.owes_at_end() for op in self.ops)

    def init_state(self, batch: int, like: Tensor) -> State:
        st: State = {}
        for i, op in enumerate(self.ops):
            st.update({f"{i}.{k}": v for k, v in op.init_state(batch, like).items()})
        return st

    def run(self, xs: Sequence[Tensor], st: State, mode: str) -> tuple[Tensor, State]:
        new: State = {}
        y = xs[0]
        for i, op in enumerate(self.ops):
            pre = f"{i}."
            local = {k[len(pre):]: v for k, v in st.items() if k.startswith(pre)}
            y, out = op.run([y], local, mode)
            new.update({pre + k: v for k, v in out.items()})
        return y, new


@dataclass
class AlignQueues(StreamOp):
    """Delay alignment for ops that combine branches frame by frame (add, mul, cat over channels, ...).

    Branches with different look-ahead produce frames at different times; each branch's frames wait in
    its queue ``q<i>`` until every branch has produced the same frame. ``run`` returns the aligned,
    equal-length blocks; the caller applies the combining op to them.
    """

    dims: tuple[int, ...]  # time axis of each temporal input
    kind: str = "align"

    def owes_at_end(self) -> bool:
        return False  # queues only wait for the other branches, which are counted themselves

    def init_state(self, batch: int, like: Tensor) -> State:
        return {}  # an absent queue is empty; queues appear only while a branch is ahead

    def run(self, xs: Sequence[Tensor], st: State, mode: str) -> tuple[list[Tensor], State]:  # type: ignore[override]
        full = []
        for i, (x, d) in enumerate(zip(xs, self.dims)):
            q = st.get(f"q{i}")
            full.append(torch.cat([q, x], dim=d) if q is not None else x)
        n = min(f.shape[d] for f, d in zip(full, self.dims))
        new: State = {}
        for i, (f, d) in enumerate(zip(full, self.dims)):
            if f.shape[d] > n and mode != "flush":
                new[f"q{i}"] = f.narrow(d, n, f.shape[d] - n)
        return [f.narrow(d, 0, n) for f, d in zip(full, self.dims)], new
