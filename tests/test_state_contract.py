"""The state contract: a fixed layout from init_state() on, checked by step; fingerprints on files;
concatenating states of two streams at the same phase."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import thinkonce as to
from thinkonce.errors import StateFileError, StreamInputError
from nets import RandomNet, stack_case


class Branchy(nn.Module):
    """Branches with different look-ahead (queues), a trim (ConvTranspose padding), stride > span."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv1d(2, 4, 5, padding=2)
        self.b = nn.Conv1d(2, 4, 3, padding=0)
        self.s = nn.Conv1d(4, 4, 1, stride=3)
        self.up = nn.ConvTranspose1d(4, 4, 4, stride=3, padding=2)

    def forward(self, x):
        h = F.relu(self.a(x)) + F.pad(self.b(x), (2, 0))
        return self.up(self.s(h))


def _layout(state: dict) -> dict:
    return {k: (tuple(v.shape), v.dtype) for k, v in state.items()}


def _streams():
    torch.manual_seed(0)
    cont = to.stream(Branchy().eval(), example_input=torch.zeros(1, 2, 64))
    win_model = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2),
                              nn.Conv1d(4, 4, 3, padding=1), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                              nn.Linear(4, 2)).eval()
    win = to.stream(win_model, window=32, hop=8, example_input=torch.zeros(1, 2, 32))
    return cont, win


@pytest.mark.parametrize("which", [0, 1])
def test_layout_is_fixed_at_every_phase(which) -> None:
    s = _streams()[which]
    state = s.init_state(3)
    spec = s.state_spec()
    assert set(spec) == set(state)
    want = {k: ((3, *f.shape), f.dtype) for k, f in spec.items()}
    assert _layout(state) == want
    x = torch.randn(3, 2, 300)
    pos = 0
    for c in [0, 1, 5, 2, 17, 3, 8, 1, 40, 9, 0, 64]:
        _, state = s.step(x[..., pos: pos + c], state)
        pos += c
        assert _layout(state) == want
    assert "@n" in spec and "@fp" in spec and str(spec).startswith("StateSpec(")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stack_case(["step"]), st.lists(st.integers(0, 9), min_size=3, max_size=8))
def test_random_stacks_keep_their_layout(case, chunks) -> None:
    blocks, c_in, seed, _ = case
    torch.manual_seed(seed)
    model = RandomNet(blocks, c_in).eval()
    x = torch.randn(2, c_in, 120)
    try:
        with torch.no_grad():
            ref = model(x)
    except RuntimeError:
        return
    s = to.stream(model, example_input=x[:1])
    state = s.init_state(2)
    want = _layout(state)
    outs, pos, i = [], 0, 0
    while pos < x.shape[-1]:
        c = chunks[i % len(chunks)] or 1
        y, state = s.step(x[..., pos: pos + c], state)
        assert _layout(state) == want
        outs.append(y)
        pos, i = pos + c, i + 1
    outs.append(s.flush(state)[0])
    y = torch.cat(outs, dim=-1)
    scale = max(1.0, float(ref.abs().max())) if ref.numel() else 1.0
    assert y.shape == ref.shape and (not ref.numel() or float((y - ref).abs().max()) <= 1e-5 * scale)


@pytest.mark.parametrize("which", [0, 1])
def test_states_of_two_streams_at_the_same_phase_concatenate(which) -> None:
    s = _streams()[which]
    xa, xb = torch.randn(2, 2, 200), torch.randn(3, 2, 200)
    sa, sb = s.init_state(2), s.init_state(3)
    _, sa = s.step(xa[..., :37], sa)
    _, sb = s.step(xb[..., :37], sb)
    both = {k: torch.cat([sa[k], sb[k]]) for k in sa}
    y, new = s.step(torch.cat([xa, xb])[..., 37:], both)
    ya, _ = s.step(xa[..., 37:], sa)
    yb, _ = s.step(xb[..., 37:], sb)
    torch.testing.assert_close(y, torch.cat([ya, yb]), rtol=1e-6, atol=1e-6)


