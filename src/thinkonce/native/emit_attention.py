"""C emitter of scaled dot-product attention (``softmax(q k^T * scale [+ causal mask]) v``).

A PPG/EEG head runs it once per window on a few hundred frames, so it is small next to the trunk, but
in scalar loops it was a visible share of the step. With a vector width the two matrix products are
broadcast-FMA kernels over vectors of the GCC/Clang vector type, as in :mod:`.emit_linear`: ``K^T``
and ``V`` are first packed into scratch space, zero-padded to whole vectors, so every vector load is
in bounds whatever the shapes and strides; the scores are vectors over the key positions (one weight
``q[i, e]`` broadcast per step), the output vectors over the value features (one probability ``p[j]``
broadcast per step). The softmax between them exponentiates whole vectors too (``tk_vexp_sub`` of the
vector prelude: Cephes' expf polynomial, within 2e-7 of libm's); lanes past the keys a row attends to
are computed and ignored.
Without a vector width (the portable export) it is plain C99 loops.
"""

from __future__ import annotations

from .codegen import Gen, c_literal
from .registry import register_c_emitter
from .trace import Buf, NotLowerable, Op, View

#: most vector accumulators kept in registers (beyond: a loop over vector blocks)
MAX_ACC = 8


@register_c_emitter("aten._scaled_dot_product_flash_attention_for_cpu", "aten._scaled_dot_product_attention_math")
def _sdpa(op: Op, g: Gen) -> str:
    q, k, v = op.args[:3]
    a = list(op.args) + [None] * 4
    if op.packet.endswith("_math"):  # (q, k, v, attn_mask, dropout_p, is_causal, dropout_mask, *, scale)
        mask, dropout, causal = a[3], a[4] or 0.0, bool(a[5])
        dropout = dropout or op.kwargs.get("dropout_p", 0.0)
        causal = causal or bool(op.kwargs.get("is_causal", False))
        mask = mask if mask is not None else op.kwargs.get("attn_mask")
    else:  # flash for CPU: (q, k, v, dropout_p, is_causal, *, attn_mask, scale)
        dropout = a[3] if a[3] is not None else op.kwargs.get("dropout_p", 0.0)
        causal = bool(a[4]) if a[4] is not None else bool(op.kwargs.get("is_causal", False))
        mask = op.kwargs.get("attn_mask")
    if dropout or mask is not None:
        raise NotLowerable(f"{op.name} with dropout or a mask")
    out = op.outs[0]
    *lead, L, E = q.sizes
    if op.kwargs.get("enable_gqa") or tuple(k.sizes[:-2]) != tuple(lead) or tuple(v.sizes[:-2]) != tuple(lead):
        raise NotLowerable(f"{op.name} with broadcast or grouped-query heads")
    S, Ev = k.sizes[-2], v.sizes[-1]
    scale = op.kwargs.get("scale") or 1.0 / (E ** 0.5)
    nl = len(lead)
    kern = _vector if g.vw else _scalar
    body = kern(g, q, k, v, out, nl, L, E, S, Ev, float(scale), bool(causal))
    return g.loops(tuple(lead), [tuple(q.strides[:nl]), tuple(k.strides[:nl]), tuple(v.strides[:nl]),
                                 tuple(out.strides[:nl])], body)


def _lim(i: str, S: int, causal: bool) -> str:
    """Keys row ``i`` attends to: all, or the causal (top-left aligned) prefix."""
    return f"({i} + 1 < {S} ? {i} + 1 : {S})" if causal else str(S)


