"""Native gated inference: a deployed gated model (or a plain CNN, as its like-for-like baseline) run as
one call into compiled C, switched-off kernels skipped inside the loops.

Why: at batch 1 a small CNN in eager PyTorch spends most of its time between operators, and a gate
adds several tiny operators per layer (a mean, a matrix-vector product, a comparison, ``nonzero``, the
gathers): measured on this project's MNIST network, the gates cost about what the kernels they switch
off saved (``bench/gating.py``). Here the whole forward pass is one C call: a gate is a few hundred
multiply-adds, and a convolution loops over the engaged kernels' index lists, reading the weights in
place, so its time follows its multiply-adds.

``native(model, example_input)`` lowers the model's fx graph node by node through a registry
(:data:`LOWERINGS`, keyed by module class or function) into a program for the runtime of
:mod:`.native_kernels`. Every node must have a lowering; one that has none is refused with its name
and type (nothing falls back silently). Batches run sample by sample, each with its own switches:
the same numbers as the masked dense computation (tested against :func:`thinkonce.gating.deploy`).

One caveat that any re-implementation shares: the C sums (channel means, logits) add in another
order than PyTorch, so a switch whose logit lies within float rounding (~1e-6 relative) of the
threshold can fall the other way than in PyTorch; both decisions are valid readings of the model, but
the outputs then differ by that kernel's contribution. ``engaged`` says which kernels ran.
"""

from __future__ import annotations

import ctypes
import math
import operator
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..native.cache import compiled_library
from ..native.compiler import find_toolchain, why_no_toolchain
from ..native.loader import load
from .chain import describe
from .deploy import DeployedModel, _item
from .fold import fold_batchnorm
from .gathered import DeployedGate, Expand, GatheredConv, GatheredNorm, Masked
from .insert import GateError
from .native_kernels import ACTIVATIONS, N_INTS, N_PTRS, OPCODES, source


@dataclass
class Value:
    """One sample's activation: ``channels`` x ``spatial`` floats in ``buf``; ``slot`` is the index list
    of its present channels (-1: every channel)."""

    buf: Tensor
    channels: int
    spatial: tuple[int, ...]
    slot: int = -1

    @property
    def size(self) -> int:
        return math.prod(self.spatial)


@dataclass
class Slot:
    """An index list written by a gate at run time (the engaged kernels)."""

    id: int


@dataclass
class Program:
    """What the lowering builds: instructions, pointers, and the tensors they point into (kept alive)."""

    vector_width: int
    ops: list[tuple[int, list[int], list[int]]] = field(default_factory=list)
    keep: list[Any] = field(default_factory=list)
    slots: list[Tensor] = field(default_factory=list)

    def tensor(self, t: Tensor) -> Tensor:
        t = t.detach().to(torch.float32).contiguous().clone()
        self.keep.append(t)
        return t

    def buffer(self, n: int) -> Tensor:
        t = torch.zeros(max(int(n), 1), dtype=torch.float32)
        self.keep.append(t)
        return t

    def new_slot(self, n: int) -> int:
        self.slots.append(torch.zeros(max(n, 1), dtype=torch.int32))
        return len(self.slots) - 1

    def slot_ptr(self, slot: int) -> int:
        return 0 if slot < 0 else self.slots[slot].data_ptr()

    def emit(self, op: str, ints: list[int], ptrs: list[Any]) -> None:
        if len(ints) > N_INTS or len(ptrs) > N_PTRS:
            raise AssertionError("instruction too long for the runtime")
        p = [0 if q is None else (q if isinstance(q, int) else q.data_ptr()) for q in ptrs]
        self.ops.append((OPCODES[op], [int(i) for i in ints], p))


Lowering = Callable[["Lowerer", fx.Node, Any], Any]
#: module class or function -> lowering ``(lowerer, node, module_or_None) -> value``
LOWERINGS: dict[Any, Lowering] = {}


def lowering(*keys: Any) -> Callable[[Lowering], Lowering]:
    """Register a lowering for module classes / functions (the extension point of native gating)."""

    def deco(fn: Lowering) -> Lowering:
        for k in keys:
            LOWERINGS[k] = fn
        return fn

    return deco


