"""The user-facing stream: ``thinkonce.stream(model, ...)`` and :class:`Stream`.

A :class:`Stream` is code only; its state is data the caller holds. ``step(x, state) -> (y, state)`` is
a pure function, so states can be replayed, saved, batched over many independent signals and reset per
row without the stream noticing.
"""

from __future__ import annotations

import copy
import math
import operator
from itertools import chain
from pathlib import Path
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from ..errors import StreamInputError, ThinkonceError, UnsupportedNodeError
from .convert import Converter, Plan
from .program import Program
from .backends import BACKENDS, TracedSteps, export_step, resolve_backend

if TYPE_CHECKING:  # pragma: no cover
    from .bound import BoundStep
from .exported import as_module
from .check import self_check
from .clock import Clock
from .frontend import copy_model
from .state import Field, State, StateSpec, fingerprint, state_batch
from .window import WindowSpec, approximate_window_forward, extended_window_forward, window_spec

EDGES = ("exact", "stale")


def _make_backend(stream: "Stream", backend: str) -> TracedSteps | None:
    """The per-key step builder of a backend (None: eager; native without a compiler: eager, warned)."""
    backend = resolve_backend(backend)
    if backend == "eager":
        return None
    if backend == "native":
        from ..native.backend import NativeSteps, toolchain_or_warn

        tc = toolchain_or_warn()
        return NativeSteps(stream, tc) if tc is not None else None
    return TracedSteps(stream._step_impl, stream._trace_key, backend)


def _all_finite(x: Tensor) -> bool:
    """Whether ``x`` holds no NaN/Inf. A NaN or Inf makes the sum non-finite, so one reduction and
    one scalar read settle the common case (~2 us, a third of ``isfinite().all()``); only a
    non-finite sum (which also happens when finite values overflow) pays for the exact check. Tiny
    chunks (a few samples per step) are checked value by value in Python, cheaper still."""
    n = x.numel()
    if n == 1:  # one sample (hop 1): read it
        return math.isfinite(x.item())
    if n <= 32:  # nested lists flattened in C: no reshape (a tensor op costs ~2-3 us)
        vals: Any = x.tolist()
        for _ in range(x.dim() - 1):
            vals = chain.from_iterable(vals)
        return all(map(math.isfinite, vals)) if x.dim() else math.isfinite(vals)
    if math.isfinite(float(x.sum())):
        return True
    return bool(torch.isfinite(x).all())


_LAYOUT = operator.attrgetter("shape", "dtype")
_VERSION = operator.attrgetter("_version")

try:  # switching autograd directly: the no_grad() context manager costs ~10x more per step
    _grad_enabled, _set_grad = torch._C.is_grad_enabled, torch._C._set_grad_enabled
except AttributeError:  # pragma: no cover - private API moved
    _grad_enabled, _set_grad = torch.is_grad_enabled, torch.set_grad_enabled


def _outside_modes() -> Any:
    """A context that suspends active torch dispatch modes (FLOP counters): what the stream computes for
    its own bookkeeping (a phase's zero history, for validation) is not counted as a step's work."""
    try:
        from torch.utils._python_dispatch import _disable_current_modes

        return _disable_current_modes()
    except Exception:  # pragma: no cover - private API moved
        import contextlib

        return contextlib.nullcontext()


