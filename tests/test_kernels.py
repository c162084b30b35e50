"""The small-chunk convolution kernels equal ``F.conv1d`` on every path they take."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import thinkonce as to
from thinkonce.stream import kernels

TOL = 1e-5


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 5),
    c_in=st.integers(1, 9),
    c_out=st.integers(1, 9),
    k=st.integers(1, 6),
    dilation=st.integers(1, 4),
    stride=st.integers(1, 3),
    extra=st.integers(0, 12),
    bias=st.booleans(),
    sliced=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_conv1d_equals_torch(batch, c_in, c_out, k, dilation, stride, extra, bias, sliced, seed):
    g = torch.Generator().manual_seed(seed)
    span = dilation * (k - 1) + 1
    length = span + extra
    full = torch.randn(batch, c_in, length + 3, generator=g)
    # a non-contiguous view (what a state slice looks like) must give the same result
    x = full[:, :, 2 : 2 + length] if sliced else full[:, :, :length].contiguous()
    w = torch.randn(c_out, c_in, k, generator=g)
    b = torch.randn(c_out, generator=g) if bias else None
    want = F.conv1d(x, w, b, stride, 0, dilation, 1)
    with torch.no_grad():
        got = kernels.conv1d(x, w, b, stride, dilation, 1)
    assert got.shape == want.shape
    scale = max(1.0, float(want.abs().max())) if want.numel() else 1.0
    assert torch.allclose(got, want, atol=TOL * scale, rtol=0)


def test_conv1d_takes_the_fast_paths_only_where_meant():
    """One output frame -> matrix-vector; dilated few frames -> im2col; grouped/exporting -> F.conv1d."""
    w = torch.randn(4, 4, 3)
    x1 = torch.randn(1, 4, 3)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracing shape-dependent branches is the point here
        gm = torch.jit.trace(lambda x: kernels.conv1d(x, w, None, 1, 1, 1), (x1,))
        kinds = {n.kind() for n in gm.graph.nodes()}
        assert "aten::linear" in kinds and "aten::_convolution" not in kinds
        gd = torch.jit.trace(lambda x: kernels.conv1d(x, w, None, 1, 2, 1), (torch.randn(1, 4, 20),))
        kinds = {n.kind() for n in gd.graph.nodes()}
        assert "aten::mm" in kinds and "aten::_convolution" not in kinds
        wg = torch.randn(4, 2, 3)
        gg = torch.jit.trace(lambda x: kernels.conv1d(x, wg, None, 1, 2, 2), (torch.randn(1, 4, 20),))
        assert "aten::_convolution" in {n.kind() for n in gg.graph.nodes()}


def test_dilated_stream_backends_agree_with_model():
    """A dilated causal stack through eager, compiled and ONNX steps: same outputs, chunk after chunk."""
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Conv1d(2, 6, 3, dilation=2)
            self.b = torch.nn.Conv1d(6, 5, 4, dilation=3, stride=2)

        def forward(self, x):
            x = torch.relu(self.a(F.pad(x, (4, 0))))
            return self.b(F.pad(x, (9, 0)))

    net = Net().eval()
    sig = torch.randn(3, 2, 160)
    with torch.no_grad():
        want = net(sig)
    for backend in ("eager", "compiled", "onnx"):
        s = to.stream(net, backend=backend, example_input=torch.zeros(1, 2, 64))
        state = s.init_state(3)
        outs = []
        for a in range(0, 160, 8):
            y, state = s.step(sig[..., a : a + 8], state)
            outs.append(y)
        y, _ = s.flush(state)
        outs.append(y)
        got = torch.cat(outs, dim=-1)
        assert got.shape == want.shape, backend
        assert torch.allclose(got, want, atol=1e-5 * float(want.abs().max()), rtol=0), backend


def test_count_macs_of_a_stream_is_the_same_for_every_backend():
    """The counter sees the eager step whatever runs it (onnxruntime is opaque to it; tracing would add)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 3, dilation=2), torch.nn.ReLU(), torch.nn.Conv1d(4, 4, 3)).eval()
    counts = set()
    for backend in ("eager", "compiled", "onnx"):
        s = to.stream(net, backend=backend, example_input=torch.zeros(1, 1, 32))
        state = s.init_state(1)
        _, state = s.step(torch.randn(1, 1, 40), state)
        x = torch.randn(1, 1, 8)
        counts.add(to.count_macs(s, x, state))
        counts.add(to.count_macs(s, x, state))  # a second call (graph already built) counts the same
    assert len(counts) == 1 and counts.pop() == 8 * 4 * 3 + 8 * 4 * 4 * 3


def test_traced_graphs_are_built_for_recurring_keys_only_and_bounded():
    net = torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3), torch.nn.ReLU()).eval()
    s = to.stream(net, backend="compiled", example_input=torch.zeros(1, 1, 16))
    state = s.init_state(1)
    _, state = s.step(torch.randn(1, 1, 8), state)
    traced = s._traced
    for n in range(1, 40):  # ever-new chunk lengths: eager, no graphs
        _, state = s.step(torch.randn(1, 1, n), state)
    assert traced.cache == {}
    for _ in range(3):  # a recurring length is traced once it comes back
        _, state = s.step(torch.randn(1, 1, 5), state)
    assert len(traced.cache) == 1
    traced.max_graphs = 1
    for _ in range(3):
        _, state = s.step(torch.randn(1, 1, 6), state)
    assert len(traced.cache) == 1  # the cap holds; the step still runs (eagerly)


def test_a_step_that_cannot_be_traced_runs_eagerly_with_a_warning(monkeypatch):
    net = torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3), torch.nn.ReLU()).eval()
    s = to.stream(net, backend="compiled", example_input=torch.zeros(1, 1, 16))
    eager = to.stream(net, example_input=torch.zeros(1, 1, 16))

    def broken(*a, **k):
        raise RuntimeError("tracer says no")

    monkeypatch.setattr(s._traced, "_build", broken)
    x = torch.randn(1, 1, 40)
    with pytest.warns(RuntimeWarning, match="tracer says no"):
        y = s.run(x, chunk=4)
    torch.testing.assert_close(y, eager.run(x, chunk=4))
