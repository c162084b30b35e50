"""Rewrites of a recorded step before C generation: BatchNorm folded into the convolution before it,
ReLU applied in the convolution's (or matrix product's) store.

Both remove a full pass over the layer's output per step (write, then read again); on the reference
networks every conv is followed by BatchNorm and ReLU. A third rewrite drops copies (``clone``) whose
readers can read the copied view directly (:func:`drop_clones`): every emitter addresses strided views. A rewrite applies only where the intermediate
buffer has no other reader and the following op writes its result in the same element order, so the
following op's buffer can simply be replaced by the producer's.
"""

from __future__ import annotations

import torch
from torch.utils._pytree import tree_flatten, tree_map

from .emit_misc import bn_affine
from .trace import Buf, Op, Trace, View

BN = ("aten.native_batch_norm", "aten._native_batch_norm_legit_no_training")
PRODUCERS_RELU = ("aten.convolution", "aten.addmm", "aten.mm")


def _readers(trace: Trace, ops: list[Op]) -> dict[int, int]:
    """How many op arguments and outputs of the step read each buffer."""
    n: dict[int, int] = {}
    for op in ops:
        flat, _ = tree_flatten((op.args, op.kwargs))
        for a in flat:
            if isinstance(a, View):
                n[a.buf.id] = n.get(a.buf.id, 0) + 1
    for v in [trace.y, *trace.new_state.values()]:
        n[v.buf.id] = n.get(v.buf.id, 0) + 1
    return n


def _same_order(a: View, b: View) -> bool:
    return (a.offset == 0 and b.offset == 0 and a.sizes == b.sizes and a.numel == a.buf.numel == b.buf.numel
            and all(sa == sb for s, sa, sb in zip(a.sizes, a.strides, b.strides) if s != 1))


def _substitute(trace: Trace, ops: list[Op], sub) -> None:
    """Apply ``sub`` to every view the step reads or writes: op arguments, outputs, y and the new state."""
    for op in ops:
        op.args = tree_map(sub, op.args)
        op.kwargs = tree_map(sub, op.kwargs)
        op.outs = [sub(o) for o in op.outs]
    trace.y = sub(trace.y)
    trace.new_state = {k: sub(v) for k, v in trace.new_state.items()}


def _replace_buf(trace: Trace, ops: list[Op], old: Buf, new: Buf) -> None:
    _substitute(trace, ops, lambda a: View(new, a.offset, a.sizes, a.strides) if isinstance(a, View) and a.buf is old else a)


def _const_view(trace: Trace, t: torch.Tensor) -> View:
    t = t.contiguous()
    b = Buf(len(trace.bufs), "const", t.dtype, t.numel(), t.reshape(-1).clone())
    trace.bufs.append(b)
    stride, acc = [], 1
    for s in reversed(t.shape):
        stride.append(acc)
        acc *= s
    return View(b, 0, tuple(t.shape), tuple(reversed(stride)))


def _fusable_relu_producer(prod: Op) -> bool:
    """Ops whose emitter stores through the register-tiled kernel (where the ReLU is applied)."""
    if prod.packet == "aten.convolution":
        return not prod.args[6] and len(prod.args[0].sizes) == 3
    if prod.packet in ("aten.addmm", "aten.mm"):
        a, b = (prod.args[1], prod.args[2]) if prod.packet == "aten.addmm" else prod.args[:2]
        return any(isinstance(v, View) and v.buf.kind == "const" and v.buf.data is not None for v in (a, b))
    return False


