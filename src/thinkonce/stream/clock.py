"""The clock of a stream: which phase a sample count ``t`` is at, per mode, computed once.

A step's control flow (how many frames each op emits, where window ends fall) depends on the chunk
length and on the samples seen so far, never on the data. After a warm-up it depends on ``t`` only
modulo a *modulus*: the stride period (the lcm of every value's frame rate, so that every op is back
at the same stride phase) in continuous mode, its lcm with the hop in window mode (window ends fall
every hop). Before the warm-up every clock value is its own phase.

The backends (traced steps, ONNX export) and the state checks ask the clock instead of re-deriving
these numbers from a :class:`~thinkonce.stream.stream.Stream`'s internals:

* :meth:`Clock.phase` - the control-flow phase of ``t`` (the branch an exported step takes);
* :meth:`Clock.trace_key` - what a traced graph is specialised to (None: warm-up, run eagerly);
* :meth:`Clock.layout_phase` - the shortest zero history with the same layer counters as ``t``;
* :meth:`Clock.window_ends` - the window ends a chunk completes (window mode).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .convert import Plan
from .window import WindowSpec, stride_period


@dataclass(frozen=True)
class Clock:
    """Phase arithmetic of one stream (immutable; build with :meth:`continuous` or :meth:`windowed`).

    ``period``: the stride period (samples after which every op is at the same stride phase).
    ``warmup``: samples after which the control flow depends on ``t`` modulo ``modulus`` only (the
    continuous stream's start-up, a multiple of ``period``; the first window in window mode).
    ``modulus``: ``period`` (continuous) or ``lcm(hop, period)`` (window).
    """

    mode: str  # "continuous" | "window"
    period: int
    warmup: int
    modulus: int
    window: int | None = None
    hop: int | None = None

    @classmethod
    def continuous(cls, plan: Plan) -> "Clock":
        """Warm-up: twice the largest receptive field (in samples), rounded up to the period; by then
        every buffer has reached its steady fill, so counters repeat with the period."""
        period, _ = stride_period(plan)
        rf = int(max(p.rf for p in plan.nodes if p.temporal)) + 1
        return cls("continuous", period, -(-2 * rf // period) * period, period)

    @classmethod
    def windowed(cls, spec: WindowSpec) -> "Clock":
        """The stream starts from a pre-rolled state (a zero history of a period multiple), so layer
        counters repeat with the period from ``t = 0``; outputs start with the first window."""
        return cls("window", spec.period, spec.window, math.lcm(spec.hop, spec.period), spec.window, spec.hop)

    def phase(self, t: int) -> int:
        """``t`` during the warm-up, then ``warmup + (t - warmup) mod modulus``."""
        return t if t < self.warmup else self.warmup + (t - self.warmup) % self.modulus

    def trace_key(self, n: int, t: int) -> tuple[int, int] | None:
        """The key a traced step for a chunk of ``n`` samples at clock ``t`` is specialised to; None
        during the warm-up, whose steps occur once each and run eagerly."""
        return None if t < self.warmup else (n, self.phase(t))

    def layout_phase(self, t: int) -> int:
        """The sample count of the shortest zero history whose layer counters equal those after ``t``
        samples (continuous: ``t`` in the warm-up, then periodic; window: ``t`` mod the period)."""
        if self.mode == "window":
            return t % self.period
        return self.phase(t)

    def window_ends(self, t: int, n: int) -> list[int]:
        """Window ends ``e`` in ``(t, t + n]`` (``e >= window``, ``(e - window) % hop == 0``), as offsets
        into the chunk (``e - t``)."""
        if self.window is None or self.hop is None:
            return []
        W, H = self.window, self.hop
        first = W if t < W else W + (-(-(t + 1 - W) // H)) * H
        return [e - t for e in range(first, t + n + 1, H)]
