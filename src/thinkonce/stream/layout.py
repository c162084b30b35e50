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

#: frame counts of a state after :meth:`~thinkonce.Stream.precompute`: ops that declare ``releases``
#: (an SOI shifted S-CC) have fed the frame they hold back (``frames_out(m, "release")``; every other op
#: counts as in "step"), and an alignment that declares ``holds_on_release`` and whose second input is
#: not computed ahead holds what arrives (it emits what it emits in "step" mode)
RELEASE_MODE = "release"


def has_release(plan: Plan) -> bool:
    """Whether some op of the plan can run ahead (then the queue bounds cover ``RELEASE_MODE`` too)."""
    return any(getattr(p.op, "releases", False) for p in plan.nodes if p.op is not None)


def frame_counts(plan: Plan, horizon: int, mode: str = "step") -> dict[fx.Node, Tensor]:
    """node -> int64 tensor ``c[t]``: frames emitted after ``t`` samples, ``t = 0 .. horizon``.
    Only temporal nodes (input, frame-wise, temporal, align, alias) are listed."""
    t = torch.arange(horizon + 1, dtype=torch.int64)
    counts: dict[fx.Node, Tensor] = {}
    step = frame_counts(plan, horizon, "step") if mode == RELEASE_MODE else None
    released: set = set()
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
            if (step is not None and getattr(p.op, "holds_on_release", False) and len(p.temporal_args) > 1
                    and p.temporal_args[0] in released and p.temporal_args[1] not in released):
                counts[p.node] = step[p.node]  # frames computed ahead wait in the queue
                continue
            counts[p.node] = torch.stack([counts[a] for a in p.temporal_args]).min(dim=0).values
        elif p.op is not None:
            counts[p.node] = p.op.frames_out(counts[p.temporal_args[0]], mode)
            if getattr(p.op, "releases", False):
                released.add(p.node)
        else:
            counts[p.node] = counts[p.temporal_args[0]]
        if step is not None and any(a in released for a in p.temporal_args):
            released.add(p.node)
    return counts


def queue_bounds(plan: Plan, horizon: int, modes: tuple[str, ...] | None = None) -> dict[fx.Node, tuple[int, ...]]:
    """For every alignment node, the most frames each branch's queue ever holds (over ``modes``; by
    default "step" and "stale", and ``RELEASE_MODE`` when an op can run ahead): a branch's frames minus
    what the alignment has emitted."""
    if modes is None:
        modes = ("step", "stale", RELEASE_MODE) if has_release(plan) else ("step", "stale")
    out: dict[fx.Node, list[int]] = {}
    for mode in modes:
        counts = frame_counts(plan, horizon, mode)
        for p in plan.nodes:
            if p.kind != "align" or not isinstance(p.op, AlignQueues):
                continue
            cs = torch.stack([counts[a] for a in p.temporal_args])
            lead = (cs - counts[p.node]).max(dim=1).values.tolist()
            prev = out.setdefault(p.node, [0] * len(lead))
            out[p.node] = [max(a, int(b)) for a, b in zip(prev, lead)]
    return {k: tuple(v) for k, v in out.items()}
