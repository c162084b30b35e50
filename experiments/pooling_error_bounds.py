"""Check StreamiNNC's pooling error bound on random band-limited signals.

    python experiments/pooling_error_bounds.py            # full sweep (~1-2 min on 2 cores)
    python experiments/pooling_error_bounds.py --quick    # CI smoke run (a few seconds)

A hop that is not a multiple of a pool's stride shows the pool its input shifted by d < L_p samples.
For a signal band-limited to f_max with |x| <= A, Bernstein's inequality bounds the change of every
max- or average-pooled value by (L_p - 1) * 2*pi*A*f_max / f_s, saturating at 2A
(``thinkonce.stream.bounds.pooling_error_bound``). This script draws random sums of cosines with
frequencies in [0, f_max] (sum of |amplitudes| = A, so |x(t)| <= A for every real t; half of them
with a component exactly at f_max, the worst case), pools them with non-overlapping windows of
L_p in {2, 4, 8, 16} at f_s in {32, ..., 1024} Hz, and measures max and mean
|pool(x) - pool(x shifted by d)| over d = 1..L_p-1, signals and windows. Every measured maximum must
lie under the bound; ``results/pooling_error_bounds.json`` records each point and whether any
exceeded it, ``results/pooling_error_bounds.png`` plots them against the bound (log-log).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from thinkonce.stream.bounds import CosineSum, pool_shift_deviation, pooling_error_bound

REPO = Path(__file__).resolve().parents[1]
FS = (32, 64, 128, 256, 512, 1024)
POOLS = (2, 4, 8, 16)
KINDS = ("max", "avg")


def measure(rng: np.random.Generator, fs: float, pool: int, f_max: float, amplitude: float, n_signals: int,
            n_windows: int, chunk: int = 500) -> dict[str, dict]:
    """Max and mean |deviation| (over signals, shifts and windows; and per shift) of both pool kinds."""
    acc = {k: {"max": np.zeros(pool - 1), "sum": np.zeros(pool - 1), "n": 0} for k in KINDS}
    done = 0
    while done < n_signals:
        m = min(chunk, n_signals - done)
        sig = CosineSum.random(rng, m, f_max, amplitude)
        offset = float(rng.uniform(0, 100.0))  # pool windows start at an arbitrary time
        for k in KINDS:
            dev = pool_shift_deviation(sig, fs, pool, k, n_windows=n_windows, offset=offset)  # (m, pool-1, win)
            acc[k]["max"] = np.maximum(acc[k]["max"], dev.max(axis=(0, 2)))
            acc[k]["sum"] += dev.sum(axis=(0, 2))
            acc[k]["n"] += m * n_windows
        done += m
    out = {}
    for k in KINDS:
        by_shift_max = acc[k]["max"]
        by_shift_mean = acc[k]["sum"] / acc[k]["n"]
        out[k] = {
            "max": float(by_shift_max.max()),
            "mean": float(by_shift_mean.mean()),
            "max_by_shift": [float(v) for v in by_shift_max],
        }
    return out


def plot(points: list[dict], f_max: float, amplitude: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    xs = np.array([p["normalised_shift"] for p in points])
    grid = np.logspace(np.log10(xs.min() / 1.5), np.log10(xs.max() * 1.5), 200)
    bound = np.minimum(2 * np.pi * amplitude * grid, 2 * amplitude)
    colors = {L: c for L, c in zip(POOLS, ("tab:blue", "tab:orange", "tab:green", "tab:red"))}
    for ax, kind in zip(axes, KINDS):
        ax.plot(grid, bound, "k-", lw=2, label="bound min((L-1) 2pi A f_max/f_s, 2A)")
        for L in POOLS:
            sel = [p for p in points if p["kind"] == kind and p["pool_size"] == L]
            x = [p["normalised_shift"] for p in sel]
            ax.scatter(x, [p["max_deviation"] for p in sel], color=colors[L], marker="o", s=28,
                       label=f"L_p={L}: max measured")
            ax.scatter(x, [p["mean_deviation"] for p in sel], facecolors="none", edgecolors=colors[L],
                       marker="s", s=22, label=f"L_p={L}: mean measured")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{kind} pooling (f_max = {f_max:g} Hz, A = {amplitude:g})")
        ax.set_xlabel("(L_p - 1) f_max / f_s")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("|pool(x) - pool(x shifted)|")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few signals: a CI smoke run")
    ap.add_argument("--f-max", type=float, default=4.0, help="band limit in Hz (default 4: heart-rate band)")
    ap.add_argument("--amplitude", type=float, default=1.0)
    ap.add_argument("--signals", type=int, default=None, help="random signals per point (default 2000, quick 60)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", type=Path, default=REPO / "results")
    args = ap.parse_args(argv)
    n_signals = args.signals or (60 if args.quick else 2000)
    n_windows = 8 if args.quick else 16
    console = Console()
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    points = []
    combos = [(fs, L) for fs in FS for L in POOLS]
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("f_s x L_p", total=len(combos))
        for fs, L in combos:
            res = measure(rng, fs, L, args.f_max, args.amplitude, n_signals, n_windows)
            b = pooling_error_bound(L, fs, args.f_max, args.amplitude)
            for kind in KINDS:
                r = res[kind]
                shift_bounds = [pooling_error_bound(d + 1, fs, args.f_max, args.amplitude) for d in range(1, L)]
                points.append({
                    "kind": kind, "fs": fs, "pool_size": L, "f_max": args.f_max, "amplitude": args.amplitude,
                    "normalised_shift": (L - 1) * args.f_max / fs, "bound": b,
                    "max_deviation": r["max"], "mean_deviation": r["mean"],
                    "ratio_max_to_bound": r["max"] / b if b else 0.0,
                    "exceeds": bool(r["max"] > b * (1 + 1e-12)),
                    "max_by_shift": r["max_by_shift"],
                    "exceeds_per_shift_bound": bool(any(m > sb * (1 + 1e-12) for m, sb in zip(r["max_by_shift"], shift_bounds))),
                })
            bar.advance(task)
    elapsed = time.perf_counter() - t0
    any_exceeds = any(p["exceeds"] or p["exceeds_per_shift_bound"] for p in points)
    out = {
        "experiment": "pooling_error_bounds",
        "mode": "quick" if args.quick else "full",
        "bound": "min((L_p - 1) * 2*pi*A*f_max/f_s, 2A)  (Bernstein; StreamiNNC, DESIGN.md sec. 4)",
        "config": {"fs": list(FS), "pool_sizes": list(POOLS), "kinds": list(KINDS), "f_max": args.f_max,
                   "amplitude": args.amplitude, "signals_per_point": n_signals, "windows_per_signal": n_windows,
                   "seed": args.seed, "max_components": 8},
        "any_exceeds": any_exceeds,
        "max_ratio_to_bound": max(p["ratio_max_to_bound"] for p in points),
        "points": points,
        "runtime_s": elapsed,
        "platform": {"python": sys.version.split()[0], "machine": platform.machine(), "numpy": np.__version__},
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "pooling_error_bounds.json").write_text(json.dumps(out, indent=2))
    plot(points, args.f_max, args.amplitude, args.out_dir / "pooling_error_bounds.png")
    worst = max(points, key=lambda p: p["ratio_max_to_bound"])
    console.print(
        f"{len(points)} points, {n_signals} signals each, {elapsed:.1f} s. Largest measured/bound: "
        f"{worst['ratio_max_to_bound']:.3f} ({worst['kind']} pool, L_p={worst['pool_size']}, f_s={worst['fs']} Hz). "
        + ("[bold red]A POINT EXCEEDS THE BOUND[/]" if any_exceeds else "[green]no point exceeds the bound[/]")
    )
    console.print(f"wrote {args.out_dir / 'pooling_error_bounds.json'} and .png")
    return out


if __name__ == "__main__":
    res = main()
    raise SystemExit(1 if res["any_exceeds"] else 0)
