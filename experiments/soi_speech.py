"""Scattered Online Inference on two-speaker separation: STMC U-Net vs its SOI variants (issue 9, item 5).

    python experiments/soi_speech.py [--quick] [--seeds 0 1] [--steps 200] [--max-priority N] [--no-costs]
                                     [--only NAME ...] [--out results/soi_speech.json]
    python experiments/soi_speech.py --merge results/soi_speech_seed0.json ... --out results/soi_speech.json
    python experiments/soi_speech.py --fp-latency results/soi_fp_latency.json

Every configuration is the causal U-Net of ``soi_unet.py`` trained from scratch on the same stream of
random training mixtures (two different training speakers, gains +-5 dB, 8 kHz, 1.5 s), then:

* SI-SNRi (dB, permutation-invariant, torchmetrics) on fixed evaluation mixtures of speakers never used in
  training (held-out FSDD speakers, VoxForge sessions, synthesised voices, and the real asterisk prompt
  speakers), overall and on the real-speech-only subsets;
* converted with ``thinkonce.stream`` (continuous mode, one STFT frame per step; conversion self-checks
  the stream against the model) and checked again here on an evaluation mixture (max abs deviation);
* MACs per step from ``thinkonce.count_macs`` over one stride period of steps (mean and peak), MAC/s at the
  frame rate (62.5 frames/s), the share cut against the STMC stream;
* FP: the deep path's work is not on the critical path (it can run ahead in idle time); its critical
  MACs per step are the step's MACs minus those of the deep sub-network's own stream (counted the same way);
* time per step (mean, p99, peak phase) measured side by side with the STMC stream in this process,
  one thread, steps interleaved (measured under load on shared cores: only ratios mean anything).

The resampling baselines (paper): the STMC network trained at 4 kHz (training audio resampled by
polyphase filtering), evaluated on 8 kHz mixtures down- and up-sampled by ``linear`` (np.interp),
``polyphase`` (scipy.signal.resample_poly, its default Kaiser beta 5 filter) or ``kaiser`` (resample_poly
with a sharp Kaiser beta 14.77 window, as resampy's ``kaiser_best``). Half the frames per second: half the MACs/s.

The STFT (256-point sqrt-Hann, hop 128) and its inverse are the same for every configuration and are
not counted in the MACs (they cost about 2 x 256 log2 256 per frame either way).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from scipy.signal import resample_poly

sys.path.insert(0, str(Path(__file__).resolve().parent))
import soi_data  # noqa: E402
from soi_unet import SepUNet, describe  # noqa: E402

import thinkonce  # noqa: E402
from thinkonce import count_macs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
N_FFT, HOP = 256, 128
PAPER = {"stmc_si_snri": 7.69, "pp_cut": 64.4, "pp_loss": 9.8, "fp_cut": 41.9, "fp_loss": 7.7, "fp_time_cut": 28.7}


@dataclass
class Config:
    name: str
    scc: tuple[int, ...] = ()
    mode: str = "pp"
    fill: str = "duplicate"
    rate: int = 8000  # 4000: the resampling baseline (STMC net at half rate)
    priority: int = 0  # sweep order (lower first)


def sweep(levels: int = 4) -> list[Config]:
    """Every configuration of the study, in priority order (the sweep runs as far as its time allows)."""
    c = [Config("STMC", priority=0)]
    c += [Config(describe(pq, "pp", "duplicate"), pq, "pp", priority=1) for pq in ((0, 2), (0, 1), (1, 3))]
    c += [Config(describe((p,), "pp", "duplicate"), (p,), "pp", priority=1) for p in range(levels + 1)]
    c += [Config(describe(pq, "fp", "duplicate"), pq, "fp", priority=2) for pq in ((0, 2), (1,), (3,))]
    c += [Config("STMC @ 4 kHz (resampled)", rate=4000, priority=2)]
    c += [Config(describe((1,), "pp", f), (1,), "pp", f, priority=3) for f in ("tconv", "hybrid", "linear")]
    c += [Config(describe((p,), "fp", "duplicate"), (p,), "fp", priority=4) for p in (0, 2, 4)]
    c += [Config(describe((1,), "pp", f), (1,), "pp", f, priority=4) for f in ("nearest", "cubic")]
    c += [Config(describe((0, 2), "pp", "hybrid"), (0, 2), "pp", "hybrid", priority=4)]
    c += [Config(describe((1, 2), "pp", "duplicate"), (1, 2), "pp", priority=4)]
    return sorted(c, key=lambda x: x.priority)


# --------------------------------------------------------------------------- signal <-> frames
def _window() -> torch.Tensor:
    return torch.hann_window(N_FFT, periodic=True).sqrt()


def stft(x: torch.Tensor) -> torch.Tensor:
    return torch.stft(x, N_FFT, HOP, window=_window(), center=True, pad_mode="constant", return_complex=True)


def features(spec: torch.Tensor) -> torch.Tensor:
    return torch.log(spec.abs() + 1e-3)


def separate(model: SepUNet, mix: torch.Tensor) -> torch.Tensor:
    """(B, n) -> (B, 2, n): the model's masks on the mixture's STFT; frames padded on the right to the
    model's period (causal: padding changes no earlier output), the interpolation delay undone offline."""
    spec = stft(mix)
    T = spec.shape[-1]
    feats = features(spec)
    pad = (-T - model.delay) % model.period + model.delay
    masks = model(nn.functional.pad(feats, (0, pad)))[..., model.delay: model.delay + T]
    F_ = spec.shape[1]
    est = torch.stack([masks[:, :F_] * spec, masks[:, F_:] * spec], 1)
    B = est.shape[0]
    wav = torch.istft(est.reshape(B * 2, F_, T), N_FFT, HOP, window=_window(), center=True, length=mix.shape[-1])
    return wav.reshape(B, 2, -1)


