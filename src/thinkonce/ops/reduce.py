"""Reductions and normalisations along an axis: frame-wise when the axis is not time, a head when it
is. A cumulative sum along time is causal: it streams with its running total as state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..stream.layers import State, StreamOp, _with_time
from ..stream.state import Field
from .context import OpContext
from .registry import method, register_op

REDUCTIONS = (torch.mean, torch.sum, torch.amax, torch.amin, torch.std, torch.var, torch.norm, torch.logsumexp,
              torch.prod, torch.argmax, torch.argmin, torch.max, torch.min, torch.all, torch.any, torch.median,
              torch.std_mean, torch.var_mean, torch.count_nonzero)
REDUCTION_METHODS = ("mean", "sum", "amax", "amin", "std", "var", "norm", "logsumexp", "prod", "argmax", "argmin",
                     "max", "min", "all", "any", "median", "count_nonzero")
KEEP_DIM = (torch.softmax, torch.log_softmax, F.softmax, F.log_softmax, F.softmin, F.normalize, torch.cumprod,
            method("softmax"), method("log_softmax"), method("cumprod"))


@register_op(*REDUCTIONS, *(method(m) for m in REDUCTION_METHODS))
def reduction(ctx: OpContext):
    n = ctx.node
    if n.target in (torch.max, torch.min, torch.maximum, method("max"), method("min"), "max", "min") and len(n.args) > 1 \
            and isinstance(n.args[1], fx.Node):
        return ctx.framewise()  # element-wise max/min of two tensors
    d = ctx.arg(1, "dim")
    if d is None:
        return ctx.mixing(f"{ctx.target_name()} over every axis")
    ds = [ctx.dim(x) for x in (d if isinstance(d, (tuple, list)) else [d])]
    if ctx.t in ds:
        return ctx.mixing(f"{ctx.target_name()} over the time axis")
    if 0 in ds:
        return ctx.batch_moved()
    keep = ctx.arg(2, "keepdim", False)
    t = ctx.t if keep else ctx.t - sum(1 for x in ds if x < ctx.t)
    return ctx.framewise(t)


@register_op(*KEEP_DIM)
def along_axis(ctx: OpContext):
    d = ctx.arg(1, "dim")
    if d is None and ctx.node.target is F.normalize:
        d = ctx.arg(2, "dim", 1)
    if d is None:
        return ctx.mixing(f"{ctx.target_name()} over an implicit axis")
    if ctx.dim(d) == ctx.t:
        return ctx.mixing(f"{ctx.target_name()} over the time axis")
    return ctx.framewise()


@register_op(nn.Softmax, nn.LogSoftmax, nn.Softmin, nn.GLU)
def dim_module(ctx: OpContext):
    m = ctx.module
    d = ctx.dim(m.dim if m.dim is not None else -1)  # type: ignore[union-attr]
    if d == ctx.t:
        return ctx.mixing(f"{type(m).__name__} over the time axis")
    return ctx.framewise()


@register_op(F.glu)
def glu(ctx: OpContext):
    if ctx.dim(ctx.arg(1, "dim", -1)) == ctx.t:
        return ctx.mixing("GLU halves the time axis")
    return ctx.framewise()


@dataclass
class CumsumOp(StreamOp):
    """Running sum along time (``torch.cumsum(x, dim=time)``): the state is the total so far.

    State: ``total`` (the input frame's shape with 1 frame on the time axis) - the sum of every frame
    seen, zeros at the start, so the layout is the same before and after the first frame.
    """

    dim: int
    kind: str = "cumsum"

    def owes_at_end(self) -> bool:
        return False

    def state_spec(self, in_shapes, dtype):
        if not in_shapes or not in_shapes[0]:
            raise ValueError("CumsumOp.state_spec needs the input frame shape")
        return {"total": Field(_with_time(tuple(in_shapes[0]), self.dim - 1, 1), dtype)}

    def run(self, xs: Sequence[Tensor], st: State, mode: str) -> tuple[Tensor, State]:
        (x,) = xs
        d = self.dim
        if x.shape[d] == 0:
            return x, dict(st)
        y = torch.cumsum(x, dim=d) + st["total"]
        return y, {"total": y.narrow(d, y.shape[d] - 1, 1)}


@register_op(torch.cumsum, method("cumsum"))
def cumsum(ctx: OpContext):
    d = ctx.dim(ctx.arg(1, "dim"))
    if d != ctx.t:
        return ctx.framewise()
    if ctx.arg(2, "dtype") is not None:
        raise ctx.fail("cumsum with a dtype argument", "Cast before the cumulative sum.")
    return ctx.temporal(CumsumOp(d))
