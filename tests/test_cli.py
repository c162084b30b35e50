"""The command line for real users: one loader for every command, one clean line per misuse."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from typer.testing import CliRunner

import thinkonce as to
from thinkonce.analyze import receptive_fields
from thinkonce.cli import app
from thinkonce.models import acc_seizure, eeg_seizure, ppg_hr

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), terminal_width=200)


def flat(output: str) -> str:
    """The output as one line: rich's error panel borders and line wraps removed."""
    return " ".join(output.replace("│", " ").split())


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """An EEG network as TorchScript archive, .pt2 program and safetensors state dict, plus junk files."""
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    net = eeg_seizure().eval()
    x = torch.randn(1, 18, 1024)
    torch.jit.save(torch.jit.trace(net, (x,)), str(d / "eeg.pt"))
    torch.export.save(torch.export.export(net, (x,)), str(d / "eeg.pt2"))
    save_file(net.state_dict(), str(d / "eeg.safetensors"))
    (d / "junk.pt").write_bytes(b"not a model")
    (d / "junk.safetensors").write_bytes(b"not a state dict")
    (d / "model.onnx").write_bytes(b"onnx?")
    torch.save(net, str(d / "pickled.pt"))
    return d


def test_version() -> None:
    r = invoke("--version")
    assert r.exit_code == 0
    assert r.output.strip() == f"thinkonce {to.__version__}"


def test_version_falls_back_to_the_package_attribute(monkeypatch) -> None:
    import importlib.metadata as md

    from thinkonce import cli

    def missing(name):
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(md, "version", missing)
    assert cli._version() == to.__version__


@pytest.mark.parametrize("fmt", ["eeg.pt", "eeg.pt2", "eeg.safetensors"])
@pytest.mark.parametrize("command", ["verify", "describe", "analyze"])
def test_every_command_reads_model_files(archives, command, fmt) -> None:
    extra = {"eeg.pt": ["--window", "1024"], "eeg.pt2": [], "eeg.safetensors": ["--arch", "eeg_seizure"]}[fmt]
    if command != "analyze":
        extra += ["--hop", "256"]
    if command == "verify":
        extra += ["--samples", "4096"]
    r = invoke(command, str(archives / fmt), *extra)
    assert r.exit_code == 0, r.output
    assert "Traceback (most recent" not in r.output and "Warning" not in r.output
    if command == "verify":
        assert "window stream vs normal windowed inference" in r.output
    else:
        assert fmt in r.output  # the table is titled with the file's name


def test_verify_of_a_model_file_matches_the_builtin(archives) -> None:
    torch.manual_seed(0)
    a = invoke("verify", "eeg_seizure", "--seconds", "16")
    b = invoke("verify", str(archives / "eeg.safetensors"), "--arch", "eeg_seizure", "--seconds", "16")
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    assert "13 outputs" in a.output and "13 outputs" in b.output


def test_export_prints_no_tracer_warnings(archives, tmp_path, capfd) -> None:
    out = tmp_path / "step.onnx"
    r = invoke("export", str(archives / "eeg.pt"), "--window", "1024", "--hop", "256", "-o", str(out))
    assert r.exit_code == 0, r.output
    assert out.stat().st_size > 1000
    captured = capfd.readouterr()
    for text in (r.output, captured.err, captured.out):
        assert "Warning" not in text and "specialized" not in text and "Traceback (most recent" not in text
    # the filters were scoped to the call
    import warnings

    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        warnings.warn("still visible", UserWarning)
    assert any("still visible" in str(w.message) for w in rec)


