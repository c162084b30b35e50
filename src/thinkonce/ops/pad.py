"""Padding of the time axis: constant (zeros, or any value), reflect and replicate, and negative
padding (a trim).

Constant padding emits its left frames with the first chunk and its right frames when the stream
ends; the converter folds it into the sliding op that alone reads it. Reflect/replicate padding on the
left is computable from the signal's first frames (the stream waits for them once); on the right it is
made from the last frames when the stream ends. Circular padding would need the end of the signal at
its start and is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
from torch import Tensor

from ..stream.layers import PadOp, State, StreamOp, TimeFacts, TrimOp, _with_time
from ..stream.state import Field, counter
from .context import OpContext
from .registry import register_op


@dataclass
class EdgePadOp(StreamOp):
    """Reflect or replicate padding of the time axis (``dim``), ``left``/``right`` frames.

    State (every buffer at its maximum length, right-aligned, valid = the last ``fill`` frames):
    ``pending`` holds the first frames until the left padding can be built from them (reflect needs
    ``left + 1`` frames, replicate one), at most ``need - 1`` of them, fill ``npend``; ``tail`` the last
    frames the right padding is made of (``right + 1`` for reflect, one for replicate), fill ``ntail``;
    ``started`` 1 once the left padding went out. Buffers that can never hold a frame are omitted.
    """

    mode: str  # "reflect" | "replicate"
    left: int
    right: int
    dim: int = 2
    kind: str = "edgepad"

    def _need(self, n: int) -> int:
        return n + 1 if self.mode == "reflect" else (1 if n else 0)

    @property
    def _pending_cap(self) -> int:
        return max(self._need(self.left) - 1, 0)

    def facts(self) -> TimeFacts:
        return TimeFacts(pad_left=self.left, pad_right=self.right, rf_frames=self.left + self.right)

    def taint(self, n: int, left: int, right: int) -> tuple[int, int, int]:
        return PadOp(self.left, self.right, 0.0, self.dim).taint(n, left, right)

    def state_spec(self, in_shapes, dtype):
        spec: dict[str, Field] = {"started": counter(0)}
        P, K = self._pending_cap, self._need(self.right)
        if P or K:
            if not in_shapes or not in_shapes[0]:
                raise ValueError("EdgePadOp.state_spec needs the input frame shape")
            ax = self.dim - 1
        if P:
            spec["pending"] = Field(_with_time(tuple(in_shapes[0]), ax, P), dtype, ax, "npend")
            spec["npend"] = counter(0)
        if K:
            spec["tail"] = Field(_with_time(tuple(in_shapes[0]), ax, K), dtype, ax, "ntail")
            spec["ntail"] = counter(0)
        return spec

    def frames_out(self, m: Tensor, mode: str = "step") -> Tensor:
        need = self._need(self.left)
        return torch.where(m >= need, m + self.left, 0) if need else m

    def _edge(self, x: Tensor, n: int, at_start: bool) -> Tensor:
        d, L = self.dim, x.shape[self.dim]
        if self.mode == "replicate":
            one = x.narrow(d, 0 if at_start else L - 1, 1)
            return one.expand(*[n if i == d else -1 for i in range(x.dim())])
        part = x.narrow(d, 1, n) if at_start else x.narrow(d, L - 1 - n, n)
        return part.flip(d)

    def run(self, xs: Sequence[Tensor], st: State, mode: str) -> tuple[Tensor, State]:
        (x,) = xs
        d = self.dim
        n = x.shape[d]
        P, K = self._pending_cap, self._need(self.right)
        started: int = st["started"]  # type: ignore[assignment]
        new: dict = dict(st)
        real = x  # the frames released downstream this run (their left padding excluded)
        if not started:
            acc = x
            if P:
                npend: int = st["npend"]  # type: ignore[assignment]
                full = torch.cat([st["pending"], x], dim=d) if n else st["pending"]
                acc = full if npend + n == full.shape[d] else full.narrow(d, P - npend, npend + n)
                if npend + n <= P and mode != "flush":
                    new["pending"] = full.narrow(d, n, P) if n else st["pending"]
                    new["npend"] = npend + n
                    return acc.narrow(d, 0, 0), new
                new["npend"] = 0  # what was pending goes out now; the buffer's stale frames are never read
            elif acc.shape[d] < self._need(self.left) and mode != "flush":
                return acc, new  # nothing pending can exist: need <= 1 and no frame yet
            pad = self.left and acc.shape[d] >= self._need(self.left)
            x = torch.cat([self._edge(acc, self.left, True), acc], dim=d) if pad else acc
            new["started"] = 1
            real = acc
        if K:
            nt: int = st["ntail"]  # type: ignore[assignment]
            m = real.shape[d]
            hist = torch.cat([st["tail"], real], dim=d) if m else st["tail"]
            new["tail"] = hist.narrow(d, m, K) if m else st["tail"]
            new["ntail"] = min(K, nt + m)
            if mode == "flush":
                if self.right and nt + m >= K:
                    x = torch.cat([x, self._edge(hist.narrow(d, hist.shape[d] - K, K), self.right, False)], dim=d)
                new["ntail"] = 0
        return x, new


def edge_pad_op(ctx: OpContext, mode: str, left: int, right: int) -> StreamOp:
    if mode in ("reflect", "replicate"):
        return EdgePadOp(mode, left, right, dim=ctx.t)
    raise ctx.fail(f"'{mode}' padding of the time axis needs samples a stream does not have",
                   "Use zero, reflect or replicate padding.")


def pad_plan(ctx: OpContext, left: int, right: int, mode: str = "constant", value: float = 0.0):
    ops: list[StreamOp] = []
    if left > 0 or right > 0:
        if mode == "constant":
            ops.append(PadOp(max(left, 0), max(right, 0), float(value), dim=ctx.t))
        else:
            ops.append(edge_pad_op(ctx, mode, max(left, 0), max(right, 0)))
    if left < 0 or right < 0:
        ops.append(TrimOp(max(-left, 0), max(-right, 0), dim=ctx.t))
    if not ops:
        return ctx.framewise()
    return ctx.temporal(ops)


@register_op(torch.nn.functional.pad, torch.constant_pad_nd)
def pad_function(ctx: OpContext):
    pad = list(ctx.value(ctx.arg(1, "pad")))
    if ctx.node.target is torch.constant_pad_nd:
        mode, value = "constant", ctx.arg(2, "value", 0.0)
    else:
        mode, value = ctx.arg(2, "mode", "constant"), ctx.arg(3, "value", 0.0)
    value = 0.0 if value is None else value
    nd, t = ctx.ndim_in, ctx.t
    if any(isinstance(v, torch.fx.Node) for v in pad):
        raise ctx.fail("its padding widths are computed from the input (e.g. padding to a multiple of the "
                       "length)", "A stream has no length: pad by fixed widths.")
    pairs = {nd - 1 - i: (int(pad[2 * i]), int(pad[2 * i + 1])) for i in range(len(pad) // 2)}
    if t not in pairs or pairs[t] == (0, 0):
        return ctx.framewise()
    if any(v != (0, 0) for dd, v in pairs.items() if dd != t):
        raise ctx.fail("it pads the time axis and other axes at once", "Split it into two F.pad calls.")
    left, right = pairs[t]
    return pad_plan(ctx, left, right, mode, value)


@register_op(nn.ConstantPad1d, nn.ZeroPad1d, nn.ReflectionPad1d, nn.ReplicationPad1d, nn.CircularPad1d)
def pad_module(ctx: OpContext):
    m = ctx.module
    if ctx.t != ctx.ndim_in - 1:
        return ctx.framewise()
    left, right = m.padding  # type: ignore[union-attr]
    mode = {nn.ReflectionPad1d: "reflect", nn.ReplicationPad1d: "replicate", nn.CircularPad1d: "circular"}.get(
        type(m), "constant")
    return pad_plan(ctx, left, right, mode, float(getattr(m, "value", 0.0)))
