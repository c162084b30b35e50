"""How far zero padding reaches into each layer of the three StreamiNNC reference networks.

    python experiments/zero_padding_effects.py            # full: analytic + empirical check, 16 trials
    python experiments/zero_padding_effects.py --quick    # CI smoke run (2 trials)

A window stream replaces the zeros each layer pads at the window's edges by real signal; every frame
whose value depends on such a zero changes. ``thinkonce.analyze`` counts those frames per layer
analytically; this script records the per-layer share for ``ppg_hr`` (window 256), ``eeg_seizure``
(1024) and ``acc_seizure`` (960) - the weights do not matter, only the layer geometry - checks the
counts against an empirical measurement (the graph run on the window and on the window extended by
random signal), and writes them beside the paper's figures (DESIGN.md sec. 4: PPG > 50 % after
layer 5, EEG 3.1 %, ACC 1.25 %) to ``results/zero_padding_effects.json`` with a bar plot per network
in ``results/zero_padding_effects.png``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import thinkonce
from thinkonce.models.acc_seizure import acc_seizure
from thinkonce.models.eeg_seizure import eeg_seizure
from thinkonce.models.ppg_hr import ppg_hr
from thinkonce.stream.bounds import empirical_padding_reach
from thinkonce.stream.convert import Converter

REPO = Path(__file__).resolve().parents[1]

#: name -> (factory, channels, window, fs, the paper's zero-padding-reach figure)
NETWORKS = {
    "ppg_hr": (ppg_hr, 1, 256, 32.0, {"text": "> 50 % of activations after layer 5", "share": 0.5, "layer": 5}),
    "eeg_seizure": (eeg_seizure, 18, 1024, 256.0, {"text": "3.1 %", "share": 0.031, "layer": None}),
    "acc_seizure": (acc_seizure, 4, 960, 32.0, {"text": "1.25 %", "share": 0.0125, "layer": None}),
}


def compare(name: str, layers: list[dict], head_share: float, paper: dict) -> dict:
    """Where our per-layer shares meet the paper's figure (layer numbering: convs and pools, 1-based)."""
    convs = [r for r in layers if r["type"] == "Conv1d"]
    out: dict = {"last_layer_share": layers[-1]["pad_share"], "head_input_share": head_share}
    over = [r for r in layers if r["pad_share"] > 0.5]
    out["first_layer_over_50pct"] = None if not over else {
        "layer": over[0]["index"], "conv_layer": next((i + 1 for i, c in enumerate(convs) if c["pad_share"] > 0.5), None),
        "node": over[0]["node"], "share": over[0]["pad_share"]}
    closest = min(layers, key=lambda r: abs(r["pad_share"] - paper["share"]))
    out["closest_layer_to_paper"] = {"layer": closest["index"], "node": closest["node"], "share": closest["pad_share"]}
    if paper["layer"] is not None:
        k = paper["layer"]
        out[f"share_at_layer_{k}"] = layers[k - 1]["pad_share"] if k <= len(layers) else None
        out[f"share_at_conv_layer_{k}"] = convs[k - 1]["pad_share"] if k <= len(convs) else None
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4.6))
    for ax, (name, res) in zip(axes, results.items()):
        layers = res["layers"]
        x = range(len(layers))
        left = [100 * min(r["pad_left"], r["frames"]) / r["frames"] for r in layers]
        both = [100 * r["pad_share"] for r in layers]
        right = [b - l for b, l in zip(both, left)]
        ax.bar(x, left, color="tab:blue", label="left edge (what a stream changes)")
        ax.bar(x, right, bottom=left, color="tab:orange", label="right edge")
        ax.axhline(100 * res["paper"]["share"], color="k", ls="--", lw=1, label=f"paper: {res['paper']['text']}")
        ax.set_xticks(list(x))
        ax.set_xticklabels([f"{r['index']} {r['type'].replace('Conv1d', 'conv').replace('Pool1d', 'pool')}"
                            for r in layers], rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("frames reached by zero padding (%)")
        ax.set_title(f"{name} (window {res['window']})")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 empirical trials instead of 16")
    ap.add_argument("--out-dir", type=Path, default=REPO / "results")
    args = ap.parse_args(argv)
    trials = 2 if args.quick else 16
    console = Console()
    torch.manual_seed(0)
    t0 = time.perf_counter()
    results: dict = {}
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("networks", total=len(NETWORKS))
        for name, (factory, c, window, fs, paper) in NETWORKS.items():
            bar.update(task, description=name)
            model = factory().eval()
            ana = thinkonce.analyze(model, window, fs=fs)
            layers = [dict(r.__dict__, index=i + 1) for i, r in enumerate(ana.layers)]
            plan = Converter(model, torch.zeros(2, c, window), window).convert()
            emp = {r["node"]: r for r in empirical_padding_reach(plan, trials=trials, seed=1)}
            mismatches = [r["node"] for r in layers
                          if (emp[r["node"]]["left"], emp[r["node"]]["right"]) != (r["pad_left"], r["pad_right"])
                          or emp[r["node"]]["stray"]]
            results[name] = {
                "window": window, "fs": fs, "stride_period": ana.stride_period, "extension": ana.extension,
                "stream_extension": ana.stream_extension,
                "layers": [{k: r[k] for k in ("index", "node", "module", "type", "kernel", "stride", "dilation",
                                               "padding", "rate", "receptive_field", "frames", "pad_left",
                                               "pad_right", "pad_share")} for r in layers],
                "head_inputs": ana.head_inputs, "head_input_share": ana.expected_deviation,
                "head_input_share_left": ana.expected_deviation_left,
                "paper": paper,
                "ours_vs_paper": compare(name, layers, ana.expected_deviation, paper),
                "empirical_check": {"trials": trials, "agrees": not mismatches, "mismatched_layers": mismatches},
            }
            bar.advance(task)
    elapsed = time.perf_counter() - t0
    out = {
        "experiment": "zero_padding_effects",
        "mode": "quick" if args.quick else "full",
        "definition": "share of a layer's frames in the window whose value depends on zero padding (this layer's "
                      "or inherited), both edges; layers = Conv1d/pooling outputs, numbered from 1",
        "networks": results,
        "all_empirical_checks_agree": all(r["empirical_check"]["agrees"] for r in results.values()),
        "runtime_s": elapsed,
        "platform": {"python": sys.version.split()[0], "torch": torch.__version__, "machine": platform.machine()},
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "zero_padding_effects.json").write_text(json.dumps(out, indent=2))
    plot(results, args.out_dir / "zero_padding_effects.png")
    table = Table(title=f"Zero-padding reach ({elapsed:.1f} s)")
    for col in ("network", "paper", "ours: last trunk layer", "ours: closest layer", "> 50 % from layer", "empirical"):
        table.add_column(col)
    for name, r in results.items():
        cmp_ = r["ours_vs_paper"]
        over = cmp_["first_layer_over_50pct"]
        close = cmp_["closest_layer_to_paper"]
        table.add_row(name, r["paper"]["text"], f"{100 * cmp_['last_layer_share']:.2f} %",
                      f"{100 * close['share']:.2f} % (layer {close['layer']}, {close['node']})",
                      "-" if over is None else f"{over['layer']} (conv #{over['conv_layer']})",
                      "agrees" if r["empirical_check"]["agrees"] else "MISMATCH")
    console.print(table)
    console.print(f"wrote {args.out_dir / 'zero_padding_effects.json'} and .png")
    return out


if __name__ == "__main__":
    res = main()
    raise SystemExit(0 if res["all_empirical_checks_agree"] else 1)
