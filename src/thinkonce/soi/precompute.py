"""Fully predictive (FP) schedule: the deep path of a shifted S-CC computed ahead, in idle time.

A shifted S-CC's frame ``j`` needs input frames up to ``2j - 1`` only, so once frame ``2j - 1`` has
arrived the deep path for slots ``2j`` and ``2j + 1`` can run before frame ``2j`` exists. A device does
that between samples (:meth:`thinkonce.Stream.precompute`); the next :meth:`~thinkonce.Stream.step`
then finds the deep frames waiting in the fill's alignment queue and runs only the shallow path.

``precompute`` is an ordinary pure function of the state: it feeds an empty chunk through the plan
while the S-CC entries release their held frame (:func:`thinkonce.soi.ops.releasing`). Results do not
change; only when the work happens does. The deep frames must meet full-rate data before the output
(a fill with ``like=``, or a skip connection), where they wait for their slot; a model whose deep
path reaches the output directly would emit predictions early, and is refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..errors import ThinkonceError
from ..stream.state import State, state_batch
from .ops import ShiftedOp, releasing

if TYPE_CHECKING:  # pragma: no cover
    from ..stream.stream import Stream


def fp_entries(stream: "Stream") -> list[str]:
    """Names of the nodes that are shifted S-CC entries (what precompute lets run ahead)."""
    return [p.node.name for p in stream.plan.nodes if isinstance(p.op, ShiftedOp) and p.op.entry]


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
    b = state_batch(state)
    x = torch.zeros((b, *stream.input_frame_shape, 0), dtype=stream.dtype, device=stream.device)
    with torch.no_grad(), releasing():
        env, new = stream.program.run(x, state, "step")
    y = env[stream.plan.output_arg]
    if y.shape[stream.out_tdim]:
        raise ThinkonceError(
            "precompute(): the deep path of a shifted S-CC reaches the model's output without meeting full-rate "
            "data, so frames computed ahead would be emitted before their slot. Crop the fill to a full-rate "
            "tensor (Extrapolate(...)(y, like=x_at_the_S-CC_input)) or join it with a skip connection."
        )
    for k, v in state.items():
        if k.startswith("@"):
            new[k] = v
    return new
