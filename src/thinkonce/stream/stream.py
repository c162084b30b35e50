"""The user-facing stream: ``thinkonce.stream(model, ...)`` and :class:`Stream`.

A :class:`Stream` is code only; its state is data the caller holds. ``step(x, state) -> (y, state)`` is
a pure function, so states can be replayed, saved, batched over many independent signals and reset per
row without the stream noticing.
"""

from __future__ import annotations

import copy
import math
from fractions import Fraction
from typing import Any, Iterable, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from ..errors import StreamInputError, ThinkonceError, UnsupportedNodeError
from .convert import Converter, Plan
from .program import Program
from .backends import BACKENDS, TracedSteps, export_step
from .exported import as_module
from .check import self_check
from .frontend import copy_model
from .state import State, state_batch
from .window import WindowSpec, approximate_window_forward, extended_window_forward, stride_period, window_spec

EDGES = ("exact", "stale")


def _all_finite(x: Tensor) -> bool:
    """Whether ``x`` holds no NaN/Inf. A NaN or Inf makes the sum non-finite, so one reduction and
    one scalar read settle the common case (~2 us, a third of ``isfinite().all()``); only a
    non-finite sum (which also happens when finite values overflow) pays for the exact check. Tiny
    chunks (a few samples per step) are checked value by value in Python, cheaper still."""
    if x.numel() <= 32:
        return all(map(math.isfinite, x.reshape(-1).tolist()))
    if math.isfinite(float(x.sum())):
        return True
    return bool(torch.isfinite(x).all())


