"""Nearest-neighbour upsampling by an integer factor: every frame repeated, no state."""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from ..stream.layers import UpsampleOp
from .context import OpContext
from .registry import register_op


def upsample_plan(ctx: OpContext, mode: str, size, scale):
    if mode != "nearest" or size is not None or scale is None:
        raise ctx.fail(f"interpolation mode={mode!r}, size={size!r} needs the whole signal",
                       "Only nearest upsampling by an integer scale_factor streams exactly.")
    f = scale[-1] if isinstance(scale, (tuple, list)) else scale
    if isinstance(scale, (tuple, list)) and any(float(v) != 1.0 for v in scale[:-1]) and ctx.t != ctx.ndim_in - 1:
        raise ctx.fail("upsampling of several axes with time not last")
    if float(f) != int(f) or int(f) < 1:
        raise ctx.fail(f"scale_factor {f} is not a positive integer")
    if ctx.t != ctx.ndim_in - 1:
        raise ctx.fail("upsampling needs the time axis last")
    if ctx.ndim_in != 3:
        raise ctx.fail("only 1-D upsampling (batch, channels, time) streams")
    return ctx.temporal(UpsampleOp(int(f), dim=ctx.t))


@register_op(nn.Upsample)
def upsample_module(ctx: OpContext):
    m = ctx.module
    assert isinstance(m, nn.Upsample)
    return upsample_plan(ctx, m.mode, m.size, m.scale_factor)


@register_op(F.interpolate, F.upsample, F.upsample_nearest)
def interpolate(ctx: OpContext):
    if ctx.node.target is F.upsample_nearest:
        return upsample_plan(ctx, "nearest", ctx.arg(1, "size"), ctx.arg(2, "scale_factor"))
    return upsample_plan(ctx, ctx.arg(3, "mode", "nearest"), ctx.arg(1, "size"), ctx.arg(2, "scale_factor"))
