"""Streaming step benchmark ("Fast steps", item 4): time per hop against window recompute, other
streaming libraries and a hand-written ring buffer, next to MACs per hop and bytes of state per stream.

    python bench/streaming.py            # full run (< 10 min), writes results/bench_streaming.json + BENCHMARKS.md
    python bench/streaming.py --quick    # a few rounds (< 60 s): smoke test of the harness
    python bench/streaming.py --nets anchor,ppg --batches 1

Groups (each timed separately; inside a group the contenders are INTERLEAVED: every round calls each
contender once, in turn, so that load from other processes hits all of them alike; median and
min/max over rounds are reported):

* ``ppg`` / ``eeg`` / ``acc``: the three reference networks in window mode at their window/hop;
* ``anchor_hop1``: the 6-conv anchor network's trunk (no global-pool/Linear head) in continuous use,
  one sample per step (what continual-inference does); a timed call is two steps (the MaxPool-2
  period), reported per sample;
* ``anchor_hop2``: the whole anchor network in thinkonce window mode (window 256) at hop 2 - hop 1
  breaks the MaxPool-2 alignment, so window mode cannot run at hop 1.

Contenders: ``recompute_eager`` (``model(window)`` every hop), ``recompute_onnxrt`` (onnxruntime session
of the model), ``thinkonce_{eager,compiled,onnx}``, ``ring_buffer`` (bench/ring_buffer.py, the floor),
``continual`` (continual-inference 1.2.4) and ``cached_conv`` (2.5.0) where they can express the network.

Every contender threads its state from call to call (thinkonce: the returned state is fed back; in
window mode the sample clock ``@t`` is held at its first steady-state value, so each call is the same
phase and the traced backends run one cached graph - every phase of an aligned hop does the same work;
what the other phases cost a fresh compiled/ONNX stream is measured apart, see ``warmup``). The
libraries keep their state inside modules and simply advance. Batch 1 runs on 1 thread; batch 64 on ``--threads-b64``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: shared cores

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

import thinkonce as to  # noqa: E402
from thinkonce.models import acc_seizure, eeg_seizure, ppg_hr  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import anchors  # noqa: E402
import ring_buffer  # noqa: E402

BACKENDS = ("eager", "compiled", "onnx")
MAC_TARGET = 0.8  # batch-1 best-backend time speedup >= 0.8 x MAC ratio
CONTINUAL_TARGET = 5.0  # hop-1 anchor: thinkonce >= 5x faster than continual-inference


# ====================================================================== the anchor network
class AnchorNet(nn.Module):
    """3 x [Conv1d k5 32ch + ReLU], MaxPool 2, 3 more, global average pool, Linear 32 -> 10.

    Window 256, one input channel; the convolutions are causal (4 zero frames on the left), so a
    stream of it is exact and every library can express it."""

    WINDOW = 256

    def __init__(self, channels: int = 32, classes: int = 10) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        c = 1
        for i in range(6):
            if i == 3:
                mods.append(nn.MaxPool1d(2))
            mods += [nn.ConstantPad1d((4, 0), 0.0), nn.Conv1d(c, channels, 5), nn.ReLU()]
            c = channels
        self.trunk = nn.Sequential(*mods)
        self.fc = nn.Linear(channels, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.trunk(x).mean(-1))


class Trunk(nn.Module):
    """The anchor network without its global-pool/Linear head (a sequence out: continuous mode)."""

    def __init__(self, net: AnchorNet) -> None:
        super().__init__()
        self.trunk = net.trunk

    def forward(self, x: Tensor) -> Tensor:
        return self.trunk(x)


@dataclass(frozen=True)
class NetSpec:
    name: str
    channels: int
    window: int
    hop: int
    note: str


SPECS = {
    "ppg": NetSpec("ppg", 1, 256, 64, "ppg_hr(): 9 causal dilated convs, AvgPool 4/2/2, attention head"),
    "eeg": NetSpec("eeg", 18, 1024, 256, "eeg_seizure(): 3 x [Conv k3 same, BN, ReLU, MaxPool 4], Conv k16 head"),
    "acc": NetSpec("acc", 4, 960, 160, "acc_seizure(): 6 x [Conv k3 same, BN, ReLU], GAP + dense head"),
    "anchor": NetSpec("anchor", 1, 256, 2, "3 x [Conv k5 32ch, ReLU], MaxPool 2, 3 more, GAP, Linear 32->10"),
}


def build_model(name: str) -> tuple[nn.Module, str]:
    torch.manual_seed(0)
    if name == "ppg":
        try:
            return ppg_hr(pretrained=True).eval(), "pretrained"
        except FileNotFoundError:
            return ppg_hr().eval(), "random init"
    if name == "eeg":
        return _randomise_bn(eeg_seizure()).eval(), "random init"
    if name == "acc":
        return _randomise_bn(acc_seizure()).eval(), "random init"
    if name == "anchor":
        return AnchorNet().eval(), "random init"
    raise ValueError(name)


def _randomise_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics so that correctness checks see them (timing does not care)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


# ====================================================================== contenders
@dataclass
class Contender:
    name: str
    family: str  # recompute | thinkonce | floor | library
    call: Callable[[], Any]
    hops_per_call: int = 1
    macs_per_hop: float | None = None
    state_bytes: int | None = None
    state_float_bytes: int | None = None
    note: str = ""
    exact: str = ""
    times: list[float] = field(default_factory=list)


def quiet_onnxruntime() -> None:
    """Every onnxruntime session of this process sleeps between runs instead of spinning.

    ORT's intra-op pool spins after each run by default; on cores shared with other jobs (and with the
    next contender of a round) that steals a core, as OpenMP's active wait does for torch (hence
    OMP_WAIT_POLICY=PASSIVE). thinkonce's onnx backend builds its own SessionOptions, so the class is
    wrapped for the whole process."""
    import onnxruntime as ort

    if getattr(ort.SessionOptions, "_no_spinning", False):
        return
    base = ort.SessionOptions

    class SessionOptions(base):  # type: ignore[misc, valid-type]
        _no_spinning = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self.add_session_config_entry("session.inter_op.allow_spinning", "0")

    ort.SessionOptions = SessionOptions


def _ort_session(model: nn.Module, x: Tensor, threads: int):
    import onnxruntime as ort

    buf = io.BytesIO()
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused attention kernel has no ONNX form
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), buf, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17, dynamo=False)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])


def _float_bytes(state: dict) -> tuple[int, int]:
    rows = int(state["@t"].shape[0])
    fl = sum(v.numel() * v.element_size() for v in state.values() if v.is_floating_point()) // rows
    return to.state_nbytes(state), fl


def recompute_contenders(model: nn.Module, xw: Tensor, threads: int, skip: dict) -> list[Contender]:
    macs = to.count_macs(model, xw)
    out = []

    def eager() -> Tensor:
        with torch.no_grad():
            return model(xw)

    out.append(Contender("recompute_eager", "recompute", eager, 1, macs, 0, 0,
                         "model(window) every hop (torch eager)", "the model itself"))
    try:
        sess = _ort_session(model, xw, threads)
        xn = xw.numpy()
        out.append(Contender("recompute_onnxrt", "recompute", lambda: sess.run(None, {"x": xn}), 1, macs, 0, 0,
                             f"onnxruntime session of model(window), {threads} intra-op thread(s)", "the model itself"))
    except Exception as e:  # pragma: no cover - reported
        skip["recompute_onnxrt"] = f"ONNX export/session failed: {type(e).__name__}: {e}"
    return out


def thinkonce_window_contenders(model: nn.Module, spec: NetSpec, batch: int, backends, skip: dict,
                                hop: int | None = None) -> list[Contender]:
    hop = hop or spec.hop
    ref = to.stream(model, window=spec.window, hop=hop)
    st = ref.init_state(batch)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        _, st = ref.step(torch.randn(batch, spec.channels, spec.window, generator=g), st)  # steady state
    x = torch.randn(batch, spec.channels, hop, generator=g)
    macs = to.count_macs(ref, x, st)
    nbytes, fbytes = _float_bytes(st)
    out = []
    for be in backends:
        try:
            s = ref if be == "eager" else to.stream(model, window=spec.window, hop=hop, backend=be)
            for _ in range(3):  # builds (and, compiled, profiles) the traced graph for this phase
                s.step(x, st)
        except Exception as e:  # pragma: no cover - reported
            skip[f"thinkonce_{be}"] = f"{type(e).__name__}: {e}"
            continue
        out.append(Contender(f"thinkonce_{be}", "thinkonce", _threaded(s, x, st, rebase=True), 1, macs, nbytes, fbytes,
                             f"to.stream(model, window={spec.window}, hop={hop}, backend={be!r}).step",
                             "equals s.reference (signal-padded window), edge='exact'"))
    if "compiled" in backends:
        try:
            out.append(compiled_recompute(model, spec, batch))
        except Exception as e:  # pragma: no cover - reported
            skip["recompute_compiled"] = f"{type(e).__name__}: {e}"
    return out


def compiled_recompute(model: nn.Module, spec: NetSpec, batch: int) -> Contender:
    """The compiled backend recomputing every window: thinkonce at hop = window. "compiled" is the
    native backend (generated C) where a C compiler exists, so this is the native window recompute:
    the same generator at hop = window.

    Same kernels, same traced and shape-folded graph, same validation as ``thinkonce_compiled``; the
    only difference is that nothing is reused (each call computes every frame of a fresh window), so
    ``thinkonce_compiled`` against this is the like-for-like gain of streaming for that backend.
    """
    s = to.stream(model, window=spec.window, hop=spec.window, backend="compiled")
    st = s.init_state(batch)
    g = torch.Generator().manual_seed(6)
    xw = torch.randn(batch, spec.channels, spec.window, generator=g)
    with torch.no_grad():
        _, st = s.step(xw, st)  # first window (warm-up, eager)
    macs = to.count_macs(s, xw, st)
    call = _threaded(s, xw, st, rebase=True)
    for _ in range(3):
        call()
    return Contender("recompute_compiled", "recompute", call, 1, macs, 0, 0,
                     f"to.stream(model, window={spec.window}, hop={spec.window}, backend='compiled').step: "
                     "thinkonce's compiled (native C) kernels over every frame of each window (no reuse)",
                     "every window computed afresh")


def _threaded(s, x: Tensor, st: dict, rebase: bool, per_call: int = 1) -> Callable[[], Any]:
    """A call that steps ``per_call`` times, threading the state. ``rebase``: window mode keeps the
    sample clock at its first steady-state value, so that every call is the same phase (every phase
    of an aligned hop does the same work) and the traced backends use one cached graph; see
    ``diagnose_warmup`` for what the clock's other phases cost."""
    box = [st]
    t0 = st["@t"]

    def call():
        y = None
        for _ in range(per_call):
            y, new = s.step(x, box[0])
            if rebase:
                new["@t"] = t0
            box[0] = new
        return y

    return call


