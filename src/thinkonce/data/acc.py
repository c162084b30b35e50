"""Simulated wrist accelerometry with labelled tonic-clonic seizures (StreamiNNC ACC experiment).

Why simulate: there is no public, installable recording of convulsive seizures (DESIGN.md
section 6), and the streaming experiment needs long labelled recordings at the paper's setting
(4 channels at 32 Hz: x, y, z and the magnitude; windows of 960 every 160 samples).

The signal is the specific force a wrist sensor measures, in g: a gravity vector whose direction
follows the forearm's orientation, plus the linear acceleration of movements, plus sensor noise.

Background (daily life) is a sequence of activities: rest (still, with occasional posture shifts),
walking (arm swing at half the step rate and impacts at the 1.6-2.2 Hz step rate), fine motor work
such as typing (small 1-8 Hz movements and a faint 8-12 Hz physiological tremor), with random
gestures (short, large, smooth movements) sprinkled over rest and fine work.

A generalised tonic-clonic seizure is the labelled event: a tonic phase (10-20 s of low-amplitude
6-10 Hz tremor in a stiffened limb posture) then a clonic phase (30-90 s of large rhythmic jerks
whose rate slows from ~4 Hz to ~1 Hz). The post-ictal stillness that follows (up to 3 minutes,
nearly motionless) is not labelled, as in clinical annotations, but makes the recording realistic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft
from scipy.ndimage import uniform_filter1d

from thinkonce.data.events import Event, check_recording_args, labels_from_events, place_blocks

__all__ = ["AccRecording", "simulate_acc", "ACC_CHANNELS"]

ACC_CHANNELS: tuple[str, ...] = ("x", "y", "z", "magnitude")

_TONIC_S = (10.0, 20.0)
_CLONIC_S = (30.0, 90.0)
_POST_S = (30.0, 180.0)
_POST_MIN_S = 5.0  # the stillness may be cut short near the end of a recording
_MIN_GAP_S = 10.0
_SEIZURES_PER_S = 1.0 / 600.0
_NOISE_G = 0.004  # sensor noise per axis, in g
_RANGE_G = 8.0  # a typical wearable's full scale


@dataclass(frozen=True)
class AccRecording:
    """A simulated wrist accelerometer recording.

    Attributes:
        acc: float32 array (4, n): x, y, z in g and the magnitude ``sqrt(x^2 + y^2 + z^2)``.
        labels: int8 array (n,), 1 for samples inside a seizure (tonic + clonic phases).
        events: seizures as ``(onset_s, offset_s)`` half-open intervals, sorted by onset.
        fs: sampling rate in Hz.
        seed: the seed that reproduces this recording.
        channels: ``("x", "y", "z", "magnitude")``.
    """

    acc: np.ndarray
    labels: np.ndarray
    events: list[Event]
    fs: float
    seed: int
    channels: tuple[str, ...] = ACC_CHANNELS

    @property
    def n_samples(self) -> int:
        return int(self.acc.shape[1])

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs


# ----------------------------------------------------------------------------- helpers


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=0, keepdims=True), 1e-9)


def _random_direction(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v)


def _perpendicular(rng: np.random.Generator, v: np.ndarray) -> np.ndarray:
    w = rng.standard_normal(3)
    w -= w.dot(v) * v
    return w / np.linalg.norm(w)


def _band_noise(
    rng: np.random.Generator, rows: int, n: int, fs: float, lo: float, hi: float
) -> np.ndarray:
    """Unit-std Gaussian noise band-limited to [lo, hi] Hz (smooth edges)."""
    if n < 2:
        return np.zeros((rows, n))
    f = sfft.rfftfreq(n, 1.0 / fs)
    gain = 1.0 / (1.0 + (lo / np.maximum(f, 1e-6)) ** 4) / (1.0 + (f / hi) ** 4)
    gain[0] = 0.0
    x = sfft.irfft(sfft.rfft(rng.standard_normal((rows, n)), axis=-1) * gain, n=n, axis=-1)
    return x / np.maximum(x.std(axis=-1, keepdims=True), 1e-12)


def _rest_orientation(rng: np.random.Generator) -> np.ndarray:
    """Gravity direction in the sensor frame for a resting forearm (palm down or sideways)."""
    base = np.array([0.0, 0.0, 1.0]) if rng.random() < 0.6 else np.array([0.0, 1.0, 0.0])
    sign = rng.choice([1.0, -1.0], p=[0.85, 0.15])
    return sign * _unit((base + 0.5 * rng.standard_normal(3))[:, None])[:, 0]


def _seizure_parts(
    rng: np.random.Generator, duration_s: float, seizures: int | None
) -> list[tuple[float, float, float]]:
    """(tonic, clonic, post-ictal) lengths in seconds for each seizure, fitted to the recording."""
    lo = (_TONIC_S[0], _CLONIC_S[0], _POST_MIN_S)
    min_block = sum(lo)
    if seizures is None:
        count = int(rng.poisson(duration_s * _SEIZURES_PER_S))
        fit = int((duration_s - _MIN_GAP_S) // (min_block + _MIN_GAP_S))
        count = max(0, min(count, fit))
    else:
        count = int(seizures)
    if count == 0:
        return []
    max_block = (duration_s - (count + 1) * _MIN_GAP_S) / count
    if max_block < min_block:
        raise ValueError(
            f"{count} tonic-clonic seizures need at least {min_block:.0f} s each plus "
            f"{_MIN_GAP_S:.0f} s gaps; they do not fit in {duration_s} s"
        )
    parts = []
    for _ in range(count):
        p = np.array(
            [rng.uniform(*_TONIC_S), rng.uniform(*_CLONIC_S), rng.uniform(*_POST_S)], dtype=float
        )
        total = p.sum()
        if total > max_block:  # shrink every phase towards its minimum, keeping proportions
            lo_arr = np.array(lo)
            p = lo_arr + (p - lo_arr) * (max_block - min_block) / (total - min_block)
        parts.append((float(p[0]), float(p[1]), float(p[2])))
    return parts


# ----------------------------------------------------------------------------- background


def _background(rng: np.random.Generator, n: int, fs: float) -> np.ndarray:
    """Daily-life acceleration (3, n) in g, built as a sequence of activity segments."""
    target = np.zeros((3, n))  # piecewise-constant gravity direction, smoothed below
    swing = np.zeros((3, n))  # orientation modulation added after smoothing (walking)
    lin = np.zeros((3, n))  # linear acceleration
    t = 0
    state = rng.choice(["rest", "walk", "fine"])
    g = _rest_orientation(rng)
    while t < n:
        if state == "rest":
            length = int(rng.uniform(20.0, 300.0) * fs)
        elif state == "walk":
            length = int(rng.uniform(15.0, 240.0) * fs)
        else:
            length = int(rng.uniform(30.0, 300.0) * fs)
        b = min(n, t + length)
        m = b - t
        tt = np.arange(m) / fs
        if state == "rest":
            # Posture shifts every 10-60 s: a new, nearby orientation.
            s = t
            while s < b:
                nxt = min(b, s + int(rng.uniform(10.0, 60.0) * fs))
                target[:, s:nxt] = g[:, None]
                g = _unit((g + rng.uniform(0.1, 0.8) * rng.standard_normal(3))[:, None])[:, 0]
                s = nxt
            lin[:, t:b] += 0.003 * _band_noise(rng, 3, m, fs, 0.2, 3.0)
        elif state == "walk":
            # Arm hanging: gravity along the forearm axis, tilted a little.
            g = _unit((np.array([-1.0, 0.0, 0.0]) + 0.3 * rng.standard_normal(3))[:, None])[:, 0]
            target[:, t:b] = g[:, None]
            f_step = rng.uniform(1.6, 2.2)
            jitter = 0.04 * _band_noise(rng, 1, m, fs, 0.05, 0.5)[0]
            phase = 2 * np.pi * np.cumsum(f_step * (1.0 + jitter)) / fs
            swing_axis = _perpendicular(rng, g)
            swing_amp = rng.uniform(0.2, 0.45)
            swing[:, t:b] += swing_amp * np.sin(phase / 2.0)[None, :] * swing_axis[:, None]
            up = -g
            bounce = rng.uniform(0.1, 0.3)
            heel = np.maximum(0.0, np.sin(phase)) ** 3  # sharper heel-strike impacts
            lin[:, t:b] += bounce * (heel - heel.mean())[None, :] * up[:, None]
            fwd = rng.uniform(0.1, 0.3)
            lin[:, t:b] += fwd * np.cos(phase / 2.0)[None, :] * swing_axis[:, None]
            lin[:, t:b] += 0.02 * _band_noise(rng, 3, m, fs, 0.5, 8.0)
            g = _rest_orientation(rng)
        else:  # fine motor work, e.g. typing: forearm on a desk, small movements, faint tremor
            g = _unit((np.array([0.0, 0.0, 1.0]) + 0.3 * rng.standard_normal(3))[:, None])[:, 0]
            target[:, t:b] = g[:, None]
            micro = rng.uniform(0.01, 0.05)
            lin[:, t:b] += micro * _band_noise(rng, 3, m, fs, 1.0, 8.0)
            tremor = rng.uniform(0.003, 0.015)
            lin[:, t:b] += tremor * _band_noise(rng, 3, m, fs, 8.0, 12.0)
        # Gestures: 0.3-1.5 s smooth movements of 0.2-1 g, ~1-3 per minute outside walking.
        if state != "walk":
            n_gest = int(rng.poisson(rng.uniform(1.0, 3.0) * m / fs / 60.0))
            for _ in range(n_gest):
                width = rng.uniform(0.3, 1.5)
                centre = rng.uniform(0.0, m / fs)
                tau = (tt - centre) / (width / 4.0)
                shape = -tau * np.exp(-0.5 * tau**2) * math.exp(0.5)  # accelerate, then brake
                direction = _random_direction(rng)
                lin[:, t:b] += rng.uniform(0.2, 1.0) * shape[None, :] * direction[:, None]
        t = b
        state = rng.choice([s for s in ("rest", "walk", "fine") if s != state])

    # Orientation changes take ~1 s: two passes of a 0.7 s box filter.
    k = max(1, int(0.7 * fs))
    smooth = uniform_filter1d(uniform_filter1d(target, k, axis=1, mode="nearest"), k, axis=1)
    gravity = _unit(_unit(smooth) + swing)
    return gravity + lin


# ----------------------------------------------------------------------------- seizures


def _tonic_clonic(
    rng: np.random.Generator,
    g0: np.ndarray,
    fs: float,
    tonic_s: float,
    clonic_s: float,
    post_s: float,
) -> tuple[np.ndarray, int]:
    """Acceleration (3, m) of one seizure block and the number of labelled (ictal) samples."""
    n_t = int(round(tonic_s * fs))
    n_c = int(round(clonic_s * fs))
    n_p = int(round(post_s * fs))
    m = n_t + n_c + n_p
    out = np.zeros((3, m))

    # Posture: the limb stiffens into a new orientation over ~2 s at onset, then stays there
    # (small drifts) through the clonic phase and the post-ictal stillness.
    g1 = _unit((g0 + rng.uniform(0.4, 1.0) * rng.standard_normal(3))[:, None])[:, 0]
    ramp = np.clip(np.arange(m) / (2.0 * fs), 0.0, 1.0)
    gravity = _unit(g0[:, None] * (1 - ramp) + g1[:, None] * ramp)
    gravity = _unit(gravity + 0.03 * _band_noise(rng, 3, m, fs, 0.02, 0.3))
    out += gravity

    # Tonic phase: 6-10 Hz tremor of 0.05-0.25 g, building up over ~3 s.
    tt = np.arange(n_t) / fs
    f_tr = rng.uniform(6.0, 10.0) * (1.0 + 0.03 * _band_noise(rng, 1, n_t, fs, 0.05, 1.0)[0])
    ph = 2 * np.pi * np.cumsum(f_tr) / fs
    a_tr = rng.uniform(0.05, 0.25) * np.clip(tt / 3.0, 0.0, 1.0)
    d1 = _random_direction(rng)
    d2 = _perpendicular(rng, d1)
    tremor = np.sin(ph)[None, :] * d1[:, None] + 0.3 * np.sin(ph + 1.0)[None, :] * d2[:, None]
    out[:, :n_t] += a_tr * tremor

    # Clonic phase: jerks at a rate slowing geometrically from ~4 Hz to ~1 Hz.
    f0, f1 = rng.uniform(3.5, 4.5), rng.uniform(0.8, 1.2)
    u = np.arange(n_c) / max(n_c, 1)
    rate = f0 * (f1 / f0) ** u
    cyc = np.cumsum(rate) / fs + rng.uniform(0.0, 1.0)
    n_jerk = int(math.floor(cyc[-1])) if n_c else 0
    jerk_times = np.interp(np.arange(1, n_jerk + 1), cyc, np.arange(n_c) / fs) if n_jerk else []
    d_c = _random_direction(rng)
    a0 = rng.uniform(0.8, 2.5)
    tc = np.arange(n_c) / fs
    sigma = rng.uniform(0.035, 0.06)  # a jerk lasts ~0.1-0.2 s
    clonic = np.zeros((3, n_c))
    for tj in jerk_times:
        lo = max(0, int((tj - 4 * sigma) * fs))
        hi = min(n_c, int((tj + 4 * sigma) * fs) + 2)
        tau = (tc[lo:hi] - tj) / sigma
        # Biphasic pulse (flexion then recoil); later jerks are a little stronger and more distinct.
        amp = a0 * (0.7 + 0.6 * tj / max(clonic_s, 1e-9)) * rng.uniform(0.8, 1.2)
        pulse = -tau * np.exp(-0.5 * tau**2) * math.exp(0.5)
        d = _unit((d_c + 0.15 * rng.standard_normal(3))[:, None])[:, 0]
        clonic[:, lo:hi] += amp * pulse[None, :] * d[:, None]
    out[:, n_t : n_t + n_c] += clonic

    # Post-ictal stillness: only a faint breathing-like sway.
    out[:, n_t + n_c :] += 0.002 * _band_noise(rng, 3, n_p, fs, 0.1, 0.5)
    return out, n_t + n_c


# ----------------------------------------------------------------------------- simulator


def simulate_acc(
    duration_s: float, fs: float = 32.0, seed: int = 0, *, seizures: int | None = None
) -> AccRecording:
    """Simulate a wrist accelerometer recording of daily life with tonic-clonic seizures.

    Args:
        duration_s: length of the recording in seconds.
        fs: sampling rate in Hz (the paper uses 32; at least 24 so the 6-10 Hz tonic tremor is
            below the Nyquist frequency).
        seed: makes the recording reproducible; different seeds give different recordings.
        seizures: ``None`` draws a Poisson count at ~1 per 10 minutes (capped to what fits);
            an integer forces that many seizures. A seizure needs at least 45 s (10 s tonic,
            30 s clonic, 5 s of stillness) plus 10 s gaps, or ValueError.

    Returns:
        AccRecording with float32 signals (x, y, z, magnitude) in g and int8 labels; the labelled
        event is the tonic plus clonic phases.

    Raises:
        ValueError: non-positive duration, fs below 24 Hz, a negative seed, or a forced seizure
            count that does not fit.
    """
    duration_s = float(duration_s)
    fs = float(fs)
    check_recording_args(duration_s, fs, seed, seizures)
    if fs < 24.0:
        raise ValueError(f"fs must be at least 24 Hz to carry the 6-10 Hz tonic tremor, got {fs}")
    n = int(round(duration_s * fs))
    if n < 1:
        raise ValueError(f"duration_s={duration_s} at fs={fs} gives no samples")

    rng = np.random.default_rng(int(seed))
    parts = _seizure_parts(rng, duration_s, seizures)
    onsets = place_blocks(rng, duration_s, [sum(p) for p in parts], _MIN_GAP_S)
    xyz = _background(rng, n, fs)

    events: list[Event] = []
    fade_in = max(1, int(1.0 * fs))
    fade_out = max(1, int(2.0 * fs))
    for on, (tonic, clonic, post) in sorted(zip(onsets, parts, strict=True)):
        a = int(round(on * fs))
        g0 = _unit(xyz[:, a : a + 1])[:, 0]
        block, n_ictal = _tonic_clonic(rng, g0, fs, tonic, clonic, post)
        b = min(n, a + block.shape[1])
        block = block[:, : b - a]
        # Cross-fade with the background so the activity switch has no step.
        w = np.ones(b - a)
        k_in = min(fade_in, b - a)
        w[:k_in] = np.linspace(0.0, 1.0, k_in, endpoint=False)
        k_out = min(fade_out, max(0, b - a - n_ictal))
        if k_out:
            w[b - a - k_out :] = np.linspace(1.0, 0.0, k_out)
        xyz[:, a:b] = (1 - w) * xyz[:, a:b] + w * block
        events.append((a / fs, min(n, a + n_ictal) / fs))

    xyz += _NOISE_G * rng.standard_normal(xyz.shape)
    np.clip(xyz, -_RANGE_G, _RANGE_G, out=xyz)
    mag = np.linalg.norm(xyz, axis=0, keepdims=True)
    acc = np.concatenate([xyz, mag], axis=0).astype(np.float32)
    labels = labels_from_events(events, n, fs)
    return AccRecording(acc=acc, labels=labels, events=events, fs=fs, seed=int(seed))
