"""Layers that look at the whole time axis at once: in window mode they run in the head on a buffer of
the window's features; in continuous mode they are refused."""

from __future__ import annotations

import torch.nn as nn

from .context import OpContext
from .registry import register_op


@register_op(nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerEncoder, nn.TransformerDecoderLayer,
             nn.TransformerDecoder, nn.Transformer, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
def whole_axis(ctx: OpContext):
    return ctx.mixing(f"{type(ctx.module).__name__} looks at the whole time axis")
