"""Stream ops of the SOI layers, registered with the core's op registry (:func:`thinkonce.register_op`).

Nothing here edits the converter: each layer declares its time-axis facts and the converter does the
rest. An S-CC is a sliding op of stride 2 (``TimeFacts.stride == 2``), so everything after it runs at
half the frame rate: on a step whose new input completes no S-CC frame, the deep path receives empty
chunks and computes nothing. The fills double the rate again (stride 1/2); ``crop_like`` is a frame-wise
op of two inputs, so the converter aligns it with a queue (the deep frames wait for their full-rate
partner, which is how frames computed ahead are held until their slot).

The shifted convs run as :class:`ShiftedOp`: the causal sliding op fed one frame late (the newest frame
is held back), so frame ``t`` is emitted when input ``t`` arrives although it only needs inputs ``< t``.
Inside :func:`releasing` (what :meth:`thinkonce.Stream.precompute` runs) an S-CC entry feeds its held
frame too: the deep path computes the frames of the next slot ahead of time.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..ops.conv2d import Sliding2dOp
from ..ops.context import OpContext
from ..ops.registry import register_op
from ..stream.kernels import conv1d
from ..stream.layers import (AlignQueues, SlidingOp, State, StreamOp, TimeFacts, TrimOp, UpsampleOp,
                             _overflow)
from ..stream.layout import RELEASE_MODE
from ..stream.state import Field, counter
from . import conv as soi_conv
from .fill import INTERPOLATION_WEIGHTS, crop_like, duplicate, interleave, interpolate, interpolate_pairs

_RELEASE: contextvars.ContextVar[bool] = contextvars.ContextVar("thinkonce_soi_release", default=False)
_HOLD: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("thinkonce_soi_hold", default=frozenset())


@contextlib.contextmanager
def releasing(hold: frozenset[str] = frozenset()) -> Iterator[None]:
    """While active, shifted S-CC entries feed their held frame: the deep path runs ahead (FP); the
    fill alignments named in ``hold`` (where released frames meet full-rate data) only queue."""
    t1, t2 = _RELEASE.set(True), _HOLD.set(hold)
    try:
        yield
    finally:
        _RELEASE.reset(t1)
        _HOLD.reset(t2)


# ---------------------------------------------------------------------------- shifted convolutions
@dataclass
class ShiftedOp(StreamOp):
    """A causal sliding op (left padding includes the shift) fed all but the newest input frame.

    State (fixed layout): the inner op's ``buf``/``fill`` (and ``skip``) and ``held`` (C[, F], 1), the
    newest frame not yet fed, valid when its counter ``nheld`` is 1. ``entry``: a shifted S-CC
    (stride 2), which :func:`releasing` lets run ahead (it feeds its held frame, ``nheld`` becomes 0
    although frames have arrived: the one counter whose value depends on more than the phase, so it is
    the op's :attr:`layout_keys`). At the end of the stream an entry feeds its held frame (the training
    form keeps the frame predicted past the signal), while a plain shifted conv drops it (its training
    form drops the last input frame).
    """

    inner: SlidingOp
    frame: tuple[int, ...]  # (C,) or (C, F): the shape of one input frame
    entry: bool
    kind: str = "shifted_conv"
    #: counters whose value depends on whether precompute ran (the trace key and the clock check read them)
    layout_keys: tuple[str, ...] = ("nheld",)

    def __post_init__(self) -> None:
        if not self.entry:
            self.layout_keys = ()

    @property
    def releases(self) -> bool:
        """Whether precompute lets this op feed its held frame (frame counts in ``"release"`` mode)."""
        return self.entry

    def facts(self) -> TimeFacts:
        f = self.inner.facts()
        return TimeFacts(f.stride, f.span, f.pad_left, 0 if self.entry else -1, f.rf_frames)

    def taint(self, n: int, left: int, right: int) -> tuple[int, int, int]:
        if not self.entry:
            n, left, right = TrimOp(0, 1).taint(n, left, right)
        return self.inner.taint(n, left, right)

    def owes_at_end(self) -> bool:
        return self.entry

    def state_spec(self, in_shapes, dtype):
        spec = dict(self.inner.state_spec(in_shapes, dtype))
        ax = len(self.frame)
        spec["held"] = Field((*self.frame, 1), dtype, ax, "nheld")
        spec["nheld"] = counter(0)
        return spec

    def out_shape(self, in_shape):
        return self.inner.out_shape(in_shape)

    def frames_out(self, m: Tensor, mode: str = "step") -> Tensor:
        """All but the newest frame are fed; in ``"release"`` mode (a state after precompute) an entry
        has fed every frame."""
        fed = m if (self.entry and mode == RELEASE_MODE) else torch.clamp(m - 1, min=0)
        return self.inner.frames_out(fed, "step" if mode == RELEASE_MODE else mode)

    def run(self, xs: Sequence[Tensor], st: State, mode: str) -> tuple[Tensor, State]:
        (x,) = xs
        held = st["held"]
        nheld: int = st["nheld"]  # type: ignore[assignment]
        n = x.shape[-1]
        full = torch.cat([held, x], dim=-1) if n else held  # 1 + n frames, valid: the last nheld + n
        avail = nheld + n
        start = 1 - nheld
        inner_st = {k: v for k, v in st.items() if k not in ("held", "nheld")}
        release = self.entry and mode == "step" and _RELEASE.get()
        if release or (mode == "flush" and self.entry):
            n_feed, keep = avail, 0
        elif mode == "flush":  # a shifted conv drops the frame after the signal
            n_feed, keep = max(avail - 1, 0), 0
        else:
            n_feed, keep = max(avail - 1, 0), min(avail, 1)
        feed = full if (start == 0 and n_feed == full.shape[-1]) else full.narrow(-1, start, n_feed)
        y, new = self.inner.run([feed], inner_st, "step" if mode == "flush" else mode)
        new["held"] = full.narrow(-1, n, 1) if n else held
        new["nheld"] = keep
        return y, new


def _sliding_1d(ctx: OpContext, m: torch.nn.Conv1d, pad_left: int, stride: int) -> SlidingOp:
    w, b, d, g = m.weight, m.bias, int(m.dilation[0]), int(m.groups)

    def fn(x: Tensor, w=w, b=b, s=stride, d=d, g=g) -> Tensor:
        return conv1d(x, w, b, s, d, g)

    return SlidingOp(fn, int(m.kernel_size[0]), stride, d, pad_left, 0, 0.0, int(m.in_channels), int(m.out_channels))


def _sliding_2d(ctx: OpContext, m: torch.nn.Conv2d, pad_left: int, stride: int) -> SlidingOp:
    c, f = int(ctx.in_shape[1]), int(ctx.in_shape[2])
    co, fo = int(ctx.out_shape[1]), int(ctx.out_shape[2])
    w, b = m.weight, m.bias
    s = (int(m.stride[0]), stride)
    p, dl, g = (int(m.padding[0]), 0), (int(m.dilation[0]), int(m.dilation[1])), int(m.groups)

    def fn(x: Tensor, w=w, b=b, s=s, p=p, dl=dl, g=g, c=c, f=f) -> Tensor:
        y = F.conv2d(x.reshape(x.shape[0], c, f, x.shape[-1]), w, b, s, p, dl, g)
        return y.reshape(y.shape[0], y.shape[1] * y.shape[2], y.shape[-1])

    return Sliding2dOp(fn, int(m.kernel_size[1]), stride, int(m.dilation[1]), pad_left, 0, 0.0, c * f, co * fo,
                       kind="conv", out_frame=(co, fo))


def _check_time_last(ctx: OpContext, ndim: int, what: str) -> None:
    if ctx.ndim_in != ndim or ctx.t != ndim - 1:
        layout = "(batch, channels, time)" if ndim == 3 else "(batch, channels, freq, time)"
        raise ctx.fail(f"{what} needs {layout} with time last, got shape {ctx.in_shape} with time on axis {ctx.t}",
                       "Feed the layer its documented layout.")


@register_op(*soi_conv.SOI_CONVS)
def soi_conv_op(ctx: OpContext):
    """S-CC: a causal sliding op of stride 2. Shifted convs: the same, fed one frame late."""
    m = ctx.module
    assert isinstance(m, (soi_conv._Causal1d, soi_conv._Causal2d))
    two_d = isinstance(m, soi_conv._Causal2d)
    _check_time_last(ctx, 4 if two_d else 3, type(m).__name__)
    make = _sliding_2d if two_d else _sliding_1d
    inner = make(ctx, m, m.causal_padding, m.time_stride)  # type: ignore[arg-type]
    if not m.shift:
        return ctx.temporal(inner)
    frame = tuple(int(v) for v in ctx.in_shape[1:-1])
    return ctx.temporal(ShiftedOp(inner, frame, entry=m.time_stride == 2))


# ---------------------------------------------------------------------------- fills
@register_op(duplicate)
def duplicate_op(ctx: OpContext):
    if ctx.t != ctx.ndim_in - 1:
        raise ctx.fail("duplication of computed frames needs the time axis last")
    return ctx.temporal(UpsampleOp(2, dim=ctx.t))


@dataclass
class HoldingAlign(AlignQueues):
    """The alignment of a fill with its full-rate partner; while :func:`releasing` names it, it only
    queues (frames computed ahead wait for the next step, where the shallow path joins them)."""

    name: str = ""
    kind: str = "soi_align"
    #: inputs whose values reach the output (``like`` only lends its length): the zero-padding reach
    #: of :func:`thinkonce.stream.bounds.zero_padding_reach` follows these
    value_args: tuple[int, ...] = (0,)
    #: in ``"release"`` frame counts, frames computed ahead wait here (see thinkonce.stream.layout)
    holds_on_release: bool = True

    @property
    def layout_keys(self) -> tuple[str, ...]:  # type: ignore[override]
        """The queue fills: how many frames computed ahead wait here depends on when precompute ran."""
        return tuple(f"n{i}" for i, b in enumerate(self._bounds()) if b)

    def run(self, xs: Sequence[Tensor], st: State, mode: str) -> tuple[list[Tensor], State]:  # type: ignore[override]
        if mode == "step" and self.name in _HOLD.get():
            new = dict(st)
            for i, (x, d, b) in enumerate(zip(xs, self.dims, self._bounds())):
                m = x.shape[d]
                if not m:
                    continue
                k: int = st.get(f"n{i}", 0)  # type: ignore[assignment]
                if k + m > b:
                    raise _overflow(self, f"queue q{i}", k + m, b)
                q = st[f"q{i}"]
                new[f"q{i}"] = torch.cat([q, x], dim=d).narrow(d, m, b)
                new[f"n{i}"] = k + m
            return [x.narrow(d, 0, 0) for x, d in zip(xs, self.dims)], new
        return super().run(xs, st, mode)


@register_op(crop_like)
def crop_like_op(ctx: OpContext):
    """Frame-wise over two aligned inputs: the deep frames wait for the full-rate ones."""
    if len(ctx.targs) != 2 or ctx.targs[0] is not ctx.node.args[0]:
        raise ctx.fail("crop_like(y, like) needs both y and like to depend on the signal",
                       "Pass like= a full-rate tensor of the stream (the S-CC's input or the skip connection).")
    plan = ctx.framewise(call=lambda look, y=ctx.node.args[0]: look(y))
    assert isinstance(plan.op, AlignQueues)
    plan.op = HoldingAlign(plan.op.dims, name=ctx.node.name)
    return plan


@dataclass
class InterpolateOp(StreamOp):
    """Slot ``2j + 1`` from computed frames ``y[j - 1] .. y[j + ahead]`` (clamped at the ends).

    State: ``q`` (B, C[, F], frames) the last ``ahead + 1`` frames of the left-clamped sequence
    (``y[0]`` twice, then ``y[1]``, ...), empty before the first frame. Emits slot 0 with the first
    frame, then a pair (odd slot, next even slot) per new frame once ``ahead`` frames are known; at
    the end of the stream the sequence is clamped on the right and the pairs finished.
    """

    mode: str
    frame: tuple[int, ...]
    kind: str = "interpolate"

    @property
    def ahead(self) -> int:
        return INTERPOLATION_WEIGHTS[self.mode][1]

    def facts(self) -> TimeFacts:
        return TimeFacts(stride=Fraction(1, 2), span=self.ahead + 2, rf_frames=self.ahead + 2)

    def taint(self, n: int, left: int, right: int) -> tuple[int, int, int]:
        """Slot ``2j`` is ``y[j]``; slot ``2j + 1`` reads ``y[j + o]`` for the offsets ``o`` of its
        non-zero weights, clamped at the ends: a clamped frame stands where a longer signal has a real
        one, so it counts as padding. The tainted edges are the shortest prefix and suffix holding every
        slot that reads a tainted or clamped frame (the even slots among them may be exact)."""
        weights, _ = INTERPOLATION_WEIGHTS[self.mode]
        offsets = [i - 1 for i, w in enumerate(weights) if w]
        lo, hi = min(offsets), max(offsets)
        n_out = 2 * n
        out_left = max(2 * left - 1 if left else 0, 2 * (left - lo) if left - lo > 0 else 0)
        out_right = max(2 * right, 2 * (right + hi) - 1 if right + hi > 0 else 0)
        return n_out, min(n_out, out_left), min(n_out, out_right)

    def state_spec(self, in_shapes, dtype):
        return {"q": Field((*self.frame, self.ahead + 1), dtype, len(self.frame), "nq"), "nq": counter(0)}

    def frames_out(self, m: Tensor, mode: str = "step") -> Tensor:
        """Slot 0 with the first frame, then a pair per frame once ``ahead`` more are known."""
        return torch.where(m > 0, 1 + 2 * torch.clamp(m - self.ahead, min=0), 0)

    def run(self, xs: Sequence[Tensor], st: State, mode: str) -> tuple[Tensor, State]:
        (x,) = xs
        weights, ahead = INTERPOLATION_WEIGHTS[self.mode]
        L = ahead + 1
        buf = st["q"]
        nq: int = st["nq"]  # type: ignore[assignment]
        n = x.shape[-1]
        parts: list[Tensor] = []
        pieces = [buf]
        if n and nq == 0:  # the first computed frame: slot 0, and the left clamp
            first = x.narrow(-1, 0, 1)
            parts.append(first)
            pieces.append(first)
        if n:
            pieces.append(x)
        full = torch.cat(pieces, dim=-1) if len(pieces) > 1 else buf  # valid: the last `avail` frames
        avail = nq + (n + 1 if n and nq == 0 else n)
        q = full.narrow(-1, full.shape[-1] - avail, avail) if avail != full.shape[-1] else full
        flushing = mode == "flush" and avail > 0
        if flushing:
            last = q.narrow(-1, q.shape[-1] - 1, 1)
            q = torch.cat([q] + [last] * ahead, dim=-1)
        n_pairs = q.shape[-1] - L
        if n_pairs > 0:
            odd, even = interpolate_pairs(q, weights)
            pairs = interleave(odd, even)
            if flushing:
                pairs = pairs.narrow(-1, 0, pairs.shape[-1] - 1)  # the clamp's own even slot is not a frame
            parts.append(pairs)
        rest = min(q.shape[-1], L)
        new_q = buf if not n else full.narrow(-1, full.shape[-1] - L, L)
        y = torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0] if parts else x.new_zeros((*x.shape[:-1], 0))
        return y, {"q": new_q, "nq": 0 if mode == "flush" else rest}  # type: ignore[dict-item]


@register_op(interpolate)
def interpolate_op(ctx: OpContext):
    mode = ctx.value(ctx.arg(1, "mode"))
    if mode not in INTERPOLATION_WEIGHTS:
        raise ctx.fail(f"interpolation mode {mode!r}")
    if ctx.t != ctx.ndim_in - 1:
        raise ctx.fail("interpolation of computed frames needs the time axis last")
    return ctx.temporal(InterpolateOp(mode, tuple(int(v) for v in ctx.in_shape[1:-1])))
