"""The StreamiNNC reproduction scripts: harness, quick modes, EXPERIMENTS.md, signal-padded PPG weights."""

from __future__ import annotations

import importlib
import json
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import thinkonce as to
from thinkonce.data import simulate_ppg, window_hr
from thinkonce.models import ppg_hr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))

SCHEME_KEYS = {"hop", "n_windows", "nrmse_vs_normal", "metric", "macs_per_hop", "mac_cut_vs_normal",
               "median_us_per_hop", "speedup_vs_normal"}
RESULT_KEYS = {"window", "hop", "period", "misaligned_hop", "exact_vs_reference_max_abs", "schemes"}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _script(name: str):
    return importlib.import_module(name)


# --------------------------------------------------------------------------- signal-padded PPG weights
SIGNAL_WEIGHTS = resources.files("thinkonce").joinpath("weights", "ppg_hr_signal.safetensors")


def test_ppg_hr_padding_argument() -> None:
    with pytest.raises(ValueError, match="padding"):
        ppg_hr(pretrained=True, padding="reflect")
    # the default is unchanged: the zero-padding weights
    zero = load_file(str(resources.files("thinkonce").joinpath("weights", "ppg_hr.safetensors")))
    net = ppg_hr(pretrained=True)
    torch.testing.assert_close(net.fc2.weight, zero["fc2.weight"], rtol=0, atol=0)
    assert ppg_hr(padding="signal").fc2.weight.shape == (1, 32)  # untrained build needs no weights file

@pytest.mark.skipif(not SIGNAL_WEIGHTS.is_file(), reason="ppg_hr_signal.safetensors not trained yet")
def test_signal_padded_ppg_streams_with_low_deviation() -> None:
    """The signal-padding-trained model streams close to its normal (zero-padded) windowed inference.

    Training measured NRMSE 1.99 % on its 12 validation recordings (2 h); 12 fresh 10-minute
    recordings (results/hr_ppg.json) gave 1.86 %; this 5-minute recording 2.9 % (NRMSE divides by the
    HR range, which is narrower in a short recording). The zero-padding model scores 21-40 % on the
    same recordings, so the 5 % bound has margin and still tells the two apart. Stream MAE here:
    0.29 bpm (zero-padding model streamed: 8.3 bpm).
    """
    net = ppg_hr(pretrained=True, padding="signal")
    assert not net.training
    zero = load_file(str(resources.files("thinkonce").joinpath("weights", "ppg_hr.safetensors")))
    assert not torch.equal(net.fc2.weight, zero["fc2.weight"])  # other weights than the default
    rec = simulate_ppg(300.0, seed=987_654_321, motion=True)
    x = torch.from_numpy(rec.ppg)
    s = to.stream(net, window=256, hop=64)
    rep = to.verify(net, s, x)
    assert rep.nrmse < 0.05, str(rep)
    # and the stream tracks heart rate as well as the network does on its training inputs
    y = s.run(x[None])[0, :, 0].numpy()
    mae = float(np.abs(y - window_hr(rec.hr_bpm, 256, 64)).mean())
    assert mae < 1.5
    meta = json.loads(resources.files("thinkonce").joinpath("weights", "ppg_hr_signal.json").read_text())
    assert meta["padding"] == "signal" and "--padding signal" in meta["command"]
    assert {"signal_padded", "normal_zero_padded", "stream_vs_normal"} <= set(meta["val_inference"])


