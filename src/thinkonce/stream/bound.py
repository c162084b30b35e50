"""A stream bound to one state for a deployed loop: fixed buffers, no per-step Python bookkeeping.

:meth:`Stream.step <thinkonce.stream.stream.Stream.step>` is a pure function with full validation
(chunk shape, dtype and NaN check, state layout, fingerprint, clock), and it costs tens of microseconds
of Python per call; at hop 1 that is ten times the compiled step itself. A deployed loop does not
need a pure function: it owns one state and feeds it chunks of one length forever. :class:`BoundStep`
is that loop's object. It owns the input buffer (``bound.x``), the state tensors (``bound.state``,
the same batch-first dict as everywhere else) and one output buffer per step phase, and it knows the
order in which the stride phases come, so a step of the native backend is one call of the compiled
function on a pointer array built once per phase. Everything else (eager or onnx backends, warm-up
steps, phases without a compiled step) goes through :meth:`Stream.step` and is exactly as correct.
"""

from __future__ import annotations

import ctypes
import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..errors import StreamInputError
from .state import State, state_batch

if TYPE_CHECKING:  # pragma: no cover
    from .stream import Stream

_isfinite = math.isfinite
_C_FLOAT = {torch.float32: ctypes.c_float, torch.float64: ctypes.c_double}


def _all_finite(x: Tensor) -> bool:
    from .stream import _all_finite as f

    return f(x)


