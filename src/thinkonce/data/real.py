"""Where real recordings live on disk, and the one error every loader raises when they are absent.

Why a module of its own: the real data sets are never committed to the project (licences, size), so
every loader must find them the same way and say the same thing when they are missing. The search
order for ``root`` (the folder holding one sub-folder per data set):

1. the ``root`` argument, when given;
2. the ``THINKONCE_DATA`` environment variable;
3. ``../shared/data`` next to the checkout (resolved from this package's source tree);
4. ``../shared/data`` relative to the current working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import signal as ssignal

__all__ = ["DataNotFoundError", "data_root", "dataset_dir", "resample", "stored_rate"]

ENV_VAR = "THINKONCE_DATA"


class DataNotFoundError(FileNotFoundError):
    """A real data set is not where the loader looked (the message names the path and the layout)."""


def _candidates(root: str | os.PathLike[str] | None) -> list[Path]:
    if root is not None:
        return [Path(root)]
    out: list[Path] = []
    env = os.environ.get(ENV_VAR)
    if env:
        out.append(Path(env))
    repo = Path(__file__).resolve().parents[3]  # src/thinkonce/data/real.py -> checkout
    out.append(repo.parent / "shared" / "data")
    out.append(Path.cwd().parent / "shared" / "data")
    return out


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The first existing folder of the search order (see the module docstring).

    Raises:
        DataNotFoundError: none exists; the message lists every place looked at.
    """
    tried = _candidates(root)
    for p in tried:
        if p.is_dir():
            return p
    raise DataNotFoundError(
        "no real-data folder found; looked at " + ", ".join(str(p) for p in tried)
        + f". Pass root=..., or set {ENV_VAR} to the folder that holds the data-set folders "
        "(ppg_spc2015_troika/, eeg_bonn/, eeg_malow_seizure/, acc_uea_epilepsy/)."
    )


def dataset_dir(name: str, layout: str, root: str | os.PathLike[str] | None = None,
                required: tuple[str, ...] = ()) -> Path:
    """``<root>/<name>``, checked to hold ``required`` entries; ``layout`` describes them for the error."""
    try:
        base = data_root(root)
    except DataNotFoundError as e:
        raise DataNotFoundError(f"{name}: {e} Expected layout: <root>/{name}/{layout}") from None
    d = base / name
    missing = [r for r in required if not (d / r).exists()]
    if not d.is_dir() or missing:
        what = f"missing {', '.join(missing)} in {d}" if d.is_dir() else f"{d} does not exist"
        raise DataNotFoundError(f"{name}: {what}. Expected layout: {d}/{layout}")
    return d


def stored_rate(value: object) -> float:
    """A sampling rate stored as float32 (173.61 reads back as 173.6100006...) as the decimal it was."""
    return float(str(np.float32(value)))


def resample(x: np.ndarray, fs_from: float, fs_to: float, max_den: int = 100_000) -> np.ndarray:
    """Polyphase resampling along the last axis (``scipy.signal.resample_poly``), float32 out.

    The rational ratio ``fs_to / fs_from`` is found exactly for the rates used here (125 -> 32,
    173.61 -> 256, 100 -> 256): e.g. 173.61 Hz to 256 Hz is up 25600, down 17361.
    """
    from fractions import Fraction

    if fs_from <= 0 or fs_to <= 0:
        raise ValueError(f"sampling rates must be positive, got {fs_from} -> {fs_to}")
    if fs_from == fs_to:
        return np.asarray(x, dtype=np.float32)
    ratio = Fraction(str(fs_to)) / Fraction(str(fs_from))
    ratio = ratio.limit_denominator(max_den)
    y = ssignal.resample_poly(np.asarray(x, dtype=np.float64), ratio.numerator, ratio.denominator, axis=-1)
    return y.astype(np.float32)
