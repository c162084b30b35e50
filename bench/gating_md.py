"""The gating section of BENCHMARKS.md, from results/bench_gating.json (bench/gating.py)."""

from __future__ import annotations

import json
from pathlib import Path


def section(root: Path) -> list[str]:
    path = root / "results" / "bench_gating.json"
    if not path.is_file():
        return ["## Parsimonious inference (gating)", "", "`results/bench_gating.json` is missing: run `python bench/gating.py`.", ""]
    r = json.loads(path.read_text())
    load = lambda v: "/".join(f"{x:.1f}" for x in v)  # noqa: E731
    L = ["## Parsimonious inference (gating)", "",
         f"Reproduce: `{r['command']}` ({r['date']}, {r['duration_s']} s, load {load(r['load_avg_start'])} -> "
         f"{load(r['load_avg_end'])}" + ("; **quick run**" if r.get("quick") else "") + "). "
         f"Network: {r['network']}, random weights, gates set to a kept share of kernels. Medians of interleaved calls, "
         "one thread; CPU = thread CPU time (excludes waiting for a shared core), wall-clock beside it.", "",
         "### Batch 1: clock vs MAC ratio", "",
         "| kept share | MAC ratio | CPU us dense / masked / deployed | deployed speed-up CPU (wall) | masked speed-up |",
         "|---:|---:|---|---:|---:|"]
    for k, v in r["batch1"].items():
        c = v["cpu_us"]
        L.append(f"| {k} | {v['mac_ratio']:.2f}x | {c['dense']:.0f} / {c['masked']:.0f} / {c['deployed']:.0f} | "
                 f"{v['cpu_speedup']:.2f}x ({v['speedup']:.2f}x) | {v['cpu_masked_speedup']:.2f}x |")
    if any("native_speedup" in v for v in r["batch1"].values()):
        peak = r.get("fma_peak_gflops")
        L += ["", "### Batch 1, native (`thinkonce.gating.native`: one compiled C call, switched-off kernels skipped in the loops)", "",
              "Like for like: `native dense` is the same runtime on the plain model. GFLOP/s = 2 x MACs / time"
              + (f"; this machine's measured single-thread FMA peak: {peak:.0f} GFLOP/s." if peak else "."), "",
              "Interleaved: models rotate call by call (they share the caches); warm: each model called back to back "
              "(its weights and buffers stay in cache, as on a device running one model).", "",
              "| kept share | MAC ratio | CPU us native dense / native gated | native speed-up (wall) | clock / MAC ratio | "
              "vs PyTorch dense (CPU) | GFLOP/s dense / gated (wall-clock) | warm: native dense / gated us, speed-up | "
              "warm: PyTorch dense / deployed us |", "|---:|---:|---|---:|---:|---:|---|---|---|"]
        for k, v in r["batch1"].items():
            c = v["cpu_us"]
            sp = c["native_dense"] / c["native_gated"]
            L.append(f"| {k} | {v['mac_ratio']:.2f}x | {c['native_dense']:.0f} / {c['native_gated']:.0f} | {sp:.2f}x "
                     f"({v['native_speedup']:.2f}x) | {sp / v['mac_ratio']:.2f} | {c['dense'] / c['native_gated']:.2f}x | "
                     f"{v['native_gflops_dense']:.1f} / {v['native_gflops_gated']:.1f} | "
                     + (f"{v['warm_cpu_us']['native_dense']:.0f} / {v['warm_cpu_us']['native_gated']:.0f}, "
                        f"{v['warm_native_speedup']:.2f}x | {v['warm_cpu_us']['dense']:.0f} / {v['warm_cpu_us']['deployed']:.0f} |"
                        if "warm_cpu_us" in v else "n/a | n/a |"))
    L += ["", "### Batch 1 as the network widens (kept share 0.5)", "",
          "| widths | MACs dense | MAC ratio | CPU us dense / deployed | speed-up CPU | native speed-up CPU | deployed, per part (us, node by node) | dense, per part |",
          "|---|---:|---:|---|---:|---:|---|---|"]
    for v in r.get("width_scaling", {}).values():
        part = lambda d: ", ".join(f"{k} {x:.0f}" for k, x in sorted(d.items()))  # noqa: E731
        L.append(f"| {v['widths']} | {v['macs_dense']:,} | {v['mac_ratio']:.2f}x | {v['cpu_us']['dense']:.0f} / "
                 f"{v['cpu_us']['deployed']:.0f} | {v['cpu_speedup']:.2f}x | {v.get('native_cpu_speedup', float('nan')):.2f}x | "
                 f"{part(v['breakdown_deployed_us'])} | "
                 f"{part(v['breakdown_dense_us'])} |")
    ws = list(r.get("width_scaling", {}).values())
    if ws:
        shares = ", ".join(f"{100 * v['breakdown_deployed_us'].get('gate', 0) / sum(v['breakdown_deployed_us'].values()):.0f} %"
                           for v in ws)
        L += ["", f"Where the gate's own cost goes: the gates' share of the deployed model's node-by-node CPU time is {shares} "
              "(narrow to wide). Each gate is a handful of tiny operators (a mean over the activation, a C_in x m "
              "matrix-vector product, a comparison, nonzero): their arithmetic is negligible, their per-operator "
              "dispatch is not, and at batch 1 on the narrow network it costs about as much as the convolutions the "
              "gates remove. The convolutions themselves shrink less than their MACs at batch 1: PyTorch's CPU "
              "convolution at batch 1 is dominated by the im2col copy of its input, which the switched layer "
              "(i+1) does not shrink when layer i is not gated. The wider the network, the closer the clock comes "
              "to the MAC ratio."]
    L += ["", "### Batch 32: union of engaged kernels vs dense-masked vs one input at a time", "",
          "| patterns, kept share | union share per gate | CPU us per input: dense / union / dense-masked / split | fastest (PyTorch) | native dense / gated (speed-up) |",
          "|---|---|---|---|---|"]
    for k, v in r["batch32"].items():
        c = v["cpu_us_per_input"]
        L.append(f"| {k} | {', '.join(f'{x:.2f}' for x in v['union_share'].values())} | {c['dense']:.0f} / {c['union']:.0f} / "
                 f"{c['dense_masked']:.0f} / {c['split']:.0f} | {v['best']} | "
                 + (f"{c['native_dense']:.0f} / {c['native_gated']:.0f} ({v['native_speedup']:.2f}x) |" if "native_speedup" in v else "n/a |"))
    return L + ["", "'diverse' gates (random weights) on these random inputs still engaged nearly the same kernels across "
                "a batch (union share close to the per-input share), so union gathering kept its advantage; with "
                "disjoint patterns the union approaches all kernels and the rule below falls back to dense-masked.",
                "", "Rule used at run time (`deploy(..., batch='union', crossover=c)`): each gate gathers the union of "
                "the batch's engaged kernels unless that union exceeds the share `c`, then runs dense weights with the "
                "per-input mask; `split` (each input alone) is offered for batches whose inputs engage very different "
                "kernels.", ""]
