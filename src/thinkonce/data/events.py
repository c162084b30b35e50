"""Seizure event labelling and event-level scoring shared by the EEG and accelerometer data.

Why a module of its own: the simulators, the window-mode (StreamiNNC) experiments and the
metrics must agree on one set of conventions, or a streamed detector and a windowed one would be
scored differently. The conventions, used everywhere in this module:

* An event is a half-open interval ``[onset_s, offset_s)`` in seconds from the first sample.
* Sample ``i`` sits at time ``i / fs``; it is inside an event when ``onset_s <= i / fs < offset_s``.
* Window ``k`` covers the samples ``[k * hop, k * hop + window)``; only whole windows exist, so
  a signal of ``n`` samples has ``1 + (n - window) // hop`` windows (0 when ``n < window``). This
  is the grid on which a StreamiNNC stream emits one output per hop once the first window is full.
* Two intervals overlap when they share a stretch of positive length: ``a0 < b1 and b0 < a1``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "Event",
    "labels_from_events",
    "n_windows",
    "window_labels",
    "windows_to_events",
    "score_events",
]

Event = tuple[float, float]
"""``(onset_s, offset_s)``: a half-open interval in seconds."""

# Slack for float rounding when turning seconds into sample indices: an onset given as
# ``2560 / 256`` must land on sample 2560 even if ``onset * fs`` evaluates to 2560.0000000001.
_EPS = 1e-9


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return int(value)


def _check_fs(fs: Any) -> float:
    fs = float(fs)
    if not math.isfinite(fs) or fs <= 0:
        raise ValueError(f"fs must be a positive finite number, got {fs}")
    return fs


def _check_events(events: Sequence[Sequence[float]]) -> list[Event]:
    out: list[Event] = []
    for ev in events:
        if len(ev) != 2:
            raise ValueError(f"each event must be (onset_s, offset_s), got {ev!r}")
        on, off = float(ev[0]), float(ev[1])
        if not (math.isfinite(on) and math.isfinite(off)):
            raise ValueError(f"event bounds must be finite, got {ev!r}")
        if on < 0 or off <= on:
            raise ValueError(f"an event needs 0 <= onset_s < offset_s, got {ev!r}")
        out.append((on, off))
    return out


def labels_from_events(events: Sequence[Sequence[float]], n: int, fs: float) -> np.ndarray:
    """Per-sample labels (np.int8, 1 inside an event) for a signal of ``n`` samples at ``fs`` Hz.

    Sample ``i`` is labelled 1 when ``onset_s <= i / fs < offset_s`` for some event. Events may
    overlap each other and may run past the end of the signal (they are clipped); an event that
    starts after the signal ends labels nothing.

    Raises:
        ValueError: ``n`` negative, ``fs`` not positive, or an event that is not
            ``0 <= onset_s < offset_s``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    fs = _check_fs(fs)
    labels = np.zeros(int(n), dtype=np.int8)
    for on, off in _check_events(events):
        start = max(0, math.ceil(on * fs - _EPS))
        stop = min(int(n), math.ceil(off * fs - _EPS))
        if stop > start:
            labels[start:stop] = 1
    return labels


def n_windows(n: int, window: int, hop: int) -> int:
    """Number of whole windows of ``window`` samples every ``hop`` samples in ``n`` samples."""
    window = _check_positive_int("window", window)
    hop = _check_positive_int("hop", hop)
    if n < window:
        return 0
    return 1 + (int(n) - window) // hop


