"""Stream.bind: the hot-loop object equals Stream.step on eager, step after step, and its state stays a
state of the stream (saved, restored, handed back to Stream.step).

Native tests check that compiled calls really ran (``compiled_phases``), so a silent fallback to
Stream.step cannot make them pass. Also here: the refusals of the bound (NaN, a replaced input
buffer, a state stepped elsewhere) and those of Stream.step on donated states, whose layout check is
skipped for the very tensors it checked last (tests/test_state*.py hold the rest).
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import thinkonce as to
from nets import assert_close, conv_block, random_net_case, upsampling_block
from thinkonce.errors import StreamInputError
from thinkonce.native import backend as native_backend
from thinkonce.native.compiler import why_no_toolchain

needs_cc = pytest.mark.skipif(not native_backend.available(), reason=f"native backend: {why_no_toolchain()}")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _same_state(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].shape == want[k].shape and got[k].dtype == want[k].dtype, k
        a, e = got[k].double(), want[k].double()
        same = (a == e) | (a.isnan() & e.isnan())  # equal infinities (max-pool padding) compare equal
        assert_close(torch.where(same, 0.0, a), torch.where(same, 0.0, e))


def _bound_vs_eager(eager, fast, x: torch.Tensor, chunk: int, state=None, estate=None):
    """Bind ``fast`` at ``chunk``, feed ``x`` through ``bound.x``; every output and the final state must
    equal the eager stream's Stream.step. Returns the bound and the eager state."""
    b = x.shape[0]
    bound = fast.bind(fast.init_state(b) if state is None else state, chunk=chunk)
    se = eager.init_state(b) if estate is None else estate
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager is a failure here
        for i in range(0, x.shape[-1] - chunk + 1, chunk):
            piece = x[..., i:i + chunk]
            bound.x[...] = piece
            y = bound()
            assert y is bound.y
            ye, se = eager.step(piece, se)
            assert_close(y, ye)
    _same_state(bound.state, se)
    return bound, se


@st.composite
def _case(draw):
    blocks = draw(st.lists(conv_block(), min_size=1, max_size=3))
    if draw(st.booleans()):
        blocks.insert(draw(st.integers(0, len(blocks))), draw(upsampling_block()))
    return (blocks, draw(st.integers(1, 2)), draw(st.integers(0, 2**16)), draw(st.sampled_from([1, 3])),
            draw(st.sampled_from([1, 2, 3, "period"])))


@needs_cc
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_case())
def test_random_stacks_bound_equals_eager_steps(case) -> None:
    """Random stacks (strides, dilation, pooling, residuals, upsampling, BatchNorm, ...), batch 1 or 3,
    chunks of 1-3 samples or a stride period, through the warm-up and many steady-state cycles."""
    blocks, c_in, seed, batch, chunk = case
    case = random_net_case(blocks, c_in, seed, batch, 160)
    if case is None:
        return  # the drawn stack does not fit this length offline either
    model, x, _ = case
    eager = to.stream(model, example_input=x[:1], check=False)
    native = to.stream(model, example_input=x[:1], backend="native", check=False)
    chunk = eager._period if chunk == "period" else chunk
    cycle = eager.clock.modulus // __import__("math").gcd(eager.clock.modulus, chunk)
    n = eager.warmup + chunk * cycle * 4 + chunk  # every phase occurs >= 2x after the warm-up
    bound, se = _bound_vs_eager(eager, native, torch.randn(batch, c_in, n), chunk)
    built, total = bound.compiled_phases
    assert total == cycle and built >= 1
    # save/restore round trip: a bound on the loaded state continues exactly as the eager stream
    with tempfile.TemporaryDirectory() as d:
        to.save_state(Path(d) / "s.safetensors", bound.state)
        loaded = to.load_state(Path(d) / "s.safetensors", stream=native)
    _same_state(loaded, bound.state)
    again, _ = _bound_vs_eager(eager, native, torch.randn(batch, c_in, 2 * cycle * chunk), chunk, loaded, se)
    assert again.compiled_phases[0] >= 1


def _anchor():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from streaming import AnchorNet, Trunk

    return Trunk(AnchorNet().eval()).eval()


