"""Window mode (StreamiNNC): each window's output equals the model on the window extended to the left
(signal padding) with features cropped before the head; deviation from normal inference is reported."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import thinkonce as to
from nets import RandomNet, conv_block

TOL = 1e-5


def extended_reference(s: to.Stream, x: torch.Tensor, n_windows: int) -> torch.Tensor:
    """Run every window on its extended input: `extension` samples before it (zeros before the start)."""
    E, W, H = s.extension, s.window, s.hop
    xp = torch.cat([x.new_zeros(*x.shape[:-1], E), x], dim=-1)
    return torch.stack([s.reference(xp[..., k * H : k * H + W + E]) for k in range(n_windows)], dim=1)


@st.composite
def window_case(draw):
    blocks = draw(st.lists(conv_block(), min_size=1, max_size=5))
    head = draw(st.sampled_from(["linear", "mean", "adaptive", None]))
    c_in = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**16))
    chunks = draw(st.lists(st.integers(0, 70), min_size=1, max_size=8).filter(lambda c: sum(c) > 0))
    mult = draw(st.integers(1, 4))
    wmult = draw(st.integers(2, 5))
    return blocks, head, c_in, seed, chunks, mult, wmult


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(window_case())
def test_random_window_streams_match_extended_windows(case) -> None:
    blocks, head, c_in, seed, chunks, mult, wmult = case
    torch.manual_seed(seed)
    probe = RandomNet(blocks, c_in).eval()
    W0 = 96
    try:
        with torch.no_grad():
            frames = probe(torch.zeros(1, c_in, W0)).shape[-1]
    except RuntimeError:
        return
    if frames < 2:
        return
    model = RandomNet(blocks, c_in, head=head, frames=frames).eval()
    # hop: a multiple of the trunk's stride period
    period = 1
    for b in blocks:
        if b.kind in ("conv", "causal", "pool"):
            period *= b.s
    H = period * mult
    if H > W0:
        return
    s = to.stream(model, window=W0, hop=H, example_input=torch.zeros(1, c_in, W0))
    x = torch.randn(2, c_in, W0 + 5 * H + 3)
    state = s.init_state(2)
    outs, pos, i = [], 0, 0
    while pos < x.shape[-1]:
        c = chunks[i % len(chunks)]
        y, state = s.step(x[..., pos : pos + c], state)
        outs.append(y)
        pos += c
        i += 1
    y = torch.cat(outs, dim=1)
    n_win = (x.shape[-1] - W0) // H + 1
    assert y.shape[1] == n_win
    ref = extended_reference(s, x, n_win)
    scale = max(1.0, float(ref.abs().max()))
    assert float((y - ref).abs().max()) <= TOL * scale


class SmallNet(nn.Module):
    """Hand-checkable trunk (conv 'same' -> maxpool 4 -> conv -> avgpool 2) and Flatten+Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(3, 8, 5, padding=2)
        self.p1 = nn.MaxPool1d(4)
        self.c2 = nn.Conv1d(8, 8, 3, padding="same")
        self.p2 = nn.AvgPool1d(2)
        self.fc = nn.Linear(8 * 16, 5)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        h = self.p1(F.relu(self.c1(x)))
        return self.p2(h + F.relu(self.c2(h)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.trunk(x), 1))


def test_reference_is_signal_padding_written_by_hand() -> None:
    torch.manual_seed(1)
    m = SmallNet().eval()
    s = to.stream(m, window=128, hop=32)
    assert s.extension == 8  # left padding reach 2 + 1 x 4 = 6 samples, rounded up to the stride period 8
    x = torch.randn(1, 3, 128 + s.extension)
    with torch.no_grad():
        feats = m.trunk(x)[..., -16:]  # crop the extension's features before the head
        hand = m.fc(torch.flatten(feats, 1))
    torch.testing.assert_close(s.reference(x), hand, rtol=0, atol=1e-6)


def test_window_outputs_and_verify_report() -> None:
    torch.manual_seed(2)
    m = SmallNet().eval()
    s = to.stream(m, window=128, hop=32)
    x = torch.randn(1, 3, 128 + 32 * 10)
    y = s.run(x)
    assert y.shape == (1, 11, 5)
    ref = extended_reference(s, x, 11)
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-5)
    # first window: no history, exactly the zero-padded model on [zeros, window]
    rep = to.verify(m, s, x[0])
    assert rep.n_outputs == 11 and 0 < rep.nrmse < 0.2
    assert rep.max_abs_error > 1e-4  # zero padding really differs from signal padding here


def test_stale_edge_is_cheaper_and_deviates() -> None:
    torch.manual_seed(3)
    m = SmallNet().eval()
    exact = to.stream(m, window=128, hop=32)
    stale = to.stream(m, window=128, hop=32, edge="stale")
    x = torch.randn(1, 3, 128 + 32 * 6)
    assert float((exact.run(x) - stale.run(x)).abs().max()) > 1e-4
    st_e, st_s = exact.init_state(), stale.init_state()
    _, st_e = exact.step(x[..., :128], st_e)
    _, st_s = stale.step(x[..., :128], st_s)
    chunk = x[..., 128:160]
    assert to.count_macs(stale, chunk, st_s) < to.count_macs(exact, chunk, st_e)


def test_step_macs_near_ideal() -> None:
    """A hop costs the new frames of every layer plus the head (plus a few right-edge frames)."""
    m = SmallNet().eval()
    W, H = 512, 128
    m.fc = nn.Linear(8 * 64, 5).eval()
    s = to.stream(m, window=W, hop=H)
    st = s.init_state()
    _, st = s.step(torch.randn(1, 3, W), st)
    step = to.count_macs(s, torch.randn(1, 3, H), st)
    full = to.count_macs(m, torch.randn(1, 3, W))
    head = to.count_macs(m.fc, torch.randn(1, 8 * 64))
    ideal = (full - head) * H / W + head
    assert ideal <= step <= 1.1 * ideal, (step, ideal)


def test_misaligned_hop_is_refused_with_allowed_hops() -> None:
    m = SmallNet().eval()
    with pytest.raises(to.AlignmentError, match=r"hop=12 breaks pooling alignment.*multiples of 8: 8, 16"):
        to.stream(m, window=128, hop=12)


def test_window_flush_is_empty() -> None:
    m = SmallNet().eval()
    s = to.stream(m, window=128, hop=32)
    y, _ = s.flush(s.init_state(2))
    assert y.shape == (2, 0, 5)


def test_misaligned_hop_runs_when_allowed_and_deviates() -> None:
    torch.manual_seed(4)
    m = SmallNet().eval()
    s = to.stream(m, window=128, hop=12, allow_misaligned=True)
    x = torch.randn(1, 3, 128 + 12 * 8)
    y = s.run(x)
    assert y.shape == (1, 9, 5)
    rep = to.verify(m, s, x[0])
    assert rep.max_abs_error > 1e-4


def test_approximate_baseline_is_chunked_zero_padded_inference() -> None:
    torch.manual_seed(5)
    m = SmallNet().eval()
    s = to.stream(m, window=128, hop=32)
    x = torch.randn(2, 3, 128)
    with torch.no_grad():
        feats = torch.cat([m.trunk(x[..., k : k + 32]) for k in range(0, 128, 32)], dim=-1)
        hand = m.fc(torch.flatten(feats, 1))
    torch.testing.assert_close(s.approximate(x), hand, rtol=0, atol=1e-6)
