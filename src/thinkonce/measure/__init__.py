"""Measurement: MAC counts per step (torch.utils.flop_counter) and timing."""

from .cost import StepCost, step_cost
from .macs import count_macs, head_macs, ideal_step_macs

__all__ = ["count_macs", "head_macs", "ideal_step_macs", "step_cost", "StepCost"]
