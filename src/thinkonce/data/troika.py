"""IEEE Signal Processing Cup 2015 / TROIKA wrist PPG + accelerometer with ECG-derived heart rate.

Layout on disk (one compressed ``.npz`` per recording, see the data folder's README)::

    <root>/ppg_spc2015_troika/{train,test,extra}/*.npz
        ppg (2, N) float32, acc (3, N) float32, [ecg (N,)], bpm (M,) float32, fs = 125,
        win_s = 8, hop_s = 2, rec_id, subject, split, activity (strings)

``bpm[k]`` is the reference heart rate of the 8 s window starting at ``k * hop_s``. The loader returns
:class:`TroikaRecording`, a :class:`~thinkonce.data.PPGRecording` (what ``simulate_ppg`` returns) that
also keeps the per-window reference, so experiments score against the organisers' labels exactly.

``test/`` is the official SPC 2015 test set and ``extra/`` is test subject S04: evaluation only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thinkonce.data.ppg import PPGRecording
from thinkonce.data.real import stored_rate, DataNotFoundError, dataset_dir, resample

__all__ = ["TroikaRecording", "load_troika", "TROIKA_SPLITS"]

NAME = "ppg_spc2015_troika"
TROIKA_SPLITS = ("train", "test", "extra")
LAYOUT = ("{train,test,extra}/*.npz, each with arrays ppg (2, N), acc (3, N), bpm (M,), fs, win_s, hop_s, "
          "rec_id, subject, split, activity (see the data set's README)")
_KEYS = ("ppg", "acc", "bpm", "fs", "win_s", "hop_s")
_MOTION_STD = 0.1  # acc units (about g): 2 s std of |acc| above this marks motion (a heuristic)


@dataclass(frozen=True)
class TroikaRecording(PPGRecording):
    """One TROIKA recording, optionally resampled (``fs``).

    Attributes (beyond :class:`~thinkonce.data.PPGRecording`):
        ppg: ``(2, n)`` float32: the two wrist PPG channels in raw device units (not one channel as
            the simulator's; :meth:`model_input` builds the single or four-channel model input).
        acc: ``(3, n)`` float32 wrist accelerometer, raw units (about g).
        hr_bpm: ``(n,)`` the window references linearly interpolated between window centres: a
            convenience for plots; score against ``window_bpm``, the organisers' labels.
        motion_mask: ``(n,)`` heuristic (2 s std of the ACC magnitude above 0.1), not an annotation.
        window_bpm: ``(M,)`` reference heart rate of window k = samples ``[k*hop, k*hop + window)``.
        window, hop: the reference grid in samples at ``fs`` (8 s and 2 s).
        ecg: ``(n,)`` chest ECG (train and extra) or None (test).
    """

    window_bpm: np.ndarray = None  # type: ignore[assignment]
    window: int = 0
    hop: int = 0
    rec_id: str = ""
    subject: str = ""
    split: str = ""
    activity: str = ""
    ecg: np.ndarray | None = None

    def model_input(self, channels: str = "ppg+acc") -> np.ndarray:
        """``(1, n)`` mean PPG (``"ppg"``) or ``(4, n)`` mean PPG, acc x, y, z (``"ppg+acc"``), float32."""
        ppg = self.ppg.mean(axis=0, keepdims=True)
        if channels == "ppg":
            return ppg.astype(np.float32)
        if channels == "ppg+acc":
            return np.concatenate([ppg, self.acc]).astype(np.float32)
        raise ValueError(f"channels must be 'ppg' or 'ppg+acc', got {channels!r}")


def _per_sample_hr(bpm: np.ndarray, n: int, window: int, hop: int) -> np.ndarray:
    centres = np.arange(len(bpm)) * hop + window / 2
    return np.interp(np.arange(n), centres, bpm).astype(np.float32)


def _motion_mask(acc: np.ndarray, fs: float) -> np.ndarray:
    mag = np.linalg.norm(acc.astype(np.float64), axis=0)
    k = max(2, int(round(2 * fs)))
    pad = np.concatenate([np.full(k - 1, mag[0]), mag])
    c1 = np.concatenate([[0.0], np.cumsum(pad)])
    c2 = np.concatenate([[0.0], np.cumsum(pad**2)])
    mean = (c1[k:] - c1[:-k]) / k
    var = np.maximum((c2[k:] - c2[:-k]) / k - mean**2, 0.0)
    return np.sqrt(var) > _MOTION_STD


def read_troika_file(path: str | os.PathLike[str], fs: float | None = 32.0) -> TroikaRecording:
    """One recording file; ``fs=None`` keeps the native 125 Hz, else resample (polyphase).

    Raises:
        ValueError: a missing array, or labels that do not fit the recording's window grid.
    """
    path = Path(path)
    with np.load(path) as d:
        missing = [k for k in _KEYS if k not in d.files]
        if missing:
            raise ValueError(f"{path}: missing arrays {missing}; expected {LAYOUT}")
        ppg, acc, bpm = d["ppg"], d["acc"], d["bpm"].astype(np.float32)
        fs0, win_s, hop_s = stored_rate(d["fs"]), float(d["win_s"]), float(d["hop_s"])
        ecg = d["ecg"] if "ecg" in d.files else None
        meta = {k: str(d[k]) if k in d.files else "" for k in ("rec_id", "subject", "split", "activity")}
    if ppg.ndim != 2 or acc.ndim != 2 or acc.shape[0] != 3 or ppg.shape[1] != acc.shape[1]:
        raise ValueError(f"{path}: ppg {ppg.shape} / acc {acc.shape} are not (C, N) with 3 ACC axes")
    n0 = ppg.shape[1]
    w0, h0 = int(round(win_s * fs0)), int(round(hop_s * fs0))
    if len(bpm) != (n0 - w0) // h0 + 1:
        raise ValueError(f"{path}: {len(bpm)} bpm labels do not fit {n0} samples in {win_s} s windows every "
                         f"{hop_s} s ({(n0 - w0) // h0 + 1} expected)")
    fs_out = fs0 if fs is None else float(fs)
    if fs_out != fs0:
        ppg, acc = resample(ppg, fs0, fs_out), resample(acc, fs0, fs_out)
        ecg = None if ecg is None else resample(ecg, fs0, fs_out)
    window, hop = int(round(win_s * fs_out)), int(round(hop_s * fs_out))
    n = ppg.shape[1]
    if abs(window - win_s * fs_out) > 1e-6 or abs(hop - hop_s * fs_out) > 1e-6:
        raise ValueError(f"fs={fs_out} does not put the {win_s} s / {hop_s} s label grid on whole samples")
    return TroikaRecording(
        ppg=np.ascontiguousarray(ppg, dtype=np.float32), acc=np.ascontiguousarray(acc, dtype=np.float32),
        hr_bpm=_per_sample_hr(bpm, n, window, hop), fs=fs_out, seed=-1, motion_mask=_motion_mask(acc, fs_out),
        window_bpm=bpm, window=window, hop=hop, ecg=ecg, **meta,
    )


def load_troika(split: str = "train", root: str | os.PathLike[str] | None = None,
                fs: float | None = 32.0) -> list[TroikaRecording]:
    """Every recording of one split (sorted by file name), resampled to ``fs`` (None: native 125 Hz).

    ``split``: ``"train"`` (12 recordings), ``"test"`` (the official test set, 10 recordings: evaluation
    only) or ``"extra"`` (test subject S04: keep it out of training). ``root``: see
    :func:`thinkonce.data.real.data_root`.

    Raises:
        ValueError: an unknown split.
        DataNotFoundError: the folder or its files are absent (the message names path and layout).
    """
    if split not in TROIKA_SPLITS:
        raise ValueError(f"split must be one of {TROIKA_SPLITS}, got {split!r}")
    d = dataset_dir(NAME, LAYOUT, root, required=(split,))
    files = sorted((d / split).glob("*.npz"))
    if not files:
        raise DataNotFoundError(f"{NAME}: no .npz files in {d / split}. Expected layout: {d}/{LAYOUT}")
    return [read_troika_file(f, fs) for f in files]