MISUSES = [
    (["verify", "no_such_net"], 2, "neither a built-in network"),
    (["describe", "no_such_net"], 2, "neither a built-in network"),
    (["analyze", "missing.pt"], 2, "neither a built-in network"),
    (["export", "missing.safetensors"], 2, "neither a built-in network"),
    (["verify", "{d}/junk.pt", "--window", "1024", "--hop", "256"], 2, "not a TorchScript archive"),
    (["describe", "{d}/pickled.pt", "--window", "1024", "--hop", "256"], 2, "not a TorchScript archive"),
    (["analyze", "{d}/junk.safetensors", "--arch", "eeg_seizure"], 2, "not a readable safetensors file"),
    (["analyze", "{d}/eeg.safetensors"], 2, "pass --arch"),
    (["analyze", "{d}/eeg.safetensors", "--arch", "resnet"], 2, "unknown --arch"),
    (["verify", "{d}/eeg.safetensors", "--arch", "ppg_hr"], 2, "weights do not fit ppg_hr"),
    (["verify", "{d}/model.onnx"], 2, "expected a TorchScript archive"),
    (["describe", "{d}"], 2, "is a directory"),
    (["verify", "{d}/eeg.pt", "--hop", "256"], 2, "pass --window"),
    (["verify", "{d}/eeg.pt2"], 2, "pass --hop"),
    (["verify", "{d}/eeg.pt2", "--window", "512", "--hop", "256"], 2, "exported for windows of 1024"),
    (["verify", "eeg_seizure", "--hop", "0"], 2, "--hop"),
    (["verify", "eeg_seizure", "--window", "-4"], 2, "--window"),
    (["analyze", "ppg_hr", "--fs", "-1"], 2, "--fs must be positive"),
    (["verify", "eeg_seizure", "--seconds", "1"], 2, "shorter than one window (1024 samples)"),
    (["verify", "eeg_seizure", "--samples", "100"], 2, "shorter than one window"),
    (["verify", "eeg_seizure", "--hop", "100"], 1, "breaks pooling alignment"),
    (["describe", "eeg_seizure", "--hop", "2048"], 1, "larger than window"),
    (["verify", "eeg_seizure", "--window", "500", "--hop", "64"], 1, "Error:"),
    (["export", "eeg_seizure", "--chunk", "0"], 2, "--chunk"),
    (["verify", "eeg_seizure", "--edge", "sideways"], 1, "Error:"),
]


@pytest.mark.parametrize("args, code, text", MISUSES, ids=[" ".join(a) for a, _, _ in MISUSES])
def test_misuse_prints_one_clean_error(archives, args, code, text) -> None:
    r = invoke(*(a.format(d=archives) for a in args))
    assert r.exit_code == code, r.output
    assert text in flat(r.output), r.output
    assert "Traceback (most recent" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)


