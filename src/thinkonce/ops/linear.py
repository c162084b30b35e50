"""Linear maps over features: frame-wise while the time axis is not the one being contracted."""

from __future__ import annotations

import operator

import torch
import torch.nn as nn
import torch.nn.functional as F

from .context import OpContext
from .registry import method, register_op


@register_op(nn.Linear, nn.Bilinear, F.linear, torch.nn.functional.bilinear)
def linear(ctx: OpContext):
    if ctx.t == ctx.ndim_in - 1:
        return ctx.mixing("a linear map over the time axis")
    return ctx.framewise()


@register_op(operator.matmul, torch.matmul, method("matmul"), method("__matmul__"), torch.mm, method("mm"),
             torch.bmm, method("bmm"))
def matmul(ctx: OpContext):
    """``x @ W`` with a constant 2-D ``W`` contracts x's last axis: frame-wise while time is not last;
    ``W @ x`` contracts x's second-to-last axis: frame-wise while time is last (a 1x1 conv spelled as a
    matrix product). Anything else that involves the time axis mixes it."""
    a, b = ctx.node.args[0], ctx.node.args[1]
    if len(ctx.targs) == 1:
        if ctx.is_temporal(a) and not ctx.is_temporal(b) and ctx.t < ctx.ndim_in - 1:
            w = ctx.shape(b)
            if isinstance(w, tuple) and len(w) == 2:
                return ctx.framewise()
        if ctx.is_temporal(b) and not ctx.is_temporal(a) and ctx.ndim_in >= 2 and ctx.t == ctx.ndim_in - 1:
            w = ctx.shape(a)
            if isinstance(w, tuple) and len(w) == 2:
                return ctx.framewise()
    return ctx.mixing(f"{ctx.target_name()} on a temporal value")


@register_op(torch.einsum, F.scaled_dot_product_attention)
def attention(ctx: OpContext):
    return ctx.mixing(f"{ctx.target_name()} on a temporal value")
