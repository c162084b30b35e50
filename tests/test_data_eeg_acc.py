"""Tests of the EEG and accelerometer seizure simulators and the event helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import signal

from thinkonce.data.acc import AccRecording, simulate_acc
from thinkonce.data.eeg import EEGRecording, simulate_eeg
from thinkonce.data.events import (
    labels_from_events,
    n_windows,
    place_blocks,
    score_events,
    window_labels,
    windows_to_events,
)

# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def eeg() -> EEGRecording:
    return simulate_eeg(300.0, seed=3, seizures=2)


@pytest.fixture(scope="module")
def acc() -> AccRecording:
    return simulate_acc(900.0, seed=1, seizures=2)


def _window_band_power(x: np.ndarray, fs: float, window: int, hop: int, lo: float, hi: float):
    """Band power of each window of x (channels, n), averaged over channels."""
    k = n_windows(x.shape[-1], window, hop)
    freqs = np.fft.rfftfreq(window, 1.0 / fs)
    band = (freqs >= lo) & (freqs <= hi)
    taper = np.hanning(window)
    out = np.empty(k)
    for i in range(k):
        seg = x[:, i * hop : i * hop + window]
        seg = seg - seg.mean(axis=-1, keepdims=True)
        spec = np.abs(np.fft.rfft(seg * taper, axis=-1)) ** 2
        out[i] = spec[:, band].sum(axis=-1).mean()
    return out


# ----------------------------------------------------------------------------- EEG


def test_eeg_shapes_dtypes(eeg: EEGRecording) -> None:
    n = int(300 * 256)
    assert eeg.eeg.shape == (18, n) and eeg.eeg.dtype == np.float32
    assert eeg.labels.shape == (n,) and eeg.labels.dtype == np.int8
    assert eeg.fs == 256.0 and eeg.seed == 3
    assert len(eeg.channels) == 18 and eeg.channels[0] == "FP1-F7"
    assert np.isfinite(eeg.eeg).all()
    # Background amplitude in the range of clinical bipolar EEG (tens of microvolts).
    background_rms = eeg.eeg[:, eeg.labels == 0].std()
    assert 5.0 < background_rms < 80.0


def test_eeg_deterministic_and_seed_dependent(eeg: EEGRecording) -> None:
    again = simulate_eeg(300.0, seed=3, seizures=2)
    np.testing.assert_array_equal(again.eeg, eeg.eeg)
    np.testing.assert_array_equal(again.labels, eeg.labels)
    assert again.events == eeg.events
    other = simulate_eeg(300.0, seed=4, seizures=2)
    assert not np.allclose(other.eeg, eeg.eeg)
    assert other.events != eeg.events


def test_eeg_labels_match_events(eeg: EEGRecording) -> None:
    assert len(eeg.events) == 2
    np.testing.assert_array_equal(eeg.labels, labels_from_events(eeg.events, eeg.n_samples, eeg.fs))
    for on, off in eeg.events:
        assert 10.0 - 1e-9 <= off - on <= 120.0 + 1e-9
        assert 0 <= on and off <= eeg.duration_s
    assert eeg.events == sorted(eeg.events)
    assert eeg.events[0][1] <= eeg.events[1][0]


def test_eeg_channels_correlated_like_a_montage(eeg: EEGRecording) -> None:
    bg = eeg.eeg[:, eeg.labels == 0]
    corr = np.corrcoef(bg)
    # FP1-F7 and F7-T7 share F7 with opposite signs: a bipolar chain is anti-correlated.
    assert corr[0, 1] < -0.05
    # Channels far apart (left frontal vs right occipital) are nearly independent.
    assert abs(corr[0, 15]) < 0.3


def test_eeg_rhythmic_power_rises_in_seizures(eeg: EEGRecording) -> None:
    window, hop = 1024, 256
    power = _window_band_power(eeg.eeg, eeg.fs, window, hop, 3.0, 12.0)
    positive = window_labels(eeg.labels, window, hop).astype(bool)
    assert positive.any() and (~positive).any()
    assert np.median(power[positive]) > 2.0 * np.median(power[~positive])


def test_eeg_discharges_slow_down() -> None:
    rec = simulate_eeg(200.0, seed=0, seizures=1)
    (on, off), fs = rec.events[0], rec.fs
    x = rec.eeg[:, int(on * fs) : int(off * fs)]
    ch = int(np.argmax(x.std(axis=1)))
    third = x.shape[1] // 3

    def peak(seg: np.ndarray) -> float:
        f, p = signal.welch(seg, fs=fs, nperseg=512)
        band = (f >= 2.0) & (f <= 14.0)
        return float(f[band][np.argmax(p[band])])

    early, late = peak(x[ch, :third]), peak(x[ch, -third:])
    assert early > late
    assert 2.5 <= late <= 6.0


def test_eeg_seizure_count() -> None:
    assert simulate_eeg(60.0, seed=0, seizures=0).events == []
    assert simulate_eeg(60.0, seed=0, seizures=0).labels.sum() == 0
    rec = simulate_eeg(100.0, seed=5, seizures=3, n_channels=4)
    assert len(rec.events) == 3 and rec.eeg.shape == (4, 25600)
    random = simulate_eeg(1200.0, seed=2, fs=128.0, n_channels=2)
    np.testing.assert_array_equal(
        random.labels, labels_from_events(random.events, random.n_samples, random.fs)
    )
    assert simulate_eeg(10.0, seed=0, n_channels=32).eeg.shape == (32, 2560)
    short = simulate_eeg(0.5, seed=0)  # too short for any seizure: none, and no error
    assert short.eeg.shape == (18, 128) and short.events == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"duration_s": 0.0},
        {"duration_s": -5.0},
        {"duration_s": 10.0, "fs": 0.0},
        {"duration_s": 10.0, "fs": 32.0},
        {"duration_s": 10.0, "n_channels": 0},
        {"duration_s": 10.0, "n_channels": 33},
        {"duration_s": 10.0, "seed": -1},
        {"duration_s": 10.0, "seizures": -1},
        {"duration_s": 40.0, "seizures": 2},  # 2 x 10 s + 3 x 10 s gaps > 40 s
    ],
)
def test_eeg_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        simulate_eeg(**kwargs)


# ----------------------------------------------------------------------------- accelerometer


def test_acc_shapes_dtypes(acc: AccRecording) -> None:
    n = 900 * 32
    assert acc.acc.shape == (4, n) and acc.acc.dtype == np.float32
    assert acc.labels.shape == (n,) and acc.labels.dtype == np.int8
    assert acc.fs == 32.0 and acc.seed == 1
    np.testing.assert_allclose(acc.acc[3], np.linalg.norm(acc.acc[:3], axis=0), rtol=1e-5)
    # At rest the sensor reads gravity: the magnitude sits near 1 g most of the time.
    assert abs(np.median(acc.acc[3]) - 1.0) < 0.1


def test_acc_deterministic_and_seed_dependent(acc: AccRecording) -> None:
    again = simulate_acc(900.0, seed=1, seizures=2)
    np.testing.assert_array_equal(again.acc, acc.acc)
    assert again.events == acc.events
    other = simulate_acc(900.0, seed=2, seizures=2)
    assert not np.allclose(other.acc, acc.acc)


def test_acc_labels_match_events(acc: AccRecording) -> None:
    assert len(acc.events) == 2
    np.testing.assert_array_equal(acc.labels, labels_from_events(acc.events, acc.n_samples, acc.fs))
    for on, off in acc.events:
        assert 40.0 - 0.1 <= off - on <= 110.0 + 0.1  # tonic 10-20 s + clonic 30-90 s


def test_acc_clonic_power_higher_inside_events(acc: AccRecording) -> None:
    window, hop = 960, 160
    power = _window_band_power(acc.acc[3:4], acc.fs, window, hop, 1.0, 5.0)
    positive = window_labels(acc.labels, window, hop).astype(bool)
    assert np.median(power[positive]) > 10.0 * np.median(power[~positive])
    assert np.median(power[positive]) > np.percentile(power[~positive], 95)


def test_acc_tonic_tremor_band() -> None:
    rec = simulate_acc(600.0, seed=0, seizures=1)
    fs = rec.fs
    on = int(rec.events[0][0] * fs)
    tonic = rec.acc[3, on + int(3 * fs) : on + int(10 * fs)]
    f, p = signal.welch(tonic - tonic.mean(), fs=fs, nperseg=128)
    peak = f[(f >= 1.0)][np.argmax(p[f >= 1.0])]
    assert 5.5 <= peak <= 10.5  # the tonic phase is a 6-10 Hz tremor


def test_acc_seizure_count_and_random_rate() -> None:
    assert simulate_acc(120.0, seed=0, seizures=0).events == []
    assert len(simulate_acc(200.0, seed=0, seizures=3).events) == 3
    assert simulate_acc(1.0, seed=0).acc.shape == (4, 32)
    counts = [len(simulate_acc(1800.0, seed=s).events) for s in range(12)]
    assert 1.0 <= np.mean(counts) <= 5.5  # ~1 per 10 minutes
    with pytest.raises(ValueError):
        simulate_acc(100.0, seizures=2)
    with pytest.raises(ValueError):
        simulate_acc(100.0, fs=16.0)
    with pytest.raises(ValueError):
        simulate_acc(float("nan"))


# ----------------------------------------------------------------------------- events


def test_labels_from_events_hand_case() -> None:
    labels = labels_from_events([(0.5, 1.0), (1.75, 5.0)], n=8, fs=4.0)
    np.testing.assert_array_equal(labels, [0, 0, 1, 1, 0, 0, 0, 1])
    assert labels.dtype == np.int8
    assert labels_from_events([(10.0, 11.0)], n=8, fs=4.0).sum() == 0
    with pytest.raises(ValueError):
        labels_from_events([(2.0, 1.0)], n=8, fs=4.0)
    with pytest.raises(ValueError):
        labels_from_events([(0.0, 1.0)], n=8, fs=0.0)


def test_window_labels_hand_case() -> None:
    labels = np.array([0, 0, 1, 1, 1, 1, 0, 0, 0, 0], dtype=np.int8)
    # Windows start at 0, 2, 4, 6 and hold 2, 4, 2, 0 positive samples out of 4.
    np.testing.assert_array_equal(window_labels(labels, 4, 2), [1, 1, 1, 0])
    np.testing.assert_array_equal(window_labels(labels, 4, 2, min_overlap=0.75), [0, 1, 0, 0])
    np.testing.assert_array_equal(window_labels(labels, 4, 2, min_overlap=1.0), [0, 1, 0, 0])
    np.testing.assert_array_equal(window_labels(labels, 3, 3, min_overlap=0.3), [1, 1, 0])
    assert window_labels(labels, 20, 2).shape == (0,)
    for bad in ({"min_overlap": 0.0}, {"min_overlap": 1.5}):
        with pytest.raises(ValueError):
            window_labels(labels, 4, 2, **bad)
    with pytest.raises(ValueError):
        window_labels(labels, 0, 2)
    with pytest.raises(ValueError):
        window_labels(labels, 4, 2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        window_labels(labels * 2, 4, 2)


def test_windows_to_events_hand_case() -> None:
    events = windows_to_events(np.array([0, 1, 1, 0, 1]), window=4, hop=2, fs=2.0)
    assert events == [(1.0, 4.0), (4.0, 6.0)]
    assert windows_to_events(np.zeros(5, dtype=bool), 4, 2, 2.0) == []


def test_score_events_hand_case() -> None:
    # fs 1 Hz, windows of 10 s every 5 s over 100 s: 19 windows, window k covers [5k, 5k + 10).
    pred = np.zeros(19, dtype=np.int8)
    pred[[3, 4]] = 1  # one event [15, 30): overlaps the first seizure
    pred[10] = 1  # [50, 60): a false alarm
    pred[12] = 1  # [60, 70): touches the second seizure's onset only -> a false alarm too
    true = [(20.0, 40.0), (70.0, 80.0)]  # the second seizure is missed
    s = score_events(pred, true, window=10, hop=5, fs=1.0, duration_s=100.0)
    assert s["n_true"] == 2 and s["n_pred"] == 3
    assert s["n_detected"] == 1 and s["n_false_alarms"] == 2
    assert s["sensitivity"] == pytest.approx(0.5)
    assert s["precision"] == pytest.approx(1 / 3)
    assert s["f1"] == pytest.approx(0.4)
    assert s["false_alarms_per_hour"] == pytest.approx(72.0)


def test_score_events_edge_cases() -> None:
    pred = np.zeros(19, dtype=np.int8)
    s = score_events(pred, [(20.0, 40.0)], 10, 5, 1.0, 100.0)
    assert s["sensitivity"] == 0.0 and math.isnan(s["precision"]) and s["f1"] == 0.0
    assert s["false_alarms_per_hour"] == 0.0
    s = score_events(pred, [], 10, 5, 1.0, 100.0)
    assert math.isnan(s["sensitivity"]) and math.isnan(s["f1"])
    pred[0] = 1
    s = score_events(pred, [], 10, 5, 1.0, 3600.0)
    assert s["precision"] == 0.0 and s["f1"] == 0.0 and s["false_alarms_per_hour"] == 1.0
    # Perfect detection: one run over both seizures counts once as a prediction, detects both.
    pred = np.zeros(19, dtype=np.int8)
    pred[3:15] = 1
    s = score_events(pred, [(20.0, 40.0), (60.0, 70.0)], 10, 5, 1.0, 100.0)
    assert s["sensitivity"] == 1.0 and s["precision"] == 1.0 and s["f1"] == 1.0
    with pytest.raises(ValueError):
        score_events(np.zeros(30), [], 10, 5, 1.0, 100.0)  # windows past the end
    with pytest.raises(ValueError):
        score_events(np.zeros(19), [], 10, 5, 1.0, 0.0)


def test_place_blocks_fits_and_raises() -> None:
    rng = np.random.default_rng(0)
    lengths = [30.0, 10.0, 50.0]
    onsets = place_blocks(rng, 200.0, lengths, 10.0)
    spans = sorted(zip(onsets, lengths, strict=True))
    assert spans[0][0] >= 10.0 - 1e-9
    for (a, la), (b, _) in zip(spans, spans[1:], strict=False):
        assert b - (a + la) >= 10.0 - 1e-9
    assert spans[-1][0] + spans[-1][1] <= 190.0 + 1e-9
    with pytest.raises(ValueError):
        place_blocks(rng, 100.0, lengths, 10.0)
    assert place_blocks(rng, 1.0, [], 10.0) == []


def test_simulated_windows_feed_the_scorer(eeg: EEGRecording) -> None:
    # The oracle detector (window labels as predictions) detects every seizure with no false alarm.
    window, hop = 1024, 256
    oracle = window_labels(eeg.labels, window, hop)
    s = score_events(oracle, eeg.events, window, hop, eeg.fs, eeg.duration_s)
    assert s["sensitivity"] == 1.0 and s["false_alarms_per_hour"] == 0.0 and s["f1"] == 1.0
