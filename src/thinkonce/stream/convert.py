"""Conversion of a traced model into a streaming plan.

The model is traced with ``torch.fx`` and run once on an example input to learn every value's shape.
Then each node is classified by what it does to the time axis (see :mod:`thinkonce.stream.rules`):

* ``const``     - does not depend on the signal (parameters, constants): computed once;
* ``dyn``       - shape queries on the signal (batch or channel sizes): recomputed every step;
* ``framewise`` - runs on any chunk of frames (activations, BatchNorm in eval, Linear over channels);
* ``temporal``  - has a streaming counterpart with state (conv, pooling, transposed conv, padding);
* ``align``     - combines several temporal branches frame by frame, with delay alignment queues;
* ``head``      - window mode only: mixes the whole time axis; runs on a buffer of the window's features;
* ``alias``     - the same value as its input (padding fused into the next conv).

Anything else raises :class:`UnsupportedNodeError` naming the node, its module path and type.
"""

from __future__ import annotations

import copy
import math
import operator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.node import map_arg

from ..errors import UnsupportedNodeError
from . import rules
from .kernels import conv1d
from .layers import (
    ChainOp,
    PadOp,
    SlidingOp,
    StreamOp,
    TransposedConvOp,
    TrimOp,
    UpsampleOp,
    AlignQueues,
)

TEMPORAL_KINDS = ("input", "framewise", "temporal", "align", "alias")


@dataclass
class NodePlan:
    """How one graph node runs in a stream."""

    node: fx.Node
    kind: str
    tdim: int | None = None  # time axis of the value (of each element for tuples)
    rate: Fraction | None = None  # input samples per frame
    rf: Fraction = Fraction(1)  # receptive field in input samples (upper bound)
    reach: Fraction = Fraction(0)  # how far (samples) left of the signal start frame 0 depends on padding
    op: StreamOp | None = None
    temporal_args: tuple[fx.Node, ...] = ()
    source: fx.Node | None = None  # for alias
    value: Any = None  # for const
    reason: str = ""  # for head: why this node mixes the time axis
    call: Any = None  # frame-wise: replaces the node's own call, ``call(look)`` (look: node -> value)

    @property
    def temporal(self) -> bool:
        return self.kind in TEMPORAL_KINDS


@dataclass
class Plan:
    gm: fx.GraphModule
    nodes: list[NodePlan]
    by_node: dict[fx.Node, NodePlan]
    input_node: fx.Node
    output_arg: Any
    example_shapes: dict[fx.Node, Any]
    input_shape: tuple[int, ...]  # example input shape (batch, ..., time)
    head_inputs: list[fx.Node] = field(default_factory=list)
    head_nodes: list[NodePlan] = field(default_factory=list)

    @property
    def trunk(self) -> list[NodePlan]:
        return [p for p in self.nodes if p.kind not in ("head", "output", "const")]

    def stateful(self) -> list[NodePlan]:
        return [p for p in self.nodes if p.op is not None]


