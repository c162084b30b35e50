"""The SOI studies (issue 9 items 5-6): data split, fills, and the --quick forms of both experiments.

The quick forms train for a few steps only: they check the code path and the invariants that hold for
any weights (streams equal to the offline model, MACs per second cut by the S-CC, the 4 kHz baseline at
exactly half the STMC MACs per second, FP critical path below STMC's peak). Without the Debian package
data (`make soi-data`) the studies run on their synthetic fallbacks, and the tests that need the real
data skip, saying so.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))

import soi_asc  # noqa: E402
import soi_asc_data  # noqa: E402
import soi_data  # noqa: E402
import soi_speech  # noqa: E402
from soi_unet import Fill, SepUNet  # noqa: E402

SPEECH_APT = shutil.which("flite") is not None and Path("/usr/share/asterisk/sounds/en").is_dir()
SPEECH_SHARED = (soi_data.SHARED / "speech_fsdd" / "fsdd.npz").is_file()
ASC_DATA = len(soi_asc_data.load()[0]) >= 2


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("kind,delay", [("linear", 1), ("cubic", 3), ("nearest", 1)])
def test_interpolating_fill_reproduces_a_ramp_after_its_delay(kind: str, delay: int) -> None:
    """Half-rate samples of a ramp (frames 0, 2, 4, ...) come back as the full-rate ramp, ``delay`` late."""
    f = Fill(1, kind, "pp")
    d = torch.arange(0, 40, 2, dtype=torch.float32).view(1, 1, -1)
    u = f(d)[0, 0]
    assert f.delay == delay and u.shape[-1] == 40
    t = torch.arange(40, dtype=torch.float32)
    lo = delay + (3 if kind == "cubic" else 1)  # after the start-up frames of the kernel
    want = t - delay if kind != "nearest" else 2 * torch.ceil((t - delay) / 2)
    torch.testing.assert_close(u[lo:], want[lo:], rtol=0, atol=1e-5)


def test_fp_shifts_the_refilled_path_one_frame() -> None:
    d = torch.randn(1, 3, 8)
    pp, fp = Fill(3, "duplicate", "pp")(d), Fill(3, "duplicate", "fp")(d)
    torch.testing.assert_close(fp[..., 1:], pp[..., :-1])
    assert float(fp[..., 0].abs().max()) == 0.0


def test_sepunet_refuses_bad_positions() -> None:
    with pytest.raises(ValueError, match="outside 0..4"):
        SepUNet(scc=(5,))
    with pytest.raises(ValueError, match="one S-CC only"):
        SepUNet(scc=(0, 2), fill="linear")


def test_mixtures_pair_two_different_speakers_within_the_gain_range() -> None:
    t = np.arange(16000) / 8000
    # stationary "speakers" of RMS 0.1 exactly: any segment has the speaker's RMS, so the gain shows
    speakers = {f"s{i}": (0.1 * np.sqrt(2) * np.sin(2 * np.pi * (200 + 50 * i) * t)).astype(np.float32) for i in range(4)}
    mix, src, pairs = soi_data.mixtures(speakers, 40, 4000, seed=3)
    assert all(a != b for a, b in pairs)
    np.testing.assert_allclose(mix, src.sum(1), atol=1e-6)
    gain_db = 20 * np.log10(np.sqrt((src ** 2).mean(-1)) / 0.1)
    assert np.all(np.abs(gain_db) <= 5.0 + 0.05) and gain_db.std() > 1.0  # spread over the range, within it


@pytest.mark.parametrize("method", soi_speech.RESAMPLERS)
def test_resamplers_keep_a_low_tone(method: str) -> None:
    t = np.arange(8000) / 8000
    x = np.sin(2 * np.pi * 300 * t)[None].astype(np.float32)
    y = soi_speech.resample(soi_speech.resample(x, 1, 2, method), 2, 1, method)
    assert y.shape == x.shape
    assert np.abs(y[0, 400:-400] - x[0, 400:-400]).max() < 0.1


@pytest.mark.skipif(not (SPEECH_APT and SPEECH_SHARED),
                    reason="speech data absent: ../shared/data/speech_fsdd and the apt packages of `make soi-data` "
                           "(flite, festival, espeak-ng, fortunes, asterisk-core-sounds-*); the quick study below "
                           "then runs on the synthetic fallback")
def test_speech_split_keeps_evaluation_speakers_out_of_training() -> None:
    sp = soi_data.load_speakers()
    assert not set(sp.train) & set(sp.eval)
    voices = {k for k in list(sp.train) + list(sp.eval) if k.startswith("synth:")}
    assert len(voices) >= 6, voices
    assert {k.split(":")[0] for k in sp.eval} >= {"fsdd", "voxforge", "synth", "asterisk"}
    assert not any(k.startswith("asterisk:") for k in sp.train)
    assert not sp.missing


def test_speech_quick(tmp_path: Path) -> None:
    out = tmp_path / "soi_speech.json"
    r = soi_speech.run(quick=True, out=out, fallback=not (SPEECH_APT and SPEECH_SHARED))
    assert json.loads(out.read_text())["configs"].keys() == r["configs"].keys()
    cf = r["configs"]
    assert {"STMC", "PP S-CC@0+2 duplicate", "FP S-CC@1 duplicate", "STMC @ 4 kHz (resampled)"} <= cf.keys()
    b = cf["STMC"]
    for name, c in cf.items():
        assert c["stream_vs_model_max_abs"] <= 1e-4, name  # the stream computes the trained function
        assert all(np.isfinite(v["mean"]) for v in c["summary"].values()), name
        assert c["time_ratio_vs_stmc"] > 0
    pp = cf["PP S-CC@0+2 duplicate"]
    assert pp["macs_peak"] == b["macs_peak"]  # one step in four runs the whole network
    assert pp["mac_cut_pct"] > 50  # two S-CC: the deep path at a quarter rate
    assert cf["STMC @ 4 kHz (resampled)"]["mmac_per_s"] == pytest.approx(b["mmac_per_s"] / 2)
    fp = cf["FP S-CC@1 duplicate"]
    assert fp["critical_macs_peak"] < b["macs_peak"]
    assert 0 < fp["precomputed_share"] < 1


def test_fp_precompute_latency_quick() -> None:
    r = soi_speech.fp_latency(steps=12, frames=32)
    for name, c in r["configs"].items():
        assert c["stream_vs_model_max_abs"] <= 1e-5, name
        assert c["critical_macs_peak"] < c["stmc_macs_per_step"], name
        assert max(c["precompute_macs_per_step"]) > 0, name


@pytest.mark.skipif(not ASC_DATA, reason="game-data audio not extracted (`make soi-data`, then "
                                         "`python experiments/soi_asc.py --setup`); the quick study runs on its fallback")
def test_asc_split_is_by_source_file() -> None:
    data, sources = soi_asc_data.load()
    assert len(data) >= 6
    classes, train, test = soi_asc.split(data)
    assert not {sid for _, sid, _ in train} & {sid for _, sid, _ in test}
    assert {c for c, _, _ in test} == set(range(len(classes)))


def test_asc_quick(tmp_path: Path) -> None:
    r = soi_asc.run(quick=True, out=tmp_path / "asc.json", fallback=not ASC_DATA)
    st, soi = r["configs"]["STMC"], r["configs"]["SOI@1"]
    for c in (st, soi):
        assert 0 <= c["window_acc_mean"] <= 1 and 0 <= c["stream_window_acc_mean"] <= 1
        assert c["mmac_per_s_stream"] < c["mmac_per_s_normal"]
    assert soi["macs_per_hop_stream"] < st["macs_per_hop_stream"]
    assert soi["params"] == st["params"]
