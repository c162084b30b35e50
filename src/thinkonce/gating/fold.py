"""Fold eval-mode BatchNorm into the conv before it (a graph pass on a copy).

At batch 1 a small CNN's time is dominated by per-operator overhead, not arithmetic: a BatchNorm is one
more operator per layer (and, in a deployed gated model, one more gather of its statistics). Folding it
into the conv's weights and bias (``torch.nn.utils.fusion.fuse_conv_bn_eval``) removes it exactly. The
experiments fold the dense baseline the same way, so speed-ups compare like with like.
"""

from __future__ import annotations

import copy

import torch.fx as fx
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .chain import conv_of


def fold_batchnorm(model: nn.Module) -> fx.GraphModule:
    """A copy of ``model`` (traced with fx unless it is a GraphModule) with every conv -> BatchNorm pair
    (the conv read by the BatchNorm only) folded into one conv; eval mode."""
    gm = copy.deepcopy(model) if isinstance(model, fx.GraphModule) else fx.symbolic_trace(copy.deepcopy(model))
    gm.eval()
    for n in list(gm.graph.nodes):
        if n.op != "call_module" or not isinstance(gm.get_submodule(str(n.target)), (nn.BatchNorm1d, nn.BatchNorm2d)):
            continue
        src = n.args[0]
        if not isinstance(src, fx.Node) or conv_of(gm, src) is None or len(src.users) != 1:
            continue
        bn = gm.get_submodule(str(n.target))
        if not bn.track_running_stats:
            continue
        conv = gm.get_submodule(str(src.target))
        parent, _, name = str(src.target).rpartition(".")
        setattr(gm.get_submodule(parent) if parent else gm, name, fuse_conv_bn_eval(conv, bn))
        n.replace_all_uses_with(src)
        gm.graph.erase_node(n)
    gm.delete_all_unused_submodules()
    gm.graph.lint()
    gm.recompile()
    return gm
