"""Scattered Online Inference (Stefanski et al., NeurIPS 2024): networks whose deep path runs at half the
frame rate, trained with the pattern in place and streamed so that the skipped work is really skipped.

* layers: :class:`StridedClonedConv1d`/``2d`` (S-CC), :class:`ShiftedConv1d`/``2d``,
  :class:`ShiftedStridedClonedConv1d`/``2d`` (shifted S-CC, fully predictive), and the fills
  :class:`Extrapolate` (``"duplicate" | "tconv" | "hybrid"``) and :class:`Interpolate`
  (``"nearest" | "linear" | "cubic"``);
* :func:`apply`: insert the pattern into an existing network (fx), returning a new trainable model;
* ``thinkonce.stream(soi_model)`` streams them (ops in :mod:`thinkonce.soi.ops`);
  :meth:`thinkonce.Stream.precompute` runs the deep path of a shifted S-CC ahead of time.
"""

from .conv import (ShiftedConv1d, ShiftedConv2d, ShiftedStridedClonedConv1d, ShiftedStridedClonedConv2d,
                   StridedClonedConv1d, StridedClonedConv2d)
from .fill import EXTRAPOLATE_MODES, INTERPOLATE_MODES, Extrapolate, Interpolate
from . import ops  # noqa: F401  (registration)

__all__ = [
    "StridedClonedConv1d", "StridedClonedConv2d", "ShiftedConv1d", "ShiftedConv2d",
    "ShiftedStridedClonedConv1d", "ShiftedStridedClonedConv2d", "Extrapolate", "Interpolate",
    "EXTRAPOLATE_MODES", "INTERPOLATE_MODES",
]
from .apply import apply  # noqa: E402

__all__ += ["apply"]