def compose(v: View, src: View) -> View | None:
    """``v`` (a view of a contiguous buffer holding a copy of ``src``) as a view of ``src``'s buffer,
    or None when one of ``v``'s dimensions straddles ``src``'s (no single stride expresses it)."""
    S = src.sizes
    cs, acc = [0] * len(S), 1
    for j in reversed(range(len(S))):
        cs[j] = acc
        acc *= S[j]
    if v.numel == 0 or acc == 0:
        return None
    coord, rem = [], v.offset
    for j in range(len(S)):
        coord.append(rem // cs[j])
        rem %= cs[j]
    used: set[int] = set()
    strides = []
    for n, st in zip(v.sizes, v.strides):
        if n == 1 or st == 0:
            strides.append(0)
            continue
        js = [j for j in range(len(S)) if cs[j] == st and S[j] > 1 and j not in used]
        if not js or coord[js[0]] + n > S[js[0]]:
            return None
        used.add(js[0])
        strides.append(src.strides[js[0]])
    off = src.offset + sum(c * s for c, s in zip(coord, src.strides))
    return View(src.buf, off, v.sizes, tuple(strides))


def split_dims(v: View, S: tuple[int, ...]) -> list[list[int]] | None:
    """For each dimension of ``v`` (a whole view of a contiguous buffer of sizes ``S``, offset 0), the
    run of ``S``'s dimensions it flattens (an im2col matrix read as its unfolded source), or None."""
    cs, acc = [0] * len(S), 1
    for j in reversed(range(len(S))):
        cs[j] = acc
        acc *= S[j]
    if v.offset != 0 or v.numel != acc:
        return None
    out: list[list[int]] = []
    j = 0
    for n, st in zip(v.sizes, v.strides):
        run, m = [], 1
        while j < len(S) and m < n:
            run.append(j)
            m *= S[j]
            j += 1
        while j < len(S) and S[j] == 1 and m == n and (not run or cs[j] == st):
            run.append(j)  # trailing size-1 dimensions
            j += 1
        if m != n or (run and cs[run[-1]] != st and n != 1):
            return None
        out.append(run)
    return out if j == len(S) else None


def _split_reader(lo: Op, a: View, src: View, res: View) -> bool:
    """Let matrix product ``lo`` read operand ``a`` (a view of the clone ``res`` of ``src``) from ``src``
    with the reduction dimension split over ``src``'s dimensions (kwargs ``_split_src``/meta)."""
    if lo.packet not in ("aten.addmm", "aten.mm") or "_split_src" in lo.kwargs:
        return False
    A, B = (lo.args[1], lo.args[2]) if lo.packet == "aten.addmm" else lo.args[:2]
    if A is a or B is not a or A.buf is res.buf or A.buf.kind != "const" or A.buf.data is None:
        return False
    runs = split_dims(a, tuple(res.sizes))
    if runs is None or len(runs) != 2 or len([j for j in runs[1] if res.sizes[j] != 1]) > 1:
        return False
    lo.kwargs = {**lo.kwargs, "_split_src": src}
    lo.meta["split_k"] = (runs[0], runs[1])
    return True


def _can_split(lo: Op, res: View) -> bool:
    if lo.packet not in ("aten.addmm", "aten.mm") or "_split_src" in lo.kwargs:
        return False
    A, B = (lo.args[1], lo.args[2]) if lo.packet == "aten.addmm" else lo.args[:2]
    if not isinstance(A, View) or not isinstance(B, View) or B.buf is not res.buf or A.buf is res.buf:
        return False
    if A.buf.kind != "const" or A.buf.data is None:
        return False
    runs = split_dims(B, tuple(res.sizes))
    return runs is not None and len(runs) == 2 and len([j for j in runs[1] if res.sizes[j] != 1]) <= 1


def drop_clones(trace: Trace, ops: list[Op]) -> list[Op]:
    """Clones (into a contiguous workspace buffer) removed where safe: nothing writes the source buffer
    or the copy after the clone, and every view of the copy is expressible over the source (the
    readers, outputs included, then read the source directly: one full copy less per step)."""
    out = list(ops)
    i = 0
    while i < len(out):
        op = out[i]
        res = op.outs[0] if op.outs else None
        src = op.args[0] if op.args else None
        if (op.packet != "aten.clone" or op.inplace or not isinstance(src, View) or res is None
                or res.buf.kind != "tmp" or not res.covers(res.buf) or tuple(res.sizes) != tuple(src.sizes)
                or src.buf is res.buf or src.dtype != res.dtype):
            i += 1
            continue
        later = out[i + 1:]
        if any(o is not None and o.buf in (src.buf, res.buf) for lo in later for o in lo.outs):
            i += 1
            continue
        ok = True

        def sub(a):
            nonlocal ok
            if isinstance(a, View) and a.buf is res.buf:
                c = compose(a, src)
                if c is None:
                    ok = False
                    return a
                return c
            return a

        new_args = [(tree_map(sub, lo.args), tree_map(sub, lo.kwargs)) for lo in later]
        new_y = sub(trace.y)
        new_state = {k: sub(v) for k, v in trace.new_state.items()}
        if not ok:
            # an im2col copy read only by matrix products with a constant side: they read the source
            readers = [lo for lo in later if any(v.buf is res.buf for v in _views(lo))]
            outs_read = any(v.buf is res.buf for v in [trace.y, *trace.new_state.values()])
            if (outs_read or not readers or any(sum(v.buf is res.buf for v in _views(lo)) != 1 for lo in readers)
                    or not all(_can_split(lo, res) for lo in readers)):
                i += 1
                continue
            for lo in readers:
                B = lo.args[2] if lo.packet == "aten.addmm" else lo.args[1]
                assert _split_reader(lo, B, src, res)
            del out[i]
            continue
        for lo, (a, kw) in zip(later, new_args):
            lo.args, lo.kwargs = a, kw
        trace.y, trace.new_state = new_y, new_state
        del out[i]
    return out


def _views(op: Op) -> list[View]:
    flat, _ = tree_flatten((op.args, op.kwargs))
    return [a for a in flat if isinstance(a, View)] + [o for o in op.outs if o is not None]


def cats_in_place(trace: Trace, ops: list[Op]) -> list[Op]:
    """Operands of a ``cat`` computed straight into their slice of its output (concat elimination).

    An operand qualifies when it is a whole workspace buffer of the cat's dtype, nothing writes it
    after the cat, nothing but the cat writes the cat's output, and every view of the operand (its
    producers' outputs, other readers, the step's outputs) is expressible over the slice. Its views
    are then redirected into the slice; the cat skips that operand (source and destination coincide).
    Ring buffers (``cat(old[hop:], new)``) and window ends (``cat(ring, edge)``) lose a full copy each.
    """
    for ci, cat in enumerate(ops):
        if cat.packet != "aten.cat" or cat.inplace or not cat.outs or cat.outs[0] is None:
            continue
        O = cat.outs[0]
        dim = cat.kwargs.get("dim", cat.args[1] if len(cat.args) > 1 else 0) % len(O.sizes)
        if O.buf.kind != "tmp" or not O.covers(O.buf):
            continue
        if any(o is not None and o.buf is O.buf for j, op in enumerate(ops) if j != ci for o in op.outs):
            continue
        pos = 0
        for t in cat.args[0]:
            if t.numel == 0 and len(t.sizes) == 1:
                continue
            n = t.sizes[dim]
            sizes = list(O.sizes)
            sizes[dim] = n
            D = View(O.buf, O.offset + pos * O.strides[dim], tuple(sizes), O.strides)
            pos += n
            if (t.buf.kind != "tmp" or t.buf is O.buf or not t.covers(t.buf) or tuple(t.sizes) != D.sizes
                    or t.dtype != O.dtype or sum(a.buf is t.buf for a in cat.args[0]) != 1):
                continue
            if any(o is not None and o.buf is t.buf for op in ops[ci + 1:] for o in op.outs):
                continue
            seen = [v for op in ops for v in _views(op) if v.buf is t.buf]
            seen += [v for v in [trace.y, *trace.new_state.values()] if v.buf is t.buf]
            if any(compose(v, D) is None for v in seen):
                continue
            old = t.buf
            _substitute(trace, ops, lambda a, D=D, old=old: compose(a, D) if isinstance(a, View) and a.buf is old else a)
    return ops


def fuse(trace: Trace, ops: list[Op]) -> list[Op]:
    """The ops with BatchNorm folded and ReLU fused where it is safe (``ops``: the live ops, in order),
    after dropping the copies readers do not need (:func:`drop_clones`); then cat operands are
    computed in place (:func:`cats_in_place`: after the folds, which need whole buffers)."""
    ops = drop_clones(trace, ops)
    producer = {o.buf.id: op for op in ops for o in op.outs[:1] if o is not None}
    out: list[Op] = list(ops)
    changed = True
    while changed:
        changed = False
        readers = _readers(trace, out)
        for i, op in enumerate(out):
            src = op.args[0] if op.args and isinstance(op.args[0], View) else None
            if src is None or readers.get(src.buf.id, 0) != 1:
                continue
            prod = producer.get(src.buf.id)
            if prod is None or prod not in out or prod.outs[0] is None or prod.meta.get("relu"):
                continue
            res = op.outs[0]
            if res is None or not _same_order(src, res):
                continue
            if any(o is not None and readers.get(o.buf.id, 0) for o in op.outs[1:]):
                continue  # BatchNorm's saved statistics are read by someone
            if not (src.numel == prod.outs[0].buf.numel and res.buf.kind == "tmp"):
                continue
            if op.packet in BN and prod.packet == "aten.convolution" and not prod.args[6]:
                w, b = prod.args[1], prod.args[2]
                if w.buf.kind != "const" or (isinstance(b, View) and b.buf.kind != "const"):
                    continue
                args = list(op.args)
                eps = args[7] if op.packet == "aten.native_batch_norm" else args[6]
                if op.packet == "aten.native_batch_norm" and args[5]:
                    continue
                W = torch.as_strided(w.buf.data, w.sizes, w.strides, w.offset).double()
                scale, shift = bn_affine(args[1], args[2], args[3], args[4], eps, W.shape[0])
                bias = (torch.as_strided(b.buf.data, b.sizes, b.strides, b.offset).double()
                        if isinstance(b, View) else torch.zeros(W.shape[0], dtype=torch.float64))
                pa = list(prod.args)
                pa[1] = _const_view(trace, (W * scale.double().view(-1, 1, 1)).float())
                pa[2] = _const_view(trace, (bias * scale.double() + shift.double()).float())
                prod.args = tuple(pa)
            elif op.packet == "aten.relu" and _fusable_relu_producer(prod):
                prod.meta["relu"] = True
            else:
                continue
            old = res.buf
            del out[i]
            _replace_buf(trace, out, old, src.buf)
            changed = True
            break
    return cats_in_place(trace, out)
