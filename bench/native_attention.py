"""Attention in the native step (issue 11, task: vectorised attention emitter): the generated C of
``scaled_dot_product_attention`` with the vector kernel (packed K^T/V, broadcast-FMA blocks, vector
exp) against the scalar loops it replaced, at the same vector width and flags; alone on a few head
shapes and inside the whole PPG reference step (window 256, hop 64; its head is 4 heads x 16 frames x 16).

    python bench/native_attention.py [--rounds 7] [--calls 2000] [--out results/bench_native_attention.json]

1 thread, batch 1, one process; the two builds are interleaved round by round and each figure is the
median over rounds of the mean call time (ctypes call included). Timings on a shared machine are noisy:
only the ratios, measured side by side, count; the load average is recorded with them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

os.environ.setdefault("XDG_CACHE_HOME", tempfile.mkdtemp())

from thinkonce.native import emit_attention as ea  # noqa: E402
from thinkonce.native.cache import compiled_library  # noqa: E402
from thinkonce.native.codegen import generate  # noqa: E402
from thinkonce.native.compiler import find_toolchain  # noqa: E402
from thinkonce.native.loader import NativeStep, load  # noqa: E402
from thinkonce.native.trace import record  # noqa: E402


def _build(step, x, state, tc, scalar: bool) -> NativeStep:
    vec = ea._vector
    if scalar:
        ea._vector = ea._scalar  # the loops this kernel replaced (same vector width for everything else)
    try:
        trace, _ = record(step, x.clone(), {k: v.contiguous().clone() for k, v in state.items()})
        cs = generate(trace, tc.vector_width)
    finally:
        ea._vector = vec
    return NativeStep(cs, load(compiled_library(cs.source, tc)))


def _time(fns: dict, args, rounds: int, calls: int) -> dict[str, float]:
    t = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                f(*args)
            t[k].append((time.perf_counter() - t0) / calls * 1e6)
    return {k: statistics.median(v) for k, v in t.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--out", default="results/bench_native_attention.json")
    a = ap.parse_args()
    torch.set_num_threads(1)
    tc = find_toolchain()
    if tc is None or not tc.vector_width:
        raise SystemExit("needs a C compiler with vector extensions")
    out = {"isa": tc.isa, "vector_width": tc.vector_width, "sdpa": {}, "loadavg_start": os.getloadavg()}
    for b, h, L, E in [(1, 4, 16, 16), (1, 4, 64, 16), (1, 8, 32, 32)]:
        n = b * h * L * E
        heads = lambda t: t.view(b, L, h, E).transpose(1, 2)
        step = lambda x, st: (F.scaled_dot_product_attention(heads(x[:n]), heads(x[n:2 * n]), heads(x[2 * n:])) * 1.0, st)
        x = torch.randn(3 * n)
        fns = {k: _build(step, x, {}, tc, k == "scalar") for k in ("scalar", "vector")}
        r = _time(fns, (x, {}), a.rounds, a.calls)
        out["sdpa"][f"{b}x{h}x{L}x{E}"] = {"scalar_us": round(r["scalar"], 2), "vector_us": round(r["vector"], 2),
                                          "speedup": round(r["scalar"] / r["vector"], 2)}
        print("sdpa", b, h, L, E, out["sdpa"][f"{b}x{h}x{L}x{E}"], flush=True)
    import thinkonce as to
    from thinkonce.models import ppg_hr

    torch.manual_seed(0)
    s = to.stream(ppg_hr().eval(), window=256, hop=64, check=False)
    st = s.init_state(1)
    with torch.no_grad():
        _, st = s.step(torch.randn(1, s.input_frame_shape[0], 256), st)
    x = torch.randn(1, s.input_frame_shape[0], 64)
    fns = {k: _build(s._step_impl, x, st, tc, k == "scalar") for k in ("scalar", "vector")}
    ye, _ = s._step_impl(x, st)
    for k, f in fns.items():
        y, _ = f(x, st)
        assert float((y - ye).abs().max()) <= 1e-5 * max(1.0, float(ye.abs().max())), k
    r = _time(fns, (x, st), a.rounds, a.calls // 4)
    out["ppg_step"] = {"scalar_attention_us": round(r["scalar"], 2), "vector_attention_us": round(r["vector"], 2),
                       "speedup": round(r["scalar"] / r["vector"], 3)}
    print("ppg step", out["ppg_step"], flush=True)
    out["loadavg_end"] = os.getloadavg()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print("wrote", a.out, "load", out["loadavg_end"])


if __name__ == "__main__":
    main()
