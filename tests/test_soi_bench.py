"""bench/soi.py: the harness writes the JSON and a BENCHMARKS.md section generated from it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import soi as bench_soi  # noqa: E402
from make_benchmarks_md import _us  # noqa: E402


def test_quick_soi_benchmark_writes_json_and_markdown(tmp_path) -> None:
    n = torch.get_num_threads()
    try:
        out, md = tmp_path / "bench_soi.json", tmp_path / "BENCHMARKS.md"
        r = bench_soi.run(["--quick", "--rounds", "2", "--backends", "eager", "--out", str(out), "--md", str(md)])
    finally:
        torch.set_num_threads(n)
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(r))
    res = data["results"]
    assert set(res) == {f"{c}/eager" for c, _, _ in bench_soi.configurations(4)}
    stmc = res["stmc/eager"]
    assert stmc["mac_ratio"] == 1.0 and stmc["cost"]["steps"] == 1
    for v in res.values():
        assert v["exact_max_abs_err"] < 1e-4
        assert v["step"]["n"] == 2 * data["rounds"]
        if v["mode"] != "stmc":
            assert v["cost"]["steps"] == 2 ** len(v["at"]) and v["mac_ratio"] < 1.0
        if v["fp"]:  # the step after precompute does less than the whole network's work
            assert v["critical_mac_ratio"] < v["mac_ratio"] and v["precompute"]["n"] == 2 * data["rounds"]
    # a deeper S-CC saves less
    ratios = [res[f"pp_enc{i}/eager"]["mac_ratio"] for i in range(1, 5)]
    assert ratios == sorted(ratios)
    text = md.read_text()
    assert "## Scattered Online Inference vs STMC" in text
    assert f"| {_us(stmc['step']['mean_us'])} |" in text
