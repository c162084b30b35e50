"""C emitters of the structural and normalising ops a step uses: ``cat``/``stack`` (ring buffers and
window outputs), max/avg pooling, reductions (``mean``, ``sum``, ``amax``), BatchNorm in eval (a
per-channel scale and shift computed here, in float64, once), LayerNorm and softmax (heads)."""

from __future__ import annotations

import torch

from .codegen import Gen, broadcast_strides, c_literal
from .registry import register_c_emitter
from .trace import NotLowerable, Op, View


def _copy(g: Gen, dst: View, src: View) -> str:
    return g.loops(dst.sizes, [dst.strides, broadcast_strides(src, dst.sizes)],
                   lambda o: f"{g.elem(dst, o[0])} = ({dst.buf.ctype}){g.elem(src, o[1])};")


def _same_view(a: View, b: View) -> bool:
    return (a.buf is b.buf and a.offset == b.offset and tuple(a.sizes) == tuple(b.sizes)
            and all(x == y for n, x, y in zip(a.sizes, a.strides, b.strides) if n != 1))


@register_c_emitter("aten.cat")
def _cat(op: Op, g: Gen) -> str:
    tensors = op.args[0]
    dim = op.kwargs.get("dim", op.args[1] if len(op.args) > 1 else 0)
    out = op.outs[0]
    dim = dim % len(out.sizes)
    parts, pos = [], 0
    for t in tensors:
        if t.numel == 0 and len(t.sizes) == 1:
            continue  # legacy empty tensors are skipped by cat
        n = t.sizes[dim]
        if n:
            sizes = list(out.sizes)
            sizes[dim] = n
            dst = View(out.buf, out.offset + pos * out.strides[dim], tuple(sizes), out.strides)
            if not _same_view(dst, t):  # equal: the operand was computed in place (fuse.cats_in_place)
                parts.append(_copy(g, dst, t))
        pos += n
    return "\n".join(parts)


@register_c_emitter("aten.stack")
def _stack(op: Op, g: Gen) -> str:
    tensors = op.args[0]
    dim = op.kwargs.get("dim", op.args[1] if len(op.args) > 1 else 0)
    out = op.outs[0]
    dim = dim % len(out.sizes)
    parts = []
    for i, t in enumerate(tensors):
        sizes = out.sizes[:dim] + out.sizes[dim + 1:]
        strides = out.strides[:dim] + out.strides[dim + 1:]
        parts.append(_copy(g, View(out.buf, out.offset + i * out.strides[dim], sizes, strides), t))
    return "\n".join(parts)


# ---------------------------------------------------------------------- pooling
def _pairs(v, n: int = 2) -> list[int]:
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    return v * n if len(v) == 1 else v


