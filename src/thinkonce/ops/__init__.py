"""The op protocol and registry: every operation declares what it does to the time axis.

``register_op(target)`` registers a builder for an ``nn.Module`` class, a function, an ATen operator or
``method("name")``; the converter, ``analyze``, the bounds and the backends read the plans and
:class:`~thinkonce.stream.layers.TimeFacts` builders produce. One file per family; importing this
package registers them all. To add an op: write a builder (and, if it keeps state, a ``StreamOp``) in a
new file and register it - nothing else changes.
"""

from .context import OpContext
from .registry import describe_target, method, register_op

from . import conv, head, linear, norm, pad, pointwise, pool, reduce, shape, upsample  # noqa: E402,F401  (registration)
from . import conv2d, rnn  # noqa: E402,F401  (after conv/pool/upsample: their 1-D builders are extended)
from .pointwise import register_framewise  # noqa: E402

__all__ = ["OpContext", "register_op", "register_framewise", "method", "describe_target"]