@needs_cc
def test_anchor_trunk_at_hop_one_and_batch_three() -> None:
    torch.manual_seed(0)
    model = _anchor()
    eager = to.stream(model, example_input=torch.zeros(1, 1, 256), check=False)
    native = to.stream(model, example_input=torch.zeros(1, 1, 256), backend="native", check=False)
    for batch, chunk in ((1, 1), (3, 5)):
        # the warm-up in one chunk (eager either way), then many steady-state cycles
        x0 = torch.randn(batch, 1, eager.warmup)
        st0 = native.step(x0, native.init_state(batch))[1]
        se0 = eager.step(x0, eager.init_state(batch))[1]
        bound, _ = _bound_vs_eager(eager, native, torch.randn(batch, 1, 60 * chunk), chunk, st0, se0)
        built, total = bound.compiled_phases
        assert built == total > 0


@needs_cc
def test_ppg_window_mode_at_the_hop_and_half_hop() -> None:
    """Window mode: outputs only where a window completes (one buffer per phase, shapes differ)."""
    from thinkonce.models import ppg_hr

    torch.manual_seed(0)
    model = ppg_hr().eval()
    eager = to.stream(model, window=256, hop=64, check=False)
    native = to.stream(model, window=256, hop=64, backend="native", check=False)
    for chunk in (64, 32):
        bound, _ = _bound_vs_eager(eager, native, torch.randn(1, 1, 256 + 6 * 64), chunk)
        assert bound.compiled_phases[0] == bound.compiled_phases[1] > 0


def test_eager_backend_bound_falls_back_to_step_and_stays_equal() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv1d(2, 6, 5, stride=2), nn.ReLU(), nn.Conv1d(6, 3, 3, dilation=2)).eval()
    eager = to.stream(model, example_input=torch.zeros(1, 2, 64))
    bound, _ = _bound_vs_eager(eager, eager, torch.randn(2, 2, 90), 3)
    assert bound.compiled_phases == (0, 0)


