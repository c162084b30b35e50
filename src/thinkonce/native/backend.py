"""``backend="native"``: each steady-state step lowered to generated C, compiled and called in-process.

Per key (chunk length, phase, batch) the eager step is recorded once (:mod:`~thinkonce.native.trace`),
turned into C (:mod:`~thinkonce.native.codegen`), compiled or found in the cache
(:mod:`~thinkonce.native.cache`), loaded (:mod:`~thinkonce.native.loader`) and checked against the
eager step on the very input it was built from, outputs and state alike. A step that uses an op
without a C emitter, or that the compiler rejects, runs eagerly with a warning naming the op; no
compiler at all means one warning and eager steps. Warm-up steps (other layouts) are eager, as for
every traced backend, so outputs and state layout are those of eager PyTorch.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Callable

import torch
from torch import Tensor

from ..stream.backends import TracedSteps
from .cache import compiled_library
from .codegen import generate
from .compiler import Toolchain, find_toolchain, why_no_toolchain
from .loader import NativeStep, load
from .trace import record

if TYPE_CHECKING:  # pragma: no cover
    from ..stream.stream import Stream

State = dict[str, Tensor]

_WARNED_NO_COMPILER = False


def toolchain_or_warn() -> Toolchain | None:
    """The toolchain, or None after warning once per process that native steps run eagerly."""
    global _WARNED_NO_COMPILER
    tc = find_toolchain()
    if tc is None and not _WARNED_NO_COMPILER:
        _WARNED_NO_COMPILER = True
        warnings.warn(f"backend 'native': {why_no_toolchain()}; steps run eagerly (same results, eager speed)",
                      RuntimeWarning, stacklevel=3)
    return tc


def available() -> bool:
    """Whether native steps can be built here (a working C compiler)."""
    return find_toolchain() is not None


def build_native(stream: "Stream", x: Tensor, state: State, tc: Toolchain) -> NativeStep:
    """The compiled step for the key of ``(x, state)``."""
    xc = x.contiguous().clone()
    sc = {k: v.contiguous().clone() for k, v in state.items()}
    trace, _ = record(stream._step_impl, xc, sc)
    cstep = generate(trace, tc.vector_width)
    return NativeStep(cstep, load(compiled_library(cstep.source, tc)))


class NativeSteps(TracedSteps):
    """Per-key native steps, built lazily (on a key's second occurrence) and cached like traced graphs."""

    def __init__(self, stream: "Stream", tc: Toolchain) -> None:
        super().__init__(stream._step_impl, stream._trace_key, "native")
        self.stream = stream
        self.tc = tc

    def _build(self, x: Tensor, state: State, probe: State) -> Callable[..., tuple[Tensor, State]]:
        return build_native(self.stream, x, state, self.tc)
