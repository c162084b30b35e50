"""Recurrences (thinkonce.ops.rnn): GRU/LSTM/RNN stream exactly with their hidden state as state;
seq-first ones behind a permute are rewritten batch-first (thinkonce.stream.rewrite)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import thinkonce as to
from nets import assert_close as _assert_close
from thinkonce.ops.rnn import RecurrentOp

RNNS = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}


@pytest.fixture(autouse=True)
def _one_thread():
    """oneDNN's recurrences spin on every intra-op thread: on a loaded 2-core machine (xdist) a frame
    takes tens of ms with two threads and well under one with one."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class RecNet(nn.Module):
    """Conv1d (optionally 'same', i.e. with look-ahead) -> recurrence -> Linear, in one of three layouts:
    batch-first behind transpose(1, 2), seq-first behind permute(2, 0, 1) (Demucs), or seq-first with a
    skip connection added in the seq-first layout (EnCodec's SLSTM)."""

    def __init__(self, kind: str, layout: str, c_in: int, hidden: int, layers: int, bias: bool, conv_pad: int,
                 nonlinearity: str = "tanh") -> None:
        super().__init__()
        self.layout = layout
        width = hidden if layout == "skip" else 5
        self.conv = nn.Conv1d(c_in, width, 3, padding=conv_pad)
        kw = {"nonlinearity": nonlinearity} if kind == "rnn" else {}
        self.rnn = RNNS[kind](width, hidden, layers, bias=bias, batch_first=layout == "batch_first",
                              dropout=0.3 if layers > 1 else 0.0, **kw)
        self.out = nn.Linear(hidden, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))
        if self.layout == "batch_first":
            y, _ = self.rnn(h.transpose(1, 2))
            return self.out(y).transpose(1, 2)
        s = h.permute(2, 0, 1)
        y = self.rnn(s)[0]
        if self.layout == "skip":
            y = y + s
        return self.out(torch.tanh(y)).permute(1, 2, 0)


@st.composite
def rec_case(draw):
    kind = draw(st.sampled_from(sorted(RNNS)))
    layout = draw(st.sampled_from(["batch_first", "seq_first", "skip"]))
    hidden = draw(st.integers(1, 6))
    layers = draw(st.integers(1, 3))
    bias = draw(st.booleans())
    conv_pad = draw(st.integers(0, 2))
    nl = draw(st.sampled_from(["tanh", "relu"]))
    c_in = draw(st.integers(1, 3))
    length = draw(st.integers(8, 60))
    chunks = draw(st.lists(st.integers(0, 9), min_size=1, max_size=8).filter(lambda c: sum(c) > 0))
    seed = draw(st.integers(0, 2**16))
    return kind, layout, hidden, layers, bias, conv_pad, nl, c_in, length, chunks, seed


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rec_case())
def test_recurrences_stream_exactly_under_random_chunkings(case) -> None:
    kind, layout, hidden, layers, bias, conv_pad, nl, c_in, length, chunks, seed = case
    torch.manual_seed(seed)
    model = RecNet(kind, layout, c_in, hidden, layers, bias, conv_pad, nl).eval()
    x = torch.randn(2, c_in, length)
    with torch.no_grad():
        ref = model(x)
    s = to.stream(model, example_input=x)
    assert s.delay == conv_pad
    _assert_close(s.run(x, chunk=chunks), ref)
    assert model.rnn.batch_first == (layout == "batch_first")  # the user's module is never modified