def _scalar(g: Gen, q: View, k: View, v: View, out: View, nl: int, L: int, E: int, S: int, Ev: int,
            scale: float, causal: bool):
    sc = g.scratch(S)
    i, j, e, m, tot = g.var("i"), g.var("j"), g.var("e"), g.var("m"), g.var("s")

    def body(offs: list[str]) -> str:
        qo, ko, vo, oo = offs
        qs, ks, vs, os_ = q.strides[nl:], k.strides[nl:], v.strides[nl:], out.strides[nl:]
        lim = _lim(i, S, causal)
        return (f"for (long {i} = 0; {i} < {L}; {i}++) {{\nfloat {m} = -INFINITY, {tot} = 0.0f;\n"
                f"for (long {j} = 0; {j} < {lim}; {j}++) {{ float d = 0.0f; for (long {e} = 0; {e} < {E}; {e}++) "
                f"d += {g.elem(q, f'{qo} + {i}*{qs[0]} + {e}*{qs[1]}')} * {g.elem(k, f'{ko} + {j}*{ks[0]} + {e}*{ks[1]}')};\n"
                f"d *= {c_literal(scale)}; {g.name(sc)}[{j}] = d; if (d > {m}) {m} = d; }}\n"
                f"for (long {j} = 0; {j} < {lim}; {j}++) {{ {g.name(sc)}[{j}] = expf({g.name(sc)}[{j}] - {m}); {tot} += {g.name(sc)}[{j}]; }}\n"
                f"for (long {e} = 0; {e} < {Ev}; {e}++) {{ float acc = 0.0f; for (long {j} = 0; {j} < {lim}; {j}++) "
                f"acc += {g.name(sc)}[{j}] * {g.elem(v, f'{vo} + {j}*{vs[0]} + {e}*{vs[1]}')};\n"
                f"{g.elem(out, f'{oo} + {i}*{os_[0]} + {e}*{os_[1]}')} = acc / {tot}; }}\n}}")

    return body


