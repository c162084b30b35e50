"""Model -> graph: what the converter reads.

The graph says what the code computes, not what classes are called: a module is a leaf (one node
whose builder the op registry knows) only while its class runs the ``forward`` of a registered class or
of a ``torch.nn`` class; a subclass with its own ``forward`` is traced through. Weights computed by
parametrizations or weight-norm hooks are folded into plain weights first (on a copy: the user's
model is never modified). Forward hooks would be skipped by tracing and are refused.

torch.fx traces first (fast, keeps module paths and source lines); when Python control flow on sizes
stops it (``if x.dim() == 2``, ``assert``, ``len(x.shape)``, ``math.ceil(x.shape[-1] / s)``), the model is
exported with ``torch.export`` instead - static shapes in window mode (every size is the window's),
a dynamic time axis in continuous mode - and the ATen graph lifted back to torch calls.
"""

from __future__ import annotations

import copy
import time
import warnings
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
from torch.nn.utils import parametrize

from ..errors import UnsupportedNodeError
from ..ops import registry
from .rewrite import batch_first_recurrences

#: tracing budget: a model whose trace grows past these is refused (no model can hang the converter)
MAX_NODES = 200_000
MAX_SECONDS = 120.0


def _nn_base(cls: type) -> type | None:
    for base in cls.__mro__:
        mod = getattr(base, "__module__", "") or ""
        if mod.startswith(("torch.nn.", "torch.ao.nn.")) and issubclass(base, nn.Module):
            return base
    return None


class StreamTracer(fx.Tracer):
    """fx tracer with the registry's leaf rule, source lines, and a size/time budget."""

    def __init__(self) -> None:
        super().__init__()
        self.record_stack_traces = True
        self._start = time.monotonic()
        self._nodes = 0

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if registry.module_builder(m) is not None:
            return True
        if isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            return False
        base = _nn_base(type(m))
        if base is None:
            return False
        # a torch.nn class (or a subclass keeping its forward) without a builder: one node, refused by
        # name; a subclass with its own forward is traced through
        return type(m).forward is base.forward and base is not nn.Module

    def create_node(self, *args: Any, **kwargs: Any) -> fx.Node:
        self._nodes += 1
        if self._nodes > MAX_NODES or time.monotonic() - self._start > MAX_SECONDS:
            raise UnsupportedNodeError(
                f"tracing the model exceeded its budget ({self._nodes} nodes, "
                f"{time.monotonic() - self._start:.0f} s): it unrolls into an unbounded graph"
            )
        return super().create_node(*args, **kwargs)


def copy_model(model: nn.Module) -> nn.Module:
    """``copy.deepcopy`` that also copes with weights computed by hooks (``nn.utils.weight_norm`` keeps the
    computed weight as a non-leaf tensor attribute, which deepcopy refuses): those are copied detached."""
    memo: dict[int, Any] = {}
    for m in model.modules():
        for name, v in vars(m).items():
            if isinstance(v, torch.Tensor) and not isinstance(v, nn.Parameter) and not v.is_leaf:
                memo[id(v)] = v.detach().clone()
    return copy.deepcopy(model, memo)


