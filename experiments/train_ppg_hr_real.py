"""Train the PPG heart-rate network on real wrist PPG (TROIKA train/) plus simulation, and ship it.

    python experiments/train_ppg_hr_real.py --padding zero --epochs 16     # zero-padding model (shipped)
    python experiments/train_ppg_hr_real.py --padding signal --epochs 5 --lr 1e-3 \
        --init src/thinkonce/weights/ppg_hr_real.safetensors --sim-recordings 8 --real-repeats 1
                                                 # the shipped signal-padding model, fine-tuned from it
    python experiments/train_ppg_hr_real.py --quick --out /tmp/x.safetensors   # smoke test (seconds)

Data: the 12 TROIKA training recordings resampled to 32 Hz (``thinkonce.data.load_troika``), 4 input
channels (mean of the two PPG channels, ACC x, y, z) in raw device units. Validation is
leave-recordings-out: 3 of the 12 training recordings (``VAL_IDS``) are held out and select the epoch;
the other 9 train, together with simulated recordings (``simulate_ppg`` + its accelerometer, each
given a random gain and offset so that "raw units" vary as between devices). TROIKA ``test/`` and
``extra/`` are never read here. Labels: the organisers' window references; a window starting between
two reference windows (random start offsets, an augmentation) gets the interpolated reference.

The network is :class:`thinkonce.models.PPGHeartRateRealNet`: the simulated-data model's trunk and head
with a causal running normalisation in front (stream-safe, any device's units). ``--padding signal``
trains it as ``SignalPadded`` on windows extended to the left by real signal, so its stream equals what
was trained and validated. Weights + a JSON record go to ``src/thinkonce/weights/ppg_hr_real[_signal]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads ruin shared cores

import argparse
import json
import math
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from safetensors.torch import save_file

import thinkonce
from thinkonce import SignalPadded
from thinkonce.data import load_troika, simulate_ppg
from thinkonce.models import PPGHeartRateRealNet

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "src" / "thinkonce" / "weights"
FS, WINDOW, HOP = 32.0, 256, 64
VAL_IDS = ("DATA_04_TYPE02", "DATA_08_TYPE02", "DATA_12_TYPE02")  # every 4th training recording
SIM_SEED_BASE = 800_000  # disjoint from the simulated-data model's seeds (0..119, 500000.., 700000..)


@dataclass(frozen=True)
class Config:
    epochs: int = 20
    seed: int = 0
    sim_recordings: int = 14
    sim_s: float = 300.0
    real_repeats: int = 2  # real windows per epoch: this many random start offsets per recording
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    huber_beta: float = 0.1
    padding: str = "signal"
    train_ids: tuple[str, ...] | None = None  # None: every training recording not in VAL_IDS
    init: str | None = None  # start from these weights (e.g. the zero-padding model) instead of random


@dataclass
class Series:
    """One recording as training data: input (4, n) and a reference per window start on the hop grid."""

    name: str
    x: np.ndarray  # (4, n) float32 raw units
    bpm: np.ndarray  # (M,) reference of the window starting at k * HOP

    def label(self, starts: np.ndarray) -> np.ndarray:
        return np.interp(starts / HOP, np.arange(len(self.bpm)), self.bpm).astype(np.float32)


def real_series(ids: tuple[str, ...] | None, exclude: tuple[str, ...] = ()) -> tuple[list[Series], list[Series]]:
    """(train, val) TROIKA training recordings as Series; val = VAL_IDS."""
    recs = load_troika("train", fs=FS)
    val = [Series(r.rec_id, r.model_input("ppg+acc"), r.window_bpm) for r in recs if r.rec_id in VAL_IDS]
    train = [Series(r.rec_id, r.model_input("ppg+acc"), r.window_bpm) for r in recs
             if r.rec_id not in VAL_IDS and r.rec_id not in exclude and (ids is None or r.rec_id in ids)]
    return train, val


def sim_series(n: int, duration_s: float, seed: int) -> list[Series]:
    """Simulated recordings with the accelerometer, PPG in random 'device units' (gain and offset)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        r = simulate_ppg(duration_s, fs=FS, seed=SIM_SEED_BASE + i, motion=True)
        gain, offset = 10 ** rng.uniform(0.5, 3.0), rng.uniform(-1000, 1000)
        x = np.concatenate([r.ppg * gain + offset, r.acc]).astype(np.float32)
        hr = r.hr_bpm.astype(np.float64)
        m = (hr.size - WINDOW) // HOP + 1
        c = np.concatenate([[0.0], np.cumsum(hr)])
        bpm = ((c[np.arange(m) * HOP + WINDOW] - c[np.arange(m) * HOP]) / WINDOW).astype(np.float32)
        out.append(Series(f"sim{SIM_SEED_BASE + i}", x, bpm))
    return out


