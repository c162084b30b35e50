"""Parsimonious inference on a real biosignal, streamed in window mode: the Bonn epilepsy EEG set
(Andrzejak et al. 2001; 500 single-channel segments of 4097 samples at 173.61 Hz; set E = seizure).

    python experiments/lkam_eeg.py            # a few minutes on a shared 2-core machine
    python experiments/lkam_eeg.py --quick    # tiny (seconds; run by the tests)

Windows of 1024 samples every 256 (the StreamiNNC EEG setting), label = the segment's (seizure vs not);
split by segment (80/20, stratified). A small 1-D CNN (a 'valid' conv + pool that streams, then three
conv-BN-ReLU layers, global average pooling, Linear) is gated after its 2nd and 3rd convs and fine-tuned
at several budgets. Streamed with ``thinkonce.stream(deployed, window=1024, hop=256)``: the trunk before
the first gate computes only each hop's new frames; the gate decides once per window from that window's
features, and the gated layers run once per window with the engaged kernels (see
``thinkonce.gating.stream_ops``). The data are read straight from ``bonn_eeg.npz`` by ``_load_bonn``
below (the shared loader of the real-data work was not on main when this was written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lkam_common import (REPO, RESULTS, accuracy, evaluate_point, histogram, interleaved, progress,  # noqa: E402
                         train_dense, write)

import thinkonce as to  # noqa: E402
from thinkonce import gating  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "eeg_bonn" / "bonn_eeg.npz"
W, H = 1024, 256
FULL = dict(epochs=6, finetune=3, targets=(0.4,), n_time=60, reps=3)
QUICK = dict(epochs=1, finetune=1, targets=(0.5,), n_time=8, reps=1)


def _load_bonn(path: Path = DATA) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise SystemExit(f"Bonn EEG not found at {path} (see its README for how it was staged)")
    d = np.load(path)
    return d["x"].astype(np.float32), d["seizure"].astype(np.int64)


class EEGNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.p1 = nn.Conv1d(1, 16, 7), nn.MaxPool1d(4)
        self.c2, self.b2, self.p2 = nn.Conv1d(16, 32, 5, padding=2), nn.BatchNorm1d(32), nn.MaxPool1d(4)
        self.c3, self.b3, self.p3 = nn.Conv1d(32, 32, 5, padding=2), nn.BatchNorm1d(32), nn.MaxPool1d(2)
        self.c4, self.b4 = nn.Conv1d(32, 64, 3, padding=1), nn.BatchNorm1d(64)
        self.fc = nn.Linear(64, 2)

    def forward(self, x):
        x = self.p1(torch.relu(self.c1(x)))
        x = self.p2(torch.relu(self.b2(self.c2(x))))
        x = self.p3(torch.relu(self.b3(self.c3(x))))
        x = torch.relu(self.b4(self.c4(x)))
        return self.fc(x.mean(-1))


def windows(x: np.ndarray, y: np.ndarray, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    starts = range(0, x.shape[1] - W + 1, step)
    xs = np.stack([x[:, s:s + W] for s in starts], 1)  # (segments, windows, W)
    seg = np.repeat(np.arange(x.shape[0]), len(starts))
    return torch.from_numpy(xs.reshape(-1, 1, W)), torch.from_numpy(np.repeat(y, len(starts))), torch.from_numpy(seg)


def stream_point(g: nn.Module, base: nn.Module, x_seg: torch.Tensor, n: int, reps: int) -> dict:
    """Per hop at batch 1: MACs and time of dense and deployed streams vs dense windowed inference.

    The deployed stream equals :meth:`Stream.reference` (the signal-padded window: the streamed layers
    before the first gate see real left context); against zero-padded per-window gated inference it
    deviates by that signal-padding effect of the streamed "same" conv (c2), as any StreamiNNC stream.
    """
    dep = gating.deploy(g)
    ex = torch.zeros(1, 1, W)
    s_dense, s_dep = (to.stream(m, window=W, hop=H, example_input=ex) for m in (base, dep))
    sig = x_seg[:1]  # one segment, (1, 1, 4097)
    n_win = (sig.shape[-1] - W) // H + 1
    with torch.no_grad():
        ref = torch.stack([g(sig[..., k * H:k * H + W]) for k in range(n_win)], 1)
    y = s_dep.run(sig)
    E = s_dep.extension
    xp = torch.cat([sig.new_zeros(1, 1, E), sig], -1)
    ref_ext = torch.stack([s_dep.reference(xp[..., k * H:k * H + W + E]) for k in range(n_win)], 1)
    st_dense = s_dense.step(sig[..., :W], s_dense.init_state(1))[1]
    st_dep = s_dep.step(sig[..., :W], s_dep.init_state(1))[1]
    hops = [sig[..., W + k * H:W + (k + 1) * H] for k in range(n_win - 1)]
    macs = {"windowed_dense": to.count_macs(base, sig[..., :W]), "windowed_deployed": float(np.mean(
        [to.count_macs(dep, sig[..., k * H:k * H + W]) for k in range(n_win)])),
        "stream_dense": to.count_macs(s_dense, hops[0], st_dense),
        "stream_deployed": float(np.mean([to.count_macs(s_dep, h, st_dep) for h in hops]))}
    state = {"d": st_dense, "g": st_dep}
    win = sig[..., :W]

    def step_dense(h):
        return s_dense.step(h, state["d"])[0]

    def step_dep(h):
        return s_dep.step(h, state["g"])[0]

    cpu: dict[str, float] = {}
    t = interleaved({"windowed_dense": lambda h: base(win), "windowed_deployed": lambda h: dep(win),
                     "stream_dense": step_dense, "stream_deployed": step_dep}, (hops * n)[:n], reps, cpu=cpu)
    return {"stream_vs_reference_max_abs": float((y - ref_ext).abs().max()),
            "stream_vs_zero_padded_windows_max_abs": float((y - ref).abs().max()), "macs_per_hop": macs,
            "us_per_hop": {k: v * 1e6 for k, v in t.items()}, "cpu_us_per_hop": {k: v * 1e6 for k, v in cpu.items()}}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = QUICK if a.quick else FULL
    from sklearn.model_selection import train_test_split

    x, y = _load_bonn()
    scale = float(x.std())
    x = x / scale
    idx = np.arange(x.shape[0])
    tr, te = train_test_split(idx, test_size=0.2, random_state=0, stratify=y)
    if a.quick:
        tr, te = tr[:60], te[:20]
    xtr, ytr, _ = windows(x[tr], y[tr], W // 2)
    xte, yte, seg_te = windows(x[te], y[te], H)
    data = {"xtr": xtr, "ytr": ytr, "xte": xte, "yte": yte}
    res: dict = {"window": W, "hop": H, "n_train_segments": len(tr), "n_test_segments": len(te),
                 "n_test_windows": int(xte.shape[0]), "scale": scale}
    torch.manual_seed(0)
    with progress() as bar:
        task = bar.add_task("eeg", total=cfg["epochs"] + cfg["finetune"] * len(cfg["targets"]))
        base = train_dense(EEGNet(), xtr, ytr, cfg["epochs"], tick=lambda: bar.advance(task))
        res["acc_dense"] = accuracy(base, xte, yte)
        points = {}
        for target in cfg["targets"]:
            g, log = _gated(base, data, cfg["finetune"], target, lambda e: bar.advance(task))
            pt = evaluate_point(base, g, data, cfg["finetune"], base.fc, 30 if not a.quick else 4, cfg["n_time"],
                                cfg["reps"])
            pt.update(stream_point(g, base, torch.from_numpy(x[te][:1, None]), cfg["n_time"], cfg["reps"]))
            points[f"target {target}"] = {"target": target, **log, **pt}
        res["points"] = points
    histogram({k: v["engaged_per_input"] for k, v in points.items()},
              RESULTS / f"lkam_eeg{'_quick' if a.quick else ''}_engaged.png", "Bonn EEG: share of kernels engaged per window")
    write("lkam_eeg_quick" if a.quick else "lkam_eeg", res)
    return res


def _gated(base: nn.Module, data: dict, epochs: int, target: float, tick) -> tuple[nn.Module, dict]:
    from thinkonce.gating.recipe import fit

    g = gating.insert(base, after=["c2", "c3"])
    log = fit(g, data["xtr"], data["ytr"], epochs, target=target, on_epoch=tick)
    return g, {"train_share": log.share, "gain": log.gain, "train_loss": log.loss}


if __name__ == "__main__":
    main()
