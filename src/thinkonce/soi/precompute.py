"""Fully predictive (FP) schedule: the deep path of a shifted S-CC computed ahead, in idle time.

A shifted S-CC's frame ``j`` needs input frames up to ``2j - 1`` only, so once frame ``2j - 1`` has
arrived the deep path for slots ``2j`` and ``2j + 1`` can run before frame ``2j`` exists. A device does
that between samples (:meth:`thinkonce.Stream.precompute`); the next :meth:`~thinkonce.Stream.step`
then finds the deep frames waiting in the fill's alignment queue and runs only the shallow path.

``precompute`` is an ordinary pure function of the state: it feeds an empty chunk through the plan
while the S-CC entries release their held frame (:func:`thinkonce.soi.ops.releasing`). Results do not
change; only when the work happens does. The deep frames must meet full-rate data before the output
(a fill with ``like=``, or a skip connection), where they wait for their slot; a model whose deep
path reaches the output directly would emit predictions early, and is refused. At those joins the
frames computed ahead wait in the alignment queue during ``precompute`` (so its output is always
empty, and frames the join owes from an interpolation's delay come with the next step).

A state after ``precompute`` has the same layout as one after ``step`` (every buffer at its maximum
size, the frames computed ahead fit the alignment queues: their bounds count the ``"release"`` frame
arithmetic of :mod:`thinkonce.stream.layout`), but other counters: the entries' held-frame counters
(``nheld``, their :attr:`~thinkonce.stream.layers.StreamOp.layout_keys`) are 0 although frames have
arrived, and the deep path's fills have moved on. The clock check of ``step`` accepts exactly the
counter rows some schedule of steps and precomputes reaches at a clock value
(:func:`reachable_histories`), traced backends and ``export_onnx`` add the counters precompute moves
to their key (a graph per phase and per precomputed-or-not), ``Stream.reset`` restores the zero
history with the state's counters, and a ``StreamPool`` batches rows only with equal counters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..errors import ThinkonceError
from ..stream.state import State, state_batch
from .ops import HoldingAlign, ShiftedOp, releasing

if TYPE_CHECKING:  # pragma: no cover
    from ..stream.stream import Stream


def fp_entries(stream: "Stream") -> list[str]:
    """Names of the nodes that are shifted S-CC entries (what precompute lets run ahead)."""
    return [p.node.name for p in stream.plan.nodes if isinstance(p.op, ShiftedOp) and p.op.entry]


def holding_joins(stream: "Stream") -> tuple[frozenset[str], bool]:
    """The fill alignments whose full-rate partner (``like``) is not itself computed ahead: there the
    frames computed ahead wait (alignments inside a deep path pass theirs on, so the deep work is done).
    Also whether frames computed ahead can reach the output without such a join."""
    released: set = set()
    holds = set()
    for p in stream.plan.nodes:
        if (isinstance(p.op, ShiftedOp) and p.op.entry) or any(a in released for a in p.temporal_args):
            if isinstance(p.op, HoldingAlign) and p.node.args[1] not in released:
                holds.add(p.node.name)
            else:
                released.add(p.node)
    return frozenset(holds), stream.plan.output_arg in released


def release(stream: "Stream", state: State) -> State:
    """``precompute`` without validation: one pass of an empty chunk while the S-CC entries release
    their held frame. Raises when frames computed ahead would reach the output."""
    holds, leaks = holding_joins(stream)
    b = state_batch(state)
    x = torch.zeros((b, *stream.input_frame_shape, 0), dtype=stream.dtype, device=stream.device)
    if not leaks:
        with torch.no_grad(), releasing(holds):
            env, new = stream.program.run(x, state, "step")
    if leaks or env[stream.plan.output_arg].shape[stream.out_tdim]:
        raise ThinkonceError(
            "precompute(): the deep path of a shifted S-CC reaches the model's output without meeting full-rate "
            "data, so frames computed ahead would be emitted before their slot. Crop the fill to a full-rate "
            "tensor (Extrapolate(...)(y, like=x_at_the_S-CC_input)) or join it with a skip connection."
        )
    for k, v in state.items():
        if k.startswith("@") and k not in new:  # @t, @fp (the counters @n are the pass's own)
            new[k] = v
    return new


def precompute(stream: "Stream", state: State) -> State:
    """The state after computing the deep path for the next step ahead of time (see the module docstring)."""
    if stream.spec is not None:
        raise ThinkonceError("precompute() is defined for continuous mode (window=None) only")
    if not fp_entries(stream):
        raise ThinkonceError(
            "precompute(): the model has no shifted S-CC, so no deep path can run ahead. Build it with "
            "ShiftedStridedClonedConv1d/2d, or thinkonce.soi.apply(model, at=[...], mode='fp')."
        )
    stream._check_state(state, None)
    return release(stream, state)


def _released(stream: "Stream", st: State) -> State:
    """``release`` of a batch-1 layer state (no clock entry of its own)."""
    full = dict(st)
    full["@t"] = torch.zeros(1, dtype=torch.int64, device=stream.device)
    return {k: v for k, v in release(stream, full).items() if k != "@t"}


def reachable_histories(stream: "Stream") -> dict[int, dict[tuple[int, ...], State]]:
    """For every clock phase key (:meth:`Clock.layout_phase`): the zero histories a stream can be in,
    by their counter row (``@n``), over every schedule of steps and precomputes.

    Counters depend on the chunk lengths only through where precompute ran (a chunk of ``n`` samples
    leaves the counters of ``n`` one-sample steps), so the rows reachable at clock ``t`` are those of
    the rows at ``t - 1`` after one sample, closed under precompute (not idempotent with nested
    shifted S-CCs: an outer release hands the inner entry a frame it can release in turn) and under
    empty steps (which hand on what a join held after precompute). Starts from the cold state and
    the empty-step history at 0. Computed
    once up to the warm-up plus two periods; the second period must repeat the first (the phases of
    a steady state), else a :class:`ThinkonceError` says the model's precompute schedule is not periodic.
    """
    clock = stream.clock
    period, warm = clock.period, clock.warmup
    if holding_joins(stream)[1]:  # precompute is refused for this model: only plain histories occur
        return {t: {} for t in range(warm + period)}
    x1 = torch.zeros((1, *stream.input_frame_shape, 1), dtype=stream.dtype, device=stream.device)

    x0 = x1.narrow(-1, 0, 0)

    def close(states: dict[tuple[int, ...], State]) -> dict[tuple[int, ...], State]:
        """Closed under precompute and under empty steps (after precompute, an empty step hands on
        what a join held for the next step)."""
        frontier = list(states.values())
        while frontier:
            st = frontier.pop()
            for r in (_released(stream, st), stream.program.run(x0, st, "step")[1]):
                row = tuple(r["@n"][0].tolist())
                if row not in states:
                    states[row] = r
                    frontier.append(r)
        return states

    h0 = stream._history(0)
    cold = stream.program.init_state(1, stream._like)  # init_state's counters (an empty step moves some)
    cur = close({tuple(cold["@n"][0].tolist()): cold, tuple(h0["@n"][0].tolist()): h0})
    out: dict[int, dict[tuple[int, ...], State]] = {0: cur}
    for t in range(1, warm + 2 * period):
        nxt: dict[tuple[int, ...], State] = {}
        for st in cur.values():
            _, new = stream.program.run(x1, st, "step")
            nxt.setdefault(tuple(new["@n"][0].tolist()), new)
        cur = close(nxt)
        if t < warm + period:
            out[t] = cur
        elif set(cur) != set(out[t - period]):
            raise ThinkonceError(
                "the counters of this SOI stream under precompute do not repeat with the stride period after "
                f"the warm-up ({warm} samples); the clock check cannot predict them. Please report the model."
            )
    return out
