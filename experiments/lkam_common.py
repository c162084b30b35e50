"""Shared harness of the parsimonious-inference experiments (lkam_digits.py, lkam_eeg.py).

For a trained dense model and data: fine-tune gated copies at several compute budgets with the recipe
of :mod:`thinkonce.gating.recipe`, prune a copy statically to the same average MACs with
``torch-pruning`` (L1 magnitude of filters, same fine-tuning epochs), and measure, side by side in one
process on one thread: accuracy, per-layer share of engaged kernels (per input), MACs per input
(``thinkonce.count_macs`` of the deployed model, i.e. engaged kernels only, gates included) and
wall-clock per input at batch 1 and batch 32. Timings are medians over interleaved calls (the order
rotates from call to call so that machine load hits every model alike); the machine's two cores are
shared with other jobs, so only ratios are meaningful ("measured under load").
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import copy
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from thinkonce import count_macs, gating
from thinkonce.gating.recipe import fit

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"


def progress():
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), transient=False)


def train_dense(model: nn.Module, x: Tensor, y: Tensor, epochs: int, lr: float = 2e-3, batch: int = 64,
                seed: int = 0, tick: Callable[[], None] | None = None) -> nn.Module:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(x.shape[0], generator=gen)
        for i in range(0, x.shape[0], batch):
            j = perm[i:i + batch]
            loss = F.cross_entropy(model(x[j]), y[j])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if tick:
            tick()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    model.eval()
    out = torch.cat([model(x[i:i + 256]) for i in range(0, x.shape[0], 256)])
    return float((out.argmax(1) == y).float().mean())


def macs_per_input(model: nn.Module, x: Tensor, n: int) -> float:
    return float(np.mean([count_macs(model, x[i:i + 1]) for i in range(min(n, x.shape[0]))]))


def interleaved(models: dict[str, Callable[[Tensor], Any]], xs: list[Tensor], reps: int,
                cpu: dict[str, float] | None = None) -> dict[str, float]:
    """Median wall-clock seconds per call of each model, calls interleaved with a rotating order.

    ``cpu``, if given, receives the median *thread CPU time* per call (``time.thread_time``): on a
    machine whose cores are shared with other jobs this excludes the time spent waiting for a core, so
    it is what the wall-clock would read on an idle core (one thread), and far less noisy.
    """
    ts: dict[str, list[float]] = {k: [] for k in models}
    cs: dict[str, list[float]] = {k: [] for k in models}
    keys = list(models)
    with torch.inference_mode():
        for xx in xs[:3]:
            for k in keys:
                models[k](xx)
        for r in range(reps):
            for i, xx in enumerate(xs):
                s = (i + r) % len(keys)
                for k in keys[s:] + keys[:s]:
                    c0 = time.thread_time()
                    t0 = time.perf_counter()
                    models[k](xx)
                    ts[k].append(time.perf_counter() - t0)
                    cs[k].append(time.thread_time() - c0)
    if cpu is not None:
        cpu.update({k: statistics.median(v) for k, v in cs.items()})
    return {k: statistics.median(v) for k, v in ts.items()}


def prune_to(model: nn.Module, example: Tensor, target_macs: float, head: nn.Module) -> tuple[nn.Module, float]:
    """A statically pruned copy (L1 filter magnitude, one ratio for every conv) with MACs closest to target."""
    import torch_pruning as tp

    def pruned(r: float) -> nn.Module:
        m = copy.deepcopy(model).eval()
        heads = [mod for mod in m.modules() if type(mod) is type(head) and mod.weight.shape == head.weight.shape]
        if r > 0:
            p = tp.pruner.MagnitudePruner(m, example, importance=tp.importance.MagnitudeImportance(p=1),
                                          pruning_ratio=r, ignored_layers=heads)
            p.step()
        return m

    lo, hi = 0.0, 0.95
    for _ in range(14):
        mid = (lo + hi) / 2
        if count_macs(pruned(mid), example) > target_macs:
            lo = mid
        else:
            hi = mid
    r = lo if abs(count_macs(pruned(lo), example) - target_macs) < abs(count_macs(pruned(hi), example) - target_macs) else hi
    return pruned(r), r


def gated_point(base: nn.Module, data: dict[str, Tensor], epochs: int, target: float, relax: str = "ste",
                gain: float = 10.0, seed: int = 0, tick: Callable[[int], None] | None = None) -> tuple[nn.Module, dict]:
    g = gating.insert(base, after="all")
    log = fit(g, data["xtr"], data["ytr"], epochs, gain=gain, target=target, relax=relax, seed=seed, on_epoch=tick)
    return g, {"train_share": log.share, "gain": log.gain, "train_loss": log.loss}


def evaluate_point(base: nn.Module, g: nn.Module, data: dict[str, Tensor], epochs: int, head: nn.Module,
                   n_macs: int, n_time: int, reps: int, seed: int = 0, prune: bool = True) -> dict[str, Any]:
    """Everything measured about one gated model, against the dense base and a pruned model of equal MACs."""
    xte, yte = data["xte"], data["yte"]
    dep = gating.deploy(g)
    shares = {k: v.tolist() for k, v in gating.engaged(g, xte).items()}
    macs_dense = count_macs(base, xte[:1])
    macs_gated = macs_per_input(dep, xte, n_macs)
    out: dict[str, Any] = {
        "acc_dense": accuracy(base, xte, yte), "acc_gated": accuracy(g, xte, yte), "acc_deployed": accuracy(dep, xte, yte),
        "engaged_per_input": shares, "engaged_mean": {k: float(np.mean(v)) for k, v in shares.items()},
        "macs_dense": macs_dense, "macs_gated": macs_gated, "mac_ratio": macs_dense / macs_gated,
    }
    with torch.no_grad():
        out["deployed_vs_masked_max_abs"] = float((dep(xte[:64]) - g(xte[:64])).abs().max())
    from thinkonce.gating.fold import fold_batchnorm

    dense = fold_batchnorm(base)  # BatchNorm folded into the convs in every timed model (deploy does it too)
    models1: dict[str, Callable] = {"dense": dense, "masked": g, "deployed": dep}
    dep_split = gating.deploy(g, batch="split")
    dep_dense = gating.deploy(g, crossover=0.0)  # every layer dense weights + mask (dense-masked)
    models32: dict[str, Callable] = {"dense": dense, "deployed_union": dep, "deployed_split": dep_split,
                                     "dense_masked": dep_dense}
    if prune:
        pruned, ratio = prune_to(base, xte[:1], macs_gated, head)
        train_dense(pruned, data["xtr"], data["ytr"], epochs, lr=1e-3, seed=seed)
        out.update(acc_pruned=accuracy(pruned, xte, yte), macs_pruned=count_macs(pruned, xte[:1]), prune_ratio=ratio)
        models1["pruned"] = models32["pruned"] = fold_batchnorm(pruned)
    # native (thinkonce.gating.native): the deployed model as one C call skipping switched-off kernels,
    # beside the same runtime running the plain dense model (and the pruned one): like for like
    models1["native_dense"] = models32["native_dense"] = gating.native(base, xte[:1])
    models1["native_gated"] = models32["native_gated"] = native_gated = gating.native(dep, xte[:1])
    with torch.no_grad():
        out["native_vs_deployed_max_abs"] = float((native_gated(xte[:64]) - dep(xte[:64])).abs().max())
    out["acc_native"] = accuracy(native_gated, xte, yte)
    if prune:
        models1["native_pruned"] = models32["native_pruned"] = gating.native(pruned, xte[:1])
    xs1 = [xte[i:i + 1] for i in range(min(n_time, xte.shape[0]))]
    c1: dict[str, float] = {}
    c32: dict[str, float] = {}
    t1 = interleaved(models1, xs1, reps, cpu=c1)
    xs32 = [xte[i:i + 32] for i in range(0, min(max(n_time, 64), xte.shape[0] - 31), 32)]
    t32 = interleaved(models32, xs32, reps, cpu=c32)
    out["us_batch1"] = {k: v * 1e6 for k, v in t1.items()}
    out["us_per_input_batch32"] = {k: v * 1e6 / 32 for k, v in t32.items()}
    out["cpu_us_batch1"] = {k: v * 1e6 for k, v in c1.items()}
    out["cpu_us_per_input_batch32"] = {k: v * 1e6 / 32 for k, v in c32.items()}
    out["speedup_batch1"] = t1["dense"] / t1["deployed"]
    out["speedup_batch32"] = t32["dense"] / min(t32["deployed_union"], t32["deployed_split"])
    out["cpu_speedup_batch1"] = c1["dense"] / c1["deployed"]
    out["cpu_speedup_batch32"] = c32["dense"] / min(c32["deployed_union"], c32["deployed_split"])
    out["native_speedup_batch1"] = t1["native_dense"] / t1["native_gated"]
    out["native_cpu_speedup_batch1"] = c1["native_dense"] / c1["native_gated"]
    out["native_cpu_speedup_batch32"] = c32["native_dense"] / c32["native_gated"]
    out["native_vs_torch_dense_cpu_batch1"] = c1["dense"] / c1["native_gated"]
    out["load_avg"] = list(os.getloadavg())
    out["gate_cost"] = gate_cost(dep, xte[:1], n_time, reps)
    return out


def gate_cost(dep: nn.Module, x: Tensor, n: int, reps: int) -> dict[str, float]:
    """Where the gate's own cost goes at batch 1: MACs of the gates' products, and their share of time."""
    gates = dep.gates
    macs = 0
    times = {"gates_us": 0.0}
    calls: list[float] = []
    hooks = []
    for g in gates.values():
        hooks.append(g.register_forward_pre_hook(lambda m, a: calls.append(-time.perf_counter())))
        hooks.append(g.register_forward_hook(lambda m, a, o: calls.append(time.perf_counter())))
    with torch.inference_mode():
        for _ in range(reps):
            dep(x)
    for h in hooks:
        h.remove()
    times["gates_us"] = sum(calls) / reps * 1e6
    for g in gates.values():
        macs += g.lkam.in_channels * g.lkam.n_switches  # upper bound: the gate reads compact inputs
    times["gate_macs_upper_bound"] = float(macs)
    return times


def write(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    payload = {**payload, "machine": {"python": platform.python_version(), "torch": torch.__version__,
                                      "threads": torch.get_num_threads(), "load_note": "measured under load"}}
    p = RESULTS / f"{name}.json"
    p.write_text(json.dumps(payload, indent=1))
    return p


def histogram(shares: dict[str, dict[str, list[float]]], path: Path, title: str) -> None:
    """Per gain, per layer: the histogram over inputs of the share of kernels engaged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = list(shares)
    layers = list(next(iter(shares.values())))
    fig, axes = plt.subplots(len(pts), len(layers), figsize=(2.6 * len(layers), 1.9 * len(pts)), squeeze=False)
    for r, p in enumerate(pts):
        for c, layer in enumerate(layers):
            ax = axes[r][c]
            ax.hist(shares[p][layer], bins=np.linspace(0, 1, 21), color="C0")
            ax.set_xlim(0, 1)
            if r == 0:
                ax.set_title(layer, fontsize=8)
            if c == 0:
                ax.set_ylabel(p, fontsize=8)
            ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
