"""Native steps: a stream's step as generated C, compiled with the system compiler, called in-process
(``backend="native"``), or exported as self-contained C99 for a device (:meth:`Stream.export_c`).

One concept per module: :mod:`.trace` records an eager step as ATen ops on static buffers,
:mod:`.registry` maps each ATen op to its C emitter (:mod:`.emit_elementwise`, :mod:`.emit_linear`,
:mod:`.emit_misc`, :mod:`.emit_attention`), :mod:`.codegen` writes the function, :mod:`.compiler` finds the compiler and the
flags for this CPU, :mod:`.cache` keeps compiled libraries on disk, :mod:`.loader` calls them through
ctypes, :mod:`.backend` is the stream backend, :mod:`.export` the device export.
"""

from . import emit_attention, emit_elementwise, emit_linear, emit_misc  # noqa: F401  (register the emitters)
from .registry import register_c_emitter, registered_emitters

__all__ = ["register_c_emitter", "registered_emitters"]