def fold_weights(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose parametrized / weight-normed weights are plain tensors, with backward
    hooks (irrelevant at inference) removed; the model itself when there is nothing to fold."""
    from torch.nn.utils.weight_norm import WeightNorm

    needs = any(
        parametrize.is_parametrized(m) or m._forward_pre_hooks or m._forward_hooks or m._backward_hooks
        or getattr(m, "_backward_pre_hooks", None)
        for m in model.modules()
    )
    if not needs:
        return model
    model = copy_model(model)
    for name, m in model.named_modules():
        if parametrize.is_parametrized(m):
            # fold by hand: torch's remove_parametrizations deletes the property from the parametrized
            # class, which the copied-from model shares, and would break it
            with torch.no_grad():
                values = {pn: getattr(m, pn).detach().clone() for pn in m.parametrizations.keys()}  # type: ignore[union-attr]
            m.__class__ = type(m).__bases__[0]
            del m._modules["parametrizations"]
            for pn, v in values.items():
                m.register_parameter(pn, nn.Parameter(v, requires_grad=False))
        for key, hook in list(m._forward_pre_hooks.items()):
            if isinstance(hook, WeightNorm):
                with torch.no_grad():
                    w = hook.compute_weight(m)
                delattr(m, hook.name + "_g")
                delattr(m, hook.name + "_v")
                if hasattr(m, hook.name):
                    delattr(m, hook.name)
                m.register_parameter(hook.name, nn.Parameter(w.detach(), requires_grad=False))
                del m._forward_pre_hooks[key]
            elif type(hook).__name__ == "SpectralNorm":
                torch.nn.utils.remove_spectral_norm(m, hook.name)
        m._backward_hooks.clear()
        if getattr(m, "_backward_pre_hooks", None):
            m._backward_pre_hooks.clear()
        if m._forward_pre_hooks or m._forward_hooks:
            raise UnsupportedNodeError(
                f"module '{name or '<root>'}' ({type(m).__name__}) has forward hooks; a traced graph would "
                "skip them. Remove the hooks (or fold what they do into the module) before streaming."
            )
    return model


def trace(model: nn.Module, example: torch.Tensor, window: int | None) -> fx.GraphModule:
    """The model as an fx graph of torch calls (see the module docstring for the route taken)."""
    if isinstance(model, fx.GraphModule) and not any(isinstance(n.target, torch._ops.OpOverload) for n in model.graph.nodes):
        return batch_first_recurrences(model, example)
    model = fold_weights(model)
    tracer = StreamTracer()
    try:
        graph = tracer.trace(model, concrete_args=_optional_inputs(model))
    except UnsupportedNodeError:
        raise
    except Exception as fx_error:  # fx raises many kinds: try torch.export, which runs shape logic
        return _export_route(model, example, window, fx_error)
    name = type(model).__name__
    gm = fx.GraphModule(tracer.root, graph, name)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return batch_first_recurrences(gm, example)


def _optional_inputs(model: nn.Module) -> dict[str, Any] | None:
    """Forward parameters after the signal that have defaults stay at them (traced as constants, so
    ``if lengths is not None`` takes the default's branch)."""
    import inspect

    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return None
    extra = {p.name: p.default for p in params[1:]
             if p.default is not inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return extra or None


def _export_route(model: nn.Module, example: torch.Tensor, window: int | None, fx_error: Exception) -> fx.GraphModule:
    from .exported import lift_aten_graph

    def export(dynamic_batch: bool) -> torch.export.ExportedProgram:
        # a dynamic batch keeps x.view(x.size(0), -1) sized by the batch (exported from a batch of 2: a
        # batch of 1 would be specialised); models that cannot take it are exported with a static batch
        spec: dict[int, Any] = {}
        ex = example
        if dynamic_batch:
            ex = example[:1].expand(2, *example.shape[1:]).contiguous()
            spec[0] = torch.export.Dim("batch", min=1, max=1 << 16)
        if window is None:
            # DYNAMIC, not Dim("time", min=2): export infers the range the model needs (a valid conv needs
            # T >= k) instead of failing on "Constraints violated"; it still raises if time is specialised
            spec[example.dim() - 1] = torch.export.Dim.DYNAMIC
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.export.export(model, (ex,), dynamic_shapes=(spec,) if spec else None, strict=False)

    try:
        try:
            ep = export(True)
        except Exception:
            ep = export(False)
    except Exception as e:
        first = str(fx_error).strip().splitlines()[0][:300] if str(fx_error).strip() else type(fx_error).__name__
        second = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        hint = ("In continuous mode the time length must not steer the computation; a model that pads "
                "to a multiple of its length or branches on it has no streaming form." if window is None else
                "Move data-dependent Python control flow out of forward().")
        raise UnsupportedNodeError(
            f"neither torch.fx ({type(fx_error).__name__}: {first}) nor torch.export ({type(e).__name__}: "
            f"{second}) could trace {type(model).__name__}. {hint}"
        ) from e
    return lift_aten_graph(ep.module(), example)
