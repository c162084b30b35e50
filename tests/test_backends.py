"""Backends (eager, compiled = native C where a compiler exists, onnx) give the same outputs and states;
the exported ONNX step runs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import thinkonce as to
from thinkonce.stream.backends import BACKENDS
from nets import ResNet, stack_case


@pytest.mark.parametrize("backend", ["compiled", "onnx"])
@pytest.mark.parametrize("window", [None, 64])
def test_backends_match_eager(backend: str, window: int | None) -> None:
    torch.manual_seed(0)
    model = ResNet(head=window is not None).eval()
    kw = {"window": window, "hop": 16} if window else {}
    eager = to.stream(model, example_input=torch.zeros(1, 2, window or 64), **kw)
    other = to.stream(model, example_input=torch.zeros(1, 2, window or 64), backend=backend, **kw)
    x = torch.randn(3, 2, 400)
    se, so = eager.init_state(3), other.init_state(3)
    chunk = 16 if window else 4
    for pos in range(0, 400, chunk):
        ye, se = eager.step(x[..., pos : pos + chunk], se)
        yo, so = other.step(x[..., pos : pos + chunk], so)
        torch.testing.assert_close(yo, ye, rtol=1e-5, atol=1e-5)
        assert se.keys() == so.keys()
        for k in se:
            torch.testing.assert_close(so[k], se[k], rtol=1e-5, atol=1e-5)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from([0, 1, 3, 4, 8, 13]), min_size=5, max_size=30))
def test_compiled_under_random_chunkings(chunks) -> None:
    torch.manual_seed(1)
    model = ResNet(head=False).eval()
    s = to.stream(model, example_input=torch.zeros(1, 2, 64), backend="compiled")
    n = sum(chunks)
    if n < 16:  # shorter signals are too short for the model offline as well
        return
    x = torch.randn(2, 2, n)
    y = s.run(x, chunk=chunks)
    torch.testing.assert_close(y, model(x).detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("window,chunk", [(None, None), (64, None), (None, 1), (None, 6), (64, 8), (64, 5)])
def test_export_onnx_runs_in_onnxruntime_with_dynamic_batch(tmp_path, window, chunk) -> None:
    """The exported step equals eager over many steps; chunks that cycle through stride/window phases
    (1, 5, 6, 8 samples against a period of 4 and a hop of 16) use the phase-switching graph."""
    import onnx
    import onnxruntime as ort

    torch.manual_seed(2)
    model = ResNet(head=window is not None).eval()
    kw = {"window": window, "hop": 16} if window else {}
    s = to.stream(model, example_input=torch.zeros(1, 2, window or 64), **kw)
    info = s.export_onnx(str(tmp_path / "step.onnx"), chunk=chunk)
    if chunk is not None:
        assert len(info["phases"]) > 1
    m = onnx.load(str(tmp_path / "step.onnx"))
    onnx.checker.check_model(m)
    assert m.opset_import[0].version >= 17
    sess = ort.InferenceSession(str(tmp_path / "step.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    out_names = [o.name for o in sess.get_outputs()]
    B, n = 5, info["chunk"]
    x = torch.randn(B, 2, info["warmup"] + 40 * n)
    state = s.init_state(B)
    _, state = s.step(x[..., : info["warmup"]], state)
    onnx_state = {k: v.numpy() for k, v in state.items()}
    for pos in range(info["warmup"], x.shape[-1] - n + 1, n):
        chunk_x = x[..., pos : pos + n]
        y_ref, state = s.step(chunk_x, state)
        feed = {"x": chunk_x.numpy()} if "x" in names else {}
        feed.update({nm: onnx_state[nm[len("state."):]] for nm in names if nm.startswith("state.")})
        outs = dict(zip(out_names, sess.run(None, feed)))
        np.testing.assert_allclose(outs["y"], y_ref.numpy(), rtol=1e-5, atol=1e-5)
        onnx_state = {k[len("new_state."):]: v for k, v in outs.items() if k.startswith("new_state.")}
        for k, v in state.items():
            np.testing.assert_allclose(onnx_state[k], v.numpy(), rtol=1e-5, atol=1e-5)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stack_case(["compiled", "onnx"]))
def test_random_stacks_on_traced_backends_match_offline(case) -> None:
    """Random stacks (strides, dilation, padding modes, pooling, residuals, transposed convs) through the
    compiled and ONNX backends, batch 2, cycling chunk lengths: exact against the offline model."""
    from nets import random_net_case

    blocks, c_in, seed, backend = case
    case = random_net_case(blocks, c_in, seed, 2, 150)
    if case is None:
        return  # the drawn stack does not fit this length offline either
    model, x, ref = case
    s = to.stream(model, example_input=x[:1], backend=backend)
    y = s.run(x, chunk=[5, 1, 8])
    assert y.shape == ref.shape
    scale = max(1.0, float(ref.abs().max())) if ref.numel() else 1.0
    assert float((y - ref).abs().max() if ref.numel() else 0.0) <= 1e-5 * scale


class UNet(nn.Module):
    """Encoder (strides 2, 2), residual middle, decoder (transposed convs) with skip concatenations."""

    def __init__(self) -> None:
        super().__init__()
        self.e1 = nn.Conv1d(2, 8, 3, padding=1)
        self.d1 = nn.Conv1d(8, 16, 4, stride=2, padding=1)
        self.d2 = nn.Conv1d(16, 16, 3, stride=2, padding=1)
        self.mid = nn.Conv1d(16, 16, 3, padding=2, dilation=2)
        self.u2 = nn.ConvTranspose1d(16, 16, 4, stride=2, padding=1)
        self.u1 = nn.ConvTranspose1d(32, 8, 4, stride=2, padding=1)
        self.out = nn.Conv1d(16, 1, 1)

    def forward(self, x):
        a = F.relu(self.e1(x))
        b = F.relu(self.d1(a))
        c = F.relu(self.d2(b))
        c = c + F.relu(self.mid(c))
        u = torch.cat([F.relu(self.u2(c)), b], 1)
        u = torch.cat([F.relu(self.u1(u)), a], 1)
        return self.out(u)


@pytest.mark.parametrize("backend", ["eager", "compiled", "onnx"])
def test_unet_streams_exactly_on_every_backend(backend) -> None:
    torch.manual_seed(0)
    model = UNet().eval()
    x = torch.randn(3, 2, 160)
    with torch.no_grad():
        ref = model(x)
    s = to.stream(model, example_input=x[:1], backend=backend)
    for chunks in ([1], [7, 3, 0, 11]):
        torch.testing.assert_close(s.run(x, chunk=chunks), ref, rtol=1e-5, atol=1e-5)


def test_pointwise_conv_with_same_padding_and_dilation_runs_in_onnxruntime() -> None:
    """A 1x1 conv declared with padding='same' and dilation 2 (a no-op for one tap) is exported plainly:
    onnxruntime rejects auto_pad SAME with dilation (found by the random-stack property test)."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv1d(2, 4, 1, padding="same", dilation=2, groups=2), nn.ReLU()).eval()
    x = torch.randn(2, 2, 40)
    s = to.stream(model, example_input=x[:1], backend="onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no eager fallback: the graph itself must run
        y = s.run(x, chunk=[1, 1])
    torch.testing.assert_close(y, model(x).detach(), rtol=1e-5, atol=1e-5)


@st.composite
def mixed_rate_stack(draw):
    """Down- and upsampling by 2 and 3 in random order (periods that are not powers of one number, e.g.
    Conv(stride 2) -> Upsample(3) -> Conv(stride 3)), with plain convs and pools between them."""
    from nets import Block

    blocks = []
    for _ in range(draw(st.integers(2, 5))):
        kind = draw(st.sampled_from(["down", "down", "up", "convT", "conv", "pool"]))
        s = draw(st.integers(2, 3))
        if kind == "down":
            k = draw(st.integers(s, 5))
            blocks.append(Block("conv", k, s, 1, draw(st.sampled_from([0, 1, 2]))))
        elif kind == "up":
            blocks.append(Block("up", s=s))
        elif kind == "convT":
            k = draw(st.integers(s, 5))
            blocks.append(Block("convT", k, s, 1, draw(st.integers(0, k - 1)), extra=draw(st.integers(0, s - 1))))
        elif kind == "conv":
            blocks.append(Block("causal", draw(st.integers(1, 5)), 1, draw(st.integers(1, 2))))
        else:
            blocks.append(Block("pool", s, s, 1, 0, extra=draw(st.integers(0, 1))))
    return blocks, draw(st.integers(1, 2)), draw(st.integers(0, 2**16))


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=mixed_rate_stack(), chunks=st.lists(st.integers(0, 23), min_size=1, max_size=5).filter(lambda c: sum(c) > 0))
def test_mixed_up_and_down_sampling_by_2_and_3_on_every_backend(backend, case, chunks) -> None:
    """Stride periods that are lcm's of 2 and 3 (the old max-vs-lcm bug) through every backend: continuous
    mode exact against the offline model under random chunkings, batch 2."""
    from nets import assert_close, random_net_case

    blocks, c_in, seed = case
    case = random_net_case(blocks, c_in, seed, 2, 216)
    if case is None:
        return  # the drawn stack does not fit this length offline either
    model, x, ref = case
    s = to.stream(model, example_input=x[:1], backend=backend)
    assert_close(s.run(x, chunks), ref)
