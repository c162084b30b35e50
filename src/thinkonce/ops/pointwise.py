"""Frame-wise operations: each output frame depends on the same input frame only.

They run unchanged on any chunk of frames. Several temporal inputs (``a + b`` of two branches) are
aligned frame by frame first (:class:`~thinkonce.stream.layers.AlignQueues`).
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .context import OpContext
from .registry import method, register_op

FUNCTIONS: tuple[Any, ...] = (
    operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv, operator.neg,
    operator.pow, operator.abs, operator.pos, operator.mod, operator.iadd, operator.imul, operator.isub,
    operator.itruediv, operator.and_, operator.or_, operator.invert, operator.lt, operator.gt, operator.le,
    operator.ge, operator.eq, operator.ne,
    torch.add, torch.sub, torch.subtract, torch.mul, torch.multiply, torch.div, torch.divide, torch.true_divide,
    torch.relu, torch.sigmoid, torch.tanh, torch.exp, torch.log, torch.log1p, torch.expm1, torch.sqrt,
    torch.rsqrt, torch.abs, torch.clamp, torch.clip, torch.sin, torch.cos, torch.square, torch.pow,
    torch.maximum, torch.minimum, torch.where, torch.sign, torch.erf, torch.nan_to_num, torch.neg,
    torch.reciprocal, torch.addcmul, torch.lerp, torch.floor, torch.ceil, torch.round, torch.log2, torch.log10,
    torch.exp2, torch.sinh, torch.cosh, torch.atan, torch.atan2, torch.hypot, torch.clamp_min, torch.clamp_max,
    torch.sgn, torch.logit, torch.heaviside, torch.gt, torch.lt, torch.ge, torch.le, torch.eq, torch.ne,
    torch.logical_and, torch.logical_or, torch.logical_not, torch.masked_fill, torch.prelu,
    torch.zeros_like, torch.ones_like, torch.full_like, torch.empty_like,
    F.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish, F.hardtanh,
    F.hardsigmoid, F.hardswish, F.softplus, F.softsign, F.sigmoid, F.tanh, F.logsigmoid, F.tanhshrink,
    F.threshold, F.prelu, F.rrelu, F.hardshrink, F.softshrink,
    F.dropout, F.dropout1d, F.dropout2d, F.alpha_dropout, F.feature_alpha_dropout,
)

METHODS: tuple[str, ...] = (
    "add", "sub", "mul", "div", "relu", "sigmoid", "tanh", "exp", "log", "sqrt", "rsqrt", "abs",
    "clamp", "clip", "pow", "neg", "contiguous", "float", "double", "half", "to", "type_as", "sin",
    "cos", "square", "sign", "reciprocal", "detach", "clone", "masked_fill", "where", "__add__",
    "__mul__", "__sub__", "__truediv__", "__radd__", "__rmul__", "__rsub__", "__rtruediv__", "erf",
    "relu_", "sigmoid_", "tanh_", "add_", "mul_", "sub_", "div_", "clamp_", "clamp_min", "clamp_max",
    "log1p", "expm1", "floor", "ceil", "round", "exp_", "sqrt_", "abs_", "neg_", "masked_fill_",
    "__and__", "__or__", "__invert__", "__lt__", "__gt__", "__le__", "__ge__", "__eq__", "__ne__",
    "gt", "lt", "ge", "le", "eq", "ne", "bool", "int", "long", "logical_not", "nan_to_num", "maximum",
    "minimum", "requires_grad_", "cpu",
)

MODULES: tuple[type[nn.Module], ...] = (
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.FeatureAlphaDropout,
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid,
    nn.Tanh, nn.Hardtanh, nn.Hardsigmoid, nn.Hardswish, nn.Softplus, nn.Softsign, nn.Tanhshrink,
    nn.Threshold, nn.LogSigmoid, nn.Hardshrink, nn.Softshrink, nn.RReLU,
)


@register_op(*FUNCTIONS, *(method(m) for m in METHODS), *MODULES)
def framewise(ctx: OpContext):
    return ctx.framewise()


@register_op(nn.PReLU)
def prelu(ctx: OpContext):
    """One slope per channel (dim 1) or a single one: frame-wise while time is not the channel axis."""
    m = ctx.module
    assert isinstance(m, nn.PReLU)
    if m.num_parameters > 1 and ctx.t == 1:
        return ctx.mixing("PReLU with one slope per channel on the time axis")
    return ctx.framewise()


def register_framewise(target: Any) -> Any:
    """Declare a function, method name or ``nn.Module`` class as frame-wise (acts on each frame alone).

    Usable as a decorator. Frame-wise ops run unchanged on any chunk of frames. For ops with state
    (a sliding kernel, a recurrence) register a builder with :func:`thinkonce.register_op` instead.
    """
    register_op(target)(framewise)
    return target
