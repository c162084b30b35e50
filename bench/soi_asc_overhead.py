"""Per-hop time of the acoustic-scene window stream (experiments/soi_asc.py's ResNet1d, STMC and SOI),
with the step's library code of an earlier commit and of this tree alternated in one process, beside the
window recompute (normal inference). One thread; medians of interleaved runs.

    git archive <old-commit> src/thinkonce/stream/kernels.py src/thinkonce/stream/program.py | tar -x -C /tmp/old
    PYTHONPATH=src python bench/soi_asc_overhead.py --old /tmp/old/src/thinkonce/stream

Only the two files the overhead cut changed are swapped (the conv kernel and the plan's module calls).
Writes results/soi_asc_overhead.json.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    m = importlib.util.module_from_spec(spec)
    m.__package__ = "thinkonce.stream"
    spec.loader.exec_module(m)
    return m


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", type=Path, required=True, help="folder with the old kernels.py and program.py")
    ap.add_argument("--steps", type=int, default=400)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    import soi_asc as A
    import thinkonce

    P = importlib.import_module("thinkonce.stream.program")
    convs = [importlib.import_module("thinkonce.ops.conv"), importlib.import_module("thinkonce.soi.ops")]
    old_k = _load(args.old / "kernels.py", "thinkonce.stream._kernels_old")
    old_p = _load(args.old / "program.py", "thinkonce.stream._program_old")
    new_conv, new_call = convs[0].conv1d, P.make_call
    torch.manual_seed(0)
    x = torch.randn(1, A.MELS, 64 * 40)
    out: dict = {"threads": 1, "steps": args.steps, "load_avg": list(__import__("os").getloadavg()), "configs": {}}

    def use(old: bool) -> None:
        for m in convs:
            m.conv1d = old_k.conv1d if old else new_conv

    for name, scc in (("stmc", ()), ("soi", (1,))):
        model = A.ResNet1d(10, scc=scc).eval()
        s_new = thinkonce.stream(model, window=A.WINDOW, hop=A.STEP, check=False)
        P.make_call = old_p.make_call  # the old stream's program binds the old module calls
        s_old = thinkonce.stream(model, window=A.WINDOW, hop=A.STEP, check=False)
        P.make_call = new_call
        streams = {"old": s_old, "new": s_new}
        st = {}
        for k, s in streams.items():
            use(k == "old")
            st[k] = s.init_state(1)
            for i in range(8):
                _, st[k] = s.step(x[..., i * A.STEP:(i + 1) * A.STEP], st[k])
        use(False)
        times: dict[str, list[float]] = {"old": [], "new": [], "normal": []}
        with torch.no_grad():
            for i in range(args.steps):
                for k in (["old", "new", "normal"] if i % 2 else ["new", "normal", "old"]):
                    use(k == "old")
                    t0 = time.perf_counter_ns()
                    if k == "normal":
                        model(x[..., :A.WINDOW])
                    else:
                        _, st[k] = streams[k].step(x[..., :A.STEP], st[k])
                    times[k].append((time.perf_counter_ns() - t0) / 1e3)
            use(False)
        med = {f"us_per_hop_{k}_median": float(np.median(v)) for k, v in times.items()}
        med["new_over_old"] = med["us_per_hop_new_median"] / med["us_per_hop_old_median"]
        out["configs"][name] = med
        print(name, {k: round(v, 3) for k, v in med.items()})
    (REPO / "results").mkdir(exist_ok=True)
    (REPO / "results" / "soi_asc_overhead.json").write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
