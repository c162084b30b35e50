"""Simulated wrist photoplethysmography (PPG) with ground-truth heart rate.

Why a simulator: no real PPG with beat-accurate, time-varying heart rate ships offline, and the
StreamiNNC heart-rate experiment (32 Hz, window 256, hop 64) needs unlimited labelled recordings
whose difficulty we control. The model here is physiological rather than exact: a smooth heart-rate
trajectory is integrated into a cardiac phase, each beat draws a pulse with a systolic peak and a
dicrotic notch, respiration modulates baseline and amplitude, and optional motion episodes leak
wrist accelerometer energy into the optical signal - the artefact that makes real wrist HR hard.

Every random draw comes from one ``np.random.default_rng(seed)``, so a recording is a pure function
of ``(duration_s, fs, seed, motion)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

__all__ = ["PPGRecording", "simulate_ppg", "sliding_windows", "window_hr"]

HR_MIN_BPM = 50.0
HR_MAX_BPM = 180.0
_GRAVITY_G = 1.0

# Pulse shape as Gaussians in cardiac phase (radians, beat starts at the foot of the upstroke):
# a sharp systolic peak, a broader diastolic (reflected) wave, and a small shoulder between them
# that deepens the dicrotic notch. (centre, width, relative amplitude)
_PULSE_GAUSSIANS: tuple[tuple[float, float, float], ...] = (
    (1.15, 0.38, 1.00),  # systolic peak
    (2.05, 0.30, 0.22),  # late systolic shoulder
    (3.10, 0.60, 0.48),  # diastolic wave after the notch
)


@dataclass(frozen=True)
class PPGRecording:
    """One simulated wrist recording, all channels sampled at ``fs``.

    Attributes:
        ppg: ``(1, n)`` float32 optical signal, arbitrary units (pulse amplitude about 1).
        acc: ``(3, n)`` float32 wrist accelerometer in g (gravity included).
        hr_bpm: ``(n,)`` float32 instantaneous ground-truth heart rate.
        fs: sampling rate in Hz.
        seed: the seed that reproduces this recording.
        motion_mask: ``(n,)`` bool, True where a motion episode is active (for error breakdowns).
    """

    ppg: np.ndarray
    acc: np.ndarray
    hr_bpm: np.ndarray
    fs: float
    seed: int
    motion_mask: np.ndarray

    @property
    def n_samples(self) -> int:
        """Number of samples per channel."""
        return int(self.hr_bpm.shape[0])

    @property
    def duration_s(self) -> float:
        """Length of the recording in seconds."""
        return self.n_samples / self.fs


def simulate_ppg(
    duration_s: float, fs: float = 32.0, seed: int = 0, *, motion: bool = True
) -> PPGRecording:
    """Simulate a wrist PPG recording with accelerometer and ground-truth heart rate.

    Args:
        duration_s: length in seconds (> 0).
        fs: sampling rate in Hz (> 0); 32 Hz matches the StreamiNNC PPG experiment.
        seed: seed of the single random generator, so recordings are reproducible.
        motion: add arm-swing / jerk episodes that leak into the PPG. Without it the
            accelerometer only carries gravity and sensor noise.

    Raises:
        ValueError: non-positive or non-finite ``duration_s`` / ``fs``, or a duration shorter
            than one sample.
    """
    n = _validate(duration_s, fs)
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64) / fs

    resp_phase = _respiration_phase(t, fs, rng)
    hr = _heart_rate(t, fs, rng, resp_phase)
    pulse = _pulse_train(hr, fs, rng)
    ppg = _add_respiration(pulse, resp_phase, rng)

    if motion:
        dynamic_acc, artefact, mask = _motion(t, fs, rng)
        ppg = ppg + artefact
    else:
        dynamic_acc, mask = np.zeros((3, n)), np.zeros(n, dtype=bool)
    acc = _gravity(t, fs, rng) + dynamic_acc + rng.normal(0.0, 0.005, size=(3, n))
    ppg = ppg + _sensor_noise(n, fs, rng)

    return PPGRecording(
        ppg=ppg[None, :].astype(np.float32),
        acc=acc.astype(np.float32),
        hr_bpm=hr.astype(np.float32),
        fs=float(fs),
        seed=int(seed),
        motion_mask=mask,
    )


def _validate(duration_s: float, fs: float) -> int:
    """Check the arguments and return the number of samples."""
    if not np.isfinite(duration_s) or duration_s <= 0:
        raise ValueError(f"duration_s must be a positive finite number of seconds, got {duration_s!r}")
    if not np.isfinite(fs) or fs <= 0:
        raise ValueError(f"fs must be a positive finite sampling rate in Hz, got {fs!r}")
    n = int(round(duration_s * fs))
    if n < 1:
        raise ValueError(
            f"duration_s={duration_s!r} at fs={fs!r} gives no samples; need duration_s >= 1/fs"
        )
    return n


def _smooth_noise(n: int, fs: float, cutoff_hz: float, rng: np.random.Generator) -> np.ndarray:
    """Stationary unit-variance Gaussian noise low-passed below ``cutoff_hz``.

    Why: physiological quantities (HR, breathing rate, cadence) drift on time scales of seconds to
    minutes; white noise filtered that slowly gives such drifts without a hand-made random walk.
    The scale comes from the filter's impulse-response energy, not from the sample, so a short
    recording shows a small piece of a slow drift instead of a drift squeezed into it.
    """
    burn_in = int(4 * fs / cutoff_hz)  # lets the filter forget its zero initial state
    sos = signal.butter(2, min(cutoff_hz, 0.45 * fs), fs=fs, output="sos")
    impulse = np.zeros(burn_in + 1)
    impulse[0] = 1.0
    gain = np.sqrt(np.sum(signal.sosfilt(sos, impulse) ** 2))
    smooth = signal.sosfilt(sos, rng.normal(size=n + burn_in))[burn_in:]
    return smooth / gain


def _respiration_phase(t: np.ndarray, fs: float, rng: np.random.Generator) -> np.ndarray:
    """Breathing phase in radians; the rate wanders inside 0.15-0.4 Hz."""
    rate = rng.uniform(0.18, 0.33) + 0.03 * _smooth_noise(t.size, fs, 0.02, rng)
    rate = np.clip(rate, 0.15, 0.4)
    return 2 * np.pi * np.cumsum(rate) / fs + rng.uniform(0, 2 * np.pi)


def _heart_rate(
    t: np.ndarray, fs: float, rng: np.random.Generator, resp_phase: np.ndarray
) -> np.ndarray:
    """Instantaneous heart rate in bpm: resting level + slow drift + exercise ramps + RSA.

    The resting level differs per recording so that a collection of recordings spans the whole
    50-180 bpm range; exercise ramps add the fast, large changes a tracker must follow.
    """
    n = t.size
    rest = rng.uniform(55.0, 110.0)
    drift = rng.uniform(3.0, 10.0) * _smooth_noise(n, fs, 1 / 120, rng)
    wobble = rng.uniform(1.0, 4.0) * _smooth_noise(n, fs, 1 / 15, rng)
    slow_sines = sum(
        rng.uniform(1.0, 5.0) * np.sin(2 * np.pi * t / rng.uniform(40.0, 400.0) + rng.uniform(0, 2 * np.pi))
        for _ in range(3)
    )
    rsa = rng.uniform(0.5, 3.0) * np.sin(resp_phase)  # respiratory sinus arrhythmia
    hr = rest + drift + wobble + slow_sines + _exercise_ramps(t, rest, rng) + rsa
    return _soft_clip(hr, HR_MIN_BPM, HR_MAX_BPM)


def _exercise_ramps(t: np.ndarray, rest_bpm: float, rng: np.random.Generator) -> np.ndarray:
    """Occasional bouts: HR rises over tens of seconds to a target, holds, then recovers slowly.

    Bouts follow one another without overlapping and aim at a target rate (not a fixed increment),
    so stacked bouts cannot pin the heart rate at the ceiling for minutes.
    """
    duration = t[-1] + (t[1] - t[0] if t.size > 1 else 0.0)
    out = np.zeros_like(t)
    start = rng.exponential(240.0) - 60.0  # a bout may already be under way at t = 0
    while start < duration:
        rise, hold, fall = rng.uniform(20, 90), rng.uniform(10, 120), rng.uniform(40, 150)
        gain = max(rng.uniform(115.0, 170.0) - rest_bpm, rng.uniform(15.0, 30.0))
        up = np.clip((t - start) / rise, 0, 1)
        down = np.clip((t - start - rise - hold) / fall, 0, 1)
        # smoothstep makes onset and recovery C1-continuous, like a real cardiac response
        out += gain * (_smoothstep(up) - _smoothstep(down))
        start += rise + hold + fall + rng.exponential(240.0)
    return out


def _smoothstep(u: np.ndarray) -> np.ndarray:
    """Cubic 0 -> 1 ramp with zero slope at both ends (for ``u`` clipped to [0, 1])."""
    return u * u * (3 - 2 * u)


def _soft_clip(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Squash into [lo, hi] smoothly (tanh near the edges) so HR never kinks at a hard limit."""
    margin = 0.1 * (hi - lo)
    inner_lo, inner_hi = lo + margin, hi - margin
    y = x.copy()
    below, above = x < inner_lo, x > inner_hi
    y[below] = inner_lo + margin * np.tanh((x[below] - inner_lo) / margin)
    y[above] = inner_hi + margin * np.tanh((x[above] - inner_hi) / margin)
    return y


