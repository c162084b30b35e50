"""Simulated recordings that run offline: PPG, EEG, accelerometer."""

from thinkonce.data.ppg import PPGRecording, simulate_ppg, sliding_windows, window_hr

__all__ = ["PPGRecording", "simulate_ppg", "sliding_windows", "window_hr"]
