"""Conversion of a traced model into a streaming plan, by asking the op registry about every node.

The model becomes a graph (:mod:`thinkonce.stream.frontend`) and runs once on an example input to learn
every value's shape. Each node is then classified by its registered builder (:mod:`thinkonce.ops`):

* ``const``     - does not depend on the signal (parameters, weights computed from them): computed once;
* ``dyn``       - shape queries on the signal (batch size): recomputed every step;
* ``framewise`` - runs on any chunk of frames (activations, BatchNorm in eval, Linear over channels);
* ``temporal``  - has a streaming counterpart with state (conv, pooling, transposed conv, padding, trims);
* ``align``     - combines several temporal branches frame by frame, with delay alignment queues;
* ``head``      - window mode only: mixes the whole time axis; runs on a buffer of the window's features;
* ``alias``     - the same value as its input (padding fused into the next conv).

A node without a builder, or whose builder refuses it, raises :class:`UnsupportedNodeError` naming the
node, its module path and type, the source line, and what to write instead.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
from torch.fx.node import map_arg

from ..errors import UnsupportedNodeError
from ..ops import registry, shape as shape_ops
from ..ops.context import OpContext
from .frontend import trace
from .layers import ChainOp, PadOp, SlidingOp, StreamOp

TEMPORAL_KINDS = ("input", "framewise", "temporal", "align", "alias")


@dataclass
class NodePlan:
    """How one graph node runs in a stream."""

    node: fx.Node
    kind: str
    tdim: int | None = None  # time axis of the value (of each element for tuples)
    rate: Fraction | None = None  # input samples per frame
    rf: Fraction = Fraction(1)  # receptive field in input samples (upper bound)
    reach: Fraction = Fraction(0)  # how far (samples) left of the signal start frame 0 depends on padding
    op: StreamOp | None = None
    temporal_args: tuple[fx.Node, ...] = ()
    source: fx.Node | None = None  # for alias
    value: Any = None  # for const
    reason: str = ""  # for head: why this node mixes the time axis
    call: Any = None  # frame-wise: replaces the node's own call, ``call(look)`` (look: node -> value)
    tlen: bool = False  # dyn: derived from the length of a time axis
    shape_tdim: int | None = None  # dyn: the shape tuple of a temporal value whose time axis is this
    items: list[int | None] | None = None  # tuple outputs: each element's time axis (None: none)

    @property
    def temporal(self) -> bool:
        return self.kind in TEMPORAL_KINDS


@dataclass
class Plan:
    gm: fx.GraphModule
    nodes: list[NodePlan]
    by_node: dict[fx.Node, NodePlan]
    input_node: fx.Node
    output_arg: Any
    example_shapes: dict[fx.Node, Any]
    input_shape: tuple[int, ...]  # example input shape (batch, ..., time)
    head_inputs: list[fx.Node] = field(default_factory=list)
    head_nodes: list[NodePlan] = field(default_factory=list)

    @property
    def trunk(self) -> list[NodePlan]:
        return [p for p in self.nodes if p.kind not in ("head", "output", "const")]

    def stateful(self) -> list[NodePlan]:
        return [p for p in self.nodes if p.op is not None]


class _Recorder(fx.Interpreter):
    """Runs the graph once; records every value's shape, and the values of signal-free nodes."""

    def __init__(self, gm: fx.GraphModule, signal_free: set[fx.Node]) -> None:
        super().__init__(gm)
        self.shapes: dict[fx.Node, Any] = {}
        self.values: dict[fx.Node, Any] = {}
        self.signal_free = signal_free

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        self.shapes[n] = _shape_of(out)
        if n in self.signal_free or _plain(out):  # plain values: ``x.dim() - 1`` is a constant too
            self.values[n] = out
        return out


def _plain(v: Any) -> bool:
    """An int/float/bool/None or a tuple of them (a size, a dim): recorded by value, never a tensor."""
    if isinstance(v, (tuple, list)):
        return all(_plain(e) for e in v)
    return v is None or isinstance(v, (bool, int, float, torch.Size))


