"""The PPG heart-rate network for real wrist recordings: PPG + 3-axis ACC in raw device units.

Same trunk and head as :class:`~thinkonce.models.PPGHeartRateNet` (causal dilated convolutions with
average pooling, attention head; window 256 at 32 Hz), with two changes for real data:

* four input channels (mean wrist PPG, ACC x, y, z) or one (PPG only): the accelerometer tells the
  network when the optical signal carries motion rather than pulse;
* the fixed affine input normalisation is replaced by :class:`CausalRunningNorm` (mean and std of the
  last 2 s per channel), so raw units of any device go in and the trunk stays causal and streamable.
"""

from __future__ import annotations

import torch
from torch import nn

from thinkonce.models.ppg_hr import CausalConvBlock, PPGHeartRateNet
from thinkonce.models.running_norm import CausalRunningNorm

__all__ = ["PPGHeartRateRealNet"]


class PPGHeartRateRealNet(PPGHeartRateNet):
    """``(B, in_channels, 256)`` raw PPG [+ ACC] at 32 Hz -> heart rate ``(B, 1)`` in bpm.

    ``hr_offset``/``hr_scale`` map the regression output to bpm; ``ppg_offset``/``ppg_scale`` are kept
    (fixed at 0 / 1) only so the state dict has the same buffers as the simulated-data model.
    """

    def __init__(self, in_channels: int = 4, norm_length: int = 64) -> None:
        super().__init__()
        if in_channels not in (1, 4):
            raise ValueError(f"in_channels must be 1 (PPG) or 4 (PPG, ACC x, y, z), got {in_channels}")
        self.in_channels = in_channels
        channels = (in_channels, *self.FILTERS)
        self.blocks = nn.ModuleList(
            CausalConvBlock(channels[i], channels[i + 1], pool) for i, pool in enumerate(self.POOLS)
        )
        self.running_norm = CausalRunningNorm(norm_length)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Raw ``(B, C, T)`` -> features ``(B, 64, T / 16)``; causal, so a stream computes each frame once.

        No shape check here (it would stop torch.fx): the first convolution refuses a wrong channel count.
        """
        x = self.running_norm(x)
        for block in self.blocks:
            x = block(x)
        return x
