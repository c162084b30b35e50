"""``insert``: put an LKAM between chosen conv layers and the next ones, as an fx graph transformation.

The model is traced with ``torch.fx`` and the graph rewritten on a copy (the original model is never
modified, as with ``thinkonce.stream``). For ``after=["conv_i"]``:

* the path from ``conv_i`` to the next conv (``conv_j``) must be a chain of channel-wise layers
  (activation, BatchNorm, pooling, dropout), each read by the next only;
* the LKAM reads the tensor ``conv_j`` reads (layer i's output after its activation and pooling) and
  switches ``conv_j``'s kernels;
* the switch multiplies ``conv_j``'s *block* output: the end of the channel-wise chain after ``conv_j``
  (after its BatchNorm, activation and pooling), so that a switched-off kernel contributes exactly zero
  to whatever reads the block (a BatchNorm shift would otherwise turn a zero map into a constant).

The gated model's forward in eval mode is the *masked dense* computation; :func:`thinkonce.gating.deploy`
turns it into one that skips the switched-off kernels.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch.fx as fx
import torch.nn as nn

from .chain import conv_of, describe, is_gate, walk
from .lkam import LKAM, apply_gate


class GateError(ValueError):
    """A gating request that cannot be honoured (names the problem and the fix)."""


def _trace(model: nn.Module) -> fx.GraphModule:
    try:
        return fx.symbolic_trace(copy.deepcopy(model))
    except Exception as e:  # noqa: BLE001 - re-raised with the fix
        raise GateError(f"insert traces the model with torch.fx and it failed: {e}. Move Python control flow "
                        "on tensor values out of forward (or gate a traceable sub-module).") from e


def next_conv(gm: fx.GraphModule, node: fx.Node) -> tuple[fx.Node, fx.Node]:
    """``(h, conv_j)``: the tensor the next conv reads and that conv; raises naming what is in the way."""
    chain, stop = walk(gm, node)
    h = chain[-1] if chain else node
    users = [u for u in h.users if not is_gate(gm, u)]
    if conv_of(gm, stop) is None or stop.args[0] is not h:
        if len(users) > 1:
            what = f"its output (after {describe(gm, h)}) feeds {len(users)} nodes: " + ", ".join(
                describe(gm, u) for u in users)
        else:
            what = f"the next non-channel-wise node is {describe(gm, stop)}"
        raise GateError(f"conv '{node.target}' is not followed by a conv along a chain of channel-wise layers: "
                        f"{what}. An LKAM switches the kernels of the next conv; choose a conv whose output "
                        "reaches another conv through activations, BatchNorm, pooling or dropout only.")
    return h, stop


def insert(model: nn.Module, after: Sequence[str] | str = "all", group: int = 1, **lkam_kwargs) -> fx.GraphModule:
    """A new model with an LKAM after each conv named in ``after`` (``"all"``: every conv followed by a conv).

    LKAM submodules are named ``gate_<conv_i>`` (dots replaced by ``_``); ``gating_layers(model)`` lists
    them with the convs they switch. ``lkam_kwargs`` go to :class:`LKAM` (``relax``, ``threshold``).
    """
    gm = _trace(model)
    convs = {str(n.target): n for n in gm.graph.nodes if conv_of(gm, n) is not None}
    if not convs:
        raise GateError("the model has no nn.Conv1d or nn.Conv2d layer to gate")
    if isinstance(after, str):
        if after != "all":
            raise GateError(f"after must be a list of conv layer names or 'all', got {after!r}; "
                            f"conv layers: {sorted(convs)}")
        names = []
        for name, n in convs.items():
            try:
                next_conv(gm, n)
                names.append(name)
            except GateError:
                pass
        if not names:
            raise GateError(f"no conv of the model is followed by another conv through channel-wise layers "
                            f"(conv layers: {sorted(convs)})")
    else:
        names = list(after)
        if not names:
            raise GateError(f"after is empty; name conv layers among {sorted(convs)} or pass 'all'")
        for name in names:
            if name not in convs:
                raise GateError(f"unknown conv layer {name!r}; conv layers of the model: {sorted(convs)}")
        if len(set(names)) != len(names):
            raise GateError(f"after names a layer twice: {names}")
    for name in names:
        h, conv_j = next_conv(gm, convs[name])
        cj = conv_of(gm, conv_j)
        assert cj is not None
        ci = conv_of(gm, convs[name])
        if cj.groups != 1:
            raise GateError(f"conv {conv_j.target!r} (switched by the gate after {name!r}) has groups={cj.groups}; "
                            "only groups=1 convs can have their kernels switched")
        chain, end = walk(gm, conv_j)
        tail = chain[-1] if chain else conv_j
        gate = LKAM(ci.out_channels, cj.out_channels, group=group, **lkam_kwargs)
        gname = "gate_" + name.replace(".", "_")
        gm.add_submodule(gname, gate)
        with gm.graph.inserting_after(h):
            g = gm.graph.call_module(gname, (h,))
        users = list(tail.users)
        with gm.graph.inserting_after(tail):
            masked = gm.graph.call_function(apply_gate, (tail, g))
        for u in users:
            u.replace_input_with(tail, masked)
    gm.graph.lint()
    gm.recompile()
    return gm


def gates(model: nn.Module) -> dict[str, LKAM]:
    """The LKAMs of a gated model by module name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LKAM)}


def gating_layers(model: fx.GraphModule) -> dict[str, str]:
    """Gate name -> the conv whose kernels it switches."""
    out: dict[str, str] = {}
    for n in model.graph.nodes:
        if n.op == "call_module" and isinstance(model.get_submodule(str(n.target)), LKAM):
            h = n.args[0]
            conv = next(u for u in h.users if not is_gate(model, u))
            out[str(n.target)] = str(conv.target)
    return out
