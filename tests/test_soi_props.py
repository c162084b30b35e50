"""SOI property tests: random stacks with S-CCs at random depths, random fills, random chunkings; the
stream (with ``precompute`` calls at random steps for shifted S-CCs) equals the model on the whole signal."""

from __future__ import annotations

import warnings

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import thinkonce as to
import thinkonce.soi as soi
from nets import assert_close

FILLS = soi.EXTRAPOLATE_MODES + soi.INTERPOLATE_MODES


@dataclass(frozen=True)
class Level:
    """One S-CC level: convs before the entry (at the outer rate), the entry, and how the level rejoins."""

    pre: tuple[tuple[int, int], ...]  # (kernel, dilation) of causal convs before the S-CC
    k: int
    d: int
    fp: bool
    fill: str
    join: str  # add | cat | out (the fill is the level's output, cropped to the S-CC's input)


class SoiNet(nn.Module):
    """Levels nested: level i's deep path holds level i+1. Width 3 throughout."""

    def __init__(self, levels: list[Level], post: tuple[tuple[int, int], ...], c_in: int, w: int = 3) -> None:
        super().__init__()
        self.levels = levels
        self.post = post
        self.first = nn.Conv1d(c_in, w, 1)
        self.pre = nn.ModuleList(nn.ModuleList(nn.Conv1d(w, w, k, dilation=d) for k, d in lv.pre) for lv in levels)
        self.entry = nn.ModuleList(
            (soi.ShiftedStridedClonedConv1d if lv.fp else soi.StridedClonedConv1d)(w, w, lv.k, dilation=lv.d)
            for lv in levels)
        self.fills = nn.ModuleList(
            soi.Interpolate(lv.fill) if lv.fill in soi.INTERPOLATE_MODES else soi.Extrapolate(lv.fill, channels=w)
            for lv in levels)
        self.mix = nn.ModuleList(nn.Conv1d(2 * w, w, 1) for _ in levels)
        self.bottom = nn.ModuleList(nn.Conv1d(w, w, k, dilation=d) for k, d in post)
        with torch.no_grad():  # learned fills away from their duplication start, so they are tested
            for f in self.fills:
                for p in f.parameters():
                    p.add_(0.3 * torch.randn_like(p))

    def _causal(self, conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(conv(F.pad(x, ((conv.kernel_size[0] - 1) * conv.dilation[0], 0))))

    def _level(self, i: int, x: torch.Tensor) -> torch.Tensor:
        if i == len(self.levels):
            for conv in self.bottom:
                x = self._causal(conv, x)
            return x
        lv = self.levels[i]
        for conv in self.pre[i]:
            x = self._causal(conv, x)
        deep = self._level(i + 1, torch.relu(self.entry[i](x)))
        up = self.fills[i](deep, like=x)
        if lv.join == "add":
            return x + up
        if lv.join == "cat":
            return self.mix[i](torch.cat([up, x], dim=1))
        return up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._level(0, self.first(x))


kd = st.tuples(st.integers(1, 4), st.integers(1, 2))


@st.composite
def level(draw, fp: bool | None = None) -> Level:
    return Level(tuple(draw(st.lists(kd, max_size=2))), draw(st.integers(1, 4)), draw(st.integers(1, 2)),
                 draw(st.booleans()) if fp is None else fp, draw(st.sampled_from(FILLS)),
                 draw(st.sampled_from(["add", "cat", "out"])))


@st.composite
def case(draw):
    levels = draw(st.lists(level(), min_size=1, max_size=2))
    post = tuple(draw(st.lists(kd, max_size=2)))
    c_in = draw(st.integers(1, 2))
    length = draw(st.integers(9, 70))
    chunks = draw(st.lists(st.integers(0, 9), min_size=1, max_size=6).filter(lambda c: sum(c) > 0))
    pre = draw(st.lists(st.booleans(), min_size=1, max_size=7))
    return levels, post, c_in, length, chunks, pre, draw(st.integers(0, 2**16))


def stream_all(s: to.Stream, x: torch.Tensor, chunks: list[int], pre: list[bool] | None = None) -> torch.Tensor:
    """Concatenated steps + flush; ``pre[i % len]``: call precompute after step i."""
    state = s.init_state(x.shape[0])
    outs, pos, i = [], 0, 0
    while pos < x.shape[-1]:
        c = chunks[i % len(chunks)]
        y, state = s.step(x[..., pos:pos + c], state)
        outs.append(y)
        if pre is not None and pre[i % len(pre)]:
            state = s.precompute(state)
        pos += c
        i += 1
    y, _ = s.flush(state)
    outs.append(y)
    return torch.cat(outs, dim=-1)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case())
def test_random_soi_stacks_exact_under_random_chunkings(c) -> None:
    levels, post, c_in, length, chunks, pre, seed = c
    torch.manual_seed(seed)
    model = SoiNet(levels, post, c_in).eval()
    x = torch.randn(2, c_in, length)
    with torch.no_grad():
        ref = model(x)
    s = to.stream(model, example_input=x)
    assert_close(stream_all(s, x, chunks), ref)
    if any(lv.fp for lv in levels):
        # the deep frames computed ahead must meet full-rate data: every level crops to its input
        assert_close(stream_all(s, x, chunks, pre), ref)


def test_interpolating_fills_report_their_delay() -> None:
    """Slot 2j+1 waits for y[j+1] (nearest, linear: 1 frame) or y[j+2] (cubic: 3 frames)."""
    for fill, want in (("duplicate", 0), ("tconv", 0), ("hybrid", 0), ("nearest", 1), ("linear", 1), ("cubic", 3)):
        model = SoiNet([Level((), 2, 1, False, fill, "add")], (), 1).eval()
        s = to.stream(model, example_input=torch.zeros(1, 1, 64))
        assert s.delay == want, fill


@st.composite
def fp_case(draw):
    levels = draw(st.lists(level(), min_size=1, max_size=2))
    if not any(lv.fp for lv in levels):
        levels[-1] = draw(level(fp=True))
    chunks = draw(st.lists(st.sampled_from([1, 1, 2, 3]), min_size=1, max_size=4))
    pre = draw(st.lists(st.booleans(), min_size=2, max_size=7))
    return levels, chunks, pre, draw(st.sampled_from(["compiled", "compiled", "onnx"])), draw(st.integers(0, 2**16))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fp_case())
def test_traced_backends_stay_exact_with_precompute(c) -> None:
    """Traced graphs are keyed on the clock and the counters precompute moves (StreamOp.layout_keys):
    a graph built on one step is reused only where every counter is the same. Graphs are built on a
    key's first occurrence, so most steady-state steps after the warm-up run a reused graph (without
    the key's counters this fails: a graph for a plain step would run a state after precompute)."""
    levels, chunks, pre, backend, seed = c
    torch.manual_seed(seed)
    model = SoiNet(levels, (), 1).eval()
    x = torch.randn(1, 1, 120)
    with torch.no_grad():
        ref = model(x)
    s = to.stream(model, example_input=x, backend=backend)
    assert s._traced is not None
    s._traced.trace_after = 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a graph that cannot be built runs eagerly (same results)
        assert_close(stream_all(s, x, chunks, pre), ref)