def neg_pit_si_snr(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Training loss: minus the permutation-invariant SI-SNR of two sources (mean over the batch)."""
    def si(e: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        e, r = e - e.mean(-1, keepdim=True), r - r.mean(-1, keepdim=True)
        p = (e * r).sum(-1, keepdim=True) / ((r * r).sum(-1, keepdim=True) + 1e-8) * r
        return 10 * torch.log10((p * p).sum(-1) / (((e - p) ** 2).sum(-1) + 1e-8) + 1e-8)
    a = (si(est[:, 0], ref[:, 0]) + si(est[:, 1], ref[:, 1])) / 2
    b = (si(est[:, 0], ref[:, 1]) + si(est[:, 1], ref[:, 0])) / 2
    return -torch.maximum(a, b).mean()


def si_snri(est: np.ndarray, src: np.ndarray, mix: np.ndarray) -> np.ndarray:
    """Per-mixture SI-SNR improvement (dB), permutation-invariant, torchmetrics."""
    from torchmetrics.functional.audio import permutation_invariant_training, scale_invariant_signal_noise_ratio

    e, s, m = (torch.as_tensor(v, dtype=torch.float64) for v in (est, src, mix))
    best, _ = permutation_invariant_training(e, s, scale_invariant_signal_noise_ratio, mode="speaker-wise",
                                             eval_func="max")
    base = scale_invariant_signal_noise_ratio(m[:, None].expand_as(s), s).mean(1)
    return (best - base).numpy()


# --------------------------------------------------------------------------- resampling baselines
KAISER_BEST = ("kaiser", 14.769656459379492)


def resample(x: np.ndarray, up: int, down: int, method: str) -> np.ndarray:
    if method == "linear":
        n_out = x.shape[-1] * up // down
        t = np.arange(n_out) * down / up
        return np.stack([np.interp(t, np.arange(x.shape[-1]), r) for r in x.reshape(-1, x.shape[-1])]).reshape(
            *x.shape[:-1], n_out).astype(np.float32)
    if method == "polyphase":
        return resample_poly(x, up, down, axis=-1).astype(np.float32)
    if method == "kaiser":
        return resample_poly(x, up, down, axis=-1, window=KAISER_BEST).astype(np.float32)
    raise ValueError(f"resampling method {method!r} unknown: linear, polyphase or kaiser")


RESAMPLERS = ("linear", "polyphase", "kaiser")


# --------------------------------------------------------------------------- training
def train(cfg: Config, speakers: dict[str, np.ndarray], steps: int, seed: int, batch: int = 4,
          seconds: float = 1.0, progress: Any = None, task: Any = None) -> SepUNet:
    torch.manual_seed(seed)
    model = SepUNet(scc=cfg.scc, mode=cfg.mode, fill=cfg.fill)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    n = int(seconds * 8000)
    sampler = soi_data.MixtureSampler(speakers, n, seed)
    for it in range(steps):
        mix, src = sampler(batch)
        if cfg.rate != 8000:
            mix, src = resample(mix, 1, 2, "polyphase"), resample(src, 1, 2, "polyphase")
        est = separate(model, torch.from_numpy(mix))
        loss = neg_pit_si_snr(est, torch.from_numpy(src))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        if progress is not None:
            progress.update(task, advance=1, description=f"{cfg.name} seed {seed} loss {loss.item():.2f}")
    return model.eval()


@torch.no_grad()
def evaluate(model: SepUNet, cfg: Config, evalset: dict[str, tuple[np.ndarray, np.ndarray]],
             method: str | None = None) -> dict[str, float]:
    out = {}
    for name, (mix, src) in evalset.items():
        m = mix
        if cfg.rate != 8000:
            m = resample(mix, 1, 2, method or "polyphase")
        est = np.concatenate([separate(model, torch.from_numpy(m[i:i + 16])).numpy() for i in range(0, len(m), 16)])
        if cfg.rate != 8000:
            est = resample(est, 2, 1, method or "polyphase")[..., : mix.shape[-1]]
            est = np.pad(est, [(0, 0), (0, 0), (0, mix.shape[-1] - est.shape[-1])])
        v = si_snri(est, src, mix)
        out[name] = float(v.mean())
    return out


# --------------------------------------------------------------------------- streams: MACs and time
def deep_module(model: SepUNet) -> nn.Module | None:
    """The path below the first S-CC as a module of its own (its skip inputs included), or None."""
    if not model.scc:
        return None
    p = model.scc[0]

    class Deep(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, h: torch.Tensor) -> torch.Tensor:
            m = self.m
            hs = []
            for conv in m.e[p:]:
                h = torch.relu(conv(m._pad(h)))
                hs.append(h)
            g = torch.relu(m.b(m._pad(h)))
            L = len(m.channels)
            for i in reversed(range(p, L)):
                if str(i) in m.fills:
                    g = m.fills[str(i)](g)
                g = torch.relu(m.d[i](m._pad(torch.cat([g, hs[i - p]], 1))))
            return g

    return Deep().eval()


def step_macs(s: thinkonce.Stream, frames: torch.Tensor, period: int) -> list[int]:
    """MACs of each step over one stride period in steady state (after ``frames`` minus a period)."""
    st = s.init_state(1)
    T = frames.shape[-1]
    macs = []
    for t in range(T):
        x = frames[..., t:t + 1]
        if t >= T - period:
            macs.append(count_macs(s, x, st))
        _, st = s.step(x, st)
    return macs


@torch.no_grad()
def stream_costs(model: SepUNet, base: thinkonce.Stream, frames: torch.Tensor, frame_rate: float,
                 timing_steps: int) -> dict[str, Any]:
    s = thinkonce.stream(model, check=False)  # checked here instead, on a real mixture (cheaper than the probe)
    # exactness on a real evaluation mixture, one frame per step
    st, ys = s.init_state(1), []
    for t in range(frames.shape[-1]):
        y, st = s.step(frames[..., t:t + 1], st)
        ys.append(y)
    y = torch.cat(ys, -1)
    ref = model(frames)[..., : y.shape[-1]]
    dev = float((y - ref).abs().max())
    period = model.period
    macs = step_macs(s, frames, period)
    res: dict[str, Any] = {"stream_vs_model_max_abs": dev, "stream_delay_frames": int(getattr(s, "delay", 0) or 0),
                           "period": period, "macs_per_step": macs, "macs_mean": float(np.mean(macs)),
                           "macs_peak": int(max(macs)), "mmac_per_s": float(np.mean(macs)) * frame_rate / 1e6}
    if model.mode == "fp" and model.scc:
        deep = deep_module(model)
        ds = thinkonce.stream(deep, check=False)
        c0 = model.channels[model.scc[0] - 1] if model.scc[0] > 0 else model.bins
        # the deep stream's input: the skip feeding the first S-CC, any values do for counting MACs
        dframes = torch.randn(1, c0, frames.shape[-1])
        dmacs = step_macs(ds, dframes, period)
        crit = [a - b for a, b in zip(macs, dmacs)]
        res.update(deep_macs_per_step=dmacs, critical_macs_per_step=crit, critical_macs_peak=int(max(crit)),
                   precomputed_share=float(np.sum(dmacs) / np.sum(macs)))
    res.update(_time_side_by_side(base, s, frames, timing_steps))
    return res


def _time_side_by_side(base: thinkonce.Stream, s: thinkonce.Stream, frames: torch.Tensor, steps: int) -> dict[str, Any]:
    """Per-step times of the STMC stream and this one, steps interleaved (alternating order)."""
    sb, ss = base.init_state(1), s.init_state(1)
    T = frames.shape[-1]
    tb, ts = [], []
    for t in range(steps + 16):
        x = frames[..., t % T: t % T + 1]
        order = ((base, "b"), (s, "s")) if t % 2 else ((s, "s"), (base, "b"))
        for strm, key in order:
            t0 = time.perf_counter_ns()
            if key == "b":
                _, sb = strm.step(x, sb)
            else:
                _, ss = strm.step(x, ss)
            dt = (time.perf_counter_ns() - t0) / 1e3
            if t >= 16:
                (tb if key == "b" else ts).append(dt)
    tb_, ts_ = np.array(tb), np.array(ts)
    per = 4  # phases of the longest period in the study
    phase_means = [float(np.median(ts_[i::per])) for i in range(per)]
    return {"us_mean": float(ts_.mean()), "us_p99": float(np.percentile(ts_, 99)),
            "us_median": float(np.median(ts_)), "us_peak_phase_median": max(phase_means),
            "stmc_us_mean": float(tb_.mean()), "stmc_us_p99": float(np.percentile(tb_, 99)),
            "stmc_us_median": float(np.median(tb_)), "time_ratio_vs_stmc": float(ts_.mean() / tb_.mean())}


# --------------------------------------------------------------------------- the study
def evaluation_sets(sp: soi_data.Speakers, n_mix: int, seconds: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    n = int(seconds * 8000)
    sets = {"all": sp.eval}
    real = {k: v for k, v in sp.eval.items() if sp.source(k) in ("fsdd", "voxforge", "asterisk")}
    if len(real) >= 2:
        sets["real"] = real
    ast = {k: v for k, v in sp.eval.items() if sp.source(k) == "asterisk"}
    if len(ast) >= 2:
        sets["asterisk"] = ast
    out = {}
    for i, (name, spk) in enumerate(sets.items()):
        mix, src, _ = soi_data.mixtures(spk, n_mix, n, seed=1000 + i)
        out[name] = (mix, src)
    return out


def run(quick: bool = False, seeds: int | list[int] = 2, steps: int = 1500, only: list[str] | None = None,
        out: Path | None = None, budget_s: float = 3 * 3600, fallback: bool = False,
        max_priority: int = 99, with_costs: bool = True) -> dict[str, Any]:
    from rich.progress import Progress

    torch.set_num_threads(1)
    t_start = time.time()
    sp = soi_data.synthetic_fallback() if fallback else soi_data.load_speakers()
    if not fallback and (len(sp.train) < 2 or len(sp.eval) < 2):
        sp = soi_data.synthetic_fallback()
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if quick:
        seed_list, steps = seed_list[:1], min(steps, 20)  # OneCycleLR needs >= 20 steps at pct_start 0.1
    evalset = evaluation_sets(sp, 12 if quick else 60, 2.0 if quick else 3.0)
    cfgs = sweep()
    if quick:
        cfgs = [c for c in cfgs if c.name in ("STMC", "PP S-CC@0+2 duplicate", "FP S-CC@1 duplicate",
                                              "PP S-CC@1 linear", "STMC @ 4 kHz (resampled)")]
    if only:
        cfgs = [c for c in cfgs if c.name in only]
    cfgs = [c for c in cfgs if c.priority <= max_priority]
    # a frame sequence from an evaluation mixture for stream checks and timing
    mix0 = torch.from_numpy(next(iter(evalset.values()))[0][:1])
    frames8 = features(stft(mix0))[..., :64 if quick else 160]
    frames4 = features(stft(torch.from_numpy(resample(mix0.numpy(), 1, 2, "polyphase"))))[..., :frames8.shape[-1]]
    results: dict[str, Any] = {
        "quick": quick, "steps": steps, "seeds": seed_list, "n_fft": N_FFT, "hop": HOP, "fs": 8000,
        "train_speakers": sorted(sp.train), "eval_speakers": sorted(sp.eval), "missing_sources": sp.missing,
        "eval_sets": {k: int(len(v[0])) for k, v in evalset.items()}, "paper": PAPER,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": 1,
                    "note": "times measured under load on 2 shared cores"},
        "configs": {},
    }
    base_model = SepUNet().eval()
    base_stream = thinkonce.stream(base_model, check=False)
    timing_steps = 60 if quick else 160
    with Progress() as prog:
        task = prog.add_task("sweep", total=len(cfgs) * len(seed_list) * steps)
        for cfg in cfgs:
            if time.time() - t_start > budget_s:
                results.setdefault("skipped_for_time", []).append(cfg.name)
                continue
            runs = []
            for seed in seed_list:
                t0 = time.time()
                model = train(cfg, sp.train, steps, seed, progress=prog, task=task)
                train_s = time.time() - t0
                if cfg.rate == 8000:
                    metrics = {"si_snri": evaluate(model, cfg, evalset)}
                else:
                    metrics = {f"si_snri_{m}": evaluate(model, cfg, evalset, m) for m in RESAMPLERS}
                runs.append({"seed": seed, "train_s": train_s, **metrics})
            frate = cfg.rate / HOP
            if not with_costs:
                results["configs"][cfg.name] = {**asdict(cfg), "runs": runs, "summary": _summary(runs)}
                if out is not None:
                    out.write_text(json.dumps(results, indent=1))
                continue
            costs = stream_costs(model, base_stream, frames8 if cfg.rate == 8000 else frames4, frate, timing_steps)
            costs["time_ratio_vs_stmc"] *= cfg.rate / 8000  # per second of signal: half the steps at 4 kHz
            params = sum(p.numel() for p in model.parameters() if p.requires_grad)
            results["configs"][cfg.name] = {**asdict(cfg), "params": params, "runs": runs,
                                            "summary": _summary(runs), **costs}
            if out is not None:
                _finish(results)
                out.write_text(json.dumps(results, indent=1))
    _finish(results)
    results["wall_s"] = time.time() - t_start
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
    return results


def _summary(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    keys = [k for k in runs[0] if k.startswith("si_snri")]
    out = {}
    for k in keys:
        for sub in runs[0][k]:
            v = np.array([r[k][sub] for r in runs])
            out[f"{k}:{sub}"] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
    return out


def _finish(results: dict[str, Any]) -> None:
    """Cuts against STMC (MAC/s, SI-SNRi on 'all'), time/MAC ratios."""
    cf = results["configs"]
    if "STMC" not in cf or "mmac_per_s" not in cf["STMC"]:
        return
    b = cf["STMC"]
    b_q = b["summary"]["si_snri:all"]["mean"]
    for c in cf.values():
        if "mmac_per_s" not in c:
            continue
        mac_ratio = c["mmac_per_s"] / b["mmac_per_s"]
        c["mac_cut_pct"] = 100 * (1 - mac_ratio)
        c["mac_ratio_vs_stmc"] = mac_ratio
        c["time_over_mac_ratio"] = c["time_ratio_vs_stmc"] / mac_ratio
        # medians resist the pre-emptions of a loaded machine better than means (per second of signal)
        c["time_ratio_median_vs_stmc"] = c["us_median"] / c["stmc_us_median"] * c.get("rate", 8000) / 8000
        c["time_median_over_mac_ratio"] = c["time_ratio_median_vs_stmc"] / mac_ratio
        q = c["summary"].get("si_snri:all") or c["summary"].get("si_snri_polyphase:all")
        c["si_snri_loss_pct"] = 100 * (1 - q["mean"] / b_q) if b_q > 0 else math.nan


FP_LATENCY_AT = {"FP S-CC@0+2 duplicate": ["e.0", "e.2"], "FP S-CC@1 duplicate": ["e.1"], "FP S-CC@3 duplicate": ["e.3"]}


@torch.no_grad()
def fp_latency(steps: int = 200, frames: int = 96, seed: int = 0) -> dict[str, Any]:
    """Fully predictive schedule with the library's ``Stream.precompute`` (thinkonce.soi): per step, the
    critical path (``step`` after ``precompute``) and the idle-time work (``precompute``), in MACs and in
    time, side by side with the STMC stream's step. The FP networks are built by
    ``thinkonce.soi.apply(SepUNet(), at=[...], mode="fp")`` (shifted S-CC: deep frame j needs inputs up
    to 2j-1), the same architecture and MACs per period as the trained FP configurations (which shift the
    refilled path instead: the same staleness, one frame of phase apart); latency does not depend on the
    weights, so these are untrained."""
    import thinkonce.soi  # noqa: F401

    torch.manual_seed(seed)
    base = SepUNet().eval()
    sb = thinkonce.stream(base, check=False)
    x = torch.randn(1, base.bins, frames)
    out: dict[str, Any] = {"note": fp_latency.__doc__.split("\n\n")[0], "configs": {}}
    for name, at in FP_LATENCY_AT.items():
        m = thinkonce.soi.apply(base, at=at, mode="fp", example_input=torch.zeros(1, base.bins, 64)).eval()
        s = thinkonce.stream(m, check=False, example_input=torch.zeros(1, base.bins, 64))
        st, ys, crit, pre = s.init_state(1), [], [], []
        for t in range(frames):
            xt = x[..., t:t + 1]
            if t >= frames - 4:
                crit.append(count_macs(s, xt, st))
            y, st = s.step(xt, st)
            ys.append(y)
            if t >= frames - 4:
                pre.append(count_macs(lambda q: s.precompute(q), st))
            st = s.precompute(st)
        y = torch.cat(ys, -1)
        dev = float((y - m(x)[..., : y.shape[-1]]).abs().max())
        stmc = count_macs(sb, x[..., :1], sb.init_state(1))
        # timing: STMC step | FP step (critical) | FP precompute (idle), order rotating
        tb, tc, tp = [], [], []
        s0, s1 = sb.init_state(1), s.init_state(1)
        for t in range(steps + 16):
            xt = x[..., t % frames: t % frames + 1]
            for k in ((0, 1, 2), (1, 2, 0), (2, 0, 1))[t % 3]:
                t0 = time.perf_counter_ns()
                if k == 0:
                    _, s0 = sb.step(xt, s0)
                elif k == 1:
                    _, s1 = s.step(xt, s1)
                else:
                    s1 = s.precompute(s1)
                dt = (time.perf_counter_ns() - t0) / 1e3
                if t >= 16:
                    (tb, tc, tp)[k].append(dt)
        tb_, tc_, tp_ = map(np.array, (tb, tc, tp))
        out["configs"][name] = {
            "at": at, "stream_vs_model_max_abs": dev, "stmc_macs_per_step": stmc,
            "critical_macs_per_step": crit, "precompute_macs_per_step": pre,
            "critical_macs_peak": max(crit), "peak_mac_cut_pct": 100 * (1 - max(crit) / stmc),
            "mean_mac_cut_pct": 100 * (1 - (np.mean(crit) + np.mean(pre)) / stmc),
            "stmc_us_median": float(np.median(tb_)), "stmc_us_p99": float(np.percentile(tb_, 99)),
            "critical_us_median": float(np.median(tc_)), "critical_us_p99": float(np.percentile(tc_, 99)),
            "precompute_us_median": float(np.median(tp_)),
            "critical_time_cut_pct": 100 * (1 - float(np.median(tc_)) / float(np.median(tb_))),
        }
    return out


@torch.no_grad()
def retime(path: Path, steps: int = 400) -> None:
    """Measure the per-step times of every configuration in ``path`` again (side by side with STMC, as in
    the sweep) on freshly built networks of the same structure: time does not depend on the weights, and
    a second pass when the shared machine is less loaded gives steadier ratios. Updates the file."""
    torch.set_num_threads(1)
    r = json.loads(path.read_text())
    sp = soi_data.load_speakers(("fsdd",))
    mix, _, _ = soi_data.mixtures(sp.eval or sp.train, 1, 8000 * 3, seed=5)
    mix = torch.from_numpy(mix)
    frames = {8000: features(stft(mix))[..., :160],
              4000: features(stft(torch.from_numpy(resample(mix.numpy(), 1, 2, "polyphase"))))[..., :160]}
    base = thinkonce.stream(SepUNet().eval(), check=False)
    for name, c in r["configs"].items():
        if "us_mean" not in c:
            continue
        s = thinkonce.stream(SepUNet(scc=tuple(c["scc"]), mode=c["mode"], fill=c["fill"]).eval(), check=False)
        t = _time_side_by_side(base, s, frames[c.get("rate", 8000)], steps)
        t["time_ratio_vs_stmc"] *= c.get("rate", 8000) / 8000
        c.update(t, timing="re-measured by --retime (fresh weights, same structure)")
    _finish(r)
    path.write_text(json.dumps(r, indent=1))


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Runs of several sweep processes (different seeds) joined per configuration; stream costs are
    taken from the first part that has the configuration (they do not depend on the seed's weights
    except through timing noise)."""
    out = json.loads(json.dumps(parts[0]))
    out["seeds"] = sorted({s for p in parts for s in p["seeds"]})
    for p in parts[1:]:
        for name, c in p["configs"].items():
            if name in out["configs"]:
                out["configs"][name]["runs"] += c["runs"]
            else:
                out["configs"][name] = c
    for c in out["configs"].values():
        c["runs"].sort(key=lambda r: r["seed"])
        c["summary"] = _summary(c["runs"])
    _finish(out)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few steps on a few configurations (tests)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds to train (each configuration)")
    ap.add_argument("--max-priority", type=int, default=99, help="only configurations of this priority or lower")
    ap.add_argument("--no-costs", action="store_true", help="train and evaluate only (a second seed's process)")
    ap.add_argument("--fp-latency", type=Path, help="measure the FP precompute schedule and write it here")
    ap.add_argument("--retime", type=Path, help="re-measure the step times in this result file")
    ap.add_argument("--merge", type=Path, nargs="+", help="merge these result files (other seeds) into --out")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--budget-s", type=float, default=3 * 3600, help="stop starting new configurations after this")
    ap.add_argument("--only", nargs="*", help="configuration names to run")
    ap.add_argument("--fallback", action="store_true", help="synthetic test signals instead of speech")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "soi_speech.json")
    a = ap.parse_args(argv)
    if a.retime:
        retime(a.retime)
        return
    if a.fp_latency:
        torch.set_num_threads(1)
        r = fp_latency(40 if a.quick else 200)
        a.fp_latency.write_text(json.dumps(r, indent=1))
        for n, c in r["configs"].items():
            print(f"{n:28s} peak MACs -{c['peak_mac_cut_pct']:.1f}%  critical {c['critical_us_median']:.0f} us "
                  f"vs STMC {c['stmc_us_median']:.0f} us  (max dev {c['stream_vs_model_max_abs']:.1e})")
        return
    if a.merge:
        r = merge([json.loads(f.read_text()) for f in a.merge])
        a.out.write_text(json.dumps(r, indent=1))
    else:
        r = run(a.quick, a.seeds, a.steps, a.only, a.out, a.budget_s, a.fallback, a.max_priority, not a.no_costs)
    for name, c in r["configs"].items():
        q = c["summary"].get("si_snri:all") or c["summary"].get("si_snri_polyphase:all")
        if "mmac_per_s" not in c:
            print(f"{name:32s} SI-SNRi {q['mean']:6.2f}+-{q['std']:.2f} dB  (no stream costs in this part)")
            continue
        print(f"{name:32s} SI-SNRi {q['mean']:6.2f}+-{q['std']:.2f} dB  {c['mmac_per_s']:7.2f} MMAC/s "
              f"cut {c.get('mac_cut_pct', 0):5.1f}%  time/STMC {c['time_ratio_vs_stmc']:.2f}")


if __name__ == "__main__":
    main()
