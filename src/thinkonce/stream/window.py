"""Window semantics (StreamiNNC): window W, hop H, pooling alignment and the exact reference.

A model trained on windows of W samples is run every H samples. The stream computes, per layer, only
the frames the new H samples add, and runs the head on a buffer of the window's features. Its outputs
equal :func:`extended_window_forward` - the model run on the window extended to the left by real
signal (signal padding), with the features cropped back to the window before the head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch
import torch.fx as fx
from torch import Tensor

from ..errors import AlignmentError
from .convert import Plan


@dataclass(frozen=True)
class WindowSpec:
    window: int
    hop: int
    period: int  # the trunk's stride period: every strided value realigns after this many samples
    extension: int  # left context in samples that makes window features exact (left padding reach)
    frames: dict[str, int]  # frames of each buffered value inside one window


def stride_period(plan: Plan) -> tuple[int, str]:
    """Least number of input samples after which every value of the trunk is on a frame boundary.

    Returns the period and the name of the node that sets it (for error messages).
    """
    period, who = 1, ""
    for p in plan.nodes:
        if p.temporal and p.rate is not None:
            num = Fraction(p.rate).numerator
            new = period * num // math.gcd(period, num)
            if new != period:
                period, who = new, p.node.name
    return period, who


def check_alignment(hop: int, period: int, who: str) -> None:
    """Raise if the hop does not keep pooling/stride alignment (frames of consecutive windows must coincide)."""
    if hop % period:
        allowed = ", ".join(str(period * k) for k in range(1, 5))
        raise AlignmentError(
            f"hop={hop} breaks pooling alignment: the network downsamples by {period} (up to node '{who}'), "
            f"so consecutive windows would see differently aligned frames. Allowed hops are multiples of "
            f"{period}: {allowed}, ..."
        )


def window_spec(plan: Plan, window: int, hop: int, allow_misaligned: bool = False) -> WindowSpec:
    if window <= 0 or hop <= 0:
        raise ValueError(f"window and hop must be positive, got window={window}, hop={hop}")
    if hop > window:
        raise ValueError(f"hop={hop} is larger than window={window}: windows would not overlap; nothing to reuse")
    period, who = stride_period(plan)
    if not allow_misaligned:
        check_alignment(hop, period, who)
    reach = max((plan.by_node[v].reach for v in plan.head_inputs), default=Fraction(0))
    ext = math.ceil(reach)
    ext = max(period, -(-ext // period) * period)
    frames = {}
    for v in plan.head_inputs:
        shape = plan.example_shapes[v]
        frames[v.name] = int(shape[plan.by_node[v].tdim])
    return WindowSpec(window, hop, period, ext, frames)


class _CroppingInterpreter(fx.Interpreter):
    """Runs the model on extended windows; head nodes read the window's crop of each buffered value
    (trunk nodes keep reading the whole extended value), and values the plan fixed (the window's
    length read from a shape) keep the window's value, as in the stream."""

    def __init__(self, plan: Plan, frames: dict[str, int]) -> None:
        super().__init__(plan.gm)
        self.plan = plan
        self.frames = frames
        self.cropped: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        p = self.plan.by_node.get(n)
        if p is not None and p.kind == "const" and p.value is not None and n.op != "get_attr":
            return p.value
        if p is not None and p.kind == "head":
            saved = {}
            for a in n.all_input_nodes:
                if a.name in self.frames:
                    saved[a] = self.env[a]
                    self.env[a] = self._crop(a)
            try:
                return super().run_node(n)
            finally:
                self.env.update(saved)
        return super().run_node(n)

    def _crop(self, a: fx.Node) -> Any:
        if a not in self.cropped:
            out = self.env[a]
            f = self.frames[a.name]
            d = self.plan.by_node[a].tdim
            self.cropped[a] = out.narrow(d, out.shape[d] - f, f).contiguous()  # as the stream's head sees it
        return self.cropped[a]

    def output(self, target: Any, args: Any, kwargs: Any) -> Any:
        out = args[0]
        if isinstance(out, torch.Tensor):
            for a, v in self.env.items():
                if v is out and a.name in self.frames:
                    return self._crop(a)
        return out


def extended_window_forward(plan: Plan, spec: WindowSpec, x_ext: Tensor) -> Any:
    """Run the model on windows extended to the left, cropping features to the window before the head.

    This is signal padding: ``x_ext`` holds ``extension`` samples of real signal (or more) before each
    window; the layers' zero padding then only touches the extension, which the crop removes.
    """
    with torch.no_grad():
        return _CroppingInterpreter(plan, spec.frames).run(x_ext)


def approximate_window_forward(plan: Plan, spec: WindowSpec, x: Tensor, program: Any) -> Any:
    """The cheapest (and crudest) streaming: each hop of the window run through the trunk *alone*,
    zero-padded at both of its edges, the hops' features concatenated, then the head.

    This is what naive chunked inference does; StreamiNNC's experiments compare against it.
    """
    from torch.fx.node import map_arg

    H = spec.hop
    if x.shape[-1] % H:
        raise ValueError(f"window length {x.shape[-1]} is not a multiple of the hop {H}")
    wanted = set(plan.head_inputs)
    parts: dict[fx.Node, list[Tensor]] = {v: [] for v in plan.head_inputs}
    with torch.no_grad():
        for s in range(0, x.shape[-1], H):
            env: dict[fx.Node, Any] = dict(program.consts)
            for p in plan.nodes:
                if p.kind in ("const", "head"):
                    continue
                n = p.node
                if p.kind == "input":
                    env[n] = x[..., s : s + H]
                    continue
                args = map_arg(n.args, env.__getitem__)
                kwargs = map_arg(n.kwargs, env.__getitem__)
                if n.op == "call_module":
                    env[n] = plan.gm.get_submodule(n.target)(*args, **kwargs)
                elif n.op == "call_method":
                    env[n] = getattr(args[0], n.target)(*args[1:], **kwargs)
                else:
                    env[n] = n.target(*args, **kwargs)
            for v in wanted:
                parts[v].append(env[v])
        feats = {}
        for v, chunks in parts.items():
            d = plan.by_node[v].tdim
            f = spec.frames[v.name]
            full = torch.cat(chunks, dim=d)
            if full.shape[d] < f:
                shape = list(full.shape)
                shape[d] = f - full.shape[d]
                full = torch.cat([full.new_zeros(shape), full], dim=d)
            feats[v] = full.narrow(d, full.shape[d] - f, f)
        return program.head(feats, env)