def test_state_is_batch_first_hidden_and_empty_chunks_leave_it() -> None:
    torch.manual_seed(0)
    model = RecNet("lstm", "seq_first", 2, 4, 2, True, 0).eval()
    s = to.stream(model, example_input=torch.zeros(1, 2, 32))
    st0 = s.init_state(3)
    rec = [k for k in st0 if k.endswith(".h") or k.endswith(".c")]
    assert len(rec) == 2 and all(st0[k].shape == (3, 2, 4) and not st0[k].any() for k in rec)
    x = torch.randn(3, 2, 5)
    y, st1 = s.step(x, st0)
    y0, st2 = s.step(x[..., :0], st1)
    assert y0.shape[-1] == 0
    for k in rec:
        assert st1[k].any() and torch.equal(st1[k], st2[k])
    op = RecurrentOp(nn.GRU(3, 2, batch_first=True).eval())
    st = op.init_state(2, torch.empty(0))
    (yy, hn), new = op.run([torch.zeros(2, 0, 3)], st, "step")
    assert yy.shape == (2, 0, 2) and torch.equal(new["h"], st["h"]) and hn.shape == (1, 2, 2)


class LearnedH0(nn.Module):
    def __init__(self, zeros: bool) -> None:
        super().__init__()
        self.zeros = zeros
        self.gru = nn.GRU(3, 4, 2, batch_first=True)
        self.h0 = nn.Parameter(torch.randn(2, 1, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.transpose(1, 2)
        if self.zeros:
            h0 = torch.zeros(2, x.size(0), 4)
        else:
            h0 = self.h0.expand(-1, x.size(0), -1).contiguous()
        return self.gru(z, h0)[0].transpose(1, 2)


@pytest.mark.parametrize("zeros", [True, False])
def test_initial_state_from_the_model(zeros: bool) -> None:
    torch.manual_seed(1)
    model = LearnedH0(zeros).eval()
    x = torch.randn(2, 3, 40)
    with torch.no_grad():
        ref = model(x)
    s = to.stream(model, example_input=x)
    _assert_close(s.run(x, chunk=[1, 0, 7, 3]), ref)


class RecHead(nn.Module):
    """Conv trunk, then a GRU over the window's frames and its last frame: a window classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 4, 5, stride=2, padding=2)
        self.gru = nn.GRU(4, 5, batch_first=True)
        self.fc = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.gru(torch.relu(self.conv(x)).transpose(1, 2))
        return self.fc(y[:, -1])


def test_window_mode_recurrence_is_the_head() -> None:
    torch.manual_seed(2)
    model = RecHead().eval()
    W, H = 48, 8
    s = to.stream(model, window=W, hop=H, example_input=torch.zeros(1, 2, W))
    assert any(p.node.name == "gru" for p in s.plan.head_nodes)
    x = torch.randn(2, 2, W + 4 * H + 3)
    y = s.run(x, chunk=[5, 0, 1, 13])
    E = s.extension
    xp = torch.cat([x.new_zeros(2, 2, E), x], dim=-1)
    n = (x.shape[-1] - W) // H + 1
    ref = torch.stack([s.reference(xp[..., k * H : k * H + W + E]) for k in range(n)], dim=1)
    _assert_close(y, ref)


class Returns(nn.Module):
    def __init__(self, **kw) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x.transpose(1, 2))[0].transpose(1, 2)


class FinalState(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(3, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(x.transpose(1, 2))[1].permute(1, 2, 0)


class SeqFirstFedBatchFirst(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(3, 4)  # batch_first=False, but given (batch, time, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(x.transpose(1, 2))[0].transpose(1, 2)


class TimeNotOnAxis1(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(16, 4, batch_first=True)  # fed (batch, channels, time=16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(x)[0]


@pytest.mark.parametrize("model, msg", [
    (Returns(bidirectional=True), "bidirectional"),
    (Returns(proj_size=2), "proj_size"),
    (FinalState(), "final hidden state"),
    (SeqFirstFedBatchFirst(), "seq-first GRU"),
    (TimeNotOnAxis1(), "time is on axis 2"),
])
def test_refusals_name_the_reason(model: nn.Module, msg: str) -> None:
    with pytest.raises(to.UnsupportedNodeError, match=msg):
        to.stream(model.eval(), example_input=torch.zeros(1, 3, 16))
