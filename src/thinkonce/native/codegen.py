"""From a recorded step (:class:`~thinkonce.native.trace.Trace`) to one C function.

Every shape, stride and offset is a compile-time constant, so the compiler sees fixed trip counts
and fixed addresses. The function takes one array of pointers, in the order of :attr:`CStep.params`:
the input chunk, the input state buffers and the constants it reads, the output buffers (``y`` then
the new state entries, contiguous) and a workspace for temporaries. It allocates nothing.

``Gen`` is the toolbox the per-op emitters (:mod:`thinkonce.native.emitters`) write with: element
addressing over strided views, loop nests with contiguous dimensions merged, constants the emitter
derives (packed weights, folded BatchNorm), scratch space, and the vector width (0: plain C99).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from .registry import emitter_for
from .trace import Buf, NotLowerable, Op, Trace, View

ALIGN = 64  # bytes: workspace buffers start on cache lines (and AVX-512 vectors)


def c_literal(v: float | int | bool, ctype: str = "float") -> str:
    """A C literal for a Python scalar in the given C type (inf/nan spelled through math.h)."""
    if ctype != "float":
        return str(int(v))
    v = float(v)
    if math.isnan(v):
        return "NAN"
    if math.isinf(v):
        return "INFINITY" if v > 0 else "(-INFINITY)"
    return f"{v!r}f" if "e" in repr(v) or "." in repr(v) else f"{v!r}.0f"


@dataclass
class CStep:
    """A generated step: the C source and what its pointer array holds, in order."""

    source: str
    params: list[Buf]  # inputs/state/constants read, then outputs, then (last) the workspace
    outputs: list[tuple[str, View]]  # ("y" or a state key, the view gathered into that output buffer)
    passthrough: list[str]  # state keys returned unchanged (the input tensor itself)
    workspace_bytes: int
    consts: list[Buf]
    func: str = "tk_step"


class Gen:
    """Writes C for one trace; emitters call its helpers."""

    def __init__(self, trace: Trace, vector_width: int, embed_consts: bool = False,
                 const_pool: "ConstPool | None" = None) -> None:
        self.trace = trace
        self.pool = const_pool
        self.vw = vector_width
        self.embed = embed_consts
        self.used: set[int] = set()
        self._n = 0
        self.extra: list[Buf] = []

    # ------------------------------------------------------------------ naming
    def var(self, stem: str = "i") -> str:
        self._n += 1
        return f"{stem}_{self._n}"

    def name(self, buf: Buf) -> str:
        self.used.add(buf.id)
        if self.pool is not None and buf.kind == "const":
            return self.pool.name(buf)
        return buf.name

    def elem(self, v: View, off: str = "0") -> str:
        """The element of ``v`` at element offset ``off`` (an expression over loop variables)."""
        base = v.offset
        if off in ("0", ""):
            return f"{self.name(v.buf)}[{base}]"
        return f"{self.name(v.buf)}[{base} + {off}]" if base else f"{self.name(v.buf)}[{off}]"

    def ptr(self, v: View) -> str:
        return f"({self.name(v.buf)} + {v.offset})"

    # ------------------------------------------------------------------ derived buffers
    def const(self, t: Tensor) -> Buf:
        """A new constant buffer (e.g. packed or folded weights) holding ``t``'s values, flat."""
        t = t.detach().contiguous().reshape(-1)
        b = Buf(len(self.trace.bufs), "const", t.dtype, t.numel(), t.clone())
        self.trace.bufs.append(b)
        self.extra.append(b)
        return b

    def scratch(self, numel: int, dtype: torch.dtype = torch.float32) -> Buf:
        b = Buf(len(self.trace.bufs), "tmp", dtype, numel)
        self.trace.bufs.append(b)
        return b

    @staticmethod
    def const_value(v: View) -> Tensor:
        """The values of a constant view, as a tensor of its shape."""
        if v.buf.kind != "const" or v.buf.data is None:
            raise NotLowerable("an operand the generator needs to be constant (a weight) is computed by the step")
        return torch.as_strided(v.buf.data, v.sizes, v.strides, v.offset)

    # ------------------------------------------------------------------ loops
    def loops(self, sizes: tuple[int, ...], strides: list[tuple[int, ...]],
              body: Callable[[list[str]], str]) -> str:
        """A loop nest over ``sizes``; ``body`` gets each operand's element offset expression.

        Size-1 dimensions are dropped and adjacent dimensions every operand walks contiguously are
        merged, so a contiguous copy or activation is one flat loop the compiler vectorises.
        """
        dims = [(s, [st[d] for st in strides]) for d, s in enumerate(sizes) if s != 1]
        if any(s == 0 for s in sizes):
            return ""
        merged: list[tuple[int, list[int]]] = []
        for s, st in dims:
            if merged:
                ps, pst = merged[-1]
                if all(a == b * s for a, b in zip(pst, st)):
                    merged[-1] = (ps * s, st)
                    continue
            merged.append((s, st))
        vars_ = [self.var() for _ in merged]
        offs = []
        for k in range(len(strides)):
            terms = [f"{v}*{st[k]}" if st[k] != 1 else v for v, (_, st) in zip(vars_, merged) if st[k] != 0]
            offs.append(" + ".join(terms) if terms else "0")
        code = body(offs)
        for v, (s, _) in reversed(list(zip(vars_, merged))):
            code = f"for (long {v} = 0; {v} < {s}; {v}++) {{\n{code}\n}}"
        return code