def window_labels(
    labels: np.ndarray, window: int, hop: int, min_overlap: float = 0.5
) -> np.ndarray:
    """Window-level labels (np.int8) on the grid of windows ``[k*hop, k*hop + window)``.

    A window is positive when at least ``min_overlap`` of its samples are positive, i.e. when
    ``sum(labels[k*hop : k*hop+window]) >= min_overlap * window``. The default 0.5 asks for a
    majority, the usual choice when training a window classifier on seizure data: it keeps the
    onset and offset windows, which are mostly background, out of the positive class.

    Raises:
        ValueError: ``labels`` not 1-D or not 0/1, ``window``/``hop`` not positive integers, or
            ``min_overlap`` outside ``(0, 1]``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if labels.size and not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must contain only 0 and 1")
    k = n_windows(labels.size, window, hop)
    min_overlap = float(min_overlap)
    if not 0.0 < min_overlap <= 1.0:
        raise ValueError(f"min_overlap must be in (0, 1], got {min_overlap}")
    if k == 0:
        return np.zeros(0, dtype=np.int8)
    csum = np.concatenate(([0], np.cumsum(labels, dtype=np.int64)))
    starts = np.arange(k, dtype=np.int64) * hop
    positives = csum[starts + window] - csum[starts]
    # Integer comparison against a threshold rounded up avoids float ties at exactly 50 %.
    need = math.ceil(min_overlap * window - _EPS)
    return (positives >= need).astype(np.int8)


def windows_to_events(
    pred_windows: np.ndarray, window: int, hop: int, fs: float
) -> list[Event]:
    """Merge runs of consecutive positive windows into predicted events (in seconds).

    A run of positive windows ``k0..k1`` (consecutive indices) becomes the event
    ``[k0 * hop / fs, (k1 * hop + window) / fs)``: the span of samples those windows saw. Runs are
    split by any negative window, even when ``hop < window`` makes their spans touch or overlap;
    a detector that flickers off for one hop therefore raises two alarms, as it would live.

    Raises:
        ValueError: ``pred_windows`` not 1-D or not 0/1 (bools are accepted), bad window/hop/fs.
    """
    window = _check_positive_int("window", window)
    hop = _check_positive_int("hop", hop)
    fs = _check_fs(fs)
    pred = np.asarray(pred_windows)
    if pred.ndim != 1:
        raise ValueError(f"pred_windows must be 1-D, got shape {pred.shape}")
    if pred.size and not np.isin(pred, (0, 1)).all():
        raise ValueError("pred_windows must contain only 0/1 (or booleans)")
    pos = np.concatenate(([0], pred.astype(np.int8), [0]))
    edges = np.diff(pos)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1  # index of the last positive window of each run
    return [(s * hop / fs, (e * hop + window) / fs) for s, e in zip(starts, ends, strict=True)]


def _overlaps(a: Event, b: Event) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def score_events(
    pred_windows: np.ndarray,
    true_events: Sequence[Sequence[float]],
    window: int,
    hop: int,
    fs: float,
    duration_s: float,
) -> dict[str, float | int]:
    """Event-level scores of window predictions against true seizure events.

    Why event level: a seizure alarm is useful when it fires at least once per seizure and rarely
    otherwise; window accuracy rewards long seizures and hides false alarms in long recordings.

    Definitions (``pred_windows[k]`` is the 0/1 decision for window ``[k*hop, k*hop+window)``):

    * predicted events: runs of consecutive positive windows merged (see :func:`windows_to_events`).
    * ``n_detected``: true events overlapped by at least one predicted event.
    * ``sensitivity = n_detected / n_true`` (NaN when there is no true event).
    * ``n_false_alarms``: predicted events that overlap no true event.
    * ``false_alarms_per_hour = n_false_alarms / (duration_s / 3600)``.
    * ``precision = (n_pred - n_false_alarms) / n_pred`` (NaN when nothing is predicted).
    * ``f1 = 2 * precision * sensitivity / (precision + sensitivity)``; 0 when that sum is 0 or
      when exactly one of ``n_true`` and ``n_pred`` is 0 (everything missed, or only false
      alarms); NaN only when both are 0 (nothing to find and nothing found).

    Overlap means sharing a stretch of positive length (touching ends do not count).

    Returns:
        dict with ``sensitivity``, ``precision``, ``f1``, ``false_alarms_per_hour`` (floats) and
        ``n_true``, ``n_pred``, ``n_detected``, ``n_false_alarms`` (ints).

    Raises:
        ValueError: bad arguments, or predictions whose last window ends after ``duration_s``
            (the windows cannot come from a recording of that length).
    """
    fs = _check_fs(fs)
    duration_s = float(duration_s)
    if not math.isfinite(duration_s) or duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    pred_events = windows_to_events(pred_windows, window, hop, fs)
    n_pred_windows = np.asarray(pred_windows).size
    if n_pred_windows:
        last_end = ((n_pred_windows - 1) * hop + window) / fs
        if last_end > duration_s + 1.0 / fs:
            raise ValueError(
                f"{n_pred_windows} windows of {window} every {hop} samples end at "
                f"{last_end:.3f} s, after duration_s={duration_s}"
            )
    true = _check_events(true_events)

    n_true = len(true)
    n_pred = len(pred_events)
    n_detected = sum(any(_overlaps(t, p) for p in pred_events) for t in true)
    n_false = sum(not any(_overlaps(p, t) for t in true) for p in pred_events)

    sensitivity = n_detected / n_true if n_true else math.nan
    precision = (n_pred - n_false) / n_pred if n_pred else math.nan
    if n_true == 0 and n_pred == 0:
        f1 = math.nan
    elif n_true == 0 or n_pred == 0:
        f1 = 0.0
    elif precision + sensitivity == 0:
        f1 = 0.0
    else:
        f1 = 2 * precision * sensitivity / (precision + sensitivity)
    return {
        "sensitivity": float(sensitivity),
        "precision": float(precision),
        "f1": float(f1),
        "false_alarms_per_hour": n_false / (duration_s / 3600.0),
        "n_true": n_true,
        "n_pred": n_pred,
        "n_detected": int(n_detected),
        "n_false_alarms": int(n_false),
    }


def check_recording_args(
    duration_s: float, fs: float, seed: int, seizures: int | None
) -> None:
    """Validate the arguments every seizure simulator shares (ValueError with the bad value)."""
    if not math.isfinite(duration_s) or duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    if not math.isfinite(fs) or fs <= 0:
        raise ValueError(f"fs must be positive, got {fs}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if seizures is not None and (
        isinstance(seizures, bool) or not isinstance(seizures, (int, np.integer)) or seizures < 0
    ):
        raise ValueError(f"seizures must be None or a non-negative integer, got {seizures!r}")


def place_blocks(
    rng: np.random.Generator, duration_s: float, lengths_s: Sequence[float], min_gap_s: float
) -> list[float]:
    """Random non-overlapping onsets for blocks of the given lengths inside ``[0, duration_s]``.

    Used by the simulators so that a forced seizure count always fits: blocks are shuffled, every
    gap (including before the first and after the last block) is at least ``min_gap_s``, and the
    spare time is split uniformly at random between the gaps. Onsets are returned in the order of
    ``lengths_s``.

    Raises:
        ValueError: the blocks plus their gaps do not fit.
    """
    lengths = np.asarray(lengths_s, dtype=np.float64)
    k = lengths.size
    if k == 0:
        return []
    spare = duration_s - lengths.sum() - (k + 1) * min_gap_s
    if spare < 0:
        raise ValueError(
            f"{k} blocks totalling {lengths.sum():.1f} s with gaps of {min_gap_s} s do not fit in "
            f"{duration_s} s"
        )
    order = rng.permutation(k)
    cuts = np.sort(rng.uniform(0.0, spare, size=k))
    extra = np.diff(np.concatenate(([0.0], cuts)))  # extra gap before each block, in order
    onsets = np.empty(k)
    t = 0.0
    for slot, idx in enumerate(order):
        t += min_gap_s + extra[slot]
        onsets[idx] = t
        t += lengths[idx]
    return onsets.tolist()