def windows(series: list[Series], offset: int, extension: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows starting at ``offset + k * HOP`` (each preceded by ``extension`` samples of real past signal,
    zeros before the recording start) and their labels."""
    xs, ys = [], []
    for s in series:
        n = s.x.shape[1]
        starts = np.arange(offset, n - WINDOW + 1, HOP)
        starts = starts[starts / HOP <= len(s.bpm) - 1]
        padded = np.concatenate([np.zeros((s.x.shape[0], extension), np.float32), s.x], axis=1)
        view = np.lib.stride_tricks.sliding_window_view(padded, extension + WINDOW, axis=1)
        xs.append(view[:, starts].transpose(1, 0, 2))
        ys.append(s.label(starts))
    return np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys)


@torch.no_grad()
def predict(net: torch.nn.Module, x: np.ndarray, batch: int = 512) -> np.ndarray:
    net.eval()
    t = torch.from_numpy(x)
    return torch.cat([net(t[i : i + batch])[:, 0] for i in range(0, len(t), batch)]).numpy()


def evaluate(model: PPGHeartRateRealNet, val: list[Series], extension: int) -> dict[str, float]:
    """Val MAE (bpm) under normal windowed inference (plain windows) and, for a signal-padded model,
    under signal-padded inference (= the stream)."""
    x0, y = windows(val, 0, 0)
    out = {"mae_normal_bpm": float(np.abs(predict(model, x0) - y).mean())}
    if extension:
        xe, _ = windows(val, 0, extension)
        out["mae_stream_bpm"] = float(np.abs(predict(SignalPadded(model, WINDOW, extension=extension), xe) - y).mean())
    out["per_recording_normal"] = {
        s.name: float(np.abs(predict(model, windows([s], 0, 0)[0]) - windows([s], 0, 0)[1]).mean()) for s in val}
    return out


def run(cfg: Config, out: Path) -> dict:
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    real, val = real_series(cfg.train_ids)
    sim = sim_series(cfg.sim_recordings, cfg.sim_s, cfg.seed)
    print(f"train: {len(real)} TROIKA recordings ({', '.join(s.name for s in real)}) + {len(sim)} simulated; "
          f"val: {', '.join(s.name for s in val)}")
    model = PPGHeartRateRealNet(in_channels=4)
    all_bpm = np.concatenate([s.bpm for s in real + sim])
    model.set_normalisation(0.0, 1.0, float(all_bpm.mean()), float(all_bpm.std()))
    if cfg.init is not None:  # fine-tune: same data, same validation recordings, only the start differs
        from safetensors.torch import load_file

        model.load_state_dict(load_file(cfg.init))
    extension = 0
    net: torch.nn.Module = model
    if cfg.padding == "signal":
        net = SignalPadded(model, WINDOW)
        extension = net.extension
    key = "mae_stream_bpm" if extension else "mae_normal_bpm"
    n_per_epoch = sum(len(windows([s], 0, 0)[1]) for s in sim) + cfg.real_repeats * sum(len(s.bpm) for s in real)
    steps = math.ceil(n_per_epoch / cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps + 10,
                                                pct_start=0.15)
    gen = torch.Generator().manual_seed(cfg.seed)
    best, best_state, history = math.inf, None, []
    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*cols) as progress:
        for epoch in range(cfg.epochs):
            parts = [windows(sim, int(rng.integers(0, HOP)), extension)]
            parts += [windows(real, int(rng.integers(0, HOP)), extension) for _ in range(cfg.real_repeats)]
            x = torch.from_numpy(np.concatenate([p[0] for p in parts]))
            y = torch.from_numpy(np.concatenate([p[1] for p in parts]))
            target = (y - model.hr_offset) / model.hr_scale
            order = torch.randperm(len(y), generator=gen)
            task = progress.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=math.ceil(len(y) / cfg.batch_size))
            net.train()
            total = 0.0
            for b in range(0, len(y), cfg.batch_size):
                idx = order[b : b + cfg.batch_size]
                pred = (net(x[idx])[:, 0] - model.hr_offset) / model.hr_scale
                loss = F.smooth_l1_loss(pred, target[idx], beta=cfg.huber_beta)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(idx)
                progress.advance(task)
            progress.remove_task(task)
            m = evaluate(model, val, extension)
            history.append({"epoch": epoch + 1, "train_loss": total / len(y), **m,
                            "elapsed_s": round(time.perf_counter() - t0, 1)})
            if m[key] < best:
                best, best_state = m[key], {k: v.detach().clone() for k, v in model.state_dict().items()}
                save_file({k: v.contiguous() for k, v in best_state.items()}, str(out.with_suffix(".partial")))
            progress.console.print(f"epoch {epoch + 1:2d} loss {total / len(y):.4f} val MAE normal "
                                   f"{m['mae_normal_bpm']:.2f}" + (f" stream {m['mae_stream_bpm']:.2f}" if extension else "")
                                   + f" bpm  {time.perf_counter() - t0:.0f}s")
    model.load_state_dict(best_state)
    model.eval()
    final = evaluate(model, val, extension)
    s = thinkonce.stream(model, window=WINDOW, hop=HOP)
    dev = [thinkonce.verify(model, s, torch.from_numpy(v.x)).nrmse for v in val]
    meta = {
        "model": "thinkonce.models.PPGHeartRateRealNet(in_channels=4)",
        "padding": cfg.padding,
        "trained_on": "real",
        "command": "python " + shlex.join([sys.argv[0], *sys.argv[1:]]),
        "config": asdict(cfg),
        "data": {
            "real": "TROIKA train/ (IEEE SPC 2015; Zhang, Pi, Liu, IEEE TBME 62(2), 2015) resampled to 32 Hz",
            "input": "4 channels: mean of the two PPG channels, ACC x, y, z; raw device units",
            "train_recordings": [s.name for s in real],
            "val_recordings": [s.name for s in val],
            "sim": f"simulate_ppg({cfg.sim_s}, fs=32, seed={SIM_SEED_BASE}+i, motion=True), i < {cfg.sim_recordings}, "
                   "PPG x random gain 10^U(0.5,3) + offset U(-1000,1000), ACC in g",
            "test_and_extra": "never read (TROIKA test/ and extra/ are evaluation only)",
            "extension": extension,
        },
        "selection": f"epoch with the lowest val {key} (validation recordings only)",
        "selected_epoch": int(1 + int(np.argmin([h[key] for h in history]))),
        "val": final,
        "val_stream_vs_normal_nrmse": dev,
        "history": history,
        "train_time_s": round(time.perf_counter() - t0, 1),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "notes": "train_time_s measured with 1 torch thread under load (2 cores shared with other jobs)",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".partial").unlink(missing_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out), metadata={"format": "pt", "model": "PPGHeartRateRealNet", "padding": cfg.padding,
                                         "in_channels": "4"})
    out.chmod(0o644)
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"saved {out}: val MAE {final[key]:.2f} bpm ({key}), epoch {meta['selected_epoch']}, "
          f"stream NRMSE vs normal {100 * np.mean(dev):.2f} % in {meta['train_time_s']:.0f}s")
    return meta


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--padding", choices=("zero", "signal"), default="signal")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="2 recordings, 2 simulated, 1 epoch")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--init", type=Path, default=None,
                   help="start from these weights (the shipped signal model starts from the zero-padding one)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 3e-3)")
    p.add_argument("--sim-recordings", type=int, default=None, help="simulated recordings (default 14)")
    p.add_argument("--real-repeats", type=int, default=None, help="start offsets per real recording and epoch (2)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        cfg = Config(epochs=args.epochs or 1, seed=args.seed, sim_recordings=1, sim_s=60.0, real_repeats=1,
                     padding=args.padding, train_ids=("DATA_01_TYPE01",))
    else:
        opt = {k: v for k, v in (("lr", args.lr), ("sim_recordings", args.sim_recordings),
                                 ("real_repeats", args.real_repeats)) if v is not None}
        cfg = Config(epochs=args.epochs or 20, seed=args.seed, padding=args.padding,
                     init=None if args.init is None else str(args.init), **opt)
    name = "ppg_hr_real_signal.safetensors" if args.padding == "signal" else "ppg_hr_real.safetensors"
    return run(cfg, args.out or WEIGHTS / name)


if __name__ == "__main__":
    main()
