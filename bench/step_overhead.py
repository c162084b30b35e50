"""Per-call cost of ``Stream.step`` on the native backend, before and after a change, side by side in one
process: the anchor trunk at hop 1 and the PPG net (window 256, hop 64), donated and pure calls, plus
the bound loop (``Stream.bind``) of this tree.

    python bench/step_overhead.py [--before main] [--rounds 9] [--out results/bench_step_overhead.json]

``--before`` names a git revision: its ``src/thinkonce`` is extracted to a temporary directory and
imported as the package ``thinkonce_before`` (absolute self-imports renamed), so both versions run in
the same process, interleaved round by round (timings on a shared machine are noisy: only the ratios
are meaningful). Each figure is the median over rounds of a block of calls, 1 thread, batch 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))


def import_revision(rev: str, into: Path):
    """``src/thinkonce`` at ``rev`` as the module ``thinkonce_before``."""
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src/thinkonce"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=tar, check=True)
    pkg = into / "thinkonce_before"
    (into / "src" / "thinkonce").rename(pkg)
    for f in pkg.rglob("*.py"):
        text = f.read_text()
        new = re.sub(r"\b(from|import) thinkonce\.", r"\1 thinkonce_before.", text)
        if new != text:
            f.write_text(new)
    sys.path.insert(0, str(into))
    import thinkonce_before

    return thinkonce_before


def make(lib, which: str):
    """(stream, steady state, chunk) of one net on ``lib``'s native backend."""
    from streaming import AnchorNet, Trunk

    from thinkonce.models import ppg_hr

    torch.manual_seed(0)
    if which == "anchor":
        s = lib.stream(Trunk(AnchorNet().eval()).eval(), example_input=torch.zeros(1, 1, 256), backend="native")
        x, first = torch.randn(1, 1, 1), s.warmup + 64
    else:
        s = lib.stream(ppg_hr().eval(), window=256, hop=64, backend="native")
        x, first = torch.randn(1, 1, 64), 256
    _, st = s.step(torch.randn(1, 1, first), s.init_state(1))
    return s, st, x


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", default="main")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--out", default=str(ROOT / "results" / "bench_step_overhead.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    import thinkonce as after

    tmp = Path(tempfile.mkdtemp(prefix="thinkonce_before_"))
    before = import_revision(args.before, tmp)
    result: dict = {"before": args.before, "rounds": args.rounds, "loadavg_before": list(os.getloadavg()), "nets": {}}
    for which in ("anchor", "ppg"):
        calls = {}
        for tag, lib in (("before", before), ("after", after)):
            for donate in (True, False):
                s, st, x = make(lib, which)
                box = [st]

                def api(s=s, x=x, box=box, donate=donate):
                    _, box[0] = s.step(x, box[0], donate=donate)

                calls[f"{tag}_step_{'donate' if donate else 'pure'}"] = api
        s, st, x = make(after, which)
        bound = s.bind(st, chunk=x.shape[-1])
        bound.x.copy_(x)
        calls["after_bound"] = bound
        for f in calls.values():
            for _ in range(4 * s.clock.modulus // x.shape[-1] + 64):
                f()
        ts: dict[str, list[float]] = {k: [] for k in calls}
        reps = 300 if which == "anchor" else 100
        for _ in range(args.rounds):
            for k, f in calls.items():
                t0 = time.perf_counter()
                for _ in range(reps):
                    f()
                ts[k].append((time.perf_counter() - t0) / reps * 1e6)
        med = {k: statistics.median(v) for k, v in ts.items()}
        result["nets"][which] = {"us_per_call": med, "chunk": x.shape[-1],
                                 "bound_compiled_phases": list(bound.compiled_phases),
                                 "step_donate_after_over_before": med["after_step_donate"] / med["before_step_donate"],
                                 "step_pure_after_over_before": med["after_step_pure"] / med["before_step_pure"]}
        print(which, json.dumps({k: round(v, 1) for k, v in med.items()}), flush=True)
    result["loadavg_after"] = list(os.getloadavg())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
