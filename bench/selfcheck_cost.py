"""What the self-check costs: construction of the reference nets' streams without the check, and the
check itself (``thinkonce.stream(..., check=True)`` runs it once), side by side in one process.

    python bench/selfcheck_cost.py [--rounds 5]   ->  results/bench_selfcheck.json

Single thread; the fastest of ``rounds`` interleaved repetitions of each (construction is dominated by
tracing and conversion, the check by two model evaluations of a window plus the probe's steps).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import time
import warnings
from pathlib import Path

import torch

import thinkonce as to
from thinkonce.models import acc_seizure, eeg_seizure, ppg_hr

ROOT = Path(__file__).resolve().parents[1]
NETS = {"ppg_hr": (lambda: ppg_hr(pretrained=True), 256, 64), "eeg_seizure": (eeg_seizure, 1024, 256),
        "acc_seizure": (acc_seizure, 960, 160)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "results" / "bench_selfcheck.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    check = importlib.import_module("thinkonce.stream.check")
    nets = {}
    for name, (make, window, hop) in NETS.items():
        model = make().eval()
        build, chk = [], []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            s = to.stream(model, window=window, hop=hop, check=False)
            build.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            check.self_check(s)
            chk.append(time.perf_counter() - t0)
        b, c = min(build), min(chk)
        nets[name] = {"window": window, "hop": hop, "build_ms": 1e3 * b, "check_ms": 1e3 * c,
                      "check_share_of_construction": c / (b + c)}
        print(f"{name}: construction {1e3 * b:.1f} ms without the check, check {1e3 * c:.1f} ms "
              f"= {100 * c / (b + c):.1f} % of construction")
    out = {"rounds": args.rounds, "threads": 1, "load_avg": list(os.getloadavg()), "target_share": 0.10, "nets": nets}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
