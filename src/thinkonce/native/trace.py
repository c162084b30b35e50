"""Record one eager step as a flat list of ATen ops on static buffers: the input of the C generator.

A step's control flow depends only on its key (chunk length, phase, batch), never on the data, so
running the eager step once under a :class:`~torch.utils._python_dispatch.TorchDispatchMode` sees
every tensor operation it does, with real shapes, strides and storage offsets. Integers the step
reads back from counters (``int(st["skip"][0])``) are baked in, as the traced backends bake them.

Every tensor becomes a :class:`View` of a :class:`Buf` (its storage): view ops (``narrow``,
``transpose``, ``as_strided``, ...) create no code at all, they only give a new offset/stride over the
same buffer, read from the real tensor. Ops that allocate produce a new buffer; in-place ops write into
theirs. Buffers are the step's input chunk, its input state entries, constants (weights, read from
the tensors the step touched) and temporaries. Nothing here knows about thinkonce's state layout: it
is whatever the eager step reads and returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

#: C element type of each dtype the generator handles
CTYPES = {torch.float32: "float", torch.int64: "int64_t", torch.bool: "unsigned char", torch.int32: "int32_t",
          torch.uint8: "uint8_t"}

#: ops that only read a value back to Python (baked by the key) or that are pure bookkeeping
IGNORED = {"aten._local_scalar_dense.default", "aten.lift_fresh.default", "aten.detach.default"}


class NotLowerable(Exception):
    """The step uses something the C generator cannot express (names it)."""


@dataclass(eq=False)
class Buf:
    """A flat array: ``kind`` is "input" (the chunk), "state" (an input state entry), "const" or "tmp"."""

    id: int
    kind: str
    dtype: torch.dtype
    numel: int
    data: Tensor | None = None  # constants: the flat values
    key: str | None = None  # state entries: the state key

    @property
    def ctype(self) -> str:
        return CTYPES[self.dtype]

    @property
    def name(self) -> str:
        return f"buf{self.id}"


@dataclass(eq=False)
class View:
    """A strided view of a buffer (sizes, strides and offset in elements)."""

    buf: Buf
    offset: int
    sizes: tuple[int, ...]
    strides: tuple[int, ...]

    @property
    def numel(self) -> int:
        n = 1
        for s in self.sizes:
            n *= s
        return n

    @property
    def dtype(self) -> torch.dtype:
        return self.buf.dtype

    def is_contiguous(self) -> bool:
        expect = 1
        for size, stride in zip(reversed(self.sizes), reversed(self.strides)):
            if size != 1 and stride != expect:
                return False
            expect *= size
        return True

    def covers(self, buf: Buf) -> bool:
        return self.buf is buf and self.offset == 0 and self.is_contiguous() and self.numel == buf.numel


@dataclass(eq=False)
class Op:
    """One recorded ATen op: ``args``/``kwargs`` with tensors replaced by views, ``outs`` its tensor results."""

    name: str  # e.g. "aten.convolution.default"
    packet: str  # e.g. "aten.convolution"
    args: tuple
    kwargs: dict
    outs: list[View | None]
    inplace: bool = False
    meta: dict = field(default_factory=dict)


@dataclass
class Trace:
    """The recorded step: inputs, ops in order, and the views holding the outputs."""

    x: Buf
    state: dict[str, Buf]
    ops: list[Op]
    y: View
    new_state: dict[str, View]
    bufs: list[Buf]


def _storage_key(t: Tensor) -> int:
    return t.untyped_storage().data_ptr()


class _Recorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.bufs: list[Buf] = []
        self.by_storage: dict[int, Buf] = {}
        self.ops: list[Op] = []
        self.alive: list[Any] = []  # keep every tensor alive: no storage address is reused while recording

    # ------------------------------------------------------------------ buffers and views
    def new_buf(self, kind: str, t: Tensor, key: str | None = None, data: Tensor | None = None) -> Buf:
        if t.dtype not in CTYPES:
            raise NotLowerable(f"tensors of dtype {t.dtype}")
        numel = t.untyped_storage().nbytes() // t.element_size()
        b = Buf(len(self.bufs), kind, t.dtype, numel, data, key)
        self.bufs.append(b)
        if numel:
            self.by_storage[_storage_key(t)] = b
        self.alive.append(t)
        return b

    def view(self, t: Tensor) -> View:
        buf = self.by_storage.get(_storage_key(t)) if t.untyped_storage().nbytes() else None
        if buf is None:  # a tensor the step did not compute: a weight, a buffer of the model, a constant
            with torch._C._DisableTorchDispatch():
                flat = torch.empty(0, dtype=t.dtype).set_(t.untyped_storage(), 0,
                                                          (t.untyped_storage().nbytes() // t.element_size(),), (1,))
                buf = self.new_buf("const", t, data=flat.clone())
        return View(buf, t.storage_offset(), tuple(t.shape), tuple(t.stride()))

    def _wrap(self, a: Any) -> Any:
        return self.view(a) if isinstance(a, Tensor) else a

    # ------------------------------------------------------------------ dispatch
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        name = str(func)
        ins_flat, _ = tree_flatten((args, kwargs))
        in_tensors = [a for a in ins_flat if isinstance(a, Tensor)]
        for t in in_tensors:
            if t.device.type != "cpu":
                raise NotLowerable(f"a tensor on {t.device}")
        wrapped_args = tree_map(self._wrap, args)
        wrapped_kwargs = tree_map(self._wrap, kwargs)
        out = func(*args, **kwargs)
        self.alive.append(out)
        if name in IGNORED:
            return out
        schema = func._schema
        mutable = schema.is_mutable
        out_flat, _ = tree_flatten(out)
        outs: list[View | None] = []
        fresh = False
        for o in out_flat:
            if not isinstance(o, Tensor):
                continue
            known = o.untyped_storage().nbytes() and _storage_key(o) in self.by_storage
            if not known:
                self.new_buf("tmp", o)
                fresh = True
            outs.append(self.view(o))
        if not fresh and not mutable:
            return out  # a view op: no code, the views carry the offsets and strides
        self.ops.append(Op(name, name.rsplit(".", 1)[0], wrapped_args, wrapped_kwargs, outs, inplace=mutable))
        return out


def record(step: Callable[[Tensor, dict[str, Tensor]], tuple[Tensor, dict[str, Tensor]]],
           x: Tensor, state: dict[str, Tensor]) -> tuple[Trace, tuple[Tensor, dict[str, Tensor]]]:
    """Run ``step(x, state)`` eagerly and record it. ``x`` and every state tensor must be contiguous and
    own their storage (callers pass clones). Returns the trace and the step's real result."""
    rec = _Recorder()
    xb = rec.new_buf("input", x)
    sb = {k: rec.new_buf("state", v, key=k) for k, v in sorted(state.items())}
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # fused attention has no generator: record its parts
    try:
        with torch.no_grad(), rec:
            y, new = step(x, state)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
    yv = rec.view(y)
    nv = {k: rec.view(v) for k, v in new.items()}
    return Trace(xb, sb, rec.ops, yv, nv, rec.bufs), (y, new)
