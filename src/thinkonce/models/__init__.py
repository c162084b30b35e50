"""Reference networks of the reproduced experiments."""

from thinkonce.models.ppg_hr import PPGHeartRateNet, ppg_hr

__all__ = ["PPGHeartRateNet", "ppg_hr"]
