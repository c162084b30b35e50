"""C emitters of element-wise ATen ops (activations, arithmetic, copies, fills), with broadcasting.

Each op is a C expression over its operands ``a``, ``b``, ``c`` (values already converted to the
output's C type) evaluated in one loop nest over the output; strides come from the recorded views, so
broadcasting (stride 0) and transposed operands need no special case. NaN propagates as PyTorch's does
(``relu(nan)`` is nan: the comparison is written so that nan falls through).
"""

from __future__ import annotations

from typing import Any, Callable

from .codegen import Gen, broadcast_strides, c_literal
from .registry import register_c_emitter
from .trace import NotLowerable, Op, View

Expr = Callable[[list[str], Op], str]


def _scalar_args(op: Op, start: int) -> list[Any]:
    return list(op.args[start:])


def _emit(op: Op, g: Gen, operands: list[Any], expr: Callable[[list[str]], str]) -> str:
    out = op.outs[0]
    assert out is not None
    ct = out.buf.ctype
    views = [a for a in operands if isinstance(a, View)]
    strides = [out.strides] + [broadcast_strides(v, out.sizes) for v in views]

    def body(offs: list[str]) -> str:
        vals, k = [], 1
        for a in operands:
            if isinstance(a, View):
                vals.append(f"(({ct}){g.elem(a, offs[k])})" if ct != "unsigned char" else f"({g.elem(a, offs[k])})")
                k += 1
            else:
                vals.append(c_literal(a, ct) if not isinstance(a, bool) else str(int(a)))
        return f"{g.elem(out, offs[0])} = ({ct})({expr(vals)});"

    return g.loops(out.sizes, strides, body)


def _unary(expr: Callable[[str], str]) -> Callable[[Op, Gen], str]:
    return lambda op, g: _emit(op, g, [op.args[0]], lambda v: expr(v[0]))


UNARY: dict[str, Callable[[str], str]] = {
    "aten.relu": lambda a: f"{a} < 0 ? 0 : {a}",
    "aten.tanh": lambda a: f"tanhf({a})",
    "aten.sigmoid": lambda a: f"1.0f / (1.0f + expf(-{a}))",
    "aten.exp": lambda a: f"expf({a})",
    "aten.log": lambda a: f"logf({a})",
    "aten.sqrt": lambda a: f"sqrtf({a})",
    "aten.rsqrt": lambda a: f"1.0f / sqrtf({a})",
    "aten.neg": lambda a: f"-{a}",
    "aten.abs": lambda a: f"fabsf({a})",
    "aten.sin": lambda a: f"sinf({a})",
    "aten.cos": lambda a: f"cosf({a})",
    "aten.erf": lambda a: f"erff({a})",
    "aten.silu": lambda a: f"{a} / (1.0f + expf(-{a}))",
    "aten.reciprocal": lambda a: f"1.0f / {a}",
    "aten.square": lambda a: f"{a} * {a}",
    "aten.log1p": lambda a: f"log1pf({a})",
    "aten.expm1": lambda a: f"expm1f({a})",
    "aten.mish": lambda a: f"{a} * tanhf(log1pf(expf({a})))",
    "aten.clone": lambda a: a,
    "aten._to_copy": lambda a: a,
    "aten.alias_copy": lambda a: a,
    "aten.detach_copy": lambda a: a,
    "aten.relu6": lambda a: f"{a} < 0 ? 0 : ({a} > 6 ? 6 : {a})",
    "aten.hardsigmoid": lambda a: f"{a} <= -3 ? 0 : ({a} >= 3 ? 1 : {a} / 6 + 0.5f)",
    "aten.hardswish": lambda a: f"{a} <= -3 ? 0 : ({a} >= 3 ? {a} : {a} * ({a} + 3) / 6)",
    "aten.logical_not": lambda a: f"!{a}",
}

for _name, _expr in UNARY.items():
    register_c_emitter(_name)(_unary(_expr))


