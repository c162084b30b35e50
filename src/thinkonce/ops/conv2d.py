"""2-D layers with the time axis last: spectrogram ``(batch, channels, freq, time)`` and electrode x time
``(batch, 1, electrodes, time)`` models.

``Conv2d``, ``MaxPool2d``/``AvgPool2d``, ``ConvTranspose2d`` and nearest ``Upsample`` slide along time
exactly as their 1-D counterparts do, with a frame being a ``(channels, freq)`` slice: the kernel,
stride, padding and dilation along the first spatial axis (freq, electrodes) are applied inside each
chunk (every frame holds the whole axis, no state needed), along time they are the 1-D op's (state =
the last ``span - 1`` input frames, the stride phase, left padding at the start, right padding or edge
frames at the end). The ops reuse :class:`~thinkonce.stream.layers.SlidingOp`,
:class:`~thinkonce.stream.layers.TransposedConvOp` and :class:`~thinkonce.stream.layers.UpsampleOp` on
frames flattened to ``channels * freq`` rows (their state is ``(batch, channels * freq, frames)``).
A transposed 2-D conv runs as the 1-D transposed conv whose weight maps a flattened input frame to the
flattened output frames (computed once from the 2-D weight).

``BatchNorm2d`` in eval is frame-wise (:mod:`thinkonce.ops.norm`). Time must be the last axis: a model
with ``(batch, channels, time, freq)`` is refused with the hint to transpose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..stream.layers import SlidingOp, State, StreamOp, TransposedConvOp, TrimOp, UpsampleOp
from .context import OpContext
from .conv import _whole_window
from .registry import register_op
from . import upsample as _upsample1d


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            return int(v[0]), int(v[0])
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _check_layout(ctx: OpContext, what: str) -> None:
    if ctx.ndim_in != 4:
        raise ctx.fail(f"{what} needs (batch, channels, freq, time), got shape {ctx.in_shape}")
    if ctx.t != 3:
        raise ctx.fail(f"{what} needs the time axis last (batch, channels, freq, time), but time is on axis "
                       f"{ctx.t} of shape {ctx.in_shape}",
                       "Transpose so that time is the last axis (e.g. x.transpose(2, 3)) and the kernel, "
                       "stride and padding to match, before the layer.")


class _FlatFrames:
    """Runs the 1-D op of the base class on frames flattened to ``channels * freq`` rows."""

    out_frame: tuple[int, ...]

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*self.out_frame, in_shape[-1])

    def run(self, xs: Sequence[Tensor], st: State, mode: str) -> tuple[Tensor, State]:
        (x,) = xs
        b, t = x.shape[0], x.shape[-1]
        rows = 1
        for d in x.shape[1:-1]:
            rows *= d
        y, new = super().run([x.reshape(b, rows, t)], st, mode)  # type: ignore[misc]
        return y.reshape(b, *self.out_frame, y.shape[-1]), new


@dataclass
class Sliding2dOp(_FlatFrames, SlidingOp):
    """``SlidingOp`` along the last axis of (B, C, F, T); ``fn`` gets (B, C*F, T) and returns (B, C'*F', T').

    State: as SlidingOp on flattened frames: ``buf`` (B, C*F, max(pad_left, span - 1)) right-aligned
    with its fill counter, and ``skip`` when the stride outruns the kernel.
    """

    out_frame: tuple[int, ...] = field(default=())


@dataclass
class TransposedConv2dOp(_FlatFrames, TransposedConvOp):
    """``TransposedConvOp`` along the last axis of (B, C, F, T), with the weight of the equivalent 1-D
    transposed conv on flattened frames. State: ``carry`` (B, C'*F', max(span - stride, 0)) and
    ``started``."""

    out_frame: tuple[int, ...] = field(default=())


@dataclass
class Upsample2dOp(UpsampleOp):
    """Nearest upsampling of (B, C, F, T): ``freq`` along F (inside each chunk), ``factor`` along time."""

    freq: int = 1

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (in_shape[0], in_shape[1] * self.freq, *in_shape[2:])

    def run(self, xs: Sequence[Tensor], st: State, mode: str) -> tuple[Tensor, State]:
        (x,) = xs
        if self.freq != 1:
            x = torch.repeat_interleave(x, self.freq, dim=2)
        return super().run([x], st, mode)


def _flat(inner, frame: tuple[int, int]):
    """``inner`` on (B, C, F, T) as a function of flattened frames (B, C*F, T) -> (B, C'*F', T')."""

    def fn(x: Tensor, inner=inner, frame=frame) -> Tensor:
        y = inner(x.reshape(x.shape[0], frame[0], frame[1], x.shape[-1]))
        return y.reshape(y.shape[0], y.shape[1] * y.shape[2], y.shape[-1])

    return fn


def _out_frame(ctx: OpContext) -> tuple[int, int]:
    return int(ctx.out_shape[1]), int(ctx.out_shape[2])


def _time_op_or_framewise(ctx: OpContext, inner, kt: int, st: int, dt: int, pl: int, pr: int, pad_value: float,
                          kind: str):
    """A frame-wise call when the kernel spans one frame, else the sliding op along time."""
    c, f = int(ctx.in_shape[1]), int(ctx.in_shape[2])
    if kt == 1 and st == 1 and pl == 0 and pr == 0:
        src = ctx.node.args[0]
        return ctx.framewise(call=lambda look, src=src, inner=inner: inner(look(src)))
    co, fo = _out_frame(ctx)
    return Sliding2dOp(_flat(inner, (c, f)), kt, st, dt, pl, pr, pad_value, c * f, co * fo, kind=kind,
                       out_frame=(co, fo))


# ---------------------------------------------------------------------------- Conv2d
def conv2d_plan(ctx: OpContext, w: Tensor, b: Tensor | None, stride: Any, padding: Any, dilation: Any,
                groups: int, padding_mode: str = "zeros"):
    _check_layout(ctx, "a 2-D convolution")
    head = _whole_window(ctx, "a convolution")
    if head is not None:
        return head
    kf, kt = int(w.shape[2]), int(w.shape[3])
    sf, st = _pair(stride)
    df, dt = _pair(dilation)
    if padding == "same":
        tf, tt = df * (kf - 1), dt * (kt - 1)
        (pfl, pfr), (ptl, ptr) = (tf // 2, tf - tf // 2), (tt // 2, tt - tt // 2)
    elif padding == "valid":
        pfl = pfr = ptl = ptr = 0
    else:
        pf, pt = _pair(padding)
        pfl = pfr = pf
        ptl = ptr = pt
    if padding_mode == "circular" and (ptl or ptr):
        raise ctx.fail("padding_mode='circular' wraps the end of the signal around to its start",
                       "Use zero, reflect or replicate padding along time.")
    fmode = "constant" if padding_mode == "zeros" else padding_mode

    def inner(x: Tensor, w=w, b=b, s=(sf, st), d=(df, dt), g=int(groups), fp=(pfl, pfr), fmode=fmode) -> Tensor:
        if fp[0] or fp[1]:
            x = F.pad(x, (0, 0, fp[0], fp[1]), mode=fmode)
        return F.conv2d(x, w, b, s, 0, d, g)

    if padding_mode != "zeros" and (ptl or ptr):
        from .pad import EdgePadOp

        if padding_mode not in ("reflect", "replicate"):
            raise ctx.fail(f"padding_mode={padding_mode!r}")
        conv = _time_op_or_framewise(ctx, inner, kt, st, dt, 0, 0, 0.0, "conv")
        if not isinstance(conv, StreamOp):  # pragma: no cover - a padded time axis has a kernel > 1
            raise ctx.fail("edge padding of a one-frame kernel")
        return ctx.temporal([EdgePadOp(padding_mode, ptl, ptr, dim=3), conv])
    op = _time_op_or_framewise(ctx, inner, kt, st, dt, ptl, ptr, 0.0, "conv")
    return op if not isinstance(op, StreamOp) else ctx.temporal(op)


@register_op(nn.Conv2d)
def conv2d_module(ctx: OpContext):
    m = ctx.module
    assert isinstance(m, nn.Conv2d)
    return conv2d_plan(ctx, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups, m.padding_mode)


@register_op(F.conv2d, torch.conv2d, torch.ops.aten.conv2d)
def conv2d_function(ctx: OpContext):
    v = ctx.value
    return conv2d_plan(ctx, v(ctx.arg(1, "weight")), v(ctx.arg(2, "bias")), v(ctx.arg(3, "stride", 1)),
                       v(ctx.arg(4, "padding", 0)), v(ctx.arg(5, "dilation", 1)), int(v(ctx.arg(6, "groups", 1))))


# ---------------------------------------------------------------------------- pooling
def _ceil_extra(ctx: OpContext, kt: int, st: int, dt: int, pt: int, kind: str) -> int:
    """Right padding frames along time that reproduce ``ceil_mode=True``.

    PyTorch adds windows while they start inside the input or its left padding (``j*s <= L + p - 1``) and
    reach no further than ``s - 1`` frames past the right padding, i.e. ``min(s - 1, span - p - 1)`` extra
    frames; for max pooling they are ``-inf``. Average pooling divides such a partial window by its real
    frames only, which no padding reproduces: accepted only where no partial window occurs.
    """
    span = dt * (kt - 1) + 1
    extra = max(0, min(st - 1, span - pt - 1))
    if extra == 0:
        return 0
    floor_len = (int(ctx.in_shape[3]) + 2 * pt - span) // st + 1
    if ctx.window is not None and ctx.out_shape[3] == floor_len:
        return 0  # window mode: the window's length leaves no partial window
    if kind == "maxpool":
        return extra
    raise ctx.fail("ceil_mode=True with average pooling adds a partial last window along time whose value no "
                   "streaming padding reproduces", "Use ceil_mode=False.")


def pool2d_plan(ctx: OpContext, kind: str, kernel: Any, stride: Any, padding: Any, dilation: Any,
                ceil_mode: bool, count_include_pad: bool = True, divisor_override: Any = None):
    _check_layout(ctx, "MaxPool2d" if kind == "maxpool" else "AvgPool2d")
    head = _whole_window(ctx, "a pooling layer")
    if head is not None:
        return head
    (kf, kt) = _pair(kernel)
    (sf, st) = _pair(stride if stride not in (None, [], ()) else kernel)
    (pf, pt) = _pair(padding)
    (df, dt) = _pair(dilation)
    if kind == "avgpool" and pt and not count_include_pad:
        raise ctx.fail("count_include_pad=False with padding along time", "Use count_include_pad=True.")
    extra = _ceil_extra(ctx, kt, st, dt, pt, kind) if ceil_mode else 0
    if kind == "maxpool":
        def inner(x: Tensor, k=(kf, kt), s=(sf, st), p=(pf, 0), d=(df, dt), c=bool(ceil_mode)) -> Tensor:
            return F.max_pool2d(x, k, s, p, d, ceil_mode=c)

        op = _time_op_or_framewise(ctx, inner, kt, st, dt, pt, pt + extra, float("-inf"), "maxpool")
    else:
        def inner(x: Tensor, k=(kf, kt), s=(sf, st), p=(pf, 0), c=bool(ceil_mode), ci=bool(count_include_pad),
                  dv=divisor_override) -> Tensor:
            return F.avg_pool2d(x, k, s, p, ceil_mode=c, count_include_pad=ci, divisor_override=dv)

        op = _time_op_or_framewise(ctx, inner, kt, st, 1, pt, pt + extra, 0.0, "avgpool")
    return op if not isinstance(op, StreamOp) else ctx.temporal(op)


@register_op(nn.MaxPool2d)
def maxpool2d_module(ctx: OpContext):
    m = ctx.module
    assert isinstance(m, nn.MaxPool2d)
    if m.return_indices:
        raise ctx.fail("return_indices=True", "Use return_indices=False.")
    return pool2d_plan(ctx, "maxpool", m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)


@register_op(F.max_pool2d, torch.max_pool2d, torch.ops.aten.max_pool2d)
def maxpool2d_function(ctx: OpContext):
    v = ctx.value
    if v(ctx.arg(6, "return_indices", False)):
        raise ctx.fail("return_indices=True", "Use return_indices=False.")
    return pool2d_plan(ctx, "maxpool", v(ctx.arg(1, "kernel_size")), v(ctx.arg(2, "stride", None)),
                       v(ctx.arg(3, "padding", 0)), v(ctx.arg(4, "dilation", 1)), bool(v(ctx.arg(5, "ceil_mode", False))))


@register_op(nn.AvgPool2d)
def avgpool2d_module(ctx: OpContext):
    m = ctx.module
    assert isinstance(m, nn.AvgPool2d)
    return pool2d_plan(ctx, "avgpool", m.kernel_size, m.stride, m.padding, 1, m.ceil_mode, m.count_include_pad,
                       m.divisor_override)


@register_op(F.avg_pool2d, torch.ops.aten.avg_pool2d)
def avgpool2d_function(ctx: OpContext):
    v = ctx.value
    return pool2d_plan(ctx, "avgpool", v(ctx.arg(1, "kernel_size")), v(ctx.arg(2, "stride", None)),
                       v(ctx.arg(3, "padding", 0)), 1, bool(v(ctx.arg(4, "ceil_mode", False))),
                       bool(v(ctx.arg(5, "count_include_pad", True))), v(ctx.arg(6, "divisor_override", None)))


@register_op(nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d)
def adaptive_pool2d(ctx: OpContext):
    """Pooling the first spatial axis only (``output_size=(k, None)``) is frame-wise; anything else pools time."""
    size = ctx.module.output_size if ctx.module is not None else ctx.value(ctx.arg(1, "output_size"))  # type: ignore[union-attr]
    if isinstance(size, (tuple, list)) and len(size) == 2 and size[1] is None and ctx.ndim_in == 4 and ctx.t == 3:
        if getattr(ctx.module, "return_indices", False):
            raise ctx.fail("return_indices=True", "Use return_indices=False.")
        return ctx.framewise()
    what = type(ctx.module).__name__ if ctx.module is not None else ctx.target_name()
    return ctx.mixing(f"{what} pools the whole time axis")


# ---------------------------------------------------------------------------- ConvTranspose2d
def _flat_transposed_weight(w: Tensor, fin: int, sf: int, pf: int, opf: int, df: int, dt: int,
                            groups: int) -> tuple[Tensor, int]:
    """The 1-D transposed-conv weight (C*F, C'*F', kt) on flattened frames, and F'."""
    c = int(w.shape[0])
    kt = int(w.shape[3])
    eye = torch.eye(c * fin, dtype=w.dtype, device=w.device).reshape(c * fin, c, fin, 1)
    with torch.no_grad():
        y = F.conv_transpose2d(eye, w.detach(), None, stride=(sf, 1), padding=(pf, 0), output_padding=(opf, 0),
                               groups=groups, dilation=(df, dt))  # (C*F, C', F', dt*(kt-1)+1)
    fo = int(y.shape[2])
    return y.reshape(c * fin, -1, y.shape[3])[:, :, ::dt].contiguous(), fo


def transposed2d_plan(ctx: OpContext, w: Tensor, b: Tensor | None, stride: Any, padding: Any,
                      output_padding: Any, groups: int, dilation: Any):
    _check_layout(ctx, "a transposed 2-D convolution")
    (sf, st), (pf, pt), (opf, opt), (df, dt) = _pair(stride), _pair(padding), _pair(output_padding), _pair(dilation)
    fin = int(ctx.in_shape[2])
    w1, fo = _flat_transposed_weight(w, fin, sf, pf, opf, df, dt, int(groups))
    co = int(w.shape[1]) * int(groups)
    b1 = None if b is None else b.detach().repeat_interleave(fo)
    ops: list[StreamOp] = [TransposedConv2dOp(w1, b1, st, dt, 1, opt, co * fo, out_frame=(co, fo))]
    if pt:
        ops.append(TrimOp(pt, pt, dim=3))
    return ctx.temporal(ops)


@register_op(nn.ConvTranspose2d)
def conv_transpose2d_module(ctx: OpContext):
    m = ctx.module
    assert isinstance(m, nn.ConvTranspose2d)
    if m.padding_mode != "zeros":
        raise ctx.fail(f"padding_mode={m.padding_mode!r}")
    return transposed2d_plan(ctx, m.weight, m.bias, m.stride, m.padding, m.output_padding, m.groups, m.dilation)


@register_op(F.conv_transpose2d, torch.conv_transpose2d)
def conv_transpose2d_function(ctx: OpContext):
    v = ctx.value
    return transposed2d_plan(ctx, v(ctx.arg(1, "weight")), v(ctx.arg(2, "bias")), v(ctx.arg(3, "stride", 1)),
                             v(ctx.arg(4, "padding", 0)), v(ctx.arg(5, "output_padding", 0)),
                             int(v(ctx.arg(6, "groups", 1))), v(ctx.arg(7, "dilation", 1)))


# ---------------------------------------------------------------------------- nearest upsampling
def upsample2d_plan(ctx: OpContext, mode: str, size: Any, scale: Any):
    if mode != "nearest" or size is not None or scale is None:
        raise ctx.fail(f"interpolation mode={mode!r}, size={size!r} needs the whole signal",
                       "Only nearest upsampling by an integer scale_factor streams exactly.")
    _check_layout(ctx, "2-D upsampling")
    sf, stime = (scale, scale) if not isinstance(scale, (tuple, list)) else (scale[0], scale[-1])
    for f in (sf, stime):
        if float(f) != int(f) or int(f) < 1:
            raise ctx.fail(f"scale_factor {f} is not a positive integer")
    sf, stime = int(sf), int(stime)
    if stime == 1:
        return ctx.framewise()
    return ctx.temporal(Upsample2dOp(stime, dim=3, freq=sf))


@register_op(nn.Upsample)
def upsample_module(ctx: OpContext):
    m = ctx.module
    assert isinstance(m, nn.Upsample)
    if ctx.ndim_in == 4:
        return upsample2d_plan(ctx, m.mode, m.size, m.scale_factor)
    return _upsample1d.upsample_module(ctx)


@register_op(F.interpolate, F.upsample, F.upsample_nearest)
def interpolate(ctx: OpContext):
    if ctx.ndim_in != 4:
        return _upsample1d.interpolate(ctx)
    if ctx.node.target is F.upsample_nearest:
        return upsample2d_plan(ctx, "nearest", ctx.arg(1, "size"), ctx.arg(2, "scale_factor"))
    return upsample2d_plan(ctx, ctx.arg(3, "mode", "nearest"), ctx.arg(1, "size"), ctx.arg(2, "scale_factor"))


# ---------------------------------------------------------------------------- in-place ReLU (PANNs' F.relu_)
@register_op(torch.relu_, F.relu_)
def relu_inplace(ctx: OpContext):
    """Frame-wise, run out of place: a chunk may share memory with a state entry."""
    src = ctx.node.args[0]
    return ctx.framewise(call=lambda look, src=src: torch.relu(look(src)))
