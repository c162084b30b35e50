"""Which graph nodes act channel by channel, and the path from a conv to the next one.

Gating needs a switched-off kernel's channel to stay off (zero, or simply absent) from the conv that
computes it to the next conv that reads it. Between them only *channel-wise* layers are allowed: each
output channel depends on the same input channel only (activations, per-channel norms, pooling,
dropout). A norm with parameters (BatchNorm) is sliced in :func:`thinkonce.gating.deploy`; the others
need nothing.
"""

from __future__ import annotations

import operator

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

CONVS = (nn.Conv1d, nn.Conv2d)
#: channel-wise modules without parameters per channel (the same computation on any channel subset)
FREE_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Hardswish,
                nn.Hardtanh, nn.Mish, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
                nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)
#: channel-wise modules with one parameter per channel: sliced at deployment
SLICED_MODULES = (nn.BatchNorm1d, nn.BatchNorm2d)
FREE_FUNCTIONS = (F.relu, torch.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, torch.tanh, torch.sigmoid,
                  F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d, F.dropout)
FREE_METHODS = ("relu", "tanh", "sigmoid")


def conv_of(gm: fx.GraphModule, n: fx.Node) -> nn.Module | None:
    if n.op == "call_module":
        m = gm.get_submodule(str(n.target))
        if type(m) in CONVS:
            return m
    return None


def is_gate(gm: fx.GraphModule, n: fx.Node) -> bool:
    from .lkam import LKAM

    return n.op == "call_module" and isinstance(gm.get_submodule(str(n.target)), LKAM)


def is_apply(n: fx.Node) -> bool:
    from .lkam import apply_gate

    return n.op == "call_function" and n.target is apply_gate


def channelwise(gm: fx.GraphModule, n: fx.Node) -> str | None:
    """``"free"`` or ``"sliced"`` for a one-input channel-wise node, else ``None`` (a gate's mask counts
    as free: it multiplies each channel by its own switch)."""
    if is_apply(n):
        return "free"
    if n.op == "call_module":
        m = gm.get_submodule(str(n.target))
        if isinstance(m, SLICED_MODULES):
            return "sliced" if m.track_running_stats else None
        if isinstance(m, FREE_MODULES):
            return "free"
        return None
    if n.op == "call_function" and n.target in FREE_FUNCTIONS:
        return "free"
    if n.op == "call_method" and n.target in FREE_METHODS:
        return "free"
    return None


def describe(gm: fx.GraphModule, n: fx.Node) -> str:
    if n.op == "call_module":
        return f"'{n.target}' ({type(gm.get_submodule(str(n.target))).__name__})"
    if n.op == "output":
        return "the model's output"
    name = getattr(n.target, "__name__", str(n.target))
    return f"'{n.name}' ({n.op} {name})"


def walk(gm: fx.GraphModule, start: fx.Node) -> tuple[list[fx.Node], fx.Node]:
    """From ``start``, follow its single user through channel-wise nodes.

    Returns ``(chain, stop)``: the channel-wise nodes passed (each with one user) and the first node that
    is not channel-wise, or that a value with several users feeds (the chain ends where it branches).
    """
    chain: list[fx.Node] = []
    cur = start
    while True:
        users = [u for u in cur.users if not is_gate(gm, u)]
        if len(users) != 1:
            return chain, cur
        nxt = users[0]
        if channelwise(gm, nxt) is None or nxt.args[0] is not cur:
            return chain, nxt
        chain.append(nxt)
        cur = nxt


def is_getitem(n: fx.Node) -> bool:
    return n.op == "call_function" and n.target is operator.getitem
