"""``thinkonce.soi.apply``: the SOI pattern inserted into an existing network, as a new trainable model.

The model is traced with torch.fx (the converter's leaf rule). Each layer named in ``at`` (a
``Conv1d``/``Conv2d`` with time stride 1) becomes an S-CC (``mode="pp"``: :class:`StridedClonedConv1d`;
``mode="fp"``: the shifted S-CC) with the original's weights; a causal ``F.pad``/``ConstantPad`` in
front of it is absorbed (the S-CC pads causally itself). Every value downstream of an S-CC is at half
the rate (one level lower per S-CC); where values of different levels meet (an addition or
concatenation with a skip connection) the deeper ones are filled back with ``fill`` and cropped to the
shallower partner; at the output, deep values are filled back to the original rate and cropped to the
S-CC's input when the original output had its length.

The returned :class:`torch.fx.GraphModule` holds **copies** of the original weights (the original model
is never modified; train the new one). It keeps the original's training/eval mode.
"""

from __future__ import annotations

import operator
from typing import Any, Sequence

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.passes.shape_prop import ShapeProp

from ..stream.frontend import StreamTracer, copy_model
from .conv import (ShiftedStridedClonedConv1d, ShiftedStridedClonedConv2d, StridedClonedConv1d, StridedClonedConv2d)
from .fill import EXTRAPOLATE_MODES, INTERPOLATE_MODES, Extrapolate, Interpolate

MODES = ("pp", "fp")
FILLS = EXTRAPOLATE_MODES + INTERPOLATE_MODES


class _Tracer(StreamTracer):
    """The converter's leaf rule, and the fills kept as modules (their weights stay trainable submodules)."""

    def is_leaf_module(self, m: nn.Module, qualified_name: str) -> bool:
        return isinstance(m, (Extrapolate, Interpolate)) or super().is_leaf_module(m, qualified_name)


def _example(model: nn.Module, example_input: torch.Tensor | None) -> torch.Tensor:
    if example_input is not None:
        return example_input
    from ..stream.stream import _infer_channels

    c = _infer_channels(model)
    if c is None:
        raise ValueError("thinkonce.soi.apply cannot infer the input channels; pass example_input=torch.zeros(1, C, T)")
    return torch.zeros(1, c, 64)


def _tlen(n: Any) -> int | None:
    meta = n.meta.get("tensor_meta") if isinstance(n, fx.Node) else None
    return int(meta.shape[-1]) if meta is not None and hasattr(meta, "shape") else None


def _is_tensor(n: Any) -> bool:
    return isinstance(n, fx.Node) and hasattr(n.meta.get("tensor_meta"), "shape")


def _causal_pad_amount(n: fx.Node, modules: dict[str, nn.Module]) -> tuple[int, int] | None:
    """(left, right) time padding of a constant zero pad node, or None."""
    if n.op == "call_function" and n.target is F.pad:
        pad = n.args[1] if len(n.args) > 1 else n.kwargs.get("pad")
        value = n.args[3] if len(n.args) > 3 else n.kwargs.get("value", 0.0)
        mode = n.args[2] if len(n.args) > 2 else n.kwargs.get("mode", "constant")
        if isinstance(pad, (tuple, list)) and len(pad) == 2 and mode == "constant" and not value:
            return int(pad[0]), int(pad[1])
    if n.op == "call_module" and isinstance(modules.get(n.target), (nn.ConstantPad1d, nn.ZeroPad1d)):
        m = modules[n.target]
        if not getattr(m, "value", 0.0):
            return int(m.padding[0]), int(m.padding[1])
    return None


def _scc_for(conv: nn.Module, name: str, mode: str) -> nn.Module:
    if type(conv) not in (nn.Conv1d, nn.Conv2d):
        raise ValueError(f"thinkonce.soi.apply: '{name}' is a {type(conv).__name__}; an S-CC replaces an nn.Conv1d or "
                         "nn.Conv2d (time last)")
    if conv.padding_mode != "zeros":
        raise ValueError(f"thinkonce.soi.apply: '{name}' pads with {conv.padding_mode!r}; the S-CC pads time causally "
                         "with zeros")
    one_d = isinstance(conv, nn.Conv1d)
    if conv.stride[-1] != 1:
        raise ValueError(f"thinkonce.soi.apply: '{name}' already has time stride {conv.stride[-1]}; place the S-CC at "
                         "a layer with time stride 1")
    bias = conv.bias is not None
    if one_d:
        cls = StridedClonedConv1d if mode == "pp" else ShiftedStridedClonedConv1d
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size[0], dilation=conv.dilation[0],
                  groups=conv.groups, bias=bias)
    else:
        if isinstance(conv.padding, str):
            raise ValueError(f"thinkonce.soi.apply: '{name}' uses padding={conv.padding!r}; give it explicit int padding")
        cls2 = StridedClonedConv2d if mode == "pp" else ShiftedStridedClonedConv2d
        new = cls2(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride[0],
                   padding=conv.padding[0], dilation=conv.dilation, groups=conv.groups, bias=bias)
    with torch.no_grad():
        new.weight.copy_(conv.weight)
        if bias:
            new.bias.copy_(conv.bias)
    return new.to(conv.weight.device, conv.weight.dtype).train(conv.training)


