"""The main job: stream the shipped PPG heart-rate network over a simulated (or a real TROIKA) recording.

Normal windowed inference recomputes every 8 s window (256 samples at 32 Hz) every 2 s (64 samples);
the stream computes only what each hop adds. The demo measures both side by side on the same
recording: heart rate from each, ground truth, deviation (NRMSE), MACs per hop and time per hop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .measure.macs import count_macs
from .stream.stream import stream as make_stream
from .verify import deviation

WINDOW, HOP, FS = 256, 64, 32.0


@dataclass
class DemoResult:
    t_s: np.ndarray  # end time of each window
    hr_true: np.ndarray
    hr_normal: np.ndarray
    hr_stream: np.ndarray
    nrmse: float
    max_abs_bpm: float
    mae_normal: float
    mae_stream: float
    macs_normal: int
    macs_stream: int
    us_normal: float  # median time per hop
    us_stream: float
    state_bytes: int
    padding: str  # how the shipped model was trained: "signal" (StreamiNNC's remedy) or "zero"
    backend: str  # the stream's step backend
    nrmse_zero_padded_model: float | None = None  # the same comparison for the zero-padding-trained model
    source: str = ""  # what was streamed (simulated seed, or the real recording)


def stream_vs_normal_nrmse(model: torch.nn.Module, x: torch.Tensor) -> float:
    """NRMSE of a window stream of ``model`` against its normal windowed inference on ``x``."""
    from .verify import verify

    return verify(model, make_stream(model, window=WINDOW, hop=HOP), x[0]).nrmse


def run_demo(duration_s: float = 300.0, seed: int = 7, progress=None, padding: str = "signal",
             backend: str = "compiled", data: str = "sim", recording: str | None = None,
             root: str | Path | None = None) -> DemoResult:
    """Stream the pretrained PPG network over ``duration_s`` of PPG; ``progress(i, n)`` ticks.

    ``data="sim"`` (default): simulated PPG (``seed``) through ``ppg_hr(pretrained=True, padding=...)``.
    ``data="troika"``: a real recording of the TROIKA test set (``recording``, e.g. ``"TEST_S04_T02"``;
    default the first) read by :func:`thinkonce.data.load_troika` from ``root`` (default
    ``THINKONCE_DATA`` or ``../shared/data``), PPG + ACC through the real-data model
    ``ppg_hr(..., trained_on="real")``, scored against the organisers' ECG-derived reference; the
    recording is cut to ``duration_s`` when longer.

    ``padding="signal"`` uses the model trained with signal padding (its stream equals its training-time
    inference); the zero-padding-trained model is also compared, for contrast. ``backend`` runs the
    stream's step (see :func:`thinkonce.stream`); normal inference is always the eager model, as a user
    runs it.
    """
    from .data import load_troika, simulate_ppg, window_hr
    from .models import ppg_hr

    min_s = (WINDOW + 2 * HOP) / FS
    if not duration_s >= min_s:
        raise ValueError(
            f"the recording must last at least {min_s:.0f} s (three windows of {WINDOW} samples at {FS:.0f} Hz, "
            f"hop {HOP}); got {duration_s:g} s. Minutes make the deviation figures meaningful."
        )
    if data not in ("sim", "troika"):
        raise ValueError(f"data must be 'sim' or 'troika', got {data!r}")
    torch.set_num_threads(1)  # per-stream latency on one core, as on a small device
    trained_on = "real" if data == "troika" else "sim"
    if data == "sim":
        rec = simulate_ppg(duration_s, fs=FS, seed=seed)
        x = torch.from_numpy(np.ascontiguousarray(rec.ppg)).unsqueeze(0)  # (1, 1, n)
        truth = window_hr(rec.hr_bpm, WINDOW, HOP)
        source = f"simulated recording (seed {seed})"
    else:
        recs = load_troika("test", root=root, fs=FS)
        names = [r.rec_id for r in recs]
        if recording is not None and recording not in names:
            raise ValueError(f"recording {recording!r} is not in the TROIKA test set; choose one of {names}")
        rec = recs[names.index(recording)] if recording is not None else recs[0]
        n = min(rec.ppg.shape[1], int(round(duration_s * FS)))
        x = torch.from_numpy(np.ascontiguousarray(rec.model_input("ppg+acc")[:, :n])).unsqueeze(0)  # (1, 4, n)
        truth = rec.window_bpm
        source = f"TROIKA test recording {rec.rec_id} ({rec.activity})"
    model = ppg_hr(pretrained=True, padding=padding, trained_on=trained_on).eval()
    res = _stream_vs_normal(model, x, truth, progress, padding, backend)
    res.source = source
    if padding != "zero":
        res.nrmse_zero_padded_model = stream_vs_normal_nrmse(
            ppg_hr(pretrained=True, padding="zero", trained_on=trained_on).eval(), x)
    return res


def _stream_vs_normal(model: torch.nn.Module, x: torch.Tensor, truth: np.ndarray, progress, padding: str,
                      backend: str) -> DemoResult:
    """Hop by hop: one stream step and one normal windowed inference of the same window, timed."""
    from .stream.state import state_nbytes

    n = x.shape[-1]
    ends = list(range(WINDOW, n + 1, HOP))
    s = make_stream(model, window=WINDOW, hop=HOP, backend=backend)
    state = s.init_state(1)
    # the first window fills the stream; afterwards every hop emits one window
    y, state = s.step(x[..., : WINDOW - HOP], state)
    hr_stream, hr_normal, t_stream, t_normal = [], [], [], []
    macs_stream = count_macs(s, x[..., WINDOW - HOP : WINDOW], state)
    macs_normal = count_macs(model, x[..., :WINDOW])
    with torch.no_grad():
        for i, e in enumerate(ends):
            chunk = x[..., e - HOP : e]
            t0 = time.perf_counter()
            y, state = s.step(chunk, state)
            t1 = time.perf_counter()
            yn = model(x[..., e - WINDOW : e])
            t2 = time.perf_counter()
            hr_stream.append(float(y[0, 0, 0]))
            hr_normal.append(float(yn[0, 0]))
            t_stream.append(t1 - t0)
            t_normal.append(t2 - t1)
            if progress is not None:
                progress(i + 1, len(ends))
    k = min(len(ends), len(truth))  # a real reference may stop a window or two before the signal does
    hr_true = np.asarray(truth[:k])
    hs, hn = np.asarray(hr_stream)[:k], np.asarray(hr_normal)[:k]
    rep = deviation(torch.from_numpy(hs)[None, :, None], torch.from_numpy(hn)[None, :, None], "window", "normal")
    return DemoResult(
        t_s=np.asarray(ends[:k]) / FS,
        hr_true=hr_true,
        hr_normal=hn,
        hr_stream=hs,
        nrmse=rep.nrmse,
        max_abs_bpm=rep.max_abs_error,
        mae_normal=float(np.mean(np.abs(hn - hr_true))),
        mae_stream=float(np.mean(np.abs(hs - hr_true))),
        macs_normal=macs_normal,
        macs_stream=macs_stream,
        us_normal=1e6 * float(np.median(t_normal)),
        us_stream=1e6 * float(np.median(t_stream)),
        state_bytes=state_nbytes(state),
        padding=padding,
        backend=backend,
    )


def plot_demo(res: DemoResult, path: str | Path) -> Path:
    """Heart rate over time: ground truth, normal windowed inference and the stream."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot(res.t_s, res.hr_true, color="black", lw=2, label="ground truth" + (f" ({res.source})" if res.source else ""))
    ax.plot(res.t_s, res.hr_normal, color="tab:blue", lw=1.2, label=f"normal windowed (MAE {res.mae_normal:.2f} bpm)")
    ax.plot(res.t_s, res.hr_stream, color="tab:orange", lw=1.2, ls="--", label=f"thinkonce stream (MAE {res.mae_stream:.2f} bpm)")
    ax.set_ylabel("heart rate (bpm)")
    ax.set_title(
        f"PPG heart rate ({res.padding}-padding model), window {WINDOW} / hop {HOP} at {FS:.0f} Hz: "
        f"{res.macs_normal / res.macs_stream:.2f}x fewer MACs per hop, NRMSE {100 * res.nrmse:.2f}%"
    )
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    ax2.plot(res.t_s, res.hr_stream - res.hr_normal, color="tab:red", lw=1)
    ax2.set_ylabel("stream - normal (bpm)")
    ax2.set_xlabel("time (s)")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