def test_unsupported_model_is_one_line(tmp_path) -> None:
    class Lstm(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(2, 4, 3)
            self.gru = nn.GRU(4, 4, batch_first=True)

        def forward(self, x):
            y, _ = self.gru(self.conv(x).transpose(1, 2))
            return y[:, -1]

    path = tmp_path / "gru.pt"
    net = Lstm().eval()
    torch.jit.save(torch.jit.trace(net, (torch.randn(1, 2, 64),)), str(path))
    r = invoke("describe", str(path), "--window", "64", "--hop", "16")
    assert r.exit_code in (1, 2), r.output
    assert "Error" in r.output and "Traceback (most recent" not in r.output


def test_traceback_on_request(monkeypatch) -> None:
    monkeypatch.setenv("THINKONCE_TRACEBACK", "1")
    r = invoke("verify", "eeg_seizure", "--hop", "100")
    assert r.exit_code != 0 and isinstance(r.exception, to.AlignmentError)


def test_export_without_the_onnx_extra(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    r = invoke("export", "eeg_seizure", "-o", str(tmp_path / "s.onnx"))
    assert r.exit_code == 1
    assert "thinkonce[onnx]" in r.output and "Traceback (most recent" not in r.output


def test_require_names_the_extra(monkeypatch) -> None:
    from thinkonce._optional import MissingExtraError, require

    assert require("math", "none").sqrt(9.0) == 3.0
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'thinkonce\[onnx\]'") as e:
        require("onnxruntime", "onnx", "the onnx backend")
    assert isinstance(e.value, to.ThinkonceError) and isinstance(e.value, ImportError)
    assert "the onnx backend needs" in str(e.value)


# ------------------------------------------------------------------------------------------------
# verify on short signals
# ------------------------------------------------------------------------------------------------
def test_verify_refuses_a_signal_shorter_than_one_window() -> None:
    m = eeg_seizure().eval()
    s = to.stream(m, window=1024, hop=256)
    with pytest.raises(ValueError, match=r"1000 samples, shorter than one window \(1024 samples\)") as e:
        to.verify(m, s, torch.randn(18, 1000))
    assert isinstance(e.value, to.ThinkonceError)
    with pytest.raises(to.StreamInputError, match=r"signal has shape \(4, 2000\)"):
        to.verify(m, s, torch.randn(4, 2000))
    assert to.verify(m, s, torch.randn(18, 1024)).n_outputs == 1


def test_verify_continuous_on_a_signal_the_model_cannot_take() -> None:
    net = nn.Sequential(nn.Conv1d(1, 2, 9), nn.ReLU()).eval()
    s = to.stream(net)
    with pytest.raises(to.StreamInputError, match="cannot run on a signal of 4 samples"):
        to.verify(net, s, torch.randn(1, 4))
    with pytest.raises(to.StreamInputError, match="empty"):
        to.verify(net, s, torch.randn(1, 0))
    assert to.verify(net, s, torch.randn(1, 40)).max_abs_error < 1e-5


# ------------------------------------------------------------------------------------------------
# describe and analyze agree on receptive fields
# ------------------------------------------------------------------------------------------------
class _CausalDilated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(2 if i == 0 else 4, 4, 3, dilation=2**i) for i in range(4))
        self.head = nn.Linear(4, 1)

    def forward(self, x):
        for i, c in enumerate(self.convs):
            x = torch.relu(c(F.pad(x, (2 * 2**i, 0))))
        return self.head(x.mean(-1))


class _Reached(Exception):
    pass


def _empirical_rf(plan, node: str, length: int) -> int:
    """Receptive field of the middle frame of ``node``: the input samples its gradient reaches, over
    32 random rows (a ReLU dead on one row is alive on another), on a signal of ``length`` samples."""
    import copy

    from torch.fx import Interpreter

    gm = copy.deepcopy(plan.gm).double()
    x = torch.randn((32, *plan.input_shape[1:-1], length), dtype=torch.float64, requires_grad=True)
    vals = {}

    class Rec(Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if n.name == node:
                vals["v"] = out
                raise _Reached  # the head may need the window's length; the trunk does not
            return out

    with pytest.raises(_Reached):
        Rec(gm).run(x)
    v = vals["v"]
    mid = v.shape[-1] // 2
    (g,) = torch.autograd.grad(v[..., mid].sum(), x)
    idx = torch.nonzero(g.abs().sum(dim=tuple(range(g.dim() - 1))) > 0).flatten()
    return int(idx.max() - idx.min() + 1)


CASES = [
    ("ppg_hr", lambda: ppg_hr(), 256, 64),
    ("eeg_seizure", lambda: eeg_seizure(), 1024, 256),
    ("acc_seizure", lambda: acc_seizure(), 960, 160),
    ("causal_dilated", lambda: _CausalDilated(), 96, 16),
]


@pytest.mark.parametrize("name, make, window, hop", CASES, ids=[c[0] for c in CASES])
def test_describe_and_analyze_report_the_same_receptive_fields(name, make, window, hop) -> None:
    torch.manual_seed(0)
    model = make().eval()
    s = to.stream(model, window=window, hop=hop)
    rfs = receptive_fields(s.plan)
    a = to.analyze(model, window)
    assert {lay.node: lay.receptive_field for lay in a.layers} == {lay.node: rfs[lay.node] for lay in a.layers}
    # and it is the exact receptive field: the samples the middle frame's gradient reaches
    for lay in a.layers[-2:]:
        assert lay.receptive_field == _empirical_rf(s.plan, lay.node, 4 * lay.receptive_field), lay.node
    # the CLI's describe prints these numbers
    if name in ("ppg_hr", "eeg_seizure", "acc_seizure"):
        r = invoke("describe", name)
        assert r.exit_code == 0, r.output
        last = a.layers[-1]
        row = next(line for line in r.output.splitlines() if f" {last.node} " in line)
        assert f" {last.receptive_field} " in row


def test_causal_dilated_receptive_field() -> None:
    s = to.stream(_CausalDilated().eval(), window=96, hop=16)
    rfs = receptive_fields(s.plan)
    assert [rfs[f"convs_{i}"] for i in range(4)] == [3, 7, 15, 31]  # 1 + 2 * (1 + 2 + 4 + 8)


def test_stream_describe_reports_the_exact_receptive_field() -> None:
    s = to.stream(_CausalDilated().eval(), window=96, hop=16)
    rfs = receptive_fields(s.plan)
    rows = {r["node"]: r["receptive_field"] for r in s.describe()}
    assert all(int(rows[n]) == rfs[n] for n in rfs if rows.get(n) is not None)
