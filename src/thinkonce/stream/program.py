"""Execution of a streaming plan: one pass over the trunk for a chunk, and evaluation of the head.

The trunk runs node by node on *chunks* (the new frames of every value); stateful nodes read their slice
of the flat state dict (keys ``"<node>.<key>"``) and write a new one. Nothing is mutated in place.

The state layout is fixed (:attr:`Program.spec`): tensor fields keep their declared shapes, and every
integer counter of every op is one column of ``@n`` (batch, K). A step reads ``@n`` once, hands each op
its counters as Python ints, and writes ``@n`` back (the same tensor when no counter changed).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.fx as fx
from torch import Tensor
from torch.fx.node import map_arg

import dataclasses
import math

from .convert import NodePlan, Plan
from .layers import AlignQueues, State
from .layout import queue_bounds
from .state import Field, StateSpec

COUNTERS = "@n"


def _fetch_attr(gm: fx.GraphModule, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _no_hooks(mod: torch.nn.Module) -> bool:
    """Whether calling ``mod`` would run forward alone (no module or global forward hooks; backward
    hooks only matter with autograd, which a step runs without)."""
    g = torch.nn.modules.module
    return not (mod._forward_hooks or mod._forward_pre_hooks or g._global_forward_hooks
                or g._global_forward_pre_hooks or torch.is_grad_enabled())


def make_call(node: fx.Node, gm: fx.GraphModule) -> Callable[[Callable[[fx.Node], Any]], Any]:
    """A closure computing ``node`` given a lookup of its input values."""
    if node.op == "get_attr":
        val = _fetch_attr(gm, node.target)
        return lambda look: val
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        forward = mod.forward
        args, kwargs = node.args, node.kwargs

        def call(look: Callable[[fx.Node], Any]) -> Any:
            # nn.Module.__call__ only dispatches hooks around forward (~3 us a call, a step calls dozens
            # of modules): go to forward directly while no hook is registered on the module or globally
            if _no_hooks(mod):
                return forward(*map_arg(args, look), **map_arg(kwargs, look)) if kwargs else forward(*map_arg(args, look))
            return mod(*map_arg(args, look), **map_arg(kwargs, look))

        return call
    if node.op == "call_method":
        name = node.target

        def call_m(look: Callable[[fx.Node], Any]) -> Any:
            args = map_arg(node.args, look)
            return getattr(args[0], name)(*args[1:], **map_arg(node.kwargs, look))

        return call_m
    fn = node.target

    def call_f(look: Callable[[fx.Node], Any]) -> Any:
        return fn(*map_arg(node.args, look), **map_arg(node.kwargs, look))

    return call_f


class Program:
    """Runs a :class:`Plan` chunk by chunk."""

    def __init__(self, plan: Plan, horizon: int | None = None, dtype: torch.dtype = torch.float32) -> None:
        self.plan = plan
        self.calls: dict[fx.Node, Callable] = {}
        self.consts: dict[fx.Node, Any] = {}
        for p in plan.nodes:
            if p.kind in ("const", "dyn", "framewise", "align", "head") or (p.kind == "temporal" and p.op is None):
                self.calls[p.node] = p.call if p.call is not None else make_call(p.node, plan.gm)
        # constants are computed once, in graph order
        with torch.no_grad():
            for p in plan.nodes:
                if p.kind == "const":
                    fixed = p.value is not None and p.node.op != "get_attr"
                    self.consts[p.node] = p.value if fixed else self.calls[p.node](self.consts.__getitem__)
        self.trunk: list[NodePlan] = [p for p in plan.nodes if p.kind not in ("const", "head")]
        # output shape of frame-wise and temporal nodes for an empty chunk (time axis of length 0)
        self.empty_shapes: dict[fx.Node, tuple[int, ...]] = {}
        self.empty_shapes_t: dict[fx.Node, tuple[int, ...]] = {}
        for p in plan.nodes:
            shape = plan.example_shapes.get(p.node)
            if p.kind in ("framewise", "temporal") and isinstance(shape, tuple) and all(isinstance(e, int) for e in shape):
                sh = list(shape)
                sh[p.tdim] = 0
                (self.empty_shapes if p.kind == "framewise" else self.empty_shapes_t)[p.node] = tuple(sh)
        # temporal ops that emit nothing at the end of a stream once their input stops
        self.idle_at_end = {
            p.node for p in plan.nodes
            if p.op is not None and p.kind == "temporal" and not p.op.owes_at_end() and p.node in self.empty_shapes_t
        }
        self.prefixes = {p.node: p.node.name + "." for p in plan.nodes if p.op is not None}
        self._build_spec(horizon, dtype)

    # ------------------------------------------------------------------ layout
    def _in_shapes(self, p: NodePlan) -> list[tuple[int, ...]]:
        shapes = []
        for a in p.temporal_args:
            sh = self.plan.example_shapes.get(a)
            shapes.append(tuple(sh[1:]) if isinstance(sh, tuple) and all(isinstance(e, int) for e in sh) else ())
        return shapes

    def _build_spec(self, horizon: int | None, dtype: torch.dtype) -> None:
        """Bind alignment queues to their bounds and fix the layout: tensor fields per node, counters
        as columns of ``@n``."""
        plan = self.plan
        aligns = [p for p in self.trunk if isinstance(p.op, AlignQueues)]
        if aligns:
            if horizon is None:
                rf = int(max((p.rf for p in plan.nodes if p.temporal), default=1))
                period = 1
                for p in plan.nodes:
                    if p.temporal and p.rate is not None:
                        period = math.lcm(period, p.rate.numerator)
                horizon = 4 * (rf + period) + 64
            bounds = queue_bounds(plan, horizon)
            for p in aligns:
                p.op = dataclasses.replace(p.op, bounds=bounds[p.node])
        self.dtype = dtype
        fields: dict[str, Field] = {}
        counters: list[str] = []
        self._node_fields: dict[fx.Node, list[tuple[str, str]]] = {}
        self._node_counters: dict[fx.Node, list[tuple[str, int]]] = {}
        self._node_specs: dict[fx.Node, tuple[list[tuple[int, ...]], dict[str, Field]]] = {}
        for p in self.trunk:
            if p.op is None:
                continue
            pre = self.prefixes[p.node]
            shapes = self._in_shapes(p)
            local = p.op.state_spec(shapes, dtype)
            self._node_specs[p.node] = (shapes, local)
            tf, cf = [], []
            for k, f in local.items():
                if f.is_counter:
                    cf.append((k, len(counters)))
                    counters.append(pre + k)
                else:
                    fields[pre + k] = f if f.fill is None else dataclasses.replace(f, fill=pre + f.fill)
                    tf.append((k, pre + k))
            self._node_fields[p.node] = tf
            self._node_counters[p.node] = cf
        self.counter_keys = tuple(counters)
        self.counter_init = [int(local[k].init) for p in self.trunk if p.op is not None
                             for local in [self._node_specs[p.node][1]] for k, _ in self._node_counters[p.node]]
        if counters:
            fields[COUNTERS] = Field((len(counters),), torch.int64)
        self.spec = StateSpec(fields, self.counter_keys)

    # ------------------------------------------------------------------ state
    def init_state(self, batch: int, like: Tensor) -> State:
        st: State = {}
        for k, f in self.spec.items():
            if k == COUNTERS:
                continue
            st[k] = f.initial(batch, like.dtype if f.dtype.is_floating_point else f.dtype, like.device)
        if self.counter_keys:
            st[COUNTERS] = torch.tensor([self.counter_init], dtype=torch.int64, device=like.device).expand(batch, -1).contiguous()
        return st

    # ------------------------------------------------------------------ run
    def run(self, x: Tensor, state: State, mode: str) -> tuple[dict[fx.Node, Any], State]:
        """One pass over the trunk. Returns the chunk of every value and the new state."""
        env: dict[fx.Node, Any] = dict(self.consts)
        look = env.__getitem__
        new: State = {}
        cnt = state.get(COUNTERS)
        vals: list[int] = (cnt.tolist()[0] if cnt.shape[0] == 1 else cnt[0].tolist()) if cnt is not None else []
        new_vals = list(vals)
        for p in self.trunk:
            n = p.node
            kind = p.kind
            if kind == "input":
                env[n] = x
            elif kind == "alias":
                env[n] = env[p.source]
            elif kind == "framewise":
                a = p.temporal_args[0]
                src = env[a]
                if isinstance(src, Tensor) and src.shape[self.plan.by_node[a].tdim] == 0 and n in self.empty_shapes:
                    shape = list(self.empty_shapes[n])
                    shape[0] = src.shape[0]
                    env[n] = src.new_zeros(shape)  # some ops (conv) refuse empty inputs
                else:
                    env[n] = self.calls[n](look)
            elif kind == "dyn":
                env[n] = self.calls[n](look)
            else:
                local: dict = {k: state[full] for k, full in self._node_fields.get(n, ())}
                for k, j in self._node_counters.get(n, ()):
                    local[k] = vals[j]
                ins = [env[a] for a in p.temporal_args]
                if isinstance(p.op, AlignQueues):
                    heads, out = p.op.run(ins, local, mode)
                    sub = dict(zip(p.temporal_args, heads))
                    env[n] = self.calls[n](lambda a, sub=sub: sub[a] if a in sub else env[a])
                elif mode == "flush" and n in self.idle_at_end and all(
                    i.shape[self.plan.by_node[a].tdim] == 0 for i, a in zip(ins, p.temporal_args)
                ):
                    # nothing new arrives and the op owes nothing: skip it (edge passes stay cheap)
                    env[n], out = self._empty_out(p, ins[0]), local
                else:
                    env[n], out = p.op.run(ins, local, mode)
                for k, full in self._node_fields.get(n, ()):
                    new[full] = out[k]
                for k, j in self._node_counters.get(n, ()):
                    new_vals[j] = out[k]
        if cnt is not None:
            new[COUNTERS] = cnt if new_vals == vals else torch.tensor(
                [new_vals], dtype=torch.int64, device=cnt.device).expand(cnt.shape[0], -1).contiguous()
        return env, new

    def _empty_out(self, p: NodePlan, like: Tensor) -> Tensor:
        shape = list(self.empty_shapes_t[p.node])
        shape[0] = like.shape[0]
        return like.new_zeros(shape)

    def head(self, feats: dict[fx.Node, Tensor], env: dict[fx.Node, Any]) -> Any:
        """Evaluate the head on the window's features (buffered values replaced by ``feats``)."""
        henv: dict[fx.Node, Any] = dict(env)
        henv.update({v: f.contiguous() for v, f in feats.items()})  # ring views: heads may .view() them
        look = henv.__getitem__
        for p in self.plan.head_nodes:
            henv[p.node] = self.calls[p.node](look)
        return map_arg(self.plan.output_arg, look)
