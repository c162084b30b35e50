"""The C emitter registry: one function per ATen operator (packet or overload) that writes its C code.

The native backend lowers a step at the level PyTorch dispatches it (:mod:`thinkonce.native.trace`),
so every StreamOp of the op registry - SlidingOp, TrimOp, AlignQueues, a user's own op - needs no C
of its own: it is made of ATen ops (``cat``, ``narrow``, ``convolution``, ...), and each ATen op has
one emitter here. A new StreamOp that calls an ATen op nobody emits yet adds one emitter:

>>> @register_c_emitter("aten.my_op")           # doctest: +SKIP
... def _(op, g):                                 # op: the recorded Op, g: the Gen writing the source
...     return g.loops(op.outs[0].sizes, ...)

A step that uses an op without an emitter is not lowered: the stream runs that step eagerly and
warns once, naming the op.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # pragma: no cover
    from .codegen import Gen
    from .trace import Op

Emitter = Callable[["Op", "Gen"], str]

_EMITTERS: dict[str, Emitter] = {}


def register_c_emitter(*names: str) -> Callable[[Emitter], Emitter]:
    """Register ``emit(op, g) -> C source`` for ATen ops named like ``"aten.relu"`` (every overload) or
    ``"aten.add.Tensor"`` (one overload); later registrations win."""

    def deco(fn: Emitter) -> Emitter:
        for n in names:
            _EMITTERS[n] = fn
        return fn

    return deco


def emitter_for(name: str, packet: str) -> Emitter | None:
    """The emitter of an overload, else of its packet, else None."""
    return _EMITTERS.get(name) or _EMITTERS.get(packet)


def registered_emitters() -> list[str]:
    return sorted(_EMITTERS)
