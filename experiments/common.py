"""Shared harness of the StreamiNNC reproductions (hr_ppg.py, seizure_eeg.py, seizure_acc.py).

One function, :func:`compare_schemes`, runs a trained model over held-out recordings under every
inference scheme the paper discusses and returns, per scheme, the per-window outputs, their deviation
from normal inference (NRMSE = RMSE / range of normal inference, as in StreamiNNC), the task metric,
MACs per hop and the measured median time per hop:

* ``normal``: normal windowed inference. Every window of ``window`` samples (every ``hop``) is cut out
  and run alone, with the model's zero padding. This is the reference of every NRMSE.
* ``exact``: ``thinkonce.stream(model, window, hop)``: each hop computes only what it adds; frames
  that "same" padding left provisional at the right edge are recomputed when their context arrives.
* ``stale``: the same stream with ``edge="stale"``: provisional right-edge frames are kept (what the
  paper's code does). Identical to ``exact`` for causal trunks (PPG).
* ``approximate``: the crude baseline: every hop of the window runs through the trunk alone
  (zero-padded at its edges), the hops' features are concatenated, then the head (``s.approximate``).
* ``misaligned``: a stream whose hop breaks pooling alignment (``allow_misaligned=True``), at
  ``misaligned_hop = hop + period // 2`` (half a stride period off). Each of its windows starts at
  ``k * misaligned_hop`` and is compared with normal inference of the *same* window (normal inference
  at that hop). Not applicable when the trunk has no pooling (period 1: every hop is aligned).

Costs are measured per hop at batch 1 on one thread, side by side in one process: in every hop the
schemes run one after another in an order that rotates from hop to hop, so machine load (the cores are
shared) hits all schemes alike. MACs come from ``thinkonce.count_macs`` (PyTorch's FLOP counter):
``normal`` = the model on one window; streams = one steady-state ``step`` of one hop; ``approximate`` =
the trunk on one hop plus the head (``s.approximate`` on a one-hop input, what a deployment of that
baseline computes per hop, keeping the earlier hops' features).

The module also holds what the two seizure experiments share: window cutting with signal padding,
class-balanced training of a window classifier (plain or ``SignalPadded``), event-level scoring.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads ruin shared cores

import json
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

import thinkonce
from thinkonce import SignalPadded, count_macs, extended_windows
from thinkonce.data import score_events, window_labels
from thinkonce.verify import deviation, windowed_inference

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"
SCHEMES = ("normal", "exact", "stale", "approximate", "misaligned")
SCHEME_LABELS = {
    "normal": "normal windowed inference (zero padding per window)",
    "exact": "stream, exact right edge",
    "stale": "stream, stale right edge (paper's code)",
    "approximate": "approximate: each hop alone through the trunk",
    "misaligned": "stream at a misaligned hop (pooling alignment broken)",
}

Transform = Callable[[Tensor], Tensor]  # raw model outputs (..., k) -> compared outputs (..., k')
Metric = Callable[[Tensor, int], dict[str, float]]  # (outputs (R, n_windows, k'), hop) -> metrics


def setup_threads(threads: int = 1) -> None:
    """One torch thread (the machine's two cores are shared): per-hop latency as on a small device."""
    torch.set_num_threads(threads)


def identity(y: Tensor) -> Tensor:
    return y


def seizure_probability(logits: Tensor) -> Tensor:
    """Softmax probability of the seizure class (index 1), keeping a trailing axis of size 1."""
    return torch.softmax(logits.double(), dim=-1)[..., 1:2].float()


# --------------------------------------------------------------------------- inference schemes
def stride_period(model: nn.Module, window: int, hop: int) -> int:
    """The trunk's stride period (product of pooling strides) as the library sees it."""
    return thinkonce.stream(model, window=window, hop=hop, allow_misaligned=True).spec.period


def default_misaligned_hop(hop: int, period: int) -> int | None:
    """``hop + period // 2`` (half a stride period off alignment); None when every hop is aligned."""
    return None if period <= 1 else hop + period // 2


@torch.no_grad()
def approximate_outputs(s: thinkonce.Stream, signals: Tensor, batch: int = 128) -> Tensor:
    """``s.approximate`` on every window of ``signals`` (R, C, n): (R, n_windows, *out)."""
    W, H = s.window, s.hop
    wins = signals.unfold(-1, W, H)  # (R, C, n_w, W)
    R, C, n_w, _ = wins.shape
    flat = wins.permute(0, 2, 1, 3).reshape(R * n_w, C, W)
    outs = [s.approximate(flat[i : i + batch].contiguous()) for i in range(0, len(flat), batch)]
    y = torch.cat(outs)
    return y.reshape(R, n_w, *y.shape[1:])


@torch.no_grad()
def scheme_outputs(
    model: nn.Module, window: int, hop: int, signals: Tensor, misaligned_hop: int | None
) -> dict[str, tuple[int, Tensor, Tensor]]:
    """Per scheme: ``(hop, outputs, normal inference at that hop)``; raw model outputs (R, n_w, *out)."""
    model.eval()
    normal = windowed_inference(model, signals, window, hop)
    exact = thinkonce.stream(model, window=window, hop=hop, edge="exact")
    stale = thinkonce.stream(model, window=window, hop=hop, edge="stale")
    out = {
        "normal": (hop, normal, normal),
        "exact": (hop, exact.run(signals), normal),
        "stale": (hop, stale.run(signals), normal),
        "approximate": (hop, approximate_outputs(exact, signals), normal),
    }
    if misaligned_hop is not None:
        mis = thinkonce.stream(model, window=window, hop=misaligned_hop, allow_misaligned=True)
        out["misaligned"] = (misaligned_hop, mis.run(signals), windowed_inference(model, signals, window, misaligned_hop))
    return out


@torch.no_grad()
def exact_vs_reference(model: nn.Module, window: int, hop: int, signal: Tensor, n: int = 16) -> float:
    """Max |exact stream - s.reference(signal-padded window)| over the first ``n`` windows of one
    recording (C, n): the library's own guarantee, checked on real data (should be float round-off)."""
    s = thinkonce.stream(model, window=window, hop=hop)
    y = s.run(signal[None])[0, :n]
    x_ext = extended_windows(signal, window, hop, s.extension)[: y.shape[0]]
    ref = s.reference(x_ext)
    return float((y - ref).abs().max())


# --------------------------------------------------------------------------- costs
@torch.no_grad()
def measure_costs(
    model: nn.Module,
    window: int,
    hop: int,
    signal: Tensor,
    misaligned_hop: int | None,
    n_hops: int = 200,
    batch: int = 1,
) -> dict[str, dict[str, float]]:
    """MACs per hop and median wall time per hop, schemes interleaved hop by hop.

    ``signal`` is one recording (C, n); it must hold ``window + n_hops * max(hop, misaligned_hop)``
    samples (fewer hops are timed otherwise). ``batch > 1`` times that many streams stepped together
    (the recording repeated), where compute rather than per-operator overhead sets the time; MACs are
    always those of one stream.
    """
    model.eval()
    x = signal[None].expand(batch, *signal.shape).contiguous()  # (batch, C, n)
    n = x.shape[-1]
    streams: dict[str, tuple[thinkonce.Stream, int]] = {
        "exact": (thinkonce.stream(model, window=window, hop=hop, edge="exact"), hop),
        "stale": (thinkonce.stream(model, window=window, hop=hop, edge="stale"), hop),
    }
    if misaligned_hop is not None:
        streams["misaligned"] = (
            thinkonce.stream(model, window=window, hop=misaligned_hop, allow_misaligned=True), misaligned_hop)
    approx = streams["exact"][0]
    longest = max([hop] + [h for _, h in streams.values()])
    n_hops = max(1, min(n_hops, (n - window) // longest))

    states, pos = {}, {}
    for name, (s, h) in streams.items():  # fill the first window: steady state from here on
        _, states[name] = s.step(x[..., :window], s.init_state(batch))
        pos[name] = window
    x1 = x[:1]
    macs = {"normal": count_macs(model, x1[..., :window]),
            "approximate": count_macs(approx.approximate, x1[..., window - hop : window])}
    for name, (s, h) in streams.items():
        macs[name] = count_macs(s, x[..., window : window + h], states[name]) // batch

    def run_one(name: str, i: int) -> None:
        if name in streams:
            s, h = streams[name]
            p = pos[name]
            _, states[name] = s.step(x[..., p : p + h], states[name])
            pos[name] = p + h
        elif name == "normal":
            e = window + (i + 1) * hop
            model(x[..., e - window : e])
        else:  # approximate: the newest hop through the trunk alone, then the head
            e = window + (i + 1) * hop
            approx.approximate(x[..., e - hop : e])

    names = [k for k in SCHEMES if k in macs]
    times: dict[str, list[float]] = {k: [] for k in names}
    for i in range(n_hops):
        k = i % len(names)
        for name in names[k:] + names[:k]:  # rotate the order: no scheme always runs first
            t0 = time.perf_counter()
            run_one(name, i)
            times[name].append(time.perf_counter() - t0)
    out = {}
    for name in names:
        t = np.asarray(times[name]) * 1e6
        out[name] = {
            "macs_per_hop": int(macs[name]),
            "mac_cut_vs_normal": macs["normal"] / macs[name],
            "median_us_per_hop": float(np.median(t)),
            "p90_us_per_hop": float(np.percentile(t, 90)),
            "speedup_vs_normal": None,  # filled below
            "hops_timed": int(len(t)),
            "batch": batch,
        }
    for name in names:
        out[name]["speedup_vs_normal"] = out["normal"]["median_us_per_hop"] / out[name]["median_us_per_hop"]
    return out


# --------------------------------------------------------------------------- the harness
def compare_schemes(
    model: nn.Module,
    window: int,
    hop: int,
    signals: Tensor,
    metric: Metric,
    transform: Transform = identity,
    misaligned_hop: int | None | str = "auto",
    n_timing_hops: int = 200,
    keep_outputs: bool = True,
    batched: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Every inference scheme on ``signals`` (R, C, n): outputs, NRMSE vs normal, task metric, costs.

    ``transform`` maps raw outputs to what is compared (identity for HR in bpm, softmax seizure
    probability for the classifiers); ``metric(outputs, hop)`` scores transformed outputs (R, n_w, k)
    on the window grid of ``hop``. ``misaligned_hop="auto"`` picks ``hop + period // 2``.
    Costs are timed at batch 1 (``n_timing_hops`` hops); ``batched=(B, n)`` also times B streams
    stepped together for n hops (under ``"batched"`` in each scheme).

    Returns a JSON-ready dict; with ``keep_outputs`` the transformed per-window outputs are kept under
    ``"outputs"`` (tensors, for plots; drop them before writing JSON).
    """
    model.eval()
    signals = torch.as_tensor(signals, dtype=torch.float32)
    period = stride_period(model, window, hop)
    if misaligned_hop == "auto":
        misaligned_hop = default_misaligned_hop(hop, period)
    t0 = time.perf_counter()
    raw = scheme_outputs(model, window, hop, signals, misaligned_hop)
    schemes: dict[str, dict[str, Any]] = {}
    outputs: dict[str, dict[str, Any]] = {}
    for name, (h, y, ref) in raw.items():
        yt, rt = transform(y), transform(ref)
        rep = deviation(yt, rt, "window", "normal windowed inference")
        schemes[name] = {
            "hop": h,
            "n_windows": int(yt.shape[0] * yt.shape[1]),
            "nrmse_vs_normal": rep.nrmse,
            "rmse_vs_normal": rep.rmse,
            "max_abs_vs_normal": rep.max_abs_error,
            "metric": metric(yt, h),
        }
        if name == "misaligned":
            schemes[name]["normal_metric_same_hop"] = metric(rt, h)
        outputs[name] = {"hop": h, "y": yt, "normal": rt}
    eval_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    costs = measure_costs(model, window, hop, signals[0], misaligned_hop, n_timing_hops)
    for name, c in costs.items():
        schemes[name].update(c)
    if batched is not None:
        b_costs = measure_costs(model, window, hop, signals[0], misaligned_hop, batched[1], batch=batched[0])
        for name, c in b_costs.items():
            schemes[name]["batched"] = {k: c[k] for k in ("batch", "median_us_per_hop", "p90_us_per_hop",
                                                           "speedup_vs_normal", "hops_timed")}
    result: dict[str, Any] = {
        "window": window,
        "hop": hop,
        "period": period,
        "misaligned_hop": misaligned_hop,
        "misaligned_note": (
            f"hop {hop} + period {period} // 2 = {misaligned_hop}" if misaligned_hop is not None
            else f"not applicable: stride period {period}, every hop is aligned"
        ),
        "exact_vs_reference_max_abs": exact_vs_reference(model, window, hop, signals[0]),
        "schemes": schemes,
        "eval_time_s": round(eval_s, 1),
        "timing_time_s": round(time.perf_counter() - t0, 1),
    }
    if keep_outputs:
        result["outputs"] = outputs
    return result


RaggedMetric = Callable[[list[Tensor], int], dict[str, float]]  # per-recording outputs (n_w_r, k'), hop


def compare_schemes_ragged(
    model: nn.Module,
    window: int,
    hop: int,
    signals: Sequence[np.ndarray | Tensor],
    metric: RaggedMetric,
    transform: Transform = identity,
    misaligned_hop: int | None | str = "auto",
    n_timing_hops: int = 200,
    batched: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """:func:`compare_schemes` on recordings of different lengths (real data): list of (C, n_r).

    The recordings are right-padded with zeros to the longest and run together; then every figure is
    recomputed over each recording's own windows only (``n_windows(n_r, window, hop)`` at each scheme's
    hop), so the padding never enters an NRMSE or a metric. Padding on the right cannot change a
    window that ends before it (neither normal inference nor a stream looks ahead of the window end).
    ``metric(outputs, hop)`` gets one (n_w_r, k') tensor per recording. Costs are timed on the longest
    recording. Outputs are kept (per recording lists) under ``"outputs"``.
    """
    sig = [torch.as_tensor(np.asarray(x), dtype=torch.float32) for x in signals]
    order = sorted(range(len(sig)), key=lambda i: -sig[i].shape[-1])
    n_max = sig[order[0]].shape[-1]
    stacked = torch.stack([F.pad(sig[i], (0, n_max - sig[i].shape[-1])) for i in order])

    def no_metric(y: Tensor, h: int) -> dict[str, float]:
        return {}

    res = compare_schemes(model, window, hop, stacked, no_metric, transform, misaligned_hop, n_timing_hops,
                          keep_outputs=True, batched=batched)
    back = {j: i for i, j in enumerate(order)}  # original index -> row
    outputs: dict[str, dict[str, Any]] = {}
    for name, o in res["outputs"].items():
        h = o["hop"]
        counts = [(sig[i].shape[-1] - window) // h + 1 for i in range(len(sig))]
        ys = [o["y"][back[i], : counts[i]] for i in range(len(sig))]
        refs = [o["normal"][back[i], : counts[i]] for i in range(len(sig))]
        rep = deviation(torch.cat(ys), torch.cat(refs), "window", "normal windowed inference")
        sch = res["schemes"][name]
        sch.update({"n_windows": int(sum(counts)), "nrmse_vs_normal": rep.nrmse, "rmse_vs_normal": rep.rmse,
                    "max_abs_vs_normal": rep.max_abs_error, "metric": metric(ys, h),
                    "nrmse_vs_normal_per_recording": [
                        deviation(y, r, "window", "normal").nrmse for y, r in zip(ys, refs, strict=True)]})
        if name == "misaligned":
            sch["normal_metric_same_hop"] = metric(refs, h)
        outputs[name] = {"hop": h, "y": ys, "normal": refs}
    res["outputs"] = outputs
    res["ragged"] = "recordings of different lengths, right-padded for the run; figures over own windows only"
    return res


def without_outputs(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "outputs"}


def environment() -> dict[str, Any]:
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_avg_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# --------------------------------------------------------------------------- seizure experiments
@dataclass
class Recording:
    """A multichannel recording as the seizure experiments use it (already scaled)."""

    x: np.ndarray  # (C, n) float32
    labels: np.ndarray  # (n,) int8, 1 inside a seizure
    events: list[tuple[float, float]]
    fs: float
    seed: int

    @property
    def duration_s(self) -> float:
        return self.x.shape[1] / self.fs


@dataclass
class TrainConfig:
    """Training of a seizure window classifier; written to the results JSON."""

    epochs: int
    windows_per_epoch: int  # drawn class-balanced: half seizure windows, half background
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    start_stride: int = 16  # candidate window starts every this many samples (shift augmentation)
    min_overlap: float = 0.5  # a window is a seizure window when >= half its samples are ictal
    seed: int = 0


@dataclass
class WindowBank:
    """Every candidate training window of a set of recordings, addressable without copying.

    ``padded[r]`` is recording r prefixed with ``extension`` zeros, so the extended window starting at
    sample s is ``padded[r][:, s : s + extension + window]``: real signal before s, zeros only before
    the recording start (what ``thinkonce.extended_windows`` builds and a fresh stream sees).
    """

    padded: list[Tensor]
    index: np.ndarray  # (N, 2): recording, start sample
    y: np.ndarray  # (N,) int64 window label
    window: int
    extension: int

    def batch(self, rows: np.ndarray) -> tuple[Tensor, Tensor]:
        L = self.extension + self.window
        x = torch.stack([self.padded[r][:, s : s + L] for r, s in self.index[rows]])
        return x, torch.from_numpy(self.y[rows])


def window_bank(recs: Sequence[Recording], window: int, stride: int, extension: int,
                min_overlap: float = 0.5) -> WindowBank:
    padded, index, ys = [], [], []
    for r, rec in enumerate(recs):
        t = torch.from_numpy(np.ascontiguousarray(rec.x))
        padded.append(torch.cat([t.new_zeros(t.shape[0], extension), t], dim=1))
        lab = window_labels(rec.labels, window, stride, min_overlap)
        starts = np.arange(len(lab)) * stride
        index.append(np.stack([np.full(len(lab), r), starts], axis=1))
        ys.append(lab.astype(np.int64))
    return WindowBank(padded, np.concatenate(index), np.concatenate(ys), window, extension)


def balanced_rows(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rows drawn with replacement, half from each class (class-balanced sampling)."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if len(pos) == 0 or len(neg) == 0:
        return rng.choice(len(y), size=n, replace=True)
    half = n // 2
    rows = np.concatenate([rng.choice(pos, size=half, replace=True), rng.choice(neg, size=n - half, replace=True)])
    return rng.permutation(rows)


def train_classifier(
    model: nn.Module, recs: Sequence[Recording], window: int, padding: str, cfg: TrainConfig,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train ``model`` (in place) on class-balanced windows of ``recs``; cross-entropy loss.

    ``padding="zero"``: the model sees plain windows (its own zero padding). ``padding="signal"``:
    ``SignalPadded(model, window)`` sees each window extended to the left by real signal and crops
    the extension's features before the head; it shares the model's parameters.
    """
    if padding not in ("zero", "signal"):
        raise ValueError(f"padding must be 'zero' or 'signal', got {padding!r}")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net: nn.Module = model
    extension = 0
    if padding == "signal":
        net = SignalPadded(model, window)
        extension = net.extension
    bank = window_bank(recs, window, cfg.start_stride, extension, cfg.min_overlap)
    steps = max(1, cfg.windows_per_epoch // cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps, pct_start=0.2)
    history = []
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        net.train()
        rows = balanced_rows(bank.y, steps * cfg.batch_size, rng)
        total, correct = 0.0, 0
        for b in range(steps):
            x, y = bank.batch(rows[b * cfg.batch_size : (b + 1) * cfg.batch_size])
            logits = net(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
            correct += int((logits.argmax(-1) == y).sum())
        h = {"epoch": epoch + 1, "loss": total / steps, "balanced_train_acc": correct / (steps * cfg.batch_size),
             "elapsed_s": round(time.perf_counter() - t0, 1)}
        history.append(h)
        log(f"  [{padding}] epoch {epoch + 1}/{cfg.epochs} loss {h['loss']:.4f} acc {h['balanced_train_acc']:.3f} "
            f"{h['elapsed_s']:.0f}s")
    model.eval()
    return {
        "padding": padding,
        "extension": extension,
        "config": dict(cfg.__dict__),
        "candidate_windows": int(len(bank.y)),
        "seizure_window_share": float(bank.y.mean()),
        "history": history,
        "train_time_s": round(time.perf_counter() - t0, 1),
    }


def event_metric(recs: Sequence[Recording], window: int, threshold: float = 0.5) -> Metric:
    """Event-level scores (``score_events``) pooled over ``recs`` for seizure probabilities
    (R, n_w, 1): a window is positive when its probability >= ``threshold``."""

    def metric(prob: Tensor, hop: int) -> dict[str, float]:
        p = prob[..., 0].numpy()
        n_true = n_pred = n_det = n_fa = 0
        hours = 0.0
        tp = fp = fn = tn = 0
        for r, rec in enumerate(recs):
            pred = (p[r] >= threshold).astype(np.int8)
            s = score_events(pred, rec.events, window, hop, rec.fs, rec.duration_s)
            n_true += s["n_true"]
            n_pred += s["n_pred"]
            n_det += s["n_detected"]
            n_fa += s["n_false_alarms"]
            hours += rec.duration_s / 3600
            lab = window_labels(rec.labels, window, hop)[: len(pred)]
            tp += int(((pred == 1) & (lab == 1)).sum())
            fp += int(((pred == 1) & (lab == 0)).sum())
            fn += int(((pred == 0) & (lab == 1)).sum())
            tn += int(((pred == 0) & (lab == 0)).sum())
        sens = n_det / n_true if n_true else math.nan
        prec = (n_pred - n_fa) / n_pred if n_pred else math.nan
        f1 = (2 * prec * sens / (prec + sens)) if n_true and n_pred and (prec + sens) > 0 else 0.0
        return {
            "sensitivity": sens,
            "precision": prec,
            "f1": f1,
            "false_alarms_per_hour": n_fa / hours,
            "n_true": n_true,
            "n_pred": n_pred,
            "n_detected": n_det,
            "n_false_alarms": n_fa,
            "hours": hours,
            "window_sensitivity": tp / (tp + fn) if tp + fn else math.nan,
            "window_specificity": tn / (tn + fp) if tn + fp else math.nan,
        }

    return metric


def stack_recordings(recs: Sequence[Recording]) -> Tensor:
    """(R, C, n) tensor of equally long recordings."""
    n = min(r.x.shape[1] for r in recs)
    return torch.from_numpy(np.stack([r.x[:, :n] for r in recs]).astype(np.float32))


# --------------------------------------------------------------------------- seizure experiment runner
@dataclass
class SeizureSetup:
    """What distinguishes the EEG and the accelerometer experiments."""

    name: str  # "seizure_eeg" / "seizure_acc"
    simulate: Callable[[float, int, int], Recording]  # (duration_s, seed, seizures) -> Recording
    build_model: Callable[[], nn.Module]
    fs: float
    window: int
    hop: int
    paper: dict[str, float]
    full: dict[str, Any]  # train/eval recordings, durations, seizures per recording, TrainConfig kwargs
    quick: dict[str, Any]
    data_note: str = ""
    train_seed_base: int = 10_000
    eval_seed_base: int = 900_000


def seizure_arg_parser(setup: SeizureSetup, doc: str):
    import argparse

    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny data, 1 epoch: a smoke test")
    p.add_argument("--out", type=Path, default=None,
                   help=f"JSON path (.png beside it); default results/{setup.name}[_real].json")
    p.add_argument("--data", choices=("sim", "real"), default="sim",
                   help="sim: simulated recordings; real: recorded data sets (experiments/seizure_real.py)")
    p.add_argument("--root", type=Path, default=None,
                   help="real-data folder (default: THINKONCE_DATA, else ../shared/data)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation and sampling")
    return p


def run_seizure_experiment(setup: SeizureSetup, args: Any, argv: Sequence[str]) -> dict[str, Any]:
    """Train a zero-padding and a signal-padding variant, then compare every scheme on held-out data."""
    import shlex

    setup_threads(1)
    t_start = time.perf_counter()
    args.out = args.out or RESULTS / f"{setup.name}.json"
    plan = setup.quick if args.quick else setup.full
    tr_seeds = range(setup.train_seed_base, setup.train_seed_base + plan["train_recordings"])
    ev_seeds = range(setup.eval_seed_base, setup.eval_seed_base + plan["eval_recordings"])
    t0 = time.perf_counter()
    train = [setup.simulate(plan["train_s"], s, plan["seizures"]) for s in tr_seeds]
    held = [setup.simulate(plan["eval_s"], s, plan["seizures"]) for s in ev_seeds]
    sim_s = time.perf_counter() - t0
    print(f"{setup.name}: simulated {len(train)} training and {len(held)} held-out recordings in {sim_s:.0f}s")
    x_eval = stack_recordings(held)
    metric = event_metric(held, setup.window)
    models: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    for padding in ("zero", "signal"):
        torch.manual_seed(args.seed)
        model = setup.build_model()
        cfg = TrainConfig(seed=args.seed, **plan["train"])
        training = train_classifier(model, train, setup.window, padding, cfg)
        res = compare_schemes(model, setup.window, setup.hop, x_eval, metric, transform=seizure_probability,
                              n_timing_hops=plan["timing_hops"], batched=plan.get("batched"))
        outputs[padding] = res.pop("outputs")
        res["training"] = training
        models[padding] = res
        ex, no = res["schemes"]["exact"], res["schemes"]["normal"]
        print(f"{padding:6s} padding: exact stream NRMSE vs normal {100 * ex['nrmse_vs_normal']:.2f} % "
              f"(stale {100 * res['schemes']['stale']['nrmse_vs_normal']:.2f} %), F1 normal "
              f"{no['metric']['f1']:.3f} / stream {ex['metric']['f1']:.3f}, FA/h {no['metric']['false_alarms_per_hour']:.2f}"
              f" / {ex['metric']['false_alarms_per_hour']:.2f}, MAC cut {ex['mac_cut_vs_normal']:.2f}x, "
              f"time {no['median_us_per_hop']:.0f} -> {ex['median_us_per_hop']:.0f} us/hop"
              + (f" (batch {no['batched']['batch']}: {no['batched']['median_us_per_hop']:.0f} -> "
                 f"{ex['batched']['median_us_per_hop']:.0f} us/hop)" if "batched" in no else ""))
    out = {
        "experiment": setup.name,
        "command": "python " + shlex.join([f"experiments/{setup.name}.py", *argv]),
        "quick": bool(args.quick),
        "task_metric": "event-level F1 (score_events, window positive when seizure probability >= 0.5), "
                       "with sensitivity and false alarms per hour",
        "data": {
            "note": setup.data_note,
            "fs": setup.fs,
            "window": setup.window,
            "hop": setup.hop,
            "train_seeds": [tr_seeds.start, tr_seeds.stop],
            "eval_seeds": [ev_seeds.start, ev_seeds.stop],
            "train_hours": len(train) * plan["train_s"] / 3600,
            "eval_hours": len(held) * plan["eval_s"] / 3600,
            "seizures_per_recording": plan["seizures"],
            "train_events": sum(len(r.events) for r in train),
            "eval_events": sum(len(r.events) for r in held),
            "simulate_s": round(sim_s, 1),
        },
        "paper": setup.paper,
        "models": models,
        "environment": environment(),
        "runtime_s": round(time.perf_counter() - t_start, 1),
    }
    write_json(args.out, out)
    plot_seizure(setup, models, outputs, held, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')} in {out['runtime_s']:.0f}s")
    return out


def plot_seizure(setup: SeizureSetup, models: dict, outputs: dict, held: Sequence[Recording], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    W, H, fs = setup.window, setup.hop, setup.fs
    n_w = outputs["zero"]["normal"]["y"].shape[1]
    t = (np.arange(n_w) * H + W) / fs  # window end (s)
    # show the seizure the zero-padding model's normal inference sees best (a typical detection)
    best, r_i, ev = -1.0, 0, None
    for i, rec in enumerate(held):
        p = outputs["zero"]["normal"]["y"][i, :, 0].numpy()
        for on, off in rec.events:
            inside = (t > on) & (t - W / fs < off)
            score = float(p[inside].mean()) if inside.any() else -1.0
            if score > best:
                best, r_i, ev = score, i, (on, off)
    rec = held[r_i]
    if ev is not None:
        on, off = ev
        lo, hi = max(0.0, on - 2 * (off - on) - 60), off + 2 * (off - on) + 60
    else:
        lo, hi = 0.0, float(t[-1])
    sel = (t >= lo) & (t <= hi)
    for ax, padding in zip(axes[0], ("zero", "signal")):
        o = outputs[padding]
        for on, off in rec.events:
            ax.axvspan(on, off, color="0.85", label="true seizure" if on == rec.events[0][0] else None)
        for name, style in (("normal", dict(color="C0", lw=1.8)), ("exact", dict(color="C3", lw=1.2, ls="--")),
                            ("stale", dict(color="C1", lw=1.0, ls=":")),
                            ("approximate", dict(color="C2", lw=1.0, alpha=0.8))):
            ax.plot(t[sel], o[name]["y"][r_i, sel, 0].numpy(), label=name, **style)
        ax.set_xlim(lo, hi)
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(f"{padding}-padding-trained model, held-out seed {rec.seed}")
        ax.set_xlabel("time (s, window end)")
        ax.set_ylabel("seizure probability")
        ax.legend(fontsize=8, loc="upper right")
    names = [k for k in SCHEMES if k in models["zero"]["schemes"] and k != "normal"]
    w = 0.38
    ax = axes[1, 0]
    for j, padding in enumerate(("zero", "signal")):
        vals = [100 * models[padding]["schemes"][k]["nrmse_vs_normal"] for k in names]
        bars = ax.bar(np.arange(len(names)) + (j - 0.5) * w, vals, w, label=f"{padding}-padding-trained")
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.axhline(setup.paper["nrmse_pct"], color="k", ls=":", label=f"paper ({setup.paper['nrmse_pct']} %)")
    top = max([setup.paper["nrmse_pct"]] + [100 * models[p]["schemes"][k]["nrmse_vs_normal"]
                                            for p in models for k in names])
    ax.set_ylim(0, top * 3)
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels([f"{k}\n(hop {models['zero']['schemes'][k]['hop']})" for k in names])
    ax.set_ylabel("NRMSE of seizure probability vs normal (%)")
    ax.set_yscale("symlog", linthresh=1)
    ax.legend(fontsize=8)
    ax.set_title("Deviation from normal windowed inference")
    ax = axes[1, 1]
    allnames = ["normal", *names]
    for j, padding in enumerate(("zero", "signal")):
        vals = [models[padding]["schemes"][k]["metric"]["f1"] for k in allnames]
        bars = ax.bar(np.arange(len(allnames)) + (j - 0.5) * w, vals, w, label=f"{padding}-padding-trained")
        fa = [models[padding]["schemes"][k]["metric"]["false_alarms_per_hour"] for k in allnames]
        ax.bar_label(bars, labels=[f"{v:.2f}\n{f:.1f}/h" for v, f in zip(vals, fa)], fontsize=7)
    ax.set_xticks(np.arange(len(allnames)))
    ax.set_xticklabels(allnames)
    ax.set_ylim(0, 1.25)
    ax.set_ylabel("event F1 (label: F1, false alarms / h)")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Task metric on held-out recordings")
    fig.suptitle(f"{setup.name}: window {W}, hop {H} at {fs:g} Hz")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
