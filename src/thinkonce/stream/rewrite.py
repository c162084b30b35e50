"""Graph rewrites run before conversion: seq-first recurrences become batch-first ones.

Stream values keep the batch on axis 0, but seq-first ``nn.GRU``/``nn.LSTM``/``nn.RNN``
(``batch_first=False``, PyTorch's default) are fed ``(time, batch, features)``, usually made by
``x.permute(2, 0, 1)`` from ``(batch, channels, time)`` and permuted back after the recurrence
(Demucs' BLSTM, EnCodec's SLSTM). :func:`batch_first_recurrences` rewrites such regions so that every
value in them is stored with axes 0 and 1 exchanged - batch-first again:

* the permute/transpose that puts the batch on axis 1 becomes the permute to the exchanged layout
  (``permute(2, 0, 1)`` -> ``permute(0, 2, 1)``);
* the recurrence becomes a batch-first copy of itself (same weights); its output sequence is
  exchanged, its final hidden state (the same in both layouts) is not;
* ops that commute with exchanging axes 0 and 1 stay as they are: element-wise ops of exchanged
  values (``y + x``), activations, dropout, ``nn.Linear``/``nn.LayerNorm`` over the last axis;
* the permute/transpose back becomes the composed permute (``permute(1, 2, 0)`` -> ``permute(0, 2, 1)``);
* any other use of an exchanged value reads it through an inserted ``transpose(0, 1)``, i.e. the
  original value (the converter then says what it says about that value).

Why a rewrite and not a converter rule: the converter's invariant (every value batch-first) stays
true, every later stage (state layout, heads, backends, ONNX) is untouched, and the rewritten graph is
checked equal to the original on a random input before it is used (otherwise the original is kept and
the converter refuses the seq-first recurrence with its reason). Only regions that feed a seq-first
recurrence are rewritten; a model without one is returned as it is.
"""

from __future__ import annotations

import copy
import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
from torch.fx.node import map_arg

_RNNS = (nn.GRU, nn.LSTM, nn.RNN)
_PERMUTES = ("permute",)
_TRANSPOSES = ("transpose", "swapaxes", "swapdims")


def _pointwise_tables() -> tuple[set, set, tuple]:
    from ..ops import pointwise

    return set(pointwise.FUNCTIONS), set(pointwise.METHODS), pointwise.MODULES


def _perm_of(n: fx.Node, ndim: int) -> list[int] | None:
    """The permutation a permute/transpose node applies (None: not one)."""
    name = n.target if n.op == "call_method" else getattr(n.target, "__name__", None) if n.op == "call_function" else None
    if n.op == "call_function" and n.target not in (torch.permute, torch.transpose, torch.swapaxes, torch.swapdims):
        return None
    if name in _PERMUTES:
        dims = n.args[1:] if n.op == "call_method" else n.args[1:]
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = dims[0]
        if not dims:
            dims = n.kwargs.get("dims", ())
        if len(dims) != ndim or not all(isinstance(d, int) for d in dims):
            return None
        return [d % ndim for d in dims]
    if name in _TRANSPOSES:
        if len(n.args) < 3 or not all(isinstance(d, int) for d in n.args[1:3]):
            return None
        a, b = n.args[1] % ndim, n.args[2] % ndim
        p = list(range(ndim))
        p[a], p[b] = p[b], p[a]
        return p
    return None


def _swap(d: int) -> int:
    return 1 if d == 0 else 0 if d == 1 else d