@needs_cc
def test_save_restore_round_trip_and_state_handed_back_to_step(tmp_path) -> None:
    """bound.state saves and loads as a state of the stream; a bound on the loaded state, Stream.step
    on it, and the original bound all continue identically."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv1d(1, 8, 5, stride=2), nn.ReLU(), nn.MaxPool1d(2), nn.Conv1d(8, 4, 3)).eval()
    native = to.stream(model, example_input=torch.zeros(1, 1, 64), backend="native")
    x = torch.randn(1, 1, 400)
    bound = native.bind(native.init_state(1), chunk=2)
    for i in range(0, 200, 2):
        bound.step(x[..., i:i + 2])
    assert bound.compiled_phases[0] > 0
    to.save_state(tmp_path / "s.safetensors", bound.state)
    loaded = to.load_state(tmp_path / "s.safetensors", stream=native)
    _same_state(loaded, bound.state)
    again = native.bind(loaded, chunk=2)
    st = bound.state  # Stream.step on it is pure: the bound's tensors are not touched
    for i in range(200, 400, 2):
        piece = x[..., i:i + 2]
        y_step, st = native.step(piece, st)
        y1 = bound.step(piece).clone()
        y2 = again.step(piece)
        assert torch.equal(y1, y2) and torch.equal(y1, y_step)
    _same_state(bound.state, again.state)
    _same_state(bound.state, st)
    bound.check()


@needs_cc
def test_bound_refuses_nan_foreign_states_and_a_replaced_buffer() -> None:
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv1d(1, 4, 3, stride=2), nn.ReLU(), nn.Conv1d(4, 2, 3)).eval()
    s = to.stream(model, example_input=torch.zeros(1, 1, 32), backend="native")
    other = to.stream(nn.Sequential(nn.Conv1d(1, 4, 3, stride=2), nn.ReLU(), nn.Conv1d(4, 2, 3)).eval(),
                      example_input=torch.zeros(1, 1, 32))
    with pytest.raises(StreamInputError, match="fingerprint"):
        s.bind(other.init_state(1))
    with pytest.raises(ValueError, match="chunk"):
        s.bind(s.init_state(1), chunk=0)
    bound = s.bind(s.init_state(1), chunk=1)
    for _ in range(200):
        bound()
    assert bound.compiled_phases[0] == bound.compiled_phases[1] > 0
    before = {k: v.clone() for k, v in bound.state.items()}
    for bad in (float("nan"), float("inf")):
        bound.x.fill_(bad)
        with pytest.raises(StreamInputError, match="NaN or Inf"):
            bound()
        _same_state(bound.state, before)  # refused before anything was computed
    with pytest.raises(AttributeError, match="write into it"):
        bound.x = torch.zeros(1, 1, 1)
    bound.x.zero_()
    # the state is the bound's: replacing an entry of the dict it hands out changes nothing
    view = bound.state
    view["@t"] = torch.full_like(view["@t"], 12345)
    bound()
    assert bound.t == 201


@needs_cc
def test_bound_notices_its_state_stepped_elsewhere() -> None:
    """Donating bound.state to Stream.step moves the clock behind the bound: the next call goes through
    Stream.step (full checks) and the bound resynchronises; an odd shift of a stride-2 clock is refused."""
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv1d(1, 4, 3, stride=2), nn.ReLU(), nn.Conv1d(4, 2, 3)).eval()
    s = to.stream(model, example_input=torch.zeros(1, 1, 32), backend="native")
    e = to.stream(model, example_input=torch.zeros(1, 1, 32))
    bound = s.bind(s.init_state(1), chunk=1)
    se = e.init_state(1)
    x = torch.randn(1, 1, 300)
    for i in range(100):
        bound.step(x[..., i:i + 1])
        _, se = e.step(x[..., i:i + 1], se)
    st = bound.state
    for i in range(100, 103):  # stepped in place, elsewhere
        _, st = s.step(x[..., i:i + 1], st, donate=True)
        _, se = e.step(x[..., i:i + 1], se)
    for i in range(103, 200):
        assert_close(bound.step(x[..., i:i + 1]), e.step(x[..., i:i + 1], se)[0])
        _, se = e.step(x[..., i:i + 1], se)
    _same_state(bound.state, se)
    assert bound.compiled_phases[0] > 0
    bound.state["@t"].add_(1)  # a shifted clock (the counters no longer fit): refused, not run
    with pytest.raises(StreamInputError, match="does not match the clock"):
        bound()


@needs_cc
def test_step_still_refuses_donated_states_changed_after_their_check() -> None:
    """Stream.step skips the layout comparison for the very tensors it checked on the last donated
    step; any change to them through torch (in-place ops bump version counters) or to the dict is
    seen, and the values (fingerprint, clock) are checked every time."""
    torch.manual_seed(7)
    model = nn.Sequential(nn.Conv1d(1, 4, 3, stride=2), nn.ReLU(), nn.Conv1d(4, 2, 3)).eval()
    s = to.stream(model, example_input=torch.zeros(1, 1, 32), backend="native")
    x = torch.randn(1, 1, 1)

    def warm():
        st = s.init_state(1)
        for _ in range(60):
            _, st = s.step(x, st, donate=True)
        return st

    buf = next(k for k in s.state_spec() if not k.startswith("@"))
    st = warm()
    st[buf].resize_(*st[buf].shape[:-1], st[buf].shape[-1] + 1)
    with pytest.raises(StreamInputError, match="has shape"):
        s.step(x, st, donate=True)
    st = warm()
    st[buf] = st[buf][..., :-1]
    with pytest.raises(StreamInputError, match="has shape"):
        s.step(x, st, donate=True)
    st = warm()
    st[buf].unsqueeze_(0)
    with pytest.raises(StreamInputError, match="has shape"):
        s.step(x, st, donate=True)
    st = warm()
    del st[buf]
    with pytest.raises(StreamInputError, match="missing"):
        s.step(x, st, donate=True)
    st = warm()
    st["@fp"].numpy()[0] ^= 1  # written around torch: no version bump, still read and refused
    with pytest.raises(StreamInputError, match="fingerprint"):
        s.step(x, st, donate=True)
    st = warm()
    st["@t"].numpy()[0] += 1
    with pytest.raises(StreamInputError, match="does not match the clock"):
        s.step(x, st, donate=True)
    st = warm()
    st[buf] = st[buf].double()
    with pytest.raises(StreamInputError, match="dtype"):
        s.step(x, st, donate=True)
    st = warm()
    _, st = s.step(x, st, donate=True)  # unchanged: accepted
