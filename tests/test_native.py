"""backend="native": generated C steps equal the eager steps (outputs and state), chunk after chunk.

Each test checks that the native path really ran (a compiled step was built and no fallback warning
was raised), so a silent eager fallback cannot make a test pass. Compiled libraries go to a
per-test cache directory (``XDG_CACHE_HOME``).
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import thinkonce as to
from nets import SmallUNet as UNet
from nets import assert_close, conv_block, random_net_case, upsampling_block
from thinkonce.native import backend as native_backend
from thinkonce.native.compiler import why_no_toolchain
from thinkonce.native.loader import NativeStep

pytestmark = pytest.mark.skipif(not native_backend.available(), reason=f"native backend: {why_no_toolchain()}")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _native_steps(s) -> int:
    return sum(isinstance(f, NativeStep) for f in s._traced.cache.values())


def _lockstep(eager, native, x: torch.Tensor, chunks: list[int], donate: bool = False) -> None:
    """Step both streams over ``x`` from a cold state; outputs and every state entry must agree."""
    b = x.shape[0]
    se, sn = eager.init_state(b), native.init_state(b)
    pos, i = 0, 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager is a failure here
        while pos < x.shape[-1]:
            c = chunks[i % len(chunks)]
            piece = x[..., pos:pos + c]
            ye, se = eager.step(piece, se)
            yn, sn = native.step(piece, sn, donate=donate)
            assert_close(yn, ye)
            assert se.keys() == sn.keys()
            for k in se:
                assert sn[k].shape == se[k].shape, k
                a, e = sn[k].double(), se[k].double()
                same = (a == e) | (a.isnan() & e.isnan())  # equal infinities (max-pool padding) count as equal
                assert_close(torch.where(same, 0.0, a), torch.where(same, 0.0, e))
            pos += c
            i += 1
    assert _native_steps(native) >= 1


@st.composite
def _stack(draw):
    blocks = draw(st.lists(conv_block(), min_size=1, max_size=4))
    if draw(st.booleans()):
        blocks.insert(draw(st.integers(0, len(blocks))), draw(upsampling_block()))
    return blocks, draw(st.integers(1, 3)), draw(st.integers(0, 2**16)), draw(st.sampled_from([1, 3]))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_stack())
def test_random_stacks_match_eager_and_offline(case) -> None:
    """Random stacks (strides, dilation, groups, padding, max/avg pooling, residuals, concatenations,
    BatchNorm, GELU, transposed convs, upsampling), batch 1 or 3, continuous mode, many steps."""
    blocks, c_in, seed, batch = case
    case = random_net_case(blocks, c_in, seed, batch, 160)
    if case is None:
        return  # the drawn stack does not fit this length offline either
    model, x, _ = case
    eager = to.stream(model, example_input=x[:1])
    native = to.stream(model, example_input=x[:1], backend="native")
    chunk = 2 * eager._period
    # long enough for steady-state steps to recur after the warm-up (they run native from then on)
    x = torch.randn(batch, c_in, max(160, eager.warmup + 6 * chunk))
    with torch.no_grad():
        ref = model(x)
    _lockstep(eager, native, x, [chunk])
    if ref.numel():
        assert_close(native.run(x, chunk=chunk), ref)


def _reference_nets():
    from thinkonce.models import acc_seizure, eeg_seizure, ppg_hr

    return [("ppg", ppg_hr, 256, 64), ("eeg", eeg_seizure, 1024, 256), ("acc", acc_seizure, 960, 160)]


@pytest.mark.parametrize("name,make,window,hop", _reference_nets(), ids=[n[0] for n in _reference_nets()])
def test_reference_nets_window_mode(name, make, window, hop) -> None:
    """The three reference networks at their window/hop, batch 1 and 3, from a cold state. (The
    streams' own self-check is skipped: the eager stream is the oracle here, and test_reference_nets
    checks it against the model.)"""
    torch.manual_seed(0)
    model = make().eval()
    eager = to.stream(model, window=window, hop=hop, check=False)
    native = to.stream(model, window=window, hop=hop, backend="native", check=False)
    c = eager.input_frame_shape[0]
    for batch in (1, 3):
        x = torch.randn(batch, c, window + 4 * hop)
        _lockstep(eager, native, x, [window] + [hop] * 4)


def test_donated_state_is_updated_in_place_with_the_same_values() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv1d(2, 8, 5, padding=2), nn.ReLU(), nn.Conv1d(8, 4, 3, dilation=2)).eval()
    eager = to.stream(model, example_input=torch.zeros(1, 2, 64))
    native = to.stream(model, example_input=torch.zeros(1, 2, 64), backend="native")
    x = torch.randn(3, 2, 40 * 4)
    _lockstep(eager, native, x, [4], donate=True)
    st = native.init_state(3)
    for i in range(0, 64, 4):
        _, st = native.step(x[..., i:i + 4], st)
    before = {k: v.data_ptr() for k, v in st.items()}
    _, st2 = native.step(x[..., 64:68], st, donate=True)
    reused = [k for k in st2 if k in before and st2[k].data_ptr() == before[k] and k != "@t"]
    assert reused, "donate=True wrote no state entry in place"


def test_unet_with_transposed_convs_and_skips() -> None:
    torch.manual_seed(0)
    model = UNet().eval()
    eager = to.stream(model, example_input=torch.zeros(1, 2, 64))
    native = to.stream(model, example_input=torch.zeros(1, 2, 64), backend="native")
    _lockstep(eager, native, torch.randn(3, 2, 200), [8])


def test_window_mode_with_linear_head_and_hop_one() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv1d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv1d(8, 8, 3, padding=1, dilation=1),
                          nn.Flatten(), nn.Linear(8 * 32, 2)).eval()
    eager = to.stream(model, window=32, hop=1)
    native = to.stream(model, window=32, hop=1, backend="native")
    _lockstep(eager, native, torch.randn(1, 1, 32 + 20), [32] + [1] * 20)


def test_op_without_emitter_falls_back_with_a_warning_naming_it(monkeypatch) -> None:
    from thinkonce.native import registry

    monkeypatch.delitem(registry._EMITTERS, "aten.tanh")
    model = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.Tanh()).eval()
    s = to.stream(model, example_input=torch.zeros(1, 1, 32), backend="native")
    st = s.init_state(1)
    x = torch.randn(1, 1, 200)
    with pytest.warns(RuntimeWarning, match=r"aten\.tanh"):
        y = s.run(x, chunk=4)
    assert_close(y, model(x).detach())


def test_no_compiler_warns_once_and_runs_eagerly(monkeypatch) -> None:
    monkeypatch.setattr(native_backend, "find_toolchain", lambda: None)
    monkeypatch.setattr(native_backend, "_WARNED_NO_COMPILER", False)
    model = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.ReLU()).eval()
    with pytest.warns(RuntimeWarning, match="steps run eagerly"):
        s = to.stream(model, example_input=torch.zeros(1, 1, 32), backend="native")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s2 = to.stream(model, example_input=torch.zeros(1, 1, 32), backend="native")  # once per process
    x = torch.randn(1, 1, 64)
    assert_close(s2.run(x, chunk=4), model(x).detach())
    assert s._traced is None


def test_compiled_libraries_are_cached_under_xdg_cache_home(tmp_path) -> None:
    model = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.ReLU()).eval()
    x = torch.randn(1, 1, 64)
    to.stream(model, example_input=torch.zeros(1, 1, 32), backend="native").run(x, chunk=4)
    libs = sorted((tmp_path / "cache" / "thinkonce" / "native").glob("*.so"))
    assert libs
    stamp = [p.stat().st_mtime_ns for p in libs]
    to.stream(model, example_input=torch.zeros(1, 1, 32), backend="native").run(x, chunk=4)
    again = sorted((tmp_path / "cache" / "thinkonce" / "native").glob("*.so"))
    assert again == libs and [p.stat().st_mtime_ns for p in again] == stamp  # reloaded, not rebuilt