def _shape_of(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return tuple(v.shape)
    if isinstance(v, (tuple, list)):
        return type(v)(_shape_of(e) for e in v)
    return v


def _signal_free(gm: fx.GraphModule) -> set[fx.Node]:
    """Nodes that do not depend on the input: their values are fixed (weights, constants)."""
    dependent: set[fx.Node] = set()
    free: set[fx.Node] = set()
    for n in gm.graph.nodes:
        if n.op == "placeholder":
            dependent.add(n)
            continue
        ins: list[fx.Node] = []
        map_arg((n.args, n.kwargs), lambda a: ins.append(a) or a)
        if any(a in dependent for a in ins):
            dependent.add(n)
        elif n.op != "output":
            free.add(n)
    return free


def _source_line(n: fx.Node) -> str:
    """``file:line: code`` of the user's code that created the node (the tracer's stack, without the
    frames of torch and thinkonce themselves)."""
    lines = [ln for ln in (n.meta.get("stack_trace") or "").splitlines() if ln.strip()]
    found = ""
    for i, ln in enumerate(lines):
        ln = ln.strip()
        if not ln.startswith("File "):
            continue
        parts = ln.split(",")
        file = parts[0][5:].strip().strip('"')
        if any(k in file for k in ("/torch/", "/thinkonce/stream/", "/thinkonce/ops/")):
            continue
        line = parts[1].strip().replace("line ", "") if len(parts) > 1 else "?"
        code = lines[i + 1].strip() if i + 1 < len(lines) and not lines[i + 1].strip().startswith("File ") else ""
        found = f"{file}:{line}: {code}"
    return found


class Converter:
    """Builds a :class:`Plan` from a model; ``window`` selects window mode (heads allowed)."""

    def __init__(self, model: nn.Module, example: torch.Tensor, window: int | None) -> None:
        self.window = window
        self.model = model
        self.gm = trace(model, example, window)
        self.modules = dict(self.gm.named_modules())
        placeholders = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        self._drop_optional_inputs(placeholders)
        rec = _Recorder(self.gm, _signal_free(self.gm))
        with torch.no_grad():
            try:
                rec.run(example)
            except Exception as e:
                raise UnsupportedNodeError(
                    f"the model failed on an example input of shape {tuple(example.shape)}: {e}. "
                    "Pass example_input= with the shape the model expects (batch, channels, time)."
                ) from e
        self.shapes = rec.shapes
        self.values = rec.values
        self.input_shape = tuple(example.shape)
        self.plans: dict[fx.Node, NodePlan] = {}
        self.order: list[NodePlan] = []

    def _drop_optional_inputs(self, placeholders: list[fx.Node]) -> None:
        """Extra forward inputs with defaults (``forward(x, lengths=None)``) stay at their defaults."""
        for n in placeholders[1:]:
            if n.args:  # fx keeps the default value as the placeholder's argument
                default = n.args[0]
                n.op, n.target, n.args, n.kwargs = "call_function", _constant, (default,), {}
            else:
                raise UnsupportedNodeError(
                    f"the model's forward takes a second input '{n.target}' without a default; a stream "
                    "needs exactly one signal input. Wrap the model so that forward(x) takes the signal only."
                )
        self.gm.recompile()

    # ------------------------------------------------------------------ helpers
    def where(self, n: fx.Node, idx: int) -> str:
        src = _source_line(n)
        at = f" at {src}" if src else ""
        if n.op == "call_module":
            mod = self.modules[n.target]
            return f"node '{n.name}' (#{idx}, module '{n.target}', type {type(mod).__name__}){at}"
        stack = n.meta.get("nn_module_stack") or {}
        inside = ""
        if stack:
            path, typ = list(stack.values())[-1]
            tname = typ.__name__ if isinstance(typ, type) else str(typ).rsplit(".", 1)[-1].strip("'>")
            inside = f" in module '{path}' ({tname})"
        return f"node '{n.name}' (#{idx}, {n.op} {registry.describe_target(n.target)}{inside}){at}"

    def const_value(self, n: fx.Node) -> Any:
        p = self.plans.get(n)
        if p is not None and p.value is not None:
            return p.value
        return self.values[n]

    # ------------------------------------------------------------------ main
    def convert(self) -> Plan:
        placeholders = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise UnsupportedNodeError(
                f"the model's forward takes {len(placeholders)} inputs; a stream needs exactly one signal "
                "input. Wrap the model so that forward(x) takes the signal only."
            )
        out_node = None
        for idx, n in enumerate(self.gm.graph.nodes):
            if n.op == "output":
                out_node = n
                continue
            plan = self._classify(n, idx)
            self.plans[n] = plan
            self.order.append(plan)
        assert out_node is not None
        self._fuse_padding()
        self._left_reach()
        plan = Plan(
            gm=self.gm,
            nodes=self.order,
            by_node=self.plans,
            input_node=placeholders[0],
            output_arg=out_node.args[0],
            example_shapes=self.shapes,
            input_shape=self.input_shape,
        )
        self._finish_heads(plan, out_node)
        return plan

    def _classify(self, n: fx.Node, idx: int) -> NodePlan:
        if n.op == "placeholder":
            nd = len(self.input_shape)
            if nd < 2:
                raise UnsupportedNodeError("the signal input needs at least (batch, time) dimensions")
            return NodePlan(n, "input", tdim=nd - 1, rate=Fraction(1), rf=Fraction(1))
        if n.op == "get_attr":
            return NodePlan(n, "const")
        inputs: list[fx.Node] = []
        map_arg((n.args, n.kwargs), lambda a: inputs.append(a) or a)
        plans = [self.plans[a] for a in inputs]
        if any(p.kind == "head" for p in plans):
            return NodePlan(n, "head", reason="downstream of the head")
        temporal = [a for a, p in zip(inputs, plans) if p.temporal]
        dyn = [p for p in plans if p.kind == "dyn"]
        if not temporal:
            if not dyn:
                return NodePlan(n, "const")
            src = n.args[0] if n.args else None
            if n.target is operator.getitem and isinstance(src, fx.Node) and self.plans[src].shape_tdim is not None:
                ctx = OpContext(self, n, idx, (src,), Fraction(1), Fraction(1))
                return shape_ops.shape_item(ctx, self.plans[src].shape_tdim)  # type: ignore[arg-type]
            return NodePlan(n, "dyn", tlen=any(p.tlen or p.shape_tdim is not None for p in dyn))
        seen: list[fx.Node] = []
        for a in temporal:
            if a not in seen:
                seen.append(a)
        targs = tuple(seen)
        first = self.plans[targs[0]]
        rate, rf = first.rate, first.rf
        for a in targs[1:]:
            p = self.plans[a]
            if p.rate != rate:
                raise UnsupportedNodeError(
                    f"cannot stream {self.where(n, idx)}: it combines branches at different time rates "
                    f"({targs[0].name}: {first.rate} samples per frame, {a.name}: {p.rate}). Branches must be "
                    "resampled to the same rate before they are combined."
                )
            rf = max(rf, p.rf)
        ctx = OpContext(self, n, idx, targs, rate, rf)  # type: ignore[arg-type]
        build = self._builder(n, ctx)
        plan = build(ctx)
        if self.window is None and build is not shape_ops.view and any(p.tlen for p in dyn):
            raise ctx.fail("it uses the length of the time axis, which a stream does not have",
                           "Only a view/reshape of each chunk may use it; compute from fixed sizes instead.")
        return plan

    def _builder(self, n: fx.Node, ctx: OpContext):
        if n.op == "call_module":
            mod = self.modules[n.target]
            found = registry.module_builder(mod)
            if found is None:
                raise ctx.fail(f"no streaming rule for the module type {type(mod).__name__}")
            return found[1]
        build = registry.target_builder(n.op, n.target)
        if build is not None:
            return build
        if isinstance(n.target, torch._ops.OpOverload) and torch.Tag.pointwise in n.target.tags:
            return _pointwise  # element-wise ATen operator (exported graphs)
        raise ctx.fail("no streaming rule for this operation")

    def _fuse_padding(self) -> None:
        """Fold a constant time padding into the sliding op that alone consumes it (saves a state flag)."""
        for p in self.order:
            if p.kind != "temporal" or not isinstance(p.op, PadOp) or p.tdim != 2:
                continue
            users = list(p.node.users)
            if len(users) != 1:
                continue
            q = self.plans.get(users[0])
            if q is None or q.kind != "temporal" or not isinstance(q.op, SlidingOp):
                continue
            if q.op.pad_value != p.op.value and not (q.op.kind == "avgpool" and p.op.value == 0.0):
                continue
            if q.op.kind == "avgpool" and p.op.value != 0.0:
                continue
            q.op = copy.copy(q.op)
            q.op.pad_left += p.op.left
            q.op.pad_right += p.op.right
            p.kind, p.op, p.source = "alias", None, p.temporal_args[0]

    def _left_reach(self) -> None:
        """Left padding moves a value's first frame before the signal start: by ``pad_left`` input frames
        at each op that pads (its declared facts). Signal padding needs exactly that much left context."""
        for p in self.order:
            if not p.temporal or p.kind == "input":
                continue
            if p.kind == "alias":
                p.reach = self.plans[p.source].reach
                continue
            base = max(self.plans[a].reach for a in p.temporal_args)
            if p.op is None or p.kind != "temporal":
                p.reach = base
                continue
            rate = self.plans[p.temporal_args[0]].rate
            for op in (p.op.ops if isinstance(p.op, ChainOp) else (p.op,)):
                f = op.facts()
                base = base + max(f.pad_left, 0) * rate
                rate = rate * f.stride
            p.reach = base

    def _finish_heads(self, plan: Plan, out_node: fx.Node) -> None:
        outs: list[fx.Node] = []
        map_arg(plan.output_arg, lambda a: outs.append(a) or a)
        buffered: list[fx.Node] = []
        for p in self.order:
            if p.kind != "head":
                continue
            plan.head_nodes.append(p)
            map_arg((p.node.args, p.node.kwargs), lambda a: (
                buffered.append(a) if self.plans[a].temporal and a not in buffered else None) or a)
        if self.window is not None:
            for a in outs:
                if self.plans[a].temporal and a not in buffered:
                    buffered.append(a)
        plan.head_inputs = buffered


def _constant(value: Any) -> Any:
    """An optional forward input left at its default."""
    return value


def _pointwise(ctx: OpContext) -> NodePlan:
    return ctx.framewise()