def thinkonce_continuous_contenders(trunk: nn.Module, channels: int, batch: int, backends, skip: dict,
                                    per_call: int = 2) -> list[Contender]:
    ref = to.stream(trunk, example_input=torch.zeros(1, channels, 256))
    st = ref.init_state(batch)
    warm = -(-ref.warmup // per_call) * per_call
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        _, st = ref.step(torch.randn(batch, channels, warm, generator=g), st)
    x = torch.randn(batch, channels, 1, generator=g)

    macs = to.count_macs(_threaded(ref, x, st, rebase=False, per_call=per_call)) / per_call
    nbytes, fbytes = _float_bytes(st)
    out = []
    for be in backends:
        try:
            s = ref if be == "eager" else to.stream(trunk, example_input=torch.zeros(1, channels, 256), backend=be)
            call = _threaded(s, x, st, rebase=False, per_call=per_call)
            for _ in range(3):  # every phase of the stride period traced (compiled: profiled) once
                call()
        except Exception as e:  # pragma: no cover
            skip[f"thinkonce_{be}"] = f"{type(e).__name__}: {e}"
            continue
        out.append(Contender(f"thinkonce_{be}", "thinkonce", call, per_call, macs, nbytes, fbytes,
                             f"to.stream(trunk, backend={be!r}).step, 1 sample per step (continuous)",
                             "exact: equals trunk(signal)"))
    return out


def ring_contender(name: str, model: nn.Module, spec: NetSpec, batch: int, window: bool, hop: int,
                   per_call: int = 1, dense: bool = False) -> tuple[Contender, ring_buffer.RingNet]:
    rn = ring_buffer.for_network(name, model, window=window, dense=dense)
    g = torch.Generator().manual_seed(4)
    if window:
        pre = -(-(spec.window * 2 + 64) // rn.stride) * rn.stride
        st = rn.init_state(batch, preroll=pre)
    else:
        st = rn.init_state(batch)
        with torch.no_grad():
            _, st = rn.step(torch.randn(batch, spec.channels, 64, generator=g), st)
    x = torch.randn(batch, spec.channels, hop, generator=g)
    box = [st]

    def call():
        y = None
        for _ in range(per_call):
            y, box[0] = rn.step(x, box[0])
        return y

    def counted():
        s1 = st
        for _ in range(per_call):
            _, s1 = rn.step(x, s1)

    macs = to.count_macs(counted) / per_call
    nb = rn.nbytes(st)
    c = Contender("ring_buffer_dense" if dense else "ring_buffer", "floor", call, per_call, macs, nb, nb,
                  "bench/ring_buffer.py: per-layer input buffers, only new frames (plain PyTorch)" + (
                      "; dilated kernels zero-filled to undilated ones (avoids slow_conv_dilated2d)" if dense else ""),
                  "exact (tested in tests/test_bench.py)")
    return c, rn


def library_contender(cname: str, adapter: anchors.Adapter, x: Tensor, hops_per_call: int, batch: int) -> Contender:
    for _ in range(3):
        adapter.call(x)  # fill the modules' state
    macs = to.count_macs(lambda: adapter.call(x)) / hops_per_call
    nb = adapter.state_bytes(batch)
    return Contender(cname, "library", lambda: adapter.call(x), hops_per_call, macs, nb, nb, adapter.note, adapter.exact)


def diagnose_warmup(net: str, backends, cap_s: float) -> dict[str, Any]:
    """A fresh window stream stepped hop by hop from its first sample, threading its state: how long
    until every phase of the sample clock has its traced graph (compiled: also profiled), and how many
    graphs that takes. thinkonce keys a traced step by ``t % (hop * period)``, so a stream of an aligned
    hop meets ``period`` phases that all do the same work."""
    spec = SPECS[net]
    model, _ = build_model(net)
    torch.set_num_threads(1)
    out: dict[str, Any] = {}
    x = torch.randn(1, spec.channels, spec.hop, generator=torch.Generator().manual_seed(6))
    for be in backends:
        s = to.stream(model, window=spec.window, hop=spec.hop, backend=be)
        period = s.spec.period
        n = spec.window // spec.hop + 3 * period  # fill the window, then three times round the phases
        st = s.init_state(1)
        times = []
        t0 = time.perf_counter()
        for _ in range(n):
            t1 = time.perf_counter()
            _, st = s.step(x, st)
            times.append(time.perf_counter() - t1)
            if time.perf_counter() - t0 > cap_s:
                break
        graphs = len(s._traced.cache) if getattr(s, "_traced", None) is not None else 0
        out[be] = {"steps": len(times), "complete": len(times) == n, "seconds": round(time.perf_counter() - t0, 2),
                   "traced_graphs": graphs, "phases_of_clock": period,
                   "slowest_step_ms": round(max(times) * 1e3, 1),
                   "last_step_ms": round(times[-1] * 1e3, 2)}
    return out


def profile_net(net: str, rounds: int) -> dict[str, Any]:
    """Where a batch-1 eager step of ``net`` spends its time (private thinkonce internals, for the
    diagnosis only): validation, trunk pass, right-edge pass, feature-ring update and head, against
    the hand-written ring buffer's trunk/edge/head, plus the compiled step; interleaved like the
    groups. Then torch.profiler op counts and the self time of convolution kernels per step."""
    from torch.profiler import ProfilerActivity, profile

    spec = SPECS[net]
    model, _ = build_model(net)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(7)
    s = to.stream(model, window=spec.window, hop=spec.hop)
    sc = to.stream(model, window=spec.window, hop=spec.hop, backend="compiled")
    st = s.init_state(1)
    _, st = s.step(torch.randn(1, spec.channels, spec.window, generator=g), st)
    x = torch.randn(1, spec.channels, spec.hop, generator=g)
    xw = torch.randn(1, spec.channels, spec.window, generator=g)
    trunk_st = {k: v for k, v in st.items() if not k.startswith("@")}
    mode = "stale" if s.edge == "stale" else "step"
    env, after = s.program.run(x, trunk_st, mode)
    heads = list(s.plan.head_inputs)
    rings = {v: st[f"@ring.{v.name}"] for v in heads}
    probe = x[..., :0]

    def ring_update():
        for v in heads:
            d = s.plan.by_node[v].tdim
            r = torch.cat([rings[v], env[v]], dim=d)
            r.narrow(d, r.shape[d] - s.spec.frames[v.name], s.spec.frames[v.name])

    rn = ring_buffer.for_network(net, model)
    rst = rn.init_state(1, preroll=-(-(spec.window * 2 + 64) // rn.stride) * rn.stride)
    feats, rb = rn._commit(x, rst[0])
    win = rst[1]
    parts: dict[str, Callable[[], Any]] = {
        "thinkonce eager: step": lambda: s.step(x, st),
        "thinkonce eager: validation (_check_chunk + _check_state)": lambda: (s._check_chunk(x), s._check_state(st, 1)),
        "thinkonce eager: trunk pass (program.run)": lambda: s.program.run(x, trunk_st, mode),
        "thinkonce eager: feature-ring update (cat + narrow)": ring_update,
        "thinkonce eager: head (program.head)": lambda: s.program.head(rings, env),
        "thinkonce compiled: step": lambda: sc.step(x, st),
        "ring buffer: step": lambda: rn.step(x, rst),
        "ring buffer: trunk (commit)": lambda: rn._commit(x, rst[0]),
        "ring buffer: head": lambda: rn.head(win),
    }
    if s._owes_edge:
        parts["thinkonce eager: right-edge pass (program.run flush)"] = lambda: s.program.run(probe, after, "flush")
        parts["ring buffer: right-edge pass"] = lambda: rn._edge(rb, 1)
        ss = to.stream(model, window=spec.window, hop=spec.hop, edge="stale")
        sst = ss.init_state(1)
        _, sst = ss.step(torch.randn(1, spec.channels, spec.window, generator=g), sst)
        parts["thinkonce eager: step, edge='stale' (no edge pass)"] = lambda: ss.step(x, sst)
    for _ in range(3):
        sc.step(x, st)  # the compiled graph for this phase: traced and profiled
    runner = sc._traced.cache[(sc._trace_key(x.shape[-1], st), x.shape[0])]
    parts["thinkonce compiled: cached graph runner only (no validation, key)"] = lambda: runner(x, st)
    for f in parts.values():
        f()
        f()
    times: dict[str, list[float]] = {k: [] for k in parts}
    perf = time.perf_counter
    with torch.no_grad():  # as inside Stream.step (and the attention fast path needs it)
        for _ in range(rounds):
            for k, f in parts.items():
                t0 = perf()
                f()
                times[k].append(perf() - t0)
    out: dict[str, Any] = {"net": net, "rounds": rounds, "load_avg": _load(),
                           "parts_us": {k: statistics.median(v) * 1e6 for k, v in times.items()}}
    ops = {}
    for label, f in (("thinkonce eager", parts["thinkonce eager: step"]),
                     ("thinkonce compiled", parts["thinkonce compiled: step"]),
                     ("ring buffer", parts["ring buffer: step"]),
                     ("recompute eager", lambda: model(xw))):
        n = 5
        with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(n):
                f()
        ka = prof.key_averages()
        aten = [e for e in ka if e.key.startswith("aten::")]
        conv_keys = [e for e in aten if "conv" in e.key and e.key not in ("aten::conv1d", "aten::convolution",
                                                                          "aten::_convolution")]
        top = sorted(aten, key=lambda e: e.self_cpu_time_total, reverse=True)[:6]
        ops[label] = {
            "aten_ops_per_step": sum(e.count for e in aten) / n,
            "conv_kernel_self_us_per_step": sum(e.self_cpu_time_total for e in conv_keys) / n,
            "conv_kernels": sorted({e.key for e in conv_keys}),
            "top_ops_self_us_per_step": {e.key: round(e.self_cpu_time_total / n, 1) for e in top},
        }
    out["profiler"] = ops
    out["onnx_graph_nodes"] = _onnx_nodes(model, s, xw)
    return out


def _onnx_nodes(model: nn.Module, s, xw: Tensor) -> dict[str, Any]:
    """Node counts of the exported step (``Stream.export_onnx``) and of the exported model."""
    import collections
    import tempfile

    import onnx

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = s.export_onnx(f"{d}/step.onnx")
        step = onnx.load(f"{d}/step.onnx").graph
        fast = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            with torch.no_grad():
                torch.onnx.export(model, (xw,), f"{d}/model.onnx", opset_version=17, dynamo=False)
        finally:
            torch.backends.mha.set_fastpath_enabled(fast)
        whole = onnx.load(f"{d}/model.onnx").graph
    for name, g in (("step", step), ("model", whole)):
        kinds = collections.Counter(n.op_type for n in g.node)
        out[name] = {"nodes": len(g.node), "inputs": len(g.input), "outputs": len(g.output),
                     "top": dict(kinds.most_common(6))}
    out["step"]["state_inputs"] = sum(1 for n in info["inputs"] if n.startswith("state."))
    return out


# ====================================================================== timing
def interleave(contenders: list[Contender], rounds: int, progress=None, task=None) -> None:
    perf = time.perf_counter
    for _ in range(rounds):
        for c in contenders:
            t0 = perf()
            c.call()
            c.times.append(perf() - t0)
        if progress is not None:
            progress.advance(task)


def calibrate(contenders: list[Contender], budget_s: float, lo: int, hi: int) -> int:
    t0 = time.perf_counter()
    for c in contenders:  # warm-up round (not recorded)
        c.call()
        c.call()
    one = (time.perf_counter() - t0) / 2
    return max(lo, min(hi, int(budget_s / max(one, 1e-6))))


def summarise(c: Contender) -> dict[str, Any]:
    per_hop = [t / c.hops_per_call * 1e6 for t in c.times]
    return {
        "family": c.family,
        "median_us": statistics.median(per_hop),
        "min_us": min(per_hop),
        "max_us": max(per_hop),
        "n": len(per_hop),
        "hops_per_call": c.hops_per_call,
        "macs_per_hop": None if c.macs_per_hop is None else int(round(c.macs_per_hop)),
        "state_bytes_per_stream": c.state_bytes,
        "state_float_bytes_per_stream": c.state_float_bytes,
        "note": c.note,
        "exact": c.exact,
    }


# ====================================================================== groups
def make_group(gname: str, batch: int, threads: int, backends, libs: bool) -> tuple[dict, list[Contender]]:
    skip: dict[str, str] = {}
    net = gname.split("_")[0]
    spec = SPECS[net]
    model, weights = build_model(net)
    g = torch.Generator().manual_seed(5)
    xw = torch.randn(batch, spec.channels, spec.window, generator=g)
    cs: list[Contender] = recompute_contenders(model, xw, threads, skip)
    info: dict[str, Any] = {"net": net, "batch": batch, "threads": threads, "weights": weights,
                            "window": spec.window, "model": spec.note}
    if gname == "anchor_hop1":
        info.update(mode="continuous (trunk), 1 sample per step", hop=1, unit="sample",
                    baseline="model(window) once per sample (full network: the only way to get a per-sample "
                             "output without streaming)")
        trunk = Trunk(model).eval()
        cs += thinkonce_continuous_contenders(trunk, 1, batch, backends, skip)
        rc, rn = ring_contender("anchor", model, spec, batch, window=False, hop=1, per_call=2)
        cs.append(rc)
        info["min_state"] = rn.min_state()
        if libs:
            for cname, full in (("continual", False), ("continual_full_net", True)):
                try:
                    ad = anchors.continual_anchor(model, full)
                    x2 = torch.randn(batch, 1, 2, generator=g)
                    c = library_contender(cname, ad, x2, 2, batch)
                    if full:
                        c.note += " (whole network: per-sample window outputs)"
                    cs.append(c)
                except Exception as e:
                    skip[cname] = f"{type(e).__name__}: {e}"
            try:
                anchors.cached_conv_net("anchor", model, 1, trunk_only=True)
            except anchors.Unsupported as e:
                skip["cached_conv (hop 1)"] = str(e)
            except Exception as e:  # e.g. not installed (pip install .[bench])
                skip["cached_conv (hop 1)"] = f"{type(e).__name__}: {e}"
            try:
                ad = anchors.cached_conv_net("anchor", model, 2, trunk_only=True)
                c = library_contender("cached_conv_chunk2", ad, torch.randn(batch, 1, 2, generator=g), 2, batch)
                c.note += "; chunks of 2 samples (hop 1 impossible), time per sample = half a call"
                cs.append(c)
            except Exception as e:
                skip["cached_conv_chunk2"] = f"{type(e).__name__}: {e}"
    else:
        hop = spec.hop
        info.update(mode=f"window {spec.window}, hop {hop}", hop=hop, unit=f"hop ({hop} samples)",
                    baseline="model(window) every hop")
        if net == "anchor":
            info["mode"] += " (hop 1 breaks the MaxPool-2 alignment: thinkonce window mode needs an even hop)"
        cs += thinkonce_window_contenders(model, spec, batch, backends, skip, hop)
        rc, rn = ring_contender(net, model, spec, batch, window=True, hop=hop)
        cs.append(rc)
        if any(isinstance(m, nn.Conv1d) and m.dilation[0] > 1 for m in model.modules()):
            cs.append(ring_contender(net, model, spec, batch, window=True, hop=hop, dense=True)[0])
        info["min_state"] = rn.min_state()
        xh = torch.randn(batch, spec.channels, hop, generator=g)
        if libs:
            try:
                if net == "anchor":
                    ad = anchors.continual_anchor(model, full=True)
                else:
                    ad = anchors.continual_window(net, model)
                cs.append(library_contender("continual", ad, xh, 1, batch))
            except anchors.Unsupported as e:
                skip["continual"] = str(e)
            except Exception as e:
                skip["continual"] = f"{type(e).__name__}: {e}"
            try:
                ad = anchors.cached_conv_net(net, model, hop)
                cs.append(library_contender("cached_conv", ad, xh, 1, batch))
            except anchors.Unsupported as e:
                skip["cached_conv"] = str(e)
            except Exception as e:
                skip["cached_conv"] = f"{type(e).__name__}: {e}"
    info["unsupported"] = skip
    return info, cs


def analyse(group: dict) -> None:
    """Ratios next to each stream contender: MAC ratio (recompute / stream) and time ratio."""
    cs = group["contenders"]
    rec = cs.get("recompute_eager")
    ort = cs.get("recompute_onnxrt")
    if rec is None:
        return
    for name, c in cs.items():
        if c["family"] == "recompute":
            continue
        if c["macs_per_hop"]:
            c["mac_ratio"] = rec["macs_per_hop"] / c["macs_per_hop"]
        comp = cs.get("recompute_compiled")
        like, like_name = rec, "recompute_eager"
        if name == "thinkonce_onnx" and ort is not None:
            like, like_name = ort, "recompute_onnxrt"
        elif name == "thinkonce_compiled" and comp is not None:
            like, like_name = comp, "recompute_compiled"
        c["time_ratio"] = like["median_us"] / c["median_us"]  # like-for-like runtime
        c["time_ratio_vs"] = like_name
        c["time_ratio_vs_eager_model"] = rec["median_us"] / c["median_us"]
        fastest = min(r["median_us"] for r in (rec, ort) if r is not None)
        c["time_ratio_vs_fastest_recompute"] = fastest / c["median_us"]


def best_thinkonce(group: dict) -> tuple[str, dict] | tuple[None, None]:
    ts = {k: v for k, v in group["contenders"].items() if v["family"] == "thinkonce"}
    if not ts:
        return None, None
    k = min(ts, key=lambda n: ts[n]["median_us"])
    return k, ts[k]


def targets(groups: dict[str, dict]) -> list[dict]:
    out = []
    for net in ("ppg", "eeg", "acc"):
        g = groups.get(f"{net}_b1")
        if not g:
            continue
        ts = {k: v for k, v in g["contenders"].items() if v["family"] == "thinkonce"}
        if not ts:
            continue
        k = min(ts, key=lambda n: ts[n]["median_us"])  # the best backend is the fastest one
        c = ts[k]
        need = MAC_TARGET * c["mac_ratio"]
        floor = g["contenders"].get("ring_buffer")
        others = "; ".join(f"{n}: {v['time_ratio']:.2f}x vs {v['time_ratio_vs']}" for n, v in ts.items() if n != k)
        ctx = (f"; others {others}" if others else "") + (f"; hand ring buffer {floor['time_ratio']:.2f}x" if floor else "")
        ctx += f"; {k} vs the eager model: {c['time_ratio_vs_eager_model']:.2f}x"
        out.append({"target": f"{net}, batch 1: best-backend time speedup >= {MAC_TARGET} x MAC ratio",
                    "group": f"{net}_b1", "value": f"{k}: {c['time_ratio']:.2f}x (vs {c['time_ratio_vs']}){ctx}",
                    "required": f">= {need:.2f}x ({MAC_TARGET} x {c['mac_ratio']:.2f})",
                    "met": bool(c["time_ratio"] >= need)})
    g = groups.get("anchor_hop1_b1")
    if g:
        k, c = best_thinkonce(g)
        rb = g["contenders"].get("ring_buffer")
        if c and rb:
            out.append({"target": "anchor hop 1, batch 1: thinkonce best backend <= hand ring buffer",
                        "group": "anchor_hop1_b1", "value": f"{k}: {c['median_us']:.1f} us/sample",
                        "required": f"<= {rb['median_us']:.1f} us/sample (ring_buffer)",
                        "met": bool(c["median_us"] <= rb["median_us"])})
        co = g["contenders"].get("continual")
        if c and co:
            r = co["median_us"] / c["median_us"]
            out.append({"target": f"anchor hop 1, batch 1: thinkonce >= {CONTINUAL_TARGET:g}x faster than continual-inference",
                        "group": "anchor_hop1_b1", "value": f"{r:.2f}x ({k} {c['median_us']:.1f} vs "
                        f"continual {co['median_us']:.1f} us/sample)",
                        "required": f">= {CONTINUAL_TARGET:g}x", "met": bool(r >= CONTINUAL_TARGET)})
    for gname, g in groups.items():
        if g["batch"] < 64:
            continue
        co = g["contenders"].get("continual")
        k, c = best_thinkonce(g)
        if co and c:
            out.append({"target": f"{gname}: batch {g['batch']} throughput >= continual-inference's",
                        "group": gname, "value": f"{k}: {1e6 * g['batch'] / c['median_us']:.0f} hops/s",
                        "required": f">= {1e6 * g['batch'] / co['median_us']:.0f} hops/s (continual)",
                        "met": bool(c["median_us"] <= co["median_us"])})
    for gname, g in groups.items():
        k, c = best_thinkonce(g)
        ms = g.get("min_state")
        if c and ms:
            fl = c["state_float_bytes_per_stream"]
            rb = g["contenders"].get("ring_buffer", {}).get("state_bytes_per_stream")
            out.append({"target": f"{gname}: state per stream = receptive-field minimum",
                        "group": gname,
                        "value": f"{c['state_bytes_per_stream']} B ({fl} B float + "
                                 f"{c['state_bytes_per_stream'] - fl} B int counters)"
                                 + (f"; ring buffer {rb} B" if rb is not None else ""),
                        "required": f"<= {ms['total_bytes']} B float (trunk {ms['trunk_bytes']} + head "
                                    f"{ms['head_bytes']}; causal aligned trunk {ms['trunk_aligned_bytes']})",
                        "met": bool(fl <= ms["total_bytes"])})
    return out


# ====================================================================== main
def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def environment(args) -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
        "cpu_count": os.cpu_count(), "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
        "libraries": anchors.versions(),
    }
    try:
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    except Exception as e:  # pragma: no cover
        env["onnxruntime"] = f"not importable: {e}"
    try:
        cpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        env["cpu_model"] = next((ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if "Model name" in ln), None)
    except Exception:  # pragma: no cover
        env["cpu_model"] = None
    return env


def group_names(nets: list[str], batches: list[int]) -> list[tuple[str, int]]:
    out = []
    for n in nets:
        for b in batches:
            if n == "anchor":
                out += [("anchor_hop1", b), ("anchor_hop2", b)]
            else:
                out.append((n, b))
    return out


def run(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few rounds (< 60 s): smoke test")
    ap.add_argument("--nets", default=None, help="comma list of ppg,eeg,acc,anchor (default all; --quick: anchor)")
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--threads-b64", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--budget", type=float, default=None, help="seconds of timed rounds per group")
    ap.add_argument("--no-libs", action="store_true", help="skip continual-inference and cached_conv")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench_streaming.json")
    ap.add_argument("--md", type=Path, default=ROOT / "BENCHMARKS.md", help="'-' to skip writing it")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=None,
                    help="measure the first-use cost of fresh compiled/ONNX streams (default: on, off with --quick)")
    ap.add_argument("--profile", action=argparse.BooleanOptionalAction, default=None,
                    help="break the batch-1 eager step of each reference net into parts (default: on, off with --quick)")
    ap.add_argument("--warmup-cap", type=float, default=45.0, help="seconds per backend before giving up")
    args = ap.parse_args(argv)
    nets = (args.nets or ("anchor" if args.quick else "ppg,eeg,acc,anchor")).split(",")
    batches = [int(b) for b in args.batches.split(",")]
    backends = [b for b in args.backends.split(",") if b]
    if args.warmup is None:
        args.warmup = not args.quick
    if args.profile is None:
        args.profile = not args.quick
    budget = args.budget if args.budget is not None else (0.4 if args.quick else 22.0)
    lo, hi = (3, 12) if args.quick else (9, 400)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    try:
        quiet_onnxruntime()
    except ImportError:  # pragma: no cover - the ORT contenders report themselves as not measured
        pass

    t_start = time.time()
    result: dict[str, Any] = {
        "command": "python bench/streaming.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "quick": args.quick, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "environment": environment(args),
        "load_avg_start": _load(), "method": (
            "interleaved round-robin: every round calls each contender of a group once, in turn; "
            "per-hop time = call time / hops per call; median, min and max over rounds. Every contender "
            "threads its state; thinkonce window mode holds the clock @t at its first steady-state value "
            "(one traced graph per stream; the other phases do the same work). Shared cores: OpenMP threads "
            "wait passively (OMP_WAIT_POLICY=PASSIVE) and every onnxruntime session, thinkonce's included, "
            "has intra-/inter-op spinning off."),
        "targets_spec": {"mac": MAC_TARGET, "continual": CONTINUAL_TARGET}, "groups": {},
    }
    names = group_names(nets, batches)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  disable=args.no_progress, transient=False) as progress:
        overall = progress.add_task("groups", total=len(names))
        for gname, batch in names:
            threads = 1 if batch == 1 else args.threads_b64
            torch.set_num_threads(threads)
            key = f"{gname}_b{batch}"
            task = progress.add_task(f"{key}: building", total=None)
            t0 = time.time()
            load0 = _load()
            info, cs = make_group(gname, batch, threads, backends, not args.no_libs)
            build_s = time.time() - t0
            rounds = calibrate(cs, budget, lo, hi)
            progress.update(task, description=f"{key}: {len(cs)} contenders", total=rounds)
            t1 = time.time()
            interleave(cs, rounds, progress, task)
            info.update(build_s=round(build_s, 1), timed_s=round(time.time() - t1, 1), rounds=rounds,
                        load_avg_before=load0, load_avg_after=_load(),
                        contenders={c.name: summarise(c) for c in cs})
            info["group"] = key
            analyse(info)
            result["groups"][key] = info
            progress.advance(overall)
        if args.profile:
            for net in [n for n in nets if n in ("ppg", "eeg", "acc")]:
                task = progress.add_task(f"{net}: profile of the batch-1 step", total=None)
                result.setdefault("profile", {})[net] = profile_net(net, 12 if args.quick else 150)
                progress.update(task, total=1, completed=1)
        if args.warmup:
            for net in [n for n in nets if n in ("ppg", "eeg", "acc")]:
                task = progress.add_task(f"{net}: warm-up of fresh traced streams", total=None)
                result.setdefault("warmup", {})[net] = diagnose_warmup(net, backends, args.warmup_cap)
                progress.update(task, total=1, completed=1)
    result["load_avg_end"] = _load()
    result["duration_s"] = round(time.time() - t_start, 1)
    result["targets"] = targets(result["groups"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    if str(args.md) != "-":
        import make_benchmarks_md

        make_benchmarks_md.write(args.out, args.md)
    return result


if __name__ == "__main__":
    r = run()
    for t in r["targets"]:
        print(("MET     " if t["met"] else "NOT MET ") + t["target"] + ": " + t["value"] + "  (" + t["required"] + ")")
    print(f"wrote {r['command']!r} results; load {r['load_avg_start']} -> {r['load_avg_end']}, {r['duration_s']} s")
