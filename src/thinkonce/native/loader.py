"""Load a compiled step with ctypes and call it on tensors.

The C function takes one array of pointers (see :class:`~thinkonce.native.codegen.CStep`). Per
thread, the array and the workspace are made once and reused; per call only the input, state and
output addresses change (the slots are rewritten only when they do). Outputs are fresh tensors (the
step stays pure) unless the caller donates its state, in which case new state entries of unchanged
shape are written into the old tensors.
"""

from __future__ import annotations

import ctypes
import operator
import threading
from pathlib import Path

import torch
from torch import Tensor

from .codegen import CStep

State = dict[str, Tensor]

_LIBS: dict[str, ctypes.CDLL] = {}
_LIBS_LOCK = threading.Lock()


def load(path: Path) -> ctypes.CDLL:
    with _LIBS_LOCK:
        lib = _LIBS.get(str(path))
        if lib is None:
            lib = _LIBS[str(path)] = ctypes.CDLL(str(path))
        return lib


class NativeStep:
    """A callable ``(x, state, donate) -> (y, new_state)`` around one compiled step.

    What the pointer array holds is planned once here (which slot takes the chunk, which state entry,
    which constant, which output), so a call only reads addresses. Per thread the array remembers the
    addresses it was last filled with: a donated step fed the state it just updated (the same tensors,
    at the same addresses) rewrites only the ``y`` slot. Addresses are read from the tensors on every
    call, never assumed, so a state of other tensors (or one whose storage was replaced) is seen.
    """

    takes_donate = True

    def __init__(self, cstep: CStep, lib: ctypes.CDLL) -> None:
        self.cstep = cstep
        self.fn = getattr(lib, cstep.func)
        self.fn_staged = getattr(lib, cstep.func + "_staged")
        for f in (self.fn, self.fn_staged):
            f.argtypes = [ctypes.c_void_p]
            f.restype = None
        self.consts = [b.data.contiguous() for b in cstep.consts]  # kept alive: the library reads them
        self.n = len(cstep.params) + 1
        self.fixed: dict[int, int] = {}
        in_idx: list[int] = []
        in_keys: list[str | None] = []  # None: the chunk
        ci = 0
        for i, b in enumerate(cstep.params):
            if b.kind == "input":
                in_idx.append(i)
                in_keys.append(None)
            elif b.kind == "state":
                in_idx.append(i)
                in_keys.append(b.key)
            elif b.kind == "const":
                self.fixed[i] = self.consts[ci].data_ptr()
                ci += 1
        self.in_idx, self.in_keys = tuple(in_idx), tuple(in_keys)
        self.in_layout = [(cstep.params[i].numel, cstep.params[i].dtype) for i in in_idx]
        self.in_state_keys = tuple(k for k in in_keys if k is not None)
        self.x_pos = in_keys.index(None) if None in in_keys else -1  # the step may not read the chunk
        views = dict(cstep.outputs)
        self.y_index = -1
        self.y_shape: tuple[int, ...] = ()
        self.y_dtype = torch.float32
        outs: list[tuple[int, str, torch.Size, torch.dtype]] = []
        for i, b in enumerate(cstep.params):
            if b.kind == "out":
                v = views[b.key]
                if b.key == "y":
                    self.y_index, self.y_shape, self.y_dtype = i, tuple(v.sizes), v.dtype
                else:
                    outs.append((i, b.key, tuple(v.sizes), v.dtype))
        assert self.y_index >= 0, "a step always has an output y"
        self.out_specs = outs  # new state entries, in pointer order
        self.out_idx = tuple(i for i, *_ in outs)
        self.out_keys = tuple(k for _, k, *_ in outs)
        self.out_layout = [(torch.Size(shape), dtype) for *_, shape, dtype in outs]
        self.passthrough = tuple(cstep.passthrough)
        # donated calls read every tensor once: the inputs (chunk and state entries read), then the
        # state entries only written; each pointer slot takes one of them
        extra = [k for k in self.out_keys if k not in self.in_state_keys]
        self.donate_keys: tuple[str | None, ...] = self.in_keys + tuple(extra)
        self.donate_state_keys = tuple(k for k in self.donate_keys if k is not None)
        pos = {k: i for i, k in enumerate(self.donate_keys)}
        self.out_pos = [(k, pos[k]) for k in self.out_keys]
        self.donate_slots = [(i, pos[k]) for i, k in zip(self.in_idx, self.in_keys)] + \
            [(i, pos[k]) for i, k in zip(self.out_idx, self.out_keys)]
        self.tls = threading.local()

    @property
    def slots(self) -> list[tuple[int, str, object]]:
        """(index, "x" or "state", key) of the per-call input pointers (kept for introspection)."""
        return [(i, "x" if k is None else "state", k) for i, k in zip(self.in_idx, self.in_keys)]

    def _thread_buffers(self):
        tls = self.tls
        arr = getattr(tls, "arr", None)
        if arr is None:
            arr = (ctypes.c_void_p * self.n)()
            for i, p in self.fixed.items():
                arr[i] = p
            tls.ws = torch.empty(max(self.cstep.workspace_bytes, 64) + 64, dtype=torch.uint8)
            tls.stage = None
            tls.ptrs = None  # addresses of (inputs, donated outputs) the array holds now
            arr[self.n - 1] = tls.ws.data_ptr()
            tls.arr = arr
        return arr

    def workspace(self) -> Tensor:
        """A fresh workspace of the size this step needs (for callers that keep their own array)."""
        return torch.empty(max(self.cstep.workspace_bytes, 64) + 64, dtype=torch.uint8)

    def pointer_array(self, x: Tensor, state: State, y: Tensor, workspace: Tensor):
        """A pointer array for the staged (donating) function that reads ``x`` and ``state`` and writes
        ``y`` and the new state into the same ``state`` tensors; every tensor must already have the
        step's layout and be contiguous (checked here: raises ValueError otherwise). The caller keeps
        the tensors alive and at their addresses for as long as it calls with the array."""
        def need(t: Tensor, shape, dtype, what: str) -> int:
            if tuple(t.shape) != tuple(shape) or t.dtype != dtype or not t.is_contiguous() or t.device.type != "cpu":
                raise ValueError(f"{what}: a contiguous CPU {dtype} tensor of shape {tuple(shape)} is needed, "
                                 f"got {t.dtype} {tuple(t.shape)} (contiguous: {t.is_contiguous()})")
            return t.data_ptr()

        if workspace.numel() < max(self.cstep.workspace_bytes, 64) + 64:
            raise ValueError("workspace too small for this step")
        arr = (ctypes.c_void_p * self.n)()
        for i, p in self.fixed.items():
            arr[i] = p
        ins = [x if k is None else state[k] for k in self.in_keys]
        self._check_inputs(ins)
        for i, k, t in zip(self.in_idx, self.in_keys, ins):
            if not t.is_contiguous() or t.device.type != "cpu":
                raise ValueError(f"input {'x' if k is None else k!r} must be a contiguous CPU tensor")
            arr[i] = t.data_ptr()
        arr[self.y_index] = need(y, self.y_shape, self.y_dtype, "y")
        for i, k, shape, dtype in self.out_specs:
            arr[i] = need(state[k], shape, dtype, f"state entry {k!r}")
        arr[self.n - 1] = workspace.data_ptr()
        return arr

    def __call__(self, x: Tensor, state: State, donate: bool = False) -> tuple[Tensor, State]:
        arr = self._thread_buffers()
        tls = self.tls
        if donate:
            ts = list(map(state.__getitem__, self.donate_state_keys))  # inputs, then outputs not read
            if self.x_pos >= 0:
                ts.insert(self.x_pos, x)
            if all(map(Tensor.is_contiguous, ts)):
                ptrs = [True]
                ptrs += map(Tensor.data_ptr, ts)
                if ptrs != tls.ptrs and not self._fill_donated(arr, ts, ptrs):
                    return self._pure(arr, x, state)  # an entry of another layout: fresh outputs
                y = self._new_y()
                arr[self.y_index] = y.data_ptr()
                self.fn_staged(arr)
                new = {k: ts[i] for k, i in self.out_pos}
                for k in self.passthrough:
                    new[k] = state[k]
                return y, new
        return self._pure(arr, x, state)

    def _new_y(self) -> Tensor:
        return _empty(self.y_shape, self.y_dtype)

    def _check_inputs(self, ins: list[Tensor]) -> None:
        if list(map(_NUMEL_DTYPE, ins)) != self.in_layout:
            bad = next(k for k, t, want in zip(self.in_keys, ins, self.in_layout) if _NUMEL_DTYPE(t) != want)
            raise ValueError(f"native step: {'the chunk' if bad is None else f'state entry {bad!r}'} does not "
                             "have the layout this step was compiled for (pass states of this stream only)")

    def _fill_donated(self, arr, ts: list[Tensor], ptrs: list) -> bool:
        """Other tensors (or storage) than last call: check their layouts and refill the input and output
        slots (False: an output entry of another layout, the caller falls back to fresh outputs)."""
        n_in = len(self.in_keys)
        self._check_inputs(ts[:n_in])
        if [_LAYOUT(ts[i]) for _, i in self.out_pos] != self.out_layout:
            return False
        for slot, i in self.donate_slots:
            arr[slot] = ptrs[1 + i]
        self.tls.ptrs = ptrs
        return True

    def _pure(self, arr, x: Tensor, state: State) -> tuple[Tensor, State]:
        """Fresh output tensors; the inputs are read, never written."""
        ins = [state[k] if k is not None else x for k in self.in_keys]
        if not all(map(Tensor.is_contiguous, ins)):
            ins = [t.contiguous() for t in ins]  # kept alive in `ins` until the call returns
        self._check_inputs(ins)
        self.tls.ptrs = None  # the output slots are about to hold fresh tensors
        for i, t in zip(self.in_idx, ins):
            arr[i] = t.data_ptr()
        y = self._new_y()
        arr[self.y_index] = y.data_ptr()
        new = {}
        for i, k, shape, dtype in self.out_specs:
            t = new[k] = _empty(shape, dtype)
            arr[i] = t.data_ptr()
        self.fn(arr)
        for k in self.passthrough:
            new[k] = state[k]
        return y, new


_LAYOUT = operator.attrgetter("shape", "dtype")


def _empty(shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """``torch.empty``: sizes as separate arguments parse ~2x faster than a shape tuple (~2 vs ~4 us)."""
    return torch.empty(*shape, dtype=dtype) if shape else torch.empty((), dtype=dtype)


def _NUMEL_DTYPE(t: Tensor) -> tuple[int, torch.dtype]:
    return t.numel(), t.dtype