def _pulse_train(hr_bpm: np.ndarray, fs: float, rng: np.random.Generator) -> np.ndarray:
    """Integrate HR to a cardiac phase and draw one pulse per beat.

    Integrating frequency (rather than placing beats at fixed intervals) keeps the waveform
    continuous while the rate changes. Each beat gets its own amplitude and diastolic weight,
    interpolated across the beat, which gives realistic beat-to-beat variation without jumps.
    """
    phase = 2 * np.pi * np.cumsum(hr_bpm / 60.0) / fs + rng.uniform(0, 2 * np.pi)
    beat_pos = phase / (2 * np.pi)  # continuous beat index
    n_beats = int(np.floor(beat_pos[-1])) + 2
    beats = np.arange(n_beats, dtype=np.float64)
    amp = np.interp(beat_pos, beats, 1.0 + 0.06 * rng.normal(size=n_beats))
    dia = np.interp(beat_pos, beats, 1.0 + 0.12 * rng.normal(size=n_beats))
    theta = np.mod(phase, 2 * np.pi)
    wave = np.zeros_like(phase)
    for k, (centre, width, weight) in enumerate(_PULSE_GAUSSIANS):
        d = np.mod(theta - centre + np.pi, 2 * np.pi) - np.pi  # wrapped phase distance
        w = weight * (dia if k == 2 else 1.0)
        wave += w * np.exp(-0.5 * (d / width) ** 2)
    return amp * (wave - 0.35)  # centre the pulse near zero


