"""Simulated recordings (PPG, EEG, accelerometer), loaders of real recordings, event-level scoring."""

from thinkonce.data.acc import AccRecording, simulate_acc
from thinkonce.data.eeg import EEGRecording, simulate_eeg
from thinkonce.data.events import labels_from_events, n_windows, score_events, window_labels, windows_to_events
from thinkonce.data.ppg import PPGRecording, simulate_ppg, sliding_windows, window_hr
from thinkonce.data.real import DataNotFoundError, data_root
from thinkonce.data.troika import TroikaRecording, load_troika
from thinkonce.data.bonn import BonnSegment, load_bonn
from thinkonce.data.malow import MalowRecording, load_malow
from thinkonce.data.uea_epilepsy import UEAEpilepsySeries, load_uea_epilepsy

__all__ = [
    "PPGRecording", "simulate_ppg", "sliding_windows", "window_hr",
    "EEGRecording", "simulate_eeg", "AccRecording", "simulate_acc",
    "labels_from_events", "window_labels", "windows_to_events", "score_events", "n_windows",
    "DataNotFoundError", "data_root", "TroikaRecording", "load_troika", "BonnSegment", "load_bonn",
    "MalowRecording", "load_malow", "UEAEpilepsySeries", "load_uea_epilepsy",
]