def _acc_loop(g: Gen, nblocks: int, vw: int, red: str, n_red: str, term: "callable", store: "callable") -> str:
    """``for each vector block b: acc_b = sum over red < n_red of term(red, b)``, then ``store(b, acc)``:
    blocks held in registers (reduction loop outside) when few, else a loop over blocks."""
    U = min(4, MAX_ACC // max(nblocks, 1))
    if nblocks and U > 1:
        # few blocks (short rows): U partial accumulators per block over interleaved reduction steps, so
        # that U FMA chains are in flight instead of one (a single chain waits on the FMA's latency)
        accs = [[g.var("a") for _ in range(nblocks)] for _ in range(U)]
        lines = [f"vf {a} = (vf){{0}};" for row in accs for a in row]
        body = "\n".join(f"{a} += {term(f'({red} + {u})', str(b))};" for u, row in enumerate(accs)
                          for b, a in enumerate(row))
        lines.append(f"long {red} = 0;\nfor (; {red} + {U} <= {n_red}; {red} += {U}) {{\n{body}\n}}")
        lines.append(f"for (; {red} < {n_red}; {red}++) {{\n"
                     + "\n".join(f"{a} += {term(red, str(b))};" for b, a in enumerate(accs[0])) + "\n}")
        for b in range(nblocks):
            tot = " + ".join(f"{accs[u][b]}" for u in range(U))
            lines.append(store(str(b), f"({tot})"))
        return "{\n" + "\n".join(lines) + "\n}"
    if nblocks <= MAX_ACC:
        accs = [g.var("a") for _ in range(nblocks)]
        lines = [f"vf {a} = (vf){{0}};" for a in accs]
        lines.append(f"for (long {red} = 0; {red} < {n_red}; {red}++) {{\n"
                     + "\n".join(f"{a} += {term(red, str(b))};" for b, a in enumerate(accs)) + "\n}")
        lines += [store(str(b), a) for b, a in enumerate(accs)]
        return "\n".join(lines)
    b, a = g.var("b"), g.var("a")
    return (f"for (long {b} = 0; {b} < {nblocks}; {b}++) {{\nvf {a} = (vf){{0}};\n"
            f"for (long {red} = 0; {red} < {n_red}; {red}++) {a} += {term(red, b)};\n{store(b, a)}\n}}")


def _vector(g: Gen, q: View, k: View, v: View, out: View, nl: int, L: int, E: int, S: int, Ev: int,
            scale: float, causal: bool):
    vw = g.vw
    Sp, Evp = -(-S // vw) * vw, -(-Ev // vw) * vw
    kt, vp, sc, ob = g.scratch(E * Sp), g.scratch(S * Evp), g.scratch(Sp), g.scratch(Evp)
    KT, VP, SC, OB = g.name(kt), g.name(vp), g.name(sc), g.name(ob)
    i, j, e, m, tot = g.var("i"), g.var("j"), g.var("e"), g.var("m"), g.var("s")
    lit = c_literal(scale)

    def body(offs: list[str]) -> str:
        qo, ko, vo, oo = offs
        qs, ks, vs, os_ = q.strides[nl:], k.strides[nl:], v.strides[nl:], out.strides[nl:]
        lim = _lim(i, S, causal)
        pack = (f"for (long {e} = 0; {e} < {E}; {e}++) for (long {j} = 0; {j} < {Sp}; {j}++) "
                f"{KT}[{e}*{Sp} + {j}] = {j} < {S} ? {g.elem(k, f'{ko} + {j}*{ks[0]} + {e}*{ks[1]}')} : 0.0f;\n"
                f"for (long {j} = 0; {j} < {S}; {j}++) for (long {e} = 0; {e} < {Evp}; {e}++) "
                f"{VP}[{j}*{Evp} + {e}] = {e} < {Ev} ? {g.elem(v, f'{vo} + {j}*{vs[0]} + {e}*{vs[1]}')} : 0.0f;")
        qe = lambda r: g.elem(q, f"{qo} + {i}*{qs[0]} + {r}*{qs[1]}")
        scores = _acc_loop(g, Sp // vw, vw, e, str(E),
                           lambda r, b: f"{qe(r)} * VLOAD({KT} + {r}*{Sp} + ({b})*{vw})",
                           lambda b, a: f"*(vfu*)({SC} + ({b})*{vw}) = {a} * {lit};")
        jb = g.var("jb")
        # the row's maximum and sum over four interleaved partials (four dependency chains, not one)
        soft = (f"float {m} = -INFINITY, {tot} = 0.0f;\n"
                f"{{ float m0 = -INFINITY, m1 = -INFINITY, m2 = -INFINITY, m3 = -INFINITY; long {j} = 0;\n"
                f"for (; {j} + 4 <= {lim}; {j} += 4) {{ if ({SC}[{j}] > m0) m0 = {SC}[{j}]; "
                f"if ({SC}[{j} + 1] > m1) m1 = {SC}[{j} + 1]; if ({SC}[{j} + 2] > m2) m2 = {SC}[{j} + 2]; "
                f"if ({SC}[{j} + 3] > m3) m3 = {SC}[{j} + 3]; }}\n"
                f"for (; {j} < {lim}; {j}++) if ({SC}[{j}] > m0) m0 = {SC}[{j}];\n"
                f"{m} = m0 > m1 ? m0 : m1; if (m2 > {m}) {m} = m2; if (m3 > {m}) {m} = m3; }}\n"
                f"for (long {jb} = 0; {jb} < {Sp // vw}; {jb}++) "
                f"tk_vexp_sub({SC} + {jb}*{vw}, {m});\n"
                f"{{ float t0 = 0.0f, t1 = 0.0f, t2 = 0.0f, t3 = 0.0f; long {j} = 0;\n"
                f"for (; {j} + 4 <= {lim}; {j} += 4) {{ t0 += {SC}[{j}]; t1 += {SC}[{j} + 1]; t2 += {SC}[{j} + 2]; "
                f"t3 += {SC}[{j} + 3]; }}\n"
                f"for (; {j} < {lim}; {j}++) t0 += {SC}[{j}];\n{tot} = (t0 + t1) + (t2 + t3); }}")
        outs = _acc_loop(g, Evp // vw, vw, j, lim,
                         lambda r, b: f"{SC}[{r}] * VLOAD({VP} + {r}*{Evp} + ({b})*{vw})",
                         lambda b, a: f"*(vfu*)({OB} + ({b})*{vw}) = {a};")
        store = (f"{{ float inv = 1.0f / {tot}; for (long {e} = 0; {e} < {Ev}; {e}++) "
                 f"{g.elem(out, f'{oo} + {i}*{os_[0]} + {e}*{os_[1]}')} = {OB}[{e}] * inv; }}")
        return f"{pack}\nfor (long {i} = 0; {i} < {L}; {i}++) {{\n{scores}\n{soft}\n{outs}\n{store}\n}}"

    return body


_ = Buf
