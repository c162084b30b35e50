"""How gated models stream (``thinkonce.stream``): builders registered with ``thinkonce.ops.register_op``.

**Window mode.** The gate decides once per window, from the window's features: the LKAM's global
average pooling runs over the buffered frames of layer i's output for that window (the same frames
normal inference of the window pools). The LKAM therefore mixes the whole time axis: it and everything
downstream of it (the switched conv and the layers after it) run in the window's head, on the buffer,
once per window, with the kernels that window engages. Layers before the first gate stream as usual
(each hop computes only its new frames). So a window's output equals gated inference of that window
(exactly so against :meth:`Stream.reference`, the signal-padded window; tested), and the saving of
gating applies to the part after the first gate, which is recomputed per window.

**Continuous mode** needs causal gates (``insert(..., pooling="causal")``): the gate of frame ``t`` sees
the running mean of layer i's output over frames ``0..t`` since the stream started (state: the running
sum and the frame count) and switches layer i+1's kernels for that frame; the model is trained that
way (the LKAM computes the same running mean in training). The stream equals the offline gated model
(tested under random chunkings). Its convs run dense and are masked frame by frame: a continuous
stream saves no compute from gating (``count_macs`` counts the dense convs plus the gates). A
global-pooling gate in a continuous stream is refused.

The deployed layers (:mod:`thinkonce.gating.gathered`) are registered the same way so that the
converter keeps them as single nodes; they always sit downstream of a gate, in the head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from ..ops.context import OpContext
from ..ops.registry import register_op
from ..stream.layers import State, StreamOp
from ..stream.state import Field
from .gathered import DeployedGate, Expand, GatheredConv, GatheredNorm, Masked
from .lkam import LKAM, apply_gate


@dataclass(eq=False)
class CausalGateOp(StreamOp):
    """A causal LKAM on chunks: per-frame switches from the running mean since the stream started.

    State: ``sum`` (B, C, 1) - the sum of every input frame seen; ``count`` (B, 1, 1) - how many.
    """

    lkam: LKAM
    kind: str = "causal_gate"

    def owes_at_end(self) -> bool:
        return False

    def taint(self, n: int, left: int, right: int) -> tuple[int, int, int]:
        return (n, n, 0) if left else (n, 0, right)  # frame t reads every frame <= t

    def state_spec(self, in_shapes, dtype):
        # fixed from the first step on (the state contract): one frame of sums and one count per row
        return {"sum": Field((self.lkam.in_channels, 1), dtype), "count": Field((1, 1), dtype)}

    def out_shape(self, in_shape):
        return (self.lkam.n_kernels, *in_shape[1:])

    def run(self, xs: Sequence[Tensor], st: State, mode: str) -> tuple[Tensor, State]:
        (x,) = xs
        g = self.lkam
        n = x.shape[-1]
        if n == 0:
            return x.new_zeros(x.shape[0], g.n_kernels, 0), dict(st)
        total = x.cumsum(-1) + st["sum"]
        count = st["count"] + torch.arange(1, n + 1, dtype=x.dtype, device=x.device)
        z = g.frame_logits(total / count)
        return g.expand(g.hard(z)), {"sum": total[..., -1:], "count": count[..., -1:]}


@register_op(apply_gate)
def mask(ctx: OpContext):
    return ctx.framewise()


@register_op(LKAM, DeployedGate)
def gate(ctx: OpContext):
    if isinstance(ctx.module, LKAM) and ctx.module.pooling == "causal":
        if ctx.ndim_in != 3 or ctx.t != 2:
            raise ctx.fail("a causal LKAM needs (batch, channels, time) with time last")
        return ctx.temporal(CausalGateOp(ctx.module))
    if ctx.continuous:
        raise ctx.fail(
            "an LKAM gate pools its input over the whole time axis, which a continuous stream never has",
            "Stream a gated model in window mode (thinkonce.stream(model, window=W, hop=H)): the gate then "
            "decides once per window from that window's features; or insert causal gates "
            "(thinkonce.gating.insert(model, after=..., pooling='causal')), trained with a running mean.")
    return ctx.mixing("the LKAM gate pools the whole window (one decision per window)")


@register_op(GatheredConv, GatheredNorm, Masked, Expand)
def gathered(ctx: OpContext):
    return ctx.mixing("a deployed gated layer runs once per window with the kernels the window's gate engaged")
