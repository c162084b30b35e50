"""A continuous 500 s scalp EEG through one seizure (Malow / Ombao, Univ. Michigan), 100 Hz.

Layout on disk::

    <root>/eeg_malow_seizure/malow_seizure_eeg.npz
        x (31, 50000) int16, channel (31,) names, fs = 100, reported_onset_s = 350

Returned as one :class:`MalowRecording`, an :class:`~thinkonce.data.EEGRecording` (what
``simulate_eeg`` returns) with the seizure event ``[onset, end)``. The source says SP1 and SP2 are
corrupted and Cz is the reference, and channels 22-31 are unnamed: by default only the 18 usable named
channels are kept. The data set's README treats about 335-360 s as uncertain (``uncertain_s``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from thinkonce.data.eeg import EEGRecording
from thinkonce.data.events import labels_from_events
from thinkonce.data.real import stored_rate, dataset_dir, resample

__all__ = ["MalowRecording", "load_malow", "MALOW_EXCLUDED"]

NAME = "eeg_malow_seizure"
FILE = "malow_seizure_eeg.npz"
LAYOUT = f"{FILE} with arrays x (C, n) int16, channel (C,) names, fs, reported_onset_s (see its README)"
MALOW_EXCLUDED = ("SP1", "SP2", "Cz")  # corrupted (SP1, SP2) and the reference (Cz), per the source
_UNCERTAIN_S = (335.0, 360.0)


@dataclass(frozen=True)
class MalowRecording(EEGRecording):
    """The Malow recording: ``eeg`` (C, n) float32 in amplifier units; ``onset_s`` the reported onset."""

    onset_s: float = 350.0
    uncertain_s: tuple[float, float] = _UNCERTAIN_S


def load_malow(root: str | os.PathLike[str] | None = None, fs: float | None = None,
               channels: str | tuple[str, ...] = "usable") -> MalowRecording:
    """The recording, resampled to ``fs`` (None: 100 Hz).

    ``channels``: ``"usable"`` (the 18 named channels minus SP1, SP2 and Cz), ``"all"`` (all 31, the
    corrupted and unnamed ones included), or a tuple of channel names in the order wanted.

    Raises:
        ValueError: an unknown channel name or selection, or arrays that do not match the layout.
        DataNotFoundError: the file is absent (the message names path and layout).
    """
    d = dataset_dir(NAME, LAYOUT, root, required=(FILE,))
    with np.load(d / FILE) as z:
        missing = [k for k in ("x", "channel", "fs", "reported_onset_s") if k not in z.files]
        if missing:
            raise ValueError(f"{d / FILE}: missing arrays {missing}; expected {LAYOUT}")
        x, names, fs0, onset = z["x"], [str(c) for c in z["channel"]], stored_rate(z["fs"]), float(z["reported_onset_s"])
    if x.ndim != 2 or x.shape[0] != len(names):
        raise ValueError(f"{d / FILE}: x {x.shape} does not match {len(names)} channel names")
    if channels == "usable":
        pick = [c for c in names if c not in MALOW_EXCLUDED and not c.endswith("_unlabelled")]
    elif channels == "all":
        pick = names
    elif isinstance(channels, tuple):
        unknown = [c for c in channels if c not in names]
        if unknown:
            raise ValueError(f"unknown channels {unknown}; the recording has {names}")
        pick = list(channels)
    else:
        raise ValueError(f"channels must be 'usable', 'all' or a tuple of names, got {channels!r}")
    sig = x[[names.index(c) for c in pick]].astype(np.float32)
    fs_out = fs0 if fs is None else float(fs)
    if fs_out != fs0:
        sig = resample(sig, fs0, fs_out)
    n = sig.shape[1]
    events = [(onset, n / fs_out)] if onset < n / fs_out else []
    return MalowRecording(eeg=sig, labels=labels_from_events(events, n, fs_out), events=events, fs=fs_out,
                          seed=-1, channels=tuple(pick), onset_s=onset)
