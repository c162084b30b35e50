"""The clock (thinkonce.stream.clock): phases, trace keys and window ends per mode, checked against what
the eager step actually does."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

import thinkonce as to
from thinkonce.stream.clock import Clock


def _mixed_strides() -> nn.Module:
    """Strides 2 and 3 with an upsampling between them: the period is an lcm, not a max."""
    return nn.Sequential(nn.Conv1d(1, 2, 3, stride=2, padding=1), nn.Upsample(scale_factor=4),
                         nn.Conv1d(2, 2, 5, stride=3, padding=2)).eval()


def _counters_after(s: to.Stream, t: int) -> list[int]:
    st = s.init_state(1)
    _, st = s.step(torch.zeros(1, *s.input_frame_shape, t), st)
    return st["@n"][0].tolist() if "@n" in st else []


def test_continuous_clock_period_is_an_lcm_and_layout_phase_repeats() -> None:
    s = to.stream(_mixed_strides(), example_input=torch.zeros(1, 1, 64))
    c = s.clock
    assert c.mode == "continuous" and c.modulus == c.period
    assert c.period % 3 == 0 and c.period % 2 == 0  # lcm of the rates' numerators
    assert c.warmup % c.period == 0 and c.warmup > 0
    for t in [0, 1, 5, c.warmup - 1, c.warmup, c.warmup + 1, c.warmup + 7, 3 * c.warmup + 2]:
        k = c.layout_phase(t)
        assert k <= t and (k == t or (t - k) % c.period == 0)
        assert _counters_after(s, t) == _counters_after(s, k), t  # same layer counters: same layout phase
    # the trace key partitions clock values as t mod period after the warm-up
    for t1 in range(c.warmup, c.warmup + 2 * c.period):
        for t2 in range(c.warmup, c.warmup + 2 * c.period):
            assert (c.trace_key(4, t1) == c.trace_key(4, t2)) == (t1 % c.period == t2 % c.period)
    assert c.trace_key(4, c.warmup - 1) is None


def test_window_clock_phase_and_window_ends() -> None:
    model = nn.Sequential(nn.Conv1d(2, 3, 3, padding=1), nn.MaxPool1d(2), nn.Conv1d(3, 3, 3, stride=3),
                          nn.AdaptiveAvgPool1d(1), nn.Flatten()).eval()
    W, H = 48, 18
    s = to.stream(model, window=W, hop=H)
    c = s.clock
    assert c.mode == "window" and c.warmup == W and c.modulus == math.lcm(H, s.spec.period)
    for t in range(0, 3 * W):
        for n in (0, 1, H - 1, H, 2 * H + 5):
            brute = [e - t for e in range(t + 1, t + n + 1) if e >= W and (e - W) % H == 0]
            assert c.window_ends(t, n) == brute
        assert c.phase(t) == (t if t < W else W + (t - W) % c.modulus)
    # windows emitted by the eager step are the clock's window ends
    x = torch.randn(1, 2, 5 * W)
    st, pos = s.init_state(1), 0
    for n in [7, 30, 1, 0, 40, 18, 55, 13]:
        y, st2 = s.step(x[..., pos:pos + n], st)
        assert y.shape[1] == len(c.window_ends(pos, n))
        st, pos = st2, pos + n


def test_backends_get_a_step_and_a_key_function() -> None:
    """TracedSteps takes the pure step and the clock's key function, not a Stream."""
    from thinkonce.stream.backends import TracedSteps

    calls = []

    def step(x, state):
        calls.append(x.shape[-1])
        return x * 2, dict(state)

    ts = TracedSteps(step, lambda n, st: None, "compiled")  # warm-up keys: always the eager step
    y, _ = ts.step(torch.ones(1, 1, 3), {"@t": torch.zeros(1, dtype=torch.int64)})
    assert calls == [3] and torch.equal(y, torch.full((1, 1, 3), 2.0))
    with pytest.raises(ValueError):
        TracedSteps(step, lambda n, st: None, "eager")


def test_clock_is_immutable() -> None:
    c = Clock("continuous", 4, 8, 4)
    with pytest.raises(Exception):
        c.period = 5  # type: ignore[misc]
