"""Parsimonious inference on the clock: gathered kernels vs dense, batch 1 and batch 32.

    python bench/gating.py [--quick]     # writes results/bench_gating.json; BENCHMARKS.md via make_benchmarks_md.py

A VGG-style CNN on 28x28 inputs (the MNIST network of experiments/lkam_digits.py, random weights: speed
does not depend on training) gated after every conv. Gates are set so that a chosen share of kernels is
on, either with the **same** pattern for every input (bias only) or **diverse** per-input patterns (random
weights), and timed side by side (interleaved calls, medians, one thread):

* batch 1, per kept share: dense model vs masked dense (the gated model: multiplies by the mask, saves
  nothing) vs deployed (gathered kernels) - the clock speed-up against the MAC ratio;
* native (``thinkonce.gating.native``): the same gated model as one compiled C call that loops over
  the engaged kernels only, against the same runtime running the plain model (``native dense``: the
  like-for-like baseline, no gates, every kernel); GFLOP/s against the machine's measured FMA peak;
* batch 32: dense, ``union`` (one pass over the union of the batch's kernels), ``dense-masked``
  (crossover 0: dense weights with a mask), ``split`` (each input alone with its own kernels): which
  strategy wins, and so the run-time crossover rule.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
from lkam_common import interleaved  # noqa: E402
sys.path.insert(0, str(ROOT / "bench"))
from native import fma_peak  # noqa: E402

from thinkonce.native.compiler import find_toolchain  # noqa: E402
from lkam_digits import vgg  # noqa: E402

import torch.fx as fx  # noqa: E402

from thinkonce import count_macs, gating  # noqa: E402
from thinkonce.gating.gathered import DeployedGate, Expand, GatheredConv, Masked  # noqa: E402


def set_gates(g: torch.nn.Module, share: float, diverse: bool, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    for lk in gating.gates(g).values():
        n = lk.n_switches
        if diverse:  # per-input logits around the threshold: about `share` on, a different set per input
            lk.proj.weight.data = torch.randn(lk.proj.weight.shape, generator=gen) * 4.0
            lk.proj.bias.data = torch.full((n,), float(torch.logit(torch.tensor(share))) * 2.0)
        else:
            on = torch.randperm(n, generator=gen)[: max(1, round(share * n))]
            lk.proj.weight.data.zero_()
            lk.proj.bias.data = torch.full((n,), -5.0)
            lk.proj.bias.data[on] = 5.0


class _Timed(fx.Interpreter):
    """Runs a graph node by node, adding each node's thread CPU time to its category."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.parts: dict[str, list[float]] = {}

    def run_node(self, n: fx.Node):
        c0 = time.thread_time()
        out = super().run_node(n)
        dt = time.thread_time() - c0
        kind = "other"
        if n.op == "call_module":
            m = self.module.get_submodule(str(n.target))
            kind = {DeployedGate: "gate", GatheredConv: "conv", torch.nn.Conv2d: "conv", Masked: "mask/expand",
                    Expand: "mask/expand"}.get(type(m), "other")
        elif n.op == "call_function" and n.target.__name__ == "_item":
            kind = "gate"
        self.parts.setdefault(kind, []).append(dt)
        return out