def apply(model: nn.Module, at: Sequence[str], mode: str = "pp", fill: str = "duplicate",
          example_input: torch.Tensor | None = None) -> fx.GraphModule:
    """A new model with the S-CC pattern at the layers named in ``at`` (see the module docstring).

    ``mode``: ``"pp"`` (partially predictive) or ``"fp"`` (fully predictive, shifted S-CC). ``fill``:
    ``"duplicate"`` (default), ``"tconv"``, ``"hybrid"`` (:class:`Extrapolate`) or ``"nearest"``,
    ``"linear"``, ``"cubic"`` (:class:`Interpolate`, non-causal: adds delay). ``example_input`` (default:
    inferred for 1-D models) sizes the learned fills and decides the crops. Weights are copied.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    if isinstance(at, str):
        at = [at]
    if not at:
        raise ValueError("at= names no layer; pass the names of the conv layers to turn into S-CCs")
    model = copy_model(model)
    tracer = _Tracer()
    graph = tracer.trace(model)
    gm = fx.GraphModule(tracer.root, graph, type(model).__name__ + "SOI")
    example = _example(model, example_input)
    was_training = gm.training
    gm.eval()
    with torch.no_grad():
        ShapeProp(gm).propagate(example)
    gm.train(was_training)
    modules = dict(gm.named_modules())
    by_target = {n.target: n for n in gm.graph.nodes if n.op == "call_module"}
    convs = [n.target for n in gm.graph.nodes if n.op == "call_module" and isinstance(modules[n.target], (nn.Conv1d, nn.Conv2d))]
    entries: dict[fx.Node, fx.Node] = {}  # S-CC node -> its (full-rate) input
    for name in at:
        n = by_target.get(name)
        if n is None:
            raise ValueError(f"thinkonce.soi.apply: no layer named {name!r} is called in the model's forward; "
                             f"conv layers: {convs}")
        conv = modules[name]
        scc = _scc_for(conv, name, mode)
        _set_submodule(gm, name, scc)
        src = n.args[0]
        pad = _causal_pad_amount(src, modules) if isinstance(src, fx.Node) else None
        k, d = conv.kernel_size[-1], conv.dilation[-1]
        if pad == (d * (k - 1), 0) and len(src.users) == 1:
            n.replace_input_with(src, src.args[0])
            src = src.args[0]
        entries[n] = src
    _insert_fills(gm, entries, fill, mode)
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    gm.recompile()
    # traced once more with the converter's own leaf rule: the fills' two-input forward is inlined into
    # the registered ops it is made of (a GraphModule is streamed as it is, without retracing)
    final = StreamTracer()
    out = fx.GraphModule(gm, final.trace(gm), type(model).__name__ + "SOI")
    return out.train(was_training)


def _set_submodule(gm: nn.Module, name: str, m: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = gm.get_submodule(parent_name) if parent_name else gm
    setattr(parent, leaf, m)


def _insert_fills(gm: fx.GraphModule, entries: dict[fx.Node, fx.Node], fill: str, mode: str) -> None:
    level: dict[fx.Node, int] = {}
    counter = [0]

    def make_fill(a: fx.Node, like: fx.Node | None, before: fx.Node) -> fx.Node:
        meta = a.meta.get("tensor_meta")
        dim = len(meta.shape) - 2 if meta is not None else 1
        if fill in EXTRAPOLATE_MODES:
            mod: nn.Module = Extrapolate(fill, channels=int(meta.shape[1]) if meta is not None and fill != "duplicate" else None,
                                         dim=dim)
        else:
            mod = Interpolate(fill)
        name = f"soi_fill_{counter[0]}"
        counter[0] += 1
        gm.add_submodule(name, mod)
        with gm.graph.inserting_before(before):
            node = gm.graph.call_module(name, (a,) if like is None else (a, like))  # type: ignore[arg-type]
        node.meta.update(a.meta)
        return node

    def like_for(a: fx.Node, lv: int) -> fx.Node | None:
        """A value at level ``lv - 1`` with the time length ``a`` had in the original model: an S-CC's input."""
        for src in entries.values():
            if level.get(src, 0) == lv - 1 and _tlen(src) is not None and _tlen(src) == _tlen(a):
                return src
        return None

    def fill_down(a: fx.Node, to: int, partner: fx.Node | None, before: fx.Node) -> fx.Node:
        v = a
        for lv in range(level[a], to, -1):
            like = partner if lv - 1 == to and partner is not None else like_for(a, lv)
            v = make_fill(v, like, before)
            level[v] = lv - 1
        return v

    for n in list(gm.graph.nodes):
        if n.op in ("placeholder", "get_attr"):
            level[n] = 0
            continue
        if n.op == "output":
            outs = n.args[0]
            for a in (outs if isinstance(outs, (tuple, list)) else (outs,)):
                if isinstance(a, fx.Node) and level.get(a, 0) > 0:
                    n.replace_input_with(a, fill_down(a, 0, None, n))
            continue
        ins = [a for a in n.all_input_nodes if a.op != "get_attr" and _is_tensor(a)]
        levels = [level.get(a, 0) for a in ins]
        low = min(levels, default=0)
        if levels and max(levels) != low:
            partner = next(a for a, lv in zip(ins, levels) if lv == low)
            for a, lv in zip(ins, levels):
                if lv > low:
                    n.replace_input_with(a, fill_down(a, low, partner, n))
        level[n] = low + (1 if n in entries else 0)
