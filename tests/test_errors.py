"""Bad input gets a clear error naming the problem and the fix, and the state stays unchanged."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import thinkonce as to


@pytest.fixture()
def stream_and_state():
    model = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv1d(4, 1, 3)).eval()
    s = to.stream(model, example_input=torch.zeros(1, 2, 32))
    st = s.init_state(2)
    _, st = s.step(torch.randn(2, 2, 10), st)
    return s, st


def _assert_unchanged(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k


@pytest.mark.parametrize(
    "chunk, match",
    [
        (torch.randn(2, 10), r"chunk must have 3 dims \(batch, 2, time\)"),
        (torch.randn(2, 3, 10), r"chunk has \(3,\) channels but the model expects \(2,\)"),
        (torch.randn(2, 2, 10, dtype=torch.float64), r"dtype is torch.float64 .* convert with"),
        (torch.randn(3, 2, 10), r"batch 3 but the state holds 2 streams"),
        (torch.tensor([[[0.0, float("nan")]] * 2] * 2), r"NaN or Inf"),
        (torch.tensor([[[0.0, float("inf")]] * 2] * 2), r"NaN or Inf"),
        ([1.0, 2.0], r"must be a torch.Tensor"),
    ],
)
def test_bad_chunks_raise_and_leave_state(stream_and_state, chunk, match) -> None:
    s, st = stream_and_state
    before = {k: v.clone() for k, v in st.items()}
    with pytest.raises(to.StreamInputError, match=match):
        s.step(chunk, st)
    _assert_unchanged(before, st)


def test_nonfinite_allowed_on_request() -> None:
    model = nn.Sequential(nn.Conv1d(1, 1, 3)).eval()
    s = to.stream(model, example_input=torch.zeros(1, 1, 8), allow_nonfinite=True)
    y, _ = s.step(torch.tensor([[[1.0, float("nan"), 1.0, 1.0]]]), s.init_state())
    assert torch.isnan(y).any()


def test_training_mode_model_is_refused() -> None:
    model = nn.Sequential(nn.Conv1d(1, 1, 3), nn.BatchNorm1d(1))
    with pytest.raises(to.ThinkonceError, match=r"training mode .* model.eval\(\)"):
        to.stream(model, example_input=torch.zeros(1, 1, 8))


def test_unsupported_layer_named_with_path_and_type() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(1, 2, 3, padding=1, padding_mode="circular")

        def forward(self, x):
            return self.conv(x)

    with pytest.raises(to.UnsupportedNodeError, match=r"node 'conv' \(#1, module 'conv', type Conv1d\).*circular"):
        to.stream(Net().eval(), example_input=torch.zeros(1, 1, 16))


def test_time_mixing_layer_needs_window_mode() -> None:
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.AdaptiveAvgPool1d(1)).eval()
    with pytest.raises(to.UnsupportedNodeError, match=r"AdaptiveAvgPool1d.*mixes the whole time axis.*window=W, hop=H"):
        to.stream(model, example_input=torch.zeros(1, 1, 16))
    to.stream(model, window=16, hop=4)  # fine as a window-mode head


def test_unknown_function_names_register_framewise() -> None:
    class Net(nn.Module):
        def forward(self, x):
            return torch.special.expit(x)

    with pytest.raises(to.UnsupportedNodeError, match=r"register_framewise"):
        to.stream(Net().eval(), example_input=torch.zeros(1, 1, 16))
    to.register_framewise(torch.special.expit)
    s = to.stream(Net().eval(), example_input=torch.zeros(1, 1, 16))
    x = torch.randn(1, 1, 20)
    torch.testing.assert_close(s.run(x, chunk=3), torch.special.expit(x))


def test_reset_out_of_range(stream_and_state) -> None:
    s, st = stream_and_state
    with pytest.raises(to.StreamInputError, match="out of range"):
        s.reset(st, [5])


def test_bad_window_arguments() -> None:
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.AdaptiveAvgPool1d(1)).eval()
    with pytest.raises(ValueError, match="both window=W and hop=H"):
        to.stream(model, window=16)
    with pytest.raises(ValueError, match="larger than window"):
        to.stream(model, window=16, hop=32)


def test_rows_out_of_step_are_refused() -> None:
    model = nn.Sequential(nn.Conv1d(1, 2, 3, stride=2), nn.AdaptiveAvgPool1d(1)).eval()
    s = to.stream(model, window=16, hop=4)
    a = s.step(torch.randn(1, 1, 20), s.init_state(1))[1]
    b = s.step(torch.randn(1, 1, 6), s.init_state(1))[1]
    mixed = {k: torch.cat([a[k], b[k]]) for k in a}  # one row past its first window, one before
    with pytest.raises(to.StreamInputError, match="different phases"):
        s.step(torch.randn(2, 1, 4), mixed)


def test_cli_export_builtin_and_safetensors(tmp_path) -> None:
    from safetensors.torch import save_file
    from typer.testing import CliRunner

    from thinkonce.cli import app
    from thinkonce.models import eeg_seizure

    runner = CliRunner()
    out = tmp_path / "step.onnx"
    weights = tmp_path / "eeg.safetensors"
    save_file(eeg_seizure().state_dict(), str(weights))
    r = runner.invoke(app, ["export", str(weights), "--arch", "eeg_seizure", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert out.stat().st_size > 1000
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    r = runner.invoke(app, ["export", str(junk), "--window", "256", "--hop", "64", "-o", str(out)])
    assert r.exit_code != 0 and "not a TorchScript archive" in r.output
    pickled = tmp_path / "pickled.pt"
    torch.save(eeg_seizure(), str(pickled))  # a pickled module: must never be unpickled
    r = runner.invoke(app, ["export", str(pickled), "--window", "1024", "--hop", "256", "-o", str(out)])
    assert r.exit_code != 0 and "not a TorchScript archive" in r.output
    pt2 = tmp_path / "model.pt2"
    pt2.write_bytes(b"PK")
    r = runner.invoke(app, ["export", str(pt2), "--hop", "256", "-o", str(out)])
    assert r.exit_code != 0 and "tensors only" in r.output
    good = tmp_path / "eeg.pt2"
    torch.export.save(torch.export.export(eeg_seizure().eval(), (torch.randn(1, 18, 1024),)), str(good))
    r = runner.invoke(app, ["export", str(good), "--hop", "256", "-o", str(out)])
    assert r.exit_code == 0, r.output


def test_exported_archives_are_read_with_tensor_only_unpickling() -> None:
    import pickle

    from thinkonce.stream.exported import _tensors_only_unpickling

    with _tensors_only_unpickling():
        with pytest.raises(to.ThinkonceError, match="tensors only"):
            pickle.loads(pickle.dumps({"any": "object"}))
        with pytest.raises(Exception):
            import io

            buf = io.BytesIO()
            torch.save(object(), buf)  # saving is untouched; loading a non-tensor object is not allowed
            buf.seek(0)
            torch.load(buf)
    assert pickle.loads(pickle.dumps(3)) == 3  # restored afterwards


def test_cli_export_torchscript_archive_matches_the_stream(tmp_path) -> None:
    import numpy as np
    import onnxruntime as ort
    from typer.testing import CliRunner

    from thinkonce.cli import app
    from thinkonce.models import eeg_seizure

    torch.manual_seed(0)
    net = eeg_seizure().eval()
    archive = tmp_path / "eeg.pt"
    torch.jit.save(torch.jit.trace(net, (torch.randn(1, 18, 1024),)), str(archive))
    out = tmp_path / "step.onnx"
    r = CliRunner().invoke(app, ["export", str(archive), "--window", "1024", "--hop", "256", "-o", str(out)])
    assert r.exit_code == 0, r.output
    s = to.stream(torch.jit.load(str(archive)), window=1024, hop=256)  # its state names follow the archive
    state = s.init_state(1)
    _, state = s.step(torch.randn(1, 18, 1024), state)
    x = torch.randn(1, 18, 256)
    want, _ = s.step(x, state)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    feed = {i.name: (x.numpy() if i.name == "x" else state[i.name[len("state."):]].numpy()) for i in sess.get_inputs()}
    got = sess.run(["y"], feed)[0]
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4)
    # and the archive's stream equals the original module's stream
    s0 = to.stream(net, window=1024, hop=256)
    sig = torch.cat([torch.randn(1, 18, 1024), x], -1)
    y0, y1 = s0.run(sig, chunk=256), s.run(sig, chunk=256)
    torch.testing.assert_close(y1, y0, rtol=1e-5, atol=1e-5)


def test_moving_the_batch_axis_is_refused_in_continuous_mode_and_a_head_in_window_mode() -> None:
    class SwapBatch(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv1d(2, 3, 3)  # valid padding: the window stream equals plain inference

        def forward(self, x):
            return torch.relu(self.conv(x)).transpose(0, 1).mean(-1).transpose(0, 1)

    torch.manual_seed(0)
    net = SwapBatch().eval()
    with pytest.raises(to.UnsupportedNodeError, match="batch axis"):
        to.stream(net, example_input=torch.zeros(2, 2, 16))
    s = to.stream(net, window=16, hop=4, example_input=torch.zeros(1, 2, 16))
    x = torch.randn(2, 2, 24)
    with torch.no_grad():
        want = torch.stack([net(x[..., k * 4 : k * 4 + 16]) for k in range(3)], dim=1)
    torch.testing.assert_close(s.run(x, chunk=4), want, rtol=1e-5, atol=1e-5)


def test_output_that_is_not_batch_first_is_refused() -> None:
    class Features(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv1d(2, 3, 3)

        def forward(self, x):
            return self.conv(x).mean(-1).transpose(0, 1)  # (features, batch)

    with pytest.raises(to.UnsupportedNodeError, match="not batch-first"):
        to.stream(Features().eval(), window=16, hop=4, example_input=torch.zeros(1, 2, 16))
