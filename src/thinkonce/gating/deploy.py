"""``deploy``: a gated model whose switched-off kernels are really not computed.

The gated model's graph is rewritten (on a copy) so that, for each gate:

* the LKAM becomes a :class:`~thinkonce.gating.gathered.DeployedGate` returning the engaged kernels;
* the conv it switches (layer i+1) computes only those kernels (gathered filters and biases), and the
  channel-wise layers after it (BatchNorm sliced, activations, pooling) run on those channels only;
* the next conv (layer i+2) reads only those channels (its weight's input columns gathered), so both
  layers shrink;
* any other reader of a compact value (a Linear head, a residual sum, the output) gets the channels
  expanded back with zeros.

The result equals the gated model's masked dense computation in eval mode (tested). Run-time knobs on
the returned model: :meth:`DeployedModel.set_threshold`, :meth:`DeployedModel.set_budget`, and
``crossover`` / ``batch`` for how batches run (:mod:`thinkonce.gating.gathered`, :mod:`.batching`).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
from torch import Tensor

from .chain import SLICED_MODULES, channelwise, conv_of, is_apply, is_gate
from .fold import fold_batchnorm
from .gathered import DeployedGate, Expand, GatheredConv, GatheredNorm, Masked
from .insert import GateError, gates
from .lkam import LKAM

BATCH_MODES = ("union", "split")


class DeployedModel(nn.Module):
    """The deployed network: ``forward(x)``; ``graph_module`` holds the rewritten graph.

    ``batch``: ``"union"`` runs a batch in one pass over the union of its inputs' engaged kernels (each
    gate falling back to dense weights with a mask when the union exceeds ``crossover``); ``"split"`` runs
    each input alone, each with its own gathered kernels.
    """

    def __init__(self, gm: fx.GraphModule, batch: str = "union", crossover: float = 1.0) -> None:
        super().__init__()
        self.graph_module = gm
        self.batch = batch
        self.crossover = crossover

    @property
    def gates(self) -> dict[str, DeployedGate]:
        return {n: m for n, m in self.graph_module.named_modules() if isinstance(m, DeployedGate)}

    @property
    def batch(self) -> str:
        return self._batch

    @batch.setter
    def batch(self, mode: str) -> None:
        if mode not in BATCH_MODES:
            raise ValueError(f"unknown batch mode {mode!r}; choose one of {BATCH_MODES}")
        self._batch = mode

    @property
    def crossover(self) -> float:
        return self._crossover

    @crossover.setter
    def crossover(self, c: float) -> None:
        if not 0.0 <= float(c) <= 1.0:
            raise ValueError(f"crossover is a share of kernels in [0, 1], got {c}")
        self._crossover = float(c)
        for g in self.gates.values():
            g.crossover = float(c)

    def set_threshold(self, threshold: float) -> "DeployedModel":
        for g in self.gates.values():
            g.lkam.threshold = threshold
        return self

    def set_budget(self, budget: float) -> "DeployedModel":
        for g in self.gates.values():
            g.lkam.budget = budget
        return self

    def forward(self, x: Tensor) -> Any:
        if self._batch == "split" and x.shape[0] > 1:
            return torch.cat([self.graph_module(x[i:i + 1]) for i in range(x.shape[0])])
        return self.graph_module(x)


def _segments(gm: fx.GraphModule) -> tuple[dict[fx.Node, fx.Node], dict[fx.Node, fx.Node]]:
    """``switched``: conv_j -> its gate node; ``inner``: channel-wise nodes between conv_j and the mask -> gate."""
    switched: dict[fx.Node, fx.Node] = {}
    inner: dict[fx.Node, fx.Node] = {}
    for a in gm.graph.nodes:
        if not is_apply(a):
            continue
        g = a.args[1]
        if not (isinstance(g, fx.Node) and is_gate(gm, g)):
            raise GateError(f"the mask '{a.name}' is not fed by an LKAM; deploy needs a model made by insert()")
        cur, chain = a.args[0], []
        while conv_of(gm, cur) is None:
            if not isinstance(cur, fx.Node) or channelwise(gm, cur) is None or is_apply(cur):
                raise GateError(f"between gate '{g.target}' and the conv it switches there is "
                                f"'{getattr(cur, 'name', cur)}', which is not channel-wise; the graph was edited "
                                "after insert()")
            chain.append(cur)
            cur = cur.args[0]
        switched[cur] = g
        for c in chain:
            inner[c] = g
    return switched, inner


def deploy(model: nn.Module, threshold: float = 0.5, budget: float = 1.0, batch: str = "union",
           crossover: float = 1.0, fold_bn: bool = True) -> DeployedModel:
    """The inference model of a gated model (from :func:`thinkonce.gating.insert`), in eval mode.

    ``threshold`` (and ``budget``: the largest share of kernels on per input) are the run-time knobs,
    also settable later on the result. ``fold_bn``: BatchNorms right after a conv are folded into it
    first (:mod:`thinkonce.gating.fold`). The gated model itself is not modified.
    """
    if not isinstance(model, fx.GraphModule) or not gates(model):
        raise GateError("deploy needs a gated model: the result of thinkonce.gating.insert(model, after=...)")
    causal = [n for n, g in gates(model).items() if g.pooling == "causal"]
    if causal:
        raise GateError(f"gates {causal} are causal (they switch kernels frame by frame, from a running mean); deploy "
                        "gathers kernels once per input, which needs global pooling. Run the gated model itself "
                        "(masked dense) or stream it in continuous mode.")
    gm = fold_batchnorm(model) if fold_bn else copy.deepcopy(model).eval()
    for g in gates(gm).values():
        g.threshold = threshold
        g.budget = budget
    switched, inner = _segments(gm)
    new = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    idx_of: dict[fx.Node, tuple[fx.Node, int] | None] = {}  # compact value -> (its idx node, full channels)
    gate_out: dict[fx.Node, tuple[fx.Node, fx.Node, int]] = {}
    count = [0]

    def add(mod: nn.Module, stem: str) -> str:
        count[0] += 1
        name = f"deployed_{count[0]}_{stem.replace('.', '_')}"
        gm.add_submodule(name, mod)
        return name

    def full(a: fx.Node) -> fx.Node:
        """The new node of ``a`` with every channel (expanded if it is compact)."""
        info = idx_of.get(a)
        if info is None:
            return env[a]
        key = ("full", a)
        if key not in cache:
            cache[key] = new.call_module(add(Expand(info[1]), a.name), (env[a], info[0]))
        return cache[key]

    cache: dict[Any, fx.Node] = {}
    for n in gm.graph.nodes:
        if n.op in ("placeholder", "get_attr"):
            env[n] = new.node_copy(n, lambda a: env[a])
            continue
        if n.op == "output":
            env[n] = new.output(fx.node.map_arg(n.args[0], full))
            continue
        src = n.args[0] if n.args and isinstance(n.args[0], fx.Node) else None
        info = idx_of.get(src) if src is not None else None
        if is_gate(gm, n):
            lk: LKAM = gm.get_submodule(str(n.target))
            in_idx = info[0] if info else None
            out = new.call_module(add(DeployedGate(lk, crossover), str(n.target)), (env[src], in_idx))
            gate_out[n] = (new.call_function(_item, (out, 0)), new.call_function(_item, (out, 1)), lk.n_kernels)
            env[n] = out
            continue
        if n in switched:
            idx, _, c = gate_out[switched[n]]
            conv = gm.get_submodule(str(n.target))
            env[n] = new.call_module(add(GatheredConv(conv), str(n.target)), (env[src], info[0] if info else None, idx))
            idx_of[n] = (idx, c)
            continue
        if n in inner or (info is not None and channelwise(gm, n) is not None and not is_apply(n)):
            idx_node, c = (gate_out[inner[n]][0], gate_out[inner[n]][2]) if n in inner else info  # type: ignore[misc]
            mod = gm.get_submodule(str(n.target)) if n.op == "call_module" else None
            if isinstance(mod, SLICED_MODULES):
                env[n] = new.call_module(add(GatheredNorm(mod), str(n.target)), (env[src], idx_node))
            else:
                env[n] = new.node_copy(n, lambda a: env[a])
            idx_of[n] = (idx_node, c)
            continue
        if is_apply(n):
            _, m, _ = gate_out[n.args[1]]
            env[n] = new.call_module(add(Masked(), n.name), (env[src], m))
            idx_of[n] = info
            continue
        if info is not None and conv_of(gm, n) is not None and len(n.args) == 1 and not n.kwargs:
            env[n] = new.call_module(add(GatheredConv(gm.get_submodule(str(n.target))), str(n.target)),
                                     (env[src], info[0], None))
            continue
        env[n] = new.node_copy(n, full)
    new.lint()
    out = fx.GraphModule(gm, new)
    out.eval()
    return DeployedModel(out, batch=batch, crossover=crossover).eval()


def _item(t: tuple, i: int) -> Any:
    return t[i]
