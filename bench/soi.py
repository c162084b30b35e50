"""SOI benchmark (issue 9, item 4): per-step MACs and time of Scattered Online Inference streams against
the STMC stream of the same causal U-Net, one process, interleaved.

    python bench/soi.py            # full run (a few minutes on an idle machine), writes results/bench_soi.json + BENCHMARKS.md
    python bench/soi.py --quick    # a few rounds: smoke test of the harness

The network is a causal 1-D U-Net on spectral frames (64 channels in, four encoder convs, four decoder
convs joined to the encoder by concatenation, a 1x1 mask conv), one frame per step, random weights
(cost does not depend on them). Configurations: the STMC stream of the plain U-Net, and
``thinkonce.soi.apply`` at each encoder level (PP and FP) and at two levels at once (PP). For each,
on the eager and the compiled backend:

* MACs per step from the FLOP counter over the whole step cycle (``Stream.cost``): mean, peak, and for
  FP the share computed by ``precompute``;
* time per step: every round runs each contender for one step cycle (2 steps), timing each step alone;
  mean, median and p99 over all steps; for FP the step is timed after ``precompute`` (the critical
  path) and ``precompute`` is timed apart;
* time ratio / MAC ratio against STMC on the same backend (1.0: time falls exactly with the MAC cut).

Every stream is first checked equal to its model on a random signal under a ragged chunking.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: shared cores

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import thinkonce as to  # noqa: E402
import thinkonce.soi as soi  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


class CausalUNet(nn.Module):
    """Encoder e1..e4 (causal k3), decoder d4..d1 with concatenated skips, 1x1 mask conv."""

    def __init__(self, c_in: int = 64, width: int = 64, levels: int = 4) -> None:
        super().__init__()
        self.levels = levels
        self.enc = nn.ModuleList(nn.Conv1d(c_in if i == 0 else width, width, 3) for i in range(levels))
        self.dec = nn.ModuleList(nn.Conv1d(width if i == levels - 1 else 2 * width, width, 3) for i in range(levels))
        self.mask = nn.Conv1d(width, c_in, 1)

    @staticmethod
    def causal(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(conv(F.pad(x, (2 * conv.dilation[0], 0))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for conv in self.enc:
            h = self.causal(conv, h)
            skips.append(h)
        for i in range(self.levels - 1, -1, -1):
            h = self.causal(self.dec[i], h if i == self.levels - 1 else torch.cat([h, skips[i]], dim=1))
        return x * torch.sigmoid(self.mask(h))


def configurations(levels: int) -> list[tuple[str, list[str], str]]:
    """(name, S-CC layers, mode): STMC first, then every encoder level PP and FP, then two levels PP."""
    out: list[tuple[str, list[str], str]] = [("stmc", [], "")]
    for i in range(levels):
        out.append((f"pp_enc{i + 1}", [f"enc.{i}"], "pp"))
    for i in range(levels):
        out.append((f"fp_enc{i + 1}", [f"enc.{i}"], "fp"))
    out.append(("pp_enc2+enc4", ["enc.1", "enc.3"], "pp"))
    return out


def _exact(s: to.Stream, model: nn.Module, c_in: int) -> float:
    x = torch.randn(1, c_in, 97)
    with torch.no_grad():
        ref = model(x)
    y = s.run(x, chunk=[1, 3, 2, 1, 5])
    return float((y - ref).abs().max())


def _stats(v: list[float]) -> dict[str, float]:
    a = np.asarray(v)
    return {"mean_us": float(a.mean()), "median_us": float(np.median(a)), "p99_us": float(np.percentile(a, 99)),
            "min_us": float(a.min()), "max_us": float(a.max()), "n": int(a.size)}


def run(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few rounds: a smoke test of the harness")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--backends", default="eager,compiled")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench_soi.json"))
    ap.add_argument("--md", default=str(ROOT / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rounds = args.rounds or (20 if args.quick else 600)
    c_in, levels = 64, 4
    t_start = time.time()
    load0 = [round(v, 2) for v in os.getloadavg()]
    base = CausalUNet(c_in, 64, levels).eval()
    ex = torch.zeros(1, c_in, 64)
    backends = [b for b in args.backends.split(",") if b]
    contenders: dict[str, dict[str, Any]] = {}
    for name, at, mode in configurations(levels):
        model = base if not at else soi.apply(base, at=at, mode=mode, fill="duplicate", example_input=ex).eval()
        for be in backends:
            s = to.stream(model, example_input=ex, backend=be)
            cost = s.cost(1)
            fp = mode == "fp"
            st = s.init_state(1)
            _, st = s.step(torch.zeros(1, c_in, s.warmup + (s.warmup % 2)), st)
            if fp:
                st = s.precompute(st)
            contenders[f"{name}/{be}"] = {
                "config": name, "backend": be, "at": at, "mode": mode or "stmc", "stream": s, "state": st,
                "fp": fp, "cost": cost.as_dict(), "exact_max_abs_err": _exact(s, model, c_in),
                "params": sum(p.numel() for p in model.parameters()), "times": [], "phase_times": [[], []],
                "pre_times": [],
            }
    frame = torch.randn(1, c_in, 1)
    for c in contenders.values():  # warm every traced graph (both phases, both layouts) before timing
        for _ in range(8):
            _, c["state"] = c["stream"].step(frame, c["state"])
            if c["fp"]:
                c["state"] = c["stream"].precompute(c["state"])
    with torch.no_grad():
        for _ in range(rounds):
            for c in contenders.values():
                s, st = c["stream"], c["state"]
                for phase in range(2):
                    t0 = time.perf_counter_ns()
                    _, st = s.step(frame, st)
                    dt = (time.perf_counter_ns() - t0) / 1e3
                    c["times"].append(dt)
                    c["phase_times"][phase].append(dt)
                    if c["fp"]:
                        t0 = time.perf_counter_ns()
                        st = s.precompute(st)
                        c["pre_times"].append((time.perf_counter_ns() - t0) / 1e3)
                c["state"] = st
    results: dict[str, Any] = {}
    for key, c in contenders.items():
        ref = contenders[f"stmc/{c['backend']}"]
        r = {k: c[k] for k in ("config", "backend", "at", "mode", "fp", "cost", "exact_max_abs_err", "params")}
        r["step"] = _stats(c["times"])
        r["phase_median_us"] = [float(np.median(v)) for v in c["phase_times"]]
        r["precompute"] = _stats(c["pre_times"]) if c["pre_times"] else None
        r["mac_ratio"] = c["cost"]["macs_per_sample"] / ref["cost"]["macs_per_sample"]
        r["critical_mac_ratio"] = c["cost"]["mean_macs"] / ref["cost"]["mean_macs"]
        r["time_ratio"] = r["step"]["mean_us"] / _stats(ref["times"])["mean_us"]
        r["p99_ratio"] = r["step"]["p99_us"] / _stats(ref["times"])["p99_us"]
        # all work per frame for FP: step + precompute (same processor, idle time included)
        total = r["step"]["mean_us"] + (r["precompute"]["mean_us"] if r["precompute"] else 0.0)
        r["total_time_ratio"] = total / _stats(ref["times"])["mean_us"]
        r["time_over_mac_ratio"] = r["total_time_ratio"] / r["mac_ratio"]
        results[key] = r
    out = {
        "command": "python bench/soi.py" + (" --quick" if args.quick else "")
                   + (f" --rounds {args.rounds}" if args.rounds else "")
                   + (f" --backends {args.backends}" if args.backends != "eager,compiled" else ""),
        "quick": bool(args.quick), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "rounds": rounds,
        "duration_s": round(time.time() - t_start, 1), "threads": 1, "torch": torch.__version__,
        "load_avg_start": load0, "load_avg_end": [round(v, 2) for v in os.getloadavg()],
        "network": {"kind": "causal 1-D U-Net", "channels_in": c_in, "width": 64, "levels": levels,
                    "params": sum(p.numel() for p in base.parameters()), "step": "1 frame", "fill": "duplicate"},
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    if args.md:
        import make_benchmarks_md

        streaming_json = ROOT / "results" / "bench_streaming.json"
        if streaming_json.exists() and Path(args.out).resolve() == (ROOT / "results" / "bench_soi.json").resolve():
            make_benchmarks_md.write(streaming_json, args.md)
        else:  # a side run (tests): the SOI section alone
            Path(args.md).write_text("\n".join(make_benchmarks_md.soi_section(out)) + "\n")
    return out


if __name__ == "__main__":
    r = run()
    for k, v in r["results"].items():
        print(f"{k:22s} MAC x{v['mac_ratio']:.3f} (critical x{v['critical_mac_ratio']:.3f})  step mean "
              f"{v['step']['mean_us']:7.1f} us p99 {v['step']['p99_us']:7.1f} us  time/MAC {v['time_over_mac_ratio']:.2f}")
