"""C emitters of the ops that carry the MACs: ``convolution`` (1-D, any stride/dilation/groups/padding,
and transposed), ``addmm``/``mm`` (linear layers, im2col convolutions) and ``bmm``.

The workhorse is a weights-stationary register-tiled kernel (:func:`wstat`): the constant operand is
packed at build time as ``[reduction][P]`` with P (output channels) padded to the vector width, so one
vector load of weights feeds ``T`` output frames held in registers (``T x NV`` accumulators of the
GCC/Clang vector type, at most 24 of AVX-512's 32 registers). It is the same loop for a conv (the
reduction runs over input channel and tap, the input read straight from the strided buffer: no
im2col copy) and for a matrix product with a constant side. Plain C99 (vector width 0) keeps the loop
order without vector types, for the portable export.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .codegen import Gen, c_literal
from .registry import register_c_emitter
from .trace import Buf, NotLowerable, Op, View

#: most accumulator vector registers one tile uses (AVX-512 has 32; weights take the rest)
ACC_REGS = 24
#: most weight vectors per tile (output channels per tile = NV x vector width)
MAX_NV = 4


def pack(w: torch.Tensor, vw: int) -> tuple[torch.Tensor, int]:
    """``w`` of shape (R, P) with P padded with zeros to a multiple of the vector width."""
    r, p = w.shape
    pp = -(-p // vw) * vw if vw else p
    out = torch.zeros(r, pp, dtype=w.dtype)
    out[:, :p] = w
    return out, pp


def wstat(g: Gen, P: int, Q: int, red: list[int], w: Buf, Pp: int, wbase: str,
          xelem: Callable[[list[str], str], str], store: Callable[[str, str, str], str],
          bias: Buf | None, bbase: str = "0",
          store_vec: Callable[[str, str], str | None] | None = None, relu: bool = False) -> str:
    """``out[p, q] = bias[p] + sum_r W[r, p] * x(r, q)`` with ``r`` running over the nested ``red``
    extents; ``w`` is packed ``[r][Pp]``. ``xelem(rvars, q)`` and ``store(p, q, value)`` write C."""
    wn = g.name(w)
    bn = g.name(bias) if bias is not None else None
    rvars = [g.var("r") for _ in red]

    def red_loops(inner: str) -> str:
        code = inner
        for v, n in reversed(list(zip(rvars, red))):
            code = f"for (long {v} = 0; {v} < {n}; {v}++) {{\n{code}\n}}"
        return code

    if relu:  # ReLU fused into the store (NaN stays NaN, as torch.relu keeps it)
        plain_store = store
        store = lambda p, q, v: plain_store(p, q, f"({v} < 0 ? 0.0f : {v})")
        store_vec = None
    if not g.vw:
        p, q = g.var("p"), g.var("q")
        acc = g.var("acc")
        init = f"{bn}[{bbase} + {p}]" if bn else "0.0f"
        inner = f"{acc} += {wn}[{wbase} + ({_flat(rvars, red)})*{Pp} + {p}] * {xelem(rvars, q)};"
        return (f"for (long {p} = 0; {p} < {P}; {p}++) for (long {q} = 0; {q} < {Q}; {q}++) {{\n"
                f"float {acc} = {init};\n{red_loops(inner)}\n{store(p, q, acc)}\n}}")

    vw = g.vw
    nvt = Pp // vw
    parts = []
    pb = 0
    while pb < nvt:
        nv = min(MAX_NV, nvt - pb)
        T = max(1, min(Q, ACC_REGS // nv))
        nfull = Q // T
        pbase = pb * vw
        if nfull:
            q0 = g.var("q")
            parts.append(f"for (long {q0} = 0; {q0} < {nfull * T}; {q0} += {T}) {{\n"
                         + _tile(g, T, nv, pbase, q0, P, vw, Pp, wn, wbase, bn, bbase, rvars, red, red_loops,
                                 xelem, store, store_vec) + "\n}")
        rem = Q - nfull * T
        if rem:
            parts.append("{\n" + _tile(g, rem, nv, pbase, str(nfull * T), P, vw, Pp, wn, wbase, bn, bbase, rvars,
                                       red, red_loops, xelem, store, store_vec) + "\n}")
        pb += nv
    return "\n".join(parts)


def _flat(rvars: list[str], red: list[int]) -> str:
    expr = rvars[0]
    for v, n in zip(rvars[1:], red[1:]):
        expr = f"({expr})*{n} + {v}"
    return expr


def _tile(g: Gen, T: int, nv: int, pbase: int, q0: str, P: int, vw: int, Pp: int, wn: str, wbase: str,
          bn: str | None, bbase: str, rvars: list[str], red: list[int], red_loops, xelem, store, store_vec) -> str:
    acc = [[g.var("a") for _ in range(nv)] for _ in range(T)]
    lines = []
    for t in range(T):
        for j in range(nv):
            init = f"VLOAD({bn} + {bbase} + {pbase + j * vw})" if bn else "(vf){0}"
            lines.append(f"vf {acc[t][j]} = {init};")
    wp = g.var("wp")
    lines.append(f"const float* {wp} = {wn} + {wbase} + {pbase};")
    inner = []
    ws = [g.var("w") for _ in range(nv)]
    for j in range(nv):
        inner.append(f"vf {ws[j]} = VLOAD({wp} + {j * vw});")
    for t in range(T):
        xv = g.var("x")
        inner.append(f"float {xv} = {xelem(rvars, f'{q0} + {t}')};")
        for j in range(nv):
            inner.append(f"{acc[t][j]} += {ws[j]} * {xv};")
    inner.append(f"{wp} += {Pp};")
    lines.append(red_loops("\n".join(inner)))
    # stores: vector stores where the output is contiguous along p; otherwise through a tile buffer
    # and one loop nest (T x NV scatter loops would multiply code size and compile time)
    tb = None
    pending = []
    direct = store_vec is not None and pbase + nv * vw <= P and store_vec("0", "0") is not None
    for t in range(T):
        q = f"({q0} + {t})"
        for j in range(nv):
            p0 = pbase + j * vw
            if direct:
                lines.append(f"*(vfu*)({store_vec(str(p0), q)}) = {acc[t][j]};")
            elif P - p0 > 0:
                pending.append((t, j))
    if pending:
        tb = g.var("tile")
        lines.append(f"float {tb}[{T}][{nv * vw}] __attribute__((aligned(64)));")
        for t, j in pending:
            lines.append(f"*(vf*)&{tb}[{t}][{j * vw}] = {acc[t][j]};")
        tv, pv = g.var("t"), g.var("p")
        lanes = min(nv * vw, P - pbase)
        lines.append(f"for (int {tv} = 0; {tv} < {T}; {tv}++) for (int {pv} = 0; {pv} < {lanes}; {pv}++) "
                     f"{{ {store(f'({pbase} + {pv})', f'({q0} + {tv})', f'{tb}[{tv}][{pv}]')} }}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- convolution
@register_c_emitter("aten.convolution")
def _convolution(op: Op, g: Gen) -> str:
    x, w, b, stride, padding, dilation, transposed, output_padding, groups = op.args[:9]
    out = op.outs[0]
    if len(x.sizes) != 3:
        raise NotLowerable(f"{op.name} on {len(x.sizes)}-D input (only 1-D convolutions have an emitter)")
    W = Gen.const_value(w).float()
    bias = Gen.const_value(b).float() if isinstance(b, View) else None
    if transposed:
        return _conv_transposed(op, g, x, W, bias, stride[0], padding[0], dilation[0], groups, out)
    s, pad, d = stride[0], padding[0], dilation[0]
    B, Cin, L = x.sizes
    Cout, CIG, K = W.shape
    COG = Cout // groups
    if pad:
        # zero-padded copy in scratch space (streaming convs have padding 0: this is the rare path)
        Lp = L + 2 * pad
        sb = g.scratch(B * Cin * Lp)
        xp = View(sb, 0, (B, Cin, Lp), (Cin * Lp, Lp, 1))
        pre = g.loops(xp.sizes, [xp.strides], lambda o: f"{g.elem(xp, o[0])} = 0.0f;")
        inner = View(sb, pad, (B, Cin, L), (Cin * Lp, Lp, 1))
        pre += "\n" + g.loops(x.sizes, [inner.strides, x.strides], lambda o: f"{g.elem(inner, o[0])} = {g.elem(x, o[1])};")
        x = xp
    else:
        pre = ""
    n = out.sizes[2]
    # packed weights [g][ci][k][Pp]
    packs = []
    Pp = 0
    for gi in range(groups):
        wg = W[gi * COG:(gi + 1) * COG].permute(1, 2, 0).reshape(CIG * K, COG)
        pk, Pp = pack(wg, g.vw)
        packs.append(pk)
    wbuf = g.const(torch.stack(packs))
    bbuf = None
    if bias is not None:
        bp = [pack(bias[gi * COG:(gi + 1) * COG].reshape(1, COG), g.vw)[0] for gi in range(groups)]
        bbuf = g.const(torch.stack(bp))
    bv, gv = g.var("b"), g.var("g")
    sxb, sxc, sxt = x.strides
    sob, soc, sot = out.strides

    def xelem(r: list[str], q: str) -> str:
        return g.elem(x, f"{bv}*{sxb} + ({gv}*{CIG} + {r[0]})*{sxc} + (({q})*{s} + {r[1]}*{d})*{sxt}")

    def store(p: str, q: str, val: str) -> str:
        return f"{g.elem(out, f'{bv}*{sob} + ({gv}*{COG} + {p})*{soc} + ({q})*{sot}')} = {val};"

    def store_vec(p: str, q: str) -> str | None:
        return f"&{g.elem(out, f'{bv}*{sob} + ({gv}*{COG} + {p})*{soc} + ({q})*{sot}')}" if soc == 1 else None

    kern = wstat(g, COG, n, [CIG, K], wbuf, Pp, f"{gv}*{CIG * K * Pp}", xelem, store, bbuf,
                 f"{gv}*{Pp}", store_vec, relu=bool(op.meta.get("relu")))
    return pre + f"\nfor (long {bv} = 0; {bv} < {B}; {bv}++) for (long {gv} = 0; {gv} < {groups}; {gv}++) {{\n{kern}\n}}"


def _conv_transposed(op: Op, g: Gen, x: View, W: torch.Tensor, bias, s: int, pad: int, d: int, groups: int,
                     out: View) -> str:
    """Overlap-add in plain loops (transposed convs are rare in streaming trunks and cheap per frame)."""
    B, Cin, L = x.sizes
    CIG, COG, K = W.shape[0] // groups, W.shape[1], W.shape[2]
    Lo = out.sizes[2]
    wb = g.const(W.contiguous())
    init = g.const(bias) if bias is not None else None
    b, gi, ci, co, t, k = (g.var(c) for c in "bgcotk")
    sob, soc, sot = out.strides
    sxb, sxc, sxt = x.strides
    o = lambda bb, cc, tt: g.elem(out, f"{bb}*{sob} + ({cc})*{soc} + ({tt})*{sot}")
    lines = [g.loops(out.sizes, [out.strides], lambda off: f"{g.elem(out, off[0])} = 0.0f;")]
    if init is not None:
        lines.append(f"for (long {b} = 0; {b} < {B}; {b}++) for (long {co} = 0; {co} < {COG * groups}; {co}++) "
                     f"for (long {t} = 0; {t} < {Lo}; {t}++) {o(b, co, t)} = {g.name(init)}[{co}];")
    pos = g.var("pos")
    lines.append(
        f"for (long {b} = 0; {b} < {B}; {b}++) for (long {gi} = 0; {gi} < {groups}; {gi}++) "
        f"for (long {ci} = 0; {ci} < {CIG}; {ci}++) for (long {t} = 0; {t} < {L}; {t}++) {{\n"
        f"float xv = {g.elem(x, f'{b}*{sxb} + ({gi}*{CIG} + {ci})*{sxc} + {t}*{sxt}')};\n"
        f"for (long {k} = 0; {k} < {K}; {k}++) {{ long {pos} = {t}*{s} + {k}*{d} - {pad}; if ({pos} < 0 || {pos} >= {Lo}) continue;\n"
        f"for (long {co} = 0; {co} < {COG}; {co}++) {o(b, f'{gi}*{COG} + {co}', pos)} += xv * "
        f"{g.name(wb)}[(({gi}*{CIG} + {ci})*{COG} + {co})*{K} + {k}]; }}\n}}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- matrix products
@register_c_emitter("aten.addmm", "aten.mm")
def _addmm(op: Op, g: Gen) -> str:
    if op.packet == "aten.addmm":
        bias, A, Bm = op.args[0], op.args[1], op.args[2]
        beta, alpha = op.kwargs.get("beta", 1), op.kwargs.get("alpha", 1)
    else:
        bias, (A, Bm), beta, alpha = None, op.args[:2], 1, 1
    out = op.outs[0]
    M, K = A.sizes
    N = Bm.sizes[1]
    som, son = out.strides
    bvec = None
    if A.buf.kind == "const" and A.buf.data is not None:
        # out^T: P = M (vectorised over A's rows), Q = N; x(r, q) = B[r, q]
        wk, Pp = pack(Gen.const_value(A).float().t() * alpha, g.vw)
        wb = g.const(wk)
        if bias is not None:
            bvec = _bias_vector(bias, (M, N), along=0, beta=beta, vw=g.vw, g=g)
            if bvec is False:
                raise NotLowerable("addmm with a bias that varies along both axes")
        sbk, sbn = Bm.strides
        red, xel = [K], lambda r, q: g.elem(Bm, f"{r[0]}*{sbk} + ({q})*{sbn}")
        src = op.kwargs.get("_split_src")
        if src is not None:
            # B is an im2col copy that was dropped (fuse.drop_clones): read its source, the reduction
            # split over the source's dimensions it flattens (a convolution without the copy)
            kruns, nrun = op.meta["split_k"]
            red = [src.sizes[j] for j in kruns]
            nst = next((src.strides[j] for j in nrun if src.sizes[j] != 1), 0)
            xel = lambda r, q: g.elem(src, " + ".join([f"{v}*{src.strides[j]}" for v, j in zip(r, kruns)]
                                                      + [f"({q})*{nst}"]))
        return wstat(g, M, N, red, wb, Pp, "0", xel,
                     lambda p, q, v: f"{g.elem(out, f'({p})*{som} + ({q})*{son}')} = {v};", bvec or None,
                     relu=bool(op.meta.get("relu")))
    if Bm.buf.kind == "const" and Bm.buf.data is not None:
        # P = N (vectorised over B's columns), Q = M; x(r, q) = A[q, r]
        wk, Pp = pack(Gen.const_value(Bm).float() * alpha, g.vw)
        wb = g.const(wk)
        if bias is not None:
            bvec = _bias_vector(bias, (M, N), along=1, beta=beta, vw=g.vw, g=g)
            if bvec is False:
                raise NotLowerable("addmm with a bias that varies along both axes")
        sam, sak = A.strides
        sv = (lambda p, q: f"&{g.elem(out, f'({q})*{som} + ({p})')}") if son == 1 else None
        return wstat(g, N, M, [K], wb, Pp, "0", lambda r, q: g.elem(A, f"({q})*{sam} + {r[0]}*{sak}"),
                     lambda p, q, v: f"{g.elem(out, f'({q})*{som} + ({p})*{son}')} = {v};", bvec or None,
                     store_vec=sv, relu=bool(op.meta.get("relu")))
    if op.meta.get("relu"):
        from .trace import NotLowerable as _NL

        raise _NL("ReLU fused into a matrix product without a constant side")
    return _generic_mm(g, A, Bm, out, bias, beta, alpha)


def _bias_vector(bias: View, shape: tuple[int, int], along: int, beta, vw: int, g: Gen):
    """The bias as a packed constant vector over axis ``along`` (False if it varies along the other)."""
    if bias.buf.kind != "const" or bias.buf.data is None:
        return False
    full = Gen.const_value(bias).float().expand(shape) * beta
    vec = full[0, :] if along == 1 else full[:, 0]
    other = full if along == 1 else full.t()
    if not bool((other == vec.unsqueeze(0)).all()):
        return False
    pk, _ = pack(vec.reshape(1, -1), vw)
    return g.const(pk)


def _generic_mm(g: Gen, A: View, Bm: View, out: View, bias, beta, alpha) -> str:
    M, K = A.sizes
    N = Bm.sizes[1]
    i, j, k, acc = g.var("i"), g.var("j"), g.var("k"), g.var("acc")
    init = "0.0f"
    if bias is not None:
        bs = _bstrides(bias, (M, N))
        init = f"{c_literal(beta)} * {g.elem(bias, f'{i}*{bs[0]} + {j}*{bs[1]}')}"
    return (f"for (long {i} = 0; {i} < {M}; {i}++) for (long {j} = 0; {j} < {N}; {j}++) {{\n"
            f"float {acc} = 0.0f;\nfor (long {k} = 0; {k} < {K}; {k}++) {acc} += "
            f"{g.elem(A, f'{i}*{A.strides[0]} + {k}*{A.strides[1]}')} * {g.elem(Bm, f'{k}*{Bm.strides[0]} + {j}*{Bm.strides[1]}')};\n"
            f"{g.elem(out, f'{i}*{out.strides[0]} + {j}*{out.strides[1]}')} = {init} + {c_literal(alpha)} * {acc};\n}}")


def _bstrides(v: View, shape: tuple[int, ...]) -> tuple[int, ...]:
    from .codegen import broadcast_strides

    return broadcast_strides(v, shape)


@register_c_emitter("aten.bmm")
def _bmm(op: Op, g: Gen) -> str:
    """``out[b] = A[b] @ B[b]``. With a vector width and B's rows contiguous: per output row, vector
    blocks of columns accumulate ``A[b, i, k]`` (broadcast) x a row block of B; the last columns that
    do not fill a vector are scalar. Otherwise plain loops."""
    A, Bm = op.args[:2]
    out = op.outs[0]
    nb, M, K = A.sizes
    N = Bm.sizes[2]
    b, i, j, k, acc = g.var("b"), g.var("i"), g.var("j"), g.var("k"), g.var("acc")
    sa, sbb, so = A.strides, Bm.strides, out.strides
    a_el = lambda kk: g.elem(A, f"{b}*{sa[0]} + {i}*{sa[1]} + {kk}*{sa[2]}")
    scalar = lambda j0: (f"for (long {j} = {j0}; {j} < {N}; {j}++) {{\nfloat {acc} = 0.0f;\n"
                         f"for (long {k} = 0; {k} < {K}; {k}++) {acc} += {a_el(k)} * "
                         f"{g.elem(Bm, f'{b}*{sbb[0]} + {k}*{sbb[1]} + {j}*{sbb[2]}')};\n"
                         f"{g.elem(out, f'{b}*{so[0]} + {i}*{so[1]} + {j}*{so[2]}')} = {acc};\n}}")
    head = f"for (long {b} = 0; {b} < {nb}; {b}++) for (long {i} = 0; {i} < {M}; {i}++) {{\n"
    vw = g.vw
    nfull = N // vw if vw and sbb[2] == 1 else 0
    if not nfull:
        return head + scalar("0") + "\n}"
    jb, a, t, e = g.var("jb"), g.var("a"), g.var("t"), g.var("e")
    if so[2] == 1:
        st = f"*(vfu*)&{g.elem(out, f'{b}*{so[0]} + {i}*{so[1]} + {jb}*{vw}')} = {a};"
    else:
        st = (f"float {t}[{vw}]; *(vfu*){t} = {a};\nfor (int {e} = 0; {e} < {vw}; {e}++) "
              f"{g.elem(out, f'{b}*{so[0]} + {i}*{so[1]} + ({jb}*{vw} + {e})*{so[2]}')} = {t}[{e}];")
    vec = (f"for (long {jb} = 0; {jb} < {nfull}; {jb}++) {{\nvf {a} = (vf){{0}};\n"
           f"for (long {k} = 0; {k} < {K}; {k}++) {a} += {a_el(k)} * "
           f"VLOAD(&{g.elem(Bm, f'{b}*{sbb[0]} + {k}*{sbb[1]} + {jb}*{vw}')});\n{st}\n}}")
    tail = scalar(str(nfull * vw)) if nfull * vw < N else ""
    return head + vec + "\n" + tail + "\n}"


_ = F  # F.conv1d semantics are what the emitters reproduce
