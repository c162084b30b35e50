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
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..ops.conv2d import Sliding2dOp
from ..ops.context import OpContext
from ..ops.registry import register_op
from ..stream.kernels import conv1d
from ..stream.layers import SlidingOp, State, StreamOp, TimeFacts, TrimOp, UpsampleOp
from . import conv as soi_conv
from .fill import INTERPOLATION_WEIGHTS, crop_like, duplicate, interleave, interpolate, interpolate_pairs

_RELEASE: contextvars.ContextVar[bool] = contextvars.ContextVar("thinkonce_soi_release", default=False)


@contextlib.contextmanager
def releasing() -> Iterator[None]:
    """While active, shifted S-CC entries feed their held frame: the deep path runs ahead (FP)."""
    token = _RELEASE.set(True)
    try:
        yield
    finally:
        _RELEASE.reset(token)


# ---------------------------------------------------------------------------- shifted convolutions
@dataclass
class ShiftedOp(StreamOp):
    """A causal sliding op (left padding includes the shift) fed all but the newest input frame.

    State: ``held`` (B, C[, F], 0 or 1) the newest frame, not yet fed; the inner op's ``buf``/``skip``.
    At the end of the stream the held frame is dropped (the training form drops the last input frame).
    ``entry``: an S-CC (stride 2), which :func:`releasing` lets run ahead.
    """

    inner: SlidingOp
    frame: tuple[int, ...]  # (C,) or (C, F): the shape of one input frame
    entry: bool
    kind: str = "shifted_conv"
    #: state entries whose shape depends on whether precompute ran (backends key their graphs on them)
    layout_keys: tuple[str, ...] = field(default=("held",))

    def facts(self) -> TimeFacts:
        f = self.inner.facts()
        return TimeFacts(f.stride, f.span, f.pad_left, -1, f.rf_frames)

    def taint(self, n: int, left: int, right: int) -> tuple[int, int, int]:
        n, left, right = TrimOp(0, 1).taint(n, left, right)
        return self.inner.taint(n, left, right)

    def owes_at_end(self) -> bool:
        return False

    def init_state(self, batch: int, like: Tensor) -> State:
        st = self.inner.init_state(batch, like)
        st["held"] = like.new_zeros((batch, *self.frame, 0))
        return st

    def run(self, xs: Sequence[Tensor], st: State, mode: str) -> tuple[Tensor, State]:
        (x,) = xs
        held = st["held"]
        full = torch.cat([held, x], dim=-1) if x.shape[-1] else held
        n = full.shape[-1]
        inner_st = {k: v for k, v in st.items() if k != "held"}
        if self.entry and mode == "step" and _RELEASE.get():
            feed, keep = full, full.narrow(-1, n, 0)
        elif n:
            feed, keep = full.narrow(-1, 0, n - 1), full.narrow(-1, n - 1, 1)
        else:
            feed, keep = full, full
        if mode == "flush":
            keep = keep.narrow(-1, 0, 0)
        y, new = self.inner.run([feed], inner_st, "step" if mode == "flush" else mode)
        new["held"] = keep
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


@register_op(crop_like)
def crop_like_op(ctx: OpContext):
    """Frame-wise over two aligned inputs: the deep frames wait for the full-rate ones."""
    if len(ctx.targs) != 2 or ctx.targs[0] is not ctx.node.args[0]:
        raise ctx.fail("crop_like(y, like) needs both y and like to depend on the signal",
                       "Pass like= a full-rate tensor of the stream (the S-CC's input or the skip connection).")
    return ctx.framewise(call=lambda look, y=ctx.node.args[0]: look(y))


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
        n_out = 2 * n
        return (n_out, min(n_out, 2 * left + (1 if left else 0)),
                min(n_out, 2 * right + 2 * self.ahead if right else 0))

    def init_state(self, batch: int, like: Tensor) -> State:
        return {"q": like.new_zeros((batch, *self.frame, 0))}

    def run(self, xs: Sequence[Tensor], st: State, mode: str) -> tuple[Tensor, State]:
        (x,) = xs
        weights, ahead = INTERPOLATION_WEIGHTS[self.mode]
        q = st["q"]
        parts: list[Tensor] = []
        if x.shape[-1]:
            if q.shape[-1] == 0:  # the first computed frame: slot 0, and the left clamp
                first = x.narrow(-1, 0, 1)
                parts.append(first)
                q = torch.cat([first, x], dim=-1)
            else:
                q = torch.cat([q, x], dim=-1)
        flushing = mode == "flush" and q.shape[-1] > 0
        if flushing:
            last = q.narrow(-1, q.shape[-1] - 1, 1)
            q = torch.cat([q] + [last] * ahead, dim=-1)
        n_pairs = q.shape[-1] - (ahead + 1)
        if n_pairs > 0:
            odd, even = interpolate_pairs(q, weights)
            pairs = interleave(odd, even)
            if flushing:
                pairs = pairs.narrow(-1, 0, pairs.shape[-1] - 1)  # the clamp's own even slot is not a frame
            parts.append(pairs)
            q = q.narrow(-1, n_pairs, q.shape[-1] - n_pairs)
        if mode == "flush":
            q = q.narrow(-1, 0, 0)
        y = torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0] if parts else x.new_zeros((*x.shape[:-1], 0))
        return y, {"q": q}


@register_op(interpolate)
def interpolate_op(ctx: OpContext):
    mode = ctx.value(ctx.arg(1, "mode"))
    if mode not in INTERPOLATION_WEIGHTS:
        raise ctx.fail(f"interpolation mode {mode!r}")
    if ctx.t != ctx.ndim_in - 1:
        raise ctx.fail("interpolation of computed frames needs the time axis last")
    return ctx.temporal(InterpolateOp(mode, tuple(int(v) for v in ctx.in_shape[1:-1])))