@register_c_emitter("aten.gelu")
def _gelu(op: Op, g: Gen) -> str:
    approx = op.kwargs.get("approximate", op.args[1] if len(op.args) > 1 else "none")
    if approx == "tanh":
        f = lambda v: f"0.5f * {v[0]} * (1.0f + tanhf(0.7978845608028654f * ({v[0]} + 0.044715f * {v[0]} * {v[0]} * {v[0]})))"
    else:
        f = lambda v: f"0.5f * {v[0]} * (1.0f + erff({v[0]} * 0.7071067811865476f))"
    return _emit(op, g, [op.args[0]], f)


def _arg(op: Op, i: int, name: str, default: Any) -> Any:
    if name in op.kwargs:
        return op.kwargs[name]
    return op.args[i] if len(op.args) > i else default


@register_c_emitter("aten.add", "aten.sub", "aten.rsub")
def _add(op: Op, g: Gen) -> str:
    alpha = _arg(op, 2, "alpha", 1)
    a, b = op.args[0], op.args[1]
    sign = {"aten.add": "+", "aten.sub": "-", "aten.rsub": "-"}[op.packet]
    if op.packet == "aten.rsub":
        return _emit(op, g, [a, b], lambda v: f"{v[1]} - {c_literal(alpha, op.outs[0].buf.ctype)} * {v[0]}" if alpha != 1 else f"{v[1]} - {v[0]}")
    if alpha == 1:
        return _emit(op, g, [a, b], lambda v: f"{v[0]} {sign} {v[1]}")
    lit = c_literal(alpha, op.outs[0].buf.ctype)
    return _emit(op, g, [a, b], lambda v: f"{v[0]} {sign} {lit} * {v[1]}")


@register_c_emitter("aten.mul")
def _mul(op: Op, g: Gen) -> str:
    return _emit(op, g, [op.args[0], op.args[1]], lambda v: f"{v[0]} * {v[1]}")


@register_c_emitter("aten.div")
def _div(op: Op, g: Gen) -> str:
    mode = op.kwargs.get("rounding_mode")
    if mode is not None or op.outs[0].buf.ctype != "float":
        raise NotLowerable(f"{op.name} with rounding_mode={mode!r}")
    return _emit(op, g, [op.args[0], op.args[1]], lambda v: f"{v[0]} / {v[1]}")


@register_c_emitter("aten.maximum", "aten.minimum")
def _maxmin(op: Op, g: Gen) -> str:
    cmp = ">" if op.packet == "aten.maximum" else "<"
    return _emit(op, g, [op.args[0], op.args[1]],
                 lambda v: f"({v[0]} != {v[0]} || {v[1]} != {v[1]}) ? {v[0]} + {v[1]} : ({v[0]} {cmp} {v[1]} ? {v[0]} : {v[1]})")


@register_c_emitter("aten.clamp", "aten.clamp_min", "aten.clamp_max", "aten.hardtanh")
def _clamp(op: Op, g: Gen) -> str:
    if op.packet == "aten.clamp_min":
        lo, hi = op.args[1], None
    elif op.packet == "aten.clamp_max":
        lo, hi = None, op.args[1]
    elif op.packet == "aten.hardtanh":
        lo, hi = _arg(op, 1, "min_val", -1.0), _arg(op, 2, "max_val", 1.0)
    else:
        lo, hi = _arg(op, 1, "min", None), _arg(op, 2, "max", None)
    if isinstance(lo, View) or isinstance(hi, View):
        raise NotLowerable("clamp with tensor bounds")
    ct = op.outs[0].buf.ctype

    def f(v: list[str]) -> str:
        e = v[0]
        if lo is not None:
            e = f"({e} < {c_literal(lo, ct)} ? {c_literal(lo, ct)} : {e})"
        if hi is not None:
            e = f"({e} > {c_literal(hi, ct)} ? {c_literal(hi, ct)} : {e})"
        return e

    return _emit(op, g, [op.args[0]], f)


