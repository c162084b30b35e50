"""Measurement: MAC counts per step (torch.utils.flop_counter) and timing."""

from .macs import count_macs, head_macs, ideal_step_macs

__all__ = ["count_macs", "head_macs", "ideal_step_macs"]