def broadcast_strides(v: View, sizes: tuple[int, ...]) -> tuple[int, ...]:
    """``v``'s strides broadcast to ``sizes`` (leading dims added, size-1 dims stride 0)."""
    lead = len(sizes) - len(v.sizes)
    if lead < 0:
        raise NotLowerable("a broadcast that shrinks a tensor")
    out = [0] * lead
    for s_in, st, s_out in zip(v.sizes, v.strides, sizes[lead:]):
        out.append(0 if s_in == 1 and s_out != 1 else st)
    return tuple(out)


def _live_ops(trace: Trace) -> list[Op]:
    """Ops whose results reach an output (dead code - unused indices, probes - is dropped)."""
    live = {trace.y.buf.id} | {v.buf.id for v in trace.new_state.values()}
    keep = []
    for op in reversed(trace.ops):
        out_ids = {o.buf.id for o in op.outs if o is not None}
        if not out_ids & live:
            continue
        keep.append(op)
        for a in _views_in(op):
            live.add(a.buf.id)
    keep.reverse()
    return keep


def _views_in(op: Op) -> list[View]:
    from torch.utils._pytree import tree_flatten

    flat, _ = tree_flatten((op.args, op.kwargs))
    return [a for a in flat if isinstance(a, View)]


def _plan_workspace(tmps: list[Buf]) -> tuple[dict[int, int], int]:
    off, offsets = 0, {}
    for b in tmps:
        offsets[b.id] = off
        nbytes = b.numel * torch.empty(0, dtype=b.dtype).element_size()
        off += -(-max(nbytes, 1) // ALIGN) * ALIGN
    return offsets, off


#: Every generated function is opaque to its callers' interprocedural analysis (GCC's ``noipa``).
#: Why: GCC 12.2 (Debian 12's system compiler, the one tested here) miscompiles op functions at -O1
#: and -O2. Induction-variable optimisation rewrites accesses at different strides off one workspace
#: pointer (``c[i] = b[1 + 4*i] + a[i]``, all three at constant offsets of the same base) into a
#: memory reference whose base is the constant 0; the late pure-const pass takes that for a NULL
#: dereference, stops scanning, declares the function pure, and the caller deletes the call as dead:
#: the op's output keeps whatever the workspace held (the U-Net export's warm-up step 2;
#: tests/test_export_c.py::test_gcc_opaque_calls_are_kept holds the reduced reproducer). With
#: ``noipa`` callers keep every call whatever the callee's own analysis concludes; it implies
#: ``noinline``, which the vector kernels had anyway. Clang (no ``noipa``) gets ``noinline``.
OPAQUE_PRELUDE = """#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 8
#define TK_OPAQUE __attribute__((noipa))
#elif defined(__GNUC__)
#define TK_OPAQUE __attribute__((noinline))
#else
#define TK_OPAQUE
#endif
"""

VECTOR_PRELUDE = """typedef float vf __attribute__((vector_size({nb})));
typedef float vfu __attribute__((vector_size({nb}), aligned(4)));
typedef int vi __attribute__((vector_size({nb})));
#define VLOAD(p) (*(const vfu*)(p))
/* p[0..lanes) = exp(p - m) for p <= m (a softmax row after its maximum m): Cephes' expf, the argument
   clamped to [-87, 0], 2^n built in the exponent bits; relative error about 2e-7 (eager: libm's expf).
   Takes a pointer, not a vector: passing vectors by value without -march changes the ABI (-Wpsabi). */
static inline void tk_vexp_sub(float* p, float mx) {{
  vf x = VLOAD(p) - mx;
  vf lo = (vf){{0}} - 87.0f, hi = (vf){{0}};
  vi m = x < lo;
  x = (vf)(((vi)x & ~m) | ((vi)lo & m));
  m = x > hi;
  x = (vf)((vi)x & ~m);
  vi n = __builtin_convertvector(0.5f - x * 1.44269504088896341f, vi);  /* = -floor(x log2 e + 0.5) */
  vf fx = -__builtin_convertvector(n, vf);
  x = x - fx * 0.693359375f;
  x = x - fx * -2.12194440e-4f;
  vf z = x * x;
  vf y = ((((1.9875691500e-4f * x + 1.3981999507e-3f) * x + 8.3334519073e-3f) * x + 4.1665795894e-2f) * x
          + 1.6666665459e-1f) * x + 5.0000001201e-1f;
  y = y * z + x + 1.0f;
  *(vfu*)p = y * (vf)((127 - n) << 23);
}}
"""


class ConstPool:
    """Constants shared by several generated steps (the device export): one array per distinct content."""

    def __init__(self) -> None:
        self.names: dict[tuple, str] = {}
        self.arrays: list[Buf] = []

    def name(self, buf: Buf) -> str:
        assert buf.data is not None
        key = (str(buf.dtype), buf.numel, buf.data.numpy().tobytes())
        n = self.names.get(key)
        if n is None:
            n = self.names[key] = f"tk_w{len(self.arrays)}"
            self.arrays.append(Buf(len(self.arrays), "const", buf.dtype, buf.numel, buf.data))
        return n

    def source(self) -> str:
        return "\n".join(const_array(b, n) for b, n in zip(self.arrays, self.names.values()))


def generate(trace: Trace, vector_width: int, embed_consts: bool = False, func: str = "tk_step",
             const_pool: ConstPool | None = None, prelude: bool = True, staged: bool = True) -> CStep:
    """C for the whole step. ``embed_consts``: constants become ``static const`` arrays in the source
    (the device export); otherwise they are passed by pointer (in-process: no multi-megabyte sources,
    and one compiled library serves any weights of the same shapes). ``staged``: also write
    ``<func>_staged`` (outputs may overwrite the input state: the in-process ``donate=True`` path; the
    device export never needs it, its outputs go to the other arena).

    Each op is its own small non-inlined (``TK_OPAQUE``) function declaring only the buffers it touches: the
    compiler's optimiser then works on many small functions instead of one huge one (compile time
    grows much faster than linearly with function size)."""
    from .fuse import fuse

    g = Gen(trace, vector_width, embed_consts, const_pool)
    pieces: list[tuple[str, str, set[int]]] = []  # (comment, code, buffers used)
    for op in fuse(trace, _live_ops(trace)):
        if op.inplace:
            for o in op.outs:
                if o is not None and o.buf.kind in ("input", "state", "const"):
                    raise NotLowerable(f"{op.name} writes into an input of the step")
        emit = emitter_for(op.name, op.packet)
        if emit is None:
            raise NotLowerable(f"no C emitter for {op.name}")
        before = set(g.used)
        g.used = set()
        code = emit(op, g)
        pieces.append((op.name, code, set(g.used)))
        g.used |= before
    # outputs: y, then the new state entries the step changes
    outputs: list[tuple[str, View]] = [("y", trace.y)]
    passthrough = []
    for k in sorted(trace.new_state):
        v = trace.new_state[k]
        sb = trace.state.get(k)
        if sb is not None and v.covers(sb):
            passthrough.append(k)
        else:
            outputs.append((k, v))
    out_bufs, gather, staging, stages, direct, staged_bufs = [], [], [], [], [], []
    before = set(g.used)
    g.used = set()
    for k, v in outputs:
        ob = Buf(len(trace.bufs), "out", v.dtype, v.numel, key=k)
        trace.bufs.append(ob)
        out_bufs.append(ob)
        g.used.add(ob.id)
        contig = _contig_strides(v.sizes)
        gather.append(f"/* output {k} */\n" + g.loops(
            v.sizes, [contig, v.strides], lambda o, v=v, ob=ob: f"{ob.name}[{o[0]}] = {g.elem(v, o[1])};"))
        if not staged:
            continue
        # staged (donated state): gather everything that reads the step's inputs first, then overwrite
        # the old state buffers. An output computed into the workspace (a tmp) cannot alias any input,
        # so it is gathered straight into its buffer after those (no staging copy, no memcpy).
        if v.buf.kind == "tmp":
            direct.append(gather[-1])
            continue
        sb = g.scratch(v.numel, v.dtype)
        g.used.add(sb.id)
        stages.append(sb)
        staged_bufs.append(ob)
        staging.append(g.loops(v.sizes, [contig, v.strides], lambda o, v=v, sb=sb: f"{sb.name}[{o[0]}] = {g.elem(v, o[1])};"))
    staging.extend(direct)
    for ob, sb in zip(staged_bufs, stages):
        if ob.numel:
            staging.append(f"memcpy({ob.name}, {sb.name}, {ob.numel} * sizeof({ob.ctype}));")
    out_used = set(g.used)
    g.used |= before
    tmps = [b for b in trace.bufs if b.kind == "tmp" and b.id in g.used]
    offsets, ws_bytes = _plan_workspace(tmps)
    reads = [b for b in trace.bufs if b.kind in ("input", "state") and b.id in g.used]
    consts = [b for b in trace.bufs if b.kind == "const" and b.id in g.used]
    params = reads + ([] if embed_consts else consts) + out_bufs
    index = {b.id: i for i, b in enumerate(params)}
    by_id = {b.id: b for b in trace.bufs}
    nws = len(params)

    def decls(ids: set[int]) -> str:
        lines = []
        for i in sorted(ids):
            b = by_id[i]
            if b.kind == "tmp":
                lines.append(f"{b.ctype}* restrict {b.name} = ({b.ctype}*)((char*)p[{nws}] + {offsets[b.id]});")
            elif b.kind == "const" and embed_consts:
                continue
            else:
                qual = "const " if b.kind in ("input", "state", "const") else ""
                lines.append(f"{qual}{b.ctype}* restrict {b.name} = ({qual}{b.ctype}*)p[{index[b.id]}];")
        return "\n".join(lines)

    head = ["#include <stdint.h>", "#include <string.h>", "#include <math.h>", "", OPAQUE_PRELUDE] if prelude else []
    if vector_width and prelude:
        head.append(VECTOR_PRELUDE.format(nb=4 * vector_width))
    if embed_consts and const_pool is None:
        for b in consts:
            head.append(const_array(b))
    attr = "TK_OPAQUE "  # see OPAQUE_PRELUDE: GCC 12 deletes calls of op functions it wrongly finds pure
    fns, calls = [], []
    for i, (name, code, ids) in enumerate(pieces):
        if not code.strip():
            continue
        fns.append(f"/* {name} */\nstatic {attr}void {func}_op{i}(void* const* p) {{\n{decls(ids)}\n{code}\n}}")
        calls.append(f"{func}_op{i}(p);")
    src = ("\n".join(head) + "\n" + "\n\n".join(fns) + "\n"
           + f"\n{attr}void {func}(void* const* p) {{\n" + "\n".join(calls) + f"\n{decls(out_used)}\n" + "\n".join(gather) + "\n}\n"
           + (f"\n{attr}void {func}_staged(void* const* p) {{\n" + "\n".join(calls) + f"\n{decls(out_used)}\n"
              + "\n".join(staging) + "\n}\n" if staged else ""))
    return CStep(src, params, outputs, passthrough, ws_bytes, consts, func)


def _contig_strides(sizes: tuple[int, ...]) -> tuple[int, ...]:
    out, acc = [], 1
    for s in reversed(sizes):
        out.append(acc)
        acc *= s
    return tuple(reversed(out))


def const_array(b: Buf, name: str | None = None) -> str:
    """``static const`` C array of a constant buffer (hex floats: bit-exact)."""
    assert b.data is not None
    vals = b.data.tolist()
    if b.ctype == "float":
        items = [c_literal(v) if not math.isfinite(v) else float(v).hex() + "f" for v in vals]
    else:
        items = [str(int(v)) for v in vals]
    rows = [", ".join(items[i:i + 8]) for i in range(0, len(items), 8)] or ["0"]
    return f"static const {b.ctype} {name or b.name}[{max(len(items), 1)}] = {{\n  " + ",\n  ".join(rows) + "\n};"