# --------------------------------------------------------------------------- harness on tiny inputs
class _TinyPooled(nn.Module):
    """A small 'same'-padded conv net with pooling (period 4) and a global-average head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(2, 8, 3, padding=1), nn.BatchNorm1d(8), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(8, 8, 3, padding=1), nn.ReLU(), nn.AvgPool1d(2),
        )
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(-1))


def test_compare_schemes_tiny() -> None:
    common = _script("common")
    torch.manual_seed(0)
    model = _TinyPooled().eval()
    x = torch.randn(2, 2, 64 + 16 * 12)

    def metric(y: torch.Tensor, hop: int) -> dict[str, float]:
        return {"mean": float(y.mean()), "hop": hop}

    res = common.compare_schemes(model, 64, 16, x, metric, transform=common.seizure_probability, n_timing_hops=5)
    assert RESULT_KEYS <= set(res)
    assert res["period"] == 4 and res["misaligned_hop"] == 18
    assert set(res["schemes"]) == set(common.SCHEMES)
    for name, s in res["schemes"].items():
        assert SCHEME_KEYS <= set(s), name
        assert np.isfinite(s["nrmse_vs_normal"]) and s["macs_per_hop"] > 0 and s["median_us_per_hop"] > 0
    assert res["schemes"]["normal"]["nrmse_vs_normal"] == 0
    assert res["schemes"]["misaligned"]["hop"] == 18
    assert res["schemes"]["exact"]["mac_cut_vs_normal"] > 1.5
    assert res["exact_vs_reference_max_abs"] < 1e-5
    # outputs: every scheme on the window grid of its hop
    n_w = (x.shape[-1] - 64) // 16 + 1
    assert res["outputs"]["exact"]["y"].shape == (2, n_w, 1)
    assert res["outputs"]["misaligned"]["y"].shape == (2, (x.shape[-1] - 64) // 18 + 1, 1)
    json.dumps(common.without_outputs(res))  # JSON-ready


def test_no_misaligned_scheme_without_pooling() -> None:
    common = _script("common")
    class Net(nn.Module):  # no pooling: stride period 1, global-average head
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv1d(4, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x).mean(-1)

    res = common.compare_schemes(Net().eval(), 32, 8, torch.randn(1, 1, 96), lambda y, h: {}, n_timing_hops=3)
    assert res["misaligned_hop"] is None and "misaligned" not in res["schemes"]


def test_balanced_sampling_and_signal_padded_training() -> None:
    common = _script("common")
    rng = np.random.default_rng(0)
    y = np.array([1] * 5 + [0] * 95)
    rows = common.balanced_rows(y, 200, rng)
    assert abs(y[rows].mean() - 0.5) < 0.01
    recs = []
    for seed in range(2):
        n = 2048
        labels = np.zeros(n, np.int8)
        labels[600:1200] = 1
        xs = rng.standard_normal((2, n)).astype(np.float32)
        xs[:, 600:1200] *= 4
        recs.append(common.Recording(xs, labels, [(600 / 64, 1200 / 64)], 64.0, seed))
    model = _TinyPooled()
    cfg = common.TrainConfig(epochs=1, windows_per_epoch=32, batch_size=8, start_stride=32)
    info = common.train_classifier(model, recs, 64, "signal", cfg, log=lambda s: None)
    assert info["extension"] > 0 and info["extension"] % 4 == 0 and not model.training
    metric = common.event_metric(recs, 64)
    out = metric(torch.rand(2, (2048 - 64) // 16 + 1, 1), 16)
    assert {"sensitivity", "f1", "false_alarms_per_hour", "n_true"} <= set(out) and out["n_true"] == 2


# --------------------------------------------------------------------------- quick modes and the document
@pytest.mark.parametrize("name", ["seizure_eeg", "seizure_acc"])
def test_seizure_quick_mode(name: str, tmp_path: Path) -> None:
    out = tmp_path / f"{name}.json"
    _script(name).main(["--quick", "--out", str(out)])
    data = json.loads(out.read_text())
    assert {"experiment", "command", "quick", "data", "paper", "models", "runtime_s"} <= set(data)
    assert data["quick"] and set(data["models"]) == {"zero", "signal"}
    for res in data["models"].values():
        assert RESULT_KEYS | {"training"} <= set(res)
        for s in res["schemes"].values():
            assert SCHEME_KEYS <= set(s)
            assert {"f1", "sensitivity", "false_alarms_per_hour"} <= set(s["metric"])
    assert ("misaligned" in data["models"]["zero"]["schemes"]) == (name == "seizure_eeg")
    assert out.with_suffix(".png").stat().st_size > 10_000


@pytest.mark.skipif(not SIGNAL_WEIGHTS.is_file(), reason="ppg_hr_signal.safetensors not trained yet")
def test_hr_ppg_quick_mode_and_markdown(tmp_path: Path) -> None:
    out = tmp_path / "hr_ppg.json"
    _script("hr_ppg").main(["--quick", "--recordings", "1", "--duration", "60", "--out", str(out)])
    data = json.loads(out.read_text())
    assert set(data["models"]) == {"zero", "signal"}
    for res in data["models"].values():
        assert RESULT_KEYS <= set(res)
        for s in res["schemes"].values():
            assert SCHEME_KEYS <= set(s) and "mae_bpm" in s["metric"]
    # the document renders from whatever results exist, quick ones flagged
    md = _script("make_experiments_md").render(tmp_path)
    assert "Heart rate from PPG" in md and "Quick (smoke-test) run" in md
    assert "| signal padding | stream, exact edge (64) |" in md
    assert "seizure_eeg.json` is missing" in md
