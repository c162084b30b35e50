"""Frame arithmetic of a plan: how many frames every value has after ``t`` input samples.

Each op declares it (:meth:`StreamOp.frames_out`); composing them over the graph gives, for every node,
the total number of frames it has emitted once the stream has seen ``t`` samples. In "step" and
"stale" mode that number depends on ``t`` alone, never on how the signal was chunked (an op always
emits every frame its input makes computable). The alignment queues of a branch combination hold the
difference between a branch and the slowest one, so their maximum over ``t`` is the queue's size.

The counts are affine in ``t`` with floors once every op is past its start-up clamps (a few receptive
fields), so evaluating ``t = 0 .. horizon`` with a horizon of several receptive fields and stride
periods sees every value the difference takes.
"""

from __future__ import annotations

import torch
import torch.fx as fx
from torch import Tensor

from .convert import Plan
from .layers import AlignQueues


def frame_counts(plan: Plan, horizon: int, mode: str = "step") -> dict[fx.Node, Tensor]:
    """node -> int64 tensor ``c[t]``: frames emitted after ``t`` samples, ``t = 0 .. horizon``.
    Only temporal nodes (input, frame-wise, temporal, align, alias) are listed."""
    t = torch.arange(horizon + 1, dtype=torch.int64)
    counts: dict[fx.Node, Tensor] = {}
    for p in plan.nodes:
        if not p.temporal:
            continue
        if p.kind == "input":
            counts[p.node] = t
        elif p.kind == "alias":
            counts[p.node] = counts[p.source]
        elif not p.temporal_args:
            continue
        elif p.kind == "align" and isinstance(p.op, AlignQueues):
            counts[p.node] = torch.stack([counts[a] for a in p.temporal_args]).min(dim=0).values
        elif p.op is not None:
            counts[p.node] = p.op.frames_out(counts[p.temporal_args[0]], mode)
        else:
            counts[p.node] = counts[p.temporal_args[0]]
    return counts


def queue_bounds(plan: Plan, horizon: int, modes: tuple[str, ...] = ("step", "stale")) -> dict[fx.Node, tuple[int, ...]]:
    """For every alignment node, the most frames each branch's queue ever holds (over ``modes``)."""
    out: dict[fx.Node, list[int]] = {}
    for mode in modes:
        counts = frame_counts(plan, horizon, mode)
        for p in plan.nodes:
            if p.kind != "align" or not isinstance(p.op, AlignQueues):
                continue
            cs = torch.stack([counts[a] for a in p.temporal_args])
            lead = (cs - cs.min(dim=0).values).max(dim=1).values.tolist()
            prev = out.setdefault(p.node, [0] * len(lead))
            out[p.node] = [max(a, int(b)) for a, b in zip(prev, lead)]
    return {k: tuple(v) for k, v in out.items()}
