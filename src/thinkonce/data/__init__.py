"""Simulated recordings that run offline: PPG, EEG, accelerometer, and event-level scoring."""

from thinkonce.data.acc import AccRecording, simulate_acc
from thinkonce.data.eeg import EEGRecording, simulate_eeg
from thinkonce.data.events import labels_from_events, n_windows, score_events, window_labels, windows_to_events
from thinkonce.data.ppg import PPGRecording, simulate_ppg, sliding_windows, window_hr

__all__ = [
    "PPGRecording", "simulate_ppg", "sliding_windows", "window_hr",
    "EEGRecording", "simulate_eeg", "AccRecording", "simulate_acc",
    "labels_from_events", "window_labels", "windows_to_events", "score_events", "n_windows",
]