def _add_respiration(
    pulse: np.ndarray, resp_phase: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Breathing modulates pulse amplitude and shifts the baseline; perfusion sets overall gain."""
    perfusion = rng.uniform(0.7, 1.3)
    am = 1.0 + rng.uniform(0.05, 0.2) * np.sin(resp_phase + rng.uniform(0, np.pi))
    wander = rng.uniform(0.1, 0.4) * np.sin(resp_phase)
    return perfusion * am * pulse + wander


def _sensor_noise(n: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    """White photodetector noise plus a slow drift (temperature, contact pressure)."""
    white = rng.uniform(0.01, 0.06) * rng.normal(size=n)
    drift = rng.uniform(0.05, 0.3) * _smooth_noise(n, fs, 0.01, rng)
    return white + drift


def _gravity(t: np.ndarray, fs: float, rng: np.random.Generator) -> np.ndarray:
    """Gravity seen by the wrist: a unit vector whose direction drifts as the arm rests/turns."""
    direction = rng.normal(size=(3, 1)) + 0.5 * np.stack(
        [_smooth_noise(t.size, fs, 0.01, rng) for _ in range(3)]
    )
    return _GRAVITY_G * direction / np.linalg.norm(direction, axis=0, keepdims=True)


def _episode_envelopes(t: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Smooth on/off envelopes of motion episodes (8-50 s each, about a quarter of the time)."""
    duration = t[-1] + (t[1] - t[0] if t.size > 1 else 0.0)
    envelopes = []
    for _ in range(rng.poisson(duration / 120.0 + 0.3)):
        start, length = rng.uniform(-10.0, duration), rng.uniform(8.0, 50.0)
        ramp = min(2.0, length / 4)
        up = np.clip((t - start) / ramp, 0, 1)
        down = np.clip((t - start - length + ramp) / ramp, 0, 1)
        envelopes.append(_smoothstep(up) - _smoothstep(down))
    return envelopes


def _motion(
    t: np.ndarray, fs: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Motion episodes: dynamic wrist acceleration, optical artefact, and the activity mask.

    Each episode is its own activity (cadence, swing geometry) with its own optical coupling
    gain, because how badly motion corrupts PPG depends on strap tightness and movement type.
    Returns ``(acc (3, n) in g, ppg artefact (n,), mask (n,))``.
    """
    n = t.size
    acc, gain, active = np.zeros((3, n)), np.zeros(n), np.zeros(n)
    for env in _episode_envelopes(t, rng):
        acc += env * _arm_swing(n, fs, rng) + env * _jerks(n, fs, rng)
        gain += env * rng.uniform(0.2, 1.2)
        active = np.maximum(active, env)
    mask = active > 0.05
    coupled = _optical_coupling(acc, fs, rng)
    scale = coupled[mask].std() if mask.any() else 1.0
    # unit-std coupling times the episode gain: the artefact is 0.2-1.2 units against a pulse
    # of about 0.4, i.e. from half the pulse to three times it
    artefact = gain * coupled / max(scale, 1e-9)
    return acc, artefact, mask


def _arm_swing(n: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    """Periodic arm swing at a 1.2-3 Hz cadence with a harmonic and a wandering amplitude."""
    cadence = np.clip(rng.uniform(1.2, 3.0) + 0.1 * _smooth_noise(n, fs, 0.1, rng), 1.2, 3.0)
    phase = 2 * np.pi * np.cumsum(cadence) / fs + rng.uniform(0, 2 * np.pi, size=(3, 1))
    axis_amp = rng.uniform(0.1, 0.8, size=(3, 1))
    strength = np.clip(1.0 + 0.3 * _smooth_noise(n, fs, 0.3, rng), 0.2, None)
    harmonic = rng.uniform(0.1, 0.5)
    return strength * axis_amp * (np.sin(phase) + harmonic * np.sin(2 * phase))


def _jerks(n: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    """Sparse impulses shaped by a band-pass: sudden hand movements during activity."""
    impulses = rng.normal(size=(3, n)) * (rng.random(size=(1, n)) < 0.3 / fs)
    high = min(8.0, 0.45 * fs)
    sos = signal.butter(2, [min(1.0, 0.5 * high), high], btype="bandpass", fs=fs, output="sos")
    return 3.0 * signal.sosfilt(sos, impulses, axis=-1)


def _optical_coupling(acc: np.ndarray, fs: float, rng: np.random.Generator) -> np.ndarray:
    """Optical response to motion: tissue and sensor contact follow the acceleration.

    A random projection of the 3 axes, low-passed because tissue is mechanically sluggish. With
    a large episode gain the cadence dominates the spectrum, which fools any HR estimator that
    trusts the strongest peak.
    """
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    sos = signal.butter(2, min(5.0, 0.45 * fs), fs=fs, output="sos")
    return signal.sosfilt(sos, direction @ acc)


def sliding_windows(x: np.ndarray, window: int, hop: int) -> np.ndarray:
    """Cut ``x`` of shape ``(C, n)`` (or ``(n,)``, read as one channel) into complete windows.

    Windows start at 0 and advance by ``hop``; a tail shorter than ``window`` is dropped, exactly as
    a window stream would not emit an output for it. Returns a new ``(n_windows, C, window)`` array
    (a copy, so writing to it never aliases the recording).
    """
    _check_window(window, hop)
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"x must have shape (C, n) or (n,), got {x.shape}")
    channels, n = x.shape
    if n < window:
        return np.empty((0, channels, window), dtype=x.dtype)
    view = np.lib.stride_tricks.sliding_window_view(x, window, axis=-1)[:, ::hop]
    return np.ascontiguousarray(view.transpose(1, 0, 2))


def window_hr(hr_bpm: np.ndarray, window: int, hop: int) -> np.ndarray:
    """Mean ground-truth heart rate of each complete window (the regression target per window).

    Same window layout as :func:`sliding_windows`, so labels line up with inputs one to one.
    """
    hr_bpm = np.asarray(hr_bpm)
    if hr_bpm.ndim != 1:
        raise ValueError(f"hr_bpm must be 1-D, got shape {hr_bpm.shape}")
    out_dtype = hr_bpm.dtype if np.issubdtype(hr_bpm.dtype, np.floating) else np.float64
    windows = sliding_windows(hr_bpm, window, hop)[:, 0, :]
    return windows.mean(axis=-1, dtype=np.float64).astype(out_dtype)


def _check_window(window: int, hop: int) -> None:
    if int(window) != window or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    if int(hop) != hop or hop < 1:
        raise ValueError(f"hop must be a positive integer, got {hop!r}")