class _Ndims(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.ndim: dict[fx.Node, int | None] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        self.ndim[n] = out.dim() if isinstance(out, torch.Tensor) else None
        return out


def batch_first_recurrences(gm: fx.GraphModule, example: torch.Tensor) -> fx.GraphModule:
    """``gm`` with its seq-first recurrence regions made batch-first (see the module docstring); ``gm``
    itself when it has none or the rewrite cannot be proven equal on a random input."""
    mods = dict(gm.named_modules())
    if not any(n.op == "call_module" and isinstance(mods.get(n.target), _RNNS) and not mods[n.target].batch_first
               for n in gm.graph.nodes):
        return gm
    try:
        return _rewrite(gm, example) or gm
    except Exception:  # never worse than no rewrite: the converter explains the seq-first recurrence
        return gm


def _rewrite(gm: fx.GraphModule, example: torch.Tensor) -> fx.GraphModule | None:
    new = fx.GraphModule(gm, copy.deepcopy(gm.graph), class_name=type(gm).__name__)
    mods = dict(new.named_modules())
    rec = _Ndims(new)
    with torch.no_grad():
        rec.run(example)
    ndim = rec.ndim
    funcs, methods, modules = _pointwise_tables()

    def seq_rnn(n: fx.Node) -> bool:
        if n.op != "call_module":
            return False
        m = mods.get(n.target)
        return (isinstance(m, _RNNS) and not m.batch_first and not m.bidirectional and ndim.get(n.args[0]) == 3
                and all(u.op == "call_function" and u.target is operator.getitem and isinstance(u.args[1], int)
                        for u in n.users))

    # seeds: permutes/transposes putting axis 0 on axis 1 whose value a seq-first recurrence reads
    seeds: set[fx.Node] = set()
    for n in new.graph.nodes:
        if seq_rnn(n):
            src = n.args[0]
            nd = ndim.get(src)
            if isinstance(src, fx.Node) and nd is not None and nd >= 3:
                p = _perm_of(src, nd)
                if p is not None and p[1] == 0 and ndim.get(src.args[0]) == nd:
                    seeds.add(src)
    if not seeds:
        return None

    swapped: set[fx.Node] = set()  # values stored with axes 0 and 1 exchanged
    rnn_tuples: set[fx.Node] = set()  # recurrences made batch-first (element 0 exchanged)
    graph = new.graph
    fixups: dict[fx.Node, fx.Node] = {}

    def original(v: fx.Node) -> fx.Node:
        """The original value of an exchanged node (a transpose(0, 1) of it), inserted once."""
        if v not in fixups:
            with graph.inserting_after(v):
                fixups[v] = graph.call_function(torch.transpose, (v, 0, 1))
        return fixups[v]

    def commutes(n: fx.Node, tensor_ins: list[fx.Node]) -> bool:
        nd = ndim.get(n)
        if nd is None or nd < 3 or any(ndim.get(a) != nd for a in tensor_ins):
            return False
        if n.op == "call_module":
            m = mods.get(n.target)
            if isinstance(m, modules) or isinstance(m, nn.Linear):
                return True
            if isinstance(m, nn.LayerNorm):
                return len(m.normalized_shape) <= nd - 2
            return False
        if n.op == "call_function":
            return n.target in funcs
        if n.op == "call_method":
            return n.target in methods
        return False

    for n in list(graph.nodes):
        if n in seeds:
            nd = ndim[n]
            p = _perm_of(n, nd)
            q = [p[1], p[0]] + p[2:]
            n.op, n.target, n.args, n.kwargs = "call_function", torch.permute, (n.args[0], tuple(q)), {}
            swapped.add(n)
            continue
        ins: list[fx.Node] = []
        map_arg((n.args, n.kwargs), lambda a: ins.append(a) or a)
        sw = [a for a in ins if a in swapped]
        if n.op == "call_function" and n.target is operator.getitem and n.args[0] in rnn_tuples:
            if n.args[1] == 0:
                swapped.add(n)
            continue
        if not sw:
            continue
        if n.op == "call_module" and seq_rnn(n) and n.args[0] in swapped and not any(
                a in swapped for a in ins if a is not n.args[0]):
            m = copy.copy(mods[n.target])
            m.batch_first = True
            n.target = _install(new, gm, n.target, m)
            mods[n.target] = m
            rnn_tuples.add(n)
            continue
        nd = ndim.get(n)
        if n.op in ("call_method", "call_function") and nd is not None and n.args and n.args[0] in swapped \
                and len(sw) == 1:
            p = _perm_of(n, nd)
            if p is not None:  # the permute back: compose with the exchange
                n.op, n.target, n.args, n.kwargs = "call_function", torch.permute, (
                    n.args[0], tuple(_swap(d) for d in p)), {}
                continue
        tensor_ins = [a for a in ins if ndim.get(a) is not None]
        if all(a in swapped for a in tensor_ins) and commutes(n, tensor_ins):
            swapped.add(n)
            continue
        for a in sw:  # anything else reads the original value
            n.replace_input_with(a, original(a))
    if not rnn_tuples:
        return None
    graph.lint()
    new.recompile()
    x = torch.randn_like(example)
    with torch.no_grad():
        want, got = gm(x), new(x)
    if not _same(want, got):
        return None
    return new


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        if not isinstance(b, torch.Tensor) or a.shape != b.shape:
            return False
        scale = max(1.0, float(a.abs().max())) if a.numel() else 1.0
        return bool(torch.allclose(a, b, rtol=0, atol=1e-5 * scale))
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))
    return a == b


def _install(new: fx.GraphModule, old: fx.GraphModule, target: str, m: nn.Module) -> str:
    """Put the batch-first copy where the original was, unless that parent is shared with ``old``
    (then at a fresh top-level name): the user's modules are never modified."""
    prefix, _, last = target.rpartition(".")
    parent = new.get_submodule(prefix) if prefix else new
    if parent is not new and any(parent is o for o in old.modules()):
        name = target.replace(".", "_") + "_batch_first"
        while hasattr(new, name):
            name += "_"
        new.add_submodule(name, m)
        return name
    setattr(parent, last, m)
    return target