def _raises(s, state, *words) -> None:
    before = {k: v.clone() for k, v in state.items() if isinstance(v, torch.Tensor)}
    with pytest.raises(StreamInputError) as e:
        s.step(torch.zeros(1, 2, 4), state)
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    for k, v in before.items():
        assert torch.equal(state[k], v)


def test_step_rejects_states_off_the_spec() -> None:
    s, _ = _streams()
    state = s.init_state(1)
    _, state = s.step(torch.randn(1, 2, 21), state)
    buf = next(k for k, f in s.state_spec().items() if f.time_axis is not None)
    missing = {k: v for k, v in state.items() if k != buf}
    _raises(s, missing, repr(buf), "missing")
    _raises(s, {**state, "extra": torch.zeros(1)}, "'extra'")
    short = dict(state)
    short[buf] = state[buf][..., 1:]
    _raises(s, short, repr(buf), "frames on its time axis")
    wrong = dict(state)
    wrong[buf] = state[buf].double()
    _raises(s, wrong, repr(buf), "float32")
    shifted = dict(state)
    shifted["@t"] = state["@t"] + 1
    _raises(s, shifted, "shifted clock", "'@n'")
    other = dict(state)
    other["@fp"] = state["@fp"] + 1
    _raises(s, other, "'@fp'", "fingerprint")


def test_fingerprint_depends_on_weights_window_and_edge() -> None:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv1d(1, 2, 3, padding=1), nn.AdaptiveAvgPool1d(1), nn.Flatten()).eval()
    a = to.stream(m, window=16, hop=4, example_input=torch.zeros(1, 1, 16))
    b = to.stream(m, window=16, hop=4, example_input=torch.zeros(1, 1, 16))
    assert a.fingerprint == b.fingerprint
    assert to.stream(m, window=16, hop=8, example_input=torch.zeros(1, 1, 16)).fingerprint != a.fingerprint
    assert to.stream(m, window=16, hop=4, edge="stale", example_input=torch.zeros(1, 1, 16)).fingerprint != a.fingerprint
    with torch.no_grad():
        m[0].weight[0, 0, 0] += 1e-3
    assert to.stream(m, window=16, hop=4, example_input=torch.zeros(1, 1, 16)).fingerprint != a.fingerprint


def test_saved_states_carry_the_fingerprint(tmp_path) -> None:
    s, w = _streams()
    state = s.init_state(2)
    _, state = s.step(torch.randn(2, 2, 13), state)
    p = tmp_path / "s.safetensors"
    to.save_state(p, state)
    loaded = to.load_state(p, stream=s)
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    with pytest.raises(StateFileError, match="another stream"):
        to.load_state(p, stream=w)
    data = p.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(StateFileError, match="corrupted or truncated"):
        to.load_state(tmp_path / "cut.safetensors", stream=s)
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(StateFileError, match="corrupted or truncated"):
        to.load_state(tmp_path / "junk.safetensors")


def test_pool_restore_checks_the_fingerprint(tmp_path) -> None:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv1d(1, 2, 3, padding=1), nn.AdaptiveAvgPool1d(1), nn.Flatten()).eval()
    a = to.stream(m, window=16, hop=4, example_input=torch.zeros(1, 1, 16))
    pool = to.StreamPool(a, checkpoint_dir=tmp_path)
    pool.add("x")
    pool.submit("x", torch.randn(1, 40))
    pool.process()
    pool.checkpoint()
    with torch.no_grad():
        m[0].bias += 1.0
    b = to.stream(m, window=16, hop=4, example_input=torch.zeros(1, 1, 16))
    with pytest.raises(to.ThinkonceError, match="fingerprint"):
        to.StreamPool.restore(b, tmp_path)
    to.StreamPool.restore(a, tmp_path)
    (tmp_path / "pool.safetensors").write_bytes((tmp_path / "pool.safetensors").read_bytes()[:100])
    with pytest.raises(to.ThinkonceError, match="corrupted or truncated"):
        to.StreamPool.restore(a, tmp_path)
