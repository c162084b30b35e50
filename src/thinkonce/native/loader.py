"""Load a compiled step with ctypes and call it on tensors.

The C function takes one array of pointers (see :class:`~thinkonce.native.codegen.CStep`). Per
thread, the array and the workspace are made once and reused; per call only the input, state and
output addresses change. Outputs are fresh tensors (the step stays pure) unless the caller donates
its state, in which case new state entries of unchanged shape are written into the old tensors.
"""

from __future__ import annotations

import ctypes
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
    """A callable ``(x, state, donate) -> (y, new_state)`` around one compiled step."""

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
        self.slots: list[tuple[int, str, object]] = []  # (index, kind, key/shape) of per-call pointers
        self.out_specs: list[tuple[int, str, tuple[int, ...], torch.dtype]] = []
        ci = 0
        self.fixed: dict[int, int] = {}
        for i, b in enumerate(cstep.params):
            if b.kind == "input":
                self.slots.append((i, "x", None))
            elif b.kind == "state":
                self.slots.append((i, "state", b.key))
            elif b.kind == "const":
                self.fixed[i] = self.consts[ci].data_ptr()
                ci += 1
        views = dict(cstep.outputs)
        for i, b in enumerate(cstep.params):
            if b.kind == "out":
                v = views[b.key]
                self.out_specs.append((i, b.key, v.sizes, v.dtype))
        self.passthrough = cstep.passthrough
        self.tls = threading.local()

    def _thread_buffers(self):
        tls = self.tls
        arr = getattr(tls, "arr", None)
        if arr is None:
            arr = (ctypes.c_void_p * self.n)()
            for i, p in self.fixed.items():
                arr[i] = p
            tls.ws = torch.empty(max(self.cstep.workspace_bytes, 64) + 64, dtype=torch.uint8)
            tls.stage = None
            arr[self.n - 1] = tls.ws.data_ptr()
            tls.arr = arr
        return arr

    def __call__(self, x: Tensor, state: State, donate: bool = False) -> tuple[Tensor, State]:
        arr = self._thread_buffers()
        keep = []
        for i, kind, key in self.slots:
            t = x if kind == "x" else state[key]  # type: ignore[index]
            if not t.is_contiguous():
                t = t.contiguous()
                keep.append(t)
            arr[i] = t.data_ptr()
        new: State = {}
        y = None
        for i, key, shape, dtype in self.out_specs:
            old = state.get(key) if donate else None
            if old is not None and tuple(old.shape) == shape and old.dtype == dtype and old.is_contiguous():
                t = old
            else:
                t = torch.empty(shape, dtype=dtype)
            arr[i] = t.data_ptr()
            if key == "y":
                y = t
            else:
                new[key] = t
        (self.fn_staged if donate else self.fn)(arr)
        for k in self.passthrough:
            new[k] = state[k]
        assert y is not None
        return y, new
