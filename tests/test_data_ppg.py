"""The PPG simulator and the window helpers that turn recordings into labelled windows."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from thinkonce.data import PPGRecording, simulate_ppg, sliding_windows, window_hr


@pytest.fixture(scope="module")
def rec() -> PPGRecording:
    return simulate_ppg(120.0, fs=32.0, seed=3)


def test_shapes_and_dtypes(rec: PPGRecording) -> None:
    n = 120 * 32
    assert rec.ppg.shape == (1, n) and rec.ppg.dtype == np.float32
    assert rec.acc.shape == (3, n) and rec.acc.dtype == np.float32
    assert rec.hr_bpm.shape == (n,) and rec.hr_bpm.dtype == np.float32
    assert rec.motion_mask.shape == (n,) and rec.motion_mask.dtype == np.bool_
    assert rec.fs == 32.0 and rec.seed == 3
    assert rec.n_samples == n and rec.duration_s == pytest.approx(120.0)
    assert all(np.isfinite(a).all() for a in (rec.ppg, rec.acc, rec.hr_bpm))


def test_sample_count_follows_fs() -> None:
    assert simulate_ppg(10.0, fs=25.0).ppg.shape == (1, 250)
    assert simulate_ppg(1 / 32, fs=32.0).ppg.shape == (1, 1)


def test_recording_is_frozen(rec: PPGRecording) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.fs = 64.0  # type: ignore[misc]


def test_same_seed_same_recording() -> None:
    a, b = simulate_ppg(60.0, seed=11), simulate_ppg(60.0, seed=11)
    for field in ("ppg", "acc", "hr_bpm", "motion_mask"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_different_seeds_differ() -> None:
    a, b = simulate_ppg(60.0, seed=1), simulate_ppg(60.0, seed=2)
    assert not np.allclose(a.ppg, b.ppg)
    assert not np.allclose(a.hr_bpm, b.hr_bpm)


@pytest.mark.parametrize("seed", range(8))
def test_heart_rate_in_physiological_range(seed: int) -> None:
    hr = simulate_ppg(900.0, seed=seed).hr_bpm
    assert hr.min() >= 50.0 and hr.max() <= 180.0
    # smooth: no more than a few bpm change per second
    assert np.abs(np.diff(hr)).max() * 32.0 < 10.0


def test_heart_rate_spans_range_across_seeds() -> None:
    hr = np.concatenate([simulate_ppg(600.0, seed=s).hr_bpm for s in range(12)])
    assert hr.min() < 70.0 and hr.max() > 140.0


@pytest.mark.parametrize("seed", [0, 5, 9])
def test_clean_pulse_rate_matches_ground_truth(seed: int) -> None:
    """Without motion the spectral peak of the PPG sits at the labelled heart rate."""
    rec = simulate_ppg(16.0, fs=32.0, seed=seed, motion=False)
    x = rec.ppg[0] - rec.ppg[0].mean()
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size), n=8192))
    freqs = np.fft.rfftfreq(8192, d=1 / 32.0)
    band = (freqs > 0.75) & (freqs < 3.2)
    peak_bpm = 60.0 * freqs[band][np.argmax(spectrum[band])]
    assert abs(peak_bpm - rec.hr_bpm.mean()) < 6.0


def test_motion_switch() -> None:
    still = simulate_ppg(300.0, seed=4, motion=False)
    moving = simulate_ppg(300.0, seed=4, motion=True)
    assert not still.motion_mask.any()
    # at rest the wrist only feels gravity: |acc| stays near 1 g
    norm = np.linalg.norm(still.acc, axis=0)
    assert abs(norm.mean() - 1.0) < 0.02 and norm.std() < 0.05
    assert moving.motion_mask.any()
    assert np.linalg.norm(moving.acc, axis=0)[moving.motion_mask].std() > 0.1
    np.testing.assert_array_equal(still.hr_bpm, moving.hr_bpm)


@pytest.mark.parametrize(
    ("duration", "fs"), [(0.0, 32.0), (-1.0, 32.0), (float("nan"), 32.0), (10.0, 0.0), (10.0, -32.0)]
)
def test_invalid_arguments(duration: float, fs: float) -> None:
    with pytest.raises(ValueError, match="duration_s|fs"):
        simulate_ppg(duration, fs=fs)


def test_too_short_for_one_sample() -> None:
    with pytest.raises(ValueError, match="no samples"):
        simulate_ppg(0.001, fs=32.0)


# --- window helpers -------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "window", "hop"), [(1000, 256, 64), (256, 256, 64), (300, 7, 3), (50, 4, 10)])
def test_sliding_windows_matches_loop(n: int, window: int, hop: int) -> None:
    x = np.random.default_rng(0).normal(size=(3, n)).astype(np.float32)
    expected = [x[:, s : s + window] for s in range(0, n - window + 1, hop)]
    out = sliding_windows(x, window, hop)
    assert out.shape == (len(expected), 3, window) and out.dtype == x.dtype
    np.testing.assert_array_equal(out, np.stack(expected))


def test_sliding_windows_returns_copy() -> None:
    x = np.arange(20.0)[None, :]
    out = sliding_windows(x, 8, 4)
    assert out.flags.c_contiguous and out.flags.writeable
    out[0, 0, 0] = -1.0
    assert x[0, 0] == 0.0


def test_sliding_windows_one_dimensional_and_short() -> None:
    assert sliding_windows(np.arange(10.0), 4, 2).shape == (4, 1, 4)
    assert sliding_windows(np.zeros((2, 3)), 4, 1).shape == (0, 2, 4)


@pytest.mark.parametrize(("window", "hop"), [(0, 1), (4, 0), (-2, 1), (4, 1.5)])
def test_window_arguments_validated(window: int, hop: int) -> None:
    with pytest.raises(ValueError):
        sliding_windows(np.zeros((1, 10)), window, hop)


def test_window_hr_matches_loop(rec: PPGRecording) -> None:
    expected = [rec.hr_bpm[s : s + 256].astype(np.float64).mean() for s in range(0, rec.n_samples - 255, 64)]
    out = window_hr(rec.hr_bpm, 256, 64)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert len(out) == len(sliding_windows(rec.ppg, 256, 64))


def test_window_hr_rejects_multichannel() -> None:
    with pytest.raises(ValueError, match="1-D"):
        window_hr(np.zeros((2, 100)), 10, 5)
