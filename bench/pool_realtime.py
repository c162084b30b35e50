"""Real-time serving benchmark: many PPG streams through one StreamPool.

Each of ``--streams`` wrists sends its PPG at 32 Hz in 64-sample chunks (one hop of the heart-rate network,
2 s), at its own random phase within the 2 s hop period. The simulation advances in ticks of ``--tick-ms``
without sleeping: at every tick the chunks that arrived during it are submitted and the pool processes
whatever is complete. Real time is sustained when the processing time per simulated second stays below
1 s (and no single tick takes longer than a tick, which would build a backlog).

    python bench/pool_realtime.py                     # 1,000 streams, 10 periods (20 s of signal)
    python bench/pool_realtime.py --streams 5000 --periods 4

Writes ``results/bench_pool.json``. Runs on ``torch.set_num_threads(2)`` with OpenMP threads that sleep
when idle (``--omp-wait passive``): on a machine whose 2 cores are shared, spinning threads make every
parallel region wait for a descheduled peer (a batch-1 step went from ~1.5 ms to ~140 ms). Uses the
packaged pretrained weights when present, random init otherwise (timing does not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":  # before torch loads OpenMP: see --omp-wait
    _pre = argparse.ArgumentParser(add_help=False)
    _pre.add_argument("--omp-wait", choices=["passive", "active"], default="passive")
    os.environ.setdefault("OMP_WAIT_POLICY", _pre.parse_known_args()[0].omp_wait.upper())

import numpy as np  # noqa: E402
import torch  # noqa: E402

import thinkonce as to  # noqa: E402
from thinkonce.models import ppg_hr  # noqa: E402

FS, WINDOW, HOP = 32, 256, 64
PERIOD_S = HOP / FS  # 2 s


def synthetic_ppg(n_streams: int, n_samples: int, rng: np.random.Generator) -> torch.Tensor:
    """Cheap pulse-like signals (fundamental + harmonic + noise, random heart rate per stream)."""
    t = np.arange(n_samples) / FS
    hr = rng.uniform(55, 150, size=(n_streams, 1)) / 60.0
    ph = rng.uniform(0, 2 * np.pi, size=(n_streams, 1))
    x = np.sin(2 * np.pi * hr * t + ph) + 0.35 * np.sin(4 * np.pi * hr * t + 2 * ph + 0.8)
    x += 0.05 * rng.standard_normal(x.shape)
    return torch.from_numpy(x.astype(np.float32)).unsqueeze(1)  # (streams, 1, samples)


def pct(v: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(v), p)) if v else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--periods", type=int, default=10, help="hop periods (2 s each) to simulate")
    ap.add_argument("--tick-ms", type=float, default=125.0, help="simulated scheduler tick")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-batch", type=int, default=1024)
    ap.add_argument("--backend", choices=["eager", "compiled", "onnx"], default="eager", help="Stream step backend")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--omp-wait", choices=["passive", "active"], default="passive",
        help="OpenMP idle threads sleep (passive, default) or spin (active); spinning threads collapse when "
        "other processes share the cores (an OMP_WAIT_POLICY already in the environment wins)",
    )
    ap.add_argument("--baseline", type=int, default=50, help="stream-hops stepped one by one for comparison")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results" / "bench_pool.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)

    try:
        model, pretrained = ppg_hr(pretrained=True).eval(), True
    except FileNotFoundError:
        model, pretrained = ppg_hr().eval(), False
    stream = to.stream(model, window=WINDOW, hop=HOP, backend=args.backend)
    pool = to.StreamPool(stream, max_batch=args.max_batch)

    n = args.streams
    n_samples = args.periods * HOP
    signals = synthetic_ppg(n, n_samples, rng)
    ids = [f"wrist-{i:05d}" for i in range(n)]
    for sid in ids:
        pool.add(sid)
    phase = rng.uniform(0, PERIOD_S, size=n)  # chunk k of stream i arrives at phase[i] + (k + 1) * 2 s
    tick = args.tick_ms / 1000.0
    sim_end = args.periods * PERIOD_S + PERIOD_S  # the last chunks arrive up to one phase after the end
    n_ticks = math.ceil(sim_end / tick)
    arrivals: list[list[tuple[int, int]]] = [[] for _ in range(n_ticks + 1)]
    for i in range(n):
        for k in range(args.periods):
            when = phase[i] + (k + 1) * PERIOD_S
            arrivals[min(n_ticks, int(math.ceil(when / tick)))].append((i, k))

    outputs = {sid: 0 for sid in ids}
    tick_busy: list[float] = []
    busy_by_period = [0.0] * (args.periods + 2)
    hops = 0
    wall0 = time.perf_counter()
    for j in range(n_ticks + 1):
        t0 = time.perf_counter()
        for i, k in arrivals[j]:
            pool.submit(ids[i], signals[i, :, k * HOP : (k + 1) * HOP])
        hops += pool.process()
        dt = time.perf_counter() - t0
        tick_busy.append(dt)
        busy_by_period[min(len(busy_by_period) - 1, int(j * tick / PERIOD_S))] += dt
    wall = time.perf_counter() - wall0
    kept = {}
    for i, sid in enumerate(ids):
        items = pool.results(sid)
        outputs[sid] = sum(int(y.shape[0]) for y in items)
        if i < 3:
            kept[i] = torch.cat(items)
    assert all(v == max(0, args.periods - (WINDOW // HOP - 1)) for v in outputs.values())

    # correctness spot check: the pool's outputs of a few streams against running each stream alone
    check = 0.0
    for i, got in kept.items():
        ref = stream.run(signals[i : i + 1], chunk=HOP)[0]
        check = max(check, float((got - ref).abs().max()) if ref.numel() else 0.0)

    # baseline: the same hops stepped one stream at a time (batch 1)
    base_us = float("nan")
    if args.baseline:
        st = stream.init_state(1)
        x = signals[:1, :, :HOP]
        for _ in range(WINDOW // HOP):
            _, st = stream.step(x, st)
        t0 = time.perf_counter()
        for _ in range(args.baseline):
            _, st = stream.step(x, st)
        base_us = (time.perf_counter() - t0) / args.baseline * 1e6

    # checkpoint / restore of the whole pool (every stream's state, pending samples, counters)
    with tempfile.TemporaryDirectory() as d:
        pool.checkpoint_dir = Path(d)
        t0 = time.perf_counter()
        path = pool.checkpoint()
        ckpt_s = time.perf_counter() - t0
        ckpt_mb = path.stat().st_size / 2**20
        t0 = time.perf_counter()
        back = to.StreamPool.restore(stream, d)
        restore_s = time.perf_counter() - t0
        assert back.ids() == ids

    s = pool.stats()
    busy = sum(tick_busy)
    sim_seconds = args.periods * PERIOD_S
    steady = busy_by_period[WINDOW // HOP : args.periods]  # periods where every stream emits every hop
    result = {
        "streams": n,
        "periods": args.periods,
        "simulated_seconds": sim_seconds,
        "tick_s": tick,
        "backend": args.backend,
        "threads": args.threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "pretrained_weights": pretrained,
        "hops_processed": hops,
        "windows_emitted": sum(outputs.values()),
        "batches": s["batches"],
        "mean_batch": round(s["mean_batch"], 2),
        "p50_step_us": round(s["p50_step_us"], 1),
        "p99_step_us": round(s["p99_step_us"], 1),
        "p50_batch_us": round(s["p50_batch_us"], 1),
        "p99_batch_us": round(s["p99_batch_us"], 1),
        "processing_s": round(busy, 3),
        "throughput_stream_hops_per_s": round(hops / busy, 1),
        "us_per_stream_hop": round(busy / hops * 1e6, 1),
        "unbatched_us_per_stream_hop": round(base_us, 1),
        "processing_s_per_simulated_s": round(busy / sim_seconds, 4),
        "steady_processing_s_per_simulated_s": round(sum(steady) / (len(steady) * PERIOD_S), 4) if steady else None,
        "p99_tick_busy_s": round(pct(tick_busy, 99), 4),
        "max_tick_busy_s": round(max(tick_busy), 4),
        "realtime_sustained": busy / sim_seconds < 1.0,
        "no_backlog": max(tick_busy) < tick,
        "spot_check_max_abs_diff_vs_stream_run": check,
        "checkpoint_s": round(ckpt_s, 3),
        "checkpoint_mb": round(ckpt_mb, 2),
        "restore_s": round(restore_s, 3),
        "wall_s": round(wall, 2),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