def _model_dtype(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    for p in model.parameters():
        return p.dtype, p.device
    for b in model.buffers():
        if b.is_floating_point():
            return b.dtype, b.device
    return torch.float32, torch.device("cpu")


def _infer_channels(model: nn.Module) -> int | None:
    """Channels of the signal: those of the first channel-aware layer reached from the input.

    Traced with the converter's leaf rule, so that a registered layer with its own forward (an SOI
    S-CC as the first layer of a ``thinkonce.soi.apply`` model) is one node, not the ops inside it."""
    from .frontend import StreamTracer

    try:
        tracer = StreamTracer()
        graph = tracer.trace(model)
        gm = torch.fx.GraphModule(tracer.root, graph)
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
        example = _batch_of_two(self.model, self._example(example_input))
        self.input_frame_shape = tuple(example.shape[1:-1])  # (channels, ...) of one frame
        self.plan: Plan = Converter(self.model, example, window).convert()
        horizon = None
        if window is not None:
            assert hop is not None
            spec0 = window_spec(self.plan, window, hop, allow_misaligned)
            horizon = 4 * (spec0.extension + window + 4 * spec0.period) + 64
        self.program = Program(self.plan, horizon, self.dtype)
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
            self.clock = Clock.continuous(self.plan)
            self.delay = self._measure_delay()
        else:
            if window != example.shape[-1]:
                raise ValueError(f"example_input has {example.shape[-1]} samples but window={window}")
            self.spec = window_spec(self.plan, window, hop, allow_misaligned)
            self.delay = 0
            p = self.spec.period
            self._preroll_len = -(-(self.spec.extension + window) // p) * p
            self._template = self._preroll(1)
            self.clock = Clock.windowed(self.spec)
        self.fingerprint = self._fingerprint()
        self._build_state_spec()
        self._history_cache: dict[int, State] = {}
        self._reachable: dict[int, dict[tuple[int, ...], State]] | None = None  # SOI precompute (see reset)
        self._counter_cache: dict[int, list[int]] = {}
        self._variant_cols, self._free_cols = self._precompute_columns()
        self._misaligned = self.spec is not None and hop % self.spec.period != 0
        if check:
            self_check(self)
        self._traced = _make_backend(self, backend)

    # ------------------------------------------------------------------ construction helpers
    def _precompute_columns(self) -> tuple[list[int], frozenset[int]]:
        """Columns of ``@n`` that depend on more than the clock, in continuous mode, once ops can run
        ahead (an SOI shifted S-CC under :meth:`precompute`): ``key`` - the counters the ops declare as
        :attr:`~thinkonce.stream.layers.StreamOp.layout_keys` (an entry's held-frame count, the fills of
        the joins where frames computed ahead wait); with the clock they fix every other counter (each
        op's counters follow from the frames it has received), so traced steps are keyed on them.
        ``free`` - every counter of an op downstream of such an op (they move with precompute): the clock
        check predicts them from the zero histories precompute schedules reach (:meth:`_precomputed_rows`)."""
        if self.spec is not None:
            return [], frozenset()
        cols = {c: j for j, c in enumerate(self.program.counter_keys)}
        key = [cols[p.node.name + "." + k] for p in self.plan.nodes if p.op is not None
               for k in p.op.layout_keys if p.node.name + "." + k in cols]
        if not key:
            return [], frozenset()
        after: set = set()
        for p in self.plan.nodes:
            if getattr(p.op, "releases", False) or any(a in after for a in p.temporal_args):
                after.add(p.node)
        pres = tuple(p.node.name + "." for p in self.plan.nodes if p.node in after)
        free = frozenset(j for c, j in cols.items() if c.startswith(pres))
        return key, free

    def _fingerprint(self) -> int:
        """63-bit hash of what makes states of two streams interchangeable: the traced graph, the
        modules' types and settings, the weights and buffers, window/hop/edge, dtype and input frame."""
        mods = [(name, type(m).__qualname__, m.extra_repr()) for name, m in self.model.named_modules()]
        ops = [(p.node.name, p.kind, None if p.op is None else p.op.kind) for p in self.plan.nodes]
        return fingerprint("thinkonce-stream-v1", self.window, self.hop, self.edge, self.dtype,
                           self.input_frame_shape, self.plan.gm.graph, mods, ops,
                           tensors=iter(sorted(self.model.state_dict().items())))

    def _build_state_spec(self) -> None:
        """The state contract: every key with its per-row shape and dtype (see :meth:`state_spec`), and
        the precomputed tuples ``step`` compares a state against."""
        fields = dict(self.program.spec.fields)
        if self.spec is not None:
            for v in self.plan.head_inputs:
                shape = self.plan.example_shapes[v][1:]
                d = self.plan.by_node[v].tdim - 1
                sh = list(shape)
                sh[d] = self.spec.frames[v.name]
                fields[f"@ring.{v.name}"] = Field(tuple(sh), self.dtype)
        fields["@t"] = Field((), torch.int64)
        fields["@fp"] = Field((), torch.int64, init=0.0)
        self._state_spec = StateSpec(fields, self.program.counter_keys)
        self._keys = tuple(fields)
        self._keyset = frozenset(fields)
        self._expect: dict[int, list[tuple]] = {}
        # (tensors, their versions, batch) of the last donated state that passed the layout check
        self._layout_seen: tuple[tuple[Tensor, ...], list[int], int] | None = None
        got = self.init_state(1)
        for k, f in fields.items():  # the contract holds at construction (it is cheap to check here)
            assert tuple(got[k].shape[1:]) == f.shape and got[k].dtype == f.dtype, (k, got[k].shape, f)

    def state_spec(self) -> StateSpec:
        """The layout of this stream's states, fixed from :meth:`init_state` on and the same at every
        phase: key -> (shape per row, dtype), time axes with their maximum lengths, ``@n`` columns.

        ``"<node>.<field>"``: layer buffers at their maximum length, right-aligned (valid: the last
        ``fill`` frames, ``fill`` a column of ``@n``); ``@n`` (K,) int64: every integer phase counter;
        ``@ring.<node>``: window-mode feature buffers (the window's frames); ``@t`` () int64: samples
        seen; ``@fp`` () int64: the stream's :attr:`fingerprint`.

        Every tensor is batch-first: ``state[k]`` has shape ``(B, *spec[k].shape)``, one row per stream,
        and rows are independent (concatenate states of two streams at the same phase along dim 0).
        Per op (``<node>.`` prefix; a ChainOp's members add ``<i>.``): conv/pooling ``buf`` (C_in, L)
        with fill ``fill`` and, when the stride outruns the kernel, ``skip``; transposed conv ``carry``
        (C_out, span - stride) and ``started``; trims ``drop`` and, with a right trim, ``held`` (fill
        ``nheld``); padding ``started``; reflect/replicate padding ``pending`` (fill ``npend``) and
        ``tail`` (fill ``ntail``); alignment queues ``q<i>`` (fill ``n<i>``); cumsum ``total`` (one
        frame); recurrences ``h`` and, for an LSTM, ``c`` as (num_layers, hidden) - batch-first, not
        PyTorch's (num_layers, B, hidden); 2-D ops keep their 1-D op's state on frames flattened to
        C * F rows. Counters (``fill``, ``skip``, ``started``, ...) are not tensors of their own: they
        are the columns of ``@n`` named by ``spec.counters``. The layout can be read without running
        a step: ``init_state(1)`` has it.
        """
        return self._state_spec

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
        period = self.clock.period
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
        st["@fp"] = torch.full((batch,), self.fingerprint, dtype=torch.int64, device=self.device)
        return st

    def reset(self, state: State, rows: int | Sequence[int] | Tensor) -> State:
        """Forget the history of the chosen rows: they continue as if their past input had been zeros.

        Rows of a batch advance in lock-step (one chunk for all), so a reset row keeps the shared clock;
        its next outputs see zeros where its history was. Other rows are untouched. Returns a new state.
        A state after an SOI :meth:`precompute` resets to a zero history that was precomputed too (the
        shared counters say the deep path ran ahead; the reset rows' deep frames waiting for their slot
        are those of the zero history).
        """
        self._check_state(state, None)
        b = state_batch(state)
        idx = torch.as_tensor([rows] if isinstance(rows, int) else list(map(int, rows)), dtype=torch.int64)
        if idx.numel() == 0:
            return dict(state)
        if int(idx.min()) < 0 or int(idx.max()) >= b:
            raise StreamInputError(f"rows {idx.tolist()} out of range for a state of {b} streams")
        t0 = int(state["@t"][0])
        n = state.get("@n")
        tmpl = self._history(t0)
        if n is not None and self._free_cols and n[0].tolist() != self._counters_at(t0):
            tmpl = self._precomputed_rows(t0).get(tuple(n[0].tolist()), tmpl)  # the clock check admitted it
        new: State = {}
        for k, v in state.items():
            tv = tmpl.get(k)
            if tv is None:  # @t, @fp: the shared clock and the stream's fingerprint
                new[k] = v
                continue
            new[k] = v.index_copy(0, idx.to(v.device), tv.expand(len(idx), *tv.shape[1:]).to(v.dtype))
        return new

    @property
    def _period(self) -> int:
        """The stride period (kept for callers of the private name; see :attr:`clock`)."""
        return self.clock.period

    def _phase_key(self, t: int) -> int:
        """The canonical sample count whose zero history has the same layer counters as ``t``'s (and
        the same buffers, up to their values): see :meth:`Clock.layout_phase`."""
        return self.clock.layout_phase(t)

    def _history(self, t: int) -> State:
        """Batch-1 layer state (rings included) after a zero signal of ``_phase_key(t)`` samples; cached.
        During warm-up it is computed incrementally from the nearest cached shorter history."""
        key = self._phase_key(t)
        cache = self._history_cache
        st = cache.get(key)
        if st is not None:
            return st
        if len(cache) > 4096:
            cache.clear()
        with _outside_modes(), torch.no_grad():  # bookkeeping, not the step's work (MAC counters, ...)
            if self.spec is not None:
                st = self._preroll(1, self._preroll_len + key) if key else dict(self._template or {})
            else:
                base = max((k for k in cache if 0 < k < key), default=0)
                start = cache[base] if base else self.program.init_state(1, self._like)
                x = torch.zeros((1, *self.input_frame_shape, key - base), dtype=self.dtype, device=self.device)
                _, st = self.program.run(x, start, "step")
        cache[key] = st
        return st

    def _precomputed_rows(self, t: int) -> dict[tuple[int, ...], State]:
        """The zero histories (batch-1 layer states) a stream with SOI :meth:`precompute` can be in after
        ``t`` samples, by counter row: what the clock check admits and :meth:`reset` copies into the rows
        of a precomputed state (:func:`thinkonce.soi.precompute.reachable_histories`; computed once)."""
        if self._reachable is None:
            from ..soi.precompute import reachable_histories

            with _outside_modes(), torch.no_grad():
                self._reachable = reachable_histories(self)
        return self._reachable[self._phase_key(t)]

    def _counters_at(self, t: int) -> list[int]:
        """The layers' phase counters (``@n`` row) after ``t`` samples; cached per phase."""
        key = self._phase_key(t)
        got = self._counter_cache.get(key)
        if got is None:
            n = self._history(t).get("@n")
            got = [] if n is None else n[0].tolist()
            if len(self._counter_cache) > 4096:
                self._counter_cache.clear()
            self._counter_cache[key] = got
        return got

    def _counters_agree(self, got: list[int], t: int) -> bool:
        """Whether a counter row fits the clock ``t``: equal to the zero history's or, once ops can run
        ahead (:attr:`_free_cols`: an SOI shifted S-CC), to one a schedule of steps and precomputes
        reaches (:meth:`_precomputed_rows`), so every counter is predicted, downstream of the shifted
        S-CC too."""
        if got == self._counters_at(t):
            return True
        return bool(self._free_cols) and tuple(got) in self._precomputed_rows(t)

    # ------------------------------------------------------------------ validation
    def check_state(self, state: Any, batch: int | None = None, clock: bool = True) -> None:
        """Raise :class:`StreamInputError` naming the key and what was expected if ``state`` does not follow
        this stream's :meth:`state_spec` (keys, shapes, dtypes, fingerprint) or, with ``clock``, if its
        clock ``@t`` disagrees with the layers' phase counters ``@n`` or its rows are not in lock-step
        (what :meth:`step` checks, in a few microseconds)."""
        self._check_state(state, batch, clock)

    def _check_state(self, state: Any, batch: int | None, clock: bool = True, remember: bool = False) -> int:
        """The checks of :meth:`check_state`; returns the clock (samples seen, row 0) it read.

        ``remember``: note the state's tensors as checked (a donated step hands the same tensors back),
        so that the next check of the very same tensors, unmodified, skips the layout comparison (see
        :meth:`_seen_layout`); the values (fingerprint, clock, counters) are read and checked every time.
        """
        if not isinstance(state, dict) or "@t" not in state:
            raise StreamInputError("state must be the dict returned by Stream.init_state() or a previous step")
        t = state["@t"]
        b = self._seen_layout(state)  # >= 0: these very tensors passed the layout check, unmodified since
        seen = b >= 0
        if not seen:
            b = t.shape[0] if isinstance(t, Tensor) and t.dim() else -1
        if batch is not None and b != batch:
            raise StreamInputError(
                f"the chunk has batch {batch} but the state holds {b} streams; "
                f"create the state with init_state(batch={batch})"
            )
        if not seen:
            exp = self._expect.get(b)
            if exp is None:
                exp = [(torch.Size((b, *self._state_spec[k].shape)), self._state_spec[k].dtype) for k in self._keys]
                if len(self._expect) < 64:
                    self._expect[b] = exp
            try:
                ok = state.keys() == self._keyset and list(map(_LAYOUT, map(state.__getitem__, self._keys))) == exp
            except AttributeError:
                ok = False
            if not ok:
                self._explain_layout(state, b)
            if remember:
                vals = tuple(map(state.__getitem__, self._keys))
                self._layout_seen = (vals, list(map(_VERSION, vals)), b)
        fp = state["@fp"]
        if (int(fp) != self.fingerprint) if b == 1 else bool((fp != self.fingerprint).any()):
            raise StreamInputError(
                f"state entry '@fp' holds the fingerprint of another stream (expected {self.fingerprint:016x}: "
                "graph, weights, window, hop or edge differ); use this stream's init_state()"
            )
        t0 = int(t) if b == 1 else int(t[0])
        if not clock:
            return t0
        if t0 < 0:
            raise StreamInputError(f"state entry '@t' is negative ({t0})")
        n = state.get("@n")
        if n is not None:
            got = n.tolist()[0] if b == 1 else n[0].tolist()
            if not self._counters_agree(got, t0) and not (self.spec is None and t0 == 0 and got == self.program.counter_init):
                want, after = self._counters_at(t0), ""
                if self._free_cols:  # name the differences from the nearest admissible row
                    for row in self._precomputed_rows(t0):
                        if sum(g != w for g, w in zip(got, row)) < sum(g != w for g, w in zip(got, want)):
                            want, after = list(row), " and SOI precomputes"
                bad = [(c, g, w) for c, g, w in zip(self.program.counter_keys, got, want) if g != w][:3]
                raise StreamInputError(
                    f"state entry '@n' does not match the clock '@t' = {t0} (shifted clock?): the layers' phase "
                    f"counters after {t0} samples{after} are expected to be "
                    + ", ".join(f"{c}={w} (got {g})" for c, g, w in bad)
                    + ". Pass states produced by this stream's init_state()/step()/precompute() unchanged."
                )
            if b > 1 and bool((n != n[0]).any()):
                raise StreamInputError(
                    "the state's rows are at different phases (their '@n' counters differ); rows of one state "
                    "advance in lock-step. Batch only streams at the same phase (StreamPool does this)."
                )
        if b > 1 and bool((t != t[0]).any()):
            # rows at different positions may share a step only if every phase counter agrees and, in
            # window mode, the window boundaries fall at the same offsets
            phases: set = set()
            if self.spec is not None:
                W, H = self.spec.window, self.spec.hop
                phases = {v if v < W else ("steady", (v - W) % H) for v in t.tolist()}
            clash = False
            if n is not None:  # every row's clock must agree with the (shared) counters
                got = n[0].tolist()
                clash = any(not self._counters_agree(got, v) and not (self.spec is None and v == 0 and got == self.program.counter_init)
                            for v in set(t.tolist()))
            if len(phases) > 1 or clash:
                raise StreamInputError(
                    f"the state's rows are at different phases ({sorted(set(t.tolist()))[:4]} samples seen); rows of "
                    "one state advance in lock-step. Batch only streams at the same phase (StreamPool does this)."
                )
        return t0

    def _seen_layout(self, state: dict) -> int:
        """The batch of ``state`` if its entries are the very tensor objects of the last remembered
        state that passed the layout check and none has been modified through torch since; else -1.

        Why this is sound: the remembered tuple holds references, so no other object can take their
        ids; a state with an entry added, removed or replaced fails the identity test; and every
        torch operation that changes a tensor in place - its values (``fill_``, ``+=``) or its
        metadata (``resize_``, ``set_``, ``as_strided_``, ``unsqueeze_``, ...) - bumps the tensor's
        version counter, which is compared. A donated native step writes the values from C (no
        version bump) but by construction in the same layout. What is not seen here: assigning
        ``tensor.data`` (an autograd escape hatch that bypasses version counting) and writes through
        other views of the memory (numpy, ctypes); neither can change a layout except ``.data``, and
        the native step checks the layout of any tensor whose address changed (so a swapped storage
        is still refused). Values are never taken from here: fingerprint, clock and counters are read
        and checked on every step."""
        seen = self._layout_seen
        if seen is None or len(state) != len(seen[0]):
            return -1
        try:
            vals = list(map(state.__getitem__, self._keys))
        except KeyError:
            return -1
        if all(map(operator.is_, vals, seen[0])) and list(map(_VERSION, vals)) == seen[1]:
            return seen[2]
        return -1

    def _explain_layout(self, state: dict, b: int) -> None:
        """Raise the precise layout error (slow path of :meth:`_check_state`)."""
        missing = [k for k in self._keys if k not in state]
        if missing:
            raise StreamInputError(
                f"state entry {missing[0]!r} is missing ({len(missing)} missing in all); the state does not "
                "belong to this stream: use this stream's init_state()"
            )
        extra = [k for k in state if k not in self._keyset]
        if extra:
            raise StreamInputError(f"state entry {extra[0]!r} is not part of this stream's state layout "
                                   f"(see Stream.state_spec()); remove it")
        for k in self._keys:
            v, f = state[k], self._state_spec[k]
            if not isinstance(v, Tensor):
                raise StreamInputError(f"state entry {k!r} must be a tensor, got {type(v).__name__}")
            if v.dtype != f.dtype:
                raise StreamInputError(f"state entry {k!r} has dtype {v.dtype}; expected {f.dtype}")
            want = (b, *f.shape)
            if tuple(v.shape) != want:
                what = ""
                if f.time_axis is not None and v.dim() == len(want) and all(
                        g == w for i, (g, w) in enumerate(zip(v.shape, want)) if i != f.time_axis + 1):
                    what = f" ({f.max_len} frames on its time axis {f.time_axis + 1}, got {v.shape[f.time_axis + 1]})"
                raise StreamInputError(
                    f"state entry {k!r} has shape {tuple(v.shape)}; expected {want}{what} "
                    "(batch first; see Stream.state_spec())"
                )
        raise StreamInputError("state does not follow this stream's state layout (see Stream.state_spec())")

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
    def step(self, x: Tensor, state: State, donate: bool = False) -> tuple[Tensor, State]:
        """Feed ``x`` (batch, channels, n) with any n >= 0; returns the new outputs and a new state.

        The input state is left unchanged (replaying a step from it gives the same result). A rejected
        chunk raises before anything is computed. Runs without autograd. ``donate=True`` hands the input
        state over: the native backend may then write the new state into its tensors (no allocation);
        the caller must use only the returned state afterwards. Other backends ignore it. A loop that
        owns one state and feeds chunks of one length: :meth:`bind` (no per-call checks or allocation).
        """
        self._check_chunk(x)
        t0 = self._check_state(state, x.shape[0], remember=donate)
        if _grad_enabled():  # autograd off for the step; a no_grad() context costs ~3 us, the switch ~0.3
            _set_grad(False)
            try:
                return self._dispatch(x, state, donate, t0)
            finally:
                _set_grad(True)
        return self._dispatch(x, state, donate, t0)

    def bind(self, state: State, chunk: int = 1, donate: bool = False) -> "BoundStep":
        """A hot loop over ``state``: ``bound = s.bind(state, chunk=1)``, then per chunk
        ``bound.x[...] = samples; y = bound()``. With the native backend a steady-state step is one
        call of the compiled function on a pointer array built once per phase (no validation,
        allocation or key computation per call); other backends and warm-up steps go through
        :meth:`step`. Same results as :meth:`step`; ``bound.state`` stays a state of this stream.
        ``donate=True`` adopts the given (contiguous) tensors instead of copying them. What a bound
        call checks and skips: :class:`~thinkonce.stream.bound.BoundStep`."""
        from .bound import BoundStep

        return BoundStep(self, state, chunk=chunk, donate=donate)

    def _dispatch(self, x: Tensor, state: State, donate: bool = False, t0: int | None = None) -> tuple[Tensor, State]:
        """Run the validated step; ``t0``: the clock the check read (saves reading it again for the key)."""
        if self._traced is not None:
            if t0 is None:
                return self._traced.step(x, state, donate)
            return self._traced.step_keyed(self._key_at(x.shape[-1], t0, state), x, state, donate)
        return self._step_impl(x, state)

    def _step_impl(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """The step without validation (the code that backends trace)."""
        t = int(state["@t"][0])
        if self.spec is None:
            env, new = self.program.run(x, state, "step")
            new["@t"] = state["@t"] + x.shape[-1]
            new["@fp"] = state["@fp"]
            return env[self.plan.output_arg], new
        return self._window_step(x, state, t)

    def _trace_key(self, n: int, state: State) -> tuple | None:
        """What the step's control flow depends on; None during warm-up (run eagerly). The key function
        the traced backends get (:meth:`Clock.trace_key` on the state's clock)."""
        return self._key_at(n, int(state["@t"][0]), state)

    def _key_at(self, n: int, t0: int, state: State) -> tuple | None:
        """:meth:`_trace_key` for a state whose clock ``t0`` is already read."""
        key = self.clock.trace_key(n, t0)
        if key is None or not self._variant_cols:
            return key
        row = state["@n"][0].tolist()
        return (*key, *[row[j] for j in self._variant_cols])

    def precompute(self, state: State) -> State:
        """Fully predictive SOI: run the deep path of every shifted S-CC for the next step now (idle time
        between samples); the next :meth:`step` then computes only the shallow path. Outputs are unchanged.
        See :mod:`thinkonce.soi.precompute`."""
        from ..soi.precompute import precompute

        return precompute(self, state)

    def cost(self, chunk: int, precompute: bool | None = None) -> Any:
        """MACs per step (mean and peak over the step cycle), state bytes and, for fully predictive SOI,
        the share of the work precomputed: :func:`thinkonce.measure.step_cost`."""
        from ..measure.cost import step_cost

        return step_cost(self, chunk, precompute)

    def export_onnx(self, path: str, batch: int | None = None, chunk: int | None = None, opset: int = 17,
                    write_init_state: bool = True) -> dict[str, Any]:
        """Export the step to ONNX: inputs ``x`` and ``state.<key>``, outputs ``y`` and ``new_state.<key>``;
        it runs a stream from its cold :meth:`init_state` on, in onnxruntime alone.

        The graph is the step for chunks of ``chunk`` samples (default: the hop in window mode, the stride
        period in continuous mode). Every state input/output has this stream's fixed layout, with
        concrete dims after the symbolic batch axis (see :meth:`state_spec`). The phase travels in the
        state (``state.@t``): each warm-up clock value (``t <`` :attr:`warmup`) and each steady-state
        phase (``t`` modulo the stride period, in window mode its lcm with the hop) that a stream
        started cold visits is one branch, chosen at run time by a tree of ``If`` nodes on ``state.@t``
        (weights stored once). ``y`` has the length of what the chunk completes: in window mode
        ``(batch, windows, *out)`` with 0 windows until the first window completes (an empty tensor,
        not a marked placeholder), in continuous mode the frames the chunk makes final (none while the
        look-ahead :attr:`delay` is not yet covered).

        With ``write_init_state`` the initial state of one stream is written next to the graph as
        ``<path minus .onnx>.init_state.safetensors`` (keys as in the state, readable with
        ``safetensors.numpy`` without torch; repeat rows for more streams). Feed the outputs
        ``new_state.<key>`` back as ``state.<key>``. Returns the input/output names and the phases.

        A fully predictive SOI stream (a shifted S-CC) also writes its :meth:`precompute` as
        ``<path minus .onnx>.precompute.onnx`` (inputs ``state.<key>``, outputs ``new_state.<key>``, the
        same layout). A state after precompute has other counters at the same clock, so both graphs
        branch on ``state.@t`` and on the counters precompute moves (``info["key_columns"]`` of
        ``state.@n``): every state a cold stream reaches by steps of ``chunk`` samples with precompute
        between any of them has its branch. ``info["precompute"]`` names the file.
        """
        import io

        import onnx

        from .backends import export_state_fn
        from .onnx_phases import merge_phases, phase_code
        from .state import save_state

        clock = self.clock
        n = chunk if chunk is not None else (self.hop if self.spec is not None else clock.period)
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"chunk must be a positive number of samples, got {n!r}")
        modulus, start = clock.modulus, clock.warmup
        b = batch or 1
        x = torch.zeros((b, *self.input_frame_shape, n), dtype=self.dtype)
        fp = False
        if self.spec is None and self._variant_cols:
            from ..soi.precompute import fp_entries, release

            fp = bool(fp_entries(self))
        key_cols = list(self._variant_cols) if fp else []

        def key(state: State) -> tuple[int, tuple[int, ...]]:
            row = state["@n"][0].tolist() if key_cols else []
            return clock.phase(int(state["@t"][0])), tuple(row[j] for j in key_cols)

        steps: dict[tuple, onnx.ModelProto] = {}
        pres: dict[tuple, onnx.ModelProto] = {}
        outs: list[str] = []
        frontier = [self.init_state(b)]  # every state reachable from cold by steps (and precomputes)
        with torch.no_grad():
            while frontier:
                st = frontier.pop(0)
                k = key(st)
                if k not in steps:
                    buf = io.BytesIO()
                    _, outs = export_step(self._step_impl, x, st, buf, opset=opset)
                    steps[k] = onnx.load_from_string(buf.getvalue())
                    frontier.append(self._step_impl(x, st)[1])
                if fp and k not in pres:
                    buf = io.BytesIO()
                    export_state_fn(lambda s_, self=self: release(self, s_), st, buf, opset=opset)
                    pres[k] = onnx.load_from_string(buf.getvalue())
                    frontier.append(release(self, st))
        radix = max([2] + [v + 1 for _, var in list(steps) + list(pres) for v in var])

        def codes(keys: Iterable[tuple]) -> list[int]:
            return [phase_code(p, var, radix) if fp else p for p, var in keys]

        shapes: dict[str, Sequence[int]] = {}
        for k, f in self._state_spec.items():
            shapes[f"state.{k}"] = shapes[f"new_state.{k}"] = f.shape
        merged = merge_phases(list(steps.values()), codes(steps), modulus, start=start, shapes=shapes,
                              key=key_cols, radix=radix)
        onnx.save(merged, path)
        p = str(path)
        stem = p[: -len(".onnx")] if p.endswith(".onnx") else p
        info: dict[str, Any] = {"inputs": [i.name for i in merged.graph.input], "outputs": outs, "chunk": n,
                                "warmup": start, "phases": codes(steps)}
        if fp:
            pre = merge_phases(list(pres.values()), codes(pres), modulus, start=start, shapes=shapes, key=key_cols,
                               radix=radix, name="thinkonce_precompute")
            onnx.save(pre, stem + ".precompute.onnx")
            info.update(precompute=stem + ".precompute.onnx", key_columns=key_cols, radix=radix,
                        precompute_phases=codes(pres))
        if write_init_state:
            init_path = stem + ".init_state.safetensors"
            save_state(init_path, self.init_state(1), chunk=n, onnx=Path(p).name)
            info["init_state"] = init_path
        return info

    def export_c(self, directory: str, chunk: int | None = None, portable: bool = True,
                 check: bool = True) -> dict[str, Any]:
        """Write the stream as self-contained C for a device: ``tk_model.h``/``tk_model.c`` (weights as
        ``static const`` arrays, the state as a struct of documented size, ``tk_model_init`` and
        ``tk_model_step``; no allocation, only ``memcpy`` and ``math.h``) and a ``main.c`` example that
        reads samples from stdin. Steps of ``chunk`` samples (default: the hop, or the stride period)
        from a cold state. ``portable=False`` uses this machine's vector extensions (GCC/Clang).
        ``check``: compile the files and compare them with this stream from cold (raises
        :class:`ConversionError` on a mismatch)."""
        from ..native.export import export_c

        return export_c(self, directory, chunk=chunk, portable=portable, check=check)

    @property
    def warmup(self) -> int:
        """Samples after which a step's control flow depends only on the phase (the clock modulo the
        stride period, in window mode its lcm with the hop): the first window, or the continuous
        stream's start-up (layers still filling their buffers)."""
        return self.clock.warmup

    def _window_step(self, x: Tensor, state: State, t: int) -> tuple[Tensor, State]:
        spec = self.spec
        assert spec is not None
        n = x.shape[-1]
        ends = self.clock.window_ends(t, n)
        cuts = list(ends)
        if not cuts or cuts[-1] != n:
            cuts.append(n)
        st = {k: v for k, v in state.items() if not k.startswith("@") or k == "@n"}
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
        new["@fp"] = state["@fp"]
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


def _batch_of_two(model: nn.Module, example: Tensor) -> Tensor:
    """Convert from a batch of two when given one stream: at batch 1, ``squeeze()``, ``view(-1, ...)`` and
    the like also drop or merge the batch axis, so the recorded shapes would describe a different program
    than the one a stream of several rows runs. Models that only take batch 1 keep their example."""
    if example.shape[0] != 1:
        return example
    x2 = example.expand(2, *example.shape[1:]).contiguous()
    try:
        with torch.no_grad():
            model(x2)
    except Exception:
        return example
    return x2


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
    ``backend``: ``"eager"`` (PyTorch ops from Python), ``"native"`` (each steady-state step as generated
    C, compiled with the system compiler), ``"compiled"`` (the fastest in-process backend available:
    native with a C compiler, else eager) or ``"onnx"`` (the step graph run by onnxruntime); same
    outputs and state.
    ``allow_misaligned=True`` accepts a hop that breaks pooling alignment (for measuring its error; see
    :func:`thinkonce.stream.bounds.pooling_error_bound`) instead of raising :class:`AlignmentError`.
    ``check=True`` (default) runs the new stream on a random probe under a random chunking and raises
    :class:`ConversionError`, naming the first diverging node, if it disagrees with the model
    (continuous) or with :meth:`Stream.reference` (window mode).
    """
    return Stream(model, window=window, hop=hop, example_input=example_input, edge=edge,
                  allow_nonfinite=allow_nonfinite, backend=backend, allow_misaligned=allow_misaligned,
                  check=check)
