"""Convolutions over time: ``nn.Conv1d``/``F.conv1d`` as a sliding kernel with state (the last input
frames later outputs need), ``nn.ConvTranspose1d``/``F.conv_transpose1d`` by overlap-add.

Functional calls read their weights from the graph as constants (parameters, buffers, or weights the
graph computes from them, such as weight norm), evaluated once at conversion.
"""

from __future__ import annotations


from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..stream.kernels import conv1d
from ..stream.layers import SlidingOp, StreamOp, TransposedConvOp, TrimOp
from .context import OpContext, single
from .registry import register_op


def _check_layout(ctx: OpContext, what: str) -> None:
    if ctx.ndim_in != 3 or ctx.t != 2:
        raise ctx.fail(f"{what} needs (batch, channels, time) with time last, got shape {ctx.in_shape} with time "
                       f"on axis {ctx.t}", "Transpose to (batch, channels, time) before the layer.")


def _whole_window(ctx: OpContext, what: str):
    """In window mode a layer whose output is one frame spanning its whole input is part of the head."""
    if ctx.window is not None and isinstance(ctx.out_shape, tuple) and ctx.out_shape[ctx.t] == 1 and ctx.in_shape[ctx.t] > 1:
        return ctx.mixing(f"{what} spans the whole remaining window")
    return None


def conv_plan(ctx: OpContext, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, padding: Any,
              dilation: int, groups: int, padding_mode: str = "zeros"):
    """The plan of a 1-D convolution over time, whatever spelling it came in."""
    _check_layout(ctx, "a 1-D convolution")
    head = _whole_window(ctx, "a convolution")
    if head is not None:
        return head
    k = int(weight.shape[2])
    s, d = int(stride), int(dilation)
    if padding == "same":
        total = d * (k - 1)
        pl, pr = total // 2, total - total // 2
    elif padding == "valid":
        pl = pr = 0
    else:
        pl = pr = single(padding)
    if padding_mode != "zeros" and (pl or pr):
        from .pad import edge_pad_op

        pad = edge_pad_op(ctx, padding_mode, pl, pr)
        inner = _sliding(ctx, weight, bias, k, s, d, 0, 0, groups)
        return ctx.temporal([pad, inner])
    if k == 1 and s == 1 and pl == 0 and pr == 0:
        # a 1x1 conv is frame-wise; run it with plain padding/dilation (its own may say 'same' and
        # dilation 2, which ONNX runtimes reject although they change nothing for one tap)
        src = ctx.node.args[0]

        def pointwise(look, src=src, w=weight, b=bias, g=groups):
            return F.conv1d(look(src), w, b, 1, 0, 1, g)

        return ctx.framewise(call=pointwise)
    return ctx.temporal(_sliding(ctx, weight, bias, k, s, d, pl, pr, groups))


def _sliding(ctx: OpContext, w: torch.Tensor, b: torch.Tensor | None, k: int, s: int, d: int, pl: int, pr: int,
             g: int) -> SlidingOp:
    def fn(x: torch.Tensor, w=w, b=b, s=s, d=d, g=g) -> torch.Tensor:
        return conv1d(x, w, b, s, d, g)

    return SlidingOp(fn, k, s, d, pl, pr, 0.0, int(ctx.in_shape[1]), int(w.shape[0]), kind="conv")


@register_op(nn.Conv1d)
def conv1d_module(ctx: OpContext):
    m = ctx.module
    assert isinstance(m, nn.Conv1d)
    if m.padding_mode == "circular":
        raise ctx.fail("padding_mode='circular' wraps the end of the signal around to its start",
                       "Use zero, reflect or replicate padding.")
    return conv_plan(ctx, m.weight, m.bias, m.stride[0], m.padding, m.dilation[0], m.groups, m.padding_mode)


@register_op(F.conv1d, torch.conv1d, torch.ops.aten.conv1d)
def conv1d_function(ctx: OpContext):
    w = ctx.value(ctx.arg(1, "weight"))
    b = ctx.value(ctx.arg(2, "bias"))
    return conv_plan(ctx, w, b, single(ctx.value(ctx.arg(3, "stride", 1))), ctx.value(ctx.arg(4, "padding", 0)),
                     single(ctx.value(ctx.arg(5, "dilation", 1))), int(ctx.value(ctx.arg(6, "groups", 1))))


def transposed_plan(ctx: OpContext, w: torch.Tensor, b: torch.Tensor | None, stride: int, padding: int,
                    output_padding: int, groups: int, dilation: int):
    _check_layout(ctx, "a transposed 1-D convolution")
    s, d, p = int(stride), int(dilation), int(padding)
    ops: list[StreamOp] = [TransposedConvOp(w, b, s, d, int(groups), int(output_padding), int(w.shape[1]) * int(groups))]
    if p:
        ops.append(TrimOp(p, p, dim=2))
    return ctx.temporal(ops)


@register_op(nn.ConvTranspose1d)
def conv_transpose1d_module(ctx: OpContext):
    m = ctx.module
    assert isinstance(m, nn.ConvTranspose1d)
    if m.padding_mode != "zeros":
        raise ctx.fail(f"padding_mode={m.padding_mode!r}")
    return transposed_plan(ctx, m.weight, m.bias, m.stride[0], m.padding[0], m.output_padding[0], m.groups,
                           m.dilation[0])


@register_op(F.conv_transpose1d, torch.conv_transpose1d)
def conv_transpose1d_function(ctx: OpContext):
    w = ctx.value(ctx.arg(1, "weight"))
    b = ctx.value(ctx.arg(2, "bias"))
    return transposed_plan(ctx, w, b, single(ctx.value(ctx.arg(3, "stride", 1))), single(ctx.value(ctx.arg(4, "padding", 0))),
                           single(ctx.value(ctx.arg(5, "output_padding", 0))), int(ctx.value(ctx.arg(6, "groups", 1))),
                           single(ctx.value(ctx.arg(7, "dilation", 1))))



