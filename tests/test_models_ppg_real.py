"""The real-data PPG network: causal running normalisation, streaming exactness, shipped weights,
and (when ../shared/data is present) the real-data experiments' quick forms and the TROIKA demo."""

from __future__ import annotations

import importlib
import json
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import thinkonce as to
from thinkonce.data import DataNotFoundError, data_root
from thinkonce.models import CausalRunningNorm, PPGHeartRateRealNet, ppg_hr

from nets import assert_close

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = resources.files("thinkonce").joinpath("weights")


def _data_present() -> bool:
    try:
        root = data_root()
    except DataNotFoundError:
        return False
    return all((root / d).is_dir() for d in ("ppg_spc2015_troika", "eeg_bonn", "eeg_malow_seizure", "acc_uea_epilepsy"))


needs_data = pytest.mark.skipif(not _data_present(), reason="real data not found (set THINKONCE_DATA or ../shared/data)")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- running normalisation
def test_running_norm_uses_the_available_past_only() -> None:
    """Statistics over the samples that exist (fewer than ``length`` at the left edge), by hand."""
    x = torch.randn(2, 3, 40, dtype=torch.float64) * 5 + 3
    L = 8
    y = CausalRunningNorm(length=L, eps=0.0, clip=1e9)(x)
    mean = torch.stack([x[..., max(0, t - L + 1) : t + 1].mean(-1) for t in range(40)], -1)
    c = x - mean
    power = torch.stack([(c[..., max(0, t - L + 1) : t + 1] ** 2).mean(-1) for t in range(40)], -1)
    torch.testing.assert_close(y[..., 1:], (c / power.sqrt())[..., 1:])
    assert float(CausalRunningNorm(length=L)(x)[..., 0].abs().max()) == 0.0  # one sample: nothing to scale by


@given(gain=st.floats(1e-2, 1e4), offset=st.floats(-1e4, 1e4))
@settings(max_examples=25, deadline=None)
def test_running_norm_ignores_device_gain_and_offset(gain: float, offset: float) -> None:
    x = torch.randn(1, 4, 300, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    norm = CausalRunningNorm(length=64, eps=1e-12)
    torch.testing.assert_close(norm(gain * x + offset), norm(x), atol=1e-6, rtol=1e-6)


def test_running_norm_refuses_short_length() -> None:
    with pytest.raises(ValueError, match="length"):
        CausalRunningNorm(length=1)


# --------------------------------------------------------------------------- the network
def test_real_model_shapes_and_arguments() -> None:
    m = ppg_hr(trained_on="real").eval()
    assert isinstance(m, PPGHeartRateRealNet)
    assert m(torch.randn(3, 4, 256)).shape == (3, 1)
    assert PPGHeartRateRealNet(in_channels=1)(torch.randn(2, 1, 256)).shape == (2, 1)
    with pytest.raises(ValueError, match="trained_on"):
        ppg_hr(trained_on="troika")
    with pytest.raises(ValueError, match="in_channels"):
        PPGHeartRateRealNet(in_channels=2)
    with pytest.raises(RuntimeError):  # the first conv refuses a wrong channel count
        m(torch.randn(1, 1, 256))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), chunks=st.lists(st.integers(1, 150), min_size=1, max_size=6),
       gain=st.floats(0.1, 1000.0))
def test_real_model_stream_equals_signal_padded_reference(seed: int, chunks: list[int], gain: float) -> None:
    torch.manual_seed(seed)
    model = PPGHeartRateRealNet().eval()
    s = to.stream(model, window=256, hop=64)
    x = torch.randn(2, 4, 256 + 64 * 6 + 5) * gain + 100.0
    state = s.init_state(2)
    outs, pos, i = [], 0, 0
    while pos < x.shape[-1]:
        y, state = s.step(x[..., pos : pos + chunks[i % len(chunks)]], state)
        outs.append(y)
        pos += chunks[i % len(chunks)]
        i += 1
    y = torch.cat(outs, dim=1)
    n_win = (x.shape[-1] - 256) // 64 + 1
    ref = torch.stack([s.reference(to.extended_windows(x[b], 256, 64, s.extension)[:n_win]) for b in range(2)])
    assert_close(y, ref, tol=1e-4)


