"""Step backends: the same step, run by eager PyTorch, by generated C, or by onnxruntime.

Eager PyTorch spends most of a small step in per-op Python overhead. A step's control flow depends
only on the chunk length and on the stream's phase (samples seen modulo the stride period, and where
the window ends fall), never on the data; so for each such *key* the step is traced once into a
static graph of tensor ops, with the state tensors as explicit inputs and outputs:

* ``"native"``   - the recorded step lowered to C, compiled and called in-process (:mod:`thinkonce.native`);
* ``"compiled"`` - an alias of the fastest in-process backend available: ``"native"`` where a C
  compiler exists, else ``"eager"`` (it was TorchScript, which torch 2.13 deprecates);
* ``"onnx"``     - the traced graph exported to ONNX (opset 17, dynamic batch) and run by onnxruntime.

Keys that occur only during warm-up fall back to the eager step, so outputs and state layout are
identical across backends (tests check it).

A backend gets two functions and nothing of the stream: the pure step ``step(x, state) -> (y, state)``
(no validation, no mutation) and the key function ``key(n, state)`` (the stream's
:meth:`~thinkonce.stream.clock.Clock.trace_key` on the state's clock).
"""

from __future__ import annotations

import io
import threading
import warnings
from typing import Any, Callable

import torch
import torch.nn as nn
from torch import Tensor

from .state import State

BACKENDS = ("eager", "compiled", "onnx", "native")


def resolve_backend(backend: str) -> str:
    """The backend that runs: ``"compiled"`` means native where a C compiler exists, else eager."""
    if backend != "compiled":
        return backend
    from ..native.backend import available

    return "native" if available() else "eager"

#: the pure step function a backend traces: ``(x, state) -> (y, new_state)``
StepFn = Callable[[Tensor, State], tuple[Tensor, State]]
#: the key function: ``(chunk length, state) -> key`` (None: warm-up, run eagerly)
KeyFn = Callable[[int, State], Any]