class Lowerer:
    """Walks a GraphModule and emits the program."""

    def __init__(self, gm: fx.GraphModule, example: Tensor, vector_width: int) -> None:
        self.gm = gm
        self.example = example
        self.prog = Program(max(vector_width, 4))
        self.env: dict[fx.Node, Any] = {}
        self.input: Value | None = None
        self.output: Value | None = None
        self.gate_slots: list[int] = []  # the index list each gate writes, in graph order

    def refuse(self, n: fx.Node, why: str) -> GateError:
        return GateError(f"native gated inference cannot run {describe(self.gm, n)}: {why}. Run the deployed "
                         "PyTorch model (thinkonce.gating.deploy) instead, or register a lowering with "
                         "thinkonce.gating.native_model.lowering")

    def val(self, n: fx.Node, a: Any) -> Value:
        v = self.env.get(a) if isinstance(a, fx.Node) else None
        if not isinstance(v, Value):
            raise self.refuse(n, f"its input {getattr(a, 'name', a)!r} is not an activation the runtime holds")
        return v

    def new(self, channels: int, spatial: tuple[int, ...], slot: int) -> Value:
        return Value(self.prog.buffer(channels * math.prod(spatial)), channels, spatial, slot)

    def run(self) -> Program:
        for n in self.gm.graph.nodes:
            if n.op == "placeholder":
                if self.input is not None:
                    raise self.refuse(n, "the runtime takes one input tensor")
                shape = tuple(self.example.shape[1:])
                self.input = self.env[n] = self.new(shape[0], shape[1:], -1)
                continue
            if n.op == "output":
                out = n.args[0]
                v = self.val(n, out)
                if v.slot >= 0:
                    raise self.refuse(n, "the output holds only a gate's engaged channels")
                self.output = v
                continue
            if n.op == "call_module":
                mod = self.gm.get_submodule(str(n.target))
                fn = LOWERINGS.get(type(mod))
            elif n.op in ("call_function", "call_method"):
                mod, fn = None, LOWERINGS.get(n.target)
            else:
                raise self.refuse(n, f"node kind {n.op!r}")
            if fn is None:
                raise self.refuse(n, "no lowering is registered for it")
            self.env[n] = fn(self, n, mod)
        if self.input is None or self.output is None:
            raise GateError("native gated inference needs a model with one input and one output")
        return self.prog


# ----------------------------------------------------------------------------- lowerings