def _pool(op: Op, g: Gen, kind: str) -> str:
    x = op.args[0]
    out = op.outs[0]
    nd = 2 if "2d" in op.packet else 1
    k = _pairs(op.args[1], nd)
    s = _pairs(op.args[2] if len(op.args) > 2 and op.args[2] else k, nd)
    p = _pairs(op.args[3] if len(op.args) > 3 else 0, nd)
    if kind == "max":
        d = _pairs(op.args[4] if len(op.args) > 4 else 1, nd)
        count_pad, divisor = True, None
    else:
        d = [1] * nd
        count_pad = bool(op.args[5]) if len(op.args) > 5 else True
        divisor = op.args[6] if len(op.args) > 6 else None
    lead = len(x.sizes) - nd
    ins, outs_ = x.sizes[lead:], out.sizes[lead:]
    xs_sp, os_sp = x.strides[lead:], out.strides[lead:]
    ov = [g.var("o") for _ in range(nd)]
    kv = [g.var("k") for _ in range(nd)]
    acc, cnt, pos = g.var("acc"), g.var("cnt"), [g.var("pos") for _ in range(nd)]

    def body(offs: list[str]) -> str:
        xo, oo = offs[1], offs[0]
        lines = [f"float {acc} = {'-INFINITY' if kind == 'max' else '0.0f'};", f"long {cnt} = 0;"]
        inner = []
        for i in range(nd):
            inner.append(f"long {pos[i]} = {ov[i]}*{s[i]} - {p[i]} + {kv[i]}*{d[i]};")
        cond = " || ".join(f"{pos[i]} < 0 || {pos[i]} >= {ins[i]}" for i in range(nd))
        xe = g.elem(x, f"{xo} + " + " + ".join(f"{pos[i]}*{xs_sp[i]}" for i in range(nd)))
        if kind == "max":
            inner.append(f"if ({cond}) continue;\nfloat v = {xe};\nif (v > {acc} || v != v) {acc} = v;")
        else:
            inner.append(f"if ({cond}) continue;\n{acc} += {xe}; {cnt}++;")
        loop = "\n".join(inner)
        for i in reversed(range(nd)):
            loop = f"for (long {kv[i]} = 0; {kv[i]} < {k[i]}; {kv[i]}++) {{\n{loop}\n}}"
        lines.append(loop)
        oe = g.elem(out, f"{oo} + " + " + ".join(f"{ov[i]}*{os_sp[i]}" for i in range(nd)))
        if kind == "max":
            lines.append(f"{oe} = {acc};")
        else:
            if divisor:
                div = c_literal(divisor)
            elif count_pad:
                # PyTorch: the window clipped to the padded extent
                terms = []
                for i in range(nd):
                    st = f"({ov[i]}*{s[i]} - {p[i]})"
                    terms.append(f"(({st} + {k[i]} < {ins[i] + p[i]} ? {st} + {k[i]} : {ins[i] + p[i]}) - {st})")
                div = "(float)(" + " * ".join(terms) + ")"
            else:
                div = f"(float){cnt}"
            lines.append(f"{oe} = {acc} / {div};")
        code = "\n".join(lines)
        for i in reversed(range(nd)):
            code = f"for (long {ov[i]} = 0; {ov[i]} < {outs_[i]}; {ov[i]}++) {{\n{code}\n}}"
        return code

    return g.loops(out.sizes[:lead], [out.strides[:lead], x.strides[:lead]], body) if lead else body(["0", "0"])


@register_c_emitter("aten.max_pool2d_with_indices", "aten.max_pool1d_with_indices", "aten.max_pool2d",
                    "aten.max_pool1d")
def _maxpool(op: Op, g: Gen) -> str:
    if len(op.args) > 5 and op.args[5]:
        # ceil_mode only adds partial windows at the end: the recorded output size already has them
        pass
    return _pool(op, g, "max")


@register_c_emitter("aten.avg_pool2d", "aten.avg_pool1d")
def _avgpool(op: Op, g: Gen) -> str:
    return _pool(op, g, "avg")


