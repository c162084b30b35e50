"""Recurrences over time: unidirectional ``nn.GRU``, ``nn.LSTM`` and ``nn.RNN`` (any ``num_layers``,
with or without bias; dropout between layers is inactive in eval).

A causal recurrence streams exactly: its hidden state *is* its stream state. :class:`RecurrentOp` keeps
``h`` (and ``c`` for an LSTM) batch-first, ``(batch, num_layers, hidden)``, starting from zeros (or from
the constant ``h0`` the model passes) and feeds each chunk's frames through the module itself, so the
stream computes exactly the offline recurrence, frame for frame.

The module returns ``(output, h_n)``: the output is a sequence (time on axis 1, batch first), ``h_n``
(the final hidden state) mixes the whole signal; the plan's ``items`` tell ``getitem`` which is which.

Seq-first recurrences (``batch_first=False``) behind ``x.permute(2, 0, 1)`` are rewritten into
batch-first ones before conversion (:mod:`thinkonce.stream.rewrite`); one that still sees a seq-first
value is refused. A bidirectional recurrence reads the signal backwards from its end and is refused;
so is an LSTM with ``proj_size``.

Window mode: a window classifier with a recurrence restarts it from ``h0`` at every window, which a
state carried across windows does not reproduce, so the recurrence and everything after it is the head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.fx as fx
import torch.nn as nn
from torch import Tensor

from ..stream.layers import State, StreamOp, TimeFacts
from ..stream.state import Field
from .context import OpContext
from .registry import register_op

#: functions whose result is all zeros: an initial state made with them (sized from the batch) is zeros
_ZERO_MAKERS = (torch.zeros, torch.zeros_like, "new_zeros", "zeros_like")


@dataclass
class RecurrentOp(StreamOp):
    """A batch-first unidirectional ``nn.GRU``/``nn.LSTM``/``nn.RNN`` with its hidden state as state.

    State: ``h`` (B, num_layers, hidden) and, for an LSTM, ``c`` (B, num_layers, hidden). ``run`` returns
    the module's own output structure ``(y, h_n)`` (``h_n`` in PyTorch's (num_layers, B, hidden) layout,
    ``(h_n, c_n)`` for an LSTM) so that ``getitem`` picks the sequence as offline.
    """

    module: nn.RNNBase  # batch_first=True, eval
    h0: Tensor | None = None  # (num_layers, 1 or B, hidden) constant initial state, None: zeros
    c0: Tensor | None = None
    kind: str = "recurrence"

    @property
    def lstm(self) -> bool:
        return isinstance(self.module, nn.LSTM)

    def facts(self) -> TimeFacts:
        return TimeFacts()  # one output frame per input frame, no look-ahead, no padding

    def taint(self, n: int, left: int, right: int) -> tuple[int, int, int]:
        """Frame j depends on every frame up to j: a tainted start taints all, a tainted end its frames."""
        return n, (n if left > 0 else 0), min(right, n)

    def owes_at_end(self) -> bool:
        return False  # every frame goes out as soon as it arrives

    @staticmethod
    def _initial(v: Tensor | None) -> float | Tensor:
        """A field's ``init``: 0 (zeros) or the constant ``h0``/``c0`` batch-first, (1 or B, L, H)."""
        if v is None:
            return 0.0
        return v.detach().transpose(0, 1).contiguous()

    def state_spec(self, in_shapes, dtype):
        """``h`` (and ``c``): (num_layers, hidden) per row, batch-first, the same at every phase."""
        m = self.module
        shape = (m.num_layers, m.hidden_size)
        spec = {"h": Field(shape, dtype, init=self._initial(self.h0))}
        if self.lstm:
            spec["c"] = Field(shape, dtype, init=self._initial(self.c0))
        return spec

    def out_shape(self, in_shape):
        return (in_shape[0], self.module.hidden_size)  # (time, hidden) of the output sequence

    def run(self, xs: Sequence[Tensor], st: State, mode: str) -> tuple[Any, State]:
        (x,) = xs
        h = st["h"].transpose(0, 1)
        if x.shape[1] == 0:
            y = x.new_zeros((x.shape[0], 0, self.module.hidden_size))
            return (y, (h, st["c"].transpose(0, 1)) if self.lstm else h), dict(st)
        if self.lstm:
            y, (hn, cn) = self.module(x, (h.contiguous(), st["c"].transpose(0, 1).contiguous()))
            return (y, (hn, cn)), {"h": hn.transpose(0, 1).contiguous(), "c": cn.transpose(0, 1).contiguous()}
        y, hn = self.module(x, h.contiguous())
        return (y, hn), {"h": hn.transpose(0, 1).contiguous()}