def _conv_out(size: int, k: int, s: int, p: int, d: int, ceil: bool = False) -> int:
    num = size + 2 * p - d * (k - 1) - 1
    o = (-(-num // s) if ceil else num // s) + 1
    if ceil and (o - 1) * s >= size + p:
        o -= 1
    return o


def _pair(v: Any, dims: int, one: int = 1) -> tuple[int, int]:
    """``(h, w)`` of a 1-D or 2-D layer argument; a 1-D layer is a 2-D one of height 1, whose height
    entry is ``one`` (1 for sizes, strides and dilations; 0 for padding)."""
    t = tuple(v) if isinstance(v, (tuple, list)) else (v,) * dims
    return (one, int(t[0])) if dims == 1 else (int(t[0]), int(t[1]))


def _lower_conv(L: Lowerer, n: fx.Node, conv: nn.Module, x: Value, out_slot: int) -> Value:
    dims = 1 if isinstance(conv, nn.Conv1d) else 2
    if conv.groups != 1:
        raise L.refuse(n, f"groups={conv.groups} (the runtime's conv is dense across channels)")
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str) and conv.padding not in ("valid", "same"):
        raise L.refuse(n, f"padding={conv.padding!r}, padding_mode={conv.padding_mode!r}")
    if len(x.spatial) != dims or x.channels != conv.in_channels:
        raise L.refuse(n, f"input of {x.channels} channels x {x.spatial} for a {dims}-D conv of {conv.in_channels}")
    H, W = (1, x.spatial[0]) if dims == 1 else x.spatial
    KH, KW = _pair(conv.kernel_size, dims)
    sh, sw = _pair(conv.stride, dims)
    dh, dw = _pair(conv.dilation, dims)
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            ph = pw = 0
        else:  # "same" (stride 1): PyTorch pads the extra element on the right/bottom
            tot_h, tot_w = dh * (KH - 1), dw * (KW - 1)
            if tot_h % 2 or tot_w % 2:
                raise L.refuse(n, "padding='same' with an odd total padding (PyTorch puts the extra frame on one side)")
            ph, pw = tot_h // 2, tot_w // 2
    else:
        ph, pw = _pair(conv.padding, dims, 0)
    Ho, Wo = _conv_out(H, KH, sh, ph, dh), _conv_out(W, KW, sw, pw, dw)
    assert dims == 2 or Ho == 1, "a 1-D layer is one row high"  # the buffers below are sized from it
    if Ho < 1 or Wo < 1:
        raise L.refuse(n, f"the output would be empty ({Ho} x {Wo})")
    Hp, Wpp = H + 2 * ph, W + 2 * pw
    plane = Hp * Wpp + 2 * L.prog.vector_width + 8
    pad = L.prog.buffer(conv.in_channels * plane)
    out = L.new(conv.out_channels, (Wo,) if dims == 1 else (Ho, Wo), out_slot)
    span = 2 * L.prog.vector_width
    grid = L.prog.buffer(8 * (((Ho - 1) * Wpp + Wo + span - 1) // span * span))
    w = L.prog.tensor(conv.weight)
    b = None if conv.bias is None else L.prog.tensor(conv.bias)
    L.prog.emit("conv", [x.slot, out_slot, conv.in_channels, conv.out_channels, H, W, KH, KW, sh, sw, ph, pw, dh, dw,
                         Ho, Wo, Hp, Wpp, plane],
                [x.buf, out.buf, w, b, pad, L.prog.slot_ptr(x.slot), L.prog.slot_ptr(out_slot), grid])
    return out


@lowering(nn.Conv1d, nn.Conv2d)
def _conv(L: Lowerer, n: fx.Node, m: nn.Module) -> Value:
    if len(n.args) != 1 or n.kwargs:
        raise L.refuse(n, "a conv module called with extra arguments")
    return _lower_conv(L, n, m, L.val(n, n.args[0]), -1)


@lowering(GatheredConv)
def _gathered_conv(L: Lowerer, n: fx.Node, m: GatheredConv) -> Value:
    x = L.val(n, n.args[0])
    out_ref = L.env.get(n.args[2]) if isinstance(n.args[2], fx.Node) else None
    in_ref = L.env.get(n.args[1]) if isinstance(n.args[1], fx.Node) else None
    if (in_ref.id if isinstance(in_ref, Slot) else -1) != x.slot:
        raise L.refuse(n, "its input channel list is not the layout of its input")
    return _lower_conv(L, n, m.conv, x, out_ref.id if isinstance(out_ref, Slot) else -1)


@lowering(DeployedGate)
def _gate(L: Lowerer, n: fx.Node, m: DeployedGate) -> Slot:
    h = L.val(n, n.args[0])
    lk = m.lkam
    if h.channels != lk.in_channels:
        raise L.refuse(n, f"gate of {lk.in_channels} channels reads {h.channels}")
    slot = L.prog.new_slot(lk.n_kernels)
    k = 0 if lk.budget >= 1.0 else max(1, math.ceil(lk.budget * lk.n_switches))
    thr = L.prog.tensor(torch.tensor([lk.logit_threshold]))
    scratch = L.prog.buffer(lk.in_channels + lk.n_switches)
    L.prog.emit("gate", [h.slot, slot, lk.in_channels, h.size, lk.n_switches, lk.group, k, lk.n_kernels],
                [h.buf, L.prog.tensor(lk.proj.weight), L.prog.tensor(lk.proj.bias), thr, L.prog.slot_ptr(h.slot),
                 L.prog.slot_ptr(slot), scratch])
    L.gate_slots.append(slot)  # the knobs (threshold, budget) were read above: see NativeGated
    return Slot(slot)


@lowering(_item)
def _gate_item(L: Lowerer, n: fx.Node, m: None) -> Any:
    ref = L.env[n.args[0]]
    return ref if n.args[1] == 0 else None  # per sample the mask is the index list itself


@lowering(Masked)
def _masked(L: Lowerer, n: fx.Node, m: Masked) -> Value:
    return L.val(n, n.args[0])  # one sample at a time: its own switches *are* the compact layout


@lowering(Expand)
def _expand(L: Lowerer, n: fx.Node, m: Expand) -> Value:
    x = L.val(n, n.args[0])
    out = L.new(m.channels, x.spatial, -1)
    L.prog.emit("expand", [x.slot, m.channels, x.size], [x.buf, out.buf, L.prog.slot_ptr(x.slot)])
    return out


def _affine(L: Lowerer, n: fx.Node, bn: nn.modules.batchnorm._BatchNorm, x: Value) -> Value:
    if not bn.track_running_stats or bn.training:
        raise L.refuse(n, "a BatchNorm without running statistics (or in training mode)")
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale + (bn.bias if bn.bias is not None else 0.0)
    out = L.new(x.channels, x.spatial, x.slot)
    L.prog.emit("affine", [x.slot, x.channels, x.size], [x.buf, out.buf, L.prog.tensor(scale), L.prog.tensor(shift),
                                                          L.prog.slot_ptr(x.slot)])
    return out


@lowering(GatheredNorm)
def _gathered_norm(L: Lowerer, n: fx.Node, m: GatheredNorm) -> Value:
    return _affine(L, n, m.bn, L.val(n, n.args[0]))


@lowering(nn.BatchNorm1d, nn.BatchNorm2d)
def _bn(L: Lowerer, n: fx.Node, m: nn.Module) -> Value:
    return _affine(L, n, m, L.val(n, n.args[0]))


def _act(L: Lowerer, n: fx.Node, kind: str, param: float | None = None) -> Value:
    x = L.val(n, n.args[0])
    out = L.new(x.channels, x.spatial, x.slot)
    p = None if param is None else L.prog.tensor(torch.tensor([float(param)]))
    L.prog.emit("act", [x.slot, x.channels, x.size, ACTIVATIONS[kind]], [x.buf, out.buf, p])
    return out


def _only_input(L: Lowerer, n: fx.Node, allowed: tuple[str, ...] = ()) -> None:
    extra = [k for k in n.kwargs if k not in allowed and k != "inplace"]
    if len(n.args) > 1 or extra:
        raise L.refuse(n, f"arguments {n.args[1:]} {extra} the lowering does not read")


_SIMPLE = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.SiLU: "silu", nn.ReLU6: "relu6",
           F.relu: "relu", torch.relu: "relu", torch.sigmoid: "sigmoid", torch.tanh: "tanh", F.silu: "silu",
           F.relu6: "relu6", "relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh"}


@lowering(*_SIMPLE)
def _simple_act(L: Lowerer, n: fx.Node, m: nn.Module | None) -> Value:
    _only_input(L, n)
    return _act(L, n, _SIMPLE[type(m) if m is not None else n.target])


@lowering(nn.GELU)
def _gelu(L: Lowerer, n: fx.Node, m: nn.GELU) -> Value:
    if m.approximate != "none":
        raise L.refuse(n, f"GELU(approximate={m.approximate!r})")
    return _act(L, n, "gelu")


@lowering(nn.LeakyReLU)
def _leaky(L: Lowerer, n: fx.Node, m: nn.LeakyReLU) -> Value:
    return _act(L, n, "leaky_relu", m.negative_slope)


@lowering(nn.ELU)
def _elu(L: Lowerer, n: fx.Node, m: nn.ELU) -> Value:
    return _act(L, n, "elu", m.alpha)


@lowering(nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d)
def _identity(L: Lowerer, n: fx.Node, m: nn.Module) -> Value:
    if getattr(m, "training", False) and not isinstance(m, nn.Identity):
        raise L.refuse(n, "dropout in training mode")
    return L.val(n, n.args[0])


@lowering(nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)
def _pool(L: Lowerer, n: fx.Node, m: nn.Module) -> Value:
    x = L.val(n, n.args[0])
    dims = 1 if isinstance(m, (nn.MaxPool1d, nn.AvgPool1d)) else 2
    is_max = isinstance(m, (nn.MaxPool1d, nn.MaxPool2d))
    if len(x.spatial) != dims:
        raise L.refuse(n, f"a {dims}-D pool on {x.spatial}")
    if is_max and m.return_indices:
        raise L.refuse(n, "return_indices=True")
    ceil = bool(m.ceil_mode)
    if not is_max and (ceil or (not m.count_include_pad and m.padding not in (0, (0,), (0, 0)))
                       or getattr(m, "divisor_override", None)):
        raise L.refuse(n, "average pooling with ceil_mode, count_include_pad=False or divisor_override")
    H, W = (1, x.spatial[0]) if dims == 1 else x.spatial
    KH, KW = _pair(m.kernel_size, dims)
    sh, sw = _pair(m.stride if m.stride is not None else m.kernel_size, dims)
    ph, pw = _pair(m.padding, dims, 0)
    dh, dw = _pair(m.dilation, dims) if is_max else (1, 1)
    Ho, Wo = _conv_out(H, KH, sh, ph, dh, ceil), _conv_out(W, KW, sw, pw, dw, ceil)
    assert dims == 2 or Ho == 1, "a 1-D layer is one row high"  # the buffers below are sized from it
    if Ho < 1 or Wo < 1:
        raise L.refuse(n, f"the output would be empty ({Ho} x {Wo})")
    out = L.new(x.channels, (Wo,) if dims == 1 else (Ho, Wo), x.slot)
    L.prog.emit("pool", [x.slot, x.channels, H, W, KH, KW, sh, sw, ph, pw, Ho, Wo, 0 if is_max else 1, dh, dw],
                [x.buf, out.buf])
    return out


@lowering(nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
def _gap(L: Lowerer, n: fx.Node, m: nn.Module) -> Value:
    x = L.val(n, n.args[0])
    size = m.output_size if isinstance(m.output_size, (tuple, list)) else (m.output_size,) * len(x.spatial)
    if any(s != 1 for s in size):
        raise L.refuse(n, f"adaptive pooling to {m.output_size} (only global pooling, output size 1)")
    out = L.new(x.channels, (1,) * len(x.spatial), x.slot)
    L.prog.emit("gap", [x.slot, x.channels, x.size], [x.buf, out.buf])
    return out


def _flat(L: Lowerer, n: fx.Node, x: Value) -> Value:
    if x.slot >= 0:
        raise L.refuse(n, "flattening a gate's compact channels (expand them first)")
    return Value(x.buf, x.channels * x.size, (), -1)


@lowering(nn.Flatten)
def _flatten_mod(L: Lowerer, n: fx.Node, m: nn.Flatten) -> Value:
    if m.start_dim != 1 or m.end_dim != -1:
        raise L.refuse(n, f"Flatten({m.start_dim}, {m.end_dim})")
    return _flat(L, n, L.val(n, n.args[0]))


@lowering(torch.flatten)
def _flatten_fn(L: Lowerer, n: fx.Node, m: None) -> Value:
    start = n.args[1] if len(n.args) > 1 else n.kwargs.get("start_dim", 0)
    end = n.args[2] if len(n.args) > 2 else n.kwargs.get("end_dim", -1)
    if (start, end) != (1, -1):
        raise L.refuse(n, f"flatten({start}, {end})")
    return _flat(L, n, L.val(n, n.args[0]))


@lowering("flatten")
def _flatten_method(L: Lowerer, n: fx.Node, m: None) -> Value:
    x = L.val(n, n.args[0])
    start = n.args[1] if len(n.args) > 1 else n.kwargs.get("start_dim", 0)
    end = n.args[2] if len(n.args) > 2 else n.kwargs.get("end_dim", -1)
    if end != -1 or start not in (1, 2):
        raise L.refuse(n, f"flatten({start}, {end})")
    if start == 1:
        return _flat(L, n, x)
    return Value(x.buf, x.channels, (x.size,), x.slot)  # the spatial axes merged: same memory, same channels


@lowering("mean", torch.mean)
def _mean(L: Lowerer, n: fx.Node, m: None) -> Value:
    x = L.val(n, n.args[0])
    dims = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim")
    keep = n.args[2] if len(n.args) > 2 else n.kwargs.get("keepdim", False)
    rank = 2 + len(x.spatial)
    dims = [dims] if isinstance(dims, int) else list(dims or [])
    if sorted(d % rank for d in dims) != list(range(2, rank)) or set(n.kwargs) - {"dim", "keepdim"}:
        raise L.refuse(n, f"a mean over dims {dims} (only the mean over every spatial axis)")
    out = L.new(x.channels, (1,) * len(x.spatial) if keep else (), x.slot)
    L.prog.emit("gap", [x.slot, x.channels, x.size], [x.buf, out.buf])
    return out


@lowering(nn.Linear)
def _linear(L: Lowerer, n: fx.Node, m: nn.Linear) -> Value:
    x = L.val(n, n.args[0])
    if x.slot >= 0 or x.channels * x.size != m.in_features:
        raise L.refuse(n, f"a Linear of {m.in_features} inputs on {x.channels} x {x.spatial}")
    out = L.new(m.out_features, (), -1)
    L.prog.emit("linear", [m.in_features, m.out_features],
                [x.buf, out.buf, L.prog.tensor(m.weight), None if m.bias is None else L.prog.tensor(m.bias)])
    return out


@lowering(operator.add, torch.add)
def _add(L: Lowerer, n: fx.Node, m: None) -> Value:
    if len(n.args) != 2 or n.kwargs:
        raise L.refuse(n, "add with a scale or other arguments")
    a, b = L.val(n, n.args[0]), L.val(n, n.args[1])
    if a.slot >= 0 or b.slot >= 0 or a.channels != b.channels or a.spatial != b.spatial:
        raise L.refuse(n, f"a sum of {a.channels} x {a.spatial} and {b.channels} x {b.spatial} (full channels, "
                          "same shape, are needed)")
    out = L.new(a.channels, a.spatial, -1)
    L.prog.emit("add", [a.channels * a.size], [a.buf, b.buf, out.buf])
    return out


# ----------------------------------------------------------------------------- the runnable model


class NativeGated(nn.Module):
    """A gated (or plain) CNN as one compiled C call per batch. ``forward(x)`` takes
    ``(batch, *example_input.shape[1:])`` float32 and returns ``(batch, *output)``.

    The gate knobs (threshold, budget) and the weights are read when the model is built: build again
    after changing them. ``engaged`` after a call: ``(batch, gates)`` numbers of kernels computed.
    """

    def __init__(self, model: nn.Module, example_input: Tensor) -> None:
        super().__init__()
        tc = find_toolchain()
        if tc is None:
            raise RuntimeError(f"native gated inference needs a C compiler: {why_no_toolchain()}")
        if isinstance(model, DeployedModel):
            gm = model.graph_module
        else:
            gm = fold_batchnorm(model)
        if example_input.dim() < 2:
            raise ValueError(f"example_input must be (batch, channels, ...), got shape {tuple(example_input.shape)}")
        with torch.no_grad():
            low = Lowerer(gm, example_input[:1].float(), tc.vector_width)
            self.prog = low.run()
            ref = model(example_input[:1].float())
        self.in_shape = tuple(example_input.shape[1:])
        self.out_shape = tuple(ref.shape[1:])
        self._in, self._out = low.input, low.output
        assert self._in is not None and self._out is not None
        if math.prod(self.out_shape) != self._out.channels * self._out.size:
            raise GateError(f"native gated inference computed {self._out.channels * self._out.size} outputs, the "
                            f"model returns {self.out_shape}")
        self.gate_slots = low.gate_slots
        lib = load(compiled_library(source(tc.vector_width), tc))
        self._fn = lib.gated_run
        self._fn.restype = None
        self._fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                             ctypes.c_int, ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p,
                             ctypes.c_long, ctypes.c_void_p]
        ops = np.zeros((len(self.prog.ops), 1 + N_INTS), dtype=np.int32)
        ptrs = (ctypes.c_void_p * (len(self.prog.ops) * N_PTRS))()
        for i, (code, ints, ps) in enumerate(self.prog.ops):
            ops[i, 0] = code
            ops[i, 1:1 + len(ints)] = ints
            for j, p in enumerate(ps):
                ptrs[i * N_PTRS + j] = p
        self._ops, self._ptrs = ops, ptrs
        self._lock = threading.Lock()
        self.engaged: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype != torch.float32 or tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(f"expected float32 input of shape (batch, {', '.join(map(str, self.in_shape))}), got "
                             f"{x.dtype} {tuple(x.shape)}")
        x = x.detach().contiguous()
        B = x.shape[0]
        y = torch.empty((B, *self.out_shape), dtype=torch.float32)
        n_slots = len(self.prog.slots)
        counts = torch.zeros((B, max(n_slots, 1)), dtype=torch.int32)
        with self._lock:
            self._fn(len(self.prog.ops), self._ops.ctypes.data, self._ptrs, n_slots, counts.data_ptr(), B,
                     x.data_ptr(), math.prod(self.in_shape), self._in.buf.data_ptr(), y.data_ptr(),
                     math.prod(self.out_shape), self._out.buf.data_ptr())
        self.engaged = counts[:, self.gate_slots] if self.gate_slots else None
        return y


def native(model: nn.Module, example_input: Tensor) -> NativeGated:
    """``model`` (a :class:`~thinkonce.gating.DeployedModel`, or a plain CNN: its like-for-like dense
    baseline) as one native call; see the module docstring. Refuses (``GateError``) a node it cannot
    run, naming it."""
    return NativeGated(model, example_input)
