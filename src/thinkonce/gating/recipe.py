"""The training recipe: from a trained dense model to hard 0/1 switches at a target compute budget.

``fit`` fine-tunes a gated model (from :func:`thinkonce.gating.insert`, whose gates start all on, so it
starts as the trained dense model) on ``task loss + sparsity_loss(gain)``. Two ways to choose the
operating point:

* a fixed ``gain`` (the paper's knob: a larger gain, fewer engaged kernels);
* a ``target`` share of engaged kernels: each gate gets its own gain, set after every step by a
  proportional controller ``gain_i = gain * max(share_i - target, 0) / target``: the cost pushes a
  layer's switches off only while it engages more than ``target``, and vanishes below it, so the task
  loss alone decides whether kernels come back. Measured failures of the alternatives: a single gain
  on the mean share let one Bonn EEG layer switch everything off (accuracy fell to the majority class,
  97.5 -> 80.0 %); an integrating per-gate controller (``gain_i *= exp(rate * (share_i - target))``)
  wound up during the switches' lag and overshot (MNIST at target 0.4 ended at 8-33 % engaged and
  19 % accuracy).

The gates' parameters train at ``gate_lr`` (10x the network's by default): Adam moves each parameter
by about its learning rate per step whatever the gradient, and a gate's logit must cross the
threshold within a short fine-tune.

Relaxation: the default is the **straight-through estimator** (``relax="ste"``). Measured against the
annealed sigmoid and the Gumbel-sigmoid in ``experiments/lkam_digits.py`` (scikit-learn digits, target
share 0.4, 6 fine-tuning epochs, one seed; EXPERIMENTS.md, "Parsimonious inference"), the annealed
sigmoid scored highest (97.2 % vs STE 95.0 % vs Gumbel 90.8 % with hard switches, all near 0.43-0.45
engaged), so the measurement does *not* favour STE on accuracy. STE stays the default because with it
the forward pass during training *is* the deployed hard network (no soft/hard gap to watch, no
temperature schedule to fit to the number of epochs: the annealed sigmoid only matches its hard
version once the temperature is small); Gumbel noise made the switches random during training and
settled the budget worst. Try ``relax="anneal"`` when accuracy matters more than a predictable recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .insert import gates
from .loss import sparsity_loss


@dataclass
class FitLog:
    """What happened during ``fit``: per epoch, the engaged share and the gain (means over gates)."""

    share: list[float] = field(default_factory=list)
    gain: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)


def anneal(epoch: float, epochs: int, start: float = 1.0, end: float = 0.05) -> float:
    """Geometric temperature schedule from ``start`` to ``end`` over the epochs (annealed sigmoid, Gumbel)."""
    f = min(max(epoch / max(epochs - 1, 1), 0.0), 1.0)
    return start * (end / start) ** f


def fit(model: nn.Module, x: Tensor, y: Tensor, epochs: int, *, gain: float = 10.0, target: float | None = None,
        relax: str = "ste", lr: float = 1e-3, gate_lr: float | None = None, batch: int = 64, seed: int = 0,
        loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
        on_epoch: Callable[[int], None] | None = None) -> FitLog:
    """Fine-tune ``model`` (gated) in place; returns the log. See the module docstring."""
    gs = gates(model)
    if not gs:
        raise ValueError("fit needs a gated model: thinkonce.gating.insert(model, after=...)")
    if target is not None and not 0.0 < target <= 1.0:
        raise ValueError(f"target is a share of kernels in (0, 1], got {target}")
    for g in gs.values():
        g.relax = relax
    gate_params = {id(p) for g in gs.values() for p in g.parameters()}
    opt = torch.optim.Adam([
        {"params": [p for p in model.parameters() if id(p) not in gate_params], "lr": lr},
        {"params": [p for g in gs.values() for p in g.parameters()], "lr": 10 * lr if gate_lr is None else gate_lr}])
    gains = {n: float(gain) * ((1.0 - target) / target if target is not None else 1.0) for n in gs}
    gen = torch.Generator().manual_seed(seed)
    log = FitLog()
    n = x.shape[0]
    for ep in range(epochs):
        for g in gs.values():
            g.temperature = anneal(ep, epochs)
        model.train()
        perm = torch.randperm(n, generator=gen)
        shares, losses = [], []
        for i in range(0, n, batch):
            j = perm[i:i + batch]
            out = model(x[j])
            task = loss_fn(out, y[j])
            loss = task + sparsity_loss(model, gains)
            opt.zero_grad()
            loss.backward()
            opt.step()
            per = {name: float((g.probs.detach() > 0.5).float().mean() if relax != "anneal" else g.probs.detach().mean())
                   for name, g in gs.items()}
            shares.append(sum(per.values()) / len(per))
            losses.append(float(task.detach()))
            if target is not None:
                for name, sh in per.items():
                    gains[name] = float(gain * max(sh - target, 0.0) / target)
        log.share.append(sum(shares) / len(shares))
        log.gain.append(sum(gains.values()) / len(gains))
        log.loss.append(sum(losses) / len(losses))
        if on_epoch is not None:
            on_epoch(ep)
    model.eval()
    return log