def _model_dtype(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    for p in model.parameters():
        return p.dtype, p.device
    for b in model.buffers():
        if b.is_floating_point():
            return b.dtype, b.device
    return torch.float32, torch.device("cpu")


def _infer_channels(model: nn.Module) -> int | None:
    """Channels of the signal: those of the first channel-aware layer reached from the input."""
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception:
        for m in model.modules():  # registration order: usually the first layer first
            for attr in ("in_channels", "num_features"):
                if isinstance(getattr(m, attr, None), int):
                    return int(getattr(m, attr))
        return None
    mods = dict(gm.named_modules())
    frontier = [n for n in gm.graph.nodes if n.op == "placeholder"]
    seen = set()
    while frontier:
        n = frontier.pop(0)
        if n in seen:
            continue
        seen.add(n)
        if n.op == "call_module":
            m = mods[n.target]
            for attr in ("in_channels", "num_features"):
                if isinstance(getattr(m, attr, None), int):
                    return int(getattr(m, attr))
        frontier.extend(n.users)
    if not any(p.dim() >= 2 for p in model.parameters()):
        return 1  # no layer cares about channels (pooling, activations): any count streams the same
    return None


class Stream:
    """A model converted into a stateful step function.

    Continuous mode (``window=None``): concatenating the outputs of :meth:`step` over any chunking of a
    signal, then :meth:`flush`, equals ``model(signal)``. Outputs lag by :attr:`delay` input samples
    where "same" padding needs future samples.

    Window mode (``window=W, hop=H``): every time a window of W samples completes (at W, W+H, W+2H, ...
    samples), the stream emits the model's output for that window, computed from cached activations with
    real signal as left context (signal padding). ``y`` stacks the windows completed by the chunk along
    dim 1: shape ``(batch, n_windows, *output_shape[1:])``.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        window: int | None = None,
        hop: int | None = None,
        example_input: Tensor | None = None,
        edge: str = "exact",
        allow_nonfinite: bool = False,
        backend: str = "eager",
        allow_misaligned: bool = False,
        check: bool = True,
    ) -> None:
        model, example_input = as_module(model, example_input, window)
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"thinkonce.stream expects an nn.Module, a torch.export.ExportedProgram or a TorchScript "
                f"module, got {type(model).__name__}"
            )
        self.spec: WindowSpec | None = None
        mode_dependent = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd, nn.modules.instancenorm._InstanceNorm)
        training = [
            name or "<root>" for name, m in model.named_modules()
            if m.training and (m is model or isinstance(m, mode_dependent))
        ]
        if training:
            raise ThinkonceError(
                f"the model is in training mode (e.g. {training[0]!r}); BatchNorm and Dropout would not "
                "behave as at inference. Call model.eval() before thinkonce.stream(model, ...)."
            )
        if (window is None) != (hop is None):
            raise ValueError("window mode needs both window=W and hop=H (or neither, for continuous mode)")
        if edge not in EDGES:
            raise ValueError(f"edge must be one of {EDGES}, got {edge!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend
        self.window, self.hop, self.edge = window, hop, edge
        self.allow_nonfinite = allow_nonfinite
        self.model = copy_model(model)  # the stream never sees later changes to the user's model
        self.model.requires_grad_(False)  # inference only: weights become constants of traced steps
        self.dtype, self.device = _model_dtype(self.model)
        example = self._example(example_input)
        self.input_frame_shape = tuple(example.shape[1:-1])  # (channels, ...) of one frame
        self.plan: Plan = Converter(self.model, example, window).convert()
        self.program = Program(self.plan)
        self._like = torch.empty(0, dtype=self.dtype, device=self.device)
        self._owes_edge = any(p.op.owes_at_end() for p in self.plan.nodes if p.op is not None)
        out = self.plan.output_arg
        if not isinstance(out, torch.fx.Node):
            raise UnsupportedNodeError("the model returns a tuple/dict; a stream needs a single tensor output")
        self._out_shape = self.plan.example_shapes[out]
        self._check_batch_first(example)
        if window is None:
            p = self.plan.by_node[out]
            if not p.temporal:
                raise UnsupportedNodeError(
                    f"the model's output '{out.name}' has no time axis; in continuous mode the output must be "
                    "a sequence. Use window mode (window=W, hop=H) for per-window outputs."
                )
            self.out_tdim = p.tdim
            self.out_rate = p.rate
            self._template = None
            self.delay = self._measure_delay()
            period, _ = stride_period(self.plan)
            rf = int(max(p.rf for p in self.plan.nodes if p.temporal)) + 1
            self._period = period
            self._stable = -(-2 * rf // period) * period  # after this many samples the layout is periodic
        else:
            if window != example.shape[-1]:
                raise ValueError(f"example_input has {example.shape[-1]} samples but window={window}")
            self.spec = window_spec(self.plan, window, hop, allow_misaligned)
            self.delay = 0
            p = self.spec.period
            self._preroll_len = -(-(self.spec.extension + window) // p) * p
            self._template = self._preroll(1)
            self._period = self.spec.period
        self._init_keys = set(self.init_state(1))
        # state entries whose frame count depends on more than the phase (an S-CC's held frame after
        # precompute): traced backends key their graphs on these too
        self._layout_keys = [p.node.name + "." + k for p in self.plan.nodes if p.op is not None
                             for k in getattr(p.op, "layout_keys", ())]
        self._misaligned = self.spec is not None and hop % self.spec.period != 0
        if check:
            self_check(self)
        self._traced = TracedSteps(self, backend) if backend != "eager" else None

    # ------------------------------------------------------------------ construction helpers
    def _check_batch_first(self, example: Tensor) -> None:
        """Streams keep every value batch-first; a model whose output is not would be stacked wrongly.

        The example's output must lead with the example's batch, and so must the output of a batch two
        larger (run once here); models that cannot take another batch size (exported with a static
        batch) are checked on the example alone.
        """
        b = example.shape[0]
        shapes = [(b, self._out_shape)]
        x2 = example[:1].expand(b + 2, *example.shape[1:]).contiguous()
        try:
            with torch.no_grad():
                y2 = self.model(x2)
            if isinstance(y2, Tensor):
                shapes.append((b + 2, tuple(y2.shape)))
        except Exception:
            pass
        for batch, shape in shapes:
            if not isinstance(shape, tuple) or not shape or shape[0] != batch:
                raise UnsupportedNodeError(
                    f"the model's output is not batch-first: {batch} input stream(s) gave an output of shape "
                    f"{shape}. A stream stacks outputs per stream along dim 0; return (batch, ...)."
                )

    def _example(self, example_input: Tensor | None) -> Tensor:
        if example_input is not None:
            if not isinstance(example_input, Tensor) or example_input.dim() < 2:
                raise ValueError("example_input must be a tensor shaped (batch, channels, time)")
            ex = example_input.to(self.dtype)
            if self.window is not None and ex.shape[-1] != self.window:
                raise ValueError(f"example_input has {ex.shape[-1]} samples but window={self.window}")
            return ex
        c = _infer_channels(self.model)
        if c is None:
            raise ValueError("cannot infer the input channels; pass example_input=torch.zeros(1, C, T)")
        length = self.window if self.window is not None else 2048
        return torch.zeros(2, c, length, dtype=self.dtype, device=self.device)

    def _measure_delay(self) -> int:
        """Look-ahead in input samples: frames still owed after a long zero signal, times the output stride."""
        period, _ = stride_period(self.plan)
        rf = max((p.rf for p in self.plan.nodes if p.temporal), default=Fraction(1))
        n = int(-(-(int(rf) * 2 + 16) // period) * period)
        x = torch.zeros((1, *self.input_frame_shape, n), dtype=self.dtype, device=self.device)
        st = self.program.init_state(1, self._like)
        with torch.no_grad():
            _, st = self.program.run(x, st, "step")
            env, _ = self.program.run(x[..., :0], st, "flush")
        owed = env[self.plan.output_arg].shape[self.out_tdim]
        return int(owed * self.out_rate)

    def _preroll(self, batch: int, samples: int | None = None) -> State:
        """Window-mode start state: the stream has seen zeros long enough to fill every buffer (zero
        history), a multiple of the stride period so that window frames stay aligned."""
        assert self.spec is not None
        st = self.program.init_state(batch, self._like)
        n = self._preroll_len if samples is None else samples
        x = torch.zeros((batch, *self.input_frame_shape, n), dtype=self.dtype, device=self.device)
        with torch.no_grad():
            env, st = self.program.run(x, st, self._mode)
        for v in self.plan.head_inputs:
            f = self.spec.frames[v.name]
            d = self.plan.by_node[v].tdim
            chunk = env[v]
            shape = list(chunk.shape)
            shape[d] = f
            ring = torch.cat([chunk.new_zeros(shape), chunk], dim=d)
            st[f"@ring.{v.name}"] = ring.narrow(d, ring.shape[d] - f, f)
        return st

    @property
    def _mode(self) -> str:
        return "stale" if self.edge == "stale" else "step"

    # ------------------------------------------------------------------ state API
    def init_state(self, batch: int = 1) -> State:
        """A fresh state for ``batch`` independent streams (one row each)."""
        if not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive int, got {batch!r}")
        if self.spec is None:
            st = self.program.init_state(batch, self._like)
        else:
            assert self._template is not None
            st = {k: v.expand(batch, *v.shape[1:]).clone() for k, v in self._template.items()}
        st["@t"] = torch.zeros(batch, dtype=torch.int64, device=self.device)
        return st

    def reset(self, state: State, rows: int | Sequence[int] | Tensor) -> State:
        """Forget the history of the chosen rows: they continue as if their past input had been zeros.

        Rows of a batch advance in lock-step (one chunk for all), so a reset row keeps the shared clock;
        its next outputs see zeros where its history was. Other rows are untouched. Returns a new state.
        """
        self._check_state(state, None)
        b = state_batch(state)
        idx = torch.as_tensor([rows] if isinstance(rows, int) else list(map(int, rows)), dtype=torch.int64)
        if idx.numel() == 0:
            return dict(state)
        if int(idx.min()) < 0 or int(idx.max()) >= b:
            raise StreamInputError(f"rows {idx.tolist()} out of range for a state of {b} streams")
        t = int(state["@t"][0])
        tmpl = self._zero_history(len(idx), t)
        new: State = {}
        for k, v in state.items():
            if k == "@t":
                new[k] = v
                continue
            tv = tmpl.get(k)
            if tv is None or tv.shape[1:] != v.shape[1:]:
                raise StreamInputError(
                    f"cannot reset rows: state entry {k!r} has a layout a zero history does not reproduce at "
                    f"t={t}. Keep a separate state for a restarted stream."
                )
            new[k] = v.index_copy(0, idx.to(v.device), tv.to(v.dtype))
        return new

    def _zero_history(self, batch: int, t: int) -> State:
        """State after a zero signal of a length congruent to ``t`` (same phase, hence same layout)."""
        if self.spec is None:
            period, stable = self._period, self._stable
            n = t if t < stable else stable + (t - stable) % period
            st = self.program.init_state(batch, self._like)
            x = torch.zeros((batch, *self.input_frame_shape, n), dtype=self.dtype, device=self.device)
            with torch.no_grad():
                _, st = self.program.run(x, st, "step")
            return st
        period = self.spec.period
        n = self._preroll_len + (t % period)
        return self._preroll(batch, n) if t % period else self._preroll(batch)

    # ------------------------------------------------------------------ validation
    def _check_state(self, state: Any, batch: int | None) -> None:
        if not isinstance(state, dict) or "@t" not in state:
            raise StreamInputError("state must be the dict returned by Stream.init_state() or a previous step")
        if not state.keys() >= getattr(self, "_init_keys", set()):
            missing = getattr(self, "_init_keys", set()) - set(state)
            raise StreamInputError(
                f"state does not belong to this stream: missing {sorted(missing)[:3]}; use this stream's init_state()"
            )
        t = state["@t"]
        if batch is not None and t.shape[0] != batch:
            raise StreamInputError(
                f"the chunk has batch {batch} but the state holds {t.shape[0]} streams; "
                f"create the state with init_state(batch={batch})"
            )
        if t.numel() > 1 and bool((t != t[0]).any()):
            # rows at different positions may share a step only if every phase counter agrees and, in
            # window mode, the window boundaries fall at the same offsets
            split = [k for k, v in state.items() if k != "@t" and v.dtype == torch.int64 and bool((v != v[0]).any())]
            phases: set = set()
            if self.spec is not None:
                W, H = self.spec.window, self.spec.hop
                phases = {v if v < W else ("steady", (v - W) % H) for v in t.tolist()}
            if split or len(phases) > 1:
                raise StreamInputError(
                    f"the state's rows are at different phases ({sorted(set(t.tolist()))[:4]} samples seen); rows of "
                    "one state advance in lock-step. Batch only streams at the same phase (StreamPool does this)."
                )

    def _check_chunk(self, x: Any) -> None:
        if not isinstance(x, Tensor):
            raise StreamInputError(f"chunk must be a torch.Tensor, got {type(x).__name__}")
        want = len(self.input_frame_shape) + 2
        if x.dim() != want:
            dims = ", ".join(["batch", *[str(c) for c in self.input_frame_shape], "time"])
            raise StreamInputError(f"chunk must have {want} dims ({dims}), got shape {tuple(x.shape)}")
        if tuple(x.shape[1:-1]) != self.input_frame_shape:
            raise StreamInputError(
                f"chunk has {tuple(x.shape[1:-1])} channels but the model expects {self.input_frame_shape}; "
                "time must be the last axis"
            )
        if x.dtype != self.dtype:
            raise StreamInputError(f"chunk dtype is {x.dtype} but the model computes in {self.dtype}; convert with x.to({self.dtype})")
        if x.device != self.device:
            raise StreamInputError(f"chunk is on {x.device} but the stream is on {self.device}")
        if not self.allow_nonfinite and x.numel() and not _all_finite(x):
            raise StreamInputError(
                "chunk contains NaN or Inf; they would poison the cached activations of the stream. "
                "Clean the signal first, or pass allow_nonfinite=True to thinkonce.stream."
            )

    # ------------------------------------------------------------------ stepping
    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """Feed ``x`` (batch, channels, n) with any n >= 0; returns the new outputs and a new state.

        The input state is left unchanged (replaying a step from it gives the same result). A rejected
        chunk raises before anything is computed. Runs without autograd.
        """
        self._check_chunk(x)
        self._check_state(state, x.shape[0])
        if torch.is_grad_enabled():  # entering no_grad costs a few us: only when it changes something
            with torch.no_grad():
                return self._dispatch(x, state)
        return self._dispatch(x, state)

    def _dispatch(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        if self._traced is not None:
            return self._traced.step(x, state)
        return self._step_impl(x, state)

    def _step_impl(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """The step without validation (the code that backends trace)."""
        t = int(state["@t"][0])
        if self.spec is None:
            env, new = self.program.run(x, state, "step")
            new["@t"] = state["@t"] + x.shape[-1]
            return env[self.plan.output_arg], new
        return self._window_step(x, state, t)

    def _trace_key(self, n: int, state: State) -> tuple | None:
        """What the step's control flow depends on; None during warm-up (run eagerly)."""
        t = int(state["@t"][0])
        if self.spec is None:
            if t < self._stable:
                return None
            return (n, t % self._period, *(state[k].shape[-1] for k in self._layout_keys))
        if t < self.spec.window:
            return None
        return (n, t % math.lcm(self.spec.hop, self.spec.period))

    def precompute(self, state: State) -> State:
        """Fully predictive SOI: run the deep path of every shifted S-CC for the next step now (idle time
        between samples); the next :meth:`step` then computes only the shallow path. Outputs are unchanged.
        See :mod:`thinkonce.soi.precompute`."""
        from ..soi.precompute import precompute

        return precompute(self, state)

    def export_onnx(self, path: str, batch: int | None = None, chunk: int | None = None, opset: int = 17) -> dict[str, Any]:
        """Export the step to ONNX: inputs ``x`` and ``state.<key>``, outputs ``y`` and ``new_state.<key>``.

        The graph is the steady-state step for chunks of ``chunk`` samples (default: the hop in window
        mode, the stride period in continuous mode); the batch axis is dynamic. The stride phase travels
        in the state (``state.@t``): when ``chunk`` is not a multiple of the phase period (the stride
        period; in window mode its least common multiple with the hop) the calls cycle through phases,
        and the graph holds one branch per phase, chosen from ``state.@t`` by ``If`` nodes. Feed it a
        state from :meth:`init_state` after :attr:`warmup` samples (the first window in window mode),
        and its outputs back as the next state. Returns the input/output names and the phases.
        """
        import io

        import onnx

        from .onnx_phases import merge_phases

        n = chunk if chunk is not None else (self.hop if self.spec is not None else self._period)
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"chunk must be a positive number of samples, got {n!r}")
        modulus = math.lcm(self.hop, self._period) if self.spec is not None else self._period
        b = batch or 1
        st = self.init_state(b)
        warm = self.warmup
        x = torch.zeros((b, *self.input_frame_shape, n), dtype=self.dtype)
        with torch.no_grad():
            _, st = self._step_impl(torch.zeros((b, *self.input_frame_shape, warm), dtype=self.dtype), st)
            if n % modulus == 0:
                ins, outs = export_step(self, x, st, path, opset=opset)
                return {"inputs": ins, "outputs": outs, "chunk": n, "warmup": warm, "phases": [warm % modulus]}
            models, phases = [], []
            while (phase := int(st["@t"][0]) % modulus) not in phases:
                buf = io.BytesIO()
                ins, outs = export_step(self, x, st, buf, opset=opset)
                models.append(onnx.load_from_string(buf.getvalue()))
                phases.append(phase)
                _, st = self._step_impl(x, st)
        merged = merge_phases(models, phases, modulus)
        onnx.save(merged, path)
        return {"inputs": [i.name for i in merged.graph.input], "outputs": outs, "chunk": n, "warmup": warm,
                "phases": phases}

    @property
    def warmup(self) -> int:
        """Samples after which every step of a period-multiple chunk has the same state layout."""
        if self.spec is not None:
            return self.spec.window
        return self._stable

    def _window_step(self, x: Tensor, state: State, t: int) -> tuple[Tensor, State]:
        spec = self.spec
        assert spec is not None
        n = x.shape[-1]
        W, H = spec.window, spec.hop
        # window ends b in (t, t+n] with b >= W and (b - W) % H == 0
        first = W if t < W else W + (-(-(t + 1 - W) // H)) * H
        ends = list(range(first, t + n + 1, H))
        cuts = [e - t for e in ends]
        if not cuts or cuts[-1] != n:
            cuts.append(n)
        st = {k: v for k, v in state.items() if not k.startswith("@")}
        rings = {v: state[f"@ring.{v.name}"] for v in self.plan.head_inputs}
        outs = []
        start = 0
        for i, c in enumerate(cuts):
            piece = x[..., start:c]
            start = c
            env, st = self.program.run(piece, st, self._mode)
            for v in self.plan.head_inputs:
                d = self.plan.by_node[v].tdim
                f = spec.frames[v.name]
                new_frames = env[v]
                k = new_frames.shape[d]
                if k >= f:
                    rings[v] = new_frames.narrow(d, k - f, f)
                elif k:
                    rings[v] = torch.cat([rings[v].narrow(d, k, f - k), new_frames], dim=d)
            if i < len(ends):
                outs.append(self._emit(st, rings, env))
        new = dict(st)
        for v, r in rings.items():
            new[f"@ring.{v.name}"] = r
        new["@t"] = state["@t"] + n
        if outs:
            y = torch.stack(outs, dim=1)
        else:
            y = torch.zeros((x.shape[0], 0, *self._out_shape[1:]), dtype=self.dtype, device=self.device)
        return y, new

    def _emit(self, st: State, rings: dict, env: dict) -> Tensor:
        """Window output: committed features plus the right edge computed now (flush on a copy)."""
        assert self.spec is not None
        if not self._owes_edge:  # causal trunk: every frame of the window is already final
            return self.program.head({v: r for v, r in rings.items()}, env)
        probe = self._like.new_zeros((next(iter(rings.values())).shape[0] if rings else 1, *self.input_frame_shape, 0))
        penv, _ = self.program.run(probe, st, "flush")
        feats = {}
        for v, r in rings.items():
            d = self.plan.by_node[v].tdim
            f = self.spec.frames[v.name]
            full = torch.cat([r, penv[v]], dim=d)
            feats[v] = full.narrow(d, full.shape[d] - f, f)
        return self.program.head(feats, env)

    @torch.no_grad()
    def flush(self, state: State) -> tuple[Tensor, State]:
        """End of the signal: emit what the right-edge padding still owes; returns a fresh state.

        In window mode nothing is owed (every window's edge is already computed): the output is empty.
        """
        self._check_state(state, None)
        b = state_batch(state)
        if self.spec is not None:
            y = torch.zeros((b, 0, *self._out_shape[1:]), dtype=self.dtype, device=self.device)
            return y, dict(state)
        x = torch.zeros((b, *self.input_frame_shape, 0), dtype=self.dtype, device=self.device)
        env, _ = self.program.run(x, state, "flush")
        return env[self.plan.output_arg], self.init_state(b)

    # ------------------------------------------------------------------ convenience
    def run(self, signal: Tensor, chunk: int | Iterable[int] | None = None, state: State | None = None) -> Tensor:
        """Stream a whole signal (in chunks of ``chunk`` samples, or the given chunk lengths) and return all
        outputs concatenated (continuous mode: including :meth:`flush`)."""
        if signal.dim() == len(self.input_frame_shape) + 1:
            signal = signal.unsqueeze(0)
        st = state if state is not None else self.init_state(signal.shape[0])
        n = signal.shape[-1]
        if chunk is None:
            lengths = [self.hop or n]
        elif isinstance(chunk, int):
            lengths = [chunk]
        else:
            lengths = list(chunk)
        if not lengths or any((not isinstance(c, int)) or c < 0 for c in lengths) or not any(lengths):
            raise ValueError(f"chunk must be a positive number of samples (or lengths >= 0, not all 0), got {chunk!r}")
        outs, pos, i = [], 0, 0
        while pos < n:
            c = lengths[i % len(lengths)]
            y, st = self.step(signal[..., pos : pos + c], st)
            outs.append(y)
            pos += c
            i += 1
        if self.spec is None:
            y, _ = self.flush(st)
            outs.append(y)
            return torch.cat(outs, dim=self.out_tdim)
        return torch.cat(outs, dim=1) if outs else torch.zeros((signal.shape[0], 0, *self._out_shape[1:]))

    def reference(self, x_ext: Tensor) -> Any:
        """Window mode: the model on windows extended to the left (signal padding), features cropped to
        the window before the head. ``x_ext`` has ``window + k * period`` samples, k >= 0."""
        if self.spec is None:
            raise ThinkonceError("reference() is defined for window mode only")
        return extended_window_forward(self.plan, self.spec, x_ext)

    def approximate(self, x_window: Tensor) -> Any:
        """Window mode baseline: each hop of ``x_window`` run through the trunk alone (zero-padded at
        its edges), features concatenated, then the head. Cheap and wrong at every hop boundary."""
        if self.spec is None:
            raise ThinkonceError("approximate() is defined for window mode only")
        return approximate_window_forward(self.plan, self.spec, x_window, self.program)

    @property
    def extension(self) -> int:
        """Window mode: left context (samples) that makes the window features exact."""
        if self.spec is None:
            raise ThinkonceError("extension is defined for window mode only")
        return self.spec.extension

    def describe(self) -> list[dict[str, Any]]:
        """One row per graph node: kind, time axis, stride (input samples per frame), receptive field
        (input samples one output frame depends on, padding excluded: the definition of ``analyze``)."""
        from ..analyze import receptive_fields

        rfs = receptive_fields(self.plan)
        rows = []
        for p in self.plan.nodes:
            rows.append({
                "node": p.node.name,
                "target": str(p.node.target),
                "kind": p.kind,
                "stride": None if p.rate is None else str(p.rate),
                "receptive_field": rfs.get(p.node.name) if p.temporal else None,
                "op": None if p.op is None else p.op.kind,
            })
        return rows

    def __repr__(self) -> str:
        mode = "continuous" if self.spec is None else f"window={self.window}, hop={self.hop}, edge={self.edge!r}"
        return f"Stream({type(self.model).__name__}, {mode}, delay={self.delay})"


def stream(
    model: nn.Module,
    *,
    window: int | None = None,
    hop: int | None = None,
    example_input: Tensor | None = None,
    edge: str = "exact",
    allow_nonfinite: bool = False,
    backend: str = "eager",
    allow_misaligned: bool = False,
    check: bool = True,
) -> Stream:
    """Convert a trained model (in eval mode) into a :class:`Stream`. The model is not modified.

    ``window=None``: continuous mode, exact against ``model(signal)``. ``window=W, hop=H``: window mode
    (StreamiNNC); ``edge="exact"`` recomputes the few right-edge frames that zero padding made
    provisional, ``edge="stale"`` reuses them as the paper's code does (cheaper, approximate).
    ``backend``: ``"eager"`` (PyTorch ops from Python), ``"compiled"`` (each steady-state step traced and
    frozen with TorchScript) or ``"onnx"`` (the same graph run by onnxruntime); same outputs and state.
    ``allow_misaligned=True`` accepts a hop that breaks pooling alignment (for measuring its error; see
    :func:`thinkonce.stream.bounds.pooling_error_bound`) instead of raising :class:`AlignmentError`.
    ``check=True`` (default) runs the new stream on a random probe under a random chunking and raises
    :class:`ConversionError`, naming the first diverging node, if it disagrees with the model
    (continuous) or with :meth:`Stream.reference` (window mode).
    """
    return Stream(model, window=window, hop=hop, example_input=example_input, edge=edge,
                  allow_nonfinite=allow_nonfinite, backend=backend, allow_misaligned=allow_misaligned,
                  check=check)
