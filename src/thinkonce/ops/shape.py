"""Ops that move, split or index axes: where the time axis goes, and when it is sliced or read.

Moving the time axis (transpose, permute, unsqueeze, ...) is frame-wise with a new time axis; splitting
channels (split/chunk/unbind, a view that only regroups channels) is frame-wise too; slicing the time
axis is a trim (``x[..., n:]``, ``x[..., :-n]``) or, anywhere else, a head. Reading the time length
(``B, C, T = x.shape``) gives the window's frame count in window mode; in continuous mode a stream has
no length, so it may only size a view/reshape of each chunk (anything else is refused).
"""

from __future__ import annotations

import builtins
import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from ..stream.layers import TrimOp
from .context import OpContext, norm_dim
from .registry import method, register_op


# ---------------------------------------------------------------------------- moving the time axis
@register_op(method("transpose"), torch.transpose, method("swapaxes"), torch.swapaxes, method("swapdims"),
             torch.swapdims)
def transpose(ctx: OpContext):
    a, b = ctx.dim(ctx.arg(1, "dim0")), ctx.dim(ctx.arg(2, "dim1"))
    if a != b and 0 in (a, b):
        return ctx.batch_moved()
    t = ctx.t
    return ctx.framewise(b if t == a else a if t == b else t)


@register_op(method("permute"), torch.permute)
def permute(ctx: OpContext):
    n = ctx.node
    dims = n.args[1] if (len(n.args) == 2 and isinstance(n.args[1], (tuple, list))) else n.args[1:]
    if not dims:
        dims = n.kwargs.get("dims", ())
    dims = [ctx.dim(d) for d in dims]
    if dims[0] != 0:
        return ctx.batch_moved()
    return ctx.framewise(dims.index(ctx.t))


@register_op(method("movedim"), torch.movedim, method("moveaxis"), torch.moveaxis)
def movedim(ctx: OpContext):
    src, dst = ctx.arg(1, "source"), ctx.arg(2, "destination")
    src = [src] if isinstance(src, int) else list(src)
    dst = [dst] if isinstance(dst, int) else list(dst)
    order = [None] * ctx.ndim_in
    for s, d in zip(src, dst):
        order[ctx.dim(d)] = ctx.dim(s)
    rest = iter(i for i in range(ctx.ndim_in) if i not in [ctx.dim(s) for s in src])
    order = [o if o is not None else next(rest) for o in order]
    if order[0] != 0:
        return ctx.batch_moved()
    return ctx.framewise(order.index(ctx.t))


@register_op(method("unsqueeze"), torch.unsqueeze)
def unsqueeze(ctx: OpContext):
    d = ctx.dim(ctx.arg(1, "dim"), ctx.ndim_out)
    if d == 0:
        return ctx.batch_moved()
    return ctx.framewise(ctx.t + 1 if d <= ctx.t else ctx.t)


@register_op(method("squeeze"), torch.squeeze)
def squeeze(ctx: OpContext):
    d = ctx.arg(1, "dim")
    shape, t = ctx.in_shape, ctx.t
    if d is None:
        # squeeze() drops every size-1 axis; a chunk of one frame would lose its time axis, so the stream
        # squeezes exactly the axes the example squeezed (never the batch or time axis)
        ds = [i for i in range(1, ctx.ndim_in) if shape[i] == 1 and i != t]
        if shape[t] == 1:
            return ctx.mixing("squeeze() removes the time axis (one frame left)")
        src = ctx.node.args[0]

        def call(look, src=src, ds=tuple(ds)):
            return look(src).squeeze(ds) if ds else look(src)

        return ctx.framewise(t - sum(1 for x in ds if x < t), call=call)
    ds = [ctx.dim(x) for x in (d if isinstance(d, (tuple, list)) else [d])]
    if t in ds:
        return ctx.mixing("squeezes the time axis")
    return ctx.framewise(t - sum(1 for x in ds if x < t and shape[x] == 1))


