"""One ONNX step for every phase: the stride phase is read from the state, not frozen at export.

A step's control flow depends on the chunk length and on the stream's phase - the samples seen modulo
``M`` (the stride period; in window mode the least common multiple of hop and period, since window ends
fall there too). When the chunk is a multiple of ``M`` every call sees the same phase and one traced
graph is the step. Otherwise the calls cycle through the phases ``t0, t0 + n, t0 + 2n, ... (mod M)``:
each phase is exported as its own graph, and :func:`merge_phases` joins them under a balanced tree of ONNX
``If`` nodes that picks the branch from ``state.@t`` at run time. The branches' weights are stored once.

Warm-up: before ``start`` samples (the stream's warm-up) every clock value is its own phase, so one
graph runs a stream from its cold initial state: the phase of clock ``t`` is ``t`` if ``t < start``,
else ``start + (t - start) mod M``.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import onnx
from onnx import TensorProto, helper


def phase_code(phase: int, variant: Sequence[int], radix: int) -> int:
    """The branch code :func:`merge_phases` computes for a clock phase and the values of its ``key``
    counters: ``phase * radix**k + sum(v_j * radix**j)``."""
    code = phase * radix ** len(variant)
    for j, v in enumerate(variant):
        code += int(v) * radix**j
    return code


def merge_phases(models: Sequence[onnx.ModelProto], phases: Sequence[int], modulus: int,
                 clock: str = "state.@t", start: int = 0,
                 shapes: dict[str, Sequence[int]] | None = None, key: Sequence[int] = (),
                 counters: str = "state.@n", radix: int = 2, name: str = "thinkonce_step") -> onnx.ModelProto:
    """Join per-phase step graphs (same input and output names) into one graph switching on ``clock``.

    Branch ``k`` runs when the phase of ``clock[0]`` (``t`` below ``start``, else ``start + (t - start) %
    modulus``) equals ``phases[k]``. A phase not listed (a state from elsewhere than the export's
    documented start) falls to a neighbouring branch: feed states this graph produced. ``shapes`` gives
    concrete dims (after the batch) of inputs/outputs whose shape is the same in every branch.

    ``key``: columns of ``counters`` (row 0) whose values the control flow depends on besides the
    clock (an SOI stream's counters that move with ``precompute``); then ``phases`` are
    :func:`phase_code` s of (clock phase, those values), every value below ``radix``.
    """
    if len(models) != len(phases) or not models:
        raise ValueError("one model per phase")
    base = models[0].graph
    outer_inputs = {i.name for m in models for i in m.graph.input}
    out_names = [o.name for o in base.output]
    for m in models[1:]:
        if [o.name for o in m.graph.output] != out_names:
            raise ValueError("every phase graph must have the same outputs in the same order")
    shared: dict[str, onnx.TensorProto] = {}  # content hash -> initializer stored once, outside the branches
    branches = [_as_branch(m.graph, f"phase{p}", outer_inputs, shared) for m, p in zip(models, phases)]

    # phase = clock[0] mod M; a balanced tree of If nodes on "phase < pivot" (a chain of one If per
    # phase would nest M graphs deep, past protobuf's nesting limit for M = 64)
    order = sorted(range(len(phases)), key=lambda k: phases[k])
    consts = [
        helper.make_tensor("phase.zero", TensorProto.INT64, [], [0]),
        helper.make_tensor("phase.modulus", TensorProto.INT64, [], [modulus]),
        helper.make_tensor("phase.start", TensorProto.INT64, [], [start]),
    ]
    counter = [0]

    def tree(lo: int, hi: int, names: list[str]) -> list[onnx.NodeProto]:
        """Nodes computing ``names`` from the branches of phases order[lo:hi]."""
        if hi - lo == 1:
            g = branches[order[lo]]
            return list(g.node) + [helper.make_node("Identity", [o.name], [nm]) for o, nm in zip(g.output, names)]
        mid = (lo + hi) // 2
        counter[0] += 1
        j = counter[0]
        consts.append(helper.make_tensor(f"phase.pivot{j}", TensorProto.INT64, [], [phases[order[mid]]]))
        sub_then = [f"phase.n{j}.then.{o}" for o in out_names]
        sub_else = [f"phase.n{j}.else.{o}" for o in out_names]
        then_g = helper.make_graph(tree(lo, mid, sub_then), f"phase_lt{j}", [],
                                   [_untyped(o, nm) for o, nm in zip(base.output, sub_then)])
        else_g = helper.make_graph(tree(mid, hi, sub_else), f"phase_ge{j}", [],
                                   [_untyped(o, nm) for o, nm in zip(base.output, sub_else)])
        return [
            helper.make_node("Less", ["phase.value", f"phase.pivot{j}"], [f"phase.cond{j}"]),
            helper.make_node("If", [f"phase.cond{j}"], names, then_branch=then_g, else_branch=else_g),
        ]

    value = "phase.clock" if key else "phase.value"
    if start:
        head = [
            helper.make_node("Gather", [clock, "phase.zero"], ["phase.t"], axis=0),
            helper.make_node("Sub", ["phase.t", "phase.start"], ["phase.d"]),
            helper.make_node("Mod", ["phase.d", "phase.modulus"], ["phase.m"]),
            helper.make_node("Add", ["phase.m", "phase.start"], ["phase.steady"]),
            helper.make_node("Less", ["phase.t", "phase.start"], ["phase.warm"]),
            helper.make_node("Where", ["phase.warm", "phase.t", "phase.steady"], [value]),
        ]
    else:
        head = [
            helper.make_node("Gather", [clock, "phase.zero"], ["phase.t"], axis=0),
            helper.make_node("Mod", ["phase.t", "phase.modulus"], [value]),
        ]
    if key:  # value = clock phase * radix**k + sum_j counters[0, key[j]] * radix**j
        consts += [
            helper.make_tensor("phase.cols", TensorProto.INT64, [len(key)], [int(c) for c in key]),
            helper.make_tensor("phase.weights", TensorProto.INT64, [len(key)], [radix**j for j in range(len(key))]),
            helper.make_tensor("phase.scale", TensorProto.INT64, [], [radix ** len(key)]),
        ]
        head += [
            helper.make_node("Gather", [counters, "phase.zero"], ["phase.row"], axis=0),
            helper.make_node("Gather", ["phase.row", "phase.cols"], ["phase.kv"], axis=0),
            helper.make_node("Mul", ["phase.kv", "phase.weights"], ["phase.kw"]),
            helper.make_node("ReduceSum", ["phase.kw"], ["phase.kcode"], keepdims=0),
            helper.make_node("Mul", ["phase.clock", "phase.scale"], ["phase.cs"]),
            helper.make_node("Add", ["phase.cs", "phase.kcode"], ["phase.value"]),
        ]
    nodes = head + tree(0, len(phases), out_names)
    shapes = shapes or {}
    inputs = [_dynamic(i, shapes.get(i.name)) for i in _union_inputs(models)]
    for needed in ([clock, counters] if key else [clock]):  # read by the switch even where no branch reads it
        if needed not in {i.name for i in inputs}:
            dims = shapes.get(needed)
            inputs.append(helper.make_tensor_value_info(needed, TensorProto.INT64,
                                                        ["batch", *[int(d) for d in dims]] if dims is not None else None))
    graph = helper.make_graph(nodes, name, inputs, [_dynamic(o, shapes.get(o.name)) for o in base.output],
                              initializer=consts + list(shared.values()))
    model = helper.make_model(graph, opset_imports=list(models[0].opset_import), producer_name="thinkonce")
    model.ir_version = models[0].ir_version
    return model


def _as_branch(g: onnx.GraphProto, prefix: str, outer: set[str], shared: dict[str, onnx.TensorProto]) -> onnx.GraphProto:
    """The graph as an If branch: no inputs (it reads the outer ones), internal names prefixed,
    initializers moved out (deduplicated by content)."""
    rename: dict[str, str] = {}
    for init in g.initializer:
        digest = hashlib.sha1(init.raw_data or init.SerializeToString()).hexdigest()[:16]
        key = f"w.{digest}.{init.data_type}.{'x'.join(map(str, init.dims))}"
        if key not in shared:
            t = onnx.TensorProto()
            t.CopyFrom(init)
            t.name = key
            shared[key] = t
        rename[init.name] = key

    def name(v: str) -> str:
        if v == "" or v in outer:
            return v
        return rename.get(v, f"{prefix}/{v}")

    nodes = []
    for n in g.node:
        m = onnx.NodeProto()
        m.CopyFrom(n)
        del m.input[:]
        del m.output[:]
        m.input.extend(name(v) for v in n.input)
        m.output.extend(name(v) for v in n.output)
        if m.name:
            m.name = f"{prefix}/{m.name}"
        nodes.append(m)
    outputs = [_untyped(o, name(o.name)) for o in g.output]
    return helper.make_graph(nodes, prefix, [], outputs)


def _untyped(vi: onnx.ValueInfoProto, new_name: str) -> onnx.ValueInfoProto:
    """Same element type, no shape: branches may differ in length (frames emitted per phase)."""
    return helper.make_tensor_value_info(new_name, vi.type.tensor_type.elem_type, None)


def _dynamic(vi: onnx.ValueInfoProto, dims: Sequence[int] | None = None) -> onnx.ValueInfoProto:
    """Keep the rank; the batch axis is symbolic, the others are ``dims`` where given (a fixed state
    layout), else symbolic too (lengths that change with the phase)."""
    rank = len(vi.type.tensor_type.shape.dim)
    if dims is not None and len(dims) == rank - 1:
        shape = ["batch", *[int(d) for d in dims]]
        return helper.make_tensor_value_info(vi.name, vi.type.tensor_type.elem_type, shape)
    shape = ["batch" if i == 0 else f"{vi.name}.d{i}" for i in range(rank)]
    return helper.make_tensor_value_info(vi.name, vi.type.tensor_type.elem_type, shape)


def _union_inputs(models: Sequence[onnx.ModelProto]) -> list[onnx.ValueInfoProto]:
    seen: dict[str, onnx.ValueInfoProto] = {}
    for m in models:
        for i in m.graph.input:
            seen.setdefault(i.name, i)
    return [seen[k] for k in sorted(seen, key=lambda s: (s != "x", s))]

