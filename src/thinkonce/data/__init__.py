"""Simulated recordings that run offline: PPG, EEG, accelerometer."""