@register_op(method("unflatten"), torch.unflatten, nn.Unflatten)
def unflatten(ctx: OpContext):
    if ctx.module is not None:
        d, sizes = ctx.dim(ctx.module.dim), ctx.module.unflattened_size
    else:
        d, sizes = ctx.dim(ctx.arg(1, "dim")), ctx.arg(2, "sizes")
    if d == ctx.t:
        return ctx.mixing("unflattens the time axis")
    return ctx.framewise(ctx.t + len(sizes) - 1 if d < ctx.t else ctx.t)


@register_op(method("select"), torch.select)
def select(ctx: OpContext):
    d = ctx.dim(ctx.arg(1, "dim"))
    if d == ctx.t:
        return ctx.mixing("selects one frame of the time axis")
    if d == 0:
        return ctx.batch_moved()
    return ctx.framewise(ctx.t - 1 if d < ctx.t else ctx.t)


@register_op(method("narrow"), torch.narrow)
def narrow(ctx: OpContext):
    d = ctx.dim(ctx.arg(1, "dim"))
    if d == ctx.t:
        return ctx.mixing("narrows the time axis")
    return ctx.framewise(ctx.t)


def _flatten_dims(ctx: OpContext, s0: int, s1: int):
    s0, s1 = ctx.dim(s0), ctx.dim(s1)
    t = ctx.t
    if s0 <= t <= s1 and s0 < s1:
        return ctx.mixing("flattens the time axis into features")
    if s0 == 0 and s1 > 0:
        return ctx.batch_moved()
    return ctx.framewise(t - (s1 - s0) if t > s1 else t)


@register_op(method("flatten"), torch.flatten)
def flatten(ctx: OpContext):
    return _flatten_dims(ctx, ctx.arg(1, "start_dim", 0), ctx.arg(2, "end_dim", -1))


@register_op(nn.Flatten)
def flatten_module(ctx: OpContext):
    m = ctx.module
    assert isinstance(m, nn.Flatten)
    return _flatten_dims(ctx, m.start_dim, m.end_dim)


# ---------------------------------------------------------------------------- joining and splitting
@register_op(torch.cat, torch.concat, torch.concatenate)
def cat(ctx: OpContext):
    d = ctx.dim(ctx.arg(1, "dim", 0))
    if d == ctx.t:
        raise ctx.fail("it concatenates along the time axis", "Concatenate over channels instead.")
    if d == 0:
        return ctx.batch_moved()
    return ctx.framewise(ctx.t)


@register_op(torch.stack)
def stack(ctx: OpContext):
    d = ctx.dim(ctx.arg(1, "dim", 0), ctx.ndim_out)
    if d == 0:
        return ctx.batch_moved()
    return ctx.framewise(ctx.t + 1 if d <= ctx.t else ctx.t)


@register_op(method("split"), torch.split, method("chunk"), torch.chunk, method("tensor_split"), torch.tensor_split)
def split(ctx: OpContext):
    """Splitting channels: every piece keeps the time axis; ``getitem`` picks a piece frame-wise."""
    d = ctx.dim(ctx.arg(2, "dim", 0))
    if d == ctx.t:
        return ctx.mixing("splits the time axis")
    if d == 0:
        return ctx.batch_moved()
    return ctx.framewise(ctx.t)


@register_op(method("unbind"), torch.unbind, torch.ops.aten.unbind)  # aten: the torch.export route
def unbind(ctx: OpContext):
    d = ctx.dim(ctx.arg(1, "dim", 0))
    if d == ctx.t:
        return ctx.mixing("unbinds the time axis")
    if d == 0:
        return ctx.batch_moved()
    return ctx.framewise(ctx.t - 1 if d < ctx.t else ctx.t)


