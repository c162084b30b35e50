"""The parsimonious-inference experiments and benchmark run end to end in their --quick forms."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))
sys.path.insert(0, str(REPO / "bench"))

pytest.importorskip("sklearn")
pytest.importorskip("torch_pruning")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_lkam_digits_quick(tmp_path, monkeypatch):
    import lkam_common
    import lkam_digits

    monkeypatch.setattr(lkam_common, "RESULTS", tmp_path)
    monkeypatch.setattr(lkam_digits, "RESULTS", tmp_path)
    out = lkam_digits.main(["--quick"])["digits"]
    saved = json.loads((tmp_path / "lkam_digits_quick.json").read_text())
    assert saved["points"].keys() == out["points"].keys()
    (p,) = out["points"].values()
    assert p["deployed_vs_masked_max_abs"] <= 1e-4  # deploy computes what the gated model computes
    assert p["acc_deployed"] == pytest.approx(p["acc_gated"], abs=1e-6)
    assert set(out["recipes"]) >= {"ste", "anneal", "gumbel"}
    assert (tmp_path / "lkam_digits_quick_engaged.png").is_file()
    import lkam_md

    (tmp_path / "lkam_digits.json").write_text(json.dumps(saved))
    text = "\n".join(lkam_md.section(tmp_path))
    assert "Parsimonious inference" in text and "| ste |" in text


def test_lkam_eeg_quick(tmp_path, monkeypatch):
    data = REPO.parent / "shared" / "data" / "eeg_bonn" / "bonn_eeg.npz"
    if not data.is_file():
        pytest.skip(f"Bonn EEG not staged at {data}")
    import lkam_common
    import lkam_eeg

    monkeypatch.setattr(lkam_common, "RESULTS", tmp_path)
    monkeypatch.setattr(lkam_eeg, "RESULTS", tmp_path)
    out = lkam_eeg.main(["--quick"])
    (p,) = out["points"].values()
    assert p["stream_vs_reference_max_abs"] <= 1e-4  # the gated stream equals signal-padded gated windows
    assert p["macs_per_hop"]["stream_deployed"] > 0
