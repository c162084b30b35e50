"""The Learning Kernel-Activation Module (LKAM, Theodorakopoulos et al., arXiv 1701.05221).

From the output of conv layer i (the tensor conv layer i+1 reads), a 1x1 convolution, global average
pooling and a sigmoid give one switch per kernel of layer i+1. We pool *first* and then apply the 1x1
convolution as a matrix on the pooled vector: a 1x1 convolution is linear, so
``mean_t(W x_t + b) == W mean_t(x_t) + b`` exactly, and the gate's cost drops from ``C_in * C_out * T``
to ``C_in * C_out`` MACs (plus one pass over the input for the mean). That is where the gate's own cost
goes at inference: one mean over layer i's output and a ``C_in x m`` matrix-vector product.

``group`` > 1 switches kernels in blocks of ``group`` consecutive kernels (one logit per block), so that
the gathered weights stay in vector-friendly runs.

Training relaxations (attribute ``relax``; at ``eval()`` every mode is the hard 0/1 switch
``sigmoid(z) > threshold``):

* ``"ste"``: straight-through estimator: the forward pass uses the hard switch, the backward pass the
  sigmoid's gradient. Training sees exactly the network that will be deployed.
* ``"anneal"``: annealed sigmoid ``sigmoid(z / T)``; ``T`` goes to 0 over training (set ``temperature``);
  soft during training, so the trained network and the hard one differ until ``T`` is small.
``pooling="causal"`` (1-D, time last) replaces the global average by the running mean over frames
``0..t``: the gate of frame ``t`` sees only the past, so the gated model streams in continuous mode
(trained the same way: the running mean is what training computes too).

* ``"gumbel"``: Gumbel(logistic)-sigmoid with a hard straight-through forward pass: noise on the logits
  during training pushes logits away from the threshold.

Which one the project recommends, and why, is in :mod:`thinkonce.gating.recipe` (measured in
``experiments/lkam_digits.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

RELAXATIONS = ("ste", "anneal", "gumbel")
POOLINGS = ("global", "causal")


class LKAM(nn.Module):
    """Switches for ``n_kernels`` kernels of the next layer, from an input of ``in_channels`` channels.

    ``forward(x)`` takes ``(batch, in_channels, *spatial)`` and returns gates ``(batch, n_kernels)``:
    hard 0/1 in eval mode, relaxed in training mode. The last gate probabilities of a training forward
    pass are kept in ``self.probs`` for :func:`thinkonce.gating.sparsity_loss`.
    """

    def __init__(self, in_channels: int, n_kernels: int, group: int = 1, *, relax: str = "ste",
                 threshold: float = 0.5, init_on: float = 2.0, pooling: str = "global") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
        self.pooling = pooling
        if in_channels < 1 or n_kernels < 1:
            raise ValueError(f"LKAM needs in_channels >= 1 and n_kernels >= 1, got {in_channels}, {n_kernels}")
        if group < 1 or n_kernels % group:
            raise ValueError(f"group={group} must divide n_kernels={n_kernels} (kernels are switched in blocks "
                             f"of group); use one of {[g for g in range(1, n_kernels + 1) if n_kernels % g == 0]}")
        self.in_channels, self.n_kernels, self.group = int(in_channels), int(n_kernels), int(group)
        self.proj = nn.Linear(in_channels, n_kernels // group)  # the 1x1 conv, applied after pooling
        nn.init.normal_(self.proj.weight, std=0.01)
        nn.init.constant_(self.proj.bias, init_on)  # start with every kernel on: training starts dense
        self.relax = relax
        self.threshold = threshold
        self.temperature = 1.0
        self.budget = 1.0
        self.probs: Tensor | None = None

    # ---------------------------------------------------------------- properties
    @property
    def relax(self) -> str:
        return self._relax

    @relax.setter
    def relax(self, mode: str) -> None:
        if mode not in RELAXATIONS:
            raise ValueError(f"unknown relaxation {mode!r}; choose one of {RELAXATIONS}")
        self._relax = mode

    @property
    def threshold(self) -> float:
        return self._threshold

    @threshold.setter
    def threshold(self, t: float) -> None:
        if not 0.0 < float(t) < 1.0:
            raise ValueError(f"threshold must lie strictly between 0 and 1 (a sigmoid level), got {t}")
        self._threshold = float(t)
        self.logit_threshold = math.log(self._threshold / (1.0 - self._threshold))

    @property
    def budget(self) -> float:
        """Run-time knob: at most ``ceil(budget * n_switches)`` switches on per input (the highest logits
        among those over the threshold); 1.0 = the threshold alone decides."""
        return self._budget

    @budget.setter
    def budget(self, b: float) -> None:
        if not 0.0 < float(b) <= 1.0:
            raise ValueError(f"budget is the largest share of kernels on per input, in (0, 1], got {b}")
        self._budget = float(b)

    @property
    def n_switches(self) -> int:
        return self.n_kernels // self.group

    # ---------------------------------------------------------------- compute
    def pooled(self, x: Tensor) -> Tensor:
        if x.dim() < 3 or x.shape[1] != self.in_channels:
            raise ValueError(f"LKAM expects (batch, {self.in_channels}, *spatial), got shape {tuple(x.shape)}")
        if self.pooling == "causal":
            if x.dim() != 3:
                raise ValueError(f"a causal LKAM reads (batch, channels, time), got shape {tuple(x.shape)}")
            return x.cumsum(-1) / torch.arange(1, x.shape[-1] + 1, dtype=x.dtype, device=x.device)
        return x.flatten(2).mean(-1)

    def logits(self, x: Tensor) -> Tensor:
        """Switch logits: ``(batch, n_switches)`` from the globally pooled input, or, for
        ``pooling="causal"``, ``(batch, n_switches, time)`` from the running mean of frames ``0..t``."""
        if self.pooling == "causal":
            return self.frame_logits(self.pooled(x))
        return self.proj(self.pooled(x))

    def frame_logits(self, pooled: Tensor) -> Tensor:
        """The 1x1 conv on per-frame pooled features ``(batch, in_channels, time)``."""
        return torch.einsum("bct,sc->bst", pooled, self.proj.weight) + self.proj.bias[:, None]

    def expand(self, g: Tensor) -> Tensor:
        return g.repeat_interleave(self.group, dim=1) if self.group > 1 else g

    def hard(self, z: Tensor) -> Tensor:
        """The inference switch: ``sigmoid(z) > threshold``, as 0/1 floats."""
        on = z > self.logit_threshold
        if self.budget < 1.0:
            k = max(1, math.ceil(self.budget * z.shape[1]))
            if k < z.shape[1]:
                top = torch.zeros_like(on).scatter_(1, z.topk(k, dim=1).indices, True)
                on = on & top
        return on.to(z.dtype)

    def forward(self, x: Tensor) -> Tensor:
        z = self.logits(x)
        if not self.training:
            self.probs = None
            return self.expand(self.hard(z))
        p = torch.sigmoid(z)
        self.probs = p
        if self.relax == "ste":
            g = self.hard(z) + p - p.detach()
        elif self.relax == "anneal":
            g = torch.sigmoid(z / max(self.temperature, 1e-4))
            self.probs = g
        else:  # gumbel: logistic noise = difference of two Gumbels
            u = torch.rand_like(z).clamp(1e-6, 1 - 1e-6)
            soft = torch.sigmoid((z + torch.log(u) - torch.log1p(-u)) / max(self.temperature, 1e-4))
            g = (soft > 0.5).to(z.dtype) + soft - soft.detach()
        return self.expand(g)

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["probs"] = None  # the last training pass's graph is not part of the module (copies, pickles)
        return state

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, n_kernels={self.n_kernels}, group={self.group}, "
                f"relax={self.relax!r}, threshold={self.threshold}")


def apply_gate(h: Tensor, g: Tensor) -> Tensor:
    """Masked dense computation: channel ``c`` of ``h`` times ``g[:, c]`` (the reference of :func:`deploy`);
    a causal gate ``(batch, channels, time)`` multiplies frame by frame."""
    if g.dim() == h.dim():
        if g.shape[-1] != h.shape[-1]:
            raise ValueError(f"a causal gate switches frame by frame, so the switched block must keep the frame rate "
                             f"(no stride or pooling between the gate's input and its mask): the gate has "
                             f"{g.shape[-1]} frames, the block {h.shape[-1]}")
        return h * g
    return h * g.reshape(*g.shape, *([1] * (h.dim() - 2)))