def warm(models: dict, x: torch.Tensor, calls: int, rounds: int) -> dict[str, float]:
    """Thread CPU us per call with each model called ``calls`` times back to back (its weights and
    buffers stay in cache, as on a device running one model), rounds alternating between models;
    median over rounds. The interleaved figures rotate models call by call instead (caches shared)."""
    ts: dict[str, list[float]] = {k: [] for k in models}
    with torch.inference_mode():
        for r in range(rounds):
            for k in (list(models) if r % 2 == 0 else list(models)[::-1]):
                f = models[k]
                for _ in range(3):
                    f(x)
                c0 = time.thread_time()
                for _ in range(calls):
                    f(x)
                ts[k].append((time.thread_time() - c0) / calls * 1e6)
    return {k: sorted(v)[len(v) // 2] for k, v in ts.items()}


def breakdown(gm: fx.GraphModule, x: torch.Tensor, reps: int) -> dict[str, float]:
    """Median-free per-category CPU time per call (us), node by node (the interpreter adds its own cost)."""
    t = _Timed(gm)
    with torch.inference_mode():
        for _ in range(reps):
            t.run(x)
    return {k: sum(v) / reps * 1e6 for k, v in t.parts.items()}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    n1, n32, reps = (10, 2, 1) if a.quick else (60, 4, 3)
    shares = (0.5,) if a.quick else (0.25, 0.5, 0.75, 1.0)
    from thinkonce.gating.fold import fold_batchnorm

    base = vgg((16, 32, 32, 64, 64)).eval()
    dense = fold_batchnorm(base)  # deploy folds BatchNorm too: like with like
    x = torch.rand(32 * n32, 1, 28, 28)
    start = time.time()
    out: dict = {"command": "python bench/gating.py" + (" --quick" if a.quick else ""), "quick": a.quick,
                 "network": "VGG (16, 32, 32, 64, 64), 28x28", "load_avg_start": list(os.getloadavg()),
                 "batch1": {}, "batch32": {}}
    macs_dense = count_macs(base, x[:1])
    native_dense = gating.native(base, x[:1])
    out["fma_peak_gflops"] = fma_peak(find_toolchain(), 3 if a.quick else 7)["gflops_median"]
    for share in shares:
        g = gating.insert(base).eval()
        set_gates(g, share, diverse=False)
        dep = gating.deploy(g)
        macs = count_macs(dep, x[:1])
        c: dict[str, float] = {}
        native_gated = gating.native(dep, x[:1])
        t = interleaved({"dense": dense, "masked": g, "deployed": dep, "native_dense": native_dense,
                         "native_gated": native_gated}, [x[i:i + 1] for i in range(n1)], reps, cpu=c)
        w = warm({"dense": dense, "deployed": dep, "native_dense": native_dense, "native_gated": native_gated},
                 x[:1], 20 if a.quick else 100, 3 if a.quick else 7)
        out["batch1"][str(share)] = {"kept_share": share, "mac_ratio": macs_dense / macs, "macs": macs,
                                     "us": {k: v * 1e6 for k, v in t.items()}, "cpu_us": {k: v * 1e6 for k, v in c.items()},
                                     "speedup": t["dense"] / t["deployed"], "cpu_speedup": c["dense"] / c["deployed"],
                                     "cpu_masked_speedup": c["dense"] / c["masked"],
                                     "native_speedup": t["native_dense"] / t["native_gated"],
                                     "native_vs_torch_dense": t["dense"] / t["native_gated"],
                                     "native_gflops_gated": 2 * macs / t["native_gated"] / 1e9,
                                     "native_gflops_dense": 2 * macs_dense / t["native_dense"] / 1e9,
                                     "warm_cpu_us": w, "warm_native_speedup": w["native_dense"] / w["native_gated"],
                                     "warm_native_gflops_dense": 2 * macs_dense / w["native_dense"] / 1e3}
    # clock vs MAC ratio as the network grows (kept share 0.5, same pattern): per-operator overhead
    # weighs less when every convolution has more work
    out["width_scaling"] = {}
    for mult in ((1, 2) if a.quick else (1, 2, 4)):
        net = vgg(tuple(w * mult for w in (16, 32, 32, 64, 64))).eval()
        g = gating.insert(net).eval()
        set_gates(g, 0.5, diverse=False)
        dep = gating.deploy(g)
        d = fold_batchnorm(net)
        c: dict[str, float] = {}
        t = interleaved({"dense": d, "deployed": dep, "native_dense": gating.native(net, x[:1]),
                         "native_gated": gating.native(dep, x[:1])}, [x[i:i + 1] for i in range(max(4, n1 // mult))],
                        reps, cpu=c)
        out["width_scaling"][str(mult)] = {
            "widths": [w * mult for w in (16, 32, 32, 64, 64)], "macs_dense": count_macs(d, x[:1]),
            "macs_deployed": count_macs(dep, x[:1]), "cpu_us": {k: v * 1e6 for k, v in c.items()},
            "cpu_speedup": c["dense"] / c["deployed"], "mac_ratio": count_macs(d, x[:1]) / count_macs(dep, x[:1]),
            "native_cpu_speedup": c["native_dense"] / c["native_gated"],
            "breakdown_deployed_us": breakdown(dep.graph_module, x[:1], max(3, n1 // (4 * mult))),
            "breakdown_dense_us": breakdown(d, x[:1], max(3, n1 // (4 * mult)))}
    for diverse in (False, True):
        for share in ((0.5,) if a.quick else (0.25, 0.5)):
            g = gating.insert(base).eval()
            set_gates(g, share, diverse=diverse)
            on = {k: float(v.mean()) for k, v in gating.engaged(g, x[:32]).items()}
            union = {}
            hooks = []
            models = {"dense": dense, "union": gating.deploy(g, crossover=1.0),
                      "dense_masked": gating.deploy(g, crossover=0.0), "split": gating.deploy(g, batch="split")}
            models["native_dense"] = native_dense
            models["native_gated"] = gating.native(models["union"], x[:1])
            with torch.no_grad():
                for k, gate in models["union"].gates.items():
                    hooks.append(gate.register_forward_hook(
                        lambda m, i, o, k=k: union.__setitem__(k, 1.0 if o[0] is None else o[0].numel() / m.lkam.n_kernels)))
                models["union"](x[:32])
            for h in hooks:
                h.remove()
            c = {}
            t = interleaved(models, [x[i:i + 32] for i in range(0, 32 * n32, 32)], reps, cpu=c)
            key = f"{'diverse' if diverse else 'same'} {share}"
            out["batch32"][key] = {"patterns": "diverse" if diverse else "same", "share_per_input": on,
                                   "union_share": union, "us_per_input": {k: v * 1e6 / 32 for k, v in t.items()},
                                   "cpu_us_per_input": {k: v * 1e6 / 32 for k, v in c.items()},
                                   "best": min((k for k in c if not k.startswith("native")), key=c.get),
                                   "native_speedup": c["native_dense"] / c["native_gated"]}
    out["load_avg_end"] = list(os.getloadavg())
    out["duration_s"] = round(time.time() - start, 1)
    out["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    path = ROOT / "results" / ("bench_gating_quick.json" if a.quick else "bench_gating.json")
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
