"""The EEG and accelerometer seizure experiments on real recordings (``--data real`` of
experiments/seizure_eeg.py and experiments/seizure_acc.py run this).

EEG (``python experiments/seizure_eeg.py --data real [--quick]``): the paper's network
(``eeg_seizure(in_channels=1)``, window 1024 / hop 256 at 256 Hz) is trained on Bonn segments resampled
from 173.61 to 256 Hz, set E (ictal) against A-D, split by set file: segments 1-80 of every set train,
81-100 test. Inputs are divided by one constant, the median std of the training non-seizure segments.
Then (a) every scheme of experiments/common.py runs over the 100 Bonn test segments (window-level
classification) and (b) the continuous Malow recording (18 usable scalp channels, 100 -> 256 Hz, each
channel divided by its std over the first 120 s, a causal calibration) is streamed channel by channel
through the same network; the seizure probability averaged over channels is compared with the reported
onset (350 s). No Malow sample is used for training or thresholds.

ACC (``python experiments/seizure_acc.py --data real [--quick]``): the ACC reference network
(``acc_seizure``: 6 conv blocks, no pooling) scaled to the 16 Hz UEA Epilepsy series: window 128 (8 s),
hop 16 (1 s); x, y, z and magnitude. EPILEPSY (seizure mimicking) against walking / running / sawing;
trained on the 3 training participants, evaluated on the 3 test participants (``x_test``).

Both train a zero-padding and a signal-padding variant (``common.train_classifier``) for a fixed
number of epochs (no selection on test data). Task metrics: window-level balanced accuracy and F1 of
the seizure class (probability >= 0.5), and series-level accuracy (mean probability per segment).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import shlex
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

import common

from thinkonce.data import load_bonn, load_malow, load_uea_epilepsy
from thinkonce.models import acc_seizure, eeg_seizure

EEG_FS, EEG_WINDOW, EEG_HOP = 256.0, 1024, 256
ACC_FS, ACC_WINDOW, ACC_HOP = 16.0, 128, 16
BONN_TRAIN_MAX_SEGMENT = 80  # segments 1-80 of each set train, 81-100 test
MALOW_CALIBRATION_S = 120.0


def classification_metric(labels: Sequence[int]) -> common.Metric:
    """Window-level balanced accuracy / F1 (seizure class) and series-level accuracy, pooled."""
    lab = np.asarray(labels, dtype=bool)

    def metric(prob: torch.Tensor, hop: int) -> dict[str, float]:
        p = prob[..., 0].numpy()  # (R, n_w)
        pred = p >= 0.5
        truth = np.broadcast_to(lab[:, None], pred.shape)
        tp, fp = int((pred & truth).sum()), int((pred & ~truth).sum())
        fn, tn = int((~pred & truth).sum()), int((~pred & ~truth).sum())
        sens, spec = tp / max(tp + fn, 1), tn / max(tn + fp, 1)
        f1 = 2 * tp / max(2 * tp + fp + fn, 1)
        series = (p.mean(axis=1) >= 0.5) == lab
        return {"balanced_accuracy": (sens + spec) / 2, "sensitivity": sens, "specificity": spec, "f1": f1,
                "accuracy": (tp + tn) / max(pred.size, 1), "series_accuracy": float(series.mean()),
                "n_windows": int(pred.size)}

    return metric


def train_both(build, train: list[common.Recording], window: int, cfg: dict, seed: int) -> dict[str, Any]:
    out = {}
    for padding in ("zero", "signal"):
        torch.manual_seed(seed)
        model = build()
        info = common.train_classifier(model, train, window, padding, common.TrainConfig(seed=seed, **cfg))
        out[padding] = (model, info)
    return out


def _summary(name: str, padding: str, res: dict) -> None:
    ex, no = res["schemes"]["exact"], res["schemes"]["normal"]
    print(f"{name} {padding:6s}: stream NRMSE vs normal {100 * ex['nrmse_vs_normal']:.2f} %, balanced acc normal "
          f"{no['metric']['balanced_accuracy']:.3f} / stream {ex['metric']['balanced_accuracy']:.3f}, "
          f"MAC cut {ex['mac_cut_vs_normal']:.2f}x")


# --------------------------------------------------------------------------- EEG
def bonn_recordings(root, quick: bool) -> tuple[list[common.Recording], list[common.Recording], float]:
    segs = load_bonn(root=root, fs=EEG_FS)
    train = [s for s in segs if s.segment <= BONN_TRAIN_MAX_SEGMENT]
    test = [s for s in segs if s.segment > BONN_TRAIN_MAX_SEGMENT]
    if quick:
        train = [s for s in train if s.segment <= 4]
        test = [s for s in test if s.segment == BONN_TRAIN_MAX_SEGMENT + 1]
    scale = float(np.median([s.eeg.std() for s in train if not s.seizure]))

    def rec(s, i):
        return common.Recording(x=s.eeg / scale, labels=s.labels, events=list(s.events), fs=s.fs, seed=i)

    return [rec(s, i) for i, s in enumerate(train)], [rec(s, i) for i, s in enumerate(test)], scale


def malow_metric(onset_s: float, uncertain: tuple[float, float]) -> common.Metric:
    """Channel-mean seizure probability over time vs the reported onset."""

    def metric(prob: torch.Tensor, hop: int) -> dict[str, Any]:
        p = prob[..., 0].numpy().mean(axis=0)  # mean over channels, per window
        t_end = (np.arange(len(p)) * hop + EEG_WINDOW) / EEG_FS
        pre, post = t_end <= uncertain[0], (t_end - EEG_WINDOW / EEG_FS) >= uncertain[1]
        above = p >= 0.5
        run3 = np.convolve(above.astype(int), np.ones(3, int), "valid") == 3  # 3 windows in a row
        idx = np.flatnonzero(run3)
        alarms = t_end[idx + 2] if idx.size else np.array([])
        first_after = alarms[alarms > onset_s]
        return {"mean_prob_pre": float(p[pre].mean()), "mean_prob_post": float(p[post].mean()),
                "share_above_half_pre": float(above[pre].mean()), "share_above_half_post": float(above[post].mean()),
                "first_alarm_s": float(alarms[0]) if alarms.size else None,
                "first_alarm_after_onset_s": float(first_after[0]) if first_after.size else None,
                "alarm_delay_s": float(first_after[0] - onset_s) if first_after.size else None}

    return metric


def run_eeg(args, argv: list[str]) -> dict[str, Any]:
    common.setup_threads(1)
    t0 = time.perf_counter()
    train, test, scale = bonn_recordings(args.root, args.quick)
    malow = load_malow(root=args.root, fs=EEG_FS)
    n_cal = int(MALOW_CALIBRATION_S * EEG_FS)
    mx = malow.eeg / malow.eeg[:, :n_cal].std(axis=1, keepdims=True)
    if args.quick:
        mx = mx[12:13, int(320 * EEG_FS) : int(370 * EEG_FS)]  # T3, 50 s around the onset
        onset, unc = 30.0, (15.0, 40.0)
    else:
        onset, unc = malow.onset_s, malow.uncertain_s
    x_malow = torch.from_numpy(np.ascontiguousarray(mx[:, None, :], dtype=np.float32))  # channels as streams
    cfg = (dict(epochs=1, windows_per_epoch=32, batch_size=16, lr=2e-3, start_stride=256) if args.quick else
           dict(epochs=5, windows_per_epoch=2048, batch_size=32, lr=2e-3, start_stride=64))
    trained = train_both(lambda: eeg_seizure(in_channels=1), train, EEG_WINDOW, cfg, args.seed)
    x_test = common.stack_recordings(test)
    models: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    for padding, (model, info) in trained.items():
        bonn = common.compare_schemes(model, EEG_WINDOW, EEG_HOP, x_test, classification_metric(
            [int(r.labels.any()) for r in test]), transform=common.seizure_probability,
            n_timing_hops=3 if args.quick else 100, keep_outputs=False)
        _summary("bonn", padding, bonn)
        mal = common.compare_schemes(model, EEG_WINDOW, EEG_HOP, x_malow, malow_metric(onset, unc),
                                     transform=common.seizure_probability, n_timing_hops=3 if args.quick else 100)
        outputs[padding] = mal.pop("outputs")
        ex, no = mal["schemes"]["exact"], mal["schemes"]["normal"]
        print(f"malow {padding:6s}: stream NRMSE vs normal {100 * ex['nrmse_vs_normal']:.2f} %, mean p pre/post "
              f"normal {no['metric']['mean_prob_pre']:.2f}/{no['metric']['mean_prob_post']:.2f}, stream "
              f"{ex['metric']['mean_prob_pre']:.2f}/{ex['metric']['mean_prob_post']:.2f}, first alarm after onset "
              f"{no['metric']['first_alarm_after_onset_s']} / {ex['metric']['first_alarm_after_onset_s']} s")
        models[padding] = {"bonn_test": bonn, "malow": mal, "training": info}
    out = {
        "experiment": "seizure_eeg_real",
        "command": "python " + shlex.join(["experiments/seizure_eeg.py", *argv]),
        "quick": bool(args.quick),
        "task_metric": "Bonn test: window balanced accuracy / F1 (p >= 0.5), segment accuracy; Malow: channel-mean "
                       "seizure probability before / after the onset and the first alarm (3 windows >= 0.5)",
        "data": {
            "train": f"Bonn sets A-E segments 1-{BONN_TRAIN_MAX_SEGMENT} ({len(train)}), E = seizure, 173.61 -> 256 Hz",
            "test": f"Bonn segments {BONN_TRAIN_MAX_SEGMENT + 1}-100 ({len(test)})",
            "scale": f"inputs / {scale:.2f} (median std of the training non-seizure segments, A/D units)",
            "malow": f"{x_malow.shape[0]} channels {list(malow.channels[: x_malow.shape[0]])}, 100 -> 256 Hz, each / its "
                     f"std over the first {MALOW_CALIBRATION_S:.0f} s; reported onset {onset} s, uncertain {unc}",
            "fs": EEG_FS, "window": EEG_WINDOW, "hop": EEG_HOP,
        },
        "paper": {"nrmse_pct": 3.32, "mac_cut": 3.9},
        "models": models,
        "environment": common.environment(),
        "runtime_s": round(time.perf_counter() - t0, 1),
    }
    common.write_json(args.out, out)
    plot_malow(outputs, onset, unc, args.out.with_suffix(".png"), models)
    print(f"wrote {args.out} and {args.out.with_suffix('.png')} in {out['runtime_s']:.0f}s")
    return out


def plot_malow(outputs: dict, onset: float, unc: tuple[float, float], path: Path, models: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(12, 6.5), sharex=True)
    for ax, padding in zip(axes, ("zero", "signal"), strict=True):
        o = outputs[padding]
        n = o["normal"]["y"].shape[1]
        t = (np.arange(n) * EEG_HOP + EEG_WINDOW) / EEG_FS
        ax.axvspan(*unc, color="0.9", label="onset uncertain")
        ax.axvline(onset, color="k", ls="--", lw=1.2, label=f"reported onset ({onset:g} s)")
        ax.plot(t, o["normal"]["y"][..., 0].mean(0).numpy(), color="C0", lw=1.5, label="normal windowed inference")
        ax.plot(t, o["exact"]["y"][..., 0].mean(0).numpy(), color="C3", lw=1.0, ls="--", label="stream")
        nr = 100 * models[padding]["malow"]["schemes"]["exact"]["nrmse_vs_normal"]
        ax.set_title(f"Malow EEG streamed through the Bonn-trained {padding}-padding network "
                     f"(mean over channels; stream NRMSE vs normal {nr:.2f} %)", fontsize=9)
        ax.set_ylabel("seizure probability")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7, loc="upper left")
    axes[-1].set_xlabel("time (s, window end)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------- ACC
def uea_recordings(root, quick: bool) -> tuple[list[common.Recording], list[common.Recording]]:
    def recs(split):
        out = [common.Recording(x=s.acc, labels=s.labels, events=list(s.events), fs=s.fs, seed=i)
               for i, s in enumerate(load_uea_epilepsy(split, root=root))]
        return out[::10] if quick else out

    return recs("train"), recs("test")


def run_acc(args, argv: list[str]) -> dict[str, Any]:
    common.setup_threads(1)
    t0 = time.perf_counter()
    train, test = uea_recordings(args.root, args.quick)
    cfg = (dict(epochs=1, windows_per_epoch=64, batch_size=16, lr=2e-3, start_stride=8) if args.quick else
           dict(epochs=12, windows_per_epoch=1024, batch_size=32, lr=2e-3, start_stride=2))
    build = lambda: acc_seizure(window=ACC_WINDOW, fs=ACC_FS, hop=ACC_HOP)  # noqa: E731
    trained = train_both(build, train, ACC_WINDOW, cfg, args.seed)
    x_test = common.stack_recordings(test)
    models: dict[str, Any] = {}
    for padding, (model, info) in trained.items():
        res = common.compare_schemes(model, ACC_WINDOW, ACC_HOP, x_test,
                                     classification_metric([int(r.labels.any()) for r in test]),
                                     transform=common.seizure_probability, n_timing_hops=3 if args.quick else 60,
                                     keep_outputs=False)
        _summary("uea", padding, res)
        res["training"] = info
        models[padding] = res
    out = {
        "experiment": "seizure_acc_real",
        "command": "python " + shlex.join(["experiments/seizure_acc.py", *argv]),
        "quick": bool(args.quick),
        "task_metric": "window balanced accuracy / F1 of EPILEPSY (p >= 0.5), series accuracy (mean p)",
        "data": {
            "dataset": "UEA/UCR Epilepsy (Villar et al. 2016; Bagnall et al. 2018), wrist 3-axis ACC, 16 Hz, 206 samples",
            "train": f"x_train, {len(train)} series (3 participants)",
            "test": f"x_test, {len(test)} series (3 other participants)",
            "channels": "x, y, z, magnitude (file units)",
            "fs": ACC_FS, "window": ACC_WINDOW, "hop": ACC_HOP,
            "scaling": "the paper's 960 / 160 at 32 Hz cannot fit 13 s series: window 128 (8 s), hop 16 at 16 Hz",
        },
        "paper": {"nrmse_pct": 3.55, "mac_cut": 6.0},
        "models": models,
        "environment": common.environment(),
        "runtime_s": round(time.perf_counter() - t0, 1),
    }
    common.write_json(args.out, out)
    print(f"wrote {args.out} in {out['runtime_s']:.0f}s")
    return out
