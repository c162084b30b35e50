"""UEA/UCR "Epilepsy": wrist 3-axis accelerometer at 16 Hz, seizure mimicking vs walking/running/sawing.

Layout on disk::

    <root>/acc_uea_epilepsy/uea_epilepsy.npz
        x_train (137, 3, 206) float32, y_train (137,) int8, x_test (138, 3, 206), y_test (138,),
        classes (4,) ['EPILEPSY', 'WALKING', 'RUNNING', 'SAWING'], fs = 16

Each series becomes a :class:`UEAEpilepsySeries`, an :class:`~thinkonce.data.AccRecording` (what
``simulate_acc`` returns): channels x, y, z and the magnitude, labelled seizure over its whole length
when its class is EPILEPSY (index 0). The split is by participant; ``test`` is for evaluation only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from thinkonce.data.acc import AccRecording
from thinkonce.data.real import stored_rate, dataset_dir, resample

__all__ = ["UEAEpilepsySeries", "load_uea_epilepsy"]

NAME = "acc_uea_epilepsy"
FILE = "uea_epilepsy.npz"
LAYOUT = (f"{FILE} with arrays x_train / x_test (N, 3, T) float32, y_train / y_test (N,) int8, classes (4,), fs "
          "(see the data set's README)")


@dataclass(frozen=True)
class UEAEpilepsySeries(AccRecording):
    """One series: ``acc`` (4, n) x, y, z, magnitude; ``label`` the class index, ``class_name`` its name."""

    label: int = 0
    class_name: str = ""
    split: str = ""


def load_uea_epilepsy(split: str = "train", root: str | os.PathLike[str] | None = None,
                      fs: float | None = None) -> list[UEAEpilepsySeries]:
    """The series of ``split`` ("train" or "test") in file order, resampled to ``fs`` (None: 16 Hz).

    Raises:
        ValueError: an unknown split, or arrays that do not match the layout.
        DataNotFoundError: the file is absent (the message names path and layout).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    d = dataset_dir(NAME, LAYOUT, root, required=(FILE,))
    with np.load(d / FILE) as z:
        missing = [k for k in (f"x_{split}", f"y_{split}", "classes", "fs") if k not in z.files]
        if missing:
            raise ValueError(f"{d / FILE}: missing arrays {missing}; expected {LAYOUT}")
        x, y, classes, fs0 = z[f"x_{split}"], z[f"y_{split}"], [str(c) for c in z["classes"]], stored_rate(z["fs"])
    if x.ndim != 3 or x.shape[1] != 3 or len(y) != len(x):
        raise ValueError(f"{d / FILE}: x_{split} {x.shape} / y_{split} {y.shape} do not match {LAYOUT}")
    if "EPILEPSY" not in classes:
        raise ValueError(f"{d / FILE}: classes {classes} have no 'EPILEPSY'")
    seizure = classes.index("EPILEPSY")
    fs_out = fs0 if fs is None else float(fs)
    x = x.astype(np.float32) if fs_out == fs0 else resample(x, fs0, fs_out)
    n = x.shape[-1]
    out = []
    for xi, yi in zip(x, y, strict=True):
        acc = np.concatenate([xi, np.linalg.norm(xi, axis=0, keepdims=True)]).astype(np.float32)
        sz = int(yi) == seizure
        out.append(UEAEpilepsySeries(acc=acc, labels=np.full(n, int(sz), np.int8),
                                     events=[(0.0, n / fs_out)] if sz else [], fs=fs_out, seed=-1,
                                     label=int(yi), class_name=classes[int(yi)], split=split))
    return out