class _StepModule(nn.Module):
    """``forward(x, *state_tensors) -> (y, *new_state_tensors)`` for one key, in a fixed key order."""

    def __init__(self, step: StepFn, keys_in: list[str], keys_out: list[str],
                 fixed: State | None = None) -> None:
        super().__init__()
        self.step = step
        self.keys_in, self.keys_out = keys_in, keys_out
        self.fixed = dict(fixed or {})  # state entries the graph never reads as tensors (see TracedSteps)

    def forward(self, x: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
        state = dict(self.fixed)
        state.update(zip(self.keys_in, tensors))
        y, new = self.step(x, state)
        return (y, *[new[k] for k in self.keys_out])


class TracedSteps:
    """Per-key built steps (onnxruntime graphs; native C steps subclass it), created lazily and cached.

    Building a graph costs ~0.1-1 s, so a key is traced only when it comes back (a fixed hop or chunk
    size repeats every period; a one-off chunk length runs eagerly), and at most ``max_graphs`` keys
    are kept: a caller feeding ever-new chunk lengths gets eager steps, not a growing pile of graphs.
    """

    #: a key is traced on its ``trace_after``-th occurrence
    trace_after = 2
    #: most graphs kept per stream; further keys run eagerly
    max_graphs = 64

    def __init__(self, step: StepFn, key: KeyFn, kind: str) -> None:
        if kind not in ("onnx", "native"):
            raise ValueError(kind)
        self.eager, self.key = step, key
        self.kind = kind
        self.cache: dict[tuple, Callable[[Tensor, State], tuple[Tensor, State]]] = {}
        self.seen: dict[tuple, int] = {}
        self.lock = threading.Lock()

    def step(self, x: Tensor, state: State, donate: bool = False) -> tuple[Tensor, State]:
        return self.step_keyed(self.key(x.shape[-1], state), x, state, donate)

    def built(self, key: Any, batch: int) -> Callable[..., tuple[Tensor, State]] | None:
        """The step built for ``key`` (what :attr:`key` returns) at this batch size, if any (it may be the
        eager step, where building failed)."""
        return self.cache.get((key, batch))

    def step_keyed(self, key: Any, x: Tensor, state: State, donate: bool = False) -> tuple[Tensor, State]:
        """:meth:`step` with the key already computed (``self.key(x.shape[-1], state)``)."""
        if key is None:
            return self.eager(x, state)
        key = (key, x.shape[0])  # steady-state key fixes the layout; batch-specialised graphs fold all shapes
        fn = self.cache.get(key)
        if fn is None:
            with self.lock:
                fn = self.cache.get(key)
                if fn is None:
                    count = self.seen.get(key, 0) + 1
                    if count >= self.trace_after and len(self.cache) < self.max_graphs:
                        self.seen.pop(key, None)
                        # the eager step on this input: the graph's layout probe, its check, and the result
                        ref = self.eager(x, state)
                        try:
                            fn = self._build(x, state, ref[1])
                            _check_against_eager(fn, x, state, ref)
                        except Exception as e:  # an op the tracer/exporter cannot take: stay correct, eagerly
                            warnings.warn(
                                f"backend {self.kind!r} could not build a step graph for chunks of {x.shape[-1]} "
                                f"samples ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}); "
                                "these steps run eagerly (same results, eager speed)",
                                RuntimeWarning, stacklevel=4,
                            )
                            fn = self.eager
                        self.cache[key] = fn
                        return ref
                    if len(self.seen) < 16 * self.max_graphs:  # bounded bookkeeping too
                        self.seen[key] = count
            if fn is None:
                return self.eager(x, state)
        return _call(fn, x, state, donate)

    def _build(self, x: Tensor, state: State, probe: State) -> Callable[[Tensor, State], tuple[Tensor, State]]:
        """The graph for this key; ``probe`` is the new state the eager step returns for ``(x, state)``."""
        keys_in = sorted(state)
        # state entries the step hands back untouched (e.g. counters of ops that never skip) stay out
        # of the graph: fewer inputs/outputs to marshal, no identity copies in the graph
        passthrough = sorted(k for k in probe if k in state and probe[k] is state[k])
        keys_out = sorted(k for k in probe if k not in passthrough)
        mod = _StepModule(self.eager, keys_in, keys_out).eval()
        args = (x, *[state[k] for k in keys_in])
        return _onnx_runner(mod, args, keys_in, keys_out, passthrough)


def _check_against_eager(fn: Callable[[Tensor, State], tuple[Tensor, State]], x: Tensor, state: State,
                         ref: tuple[Tensor, State]) -> None:
    """A new graph must reproduce the eager step ``ref`` on the input it was built from, outputs and state
    alike (a tracer or runtime that mishandles an op then costs speed, never correctness)."""
    y_ref, new_ref = ref
    y, new = fn(x, state)
    pairs = [(y, y_ref)] + [(new.get(k), v) for k, v in new_ref.items()]
    for got, want in pairs:
        if got is None or got.shape != want.shape:
            raise RuntimeError("the traced step disagrees with the eager step on shapes")
        if want.numel() and want.is_floating_point():
            scale = max(1.0, float(want.abs().max()))
            if not bool(torch.isfinite(got).all()) and bool(torch.isfinite(want).all()):
                raise RuntimeError("the traced step produced non-finite values")
            if float((got - want).abs().max()) > 1e-4 * scale:
                raise RuntimeError("the traced step disagrees with the eager step")
        elif not torch.equal(got, want):
            raise RuntimeError("the traced step disagrees with the eager step on counters")


def _call(fn: Callable[..., tuple[Tensor, State]], x: Tensor, state: State, donate: bool) -> tuple[Tensor, State]:
    """Call a built step; only native steps take ``donate`` (the others never write into their inputs)."""
    return fn(x, state, donate) if donate and getattr(fn, "takes_donate", False) else fn(x, state)


def export_step(step: StepFn, chunk: Tensor, state: State, f: Any, opset: int = 17,
                dynamic_batch: bool = True, keys_out: list[str] | None = None) -> tuple[list[str], list[str]]:
    """Export the pure ``step`` for this chunk length and phase to ONNX: inputs ``x`` + state, outputs
    ``y`` + state.

    With ``dynamic_batch=False`` every shape is static, so the exporter folds all shape arithmetic
    away (several times faster for small steps); with ``True`` the batch axis stays symbolic.
    """
    keys_in = sorted(state)
    if keys_out is None:
        _, probe = step(chunk, state)
        keys_out = sorted(probe)
    mod = _StepModule(step, keys_in, keys_out).eval()
    args = (chunk, *[state[k] for k in keys_in])
    in_names = ["x"] + [f"state.{k}" for k in keys_in]
    out_names = ["y"] + [f"new_state.{k}" for k in keys_out]
    dyn = {n: {0: "batch"} for n in in_names + out_names} if dynamic_batch else None
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused attention kernel has no ONNX form
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(mod, args, f, input_names=in_names, output_names=out_names, dynamic_axes=dyn,
                              opset_version=opset, dynamo=False)
        finally:
            torch.backends.mha.set_fastpath_enabled(fast)
    return in_names, out_names


class _StateModule(nn.Module):
    """``forward(*state_tensors) -> new_state_tensors``: a pure function of the state alone."""

    def __init__(self, fn: Callable[[State], State], keys_in: list[str], keys_out: list[str]) -> None:
        super().__init__()
        self.fn, self.keys_in, self.keys_out = fn, keys_in, keys_out

    def forward(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        new = self.fn(dict(zip(self.keys_in, tensors)))
        return tuple(new[k] for k in self.keys_out)


def export_state_fn(fn: Callable[[State], State], state: State, f: Any, opset: int = 17) -> list[str]:
    """Export a pure function of the state (an SOI stream's precompute) to ONNX: inputs ``state.<key>``,
    outputs ``new_state.<key>``, the batch axis symbolic. Returns the output names."""
    keys_in = sorted(state)
    keys_out = sorted(fn(state))
    mod = _StateModule(fn, keys_in, keys_out).eval()
    in_names = [f"state.{k}" for k in keys_in]
    out_names = [f"new_state.{k}" for k in keys_out]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(mod, tuple(state[k] for k in keys_in), f, input_names=in_names, output_names=out_names,
                          dynamic_axes={n: {0: "batch"} for n in in_names + out_names}, opset_version=opset,
                          dynamo=False)
    return out_names


def _onnx_runner(mod: nn.Module, args: tuple, keys_in: list[str], keys_out: list[str], passthrough: list[str]):
    import numpy as np
    import onnxruntime as ort

    buf = io.BytesIO()
    export_step(mod.step, args[0], dict(zip(keys_in, args[1:])), buf, dynamic_batch=False, keys_out=keys_out)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    opts.inter_op_num_threads = 1
    # no busy-waiting: on shared or small cores a spinning pool steals the core from everything else
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    in_names = [i.name for i in sess.get_inputs()]
    out_names = [o.name for o in sess.get_outputs()]
    # ONNX drops inputs that the graph does not use; feed only those it kept
    feed_keys = [(n, n[len("state."):]) for n in in_names if n.startswith("state.")]
    has_x = "x" in in_names

    def run(x: Tensor, state: State) -> tuple[Tensor, State]:
        feed = {"x": x.numpy()} if has_x else {}
        for name, k in feed_keys:
            feed[name] = state[k].numpy()
        outs = sess.run(out_names, feed)
        new = {k: torch.from_numpy(o if o.flags.c_contiguous else np.ascontiguousarray(o))
               for k, o in zip(keys_out, outs[1:])}
        for k in passthrough:
            new[k] = state[k]
        return torch.from_numpy(outs[0]), new

    return run
