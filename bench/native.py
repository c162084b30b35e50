"""Native-backend benchmark (issue 11): the generated-C step against its own window recompute, against
onnxruntime's recompute, and against the machine's measured FMA peak; hop 1 on the anchor trunk.

    python bench/native.py [--rounds 7] [--out results/bench_native.json]

Native calls use ``donate=True`` (state updated in place, as a deployed loop would run it); the pure
call's cost is recorded beside it (``native_step_pure``). The anchor at hop 1 is timed three ways:
through ``Stream.step``, through the bound loop (``Stream.bind``, ``us_per_sample_bound``) and as the
compiled phase functions called directly (``us_per_sample_native_call``). Everything runs on 1 thread, batch 1, in one process; contenders are interleaved round by round and
each figure is the median over rounds (timings on a shared machine are noisy: ratios measured side by
side are what counts). Warm: the same call repeated. Cold: a 48 MiB buffer is written between calls
(evicting the caches) and only the call is timed. The native recompute is the same generator at
hop = window (every window computed afresh: the like-for-like baseline). The FMA peak is a C loop of
independent vector FMAs (12 accumulators of the CPU's widest vectors), compiled with the backend's flags.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import ctypes  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

import thinkonce as to  # noqa: E402
from thinkonce.models import acc_seizure, eeg_seizure, ppg_hr  # noqa: E402
from thinkonce.native.cache import compiled_library  # noqa: E402
from thinkonce.native.compiler import find_toolchain  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

NETS = {"ppg": (ppg_hr, 256, 64), "eeg": (eeg_seizure, 1024, 256), "acc": (acc_seizure, 960, 160)}
TARGETS = {"step_vs_native_recompute_x_mac_ratio": 0.85, "step_vs_onnxrt_recompute": 5.0,
           "distance_to_fma_limit": 1.5, "anchor_hop1_us_per_sample": 3.0}

FMA_C = """
typedef float vf __attribute__((vector_size({nb})));
double fma_loop(long n) {{
  vf a[12]; vf b = {{0}}; vf c = {{0}};
  for (int i = 0; i < 12; i++) a[i] = (vf){{0}} + (float)i * 1e-3f;
  b = b + 0.999999f; c = c + 1e-7f;
  for (long k = 0; k < n; k++) {{
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) a[i] = a[i] * b + c;
  }}
  double s = 0; for (int i = 0; i < 12; i++) s += a[i][0];
  return s;
}}
"""


def fma_peak(tc, rounds: int) -> dict:
    """Single-thread fp32 FMA throughput (GFLOP/s) of this CPU, measured."""
    vw = max(tc.vector_width, 4)
    lib = ctypes.CDLL(str(compiled_library(FMA_C.format(nb=4 * vw), tc)))
    lib.fma_loop.argtypes = [ctypes.c_long]
    lib.fma_loop.restype = ctypes.c_double
    n = 2_000_000
    lib.fma_loop(n // 10)
    rates = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        lib.fma_loop(n)
        dt = time.perf_counter() - t0
        rates.append(2 * 12 * vw * n / dt / 1e9)
    return {"gflops_median": statistics.median(rates), "gflops_max": max(rates), "lanes": vw,
            "note": "12 independent vector FMA chains, 1 thread"}


def _steady(stream, channels: int, window: int, hop: int):
    st = stream.init_state(1)
    g = torch.Generator().manual_seed(1)
    _, st = stream.step(torch.randn(1, channels, window, generator=g), st)
    x = torch.randn(1, channels, hop, generator=g)
    for _ in range(3):
        _, st = stream.step(x, st)  # builds the native step for this key
    # the warm-up (eager) step may return views of larger tensors: a donated call falls back to fresh
    # outputs on a non-contiguous entry, so the state the timed calls donate is made contiguous here
    # (as a deployed loop's state is after its first native step)
    return x, {k: v.contiguous() for k, v in st.items()}


def _raw(stream, x, st):
    fns = [f for f in stream._traced.cache.values() if hasattr(f, "cstep")]
    return fns[0] if fns else None


def timeit(fn, reps: int, cold: bool, flush: torch.Tensor) -> float:
    """Median seconds per call over ``reps`` calls (cold: caches flushed before each call)."""
    ts = []
    for _ in range(reps):
        if cold:
            flush.add_(1.0)
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def bench_net(name: str, rounds: int, flush: torch.Tensor, peak: float) -> dict:
    make, W, H = NETS[name]
    torch.manual_seed(0)
    model = make().eval()
    step = to.stream(model, window=W, hop=H, backend="native", check=False)
    rec = to.stream(model, window=W, hop=W, backend="native", check=False)
    c = step.input_frame_shape[0]
    xs, ss = _steady(step, c, W, H)
    xr, sr = _steady(rec, c, W, W)
    eager = to.stream(model, window=W, hop=H, check=False)
    _, se = eager.step(torch.randn(1, c, W), eager.init_state(1))
    macs_step = to.count_macs(eager, xs, se)
    macs_rec = to.count_macs(model, torch.randn(1, c, W))
    fs, fr = _raw(step, xs, ss), _raw(rec, xr, sr)
    from streaming import _ort_session, quiet_onnxruntime

    quiet_onnxruntime()
    xw = torch.randn(1, c, W)
    sess = _ort_session(model, xw, 1)
    xn = xw.numpy()
    # donate=True: the new state is written into the old tensors (no allocation, no first-touch page
    # faults of fresh output buffers); the step and the recompute are timed the same way.
    # native_step_pure: the default pure call (fresh output tensors), for the cost of allocation.
    calls = {
        "native_step": lambda: fs(xs, ss, True),
        "native_step_pure": lambda: fs(xs, ss),
        "native_step_api": lambda: step.step(xs, ss),
        "native_recompute": lambda: fr(xr, sr, True),
        "onnxrt_recompute": lambda: sess.run(None, {"x": xn}),
    }
    res: dict = {k: {"warm": [], "cold": []} for k in calls}
    for _ in range(rounds):
        for k, f in calls.items():
            reps = 20 if "onnx" in k or "recompute" in k else 50
            res[k]["warm"].append(timeit(f, reps, False, flush))
            res[k]["cold"].append(timeit(f, max(5, reps // 5), True, flush))
    med = {k: {m: statistics.median(v[m]) for m in v} for k, v in res.items()}
    mac_ratio = macs_rec / macs_step
    out = {"window": W, "hop": H, "macs_step": macs_step, "macs_recompute": macs_rec, "mac_ratio": mac_ratio,
           "us": {k: {m: v * 1e6 for m, v in d.items()} for k, d in med.items()}}
    for mode in ("warm", "cold"):
        t_s, t_r, t_o = med["native_step"][mode], med["native_recompute"][mode], med["onnxrt_recompute"][mode]
        out[mode] = {
            "step_vs_native_recompute": t_r / t_s,
            "efficiency": (t_r / t_s) / mac_ratio,
            "step_vs_onnxrt_recompute": t_o / t_s,
            "gflops_step": 2 * macs_step / t_s / 1e9,
            "gflops_recompute": 2 * macs_rec / t_r / 1e9,
            "fma_limit_us": 2 * macs_step / (peak * 1e9) * 1e6,
            "distance_to_fma_limit": t_s / (2 * macs_step / (peak * 1e9)),
        }
    return out


def _per_call(fn, reps: int) -> float:
    """Mean seconds per call over a block of ``reps`` calls (a multi-phase step alternates cheap and
    dear phases, so a block of whole cycles is timed, not each call)."""
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def bench_anchor(rounds: int, flush: torch.Tensor) -> dict:
    """Hop 1 on the anchor trunk: ``Stream.step(donate=True)``, the bound loop (``Stream.bind``) and the
    compiled phase functions called directly on their pointer arrays (the floor: C plus one ctypes call
    per sample), interleaved round by round; blocks of whole phase cycles, mean per sample."""
    from streaming import AnchorNet, Trunk

    torch.manual_seed(0)
    trunk = Trunk(AnchorNet().eval()).eval()
    s = to.stream(trunk, example_input=torch.zeros(1, 1, 256), backend="native")
    st = s.init_state(1)
    _, st = s.step(torch.randn(1, 1, s.warmup + 64), st)
    x = torch.randn(1, 1, 1)
    box = [st]

    def api():
        _, box[0] = s.step(x, box[0], donate=True)

    for _ in range(3 * s._period + 4):
        api()
    raw = [f for f in s._traced.cache.values() if hasattr(f, "cstep")]
    bound = s.bind(box[0], chunk=1)
    bound.x.copy_(x)
    direct = s.bind(box[0], chunk=1)  # its phase functions and arrays, called without the bound
    direct.x.copy_(x)
    for _ in range(4 * s.clock.modulus + 4):
        bound()
        direct()
    built, cycle = direct.compiled_phases
    fns, arrs = direct._fns[:cycle], direct._arrs[:cycle]
    assert built == cycle, "the anchor's phases did not all compile"

    def raw_cycle():  # one whole phase cycle per call
        for f, a in zip(fns, arrs):
            f(a)

    reps = 200 * cycle
    ts_api, ts_bound, ts_raw = [], [], []
    for _ in range(rounds):
        ts_api.append(_per_call(api, reps))
        ts_bound.append(_per_call(bound, reps))
        ts_raw.append(_per_call(raw_cycle, 200) / cycle)
    macs = to.count_macs(s, x, box[0])
    return {"us_per_sample_stream_step": statistics.median(ts_api) * 1e6,
            "us_per_sample_bound": statistics.median(ts_bound) * 1e6,
            "us_per_sample_native_call": statistics.median(ts_raw) * 1e6, "macs_per_sample": macs,
            "period": s._period, "phase_cycle": cycle, "native_steps_built": len(raw),
            "method": "mean per sample over blocks of whole phase cycles; median over rounds"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--nets", default="ppg,eeg,acc")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench_native.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    tc = find_toolchain()
    if tc is None:
        raise SystemExit("no C compiler: the native backend cannot run here")
    flush = torch.zeros(48 * 2**20 // 4)
    peak = fma_peak(tc, args.rounds)
    load = os.getloadavg()
    result = {"machine": {"cpu": tc.cpu.split("|")[0], "cores": os.cpu_count(), "isa": tc.isa, "cc": tc.version,
                          "flags": list(tc.flags), "python": platform.python_version(), "torch": torch.__version__,
                          "loadavg_before": list(load)},
              "threads": 1, "batch": 1, "rounds": args.rounds, "fma_peak": peak, "targets": TARGETS, "nets": {}}
    for n in args.nets.split(","):
        result["nets"][n] = bench_net(n, args.rounds, flush, peak["gflops_median"])
        print(n, json.dumps(result["nets"][n]["warm"]), flush=True)
    result["anchor_hop1"] = bench_anchor(args.rounds, flush)
    result["machine"]["loadavg_after"] = list(os.getloadavg())
    result["measured_under_load"] = max(result["machine"]["loadavg_before"][0], result["machine"]["loadavg_after"][0]) > 0.5 * (os.cpu_count() or 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result["anchor_hop1"]), "peak", peak["gflops_median"])


if __name__ == "__main__":
    main()
