"""What one step of a stream costs, over its whole step cycle: MACs (mean and peak), state bytes, and for
fully predictive SOI streams the share of the work :meth:`~thinkonce.Stream.precompute` does ahead.

A stream's steps are not alike: a strided layer (an S-CC above all) computes on some steps only, so the
work of a step depends on its phase. After :attr:`~thinkonce.Stream.warmup` the phases repeat with the
period ``lcm(stride period, chunk) / chunk`` steps; every step of one such cycle is counted with the
FLOP counter (:func:`thinkonce.count_macs`), so mean and peak are exact, not estimated.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch

from ..stream.state import state_nbytes
from .macs import count_macs

if TYPE_CHECKING:  # pragma: no cover
    from ..stream.stream import Stream


@dataclass(frozen=True)
class StepCost:
    """Cost of steps of ``chunk`` samples over one step cycle (per stream, batch 1).

    ``macs``: MACs of each step of the cycle (the work on the critical path when ``precompute`` ran
    between steps); ``precompute_macs``: MACs of the precompute after each step (zeros if none);
    ``fp_share``: precomputed MACs / all MACs; ``state_bytes``: the largest state over the cycle.
    """

    chunk: int
    steps: int
    macs: tuple[int, ...]
    precompute_macs: tuple[int, ...]
    state_bytes: int

    @property
    def mean_macs(self) -> float:
        return sum(self.macs) / len(self.macs)

    @property
    def peak_macs(self) -> int:
        return max(self.macs)

    @property
    def macs_per_sample(self) -> float:
        """All MACs (precompute included) per input sample: times the sample rate, MACs per second."""
        return (sum(self.macs) + sum(self.precompute_macs)) / (self.steps * self.chunk)

    @property
    def fp_share(self) -> float:
        total = sum(self.macs) + sum(self.precompute_macs)
        return sum(self.precompute_macs) / total if total else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(mean_macs=self.mean_macs, peak_macs=self.peak_macs, macs_per_sample=self.macs_per_sample,
                 fp_share=self.fp_share)
        return d


def step_cost(stream: "Stream", chunk: int, precompute: bool | None = None) -> StepCost:
    """Count every step of one cycle of ``chunk``-sample steps in steady state (see the module docstring).

    ``precompute``: call :meth:`~thinkonce.Stream.precompute` after each step (default: when the stream
    has shifted S-CCs, i.e. is fully predictive).
    """
    from ..soi.precompute import fp_entries

    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive number of samples, got {chunk!r}")
    fp = stream.spec is None and bool(fp_entries(stream))
    if precompute is None:
        precompute = fp
    if precompute and not fp:
        raise ValueError("precompute=True needs a continuous stream with a shifted S-CC (fully predictive SOI)")
    period = stream._period if stream.spec is None else math.lcm(stream.spec.period, stream.hop)
    steps = math.lcm(period, chunk) // chunk
    shape = (1, *stream.input_frame_shape)
    st = stream.init_state(1)
    warm = -(-stream.warmup // period) * period  # steady state, at phase 0
    with torch.no_grad():
        _, st = stream.step(torch.zeros((*shape, warm), dtype=stream.dtype), st)
        if precompute:  # the cycle's first step follows a precompute, as every later one does
            st = stream.precompute(st)
    x = torch.zeros((*shape, chunk), dtype=stream.dtype)
    macs, pre, nbytes = [], [], 0
    for _ in range(steps):
        macs.append(count_macs(stream, x, st))
        _, st = stream.step(x, st)
        if precompute:
            pre.append(count_macs(stream.precompute, st))
            st = stream.precompute(st)
        else:
            pre.append(0)
        nbytes = max(nbytes, state_nbytes(st))
    return StepCost(chunk, steps, tuple(macs), tuple(pre), nbytes)
