"""Rewrites of a recorded step before C generation: BatchNorm folded into the convolution before it,
ReLU applied in the convolution's (or matrix product's) store.

Both remove a full pass over the layer's output per step (write, then read again); on the reference
networks every conv is followed by BatchNorm and ReLU. A rewrite applies only where the intermediate
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


def _replace_buf(trace: Trace, ops: list[Op], old: Buf, new: Buf) -> None:
    sub = lambda a: View(new, a.offset, a.sizes, a.strides) if isinstance(a, View) and a.buf is old else a
    for op in ops:
        op.args = tree_map(sub, op.args)
        op.kwargs = tree_map(sub, op.kwargs)
        op.outs = [sub(o) for o in op.outs]
    trace.y = sub(trace.y)
    trace.new_state = {k: sub(v) for k, v in trace.new_state.items()}


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


def fuse(trace: Trace, ops: list[Op]) -> list[Op]:
    """The ops with BatchNorm folded and ReLU fused where it is safe (``ops``: the live ops, in order)."""
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
    return out