# ---------------------------------------------------------------------------- views
def _shape_args(ctx: OpContext) -> list[Any]:
    n = ctx.node
    if n.op == "call_method":
        args = list(n.args[1:]) or [n.kwargs.get("shape", n.kwargs.get("size"))]
    else:
        args = [ctx.arg(1, "shape")]
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = list(args[0])
    return args


@register_op(method("view"), method("reshape"), torch.reshape)
def view(ctx: OpContext):
    """A view that keeps batch first and regroups only the axes around time is frame-wise, provided the
    time position is sized by the chunk (``-1`` or the value read from ``x.shape``), not a number."""
    if ctx.node.op == "call_method" and ctx.node.args[1:2] and isinstance(ctx.node.args[1], torch.dtype):
        return ctx.framewise()  # x.view(dtype)
    ins, outs, t = ctx.in_shape, ctx.out_shape, ctx.t
    if not (isinstance(ins, tuple) and isinstance(outs, tuple)):
        return ctx.mixing("reshapes the time axis")
    prod = lambda xs: int(torch.tensor(xs, dtype=torch.int64).prod()) if xs else 1  # noqa: E731
    before, after = prod(ins[:t]), prod(ins[t + 1:])
    args = _shape_args(ctx)
    for j in range(1, len(outs)):
        if outs[j] == ins[t] and prod(outs[:j]) == before and prod(outs[j + 1:]) == after and outs[0] == ins[0]:
            if len(args) != len(outs):
                break
            a = args[j]
            sized_by_chunk = a == -1 or (isinstance(a, fx.Node) and ctx._conv.plans[a].tlen)
            if not sized_by_chunk and ins[t] != 1:
                if ctx.window is not None:
                    return ctx.mixing(f"reshapes with the time axis given as the number {a}")
                raise ctx.fail(f"it reshapes with the time axis given as the number {a!r}, which only fits "
                               "the example's length", "Write -1 (or the length read from x.shape) there.")
            bt = args[0]
            if isinstance(bt, int) and bt != -1 and ctx.window is None:
                raise ctx.fail(f"it reshapes with the batch given as the number {bt}",
                               "Write x.shape[0] (or x.size(0)) for the batch.")
            return ctx.framewise(j)
    return ctx.mixing("reshapes the time axis together with other axes")


@register_op(method("expand"), method("expand_as"), method("repeat"), method("unfold"), method("as_strided"))
def mixing_method(ctx: OpContext):
    return ctx.mixing(f"{ctx.target_name()} on a temporal value")


# ---------------------------------------------------------------------------- indexing
@register_op(operator.getitem)
def getitem(ctx: OpContext):
    n = ctx.node
    src, index = n.args[0], n.args[1]
    src_plan = ctx._conv.plans[src]
    in_shape = ctx.in_shape
    if isinstance(in_shape, (tuple, list)) and not (in_shape and isinstance(in_shape[0], int)):
        items = src_plan.items
        if items is not None and isinstance(index, int):
            tdim = items[index]
            if tdim is None:
                return ctx.mixing(f"takes element {index} of '{src.name}', which has no time axis "
                                  "(e.g. the final hidden state of a recurrence)")
            return ctx.framewise(tdim)
        return ctx.framewise(ctx.t)  # a piece of split/chunk: same time axis
    items = list(index) if isinstance(index, tuple) else [index]
    if any(isinstance(i, fx.Node) for i in items):
        raise ctx.fail("indexing a temporal value with a tensor or a computed index")
    nd = len(in_shape)
    if Ellipsis in items:
        k = items.index(Ellipsis)
        n_real = sum(1 for i in items if i is not None and i is not Ellipsis)
        items = items[:k] + [slice(None)] * (nd - n_real) + items[k + 1:]
    items = items + [slice(None)] * (nd - sum(1 for i in items if i is not None))
    srcd, out_t, t = 0, 0, ctx.t
    trim: tuple[int, int] | None = None
    time_out, others_full = t, True
    for it in items:
        if it is None:
            out_t += 1
            others_full = False
            continue
        if srcd == 0 and it != slice(None):
            return ctx.batch_moved() if not isinstance(it, slice) else ctx.mixing("slices the batch axis")
        if srcd == t:
            if not isinstance(it, slice):
                return ctx.mixing("indexes one frame of the time axis")
            trim = _time_slice(it)
            if trim is None:
                return ctx.mixing(f"slices the time axis as {it} (only x[..., a:] and x[..., :-b] stream)")
            time_out = out_t
        elif it != slice(None):
            others_full = False
        if not isinstance(it, int):
            out_t += 1
        srcd += 1
    if trim is None or trim == (0, 0):
        return ctx.framewise(time_out)
    if not others_full:
        raise ctx.fail("it slices the time axis and indexes other axes at once",
                       "Split it into two indexing steps (the time slice alone, then the rest).")
    # a time slice is a trim: ``x[..., a:]`` drops the first a frames, ``x[..., :-b]`` holds the last b
    # back until the stream ends (a delay of b frames)
    return ctx.temporal(TrimOp(trim[0], trim[1], dim=t))


