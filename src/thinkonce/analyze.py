"""Per-layer StreamiNNC analysis of a model before streaming it: ``thinkonce.analyze(model, window)``.

Before converting a network to a window stream one wants to know, layer by layer: how much of each
layer's window the zero padding reaches (those frames change when a stream replaces the padding by
real signal), the exact receptive field and cumulative stride (which hops keep pooling aligned, how
much left context signal padding needs) and, for pooling layers, how large an error a misaligned hop
could cause on a band-limited signal. :func:`analyze` answers all of it from the same ``torch.fx``
plan the stream is built from, so the numbers describe exactly what :func:`thinkonce.stream` runs.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import torch
import torch.nn as nn
from rich.table import Table

from .stream.bounds import _propagate, _Val, pooling_error_bound
from .stream.convert import Converter, NodePlan, Plan
from .stream.exported import as_module
from .stream.layers import ChainOp, SlidingOp
from .stream.window import stride_period, window_spec

__all__ = ["analyze", "Analysis", "LayerInfo", "receptive_fields"]

_POOL_KINDS = ("maxpool", "avgpool")


@dataclass
class LayerInfo:
    """One temporal layer (conv, pooling or time padding) of the trunk, measured on one window.

    ``padding`` is the zero padding the layer applies (an ``F.pad`` fused into the next conv counts
    for that conv; negative values trim). ``rate`` is the cumulative stride after the layer (input
    samples per frame), ``receptive_field`` the exact number of input samples one output frame of the
    layer depends on (see :func:`receptive_fields`: padding does not widen it).
    ``pad_left``/``pad_right`` count the frames at each edge of the window that depend on zero
    padding (this layer's or inherited); ``pad_share`` is their share of the layer's ``frames``.
    ``pool_error_bound`` (pooling layers, when ``fs`` and ``f_max`` are known) bounds the change of a
    pooled value if the hop misaligns the pool (see :func:`thinkonce.stream.bounds.pooling_error_bound`).
    """

    node: str
    module: str | None
    type: str
    op: str
    kernel: int | None
    stride: int | None
    dilation: int | None
    padding: list[int]
    rate: int
    receptive_field: int
    frames: int
    pad_left: int
    pad_right: int
    pad_share: float
    pool_error_bound: float | None = None


@dataclass
class Analysis:
    """The result of :func:`analyze`: per-layer rows plus what a window stream of the model needs.

    * ``stride_period``: the trunk's total stride; ``allowed_hops`` are its multiples up to the window.
    * ``extension``: the least left context (samples, a multiple of the period) that makes every head
      input frame of the window free of zero padding - what signal-padding training needs;
      ``stream_extension`` is what :func:`thinkonce.stream` keeps (its own left-reach computation; tests
      check the two agree).
    * ``expected_deviation``: share of the head-input frames touched by zero padding (either edge) -
      the frames that differ from a padding-free computation, an indicator of how much streaming
      changes the output relative to normal windowed inference; ``expected_deviation_left`` counts the
      left edge only (what an ``edge="exact"`` stream changes: it keeps the right-edge zeros).
    """

    model: str
    window: int
    fs: float | None
    f_max: float | None
    amplitude: float
    layers: list[LayerInfo]
    stride_period: int
    allowed_hops: list[int]
    extension: int
    stream_extension: int
    head_inputs: list[str]
    head_frames: int
    expected_deviation: float
    expected_deviation_left: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable (plain ints, floats, strings, lists) and readable by :meth:`from_dict`."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Analysis":
        kw = dict(d)
        kw["layers"] = [LayerInfo(**row) for row in d["layers"]]
        kw["allowed_hops"] = list(d["allowed_hops"])
        kw["head_inputs"] = list(d["head_inputs"])
        kw["notes"] = list(d.get("notes", []))
        return cls(**kw)

    def to_table(self) -> Table:
        """A rich table, one row per temporal layer, with the summary in its caption.

        Columns: module path (or node name), layer type, kernel/stride/dilation, padding left,right,
        cumulative stride, receptive field (samples), frames in the window, frames reached by zero
        padding at the left/right edge, their share, and the pooling error bound when known.
        """
        title = f"{self.model}: window {self.window}"
        if self.fs:
            title += f" at {self.fs:g} Hz"
        table = Table(title=title)
        cols = ["layer", "type", "k/s/d", "pad", "rate", "RF", "frames", "reach", "share"]
        show_bound = any(r.pool_error_bound is not None for r in self.layers)
        if show_bound:
            cols.append("bound")
        for c in cols:
            table.add_column(c, justify="left" if c in ("layer", "type") else "right", overflow="fold")
        for r in self.layers:
            ksd = "" if r.kernel is None else f"{r.kernel}/{r.stride}/{r.dilation}"
            row = [
                r.module or r.node, r.type, ksd, f"{r.padding[0]},{r.padding[1]}", str(r.rate),
                str(r.receptive_field), str(r.frames), f"{r.pad_left}/{r.pad_right}", f"{100 * r.pad_share:.2f}%",
            ]
            if show_bound:
                row.append("" if r.pool_error_bound is None else f"{r.pool_error_bound:.4g}")
            table.add_row(*row)
        table.caption = "\n".join([
            f"stride period {self.stride_period}: allowed hops {_hops(self.allowed_hops)}",
            f"signal padding needs {self.extension} samples of left context "
            f"(the stream keeps {self.stream_extension})",
            f"head input ({', '.join(self.head_inputs) or '-'}, {self.head_frames} frames): "
            f"{100 * self.expected_deviation:.2f} % of frames touched by zero padding "
            f"({100 * self.expected_deviation_left:.2f} % from the left edge)",
            *([f"bound: largest change of a pooled value if the hop misaligns the pool, for a signal "
               f"band-limited to {self.f_max:g} Hz with |x| <= {self.amplitude:g}"] if show_bound else []),
            *self.notes,
        ])
        return table


def _s(v: int | None) -> str:
    return "" if v is None else str(v)


def _hops(hops: list[int]) -> str:
    if len(hops) <= 8:
        return ", ".join(map(str, hops)) or "none"
    return f"{', '.join(map(str, hops[:4]))}, ..., {hops[-1]} ({len(hops)} hops)"


def _module_of(plan: Plan, p: NodePlan) -> tuple[str | None, str]:
    n = p.node
    if n.op == "call_module":
        return str(n.target), type(plan.gm.get_submodule(str(n.target))).__name__
    target = n.target
    name = getattr(target, "__name__", None) or str(target)
    return None, name


def _padding(op: Any) -> list[int]:
    """Net padding (left, right) in input frames, from the op's declared facts (trims are negative)."""
    if op is None:
        return [0, 0]
    tot = [0, 0]
    for sub in (op.ops if isinstance(op, ChainOp) else (op,)):
        f = sub.facts()
        tot = [tot[0] + f.pad_left, tot[1] + f.pad_right]
    return tot


def _share(vals: list[_Val], left_only: bool = False) -> tuple[float, int]:
    total = sum(v.length for v in vals)
    if not total:
        return 0.0, 0
    hit = sum(min(v.length, v.left if left_only else v.left + v.right) for v in vals)
    return hit / total, total


def _exact_extension(plan: Plan, window: int, period: int, limit: int) -> int:
    """Least multiple of the period whose left context frees every head-input frame from zero padding.

    With ``E`` samples before the window, a head input at ``r`` samples per frame has ``E / r`` extra
    frames in front of the window's; the window's frames are clean once the left taint is <= ``E / r``.
    """
    if not plan.head_inputs:
        return 0
    for k in range(0, limit // period + 2):
        e = k * period
        vals = _propagate(plan, window + e)
        if all(vals[v].left * vals[v].rate <= e for v in plan.head_inputs):
            return e
    raise RuntimeError(f"no left context up to {limit} samples removes the zero padding from the head inputs")


def _op_rf(op: Any, rf: Fraction, rate: Fraction) -> tuple[Fraction, Fraction]:
    """Receptive field and rate after ``op`` applied to frames of receptive field ``rf`` at ``rate``:
    each op's declared span widens it by ``span - 1`` input frames (padding and trims widen nothing)."""
    for sub in (op.ops if isinstance(op, ChainOp) else (op,)):
        f = sub.facts()
        rf, rate = rf + (f.span - 1) * rate, rate * f.stride
    return rf, rate


def receptive_fields(plan: Plan) -> dict[str, int]:
    """Receptive field of every time-axis value of ``plan``, by node name, in input samples.

    The definition shared by :func:`analyze` (``LayerInfo.receptive_field``) and the CLI's
    ``describe``: the number of consecutive input samples one output frame of the node depends on
    (its first to its last sample, inclusive). A sliding op of span ``d * (k - 1) + 1`` adds
    ``(span - 1) * rate`` to its input's, where ``rate`` is the input's samples per frame; padding and
    trimming add nothing (zeros are not input samples); a transposed conv adds ``ceil(span / stride) - 1``
    input frames (its widest output frame); nearest upsampling adds nothing; a branch combination takes
    the widest branch. After upsampling a frame covers a fraction of a sample, so the value is rounded
    up. (``NodePlan.rf`` is a different, conservative quantity: how far back a frame's history reaches,
    padding included, which the stream uses to size warm-up.)
    """
    rfs: dict[Any, tuple[Fraction, Fraction]] = {}
    for p in plan.nodes:
        n = p.node
        if p.kind == "input":
            rfs[n] = (Fraction(1), Fraction(1))
        elif p.kind == "alias" and p.source in rfs:
            rfs[n] = rfs[p.source]
        elif p.kind in ("framewise", "align") and p.temporal_args:
            ins = [rfs[a] for a in p.temporal_args if a in rfs]
            if ins:
                rfs[n] = (max(r for r, _ in ins), ins[0][1])
        elif p.kind == "temporal" and p.op is not None and p.temporal_args and p.temporal_args[0] in rfs:
            rfs[n] = _op_rf(p.op, *rfs[p.temporal_args[0]])
    return {n.name: int(math.ceil(rf)) for n, (rf, _) in rfs.items()}


def _infer_example(model: nn.Module, window: int) -> torch.Tensor:
    from .stream.stream import _infer_channels, _model_dtype

    c = _infer_channels(model)
    if c is None:
        raise ValueError("cannot infer the input channels; pass example_input=torch.zeros(2, C, window)")
    dtype, device = _model_dtype(model)
    return torch.zeros(2, c, window, dtype=dtype, device=device)


def analyze(
    model: nn.Module,
    window: int,
    fs: float | None = None,
    f_max: float | None = None,
    amplitude: float = 1.0,
    example_input: torch.Tensor | None = None,
) -> Analysis:
    """Analyse a window model layer by layer for StreamiNNC streaming (see :class:`Analysis`).

    Args:
        model: the network (any mode: it is copied and put in eval mode; weights do not matter).
        window: the window length ``W`` in samples the model runs on.
        fs: sampling rate in Hz (needed for the pooling error bounds).
        f_max: the signal's band limit in Hz (needed for the pooling error bounds).
        amplitude: bound ``A`` on ``|x|`` used by the pooling error bounds (per unit by default).
        example_input: a ``(batch, channels, W)`` tensor; inferred from the first layer when omitted.

    Pooling bounds treat each pool's input as a signal sampled at ``fs / rate_in`` with the same band
    limit and amplitude - exact for a pool on the raw signal, an assumption deeper in the trunk
    (nonlinearities widen the band; the bound still saturates at ``2A``). The misalignment a pool can
    see is below its stride, so ``L_p`` is the pool's stride (= its size in the reference networks).

    Receptive fields are in input samples of one output frame of the layer, padding excluded (see
    :func:`receptive_fields`); ``thinkonce describe`` reports the same numbers.

    Raises:
        ValueError: a non-positive window, an example input of another length, f_max without fs.
        NotImplementedError: the trunk upsamples above the input rate (ConvTranspose1d, Upsample
            on the input's frames; an SOI fill back to the rate of its S-CC's input is analysed).
        UnsupportedNodeError: the model cannot be streamed at all.
    """
    if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
        raise ValueError(f"window must be a positive int, got {window!r}")
    if f_max is not None and fs is None:
        raise ValueError("the pooling error bound needs the sampling rate too: pass fs= with f_max=")
    model, example_input = as_module(model, example_input, window)  # exported / TorchScript forms too
    model = copy.deepcopy(model).eval()  # shape recording must not touch BatchNorm statistics
    if example_input is None:
        example_input = _infer_example(model, window)
    if example_input.shape[-1] != window:
        raise ValueError(f"example_input has {example_input.shape[-1]} samples but window={window}")
    plan = Converter(model, example_input, window).convert()
    vals = _propagate(plan, window, check_shapes=True)
    period, _ = stride_period(plan)
    rfs = receptive_fields(plan)
    layers: list[LayerInfo] = []
    for p in plan.nodes:
        if p.kind != "temporal":
            continue
        v, vin = vals[p.node], vals[p.temporal_args[0]]
        module, typ = _module_of(plan, p)
        op = p.op
        sliding = isinstance(op, SlidingOp)
        bound = None
        if sliding and op.kind in _POOL_KINDS and fs is not None and f_max is not None:
            bound = pooling_error_bound(op.stride, fs / float(vin.rate), f_max, amplitude)
        if v.rate.denominator != 1:
            raise NotImplementedError(
                f"node '{p.node.name}' ({typ}) upsamples the trunk above the input rate ({v.rate} samples per "
                "frame); analyze reports whole samples per frame, so upsampling layers (ConvTranspose1d, "
                "Upsample) are analysed only where the rate is back to whole samples (an SOI fill after its "
                "S-CC). thinkonce.stream.bounds.zero_padding_reach(plan) gives the reach of such a trunk."
            )
        layers.append(LayerInfo(
            node=p.node.name, module=module, type=typ,
            op=(op.kind if not isinstance(op, ChainOp) else "+".join(o.kind for o in op.ops)),
            kernel=op.kernel if sliding else None, stride=op.stride if sliding else None,
            dilation=op.dilation if sliding else None, padding=_padding(op), rate=int(v.rate),
            receptive_field=rfs[p.node.name], frames=v.length, pad_left=v.left, pad_right=v.right,
            pad_share=min(v.length, v.left + v.right) / v.length if v.length else 0.0,
            pool_error_bound=bound,
        ))
    heads = [vals[v] for v in plan.head_inputs]
    dev, head_frames = _share(heads)
    dev_left, _ = _share(heads, left_only=True)
    notes: list[str] = []
    try:
        stream_ext = window_spec(plan, window, period).extension
    except ValueError as e:  # window smaller than the period: no hop is allowed
        stream_ext = 0
        notes.append(str(e))
    limit = max(stream_ext, period) + sum(lay.receptive_field for lay in layers) + period
    ext = _exact_extension(plan, window, period, limit)
    return Analysis(
        model=type(model).__name__, window=window, fs=None if fs is None else float(fs),
        f_max=None if f_max is None else float(f_max), amplitude=float(amplitude), layers=layers,
        stride_period=period, allowed_hops=list(range(period, window + 1, period)), extension=ext,
        stream_extension=int(stream_ext), head_inputs=[v.name for v in plan.head_inputs],
        head_frames=head_frames, expected_deviation=dev, expected_deviation_left=dev_left, notes=notes,
    )

