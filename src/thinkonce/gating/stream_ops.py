"""How gated models stream (``thinkonce.stream``): builders registered with ``thinkonce.ops.register_op``.

**Window mode.** The gate decides once per window, from the window's features: the LKAM's global
average pooling runs over the buffered frames of layer i's output for that window (the same frames
normal inference of the window pools). The LKAM therefore mixes the whole time axis: it and everything
downstream of it (the switched conv and the layers after it) run in the window's head, on the buffer,
once per window, with the kernels that window engages. Layers before the first gate stream as usual
(each hop computes only its new frames). So a window's output equals gated inference of that window
(exactly so against :meth:`Stream.reference`, the signal-padded window; tested), and the saving of
gating applies to the part after the first gate, which is recomputed per window.

**Continuous mode** is refused: the gate pools over the whole signal, which a stream never has. (A
causal gate - a running mean of layer i's output instead of global pooling, trained that way - would
switch kernels per frame; it is not implemented.)

The deployed layers (:mod:`thinkonce.gating.gathered`) are registered the same way so that the
converter keeps them as single nodes; they always sit downstream of a gate, in the head.
"""

from __future__ import annotations

from ..ops.context import OpContext
from ..ops.registry import register_op
from .gathered import DeployedGate, Expand, GatheredConv, GatheredNorm, Masked
from .lkam import LKAM


@register_op(LKAM, DeployedGate)
def gate(ctx: OpContext):
    if ctx.continuous:
        raise ctx.fail(
            "an LKAM gate pools its input over the whole time axis, which a continuous stream never has",
            "Stream a gated model in window mode (thinkonce.stream(model, window=W, hop=H)): the gate then "
            "decides once per window from that window's features.")
    return ctx.mixing("the LKAM gate pools the whole window (one decision per window)")


@register_op(GatheredConv, GatheredNorm, Masked, Expand)
def gathered(ctx: OpContext):
    return ctx.mixing("a deployed gated layer runs once per window with the kernels the window's gate engaged")
