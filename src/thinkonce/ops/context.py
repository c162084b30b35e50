"""What a builder sees of one graph node, and the verbs it answers with.

A builder never touches the converter: it reads the node's facts here (time axis, rate, shapes,
argument values) and returns one of ``ctx.framewise()``, ``ctx.temporal(op)``, ``ctx.mixing(reason)``,
``ctx.const(value)``, ``ctx.dyn()``, or raises ``ctx.fail(reason, hint)``.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch.fx as fx
import torch.nn as nn

from ..errors import UnsupportedNodeError
from ..stream.layers import StreamOp
from .registry import describe_target

if TYPE_CHECKING:  # pragma: no cover
    from ..stream.convert import Converter, NodePlan


def ndim_of(shape: Any) -> int:
    if isinstance(shape, tuple) and all(isinstance(e, int) for e in shape):
        return len(shape)
    if isinstance(shape, (tuple, list)) and shape:
        return ndim_of(shape[0])
    return -1


def norm_dim(d: int, ndim: int) -> int:
    return d + ndim if d < 0 else d


def single(v: Any) -> int:
    return int(v[0]) if isinstance(v, (tuple, list)) else int(v)


DEFAULT_HINT = (
    "Supported temporal layers: Conv1d/Conv2d, ConvTranspose1d, Max/AvgPool1d/2d, nearest Upsample, "
    "constant/reflect/replicate padding, time trims; frame-wise: activations, BatchNorm (eval), Dropout, "
    "Linear/LayerNorm over channels, add/mul/cat of branches, split/chunk over channels, GRU/LSTM "
    "(unidirectional). Register your own with thinkonce.register_op(YourModule) (see thinkonce.ops) or "
    "thinkonce.register_framewise(fn) for a frame-wise function."
)


def pos_is_const(plan: Any) -> bool:
    return plan is not None and plan.kind == "const"


class OpContext:
    """One node as a builder sees it: its temporal inputs' facts and helpers to answer."""

    def __init__(self, conv: "Converter", node: fx.Node, idx: int, targs: tuple[fx.Node, ...],
                 rate: Fraction, rf: Fraction) -> None:
        self._conv = conv
        self.node = node
        self.idx = idx
        self.targs = targs
        self.rate = rate
        self.rf = rf
        first = conv.plans[targs[0]]
        self.t: int = first.tdim  # type: ignore[assignment]
        self.in_shape = conv.shapes.get(targs[0])
        self.out_shape = conv.shapes.get(node)
        self.ndim_in = ndim_of(self.in_shape)
        self.ndim_out = ndim_of(self.out_shape)
        self.window = conv.window
        self.module: nn.Module | None = conv.modules.get(node.target) if node.op == "call_module" else None

    # ------------------------------------------------------------------ reading
    @property
    def continuous(self) -> bool:
        return self.window is None

    def arg(self, pos: int, name: str, default: Any = None) -> Any:
        """Argument by position (counting the input as 0 for functions and methods) or keyword.

        Arguments computed in the graph from weights or shapes only (``x.dim() - 1``, ``w.shape[0]``) are
        returned as their values, so builders read ``dim=x.dim() - 1`` like ``dim=2``; arguments that
        depend on the signal stay nodes."""
        n = self.node
        a = n.args[pos] if len(n.args) > pos else n.kwargs.get(name, default)
        if isinstance(a, (tuple, list)):
            return type(a)(self._resolved(e) for e in a)
        return self._resolved(a)

    def _resolved(self, a: Any) -> Any:
        if isinstance(a, fx.Node) and pos_is_const(self._conv.plans.get(a)):
            return self._conv.const_value(a)
        return a

    def dim(self, d: int, ndim: int | None = None) -> int:
        return norm_dim(int(d), self.ndim_in if ndim is None else ndim)

    def tdim_of(self, a: fx.Node) -> int | None:
        return self._conv.plans[a].tdim

    def is_temporal(self, a: Any) -> bool:
        return isinstance(a, fx.Node) and self._conv.plans[a].temporal

    def value(self, a: Any) -> Any:
        """The value of a non-temporal argument (a weight, a constant, a literal), computed once.

        Raises if the argument depends on the signal: a weight computed from the input is not a layer.
        """
        if not isinstance(a, fx.Node):
            return a
        p = self._conv.plans[a]
        if p.kind != "const":
            raise self.fail(f"its argument '{a.name}' depends on the signal ({p.kind}), not only on weights")
        return self._conv.const_value(a)

    def shape(self, a: fx.Node) -> Any:
        return self._conv.shapes.get(a)

    # ------------------------------------------------------------------ answers
    def framewise(self, tdim: int | None = None, call: Callable[[Callable[[fx.Node], Any]], Any] | None = None) -> "NodePlan":
        """Runs on any chunk of frames (combining several branches frame by frame, aligned)."""
        from ..stream.convert import NodePlan
        from ..stream.layers import AlignQueues

        if tdim is None:
            tdim = self.t if self.ndim_out < 0 or self.ndim_in < 0 else self.t + (self.ndim_out - self.ndim_in)
        if len(self.targs) > 1:
            dims = tuple(self._conv.plans[a].tdim for a in self.targs)
            return NodePlan(self.node, "align", tdim=tdim, rate=self.rate, rf=self.rf, op=AlignQueues(dims),  # type: ignore[arg-type]
                            temporal_args=self.targs, call=call)
        return NodePlan(self.node, "framewise", tdim=tdim, rate=self.rate, rf=self.rf, temporal_args=self.targs,
                        call=call)

    def temporal(self, op: "StreamOp | Sequence[StreamOp]", tdim: int | None = None) -> "NodePlan":
        """A stateful op on the time axis; rate and receptive field follow from ``op.facts()``. A sequence
        of ops (a convolution and the trim of its padding, ...) runs as one chained op."""
        from ..stream.convert import NodePlan
        from ..stream.layers import ChainOp

        if isinstance(op, (list, tuple)):
            op = op[0] if len(op) == 1 else ChainOp(tuple(op))

        rate, rf = self.rate, self.rf
        for sub in (op.ops if isinstance(op, ChainOp) else (op,)):
            f = sub.facts()
            rf = rf + f.rf_frames * rate
            rate = rate * f.stride
        if len(self.targs) != 1:
            raise self.fail("a temporal op with several temporal inputs has no streaming rule")
        return NodePlan(self.node, "temporal", tdim=self.t if tdim is None else tdim, rate=rate, rf=rf, op=op,
                        temporal_args=self.targs)

    def mixing(self, reason: str) -> "NodePlan":
        """Mixes the whole time axis: part of the head in window mode, refused in continuous mode."""
        from ..stream.convert import NodePlan

        if self.window is None:
            raise self.fail(
                f"it mixes the whole time axis ({reason})",
                "In continuous mode every layer must work frame by frame; pass window=W, hop=H to "
                "thinkonce.stream to run such a head on a buffer of each window's features.",
            )
        return NodePlan(self.node, "head", reason=reason)

    def batch_moved(self) -> "NodePlan":
        if self.window is None:
            raise self.fail("it moves the batch axis away from dim 0; stream values stay batch-first",
                            "Keep the batch axis first (e.g. use batch_first=True layers).")
        return self.mixing("it moves the batch axis away from dim 0 (stream values stay batch-first)")

    def const(self, value: Any) -> "NodePlan":
        from ..stream.convert import NodePlan

        return NodePlan(self.node, "const", value=value)

    def dyn(self, tlen: bool = False) -> "NodePlan":
        """Recomputed from each chunk (batch size, channel count). ``tlen``: it is the chunk's time length."""
        from ..stream.convert import NodePlan

        return NodePlan(self.node, "dyn", tlen=tlen)

    def fail(self, reason: str, hint: str = "") -> UnsupportedNodeError:
        return UnsupportedNodeError(f"cannot stream {self._conv.where(self.node, self.idx)}: {reason}. "
                                    f"{hint or DEFAULT_HINT}")

    def target_name(self) -> str:
        return describe_target(self.node.target)
