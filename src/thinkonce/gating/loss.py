"""The paper's cost on engaged kernels, and what share of kernels a gated model engages.

``L_aug = sum_i G_i / (2 m_i) * sum_k sw_ik`` (LKAM patents; ``G_i`` the gain of gate ``i``, ``m_i`` its
number of switches, ``sw_ik`` the switch values), averaged over the batch. A larger gain buys fewer
engaged kernels at some accuracy: the gain per layer sets the compute/accuracy point.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn
from torch import Tensor

from .insert import GateError, gates


def _gains(model: nn.Module, gain: float | Mapping[str, float]) -> dict[str, float]:
    gs = gates(model)
    if not gs:
        raise GateError("the model has no LKAM; make it with thinkonce.gating.insert(model, after=...)")
    if isinstance(gain, Mapping):
        out = {}
        for k, v in gain.items():
            name = k if k in gs else "gate_" + k.replace(".", "_")
            if name not in gs:
                raise GateError(f"gain for unknown layer {k!r}; gates: {sorted(gs)} (or the conv names after "
                                f"which they sit: {sorted(n[5:] for n in gs)})")
            out[name] = float(v)
        return out
    return {n: float(gain) for n in gs}


def sparsity_loss(model: nn.Module, gain: float | Mapping[str, float]) -> Tensor:
    """The engaged-kernel cost of the last training forward pass (gates not named in a dict cost 0)."""
    gs = gates(model)
    total: Tensor | None = None
    for name, g in _gains(model, gain).items():
        p = gs[name].probs
        if p is None:
            raise GateError(f"gate {name!r} has no switch values: call sparsity_loss after a forward pass in "
                            "training mode (model.train())")
        term = g / (2 * gs[name].n_switches) * p.sum(1).mean()
        total = term if total is None else total + term
    assert total is not None
    return total


@torch.no_grad()
def engaged(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """Per gate, the share of kernels switched on for each input of ``x`` (eval mode, hard switches)."""
    gs = gates(model)
    out: dict[str, list[Tensor]] = {n: [] for n in gs}
    hooks = [g.register_forward_hook(lambda m, i, o, n=n: out[n].append(o.mean(1))) for n, g in gs.items()]
    was = model.training
    model.eval()
    try:
        model(x)
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    return {n: torch.cat(v) for n, v in out.items()}
