"""The op registry: how each graph operation behaves on the time axis, looked up, never hard-coded.

A *builder* is a function ``build(ctx: OpContext) -> NodePlan`` that tells the converter what a node
does to the time axis (frame-wise, a temporal op with state, a head, or a refusal with a reason) and,
for temporal ops, returns the :class:`~thinkonce.stream.layers.StreamOp` that runs it on chunks.
Builders are registered per target, the same public way for thinkonce's own families, for SOI and
gating layers, and for users:

* an ``nn.Module`` class: ``@register_op(nn.Conv1d)``; subclasses inherit the builder only while they
  keep the class's own ``forward`` (a subclass with its own ``forward`` is traced through instead,
  so the converter sees what the code computes, not what the class is called);
* a function: ``@register_op(F.conv1d)``, ``@register_op(torch.cat)``, ``operator.getitem``, ...;
* an ATen operator (``torch.ops.aten.prelu.default`` or the packet ``torch.ops.aten.prelu``);
* a Tensor method by name: ``@register_op(method("transpose"))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn as nn

if TYPE_CHECKING:  # pragma: no cover
    from ..stream.convert import NodePlan
    from .context import OpContext

Builder = Callable[["OpContext"], "NodePlan"]


@dataclass(frozen=True)
class method:  # noqa: N801 - reads like a target: register_op(method("view"))
    """A Tensor method, registered by name (``x.view(...)`` is ``method("view")``)."""

    name: str


_MODULES: dict[type, Builder] = {}
_TARGETS: dict[Any, Builder] = {}


def register_op(*targets: Any) -> Callable[[Builder], Builder]:
    """Register ``build`` for every target; later registrations override earlier ones (users win).

    >>> @register_op(MyCausalConv)          # doctest: +SKIP
    ... def _(ctx):
    ...     return ctx.temporal(MySlidingOp(...))
    """
    if not targets:
        raise TypeError("register_op needs at least one target (a module class, function, method(...) or ATen op)")

    def deco(build: Builder) -> Builder:
        for t in targets:
            if isinstance(t, type) and issubclass(t, nn.Module):
                _MODULES[t] = build
            elif isinstance(t, str):
                _TARGETS[method(t)] = build
            else:
                _TARGETS[t] = build
        return build

    return deco


def module_builder(mod: nn.Module) -> tuple[type, Builder] | None:
    """The registered class (nearest in the MRO) whose ``forward`` this module still runs, and its builder.

    A subclass that overrides ``forward`` has no builder of its ancestors: its own code decides.
    """
    cls = type(mod)
    for base in cls.__mro__:
        build = _MODULES.get(base)
        if build is not None:
            return (base, build) if cls.forward is base.forward else None
    return None


def target_builder(op: str, target: Any) -> Builder | None:
    """The builder for a ``call_function`` / ``call_method`` target (ATen overloads by overload, then packet)."""
    if op == "call_method":
        return _TARGETS.get(method(target))
    try:
        build = _TARGETS.get(target)
    except TypeError:  # unhashable target
        return None
    if build is None and isinstance(target, torch._ops.OpOverload):
        build = _TARGETS.get(target.overloadpacket)
    return build


def registered_modules() -> list[type]:
    return list(_MODULES)


def describe_target(target: Any) -> str:
    """A readable name for a call target (``F.relu``, ``operator.add``, method ``view``)."""
    if isinstance(target, str):
        return target
    if isinstance(target, method):
        return f"Tensor.{target.name}"
    if isinstance(target, torch._ops.OpOverload):
        return f"aten.{target.overloadpacket.__name__}.{target._overloadname}"
    mod = getattr(target, "__module__", None) or ""
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", repr(target))
    return f"{mod}.{name}" if mod else name
