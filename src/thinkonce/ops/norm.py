"""Normalisation layers. Over channels (BatchNorm in eval, LayerNorm/RMSNorm over the feature axes)
they are frame-wise; over the time axis (GroupNorm, InstanceNorm, a LayerNorm including time) they mix
the whole window and belong to a head."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .context import OpContext
from .registry import register_op


@register_op(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
def batchnorm(ctx: OpContext):
    if ctx.t == 1:
        return ctx.mixing(f"{type(ctx.module).__name__} normalises over the time axis here")
    return ctx.framewise()


@register_op(F.batch_norm, torch.batch_norm)
def batchnorm_function(ctx: OpContext):
    if ctx.arg(5, "training", False):
        raise ctx.fail("batch_norm in training mode uses the statistics of the chunk",
                       "Call model.eval() (or pass training=False).")
    if ctx.t == 1:
        return ctx.mixing("batch_norm over the time axis")
    return ctx.framewise()


def _over_last(ctx: OpContext, k: int, what: str):
    if ctx.t >= ctx.ndim_in - k:
        return ctx.mixing(f"{what} over the time axis")
    return ctx.framewise()


@register_op(nn.LayerNorm, nn.RMSNorm)
def layernorm(ctx: OpContext):
    m = ctx.module
    return _over_last(ctx, len(m.normalized_shape), type(m).__name__)  # type: ignore[union-attr]


@register_op(F.layer_norm, torch.layer_norm, F.rms_norm)
def layernorm_function(ctx: OpContext):
    shape = ctx.arg(1, "normalized_shape")
    k = 1 if isinstance(shape, int) else len(shape)
    return _over_last(ctx, k, ctx.target_name())


@register_op(nn.LocalResponseNorm, F.local_response_norm)
def local_response_norm(ctx: OpContext):
    if ctx.t == 1:
        return ctx.mixing("local response norm across the time axis")
    return ctx.framewise()


@register_op(nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, F.group_norm, F.instance_norm, torch.group_norm,
             torch.instance_norm)
def over_time(ctx: OpContext):
    what = type(ctx.module).__name__ if ctx.module is not None else ctx.target_name()
    return ctx.mixing(f"{what} normalises over the time axis (statistics of the whole signal)")
