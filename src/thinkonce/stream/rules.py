"""What each graph operation does to the time axis.

The converter asks one question of every node that consumes a temporal value: is it *frame-wise*
(can run on any chunk of frames), a *temporal* op with a streaming counterpart (conv, pooling, ...),
or does it *mix the whole time axis* (global pooling, attention, flatten)? The tables here answer it
for ``torch``/``torch.nn`` operations; :func:`register_framewise` lets users add their own.
"""

from __future__ import annotations

import operator
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

_USER_FRAMEWISE: set[Any] = set()


def register_framewise(target: Any) -> Any:
    """Declare a function, method name or ``nn.Module`` class as frame-wise (acts on each frame alone).

    Usable as a decorator. Frame-wise ops run unchanged on any chunk of frames.
    """
    _USER_FRAMEWISE.add(target)
    return target


FRAMEWISE_FUNCTIONS: set[Callable[..., Any]] = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv, operator.neg,
    operator.pow, operator.abs, operator.pos, operator.mod,
    torch.add, torch.sub, torch.subtract, torch.mul, torch.multiply, torch.div, torch.divide,
    torch.relu, torch.sigmoid, torch.tanh, torch.exp, torch.log, torch.log1p, torch.expm1, torch.sqrt,
    torch.rsqrt, torch.abs, torch.clamp, torch.clip, torch.sin, torch.cos, torch.square, torch.pow,
    torch.maximum, torch.minimum, torch.where, torch.sign, torch.erf, torch.nan_to_num, torch.neg,
    torch.reciprocal, torch.addcmul, torch.lerp, torch.floor, torch.ceil, torch.round,
    F.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish, F.hardtanh,
    F.hardsigmoid, F.hardswish, F.softplus, F.softsign, F.sigmoid, F.tanh, F.logsigmoid, F.tanhshrink,
    F.threshold, F.prelu, F.dropout, F.dropout1d, F.alpha_dropout, F.feature_alpha_dropout,
}

FRAMEWISE_METHODS: set[str] = {
    "add", "sub", "mul", "div", "relu", "sigmoid", "tanh", "exp", "log", "sqrt", "rsqrt", "abs",
    "clamp", "clip", "pow", "neg", "contiguous", "float", "double", "half", "to", "type_as", "sin",
    "cos", "square", "sign", "reciprocal", "detach", "clone", "masked_fill", "where", "__add__",
    "__mul__", "__sub__", "__truediv__", "__radd__", "__rmul__", "__rsub__", "__rtruediv__", "erf",
    "relu_", "sigmoid_", "tanh_",
}

FRAMEWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.AlphaDropout, nn.FeatureAlphaDropout,
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid,
    nn.Tanh, nn.Hardtanh, nn.Hardsigmoid, nn.Hardswish, nn.Softplus, nn.Softsign, nn.Tanhshrink,
    nn.PReLU, nn.Threshold, nn.LogSigmoid, nn.Hardshrink, nn.Softshrink,
)

#: modules that always mix the whole time axis: a window-mode head or an error in continuous mode
TIME_MIXING_MODULES: tuple[type[nn.Module], ...] = (
    nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d, nn.MultiheadAttention, nn.GRU, nn.LSTM, nn.RNN,
    nn.TransformerEncoderLayer, nn.TransformerEncoder, nn.GroupNorm, nn.InstanceNorm1d,
    nn.LocalResponseNorm,
)

#: reductions over dims given by a ``dim`` argument
REDUCTION_FUNCTIONS: set[Any] = {
    torch.mean, torch.sum, torch.amax, torch.amin, torch.std, torch.var, torch.norm, torch.logsumexp,
    torch.prod, torch.argmax, torch.argmin, torch.max, torch.min, torch.cumsum, torch.cumprod,
    torch.softmax, torch.log_softmax, F.softmax, F.log_softmax, F.softmin, F.glu, F.normalize,
}
REDUCTION_METHODS: set[str] = {
    "mean", "sum", "amax", "amin", "std", "var", "norm", "logsumexp", "prod", "argmax", "argmin",
    "max", "min", "cumsum", "cumprod", "softmax", "log_softmax",
}
DIM_MODULES: tuple[type[nn.Module], ...] = (nn.Softmax, nn.LogSoftmax, nn.Softmin, nn.GLU)

MIXING_FUNCTIONS: set[Any] = {
    torch.matmul, torch.bmm, torch.einsum, torch.flatten, F.scaled_dot_product_attention,
    F.adaptive_avg_pool1d, F.adaptive_max_pool1d, F.layer_norm, F.group_norm, F.instance_norm,
}
MIXING_METHODS: set[str] = {"view", "reshape", "matmul", "bmm", "flatten", "expand", "repeat", "unfold"}


def is_user_framewise(target: Any, module: nn.Module | None = None) -> bool:
    if module is not None:
        return any(isinstance(module, t) for t in _USER_FRAMEWISE if isinstance(t, type))
    return target in _USER_FRAMEWISE


def describe_target(target: Any) -> str:
    """A readable name for a call target (``F.relu``, ``operator.add``, method ``view``)."""
    if isinstance(target, str):
        return target
    if isinstance(target, torch._ops.OpOverload):
        return f"aten.{target.overloadpacket.__name__}.{target._overloadname}"
    mod = getattr(target, "__module__", None) or ""
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", repr(target))
    return f"{mod}.{name}" if mod else name