class _ShapeRecorder(fx.Interpreter):
    """Runs the graph once and records the shape (or value) of everything it computes."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.shapes: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        self.shapes[n] = _shape_of(out)
        return out


def _shape_of(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return tuple(v.shape)
    if isinstance(v, (tuple, list)):
        return type(v)(_shape_of(e) for e in v)
    return v


def _ndim(shape: Any) -> int:
    if isinstance(shape, tuple) and all(isinstance(e, int) for e in shape):
        return len(shape)
    if isinstance(shape, (tuple, list)) and shape:
        return _ndim(shape[0])
    return -1


def _norm_dim(d: int, ndim: int) -> int:
    return d + ndim if d < 0 else d


def _arg(node: fx.Node, pos: int, name: str, default: Any = None) -> Any:
    if len(node.args) > pos:
        return node.args[pos]
    return node.kwargs.get(name, default)


def _single(v: Any) -> int:
    return int(v[0]) if isinstance(v, (tuple, list)) else int(v)


class Converter:
    """Builds a :class:`Plan` from a model; ``window`` selects window mode (heads allowed)."""

    def __init__(self, model: nn.Module, example: torch.Tensor, window: int | None) -> None:
        self.window = window
        self.model = model
        try:
            self.gm = fx.symbolic_trace(model)
        except Exception as e:  # fx raises many kinds: wrap with a hint
            raise UnsupportedNodeError(
                f"torch.fx could not trace {type(model).__name__}: {e}. Streaming needs a forward "
                "without data-dependent Python control flow; move such logic out of forward()."
            ) from e
        self.gm.graph.eliminate_dead_code()
        self.gm.recompile()
        self.modules = dict(self.gm.named_modules())
        rec = _ShapeRecorder(self.gm)
        with torch.no_grad():
            try:
                rec.run(example)
            except Exception as e:
                raise UnsupportedNodeError(
                    f"the model failed on an example input of shape {tuple(example.shape)}: {e}. "
                    "Pass example_input= with the shape the model expects (batch, channels, time)."
                ) from e
        self.shapes = rec.shapes
        self.input_shape = tuple(example.shape)
        self.plans: dict[fx.Node, NodePlan] = {}
        self.order: list[NodePlan] = []

    # ------------------------------------------------------------------ helpers
    def _where(self, n: fx.Node, idx: int) -> str:
        if n.op == "call_module":
            mod = self.modules[n.target]
            return f"node '{n.name}' (#{idx}, module '{n.target}', type {type(mod).__name__})"
        return f"node '{n.name}' (#{idx}, {n.op} {rules.describe_target(n.target)})"

    def _fail(self, n: fx.Node, idx: int, reason: str, hint: str = "") -> UnsupportedNodeError:
        hint = hint or (
            "Supported temporal layers: Conv1d, ConvTranspose1d, MaxPool1d, AvgPool1d, nearest Upsample, "
            "constant padding; frame-wise: activations, BatchNorm1d (eval), Dropout, Linear/LayerNorm over "
            "channels, add/mul/cat of branches. Declare your own frame-wise op with "
            "thinkonce.register_framewise(fn)."
        )
        return UnsupportedNodeError(f"cannot stream {self._where(n, idx)}: {reason}. {hint}")

    def _batch_moved(self, n: fx.Node, idx: int) -> NodePlan:
        """Stream state is batch-first: an op that moves the batch axis can only be part of a head."""
        if self.window is None:
            raise self._fail(n, idx, "it moves the batch axis away from dim 0; stream values stay batch-first",
                             "Keep the batch axis first (e.g. use batch_first=True layers).")
        return self._mixing(n, idx, "it moves the batch axis away from dim 0 (stream values stay batch-first)")

    def _mixing(self, n: fx.Node, idx: int, reason: str) -> NodePlan:
        if self.window is None:
            raise self._fail(
                n, idx, f"it mixes the whole time axis ({reason})",
                "In continuous mode every layer must work frame by frame; pass window=W, hop=H to "
                "thinkonce.stream to run such a head on a buffer of each window's features.",
            )
        return NodePlan(n, "head", reason=reason)

    # ------------------------------------------------------------------ main
    def convert(self) -> Plan:
        placeholders = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise UnsupportedNodeError(
                f"the model's forward takes {len(placeholders)} inputs; a stream needs exactly one signal "
                "input. Wrap the model so that forward(x) takes the signal only."
            )
        out_node = None
        for idx, n in enumerate(self.gm.graph.nodes):
            if n.op == "output":
                out_node = n
                continue
            plan = self._classify(n, idx)
            self.plans[n] = plan
            self.order.append(plan)
        assert out_node is not None
        self._fuse_padding()
        self._left_reach()
        plan = Plan(
            gm=self.gm,
            nodes=self.order,
            by_node=self.plans,
            input_node=placeholders[0],
            output_arg=out_node.args[0],
            example_shapes=self.shapes,
            input_shape=self.input_shape,
        )
        self._finish_heads(plan, out_node)
        return plan

    def _classify(self, n: fx.Node, idx: int) -> NodePlan:
        if n.op == "placeholder":
            nd = len(self.input_shape)
            if nd < 2:
                raise UnsupportedNodeError("the signal input needs at least (batch, time) dimensions")
            return NodePlan(n, "input", tdim=nd - 1, rate=Fraction(1), rf=Fraction(1))
        if n.op == "get_attr":
            return NodePlan(n, "const")
        inputs: list[fx.Node] = []
        map_arg((n.args, n.kwargs), lambda a: inputs.append(a) or a)
        plans = [self.plans[a] for a in inputs]
        if any(p.kind == "head" for p in plans):
            return NodePlan(n, "head", reason="downstream of the head")
        temporal = [a for a, p in zip(inputs, plans) if p.temporal]
        if not temporal:
            if any(p.kind == "dyn" for p in plans):
                return NodePlan(n, "dyn")
            return NodePlan(n, "const")
        # unique temporal inputs, in order
        seen: list[fx.Node] = []
        for a in temporal:
            if a not in seen:
                seen.append(a)
        return self._classify_temporal(n, idx, tuple(seen))

    def _classify_temporal(self, n: fx.Node, idx: int, targs: tuple[fx.Node, ...]) -> NodePlan:
        first = self.plans[targs[0]]
        t = first.tdim
        in_shape = self.shapes[targs[0]]
        out_shape = self.shapes.get(n)
        ndim_in = _ndim(in_shape)
        ndim_out = _ndim(out_shape)
        rate, rf = first.rate, first.rf
        for a in targs[1:]:
            p = self.plans[a]
            if p.rate != rate:
                raise self._fail(
                    n, idx,
                    f"it combines branches at different time rates ({targs[0].name}: {first.rate} samples "
                    f"per frame, {a.name}: {p.rate})",
                    "Branches must be resampled to the same rate before they are combined.",
                )
            rf = max(rf, p.rf)

        def framewise(tdim: int | None = None) -> NodePlan:
            if tdim is None:
                tdim = t if ndim_out < 0 or ndim_in < 0 else t + (ndim_out - ndim_in)
            if len(targs) > 1:
                dims = tuple(self.plans[a].tdim for a in targs)
                return NodePlan(n, "align", tdim=tdim, rate=rate, rf=rf, op=AlignQueues(dims), temporal_args=targs)
            return NodePlan(n, "framewise", tdim=tdim, rate=rate, rf=rf, temporal_args=targs)

        if n.op == "call_module":
            return self._classify_module(n, idx, targs, framewise)
        target = n.target
        is_method = n.op == "call_method"

        if rules.is_user_framewise(target):
            return framewise()
        if isinstance(target, torch._ops.OpOverload) and torch.Tag.pointwise in target.tags:
            return framewise()  # element-wise ATen operator (exported graphs)
        # shape queries
        if (n.op == "call_function" and target is getattr and n.args[1] == "shape") or (
            is_method and target in ("size", "dim")
        ):
            if is_method and target == "size":
                d = _arg(n, 1, "dim")
                if d is not None and _norm_dim(d, ndim_in) == t:
                    if self.window is not None:  # within a window every length is that of the window
                        return NodePlan(n, "const", value=self.shapes[n])
                    raise self._fail(n, idx, "it reads the length of the time axis, which a stream does not have")
            return NodePlan(n, "dyn")
        if target is operator.getitem:
            return self._classify_getitem(n, idx, t, in_shape, framewise)
        if (is_method and target in rules.FRAMEWISE_METHODS) or (
            not is_method and target in rules.FRAMEWISE_FUNCTIONS
        ):
            return framewise()
        # moving the time axis
        if target in ("transpose", torch.transpose, "swapaxes", torch.swapaxes):
            a, b = _norm_dim(n.args[1], ndim_in), _norm_dim(n.args[2], ndim_in)
            if a != b and 0 in (a, b):
                return self._batch_moved(n, idx)
            return framewise(b if t == a else a if t == b else t)
        if target in ("permute", torch.permute):
            dims = n.args[1] if (len(n.args) == 2 and isinstance(n.args[1], (tuple, list))) else n.args[1:]
            dims = [_norm_dim(d, ndim_in) for d in dims]
            if dims[0] != 0:
                return self._batch_moved(n, idx)
            return framewise(dims.index(t))
        if target in ("unsqueeze", torch.unsqueeze):
            d = _norm_dim(_arg(n, 1, "dim"), ndim_out)
            if d == 0:
                return self._batch_moved(n, idx)
            return framewise(t + 1 if d <= t else t)
        if target in ("squeeze", torch.squeeze):
            d = _arg(n, 1, "dim")
            if d is None:
                raise self._fail(n, idx, "squeeze() without a dim could remove the time axis", "Name the dim to squeeze.")
            ds = [_norm_dim(x, ndim_in) for x in (d if isinstance(d, (tuple, list)) else [d])]
            if t in ds:
                return self._mixing(n, idx, "squeezes the time axis")
            return framewise(t - sum(1 for x in ds if x < t and in_shape[x] == 1))
        if target in ("unflatten", torch.unflatten):
            d = _norm_dim(_arg(n, 1, "dim"), ndim_in)
            if d == t:
                return self._mixing(n, idx, "unflattens the time axis")
            return framewise(t + len(_arg(n, 2, "sizes")) - 1 if d < t else t)
        if target in ("select", torch.select):
            d = _norm_dim(_arg(n, 1, "dim"), ndim_in)
            if d == t:
                return self._mixing(n, idx, "selects one frame of the time axis")
            return framewise(t - 1 if d < t else t)
        if target in ("narrow", torch.narrow):
            d = _norm_dim(_arg(n, 1, "dim"), ndim_in)
            if d == t:
                return self._mixing(n, idx, "narrows the time axis")
            return framewise(t)
        if target in ("flatten", torch.flatten):
            s0 = _norm_dim(_arg(n, 1, "start_dim", 0), ndim_in)
            s1 = _norm_dim(_arg(n, 2, "end_dim", -1), ndim_in)
            if s0 <= t <= s1 and s0 < s1:
                return self._mixing(n, idx, "flattens the time axis into features")
            return framewise(t - (s1 - s0) if t > s1 else t)
        if target in (torch.cat, torch.concat, torch.concatenate, torch.stack):
            d = _norm_dim(_arg(n, 1, "dim", 0), ndim_out if target is torch.stack else ndim_in)
            if target is torch.stack:
                return framewise(t + 1 if d <= t else t)
            if d == t:
                raise self._fail(n, idx, "it concatenates along the time axis", "Concatenate over channels instead.")
            return framewise(t)
        if target is F.pad:
            return self._classify_pad(n, idx, t, ndim_in, framewise, rate, rf, targs)
        if target is F.interpolate:
            return self._classify_interpolate(n, idx, t, ndim_in, rate, rf, targs)
        if target is F.linear:
            if t == ndim_in - 1:
                return self._mixing(n, idx, "a linear map over the time axis")
            return framewise()
        if (is_method and target in rules.REDUCTION_METHODS) or (not is_method and target in rules.REDUCTION_FUNCTIONS):
            if target in (torch.max, torch.min, "max", "min") and len(n.args) > 1 and isinstance(n.args[1], fx.Node):
                return framewise()  # elementwise max/min of two tensors
            d = _arg(n, 1, "dim")
            if d is None:
                return self._mixing(n, idx, f"{rules.describe_target(target)} over every axis")
            ds = [_norm_dim(x, ndim_in) for x in (d if isinstance(d, (tuple, list)) else [d])]
            if t in ds:
                return self._mixing(n, idx, f"{rules.describe_target(target)} over the time axis")
            keep = _arg(n, 2, "keepdim", False)
            if target in (torch.softmax, torch.log_softmax, F.softmax, F.log_softmax, F.softmin, F.glu,
                          F.normalize, torch.cumsum, torch.cumprod, "softmax", "log_softmax", "cumsum", "cumprod"):
                keep = True
            return framewise(t if keep else t - sum(1 for x in ds if x < t))
        if (is_method and target in rules.MIXING_METHODS) or (not is_method and target in rules.MIXING_FUNCTIONS):
            return self._mixing(n, idx, f"{rules.describe_target(target)} on a temporal value")
        raise self._fail(n, idx, "no streaming rule for this operation")

    def _classify_getitem(self, n, idx, t, in_shape, framewise) -> NodePlan:
        index = n.args[1]
        if isinstance(in_shape, (tuple, list)) and not (in_shape and isinstance(in_shape[0], int)):
            return framewise(t)  # element of a tuple of temporal values
        items = list(index) if isinstance(index, tuple) else [index]
        if any(isinstance(i, fx.Node) for i in items):
            raise self._fail(n, idx, "indexing a temporal value with a tensor")
        nd = len(in_shape)
        if Ellipsis in items:
            k = items.index(Ellipsis)
            n_real = sum(1 for i in items if i is not None and i is not Ellipsis)
            items = items[:k] + [slice(None)] * (nd - n_real) + items[k + 1 :]
        items = items + [slice(None)] * (nd - sum(1 for i in items if i is not None))
        src, out_t = 0, 0
        for it in items:
            if it is None:
                out_t += 1
                continue
            if src == t:
                if it == slice(None) or (isinstance(it, slice) and it.start in (None, 0) and it.stop is None and it.step in (None, 1)):
                    return framewise(out_t)
                return self._mixing(n, idx, "indexes or slices the time axis")
            if not isinstance(it, int):
                out_t += 1
            src += 1
        return framewise(out_t)

    def _classify_pad(self, n, idx, t, ndim_in, framewise, rate, rf, targs) -> NodePlan:
        pad = list(_arg(n, 1, "pad"))
        mode = _arg(n, 2, "mode", "constant")
        value = _arg(n, 3, "value", 0.0) or 0.0
        pairs = {ndim_in - 1 - i: (pad[2 * i], pad[2 * i + 1]) for i in range(len(pad) // 2)}
        if t not in pairs or pairs[t] == (0, 0):
            return framewise()
        if mode != "constant":
            raise self._fail(n, idx, f"'{mode}' padding of the time axis needs samples a stream does not have",
                             "Use constant (zero) padding on the time axis.")
        if any(v != (0, 0) for d, v in pairs.items() if d != t):
            raise self._fail(n, idx, "it pads the time axis and other axes at once", "Split it into two F.pad calls.")
        left, right = pairs[t]
        return self._pad_plan(n, t, left, right, float(value), rate, rf, targs)

    def _pad_plan(self, n, t, left, right, value, rate, rf, targs) -> NodePlan:
        ops: list[StreamOp] = []
        if left > 0 or right > 0:
            ops.append(PadOp(max(left, 0), max(right, 0), value, dim=t))
        if left < 0 or right < 0:
            ops.append(TrimOp(max(-left, 0), max(-right, 0), dim=t))
        op = ops[0] if len(ops) == 1 else ChainOp(tuple(ops))
        return NodePlan(n, "temporal", tdim=t, rate=rate, rf=rf + max(left, 0) * rate + max(right, 0) * rate,
                        op=op, temporal_args=targs)

    def _classify_interpolate(self, n, idx, t, ndim_in, rate, rf, targs) -> NodePlan:
        mode = _arg(n, 3, "mode", "nearest")
        size = _arg(n, 1, "size")
        sf = _arg(n, 2, "scale_factor")
        if mode != "nearest" or size is not None or sf is None or t != ndim_in - 1:
            raise self._fail(n, idx, f"interpolation mode={mode!r}, size={size!r} needs the whole signal",
                             "Only nearest upsampling by an integer scale_factor streams exactly.")
        f = sf[-1] if isinstance(sf, (tuple, list)) else sf
        if float(f) != int(f) or int(f) < 1:
            raise self._fail(n, idx, f"scale_factor {f} is not a positive integer")
        return NodePlan(n, "temporal", tdim=t, rate=rate / int(f), rf=rf + rate, op=UpsampleOp(int(f), dim=t),
                        temporal_args=targs)

    def _classify_module(self, n: fx.Node, idx: int, targs, framewise) -> NodePlan:
        m = self.modules[n.target]
        first = self.plans[targs[0]]
        t, rate, rf = first.tdim, first.rate, first.rf
        in_shape = self.shapes[targs[0]]
        ndim_in = _ndim(in_shape)
        if rules.is_user_framewise(None, m) or isinstance(m, rules.FRAMEWISE_MODULES):
            return framewise()
        if isinstance(m, nn.BatchNorm1d):
            if t == 1:
                return self._mixing(n, idx, "BatchNorm1d normalises over the time axis here")
            return framewise()
        if isinstance(m, nn.LayerNorm):
            k = len(m.normalized_shape)
            if t >= ndim_in - k:
                return self._mixing(n, idx, "LayerNorm over the time axis")
            return framewise()
        if isinstance(m, nn.Linear):
            if t == ndim_in - 1:
                return self._mixing(n, idx, "Linear over the time axis")
            return framewise()
        if isinstance(m, nn.Flatten):
            s0, s1 = _norm_dim(m.start_dim, ndim_in), _norm_dim(m.end_dim, ndim_in)
            if s0 <= t <= s1 and s0 < s1:
                return self._mixing(n, idx, "Flatten merges the time axis into features")
            return framewise(t - (s1 - s0) if t > s1 else t)
        if isinstance(m, rules.DIM_MODULES):
            d = _norm_dim(m.dim if m.dim is not None else -1, ndim_in)
            if d == t:
                return self._mixing(n, idx, f"{type(m).__name__} over the time axis")
            return framewise()
        if isinstance(m, rules.TIME_MIXING_MODULES):
            return self._mixing(n, idx, f"{type(m).__name__} looks at the whole time axis")
        if isinstance(m, (nn.ConstantPad1d, nn.ZeroPad1d)):
            left, right = m.padding
            if t != ndim_in - 1:
                return framewise()
            return self._pad_plan(n, t, left, right, float(m.value), rate, rf, targs)
        if isinstance(m, nn.Upsample):
            if m.mode != "nearest" or m.size is not None:
                raise self._fail(n, idx, f"Upsample(mode={m.mode!r}, size={m.size!r}) needs the whole signal",
                                 "Only nearest upsampling by an integer scale_factor streams exactly.")
            f = m.scale_factor[-1] if isinstance(m.scale_factor, (tuple, list)) else m.scale_factor
            if float(f) != int(f):
                raise self._fail(n, idx, f"scale_factor {f} is not an integer")
            return NodePlan(n, "temporal", tdim=t, rate=rate / int(f), rf=rf + rate, op=UpsampleOp(int(f), dim=t),
                            temporal_args=targs)
        if isinstance(m, (nn.Conv1d, nn.MaxPool1d, nn.AvgPool1d, nn.ConvTranspose1d)):
            if ndim_in != 3 or t != 2:
                raise self._fail(n, idx, f"{type(m).__name__} needs (batch, channels, time) with time last")
            if self.window is not None:
                out_len = self.shapes[n][2]
                if out_len == 1 and in_shape[2] > 1:
                    return self._mixing(n, idx, f"{type(m).__name__} spans the whole remaining window")
            return self._sliding(n, idx, m, targs, rate, rf)
        if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.MaxPool2d, nn.AvgPool2d, nn.BatchNorm2d)):
            raise self._fail(n, idx, "2-D/3-D layers are not supported on signals", "Use the 1-D layers on (batch, channels, time).")
        raise self._fail(n, idx, "no streaming rule for this module type")

    def _sliding(self, n: fx.Node, idx: int, m: nn.Module, targs, rate: Fraction, rf: Fraction) -> NodePlan:
        c_in = self.shapes[targs[0]][1]
        if isinstance(m, nn.ConvTranspose1d):
            if m.padding_mode != "zeros":
                raise self._fail(n, idx, f"padding_mode={m.padding_mode!r}")
            s, d, p, op_ = m.stride[0], m.dilation[0], m.padding[0], m.output_padding[0]
            ops: list[StreamOp] = [TransposedConvOp(m.weight, m.bias, s, d, m.groups, op_, m.out_channels)]
            if p:
                ops.append(TrimOp(p, p, dim=2))
            op = ops[0] if len(ops) == 1 else ChainOp(tuple(ops))
            span = d * (m.kernel_size[0] - 1) + 1
            return NodePlan(n, "temporal", tdim=2, rate=rate / s, rf=rf + math.ceil(span / s) * rate, op=op,
                            temporal_args=targs)
        if isinstance(m, nn.Conv1d):
            if m.padding_mode != "zeros":
                raise self._fail(n, idx, f"padding_mode={m.padding_mode!r} needs samples a stream does not have",
                                 "Use zero padding (the default) or explicit causal F.pad.")
            k, s, d = m.kernel_size[0], m.stride[0], m.dilation[0]
            if m.padding == "same":
                total = d * (k - 1)
                pl, pr = total // 2, total - total // 2
            elif m.padding == "valid":
                pl = pr = 0
            else:
                pl = pr = _single(m.padding)
            if k == 1 and s == 1 and pl == 0 and pr == 0:
                # a 1x1 conv is frame-wise; run it with plain padding/dilation (its own may say 'same' and
                # dilation 2, which ONNX runtimes reject although they change nothing for one tap)
                src, w1, b1, g1 = n.args[0], m.weight, m.bias, m.groups

                def pointwise(look, src=src, w=w1, b=b1, g=g1):
                    return F.conv1d(look(src), w, b, 1, 0, 1, g)

                return NodePlan(n, "framewise", tdim=2, rate=rate, rf=rf, temporal_args=targs, call=pointwise)
            w, b, g = m.weight, m.bias, m.groups

            def fn(x: torch.Tensor, w=w, b=b, s=s, d=d, g=g) -> torch.Tensor:
                return conv1d(x, w, b, s, d, g)

            op = SlidingOp(fn, k, s, d, pl, pr, 0.0, c_in, m.out_channels, kind="conv")
        elif isinstance(m, nn.MaxPool1d):
            if m.ceil_mode or m.return_indices:
                raise self._fail(n, idx, "ceil_mode / return_indices are not supported", "Use ceil_mode=False.")
            k, s, d, p = _single(m.kernel_size), _single(m.stride or m.kernel_size), _single(m.dilation), _single(m.padding)

            def fn(x: torch.Tensor, k=k, s=s, d=d) -> torch.Tensor:
                return F.max_pool1d(x, k, s, 0, d)

            op = SlidingOp(fn, k, s, d, p, p, float("-inf"), c_in, None, kind="maxpool")
        else:  # AvgPool1d
            if m.ceil_mode:
                raise self._fail(n, idx, "ceil_mode=True is not supported", "Use ceil_mode=False.")
            k, s, p = _single(m.kernel_size), _single(m.stride or m.kernel_size), _single(m.padding)
            if p and not m.count_include_pad:
                raise self._fail(n, idx, "count_include_pad=False with padding", "Use count_include_pad=True.")
            d = 1

            def fn(x: torch.Tensor, k=k, s=s) -> torch.Tensor:
                return F.avg_pool1d(x, k, s, 0)

            op = SlidingOp(fn, k, s, 1, p, p, 0.0, c_in, None, kind="avgpool")
        span = d * (k - 1) + 1
        # receptive field plus how far left padding pushes the first frame before the signal start
        reach = (span - 1) * rate + max(op.pad_left - (span - 1), 0) * rate
        return NodePlan(n, "temporal", tdim=2, rate=rate * s, rf=rf + reach, op=op, temporal_args=targs)

    def _fuse_padding(self) -> None:
        """Fold a constant time padding into the sliding op that alone consumes it (saves a state flag)."""
        for p in self.order:
            if p.kind != "temporal" or not isinstance(p.op, PadOp) or p.tdim != 2:
                continue
            users = list(p.node.users)
            if len(users) != 1:
                continue
            q = self.plans.get(users[0])
            if q is None or q.kind != "temporal" or not isinstance(q.op, SlidingOp):
                continue
            if q.op.pad_value != p.op.value and not (q.op.kind == "avgpool" and p.op.value == 0.0):
                continue
            if q.op.kind == "avgpool" and p.op.value != 0.0:
                continue
            q.op = copy.copy(q.op)
            q.op.pad_left += p.op.left
            q.op.pad_right += p.op.right
            p.kind, p.op, p.source = "alias", None, p.temporal_args[0]

    def _left_reach(self) -> None:
        """Left padding moves a value's first frame before the signal start: by ``pad_left`` input frames
        at each sliding op and constant pad. Signal padding needs exactly that much left context."""
        for p in self.order:
            if not p.temporal or p.kind == "input":
                continue
            if p.kind == "alias":
                p.reach = self.plans[p.source].reach
                continue
            base = max(self.plans[a].reach for a in p.temporal_args)
            rate_in = self.plans[p.temporal_args[0]].rate
            ops = p.op.ops if isinstance(p.op, ChainOp) else (p.op,)
            left = 0
            for op in ops:
                if isinstance(op, SlidingOp):
                    left += op.pad_left
                elif isinstance(op, PadOp):
                    left += op.left
            p.reach = base + left * rate_in

    def _finish_heads(self, plan: Plan, out_node: fx.Node) -> None:
        outs: list[fx.Node] = []
        map_arg(plan.output_arg, lambda a: outs.append(a) or a)
        buffered: list[fx.Node] = []
        for p in self.order:
            if p.kind != "head":
                continue
            plan.head_nodes.append(p)
            map_arg((p.node.args, p.node.kwargs), lambda a: (
                buffered.append(a) if self.plans[a].temporal and a not in buffered else None) or a)
        if self.window is not None:
            for a in outs:
                if self.plans[a].temporal and a not in buffered:
                    buffered.append(a)
        plan.head_inputs = buffered