# ---------------------------------------------------------------------- reductions
@register_c_emitter("aten.mean", "aten.sum", "aten.amax", "aten.amin")
def _reduce(op: Op, g: Gen) -> str:
    x = op.args[0]
    out = op.outs[0]
    nd = len(x.sizes)
    dims = op.args[1] if len(op.args) > 1 and op.args[1] is not None else list(range(nd))
    dims = sorted({d % nd for d in ([dims] if isinstance(dims, int) else dims)}) or list(range(nd))
    keep = bool(op.args[2]) if len(op.args) > 2 else bool(op.kwargs.get("keepdim", False))
    kept = [d for d in range(nd) if d not in dims]
    if keep:
        ostr = [out.strides[d] for d in kept]
    else:
        ostr = list(out.strides)
    ksizes = tuple(x.sizes[d] for d in kept)
    kxs = tuple(x.strides[d] for d in kept)
    n = 1
    for d in dims:
        n *= x.sizes[d]
    acc = g.var("acc")
    init = {"aten.mean": "0.0f", "aten.sum": "0.0f", "aten.amax": "-INFINITY", "aten.amin": "INFINITY"}[op.packet]

    rs = tuple(x.sizes[d] for d in dims)
    rst = tuple(x.strides[d] for d in dims)
    flat = _flat_contiguous(rs, rst)
    if (g.vw and op.packet in ("aten.mean", "aten.sum") and flat is not None and flat >= 4 * g.vw
            and x.dtype == out.dtype == torch.float32):
        return _sum_vector(g, x, out, op.packet == "aten.mean", flat, ksizes, tuple(ostr), kxs)

    def body(offs: list[str]) -> str:
        if op.packet in ("aten.mean", "aten.sum"):
            upd = lambda o: f"{acc} += {g.elem(x, f'{offs[1]} + {o[0]}')};"
        else:
            cmp = ">" if op.packet == "aten.amax" else "<"
            upd = lambda o: f"{{ float v = {g.elem(x, f'{offs[1]} + {o[0]}')}; if (v {cmp} {acc} || v != v) {acc} = v; }}"
        inner = g.loops(rs, [rst], upd)
        fin = f"{acc} / {n}.0f" if op.packet == "aten.mean" else acc
        return f"float {acc} = {init};\n{inner}\n{g.elem(out, offs[0])} = {fin};"

    return g.loops(ksizes, [tuple(ostr), kxs], body) if ksizes else body(["0", "0"])


def _flat_contiguous(sizes: tuple[int, ...], strides: tuple[int, ...]) -> int | None:
    """The element count if dimensions ``sizes`` with ``strides`` walk one contiguous run, else None."""
    n, want = 1, 1
    for s, st in reversed(list(zip(sizes, strides))):
        if s == 1:
            continue
        if st != want:
            return None
        want *= s
        n *= s
    return n


def _sum_vector(g: Gen, x: View, out: View, mean: bool, n: int, ksizes, ostr, kxs) -> str:
    """Sum (or mean) over a contiguous run of ``n`` elements per output: four vector accumulators
    (a sequential float sum is bound by the adder's latency, ~4 cycles per element), then the lanes
    and the tail. The summation order differs from a sequential loop, as eager's vectorised sum does."""
    vw = g.vw
    nb = n // (4 * vw)
    a, j, e, t, i = g.var("a"), g.var("j"), g.var("e"), g.var("t"), g.var("i")

    def body(offs: list[str]) -> str:
        xp = lambda idx: f"&{g.elem(x, f'{offs[1]} + {idx}')}"
        acc = "\n".join(f"vf {a}{k} = (vf){{0}};" for k in range(4))
        loop = (f"for (long {j} = 0; {j} < {nb}; {j}++) {{\n"
                + "\n".join(f"{a}{k} += VLOAD({xp(f'{j}*{4 * vw} + {k * vw}')});" for k in range(4)) + "\n}")
        fin = (f"vf {a} = ({a}0 + {a}1) + ({a}2 + {a}3);\nfloat {a}_s = 0.0f;\n"
               f"{{ float {t}[{vw}]; *(vfu*){t} = {a}; for (int {i} = 0; {i} < {vw}; {i}++) {a}_s += {t}[{i}]; }}\n"
               f"for (long {e} = {nb * 4 * vw}; {e} < {n}; {e}++) {a}_s += {g.elem(x, f'{offs[1]} + {e}')};\n"
               f"{g.elem(out, offs[0])} = {f'{a}_s / {n}.0f' if mean else f'{a}_s'};")
        return f"{acc}\n{loop}\n{fin}"

    return g.loops(ksizes, [ostr, kxs], body) if ksizes else body(["0", "0"])


# ---------------------------------------------------------------------- normalisation
@register_c_emitter("aten.native_batch_norm", "aten._native_batch_norm_legit_no_training",
                    "aten._native_batch_norm_legit")