def _initial_arg(ctx: OpContext, a: Any, what: str) -> Tensor | None:
    """A constant initial state (or None for zeros): a weight/buffer, or zeros sized from the batch."""
    if a is None:
        return None
    if not isinstance(a, fx.Node):
        return a
    while a.op == "call_method" and a.target in ("contiguous", "clone", "detach") and isinstance(a.args[0], fx.Node) \
            and not ctx.is_temporal(a):
        a = a.args[0]
    if a.op in ("call_function", "call_method") and a.target in _ZERO_MAKERS:
        return None
    if ctx.is_temporal(a):
        raise ctx.fail(f"its initial {what} is computed from the signal",
                       "Start the recurrence from zeros or from a constant (a parameter or buffer).")
    p = ctx._conv.plans[a]
    if p.kind == "const":
        return ctx.value(a)
    src = a.args[0] if a.args else None
    if a.op == "call_method" and a.target in ("expand", "repeat") and isinstance(src, fx.Node) \
            and ctx._conv.plans[src].kind == "const":
        v = ctx.value(src)  # a learned initial state broadcast to the batch: (L, 1, H)
        if isinstance(v, Tensor) and v.dim() == 3 and v.shape[1] == 1:
            return v
    target = a.target if a.op in ("call_function", "call_method") else None
    raise ctx.fail(f"its initial {what} '{a.name}' is computed from the input's shape by "
                   f"{a.op} {target!r}, not known to be a constant",
                   "Start the recurrence from zeros (torch.zeros(...)) or from a parameter or buffer.")


@register_op(nn.GRU, nn.LSTM, nn.RNN)
def recurrence(ctx: OpContext):
    m = ctx.module
    assert isinstance(m, nn.RNNBase)
    name = type(m).__name__
    if m.bidirectional:
        raise ctx.fail(f"a bidirectional {name} reads the signal backwards from its end, which a stream "
                       "never has", f"Use a unidirectional {name} (bidirectional=False) for streaming.")
    if getattr(m, "proj_size", 0):
        raise ctx.fail(f"an LSTM with proj_size={m.proj_size} has no streaming rule here",
                       "Use proj_size=0 (or a Linear after the LSTM).")
    if ctx.ndim_in != 3:
        raise ctx.fail(f"{name} input of shape {ctx.in_shape}: only batched 3-D input streams",
                       "Feed (batch, time, features) with batch_first=True.")
    if not m.batch_first:
        raise ctx.fail(f"a seq-first {name} (batch_first=False) reads (time, batch, features), but stream "
                       "values keep the batch first and this input was not reached through a "
                       "permute/transpose the converter could fold",
                       f"Use batch_first=True and feed (batch, time, features), or reach the {name} "
                       "through x.permute(2, 0, 1) and permute its output back.")
    if ctx.t != 1:
        raise ctx.fail(f"{name}(batch_first=True) reads (batch, time, features) but time is on axis {ctx.t} "
                       f"of shape {ctx.in_shape}", "Transpose to (batch, time, features) first (x.transpose(1, 2)).")
    if ctx.window is not None:
        return ctx.mixing("a recurrence restarts at each window")
    hx = ctx.arg(1, "hx")
    h0 = c0 = None
    if hx is not None:
        if m.mode == "LSTM":
            if isinstance(hx, (tuple, list)):
                h0 = _initial_arg(ctx, hx[0], "hidden state")
                c0 = _initial_arg(ctx, hx[1], "cell state")
            else:
                raise ctx.fail("its initial (h0, c0) is computed in the graph as one value",
                               "Pass a tuple (h0, c0) of constants, or start from zeros.")
        else:
            h0 = _initial_arg(ctx, hx, "hidden state")
    plan = ctx.temporal(RecurrentOp(m, h0, c0))
    plan.items = [1, None]  # element 0: the output sequence; element 1: the final hidden state (mixes time)
    return plan
