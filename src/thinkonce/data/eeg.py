"""Simulated scalp EEG with labelled seizures, for the StreamiNNC EEG experiment.

Why simulate: no real seizure recordings ship with any installable package (DESIGN.md section 6),
and the streaming experiments need long, labelled, reproducible multichannel signals at the
paper's setting (18 bipolar channels at 256 Hz, windows of 1024 every 256 samples).

The model works at the level of 19 scalp electrodes of the 10-20 system and derives bipolar
channels (the "double banana" montage of CHB-MIT for 18 channels) as electrode differences. That
one step gives the spatial structure of real bipolar EEG for free: neighbouring channels that share
an electrode are correlated, a diffuse field largely cancels, and a focal discharge shows up
strongest on the channels around its focus, with phase reversals.

Background (per electrode): a mix of a few spatially smooth 1/f^a sources plus local 1/f^a noise,
alpha (8-12 Hz) bursts over posterior electrodes, eye blinks on frontal electrodes and bursts of
broadband muscle activity (EMG, 20-100 Hz) over temporal electrodes.

Seizures: a focal onset spreading to further electrodes over seconds (some stay focal); rhythmic
discharges whose frequency slows from ~8-12 Hz to ~3-5 Hz while their amplitude rises; in some
seizures the discharges turn into ~3 Hz spike-and-wave complexes; a post-ictal suppression of the
background follows (not labelled, as in clinical annotations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft
from scipy import signal as ssignal

from thinkonce.data.events import Event, check_recording_args, labels_from_events, place_blocks

__all__ = ["EEGRecording", "simulate_eeg", "EEG_ELECTRODES", "EEG_MONTAGE"]

# Approximate 2-D scalp projection of the 10-20 electrodes (x: left -> right, y: back -> front),
# radius ~1. Only distances matter: they set spatial correlation and seizure spread.
_ELECTRODE_POS: dict[str, tuple[float, float]] = {
    "FP1": (-0.31, 0.95), "FP2": (0.31, 0.95),
    "F7": (-0.81, 0.59), "F3": (-0.40, 0.53), "FZ": (0.0, 0.50), "F4": (0.40, 0.53),
    "F8": (0.81, 0.59),
    "T7": (-1.0, 0.0), "C3": (-0.50, 0.0), "CZ": (0.0, 0.0), "C4": (0.50, 0.0), "T8": (1.0, 0.0),
    "P7": (-0.81, -0.59), "P3": (-0.40, -0.53), "PZ": (0.0, -0.50), "P4": (0.40, -0.53),
    "P8": (0.81, -0.59),
    "O1": (-0.31, -0.95), "O2": (0.31, -0.95),
}
EEG_ELECTRODES: tuple[str, ...] = tuple(_ELECTRODE_POS)

# The 18-channel longitudinal bipolar montage of CHB-MIT (the dataset behind the paper's EEG
# experiment), then 14 transverse pairs for callers who want more channels (up to 32).
EEG_MONTAGE: tuple[tuple[str, str], ...] = (
    ("FP1", "F7"), ("F7", "T7"), ("T7", "P7"), ("P7", "O1"),
    ("FP1", "F3"), ("F3", "C3"), ("C3", "P3"), ("P3", "O1"),
    ("FP2", "F4"), ("F4", "C4"), ("C4", "P4"), ("P4", "O2"),
    ("FP2", "F8"), ("F8", "T8"), ("T8", "P8"), ("P8", "O2"),
    ("FZ", "CZ"), ("CZ", "PZ"),
    ("F7", "F3"), ("F3", "FZ"), ("FZ", "F4"), ("F4", "F8"),
    ("T7", "C3"), ("C3", "CZ"), ("CZ", "C4"), ("C4", "T8"),
    ("P7", "P3"), ("P3", "PZ"), ("PZ", "P4"), ("P4", "P8"),
    ("FP1", "FP2"), ("O1", "O2"),
)

_SEIZURE_MIN_S = 10.0
_SEIZURE_MAX_S = 120.0
_MIN_GAP_S = 10.0
_SEIZURES_PER_S = 1.0 / 600.0  # ~1 seizure per 10 minutes when the count is left random


@dataclass(frozen=True)
class EEGRecording:
    """A simulated multichannel EEG recording.

    Attributes:
        eeg: float32 array (n_channels, n) in microvolts, bipolar derivations.
        labels: int8 array (n,), 1 for samples inside a seizure.
        events: seizures as ``(onset_s, offset_s)`` half-open intervals, sorted by onset.
        fs: sampling rate in Hz.
        seed: the seed that reproduces this recording.
        channels: channel names such as ``"FP1-F7"``.
    """

    eeg: np.ndarray
    labels: np.ndarray
    events: list[Event]
    fs: float
    seed: int
    channels: tuple[str, ...] = ()

    @property
    def n_samples(self) -> int:
        return int(self.eeg.shape[1])

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs


# ----------------------------------------------------------------------------- helpers


def _spectral_noise(
    rng: np.random.Generator, shape: tuple[int, int], fs: float, gain: np.ndarray
) -> np.ndarray:
    """Gaussian noise rows shaped in frequency by ``gain`` (len n//2+1), each scaled to unit std."""
    white = rng.standard_normal(shape, dtype=np.float32)
    spec = sfft.rfft(white, axis=-1)
    spec *= gain.astype(np.float32)
    out = sfft.irfft(spec, n=shape[-1], axis=-1).astype(np.float32, copy=False)
    std = out.std(axis=-1, keepdims=True)
    return out / np.maximum(std, 1e-12)


def _pink_gain(n: int, fs: float, exponent: float) -> np.ndarray:
    """Amplitude response of 1/f^exponent power, high-passed at 0.5 Hz like a clinical EEG."""
    f = sfft.rfftfreq(n, 1.0 / fs)
    knee = 1.0  # flattens the very low end so the 0.5 Hz high-pass decides the drift
    gain = (f**2 + knee**2) ** (-exponent / 4.0)
    gain *= 1.0 / (1.0 + (0.5 / np.maximum(f, 1e-6)) ** 4)  # 2nd-order-like high-pass
    gain *= 1.0 / (1.0 + (f / 70.0) ** 8)  # amplifier low-pass
    gain[0] = 0.0
    return gain


def _smooth_gate(
    rng: np.random.Generator, n: int, fs: float, mean_on_s: float, mean_off_s: float, ramp_s: float
) -> np.ndarray:
    """On/off envelope with exponential dwell times and raised-cosine ramps (values in [0, 1])."""
    gate = np.zeros(n, dtype=np.float32)
    t = rng.exponential(mean_off_s)
    while t * fs < n:
        dur = rng.exponential(mean_on_s)
        a, b = int(t * fs), min(n, int((t + dur) * fs))
        gate[a:b] = 1.0
        t += dur + rng.exponential(mean_off_s)
    k = max(1, int(ramp_s * fs))
    win = np.hanning(k + 2)[1:-1].astype(np.float32)
    win /= win.sum()
    return ssignal.convolve(gate, win, mode="same").astype(np.float32)  # len(gate) samples


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _seizure_durations(
    rng: np.random.Generator, duration_s: float, seizures: int | None
) -> np.ndarray:
    """Seizure lengths that fit the recording: a forced count must fit, a random one is capped."""
    if seizures is None:
        count = int(rng.poisson(duration_s * _SEIZURES_PER_S))
        fit = int((duration_s - _MIN_GAP_S) // (_SEIZURE_MIN_S + _MIN_GAP_S))
        count = max(0, min(count, fit))
    else:
        count = int(seizures)
    if count == 0:
        return np.zeros(0)
    max_len = (duration_s - (count + 1) * _MIN_GAP_S) / count
    if max_len < _SEIZURE_MIN_S:
        raise ValueError(
            f"{count} seizures of at least {_SEIZURE_MIN_S:.0f} s with {_MIN_GAP_S:.0f} s gaps do "
            f"not fit in {duration_s} s"
        )
    return rng.uniform(_SEIZURE_MIN_S, min(_SEIZURE_MAX_S, max_len), size=count)


# ----------------------------------------------------------------------------- seizure model


def _spike_wave_raw(theta: np.ndarray) -> np.ndarray:
    # A sharp spike (~30 ms wide at 3 Hz) followed by a slow wave of opposite sign.
    return 1.6 * np.exp(-0.5 * ((theta - 0.6) / 0.3) ** 2) - 0.75 * np.exp(
        -0.5 * ((theta - 3.4) / 1.0) ** 2
    )


_SW_MEAN = float(_spike_wave_raw(np.linspace(0.0, 2 * np.pi, 4096, endpoint=False)).mean())


def _spike_wave(theta: np.ndarray) -> np.ndarray:
    """One spike-and-wave complex per cycle of ``theta`` in [0, 2 pi), zero mean per cycle."""
    return _spike_wave_raw(theta) - _SW_MEAN


def _discharge(
    rng: np.random.Generator, n_ev: int, fs: float, dist: np.ndarray, bg_rms: float
) -> tuple[np.ndarray, float, float]:
    """Ictal activity (n_electrodes, n_ev) for one seizure.

    Returns the activity plus the onset and final discharge frequencies (for inspection).
    """
    n_el = dist.size
    dur = n_ev / fs
    t = np.arange(n_ev, dtype=np.float64) / fs
    u = t / dur

    spike_wave = rng.random() < 0.35
    f0 = rng.uniform(8.0, 12.0)
    f1 = rng.uniform(2.7, 3.5) if spike_wave else rng.uniform(3.0, 5.0)
    # Geometric slowing, a little faster early on, with a slow random wobble of a few percent.
    freq = f0 * (f1 / f0) ** (u**0.8)
    wobble_gain = np.exp(-0.5 * (sfft.rfftfreq(n_ev, 1.0 / fs) / 0.2) ** 2)
    wobble = _spectral_noise(rng, (1, n_ev), fs, wobble_gain)[0]
    freq = freq * (1.0 + 0.03 * wobble)
    phase = 2.0 * np.pi * np.cumsum(freq) / fs + rng.uniform(0, 2 * np.pi)

    # Spread: focal seizures recruit electrodes near the focus only; others spread over the head.
    focal = rng.random() < 0.3
    sigma = rng.uniform(0.35, 0.5) if focal else rng.uniform(1.2, 2.0)
    spatial = np.exp(-0.5 * (dist / sigma) ** 2) * rng.uniform(0.5, 1.3, size=n_el)
    spread_s = min(0.4 * dur, rng.uniform(3.0, 20.0))
    recruit_s = dist / max(dist.max(), 1e-6) * spread_s  # seconds until each electrode joins
    lag_s = 0.04 * dist + rng.uniform(0.0, 0.02, size=n_el)  # propagation delay of each wave

    a_start = rng.uniform(1.5, 3.0) * bg_rms
    a_end = rng.uniform(5.0, 9.0) * bg_rms
    amp = a_start + (a_end - a_start) * _smoothstep(u / 0.7)
    taper = np.minimum(1.0, (dur - t) / min(1.5, 0.1 * dur))  # discharges stop within ~1 s
    amp = amp * taper

    # Harmonic content makes the discharges sharp rather than sinusoidal.
    h2, h3 = rng.uniform(0.2, 0.5), rng.uniform(0.1, 0.3)
    p2, p3 = rng.uniform(0, 2 * np.pi, size=2)
    morph = _smoothstep((u - 0.2) / 0.25) if spike_wave else np.zeros_like(u)

    out = np.empty((n_el, n_ev), dtype=np.float32)
    for e in range(n_el):
        ph = phase - 2.0 * np.pi * freq * lag_s[e]
        rhythmic = np.sin(ph) + h2 * np.sin(2 * ph + p2) + h3 * np.sin(3 * ph + p3)
        rhythmic /= 1 + h2 + h3
        wave = rhythmic
        if spike_wave:
            sw = _spike_wave(np.mod(ph, 2 * np.pi))
            wave = (1 - morph) * rhythmic + morph * sw
        ramp = _smoothstep((t - recruit_s[e]) / rng.uniform(1.0, 3.0))
        out[e] = (amp * spatial[e] * ramp * wave).astype(np.float32)
    return out, f0, f1


# ----------------------------------------------------------------------------- simulator


def simulate_eeg(
    duration_s: float,
    fs: float = 256.0,
    n_channels: int = 18,
    seed: int = 0,
    *,
    seizures: int | None = None,
) -> EEGRecording:
    """Simulate a bipolar scalp EEG recording with labelled seizures.

    Args:
        duration_s: length of the recording in seconds.
        fs: sampling rate in Hz (the paper uses 256; at least 64 so the 3-12 Hz ictal rhythms
            and the alpha band are represented).
        n_channels: number of bipolar channels, 1..32. The first 18 are the CHB-MIT longitudinal
            montage; more add transverse pairs.
        seed: makes the recording reproducible; different seeds give different recordings.
        seizures: ``None`` draws a Poisson count at ~1 per 10 minutes (capped to what fits);
            an integer forces that many seizures (10-120 s each, shortened if the recording is
            too short, ValueError if even 10 s seizures with 10 s gaps do not fit).

    Returns:
        EEGRecording with float32 microvolt signals, int8 labels and the seizure events.

    Raises:
        ValueError: non-positive duration or rate, fs below 64 Hz, a channel count outside
            1..32, a negative seed, or a forced seizure count that does not fit.
    """
    duration_s = float(duration_s)
    fs = float(fs)
    check_recording_args(duration_s, fs, seed, seizures)
    if fs < 64.0:
        raise ValueError(f"fs must be at least 64 Hz to carry EEG rhythms, got {fs}")
    if isinstance(n_channels, bool) or not isinstance(n_channels, (int, np.integer)):
        raise ValueError(f"n_channels must be an integer, got {n_channels!r}")
    if not 1 <= n_channels <= len(EEG_MONTAGE):
        raise ValueError(f"n_channels must be in 1..{len(EEG_MONTAGE)}, got {n_channels}")
    n = int(round(duration_s * fs))
    if n < 1:
        raise ValueError(f"duration_s={duration_s} at fs={fs} gives no samples")

    rng = np.random.default_rng(int(seed))
    names = list(_ELECTRODE_POS)
    pos = np.array([_ELECTRODE_POS[k] for k in names])
    n_el = len(names)

    # Seizure placement first, so the count and timing do not depend on the background draws.
    durations = _seizure_durations(rng, duration_s, seizures)
    onsets = place_blocks(rng, duration_s, durations, _MIN_GAP_S)
    events: list[Event] = []
    for on, d in sorted(zip(onsets, durations, strict=True)):
        a = int(round(on * fs))
        b = min(n, a + max(1, int(round(d * fs))))
        events.append((a / fs, b / fs))

    # --- Background: spatially smooth common 1/f sources + local 1/f noise per electrode.
    exponent = rng.uniform(1.4, 2.0)
    gain = _pink_gain(n, fs, exponent)
    n_src = 6
    src_pos = rng.uniform(-0.9, 0.9, size=(n_src, 2))
    d_src = np.linalg.norm(pos[:, None, :] - src_pos[None, :, :], axis=-1)
    mix = np.exp(-0.5 * (d_src / 0.6) ** 2) * rng.uniform(0.6, 1.0, size=(1, n_src))
    electrodes = (mix.astype(np.float32) @ _spectral_noise(rng, (n_src, n), fs, gain)).astype(
        np.float32
    )
    electrodes += 0.6 * _spectral_noise(rng, (n_el, n), fs, gain)

    # Alpha (posterior dominant rhythm) in waxing and waning bursts.
    alpha_f = rng.uniform(8.5, 11.5)
    f = sfft.rfftfreq(n, 1.0 / fs)
    alpha = _spectral_noise(rng, (1, n), fs, np.exp(-0.5 * ((f - alpha_f) / 0.6) ** 2))[0]
    alpha *= _smooth_gate(rng, n, fs, mean_on_s=6.0, mean_off_s=10.0, ramp_s=1.0)
    posterior = np.clip(-pos[:, 1], 0.0, None)  # 0 in front, ~1 at O1/O2
    alpha_w = (posterior**1.5 * rng.uniform(0.8, 1.2, size=n_el)).astype(np.float32)
    electrodes += rng.uniform(0.8, 1.5) * alpha_w[:, None] * alpha[None, :]

    # Scale so the background of the bipolar channels has a realistic RMS (tens of microvolts).
    pairs = [(names.index(a), names.index(b)) for a, b in EEG_MONTAGE[:n_channels]]
    ia = np.array([p[0] for p in pairs])
    ib = np.array([p[1] for p in pairs])
    probe = electrodes[ia, :: max(1, n // 20000)] - electrodes[ib, :: max(1, n // 20000)]
    target_rms = rng.uniform(15.0, 30.0)
    scale = target_rms / max(float(np.sqrt(np.mean(probe.astype(np.float64) ** 2))), 1e-9)
    electrodes *= np.float32(scale)
    # Ictal amplitudes are set against the electrode-level background, which is larger than the
    # bipolar one because neighbouring electrodes share most of their activity.
    bg_rms = float(np.sqrt(np.mean(electrodes[:, :: max(1, n // 20000)].astype(np.float64) ** 2)))

    # --- Post-ictal suppression of the background (after each seizure, unlabelled).
    if events:
        supp = np.ones(n, dtype=np.float32)
        t_all = np.arange(n, dtype=np.float32) / np.float32(fs)
        for _, off in events:
            depth = rng.uniform(0.4, 0.7)
            tau = rng.uniform(10.0, 30.0)
            after = t_all >= off
            supp[after] *= (1.0 - depth * np.exp(-(t_all[after] - off) / tau)).astype(np.float32)
        electrodes *= supp[None, :]

    # --- Artefacts. Eye blinks: ~0.3 s positive deflections, strongest at FP1/FP2.
    blink_rate = rng.uniform(0.1, 0.3)  # per second
    n_blinks = int(rng.poisson(blink_rate * duration_s))
    if n_blinks:
        train = np.zeros(n, dtype=np.float32)
        idx = rng.integers(0, n, size=n_blinks)
        np.add.at(train, idx, rng.uniform(60.0, 180.0, size=n_blinks).astype(np.float32))
        w = max(3, int(0.3 * fs))
        shape = np.hanning(w).astype(np.float32)
        blinks = ssignal.fftconvolve(train, shape, mode="same").astype(np.float32)
        frontal = np.exp(-0.5 * ((pos[:, 1] - 0.95) / 0.3) ** 2).astype(np.float32)
        electrodes += frontal[:, None] * blinks[None, :]

    # Muscle (EMG) bursts: broadband 20-100 Hz noise over one temporal region for 0.5-5 s.
    emg_rate = rng.uniform(1.0, 4.0) / 60.0
    n_emg = int(rng.poisson(emg_rate * duration_s))
    hi = min(100.0, 0.45 * fs)
    sos = ssignal.butter(4, [20.0, hi], btype="bandpass", fs=fs, output="sos")
    for _ in range(n_emg):
        length = int(rng.uniform(0.5, 5.0) * fs)
        start = int(rng.integers(0, max(1, n - 1)))
        length = min(length, n - start)
        if length < 4:
            continue
        burst = ssignal.sosfilt(sos, rng.standard_normal(length)).astype(np.float32)
        burst /= max(float(burst.std()), 1e-9)
        burst *= np.hanning(length).astype(np.float32) ** 0.5
        side = rng.choice([-1.0, 1.0])
        centre = np.array([side * 0.95, rng.uniform(-0.3, 0.6)])
        w_el = np.exp(-0.5 * (np.linalg.norm(pos - centre, axis=1) / 0.35) ** 2).astype(np.float32)
        amp = rng.uniform(15.0, 60.0)
        electrodes[:, start : start + length] += amp * w_el[:, None] * burst[None, :]

    # --- Seizures.
    for on, off in events:
        a, b = int(round(on * fs)), int(round(off * fs))
        focus = int(rng.integers(0, n_el))
        dist = np.linalg.norm(pos - pos[focus], axis=1)
        ictal, _, _ = _discharge(rng, b - a, fs, dist, bg_rms)
        electrodes[:, a:b] += ictal

    eeg = (electrodes[ia] - electrodes[ib]).astype(np.float32)
    labels = labels_from_events(events, n, fs)
    channels = tuple(f"{a}-{b}" for a, b in EEG_MONTAGE[:n_channels])
    return EEGRecording(
        eeg=eeg, labels=labels, events=events, fs=fs, seed=int(seed), channels=channels
    )