@pytest.mark.parametrize("padding", ["zero", "signal"])
def test_shipped_real_weights_load_and_are_documented(padding: str) -> None:
    name = "ppg_hr_real_signal" if padding == "signal" else "ppg_hr_real"
    assert WEIGHTS.joinpath(f"{name}.safetensors").is_file()
    meta = json.loads(WEIGHTS.joinpath(f"{name}.json").read_text())
    assert meta["padding"] == padding and meta["trained_on"] == "real"
    assert not set(meta["data"]["val_recordings"]) & set(meta["data"]["train_recordings"])
    assert all(r.startswith("DATA_") for r in meta["data"]["train_recordings"])  # train/ only, never test/
    m = ppg_hr(pretrained=True, padding=padding, trained_on="real")
    assert not m.training and m.hr_scale > 1
    x = torch.randn(1, 4, 512)
    with torch.no_grad():  # raw units in: the same heart rate whatever the device's PPG gain and offset
        torch.testing.assert_close(m(x[..., :256]), m(x[..., :256] * 300 + 2000), atol=1e-2, rtol=1e-4)


def test_default_sim_model_unchanged() -> None:
    from safetensors.torch import load_file

    zero = load_file(str(WEIGHTS.joinpath("ppg_hr.safetensors")))
    torch.testing.assert_close(ppg_hr(pretrained=True).fc2.weight, zero["fc2.weight"], rtol=0, atol=0)
    assert ppg_hr(pretrained=True, padding="signal", trained_on="sim").blocks[0].convs[0].in_channels == 1


# --------------------------------------------------------------------------- with the real data
@needs_data
def test_real_pretrained_tracks_heart_rate_on_a_troika_training_recording() -> None:
    from thinkonce.data import load_troika

    rec = load_troika("train")[4]  # DATA_05: used in training, so this checks loading and wiring, not skill
    m = ppg_hr(pretrained=True, padding="signal", trained_on="real")
    s = to.stream(m, window=256, hop=64)
    y = s.run(torch.from_numpy(rec.model_input())[None])[0, : len(rec.window_bpm), 0].numpy()
    assert np.abs(y - rec.window_bpm).mean() < 8.0


def _experiment(name: str):
    sys.path.insert(0, str(REPO / "experiments"))
    return importlib.import_module(name)


@needs_data
def test_real_experiments_quick(tmp_path: Path) -> None:
    out = _experiment("hr_ppg").main(["--data", "real", "--quick", "--out", str(tmp_path / "hr.json")])
    assert (tmp_path / "hr.png").is_file() and (tmp_path / "hr_curves.png").is_file()
    for padding in ("zero", "signal"):
        sch = out["models"][padding]["schemes"]
        assert sch["exact"]["n_windows"] >= sch["exact"]["metric"]["n_windows_scored"] > 0
        assert np.isfinite(sch["exact"]["nrmse_vs_normal"]) and sch["exact"]["metric"]["mae_bpm"] > 0
        assert sch["exact"]["nrmse_vs_normal"] == pytest.approx(sch["stale"]["nrmse_vs_normal"])  # causal trunk
        assert out["models"][padding]["exact_vs_reference_max_abs"] < 1e-3
    acc = _experiment("seizure_acc").main(["--data", "real", "--quick", "--out", str(tmp_path / "acc.json")])
    assert set(acc["models"]) == {"zero", "signal"}
    assert 0 <= acc["models"]["signal"]["schemes"]["exact"]["metric"]["balanced_accuracy"] <= 1
    eeg = _experiment("seizure_eeg").main(["--data", "real", "--quick", "--out", str(tmp_path / "eeg.json")])
    assert (tmp_path / "eeg.png").is_file()
    mal = eeg["models"]["signal"]["malow"]["schemes"]["exact"]
    assert 0 <= mal["metric"]["mean_prob_post"] <= 1 and np.isfinite(mal["nrmse_vs_normal"])
    md = _experiment("make_experiments_md")
    (tmp_path / "hr_ppg_real.json").write_text((tmp_path / "hr.json").read_text())
    text = md.render(tmp_path)
    assert "# Real recordings" in text and "TROIKA" in text and "Quick (smoke-test) run" in text


@needs_data
def test_demo_streams_a_troika_test_recording() -> None:
    from thinkonce.demo import run_demo

    res = run_demo(40.0, data="troika", recording="TEST_S02_T01", backend="eager")
    assert "TEST_S02_T01" in res.source and len(res.hr_true) == len(res.hr_stream) > 5
    assert np.isfinite(res.mae_stream) and res.macs_stream < res.macs_normal
    with pytest.raises(ValueError, match="not in the TROIKA test set"):
        run_demo(40.0, data="troika", recording="DATA_01_TYPE01", backend="eager")


def test_demo_troika_without_data_names_the_path(tmp_path: Path) -> None:
    from thinkonce.demo import run_demo

    with pytest.raises(DataNotFoundError, match="ppg_spc2015_troika"):
        run_demo(40.0, data="troika", root=tmp_path, backend="eager")
    with pytest.raises(ValueError, match="data must be"):
        run_demo(40.0, data="bonn")