def _time_slice(it: slice) -> tuple[int, int] | None:
    """``slice`` on the time axis as (frames dropped at the start, frames dropped at the end)."""
    if it.step not in (None, 1):
        return None
    start, stop = it.start, it.stop
    if isinstance(start, fx.Node) or isinstance(stop, fx.Node):
        return None
    start = 0 if start is None else start
    if start < 0:
        return None  # the last -start frames: a window, not a trim
    if stop is None:
        return (start, 0)
    if stop < 0:
        return (start, -stop)
    return None


# ---------------------------------------------------------------------------- reading shapes
@register_op(method("size"))
def size(ctx: OpContext):
    d = ctx.arg(1, "dim")
    if d is not None:
        d = ctx.dim(d)
        if d == ctx.t:
            return _time_length(ctx)
        if d != 0:
            return ctx.const(ctx.out_shape)  # channels: fixed by the model
        return ctx.dyn()
    return _shape_tuple(ctx)


@register_op(method("dim"), method("ndimension"))
def ndim(ctx: OpContext):
    return ctx.const(ctx.out_shape)


@register_op(builtins.getattr)
def attribute(ctx: OpContext):
    name = ctx.node.args[1]
    if name == "shape":
        return _shape_tuple(ctx)
    if name in ("ndim", "dtype", "device", "is_cuda", "layout", "is_floating_point", "requires_grad"):
        return ctx.const(ctx.out_shape)
    if name in ("T", "mT", "mH"):
        return ctx.mixing(f"reverses the axes ({name}) of a temporal value")
    raise ctx.fail(f"it reads the attribute {name!r} of a temporal value")


def _shape_tuple(ctx: OpContext):
    from ..stream.convert import NodePlan

    return NodePlan(ctx.node, "dyn", shape_tdim=ctx.t)


def _time_length(ctx: OpContext):
    if ctx.window is not None:  # within a window every length is that of the window
        return ctx.const(ctx.out_shape)
    return ctx.dyn(tlen=True)


def shape_item(ctx: OpContext, shape_tdim: int):
    """``x.shape[i]`` (``B, C, T = x.shape``): batch is read per chunk, channels are fixed, time is the
    window's frame count (window mode) or the chunk's (continuous: only a view may use it)."""
    index = ctx.node.args[1]
    nd = len(ctx.in_shape)
    if isinstance(index, int):
        i = norm_dim(index, nd)
        if i == shape_tdim:
            return _time_length(ctx)
        return ctx.dyn() if i == 0 else ctx.const(ctx.out_shape)
    if isinstance(index, slice):
        covered = range(nd)[index]
        if shape_tdim in covered:
            return ctx.const(ctx.out_shape) if ctx.window is not None else ctx.dyn(tlen=True)
        return ctx.dyn() if 0 in covered else ctx.const(ctx.out_shape)
    return ctx.dyn(tlen=ctx.window is None)
