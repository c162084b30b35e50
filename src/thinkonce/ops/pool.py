"""Pooling over time: ``Max/AvgPool1d`` (and their functions) as a sliding kernel with state.

``ceil_mode=True`` adds a last, partial window at the end of the signal. For max pooling without
padding that is ``stride - 1`` frames of ``-inf`` on the right (emitted at the end of the stream, or at
each window's edge); average pooling would divide that window by its real frames only, which no
padding reproduces, so it is accepted only where the example shows the partial window never occurs.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..stream.layers import SlidingOp
from .context import OpContext, single
from .conv import _check_layout, _whole_window
from .registry import register_op


def _ceil_extra(ctx: OpContext, k: int, s: int, d: int, p: int, kind: str) -> int:
    """Right padding frames that reproduce ``ceil_mode=True`` (0 where it changes nothing)."""
    span = d * (k - 1) + 1
    n_in = ctx.in_shape[2]
    floor_len = (n_in + 2 * p - span) // s + 1
    if ctx.window is not None and ctx.out_shape[2] == floor_len:
        return 0  # window mode: the window's length leaves no partial window
    if kind == "maxpool" and p == 0 and span >= s:
        return s - 1
    raise ctx.fail(f"ceil_mode=True with {'padding' if p else 'average pooling'} adds a partial last window "
                   "whose value no streaming padding reproduces", "Use ceil_mode=False.")


def pool_plan(ctx: OpContext, kind: str, k: int, s: int, d: int, p: int, ceil_mode: bool,
              count_include_pad: bool = True):
    _check_layout(ctx, f"{'MaxPool1d' if kind == 'maxpool' else 'AvgPool1d'}")
    head = _whole_window(ctx, "a pooling layer")
    if head is not None:
        return head
    if kind == "avgpool" and p and not count_include_pad:
        raise ctx.fail("count_include_pad=False with padding", "Use count_include_pad=True.")
    extra = _ceil_extra(ctx, k, s, d, p, kind) if ceil_mode else 0
    c = int(ctx.in_shape[1])
    if kind == "maxpool":
        def fn(x: torch.Tensor, k=k, s=s, d=d) -> torch.Tensor:
            return F.max_pool1d(x, k, s, 0, d)

        op = SlidingOp(fn, k, s, d, p, p + extra, float("-inf"), c, None, kind="maxpool")
    else:
        def fn(x: torch.Tensor, k=k, s=s) -> torch.Tensor:
            return F.avg_pool1d(x, k, s, 0)

        op = SlidingOp(fn, k, s, 1, p, p + extra, 0.0, c, None, kind="avgpool")
    return ctx.temporal(op)


@register_op(nn.MaxPool1d)
def maxpool_module(ctx: OpContext):
    m = ctx.module
    assert isinstance(m, nn.MaxPool1d)
    if m.return_indices:
        raise ctx.fail("return_indices=True", "Use return_indices=False.")
    k = single(m.kernel_size)
    return pool_plan(ctx, "maxpool", k, single(m.stride or k), single(m.dilation), single(m.padding), m.ceil_mode)


@register_op(F.max_pool1d, torch.max_pool1d)
def maxpool_function(ctx: OpContext):
    k = single(ctx.value(ctx.arg(1, "kernel_size")))
    s = ctx.value(ctx.arg(2, "stride", None))
    if ctx.value(ctx.arg(6, "return_indices", False)):
        raise ctx.fail("return_indices=True", "Use return_indices=False.")
    return pool_plan(ctx, "maxpool", k, single(s) if s not in (None, [], ()) else k, single(ctx.value(ctx.arg(4, "dilation", 1))),
                     single(ctx.value(ctx.arg(3, "padding", 0))), bool(ctx.value(ctx.arg(5, "ceil_mode", False))))


@register_op(nn.AvgPool1d)
def avgpool_module(ctx: OpContext):
    m = ctx.module
    assert isinstance(m, nn.AvgPool1d)
    k = single(m.kernel_size)
    return pool_plan(ctx, "avgpool", k, single(m.stride or k), 1, single(m.padding), m.ceil_mode, m.count_include_pad)


@register_op(F.avg_pool1d, torch.avg_pool1d)
def avgpool_function(ctx: OpContext):
    k = single(ctx.value(ctx.arg(1, "kernel_size")))
    s = ctx.value(ctx.arg(2, "stride", None))
    return pool_plan(ctx, "avgpool", k, single(s) if s not in (None, [], ()) else k, 1, single(ctx.value(ctx.arg(3, "padding", 0))),
                     bool(ctx.value(ctx.arg(4, "ceil_mode", False))), bool(ctx.value(ctx.arg(5, "count_include_pad", True))))


@register_op(nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d, F.adaptive_avg_pool1d, F.adaptive_max_pool1d,
             torch.adaptive_avg_pool1d, torch.adaptive_max_pool1d)
def adaptive_pool(ctx: OpContext):
    return ctx.mixing(f"{ctx.target_name() if ctx.module is None else type(ctx.module).__name__} pools the whole time axis")
