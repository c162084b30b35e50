"""StreamiNNC heart rate from PPG: both shipped PPG models under every inference scheme.

    python experiments/hr_ppg.py            # full: 12 fresh 10-minute recordings (~2-4 min)
    python experiments/hr_ppg.py --quick    # 2 recordings of 2 minutes (seconds)
    python experiments/hr_ppg.py --data real [--quick]   # TROIKA test/ (experiments/hr_ppg_real.py)

The two shipped models share one architecture: ``ppg_hr(pretrained=True)`` was trained with zero
padding (plain windows), ``ppg_hr(pretrained=True, padding="signal")`` with StreamiNNC signal padding.
Each runs on fresh simulated recordings (seeds never used in training or validation) as normal
windowed inference, exact and stale-edge streams, the approximate baseline and a misaligned stream
(see experiments/common.py). Task metric: HR MAE in bpm against the window's mean true HR.
Writes results/hr_ppg.json and results/hr_ppg.png.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from thinkonce.data import simulate_ppg, window_hr  # noqa: E402
from thinkonce.models import ppg_hr  # noqa: E402

FS, WINDOW, HOP = 32.0, 256, 64
SEED_BASE = 700_000  # training used 0..119, validation 500000..500011
PAPER = {"nrmse_zero_pct": 5.83, "nrmse_signal_pct": 2.03, "mac_cut": 3.5}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 short recordings: a smoke test")
    p.add_argument("--data", choices=("sim", "real"), default="sim",
                   help="sim: fresh simulated recordings; real: TROIKA test/ (see experiments/hr_ppg_real.py)")
    p.add_argument("--root", type=Path, default=None, help="real-data folder (default: THINKONCE_DATA or ../shared/data)")
    p.add_argument("--out", type=Path, default=None, help="JSON path (.png beside it); default results/hr_ppg[_real].json")
    p.add_argument("--recordings", type=int, default=None)
    p.add_argument("--duration", type=float, default=None, help="seconds per recording")
    return p.parse_args(argv)


def hr_metric(recs) -> common.Metric:
    def metric(y: torch.Tensor, hop: int) -> dict[str, float]:
        pred = y[..., 0].numpy()
        truth = np.stack([window_hr(r.hr_bpm, WINDOW, hop)[: pred.shape[1]] for r in recs])
        motion = np.stack([
            np.lib.stride_tricks.sliding_window_view(r.motion_mask, WINDOW)[::hop].any(-1)[: pred.shape[1]]
            for r in recs
        ])
        err = np.abs(pred - truth)
        return {
            "mae_bpm": float(err.mean()),
            "mae_clean_bpm": float(err[~motion].mean()) if (~motion).any() else float("nan"),
            "mae_motion_bpm": float(err[motion].mean()) if motion.any() else float("nan"),
        }
    return metric


def run(args: argparse.Namespace, argv: list[str]) -> dict:
    common.setup_threads(1)
    t0 = time.perf_counter()
    n_rec = args.recordings or (2 if args.quick else 12)
    dur = args.duration or (120.0 if args.quick else 600.0)
    recs = [simulate_ppg(dur, fs=FS, seed=SEED_BASE + i, motion=True) for i in range(n_rec)]
    x = torch.from_numpy(np.stack([r.ppg for r in recs]))
    models = {}
    for padding in ("zero", "signal"):
        model = ppg_hr(pretrained=True, padding=padding).eval()
        res = common.compare_schemes(model, WINDOW, HOP, x, hr_metric(recs),
                                     n_timing_hops=20 if args.quick else 200,
                                     batched=(32, 3) if args.quick else (32, 60))
        models[padding] = res
        ex = res["schemes"]["exact"]
        print(f"{padding:6s} padding: exact stream NRMSE vs normal {100 * ex['nrmse_vs_normal']:.2f} %, "
              f"MAE normal {res['schemes']['normal']['metric']['mae_bpm']:.2f} / stream {ex['metric']['mae_bpm']:.2f} bpm, "
              f"MAC cut {ex['mac_cut_vs_normal']:.2f}x, time {res['schemes']['normal']['median_us_per_hop']:.0f} -> "
              f"{ex['median_us_per_hop']:.0f} us/hop (batch 32: {res['schemes']['normal']['batched']['median_us_per_hop']:.0f}"
              f" -> {ex['batched']['median_us_per_hop']:.0f} us/hop)")
    out = {
        "experiment": "hr_ppg",
        "command": "python " + shlex.join(["experiments/hr_ppg.py", *argv]),
        "quick": bool(args.quick),
        "task_metric": "HR MAE (bpm) vs mean true HR over the window",
        "data": {
            "simulator": f"thinkonce.data.simulate_ppg({dur}, fs={FS}, seed=s, motion=True)",
            "seeds": [SEED_BASE, SEED_BASE + n_rec],
            "recordings": n_rec,
            "hours": n_rec * dur / 3600,
            "fs": FS,
            "window": WINDOW,
            "hop": HOP,
        },
        "paper": PAPER,
        "models": {k: common.without_outputs(v) for k, v in models.items()},
        "environment": common.environment(),
        "runtime_s": round(time.perf_counter() - t0, 1),
    }
    common.write_json(args.out, out)
    plot(models, recs, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')} in {out['runtime_s']:.0f}s")
    return out


def plot(models: dict, recs, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(13, 8.5))
    gs = fig.add_gridspec(2, 2, height_ratios=[1.1, 1])
    truth = window_hr(recs[0].hr_bpm, WINDOW, HOP)
    n = min(len(truth), 150)  # 5 minutes at hop 2 s
    t = (np.arange(n) * HOP + WINDOW) / FS
    for j, padding in enumerate(("zero", "signal")):
        ax = fig.add_subplot(gs[0, j])
        o = models[padding]["outputs"]
        ax.plot(t, truth[:n], color="k", lw=2, label="true HR")
        for name, style in (("normal", dict(color="C0", lw=1.6)), ("exact", dict(color="C3", lw=1.2, ls="--")),
                            ("approximate", dict(color="C2", lw=1.0, alpha=0.8))):
            ax.plot(t, o[name]["y"][0, :n, 0].numpy(), label=common.SCHEME_LABELS[name].split(" (")[0], **style)
        ax.set_title(f"{padding}-padding-trained model (recording seed {recs[0].seed})")
        ax.set_xlabel("time (s, window end)")
        ax.set_ylabel("heart rate (bpm)")
        ax.legend(fontsize=8, loc="best")
    ax = fig.add_subplot(gs[1, :])
    names = [k for k in common.SCHEMES if k in models["zero"]["schemes"] and k != "normal"]
    w = 0.38
    for j, padding in enumerate(("zero", "signal")):
        vals = [100 * models[padding]["schemes"][k]["nrmse_vs_normal"] for k in names]
        bars = ax.bar(np.arange(len(names)) + (j - 0.5) * w, vals, w, label=f"{padding}-padding-trained")
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.axhline(PAPER["nrmse_zero_pct"], color="C0", ls=":", label="paper, zero padding (5.83 %)")
    ax.axhline(PAPER["nrmse_signal_pct"], color="C1", ls=":", label="paper, signal padding (2.03 %)")
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels([f"{k}\n(hop {models['zero']['schemes'][k]['hop']})" for k in names])
    ax.set_ylabel("NRMSE vs normal inference (%)")
    ax.set_yscale("symlog", linthresh=1)
    top = max(100 * models[p]["schemes"][k]["nrmse_vs_normal"] for p in models for k in names)
    ax.set_ylim(0, max(top, PAPER["nrmse_zero_pct"]) * 8)
    ax.legend(fontsize=8, ncol=2, loc="upper center")
    ax.set_title("Deviation of each scheme from normal windowed inference (HR, fresh recordings)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.data == "real":
        import hr_ppg_real

        args.out = args.out or common.RESULTS / "hr_ppg_real.json"
        return hr_ppg_real.run(args, argv)
    args.out = args.out or common.RESULTS / "hr_ppg.json"
    return run(args, argv)


if __name__ == "__main__":
    main()
