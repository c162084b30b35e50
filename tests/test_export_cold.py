"""ONNX export that stands alone: the exported step runs a stream from its cold initial state in
onnxruntime with numpy only (no torch), and equals the eager stream step by step."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn as nn

import thinkonce as to
from nets import Block, RandomNet, ResNet

RUNNER = textwrap.dedent('''
    import json, sys
    import numpy as np, onnxruntime as ort
    from safetensors.numpy import load_file
    onnx_path, init_path, x_path, out_path, n = sys.argv[1:6]
    n = int(n)
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    outs = [o.name for o in sess.get_outputs()]
    x = np.load(x_path)
    init = load_file(init_path)
    state = {k: np.repeat(v, x.shape[0], axis=0) for k, v in init.items()}
    ys = []
    for pos in range(0, x.shape[-1] - n + 1, n):
        feed = {"x": x[..., pos:pos + n]} if "x" in names else {}
        feed.update({nm: state[nm[len("state."):]] for nm in names if nm.startswith("state.")})
        res = dict(zip(outs, sess.run(None, feed)))
        ys.append(res["y"])
        state.update({k[len("new_state."):]: v for k, v in res.items() if k.startswith("new_state.")})
    assert "torch" not in sys.modules
    np.savez(out_path, *ys)
''')


def _eager_steps(s, x: torch.Tensor, n: int) -> list[np.ndarray]:
    st = s.init_state(x.shape[0])
    ys = []
    for pos in range(0, x.shape[-1] - n + 1, n):
        y, st = s.step(x[..., pos:pos + n], st)
        ys.append(y.numpy())
    return ys


def _check(tmp_path, s, x: torch.Tensor, chunk: int | None, standalone: bool) -> dict:
    import onnx
    import onnxruntime as ort

    info = s.export_onnx(str(tmp_path / "step.onnx"), chunk=chunk)
    n = info["chunk"]
    m = onnx.load(str(tmp_path / "step.onnx"))
    onnx.checker.check_model(m)
    for vi in list(m.graph.input) + list(m.graph.output):  # fixed state layout: concrete dims but batch
        if vi.name.startswith(("state.", "new_state.")):
            dims = vi.type.tensor_type.shape.dim
            assert dims[0].dim_param == "batch"
            assert all(d.HasField("dim_value") for d in dims[1:]), vi.name
    want = _eager_steps(s, x, n)
    if standalone:
        np.save(tmp_path / "x.npy", x.numpy())
        subprocess.run([sys.executable, "-c", RUNNER, str(tmp_path / "step.onnx"), info["init_state"],
                        str(tmp_path / "x.npy"), str(tmp_path / "y.npz"), str(n)], check=True)
        got_f = np.load(tmp_path / "y.npz")
        got = [got_f[f"arr_{i}"] for i in range(len(got_f.files))]
    else:
        from safetensors.numpy import load_file

        sess = ort.InferenceSession(str(tmp_path / "step.onnx"), providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        outs = [o.name for o in sess.get_outputs()]
        state = {k: np.repeat(v, x.shape[0], 0) for k, v in load_file(info["init_state"]).items()}
        got = []
        for pos in range(0, x.shape[-1] - n + 1, n):
            feed = {"x": x[..., pos:pos + n].numpy()}
            feed.update({nm: state[nm[6:]] for nm in names if nm.startswith("state.")})
            res = dict(zip(outs, sess.run(None, feed)))
            got.append(res["y"])
            state.update({k[10:]: v for k, v in res.items() if k.startswith("new_state.")})
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    return info


@pytest.mark.parametrize("window,chunk", [(None, 3), (64, 5)])
def test_cold_export_resnet(tmp_path, window, chunk) -> None:
    torch.manual_seed(2)
    model = ResNet(head=window is not None).eval()
    kw = {"window": window, "hop": 16} if window else {}
    s = to.stream(model, example_input=torch.zeros(1, 2, window or 64), **kw)
    x = torch.randn(3, 2, 64 + 30 * (chunk or 16))
    info = _check(tmp_path, s, x, chunk, standalone=chunk == 5)
    assert len(info["phases"]) > 1  # warm-up phases are branches of the same tree


def test_cold_export_random_stack(tmp_path) -> None:
    torch.manual_seed(5)
    blocks = [Block("conv", 3, 1, 2, "same"), Block("pool", 2, 2, 1, 1, extra=1), Block("res", 3, 1, 1),
              Block("convT", 3, 2, 1, 1, extra=1), Block("cat", 3, 1, 1, 1), Block("causal", 2, 2, 1)]
    model = RandomNet(blocks, 2).eval()
    s = to.stream(model, example_input=torch.zeros(1, 2, 64))
    _check(tmp_path, s, torch.randn(2, 2, 200), 3, standalone=False)


@pytest.mark.parametrize("chunk", [64])  # a chunk off the hop: test_cold_export_resnet[64-5]
def test_cold_export_ppg(tmp_path, chunk) -> None:
    from thinkonce.models import ppg_hr

    s = to.stream(ppg_hr(pretrained=True, padding="signal"), window=256, hop=64)
    x = torch.randn(2, 1, 256 + 12 * chunk)
    _check(tmp_path, s, x, chunk, standalone=chunk == 64)


class Features(nn.Module):
    """A reference net's streamable trunk (``model.features``) as a model, for continuous mode."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.features(x)


@pytest.mark.parametrize("name,mode,chunk", [
    ("eeg_seizure", "window", 256), ("acc_seizure", "window", 160),
    ("ppg_hr", "continuous", 256), ("eeg_seizure", "continuous", 64), ("acc_seizure", "continuous", 64),
])
def test_cold_export_reference_nets(tmp_path, name, mode, chunk) -> None:
    """The DESIGN.md reference nets (ppg_hr window mode: test_cold_export_ppg) from a cold state, in
    window mode and, for their feature trunks, in continuous mode: onnxruntime equals eager."""
    from thinkonce.models import acc_seizure, eeg_seizure, ppg_hr

    factory, c, W = {"ppg_hr": (lambda: ppg_hr(pretrained=True), 1, 256), "eeg_seizure": (eeg_seizure, 18, 1024),
                     "acc_seizure": (acc_seizure, 4, 960)}[name]
    torch.manual_seed(0)
    model = factory().eval()
    if mode == "window":
        s = to.stream(model, window=W, hop=chunk)
    else:
        s = to.stream(Features(model).eval(), example_input=torch.zeros(1, c, W))
    x = torch.randn(2, c, W + 6 * chunk)
    info = _check(tmp_path, s, x, chunk, standalone=name == "acc_seizure" and mode == "window")
    assert info["chunk"] == chunk
