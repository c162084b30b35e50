"""Scattered Online Inference on acoustic scene classification: baseline vs STMC vs SOI (issue 9, item 6).

    python experiments/soi_asc.py [--quick] [--steps 400] [--out results/soi_asc.json]

A small 1-D ResNet over log-mel frames (40 bands, 16 kHz, 32 ms window, hop 16 ms = 62.5 frames/s)
classifies 1.02 s windows (64 frames), emitted every 16 frames (0.256 s):

* ``baseline``: normal windowed inference, the whole window recomputed at every hop;
* ``STMC``: ``thinkonce.stream(model, window=64, hop=16)``: each hop computes only its new frames;
* ``SOI@k``: the same ResNet with the first conv of residual block ``k`` made a strided-cloned conv
  (stride 2, its shortcut strided too): from there on the network runs at half the frame rate; the
  window stream computes the deep frames on every other frame only. Trained with the pattern in place.

Data: real ambience and event recordings from Debian game-data packages (``soi_asc_data.py``), split by
source file (one third of each class's distinct files for testing). Accuracy is per window on the test
files (normal windowed inference of the trained model; the STMC/SOI streams are checked against it:
``stream_vs_normal_max_abs`` at the window positions). MACs per hop from ``thinkonce.count_macs``;
times per hop side by side in one process, one thread, under load.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import soi_asc_data  # noqa: E402

import thinkonce  # noqa: E402
from thinkonce import count_macs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FS, N_FFT, HOP, MELS = 16000, 512, 256, 40
WINDOW, STEP = 64, 16  # frames
FRAME_RATE = FS / HOP
PAPER_NOTE = ("paper (arXiv 2410.03813): ResNet-18..101 on acoustic scene classification, SOI cuts MACs at a "
              "small accuracy loss; its exact figures are not in DESIGN.md, so none are quoted here")


def mel_fb(n_fft: int = N_FFT, mels: int = MELS, fs: int = FS) -> torch.Tensor:
    """Triangular mel filters (HTK mel scale), (mels, n_fft // 2 + 1)."""
    def mel(f):
        return 2595 * np.log10(1 + f / 700)

    def hz(m):
        return 700 * (10 ** (m / 2595) - 1)

    pts = hz(np.linspace(mel(30), mel(fs / 2), mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1 / fs)
    fb = np.zeros((mels, len(bins)))
    for i in range(mels):
        lo, c, hi = pts[i], pts[i + 1], pts[i + 2]
        fb[i] = np.clip(np.minimum((bins - lo) / (c - lo), (hi - bins) / (hi - c)), 0, None)
    return torch.tensor(fb, dtype=torch.float32)


def logmel(x: np.ndarray) -> torch.Tensor:
    """(n,) -> (MELS, frames), log-mel, per file."""
    spec = torch.stft(torch.from_numpy(x), N_FFT, HOP, window=torch.hann_window(N_FFT), center=False,
                      return_complex=True).abs() ** 2
    return torch.log(mel_fb() @ spec + 1e-6)


class Block(nn.Module):
    """Residual block of causal k3 convs (left padding only: a causal trunk owes the window stream no
    right-edge recomputation)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv1d(cin, cout, 3, stride), nn.BatchNorm1d(cout)
        self.c2, self.b2 = nn.Conv1d(cout, cout, 3), nn.BatchNorm1d(cout)
        self.sc = nn.Sequential(nn.Conv1d(cin, cout, 1, stride), nn.BatchNorm1d(cout)) if stride > 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.b1(self.c1(F.pad(x, (2, 0)))))
        return F.relu(self.b2(self.c2(F.pad(h, (2, 0)))) + self.sc(x))


class ResNet1d(nn.Module):
    """Stem + 4 residual blocks + global average pooling + linear. ``scc``: blocks whose first conv is a
    strided-cloned conv (stride 2; its clones would be averaged by the head, so no explicit fill)."""

    def __init__(self, classes: int, widths: tuple[int, ...] = (32, 32, 64, 64, 96), scc: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.ConstantPad1d((2, 0), 0.0), nn.Conv1d(MELS, widths[0], 3), nn.BatchNorm1d(widths[0]), nn.ReLU())
        self.blocks = nn.Sequential(*[Block(widths[i], widths[i + 1], 2 if i in scc else 1) for i in range(len(widths) - 1)])
        self.head = nn.Linear(widths[-1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean(-1))


def windows(feats: torch.Tensor) -> torch.Tensor:
    if feats.shape[-1] < WINDOW:
        feats = F.pad(feats, (0, WINDOW - feats.shape[-1]), value=float(feats.min()))
    n = (feats.shape[-1] - WINDOW) // STEP + 1
    return torch.stack([feats[:, i * STEP: i * STEP + WINDOW] for i in range(n)])


def split(data: dict[str, list[tuple[str, np.ndarray]]]):
    """Per class: every third distinct file (sorted by id) for testing; at least one file each side."""
    classes = sorted(data)
    train, test = [], []
    for ci, c in enumerate(classes):
        files = sorted(data[c], key=lambda t: t[0])
        te = set(range(1, len(files), 3)) or {len(files) - 1}
        for i, (sid, x) in enumerate(files):
            (test if i in te else train).append((ci, sid, logmel(x)))
    return classes, train, test


def train(model: nn.Module, train_set, steps: int, seed: int, batch: int = 32) -> nn.Module:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[torch.Tensor]] = {}
    for c, _, f in train_set:
        by_class.setdefault(c, []).append(f)
    mean = torch.cat([f for _, _, f in train_set], -1).mean()
    opt = torch.optim.AdamW(model.parameters(), 2e-3, weight_decay=1e-3)
    classes = sorted(by_class)
    model.train()
    for _ in range(steps):
        xs, ys = [], []
        for _ in range(batch):
            c = classes[rng.integers(len(classes))]
            f = by_class[c][rng.integers(len(by_class[c]))]
            if f.shape[-1] < WINDOW:
                f = F.pad(f, (0, WINDOW - f.shape[-1]), value=float(f.min()))
            s = int(rng.integers(0, f.shape[-1] - WINDOW + 1))
            xs.append(f[:, s:s + WINDOW] + 0.3 * float(rng.standard_normal()))  # random gain (dB-like offset)
            ys.append(c)
        loss = F.cross_entropy(model(torch.stack(xs) - mean), torch.tensor(ys))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.input_mean = float(mean)
    return model


class Normalised(nn.Module):
    def __init__(self, model: nn.Module, mean: float) -> None:
        super().__init__()
        self.m, self.mean = model, mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x - self.mean)


@torch.no_grad()
def accuracy(model: nn.Module, test_set) -> tuple[float, float]:
    """Per-window accuracy and per-file accuracy (mean of window logits)."""
    hit = tot = fhit = 0
    for c, _, f in test_set:
        logits = model(windows(f))
        hit += int((logits.argmax(1) == c).sum())
        tot += len(logits)
        fhit += int(logits.mean(0).argmax() == c)
    return hit / tot, fhit / len(test_set)


@torch.no_grad()
def costs(model: nn.Module, feats: torch.Tensor, steps: int) -> tuple[thinkonce.Stream, dict[str, Any]]:
    s = thinkonce.stream(model, window=WINDOW, hop=STEP, check=False)
    x = feats[None]
    st2 = s.init_state(1)
    for i in range(WINDOW // STEP + 2):
        _, st2 = s.step(x[..., i * STEP:(i + 1) * STEP], st2)
    macs_stream = [count_macs(s, x[..., :STEP], st2)]
    from thinkonce.measure.macs import head_macs
    macs_stream_total = macs_stream[0] + head_macs(s)
    macs_normal = count_macs(model, x[..., :WINDOW])
    # side by side: normal window recompute vs stream step, interleaved
    tn, ts = [], []
    st3 = st2
    for i in range(steps):
        order = (0, 1) if i % 2 else (1, 0)
        for k in order:
            t0 = time.perf_counter_ns()
            if k == 0:
                model(x[..., :WINDOW])
            else:
                _, st3 = s.step(x[..., :STEP], st3)
            (tn if k == 0 else ts).append((time.perf_counter_ns() - t0) / 1e3)
    hops = FRAME_RATE / STEP
    return {"macs_per_hop_normal": macs_normal,
            "macs_per_hop_stream": macs_stream_total, "mmac_per_s_normal": macs_normal * hops / 1e6,
            "mmac_per_s_stream": macs_stream_total * hops / 1e6, "us_per_hop_normal_median": float(np.median(tn)),
            "us_per_hop_stream_median": float(np.median(ts)), "us_per_hop_stream_p99": float(np.percentile(ts, 99))}, s


@torch.no_grad()
def stream_accuracy(s: thinkonce.Stream, test_set) -> float:
    """Per-window accuracy of the window stream run over each test file (what a deployment outputs; its
    left context is real signal where normal inference zero-pads each window)."""
    hit = tot = 0
    for c, _, f in test_set:
        if f.shape[-1] < WINDOW:
            f = F.pad(f, (0, WINDOW - f.shape[-1]), value=float(f.min()))
        y = s.run(f[None], chunk=STEP)[0]
        hit += int((y.argmax(-1) == c).sum())
        tot += len(y)
    return hit / tot


def run(quick: bool = False, steps: int = 400, seeds: list[int] = (0,), out: Path | None = None,
        fallback: bool = False) -> dict[str, Any]:
    torch.set_num_threads(1)
    t0 = time.time()
    data, sources = ({}, {}) if fallback else soi_asc_data.load()
    missing = []
    if len(data) < 2:
        missing.append("game-data audio absent (`make soi-data`): synthetic fallback, not scene audio")
        data, sources = soi_asc_data.synthetic_fallback()
    classes, train_set, test_set = split(data)
    if quick:  # a few steps, and one short test file per class (the stream runs over every test window)
        steps, seeds = min(steps, 15), list(seeds)[:1]
        firsts = {}
        for c, sid, f in test_set:
            firsts.setdefault(c, (c, sid, f[:, : WINDOW * 4]))
        test_set = list(firsts.values())
    configs = {"STMC": (), "SOI@1": (1,), "SOI@2": (2,), "SOI@1+3": (1, 3)}
    if quick:
        configs = {"STMC": (), "SOI@1": (1,)}
    res: dict[str, Any] = {"quick": quick, "steps": steps, "seeds": list(seeds), "classes": classes,
                           "class_sources": sources, "missing": missing, "paper": PAPER_NOTE,
                           "train_files": {c: sum(1 for k, _, _ in train_set if k == i) for i, c in enumerate(classes)},
                           "test_files": {c: sum(1 for k, _, _ in test_set if k == i) for i, c in enumerate(classes)},
                           "test_windows": int(sum(len(windows(f)) for _, _, f in test_set)),
                           "window_frames": WINDOW, "hop_frames": STEP, "frame_rate": FRAME_RATE, "configs": {}}
    probe = max((f for _, _, f in test_set), key=lambda f: f.shape[-1])[:, : WINDOW * 3]
    for name, scc in configs.items():
        runs = []
        for seed in seeds:
            torch.manual_seed(seed)
            net = train(ResNet1d(len(classes), scc=scc), train_set, steps, seed)
            model = Normalised(net, net.input_mean).eval()
            acc, facc = accuracy(model, test_set)
            c, strm = costs(model, probe, 40 if quick else 300)
            runs.append({"seed": seed, "window_acc": acc, "file_acc": facc,
                         "stream_window_acc": stream_accuracy(strm, test_set)})
        accs = np.array([r["window_acc"] for r in runs])
        saccs = np.array([r["stream_window_acc"] for r in runs])
        res["configs"][name] = {"scc": list(scc), "params": sum(p.numel() for p in net.parameters()), "runs": runs,
                                "window_acc_mean": float(accs.mean()),
                                "window_acc_std": float(accs.std(ddof=1)) if len(accs) > 1 else 0.0,
                                "stream_window_acc_mean": float(saccs.mean()),
                                "stream_window_acc_std": float(saccs.std(ddof=1)) if len(saccs) > 1 else 0.0, **c}
        if out is not None:
            out.write_text(json.dumps(res, indent=1))
    res["wall_s"] = time.time() - t0
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1))
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--fallback", action="store_true", help="synthetic test signals instead of the game audio")
    ap.add_argument("--setup", action="store_true", help="extract the game-data audio into the cache first")
    ap.add_argument("--setup-only", action="store_true", help="extract the game-data audio, then stop")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "soi_asc.json")
    a = ap.parse_args(argv)
    if a.setup or a.setup_only:
        print(soi_asc_data.prepare() or "game-data audio cached")
        if a.setup_only:
            return
    r = run(a.quick, a.steps, a.seeds, a.out, a.fallback)
    for n, c in r["configs"].items():
        print(f"{n:10s} acc {c['window_acc_mean']:.3f}+-{c['window_acc_std']:.3f}  normal {c['mmac_per_s_normal']:.2f} "
              f"MMAC/s  stream {c['mmac_per_s_stream']:.2f} MMAC/s  params {c['params']}")


if __name__ == "__main__":
    main()