class BoundStep:
    """``bound = stream.bind(state, chunk=1)``; then per chunk: ``bound.x[...] = samples; y = bound()``.

    What a call still guarantees:

    * the result is that of :meth:`Stream.step` on the same chunk and state (the same compiled
      functions; tested against the eager backend within the tests' tolerance), and ``bound.state`` is always a valid state of the stream: the same keys,
      shapes and dtypes, savable with :func:`~thinkonce.save_state` and accepted by ``Stream.step``;
    * the state cannot be swapped under it: the bound keeps its own dict (``bound.state`` returns a
      copy of the dict, holding the bound's tensors), and ``bound.x`` cannot be rebound (assigning it
      raises; write into it);
    * a NaN or Inf in ``bound.x`` is refused with :class:`StreamInputError` before anything is
      computed, as by ``Stream.step`` (unless the stream was built with ``allow_nonfinite=True``);
    * the clock is watched: if the state's ``@t`` is not the value the bound left there (the tensors
      were stepped elsewhere), the step goes through ``Stream.step``, whose full checks refuse a state
      that no longer fits, and the bound resynchronises its phase.

    What a compiled call skips, and why that is safe: the layout check (the bound made the tensors
    itself, contiguous, and checked them once against the compiled step), the fingerprint (the state
    came through :meth:`Stream.check_state` when bound and never leaves the bound's hands), the
    counter check (the compiled step computes ``@n`` and ``@t`` itself from a checked state), the
    trace key (the bound cycles through the phases itself) and every allocation. Do not write into the
    state tensors or resize them (a donated ``Stream.step`` on them is noticed by the clock watch, a
    value written around it is not); read, clone or save them, and call :meth:`check` to re-run every
    check of ``Stream.step`` on the current state.

    Outputs: ``bound()`` returns ``bound.y``, one buffer per step phase (its shape depends on the phase:
    frames or windows this chunk completes), overwritten when that phase comes back; clone it to keep
    it. Not thread-safe: one loop per bound.
    """

    def __init__(self, stream: "Stream", state: State, chunk: int = 1, donate: bool = False) -> None:
        if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
            raise ValueError(f"chunk must be a positive number of samples, got {chunk!r}")
        stream.check_state(state)
        self._stream = stream
        self.chunk = chunk
        self.batch = state_batch(state)
        # the bound's own tensors: contiguous, never replaced (the compiled steps hold their addresses)
        self._state: State = {k: v if donate and v.is_contiguous() else v.clone(memory_format=torch.contiguous_format)
                              for k, v in state.items()}
        self._x = torch.zeros((self.batch, *stream.input_frame_shape, chunk), dtype=stream.dtype, device=stream.device)
        self.y: Tensor | None = None
        self._t = int(self._state["@t"][0])
        # cycle of stride phases: position j runs self._fns[j] (None: through Stream.step)
        self._L = 0
        self._j = 0
        self._fns: list[Any] = [None]
        self._arrs: list[Any] = [None]
        self._ys: list[Any] = [None]
        self._steps: list[Any] = [None]  # the NativeStep objects (they keep the constants alive)
        self._keys: list[Any] = []
        self._ws: Tensor | None = None
        self._compiled = self._can_compile()
        cpu = self._x.device.type == "cpu"
        self._tv = ctypes.c_int64.from_address(self._state["@t"].data_ptr()) if cpu else None
        # views of bound.x for the NaN check of compiled calls: one sample as a ctypes scalar (~0.05 us
        # to read), a few as a flat memoryview (summed in C); else torch's check (_x_big)
        n = self._x.numel()
        ct = _C_FLOAT.get(self._x.dtype)
        self._x1 = self._xmv = None
        self._x_big = False
        if not stream.allow_nonfinite:
            if cpu and ct is not None and n == 1:
                self._x1 = ct.from_address(self._x.data_ptr())
            elif cpu and ct is not None and n <= 256:
                self._xnp = self._x.numpy().reshape(-1)
                self._xmv = memoryview(self._xnp)
            else:
                self._x_big = True
        if self._compiled and self._t >= stream.warmup:
            self._activate()

    # ------------------------------------------------------------------ public surface
    @property
    def x(self) -> Tensor:
        """The input buffer, ``(batch, *channels, chunk)``: write the next chunk into it."""
        return self._x

    @x.setter
    def x(self, value: Any) -> None:
        raise AttributeError("bound.x is the bound's fixed input buffer: write into it "
                             "(bound.x[...] = chunk, or bound.x.copy_(chunk)) instead of replacing it")

    @property
    def state(self) -> State:
        """The current state: a new dict holding the bound's tensors (read, clone or save them; a step of
        ``Stream.step`` on it is pure and leaves the bound untouched)."""
        return dict(self._state)

    @property
    def t(self) -> int:
        """Samples seen."""
        return int(self._state["@t"][0])

    @property
    def compiled_phases(self) -> tuple[int, int]:
        """(phases that run as one compiled call, phases in the cycle); (0, 0) before the warm-up ends or
        where nothing is compiled (eager/onnx backend, no C compiler)."""
        return sum(f is not None for f in self._fns[: self._L]), self._L

    def check(self) -> None:
        """Run every check of :meth:`Stream.step` on the current state (raises StreamInputError)."""
        self._stream.check_state(self._state, self.batch)

    def step(self, chunk: Tensor) -> Tensor:
        """Copy ``chunk`` into :attr:`x` and step (a convenience; the loop writes ``bound.x`` itself)."""
        if not isinstance(chunk, Tensor) or tuple(chunk.shape) != tuple(self._x.shape):
            raise StreamInputError(f"this bound takes chunks of shape {tuple(self._x.shape)}, got "
                                   f"{tuple(chunk.shape) if isinstance(chunk, Tensor) else type(chunk).__name__}")
        self._x.copy_(chunk)
        return self()

    def __call__(self) -> Tensor:
        """Step on the samples in :attr:`x`; returns (and sets) :attr:`y`."""
        j = self._j
        fn = self._fns[j]
        t = self._t
        if fn is None or self._tv.value != t:
            return self._slow()
        xv = self._x1
        if xv is not None:
            if not _isfinite(xv.value):
                self._refuse_nonfinite()
        elif self._xmv is not None:
            if not _isfinite(sum(self._xmv)) and not all(map(_isfinite, self._xmv)):
                self._refuse_nonfinite()
        elif self._x_big and not _all_finite(self._x):
            self._refuse_nonfinite()
        fn(self._arrs[j])
        self._t = t + self.chunk
        self._j = j + 1 if j + 1 < self._L else 0
        y = self.y = self._ys[j]
        return y

    def __repr__(self) -> str:
        c, n = self.compiled_phases
        return (f"BoundStep(batch={self.batch}, chunk={self.chunk}, t={self.t}, "
                f"compiled phases {c}/{n}, backend={self._stream.backend!r})")

    # ------------------------------------------------------------------ internals
    def _refuse_nonfinite(self) -> None:
        raise StreamInputError(
            "chunk contains NaN or Inf; they would poison the cached activations of the stream. "
            "Clean the signal first, or pass allow_nonfinite=True to thinkonce.stream."
        )

    def _can_compile(self) -> bool:
        """Whether the phases can run as direct compiled calls: the native backend on the CPU, and a
        trace key that the clock fixes (SOI streams with counters beyond the clock step through
        ``Stream.step``)."""
        s = self._stream
        if s._traced is None or self._x.device.type != "cpu" or s._variant_cols:
            return False
        from ..native.backend import NativeSteps

        return isinstance(s._traced, NativeSteps)

    def _activate(self) -> None:
        """Start the phase cycle at the current clock: position j is the step at ``t + j * chunk``."""
        clock = self._stream.clock
        L = clock.modulus // math.gcd(clock.modulus, self.chunk)
        self._L, self._j = L, 0
        self._keys = [clock.trace_key(self.chunk, self._t + j * self.chunk) for j in range(L)]
        self._fns, self._arrs, self._ys, self._steps = [None] * L, [None] * L, [None] * L, [None] * L
        for j in range(L):
            self._plan(j)

    def _deactivate(self) -> None:
        self._L, self._j = 0, 0
        self._fns, self._arrs, self._ys, self._steps = [None], [None], [None], [None]

    def _plan(self, j: int) -> None:
        """Position j's pointer array, if the stream has built a compiled step for its key."""
        from ..native.loader import NativeStep

        fn = self._stream._traced.built(self._keys[j], self.batch)
        if not isinstance(fn, NativeStep):
            return
        need = max(fn.cstep.workspace_bytes, 64) + 64
        if self._ws is None or self._ws.numel() < need:
            self._ws = fn.workspace() if self._ws is None else torch.empty(max(need, self._ws.numel()), dtype=torch.uint8)
            for i, (st, arr) in enumerate(zip(self._steps, self._arrs)):
                if arr is not None:
                    arr[st.n - 1] = self._ws.data_ptr()
        y = torch.empty(fn.y_shape, dtype=fn.y_dtype)
        try:
            arr = fn.pointer_array(self._x, self._state, y, self._ws)
        except ValueError:
            return  # not this layout (cannot happen for a checked state): stays on Stream.step
        self._fns[j], self._arrs[j], self._ys[j], self._steps[j] = fn.fn_staged, arr, y, fn

    def _slow(self) -> Tensor:
        """One step through :meth:`Stream.step` (full checks), its result written into the bound's tensors."""
        st = self._state
        t = int(st["@t"][0])
        if t != self._t:  # stepped or edited elsewhere: Stream.step judges the state, the cycle restarts
            self._deactivate()
            self._t = t
        y, new = self._stream.step(self._x, st, donate=True)
        changed = [(k, v) for k, v in new.items() if v is not st[k]]
        if changed:  # eager (or a fallback) made new tensors: copy them in (clones first: one may view another)
            vals = [v.clone() for _, v in changed]
            for (k, _), v in zip(changed, vals):
                st[k].copy_(v)
        self.y = y
        self._t = t + self.chunk
        if self._L:
            self._plan(self._j)  # this very call may have built the phase's compiled step
            self._j = self._j + 1 if self._j + 1 < self._L else 0
        elif self._compiled and self._t >= self._stream.warmup:
            self._activate()
        return y