def _batchnorm(op: Op, g: Gen) -> str:
    args = list(op.args)
    x, w, b, rm, rv = args[:5]
    if op.packet == "aten.native_batch_norm":
        training, eps = args[5], args[7]
    elif op.packet == "aten._native_batch_norm_legit_no_training":
        training, eps = False, args[6]
    else:
        training, eps = args[5], args[7]
    if training:
        raise NotLowerable("batch_norm in training mode")
    scale, shift = bn_affine(w, b, rm, rv, eps, x.sizes[1])
    sb, hb = g.const(scale), g.const(shift)
    out = op.outs[0]
    cs = tuple(1 if d == 1 else 0 for d in range(len(out.sizes)))
    return g.loops(out.sizes, [out.strides, x.strides, cs],
                   lambda o: f"{g.elem(out, o[0])} = {g.elem(x, o[1])} * {g.name(sb)}[{o[2]}] + {g.name(hb)}[{o[2]}];")


def bn_affine(w, b, rm, rv, eps: float, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """BatchNorm in eval as ``x * scale + shift`` per channel (computed in float64, rounded once)."""
    val = lambda v, d: Gen.const_value(v).double() if isinstance(v, View) else torch.full((c,), d, dtype=torch.float64)
    if not isinstance(rm, View) or not isinstance(rv, View):
        raise NotLowerable("batch_norm without running statistics")
    inv = 1.0 / torch.sqrt(val(rv, 1.0) + eps)
    scale = val(w, 1.0) * inv
    shift = val(b, 0.0) - val(rm, 0.0) * scale
    return scale.float(), shift.float()


@register_c_emitter("aten.native_layer_norm")
def _layernorm(op: Op, g: Gen) -> str:
    x, shape, w, b, eps = op.args[:5]
    out = op.outs[0]
    k = len(shape)
    lead = len(x.sizes) - k
    n = 1
    for s in shape:
        n *= s
    nsz = tuple(x.sizes[lead:])
    wv = Gen.const_value(w).float().reshape(-1) if isinstance(w, View) else torch.ones(n)
    bv = Gen.const_value(b).float().reshape(-1) if isinstance(b, View) else torch.zeros(n)
    wb, bb = g.const(wv), g.const(bv)
    mean, var = g.var("mean"), g.var("var")
    cstr = tuple(int(torch.tensor(nsz[d + 1:]).prod()) if d + 1 < k else 1 for d in range(k))

    vw = g.vw
    if vw and k == 1 and n >= vw and x.strides[-1] == 1 and out.strides[-1] == 1:
        return _layernorm_vector(g, x, out, lead, n, wb, bb, float(eps))

    def body(offs: list[str]) -> str:
        xs, os_ = x.strides[lead:], out.strides[lead:]
        s1 = g.loops(nsz, [xs], lambda o: f"{mean} += {g.elem(x, f'{offs[1]} + {o[0]}')};")
        s2 = g.loops(nsz, [xs], lambda o: f"{{ float d = {g.elem(x, f'{offs[1]} + {o[0]}')} - {mean}; {var} += d * d; }}")
        s3 = g.loops(nsz, [os_, xs, cstr], lambda o: (
            f"{g.elem(out, f'{offs[0]} + {o[0]}')} = ({g.elem(x, f'{offs[1]} + {o[1]}')} - {mean}) * {var} * "
            f"{g.name(wb)}[{o[2]}] + {g.name(bb)}[{o[2]}];"))
        return (f"float {mean} = 0.0f, {var} = 0.0f;\n{s1}\n{mean} /= {n}.0f;\n{s2}\n"
                f"{var} = 1.0f / sqrtf({var} / {n}.0f + {c_literal(eps)});\n{s3}")

    return g.loops(x.sizes[:lead], [out.strides[:lead], x.strides[:lead]], body) if lead else body(["0", "0"])


def _hsum(g: Gen, v: str) -> str:
    """The sum of a vector's lanes, as a C expression statement block setting ``v``'s scalar ``<v>_s``."""
    t, i = g.var("t"), g.var("i")
    return (f"float {v}_s = 0.0f; {{ float {t}[{g.vw}]; *(vfu*){t} = {v}; "
            f"for (int {i} = 0; {i} < {g.vw}; {i}++) {v}_s += {t}[{i}]; }}")


def _layernorm_vector(g: Gen, x: View, out: View, lead: int, n: int, wb, bb, eps: float) -> str:
    """LayerNorm over a contiguous last dimension: vector partial sums for the mean and the variance
    (two passes, as eager), vector normalise-scale-shift; the last ``n % vw`` elements scalar."""
    vw = g.vw
    nb, rem = n // vw, n % vw
    W, Bn = g.name(wb), g.name(bb)
    j, e = g.var("j"), g.var("e")
    sm, sq, mean, inv = g.var("sm"), g.var("sq"), g.var("mean"), g.var("inv")

    def body(offs: list[str]) -> str:
        xo, oo = offs[1], offs[0]
        xp = lambda idx: f"&{g.elem(x, f'{xo} + {idx}')}"
        xe = lambda idx: g.elem(x, f"{xo} + {idx}")
        oe = lambda idx: g.elem(out, f"{oo} + {idx}")
        return "\n".join([
            f"vf {sm} = (vf){{0}};",
            f"for (long {j} = 0; {j} < {nb}; {j}++) {sm} += VLOAD({xp(f'{j}*{vw}')});",
            _hsum(g, sm),
            f"for (long {e} = {nb * vw}; {e} < {n}; {e}++) {sm}_s += {xe(e)};" if rem else "",
            f"float {mean} = {sm}_s / {n}.0f;",
            f"vf {sq} = (vf){{0}};",
            f"for (long {j} = 0; {j} < {nb}; {j}++) {{ vf d = VLOAD({xp(f'{j}*{vw}')}) - {mean}; {sq} += d * d; }}",
            _hsum(g, sq),
            f"for (long {e} = {nb * vw}; {e} < {n}; {e}++) {{ float d = {xe(e)} - {mean}; {sq}_s += d * d; }}" if rem else "",
            f"float {inv} = 1.0f / sqrtf({sq}_s / {n}.0f + {c_literal(eps)});",
            f"for (long {j} = 0; {j} < {nb}; {j}++) *(vfu*)&{oe(f'{j}*{vw}')} = (VLOAD({xp(f'{j}*{vw}')}) - {mean}) * {inv}"
            f" * VLOAD({W} + {j}*{vw}) + VLOAD({Bn} + {j}*{vw});",
            f"for (long {e} = {nb * vw}; {e} < {n}; {e}++) {oe(e)} = ({xe(e)} - {mean}) * {inv} * {W}[{e}] + {Bn}[{e}];"
            if rem else ""])

    return g.loops(x.sizes[:lead], [out.strides[:lead], x.strides[:lead]], body) if lead else body(["0", "0"])


@register_c_emitter("aten._softmax", "aten._safe_softmax")
def _softmax(op: Op, g: Gen) -> str:
    """Softmax along ``dim``; ``_safe_softmax`` (the decomposed attention's) gives 0 on a row that is
    all -inf (a fully masked query) where ``_softmax`` gives NaN."""
    x, dim = op.args[0], op.args[1] % len(op.args[0].sizes)
    safe = op.packet == "aten._safe_softmax"
    third = op.args[2] if len(op.args) > 2 else op.kwargs.get("dtype" if safe else "half_to_float")
    if (third not in (None, torch.float32)) if safe else bool(third):  # dtype / half_to_float
        raise NotLowerable(f"{op.name} with a dtype conversion")
    out = op.outs[0]
    other = [d for d in range(len(x.sizes)) if d != dim]
    n, sx, so = x.sizes[dim], x.strides[dim], out.strides[dim]
    m, tot, i = g.var("m"), g.var("s"), g.var("i")

    vw = g.vw
    if vw and sx == 1 and so == 1 and n >= vw:
        # contiguous rows: whole vectors exponentiated in place in the output (tk_vexp_sub)
        nb, jb = n // vw, g.var("jb")

        def vbody(offs: list[str]) -> str:
            oe = lambda idx: g.elem(out, f"{offs[0]} + {idx}")
            return (f"float {m} = -INFINITY, {tot} = 0.0f;\n"
                    f"for (long {i} = 0; {i} < {n}; {i}++) {{ float v = {g.elem(x, f'{offs[1]} + {i}')}; "
                    f"{oe(i)} = v; if (v > {m}) {m} = v; }}\n"
                    f"for (long {jb} = 0; {jb} < {nb}; {jb}++) tk_vexp_sub(&{oe(f'{jb}*{vw}')}, {m});\n"
                    f"for (long {i} = {nb * vw}; {i} < {n}; {i}++) {oe(i)} = expf({oe(i)} - {m});\n"
                    f"for (long {i} = 0; {i} < {n}; {i}++) {tot} += {oe(i)};\n"
                    f"for (long {i} = 0; {i} < {n}; {i}++) {oe(i)} "
                    + (f"= {m} == -INFINITY ? 0.0f : {oe(i)} / {tot};" if safe else f"/= {tot};"))

        return g.loops(tuple(x.sizes[d] for d in other), [tuple(out.strides[d] for d in other),
                                                          tuple(x.strides[d] for d in other)], vbody)

    def body(offs: list[str]) -> str:
        return (f"float {m} = -INFINITY, {tot} = 0.0f;\n"
                f"for (long {i} = 0; {i} < {n}; {i}++) {{ float v = {g.elem(x, f'{offs[1]} + {i}*{sx}')}; if (v > {m}) {m} = v; }}\n"
                f"for (long {i} = 0; {i} < {n}; {i}++) {{ float e = expf({g.elem(x, f'{offs[1]} + {i}*{sx}')} - {m}); "
                f"{g.elem(out, f'{offs[0]} + {i}*{so}')} = e; {tot} += e; }}\n"
                f"for (long {i} = 0; {i} < {n}; {i}++) {g.elem(out, f'{offs[0]} + {i}*{so}')} "
                + (f"= {m} == -INFINITY ? 0.0f : {g.elem(out, f'{offs[0]} + {i}*{so}')} / {tot};" if safe else f"/= {tot};"))

    return g.loops(tuple(x.sizes[d] for d in other), [tuple(out.strides[d] for d in other),
                                                      tuple(x.strides[d] for d in other)], body)


@register_c_emitter("aten.constant_pad_nd")
def _constant_pad(op: Op, g: Gen) -> str:
    """Fill with the value, then copy the input's kept region (negative pads crop)."""
    x, pad = op.args[0], list(op.args[1])
    value = op.args[2] if len(op.args) > 2 else 0.0
    out = op.outs[0]
    nd = len(x.sizes)
    lit = c_literal(value, out.buf.ctype)
    code = [g.loops(out.sizes, [out.strides], lambda o: f"{g.elem(out, o[0])} = {lit};")]
    src_off, dst_off, sizes = x.offset, out.offset, []
    for d in range(nd):
        k = nd - 1 - d
        pl, pr = (pad[2 * k], pad[2 * k + 1]) if 2 * k + 1 < len(pad) else (0, 0)
        lo = max(0, -pl)
        hi = x.sizes[d] - max(0, -pr)
        sizes.append(max(0, hi - lo))
        src_off += lo * x.strides[d]
        dst_off += max(0, pl) * out.strides[d]
    src = View(x.buf, src_off, tuple(sizes), x.strides)
    dst = View(out.buf, dst_off, tuple(sizes), out.strides)
    code.append(_copy(g, dst, src))
    return "\n".join(code)