@register_c_emitter("aten.leaky_relu")
def _leaky(op: Op, g: Gen) -> str:
    s = c_literal(_arg(op, 1, "negative_slope", 0.01))
    return _emit(op, g, [op.args[0]], lambda v: f"{v[0]} < 0 ? {v[0]} * {s} : {v[0]}")


@register_c_emitter("aten.elu")
def _elu(op: Op, g: Gen) -> str:
    alpha, scale, in_scale = (c_literal(_arg(op, i, n, d)) for i, n, d in
                              ((1, "alpha", 1.0), (2, "scale", 1.0), (3, "input_scale", 1.0)))
    return _emit(op, g, [op.args[0]],
                 lambda v: f"{v[0]} > 0 ? {scale} * {v[0]} : {scale} * {alpha} * (expf({v[0]} * {in_scale}) - 1.0f)")


@register_c_emitter("aten.softplus")
def _softplus(op: Op, g: Gen) -> str:
    beta, thr = c_literal(_arg(op, 1, "beta", 1.0)), c_literal(_arg(op, 2, "threshold", 20.0))
    return _emit(op, g, [op.args[0]],
                 lambda v: f"{v[0]} * {beta} > {thr} ? {v[0]} : log1pf(expf({v[0]} * {beta})) / {beta}")


@register_c_emitter("aten.pow")
def _pow(op: Op, g: Gen) -> str:
    if op.name == "aten.pow.Tensor_Scalar":
        e = op.args[1]
        if e == 2:
            return _emit(op, g, [op.args[0]], lambda v: f"{v[0]} * {v[0]}")
        return _emit(op, g, [op.args[0]], lambda v: f"powf({v[0]}, {c_literal(e)})")
    return _emit(op, g, [op.args[0], op.args[1]], lambda v: f"powf({v[0]}, {v[1]})")


@register_c_emitter("aten.where")
def _where(op: Op, g: Gen) -> str:
    return _emit(op, g, list(op.args[:3]), lambda v: f"{v[0]} ? {v[1]} : {v[2]}")


_CMP = {"aten.gt": ">", "aten.lt": "<", "aten.ge": ">=", "aten.le": "<=", "aten.eq": "==", "aten.ne": "!="}
for _name, _sym in _CMP.items():
    register_c_emitter(_name)(lambda op, g, s=_sym: _emit(op, g, [op.args[0], op.args[1]], lambda v: f"{v[0]} {s} {v[1]}"))


@register_c_emitter("aten.copy_")
def _copy(op: Op, g: Gen) -> str:
    dst, src = op.args[0], op.args[1]
    out = op.outs[0]
    return _emit(Op(op.name, op.packet, (src,), {}, [out]), g, [src], lambda v: v[0])


# ---------------------------------------------------------------------- fills
@register_c_emitter("aten.full", "aten.new_full", "aten.zeros", "aten.new_zeros", "aten.ones", "aten.new_ones",
                    "aten.full_like", "aten.zeros_like", "aten.ones_like", "aten.fill_", "aten.zero_",
                    "aten.fill", "aten.scalar_tensor")
def _fill(op: Op, g: Gen) -> str:
    p = op.packet
    if p in ("aten.zeros", "aten.new_zeros", "aten.zeros_like", "aten.zero_"):
        value: Any = 0
    elif p in ("aten.ones", "aten.new_ones", "aten.ones_like"):
        value = 1
    elif p in ("aten.full", "aten.full_like", "aten.fill_", "aten.fill"):
        value = op.args[1]
    elif p == "aten.new_full":
        value = op.args[2]
    else:  # scalar_tensor
        value = op.args[0]
    if isinstance(value, View):
        raise NotLowerable(f"{op.name} with a tensor value")
    out = op.outs[0]
    lit = c_literal(value, out.buf.ctype)
    return g.loops(out.sizes, [out.strides], lambda o: f"{g.elem(out, o[0])} = {lit};")


@register_c_emitter("aten.empty", "aten.empty_like", "aten.new_empty", "aten.empty_strided")
def _empty(op: Op, g: Gen) -> str:
    return ""  # contents undefined until written by the next op
