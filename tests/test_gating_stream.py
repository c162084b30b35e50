"""Gated models with thinkonce.stream: window mode decides once per window from the window's features."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings, strategies as st

import thinkonce as to
from nets import assert_close
from thinkonce import gating
from thinkonce.errors import UnsupportedNodeError


class Net1d(nn.Module):
    """A 'valid' conv + pool trunk before the first gate (its window features need no left context), then
    gated 'same' convs with BatchNorm and a mean-pool Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.p1 = nn.Conv1d(2, 8, 5), nn.MaxPool1d(2)
        self.c2, self.b2 = nn.Conv1d(8, 16, 5, padding=2), nn.BatchNorm1d(16)
        self.c3 = nn.Conv1d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        x = self.p1(torch.relu(self.c1(x)))
        x = torch.relu(self.b2(self.c2(x)))
        return self.fc(torch.relu(self.c3(x)).mean(-1))


def gated_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    m = Net1d()
    m.b2.running_mean.normal_()
    m.b2.running_var.uniform_(0.5, 2.0)
    g = gating.insert(m, after=["c1", "c2"])
    for lk in gating.gates(g).values():
        lk.proj.weight.data.normal_(std=3.0)
        lk.proj.bias.data.normal_()
    return g.eval()


W, H = 64, 16


def run_chunks(s: to.Stream, x: torch.Tensor, chunks: list[int]) -> torch.Tensor:
    return s.run(x, chunk=chunks)


_STREAMS: dict[int, tuple] = {}


def streams(seed: int) -> tuple:
    """(gated, deployed stream, gated stream) per seed, converted once (conversion dominates the cost)."""
    if seed not in _STREAMS:
        g = gated_net(seed)
        _STREAMS[seed] = (g, *(to.stream(m, window=W, hop=H, example_input=torch.zeros(1, 2, W))
                               for m in (gating.deploy(g), g)))
    return _STREAMS[seed]


@settings(max_examples=5, deadline=None)
@given(seed=st.sampled_from([0, 1]), chunks=st.lists(st.integers(3, 40), min_size=1, max_size=5),
       batch=st.integers(1, 3))
def test_window_stream_equals_gated_inference_per_window(seed, chunks, batch):
    g, s, sg = streams(seed)
    torch.manual_seed(seed + len(chunks))
    x = torch.randn(batch, 2, W + 4 * H + 5)
    y = run_chunks(s, x, chunks)
    n = (x.shape[-1] - W) // H + 1
    with torch.no_grad():
        ref = torch.stack([g(x[..., k * H:k * H + W]) for k in range(n)], dim=1)  # non-streamed gated inference
    assert_close(y, ref)
    # the masked (not deployed) gated model streams too; its switched conv sits in the trunk, so it matches
    # the signal-padded reference (its 'same' padding sees real left context)
    E = sg.extension
    xp = torch.cat([x.new_zeros(batch, 2, E), x], dim=-1)
    ref_g = torch.stack([sg.reference(xp[..., k * H:k * H + W + E]) for k in range(n)], dim=1)
    assert_close(run_chunks(sg, x, chunks), ref_g)


def test_window_step_counts_engaged_kernels_only():
    g, s, sg = streams(1)
    torch.manual_seed(0)
    x = torch.randn(1, 2, W + H)
    st_d, st_g = s.step(x[..., :W], s.init_state(1))[1], sg.step(x[..., :W], sg.init_state(1))[1]
    macs_d, macs_g = to.count_macs(s, x[..., W:], st_d), to.count_macs(sg, x[..., W:], st_g)
    # what the deployed head computes on this window, counted on the model itself (gathered convs):
    on = gating.engaged(g, x[..., H:])
    assert 0 < float(on["gate_c1"].mean()) < 1
    assert macs_d < macs_g


def test_continuous_mode_is_refused_with_the_fix():
    g = gated_net(0)
    with pytest.raises(UnsupportedNodeError, match="pools its input over the whole time axis.*window=W, hop=H"):
        to.stream(g, example_input=torch.zeros(1, 2, 64))


class Causal1d(nn.Module):
    """'same' convs without pooling between a gate's input and its mask (causal gates switch per frame)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv1d(2, 8, 5, padding=2), nn.Conv1d(8, 12, 3, padding=1)
        self.b2 = nn.BatchNorm1d(12)
        self.c3 = nn.Conv1d(12, 6, 3, padding=1, dilation=1)
        self.c4 = nn.Conv1d(6, 4, 1)

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = torch.relu(self.b2(self.c2(x)))
        return self.c4(torch.relu(self.c3(x)))


@settings(max_examples=10, deadline=None)
@given(chunks=st.lists(st.integers(1, 30), min_size=1, max_size=5), batch=st.integers(1, 3))
def test_continuous_stream_of_causal_gates_equals_offline(chunks, batch):
    if "causal" not in _STREAMS:
        torch.manual_seed(0)
        g = gating.insert(Causal1d(), after=["c1", "c2"], pooling="causal")
        for lk in gating.gates(g).values():
            lk.proj.weight.data.normal_(std=3.0)
            lk.proj.bias.data.normal_()
        g.eval()
        _STREAMS["causal"] = (g, to.stream(g, example_input=torch.zeros(1, 2, 64)))
    g, s = _STREAMS["causal"]
    torch.manual_seed(len(chunks) + batch)
    x = torch.randn(batch, 2, 90)
    with torch.no_grad():
        ref = g(x)
        on = gating.engaged(g, x)
    assert all(0 < float(v.mean()) < 1 for v in on.values())  # switches really vary over frames and inputs
    assert_close(s.run(x, chunk=chunks), ref)


def test_causal_gate_sees_only_the_past_and_deploy_refuses_it():
    torch.manual_seed(0)
    g = gating.insert(Causal1d(), after=["c1"], pooling="causal").eval()
    lk = gating.gates(g)["gate_c1"]
    lk.proj.weight.data.normal_(std=3.0)
    x = torch.randn(1, 8, 40)
    y = x.clone()
    y[..., 25:] = torch.randn(1, 8, 15)  # a different future
    assert torch.equal(lk(x)[..., :25], lk(y)[..., :25])
    with pytest.raises(gating.GateError, match="causal.*switch kernels frame by frame"):
        gating.deploy(g)
    with pytest.raises(ValueError, match="unknown pooling"):
        gating.insert(Causal1d(), after=["c1"], pooling="max")
