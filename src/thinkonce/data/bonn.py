"""Bonn University epilepsy EEG (Andrzejak et al. 2001): 500 single-channel segments, sets A-E.

Layout on disk::

    <root>/eeg_bonn/bonn_eeg.npz
        x (500, 4097) int16, set_abc (500,) 'A'..'E', set_zonfs, segment (500,) 1..100,
        seizure (500,) int8 (1 for set E), fs = 173.61

Each segment becomes a :class:`BonnSegment`, an :class:`~thinkonce.data.EEGRecording` (what
``simulate_eeg`` returns) of one channel: set E (ictal) is labelled seizure over its whole length,
sets A-D not at all. No subject IDs exist, so splits are by set file (segment number), never by subject.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from thinkonce.data.eeg import EEGRecording
from thinkonce.data.real import stored_rate, dataset_dir, resample

__all__ = ["BonnSegment", "load_bonn", "BONN_SETS"]

NAME = "eeg_bonn"
FILE = "bonn_eeg.npz"
LAYOUT = (f"{FILE} with arrays x (500, 4097) int16, set_abc (500,) in 'A'..'E', segment (500,), "
          "seizure (500,), fs (see the data set's README)")
BONN_SETS = ("A", "B", "C", "D", "E")


@dataclass(frozen=True)
class BonnSegment(EEGRecording):
    """One Bonn segment: ``eeg`` (1, n) float32 in A/D units; ``set_name`` 'A'..'E'; ``segment`` 1..100."""

    set_name: str = ""
    segment: int = 0

    @property
    def seizure(self) -> bool:
        return bool(self.labels.any())


def load_bonn(root: str | os.PathLike[str] | None = None, fs: float | None = None,
              sets: str = "ABCDE") -> list[BonnSegment]:
    """The Bonn segments of ``sets`` in file order (A001..E100), resampled to ``fs`` (None: 173.61 Hz).

    Raises:
        ValueError: an unknown set letter, or a file whose arrays do not match the layout.
        DataNotFoundError: the file is absent (the message names path and layout).
    """
    bad = [s for s in sets if s not in BONN_SETS]
    if bad or not sets:
        raise ValueError(f"sets must be letters of {''.join(BONN_SETS)}, got {sets!r}")
    d = dataset_dir(NAME, LAYOUT, root, required=(FILE,))
    with np.load(d / FILE) as z:
        missing = [k for k in ("x", "set_abc", "segment", "seizure", "fs") if k not in z.files]
        if missing:
            raise ValueError(f"{d / FILE}: missing arrays {missing}; expected {LAYOUT}")
        x, set_abc, segment, seizure, fs0 = z["x"], z["set_abc"], z["segment"], z["seizure"], stored_rate(z["fs"])
    if x.ndim != 2 or not (len(set_abc) == len(segment) == len(seizure) == x.shape[0]):
        raise ValueError(f"{d / FILE}: x {x.shape} and the per-segment arrays disagree; expected {LAYOUT}")
    keep = np.isin(set_abc, list(sets))
    x = x[keep].astype(np.float32)
    fs_out = fs0 if fs is None else float(fs)
    if fs_out != fs0:
        x = resample(x, fs0, fs_out)
    n = x.shape[1]
    out = []
    for row, s, seg, sz in zip(x, set_abc[keep], segment[keep], seizure[keep], strict=True):
        labels = np.full(n, int(sz), dtype=np.int8)
        out.append(BonnSegment(eeg=row[None].copy(), labels=labels, events=[(0.0, n / fs_out)] if sz else [],
                               fs=fs_out, seed=-1, channels=("EEG",), set_name=str(s), segment=int(seg)))
    return out
