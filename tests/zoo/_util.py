"""Helpers shared by the zoo: non-trivial random weights for eval-mode models."""

from __future__ import annotations

import torch
import torch.nn as nn

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


@torch.no_grad()
def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every normalisation layer random affine parameters and running statistics (a trained model
    does not have mean 0 / var 1), so that a stream that mishandles BatchNorm cannot pass by luck.
    Convolution/linear weights keep PyTorch's default init (already random); PReLU slopes are drawn."""
    g = torch.Generator().manual_seed(seed)

    def rnd(t: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        return torch.rand(t.shape, generator=g) * (hi - lo) + lo

    for m in model.modules():
        if isinstance(m, _NORMS):
            if getattr(m, "weight", None) is not None:
                m.weight.copy_(rnd(m.weight, 0.6, 1.4))
            if getattr(m, "bias", None) is not None:
                m.bias.copy_(rnd(m.bias, -0.2, 0.2))
            if getattr(m, "running_mean", None) is not None:
                m.running_mean.copy_(rnd(m.running_mean, -0.2, 0.2))
                m.running_var.copy_(rnd(m.running_var, 0.5, 1.5))
        elif isinstance(m, nn.PReLU):
            m.weight.copy_(rnd(m.weight, 0.05, 0.4))
    return model
