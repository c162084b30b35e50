"""Cluster benchmark: PPG streams through RayStreamPool on a local Ray cluster, and through HTTP.

Each of ``--streams`` wrists sends its PPG at 32 Hz in 64-sample chunks (one hop of the heart-rate
network, 2 s) at its own random phase; the driver (standing for an ingestion gateway) submits what
arrived in each of ``--ticks`` ticks per 2 s period with one ``submit_many`` (one call per shard, shards in
parallel; they step what is complete before answering) and drains every stream's results once per period.
Measured per shard count (``--shards 1 2``):

* processing seconds per second of signal (< 1: real time) and so the streams this machine serves in
  real time at that shard count (``streams / ratio``, assuming linear cost in streams);
* recovery: a shard killed after a checkpoint and one more period (journal to replay) until it answers
  again, and the part of it spent restoring inside the restarted actor;
* HTTP (Ray Serve ingress, loopback): per-chunk latency of ``POST /streams/{id}/chunks`` (p50/p99) from
  ``--http-clients`` threads, ``--http-requests`` requests in all.

    python bench/cluster.py                      # 10,000 streams, 1 and 2 shards
    python bench/cluster.py --quick              # 1,000 streams, fewer periods (a smoke run)

Writes ``results/bench_cluster.json``; ``python bench/make_benchmarks_md.py`` puts it in BENCHMARKS.md
with a projection to N machines. Timings on a shared machine are load-dependent: the JSON records the
load average before and after each part.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import functools
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench/pool_realtime.py: shared cores

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pool_realtime import FS, HOP, PERIOD_S, WINDOW, synthetic_ppg  # noqa: E402

import thinkonce as to  # noqa: E402
from thinkonce.models import ppg_hr  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def pct(v: list[float], p: float) -> float | None:
    return float(np.percentile(np.asarray(v), p)) if v else None


def build_stream(backend: str) -> tuple[to.Stream, object, bool]:
    """The local stream (for the spot check) and the factory each shard converts its own with (the PPG
    stream's head is an fx graph, which does not pickle)."""
    try:
        model, pretrained = ppg_hr(pretrained=True).eval(), True
    except FileNotFoundError:
        model, pretrained = ppg_hr().eval(), False
    factory = functools.partial(to.stream, model, window=WINDOW, hop=HOP, backend=backend)
    return factory(), factory, pretrained


def throughput(stream, factory, shards: int, args, signals: torch.Tensor, rng: np.random.Generator, root: Path) -> tuple[dict, object]:
    from thinkonce.cluster import RayStreamPool

    n = args.streams
    t0 = time.perf_counter()
    pool = RayStreamPool(factory, shards=shards, slots=args.slots, checkpoint_dir=root / f"s{shards}",
                         checkpoint_every=None, max_batch=args.max_batch, threads_per_shard=args.threads_per_shard,
                         name=f"bench{shards}")
    ids = [f"wrist-{i:05d}" for i in range(n)]
    pool.add_many(ids)
    startup_s = time.perf_counter() - t0
    phase_tick = rng.integers(0, args.ticks, size=n)
    by_tick = [np.flatnonzero(phase_tick == t) for t in range(args.ticks)]
    load_before = load()
    period_s, tick_s, got = [], [], {i: [] for i in range(3)}
    outputs = 0
    for k in range(args.periods):
        p0 = time.perf_counter()
        for t in range(args.ticks):
            t0 = time.perf_counter()
            pool.submit_many([(ids[i], signals[i, :, k * HOP : (k + 1) * HOP], k) for i in by_tick[t]])
            tick_s.append(time.perf_counter() - t0)
        r0 = time.perf_counter()
        res = pool.results_many(ids)
        outputs += sum(len(v) for v in res.values())
        for i in got:
            got[i] += res[ids[i]]
        period_s.append(time.perf_counter() - p0)
        print(f"  shards={shards} period {k + 1}/{args.periods}: {period_s[-1]:.2f} s (drain {time.perf_counter() - r0:.2f} s)", flush=True)
    check = 0.0
    for i, items in got.items():
        y = torch.cat(items)
        ref = stream.run(signals[i : i + 1, :, : args.periods * HOP], chunk=HOP)[0]
        check = max(check, float((y - ref).abs().max()) if ref.numel() else 0.0)
    st = pool.stats()
    sim = args.periods * PERIOD_S
    steady = period_s[WINDOW // HOP :] or period_s  # every stream emits every hop from period 4 on
    ratio = sum(steady) / (len(steady) * PERIOD_S)
    return {
        "shards": shards,
        "streams": n,
        "periods": args.periods,
        "simulated_seconds": sim,
        "startup_s": round(startup_s, 2),
        "processing_s": round(sum(period_s), 3),
        "processing_s_per_signal_s": round(sum(period_s) / sim, 4),
        "steady_processing_s_per_signal_s": round(ratio, 4),
        "realtime_sustained": ratio < 1.0,
        "streams_in_realtime": int(n / ratio),
        "stream_hops_per_s": round(n / (ratio * PERIOD_S), 1),
        "p50_tick_s": round(pct(tick_s, 50), 4),
        "p99_tick_s": round(pct(tick_s, 99), 4),
        "mean_batch": round(st["mean_batch"], 1),
        "outputs": outputs,
        "spot_check_max_abs_diff_vs_stream_run": check,
        "load_avg_before": load_before,
        "load_avg_after": load(),
    }, pool


def local_baseline(stream, args, signals: torch.Tensor, rng: np.random.Generator) -> dict:
    """The same arrivals through one StreamPool in this process (no Ray, no journal, no slots), timed in
    the same run: the ratio to the cluster runs is the cluster layer's overhead under the same load."""
    n = args.streams
    pool = to.StreamPool(stream, max_batch=args.max_batch)
    ids = [f"wrist-{i:05d}" for i in range(n)]
    for sid in ids:
        pool.add(sid)
    phase_tick = rng.integers(0, args.ticks, size=n)
    by_tick = [np.flatnonzero(phase_tick == t) for t in range(args.ticks)]
    load_before = load()
    period_s = []
    for k in range(args.periods):
        p0 = time.perf_counter()
        for t in range(args.ticks):
            for i in by_tick[t]:
                pool.submit(ids[i], signals[i, :, k * HOP : (k + 1) * HOP])
            pool.process()
        for sid in ids:
            pool.results(sid)
        period_s.append(time.perf_counter() - p0)
        print(f"  local period {k + 1}/{args.periods}: {period_s[-1]:.2f} s", flush=True)
    steady = period_s[WINDOW // HOP :] or period_s
    ratio = sum(steady) / (len(steady) * PERIOD_S)
    return {"shards": 0, "streams": n, "steady_processing_s_per_signal_s": round(ratio, 4),
            "streams_in_realtime": int(n / ratio), "realtime_sustained": ratio < 1.0,
            "mean_batch": round(pool.stats()["mean_batch"], 1), "load_avg_before": load_before, "load_avg_after": load()}


def recovery(pool, stream, signals: torch.Tensor, args) -> dict:
    """Checkpoint, one more period into the journal, kill the shard of wrist-00000, time until it answers."""
    import ray

    ids = pool.ids()
    t0 = time.perf_counter()
    pool.checkpoint()
    ckpt_s = time.perf_counter() - t0
    k = args.periods
    pool.submit_many([(sid, signals[int(sid.split("-")[1]), :, k * HOP : (k + 1) * HOP], k) for sid in ids])
    victim = pool.shard_of(ids[0])
    before = {s["name"]: s for s in pool.stats()["per_shard"]}[victim]
    t0 = time.perf_counter()
    ray.kill(pool.handles[victim], no_restart=False)
    while pool._call(victim, "describe")["pid"] == before["pid"]:  # retried while it restarts and recovers
        time.sleep(0.01)
    answer_s = time.perf_counter() - t0
    info = pool.info(ids[0])
    after = {s["name"]: s for s in pool.stats()["per_shard"]}[victim]
    assert info["next_seq"] == k + 1, info
    return {
        "shard_streams": before["streams"],
        "checkpoint_all_s": round(ckpt_s, 3),
        "kill_to_answer_s": round(answer_s, 2),
        "restore_in_actor_s": round(after["recovery_s"], 3),
        "replayed_records": after["replayed_records"],
        "pid_changed": after["pid"] != before["pid"],
        "load_avg": load(),
    }


def http_latency(pool, signals: torch.Tensor, args) -> dict:
    import requests

    from thinkonce.cluster.http import serve_pool

    url = serve_pool(pool, host="127.0.0.1", port=args.http_port)
    ids = [f"http-{i:03d}" for i in range(args.http_streams)]
    s = requests.Session()
    for sid in ids:
        assert s.put(f"{url}/streams/{sid}", timeout=60).status_code == 201
    per = max(1, args.http_requests // len(ids))
    lat: list[float] = []
    deadline = time.monotonic() + args.http_timeout_s

    def send(i: int) -> list[float]:
        sess, out = requests.Session(), []
        for k in range(per):
            if time.monotonic() > deadline:
                break
            body = signals[i % signals.shape[0], :, k * HOP : (k + 1) * HOP].numpy().astype("<f4").tobytes()
            t0 = time.perf_counter()
            r = sess.post(f"{url}/streams/{ids[i]}/chunks", params={"seq": k}, data=body, timeout=60)
            out.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
        return out

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(args.http_clients) as ex:
        for v in ex.map(send, range(len(ids))):
            lat += v
    wall = time.perf_counter() - t0
    return {
        "requests": len(lat), "clients": args.http_clients, "streams": len(ids), "chunk_samples": HOP,
        "p50_ms": round(pct(lat, 50) * 1e3, 2), "p99_ms": round(pct(lat, 99) * 1e3, 2),
        "requests_per_s": round(len(lat) / wall, 1), "load_avg": load(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=10_000)
    ap.add_argument("--periods", type=int, default=6, help="2 s hop periods of signal per shard count")
    ap.add_argument("--ticks", type=int, default=4, help="submit_many calls per 2 s period (arrival ticks)")
    ap.add_argument("--shards", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--slots", type=int, default=16)
    ap.add_argument("--max-batch", type=int, default=1024)
    ap.add_argument("--threads-per-shard", type=int, default=1)
    ap.add_argument("--backend", choices=["eager", "compiled", "onnx"], default="eager")
    ap.add_argument("--http-requests", type=int, default=400)
    ap.add_argument("--http-streams", type=int, default=20)
    ap.add_argument("--http-clients", type=int, default=4)
    ap.add_argument("--http-timeout-s", type=float, default=120.0)
    ap.add_argument("--http-port", type=int, default=18080)
    ap.add_argument("--baseline", type=int, default=1, help="1: also time one local StreamPool (no Ray) in this run")
    ap.add_argument("--quick", action="store_true", help="1,000 streams, 5 periods, 100 HTTP requests")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench_cluster.json")
    args = ap.parse_args()
    if args.quick:
        args.streams, args.periods, args.http_requests = min(args.streams, 1000), 5, 100
    import ray

    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    load0 = load()
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=300 * 2**20, log_to_driver=False,
             _node_ip_address="127.0.0.1", configure_logging=False)
    ray_init_s = time.perf_counter() - t0
    stream, factory, pretrained = build_stream(args.backend)
    signals = synthetic_ppg(args.streams, (args.periods + 1) * HOP, rng)
    torch.set_num_threads(1)
    print(f"{args.streams} streams through one local StreamPool (baseline)", flush=True)
    local = local_baseline(stream, args, signals, np.random.default_rng(args.seed + 1)) if args.baseline else None
    print(json.dumps(local), flush=True)
    runs, pool = [], None
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as d:
        for s in args.shards:
            if pool is not None:
                pool.shutdown()
            print(f"{args.streams} streams on {s} shard(s)", flush=True)
            r, pool = throughput(stream, factory, s, args, signals, rng, Path(d))
            runs.append(r)
            print(json.dumps(r), flush=True)
        rec = recovery(pool, stream, signals, args)
        print(json.dumps(rec), flush=True)
        http = http_latency(pool, signals, args) if args.http_requests else None
        print(json.dumps(http), flush=True)
        pool.shutdown()
    result = {
        "streams": args.streams, "fs_hz": FS, "hop": HOP, "window": WINDOW, "ticks_per_period": args.ticks,
        "backend": args.backend, "threads_per_shard": args.threads_per_shard, "slots": args.slots,
        "pretrained_weights": pretrained, "quick": args.quick, "ray_init_s": round(ray_init_s, 1),
        "runs": runs, "local_baseline": local, "recovery": rec, "http": http,
        "load_avg_start": load0, "load_avg_end": load(),
        "cpu_count": os.cpu_count(), "torch": torch.__version__, "ray": ray.__version__,
        "python": platform.python_version(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
