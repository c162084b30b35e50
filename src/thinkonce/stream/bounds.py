"""StreamiNNC analysis: how far zero padding reaches into a window, and the pooling error bound.

Two questions decide whether a window stream can replace normal windowed inference (DESIGN.md 4):

* **Zero-padding reach.** A window stream replaces the zeros a layer pads on the left with the real
  activations of the previous samples (signal padding). Every frame whose value depends on such a
  zero - at this layer or inherited from an earlier one - changes. :func:`zero_padding_reach` counts
  those frames per layer, exactly, by propagating "tainted frame counts" through the sliding ops;
  :func:`empirical_padding_reach` measures the same thing by running the graph (the tests check that
  both agree).
* **Pooling misalignment.** If the hop is not a multiple of a pool's stride, the pool sees its input
  shifted by up to ``L_p - 1`` samples; :func:`pooling_error_bound` bounds the resulting change.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import torch
import torch.fx as fx

from .convert import NodePlan, Plan
from .layers import ChainOp, StreamOp

__all__ = [
    "pooling_error_bound",
    "zero_padding_reach",
    "empirical_padding_reach",
    "CosineSum",
    "pool_shift_deviation",
]


# ---------------------------------------------------------------------------------------------------
# pooling error bound
# ---------------------------------------------------------------------------------------------------
def pooling_error_bound(pool_size: int, fs: float, f_max: float, amplitude: float = 1.0) -> float:
    """Largest change of a max- or average-pooled value when the pool's input shifts by < ``pool_size``.

    Derivation: a signal band-limited to ``f_max`` with ``|x| <= A`` obeys Bernstein's inequality
    ``|x'| <= 2*pi*f_max*A``, so a shift by ``d <= L_p - 1`` samples (``d / fs`` seconds) moves every
    sample by at most ``(L_p - 1) * 2*pi*A*f_max / fs``; max and mean are 1-Lipschitz in the sup norm,
    so pooled values move no more. Since ``|x| <= A`` a value can never move by more than ``2A``.

    Args:
        pool_size: ``L_p``, the pooling size (the misalignment is at most ``L_p - 1`` samples).
        fs: sampling rate of the pooled sequence in Hz.
        f_max: highest frequency in the signal, in Hz.
        amplitude: ``A``, a bound on ``|x|``.

    Raises:
        ValueError: a pool size below 1, a non-positive ``fs``, a negative ``f_max`` or amplitude.
    """
    if isinstance(pool_size, bool) or int(pool_size) != pool_size or pool_size < 1:
        raise ValueError(f"pool_size must be an integer >= 1, got {pool_size!r}")
    if not fs > 0:
        raise ValueError(f"fs must be positive (Hz), got {fs!r}")
    if not f_max >= 0:
        raise ValueError(f"f_max must be >= 0 (Hz), got {f_max!r}")
    if not amplitude >= 0:
        raise ValueError(f"amplitude must be >= 0, got {amplitude!r}")
    slope = 2.0 * math.pi * amplitude * f_max / fs  # largest change per sample of shift
    return float(min((int(pool_size) - 1) * slope, 2.0 * amplitude))


@dataclass(frozen=True)
class CosineSum:
    """Signals ``x_i(t) = sum_k a_ik cos(2 pi f_ik t + phi_ik)``, band-limited to ``max f_ik``.

    Evaluated in closed form at any time, so a shifted copy has no edge effects. With
    ``sum_k |a_ik| = A`` every signal satisfies ``|x_i(t)| <= A`` for all real ``t`` (not only at the
    samples), which is what Bernstein's inequality needs.
    """

    amps: np.ndarray  # (signals, components)
    freqs: np.ndarray  # (signals, components), Hz
    phases: np.ndarray  # (signals, components), rad

    @classmethod
    def random(cls, rng: np.random.Generator, n_signals: int, f_max: float, amplitude: float = 1.0,
               max_components: int = 8) -> "CosineSum":
        """Random sums of 1..``max_components`` cosines in ``[0, f_max]`` with ``sum |a| = amplitude``.

        Half of the signals put their first component exactly at ``f_max`` and few signals have one
        component: those are the near-worst cases for the bound (a pure tone at ``f_max`` reaches it
        for small shifts), so the measurement is not flattered by averaging.
        """
        if n_signals < 1 or max_components < 1:
            raise ValueError("n_signals and max_components must be >= 1")
        k = rng.integers(1, max_components + 1, size=n_signals)
        comp = np.arange(max_components)[None, :]
        amps = rng.uniform(0.05, 1.0, size=(n_signals, max_components)) * (comp < k[:, None])
        amps *= amplitude / amps.sum(axis=1, keepdims=True)
        freqs = rng.uniform(0.0, f_max, size=(n_signals, max_components))
        at_edge = rng.random(n_signals) < 0.5
        freqs[at_edge, 0] = f_max
        phases = rng.uniform(0.0, 2 * np.pi, size=(n_signals, max_components))
        return cls(amps, freqs, phases)

    def __call__(self, t: np.ndarray) -> np.ndarray:
        """Values at times ``t`` (seconds, any shape ``T``): array ``(signals, *T)``."""
        t = np.asarray(t, dtype=np.float64)
        out = np.zeros((self.amps.shape[0], *t.shape))
        for k in range(self.amps.shape[1]):  # components one by one: small memory, same arithmetic
            a = self.amps[:, k].reshape(-1, *([1] * t.ndim))
            f = self.freqs[:, k].reshape(-1, *([1] * t.ndim))
            p = self.phases[:, k].reshape(-1, *([1] * t.ndim))
            out += a * np.cos(2 * np.pi * f * t + p)
        return out


def pool_shift_deviation(signals: CosineSum, fs: float, pool_size: int, kind: str, n_windows: int = 16,
                         offset: float = 0.0) -> np.ndarray:
    """``|pool(x)[j] - pool(x shifted by d)[j]|`` per signal, shift ``d = 1..pool_size-1`` and window j.

    The pool is non-overlapping (kernel = stride = ``pool_size``, as in the reference networks) over
    ``n_windows`` windows starting at time ``offset`` (seconds); ``x shifted by d`` is ``x(t + d/fs)``.
    Returns an array ``(signals, pool_size - 1, n_windows)``.
    """
    if kind not in ("max", "avg"):
        raise ValueError(f"kind must be 'max' or 'avg', got {kind!r}")
    n = pool_size * n_windows
    shifts = np.arange(pool_size)  # d = 0 is the reference
    t = offset + (np.arange(n)[None, :] + shifts[:, None]) / fs  # (shifts, n)
    x = signals(t).reshape(-1, pool_size, n_windows, pool_size)  # (signals, shifts, windows, L)
    pooled = x.max(axis=-1) if kind == "max" else x.mean(axis=-1)
    return np.abs(pooled[:, 1:, :] - pooled[:, :1, :])


# ---------------------------------------------------------------------------------------------------
# zero-padding reach: analytic
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Val:
    """What the analysis knows about one temporal value at a given input length."""

    length: int  # frames along the time axis
    left: int  # leading frames that depend on zero padding (this layer's or inherited)
    right: int  # trailing frames that depend on zero padding
    rf: int  # exact receptive field in input samples
    rate: Fraction  # input samples per frame


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _apply(v: _Val, op: StreamOp, p: NodePlan) -> _Val:
    """One op's effect on the tainted frames, from the op's own rule (:meth:`StreamOp.taint`)."""
    try:
        n, left, right = op.taint(v.length, v.left, v.right)
    except NotImplementedError as e:
        raise NotImplementedError(
            f"zero-padding reach through node '{p.node.name}' ({type(op).__name__}): {e}; give the op a "
            "taint() rule (thinkonce.stream.layers.StreamOp.taint)"
        ) from e
    rf, rate = v.rf, v.rate
    for sub in (op.ops if isinstance(op, ChainOp) else (op,)):
        f = sub.facts()
        rf += (f.span - 1) * int(rate)
        rate = rate * f.stride
    return _Val(n, left, right, rf, rate)


def _time_length(shape: Any, tdim: int) -> int | None:
    if isinstance(shape, tuple) and shape and all(isinstance(e, int) for e in shape):
        return shape[tdim]
    return None


def _propagate(plan: Plan, length: int, check_shapes: bool = False) -> dict[fx.Node, _Val]:
    """Tainted frame counts, lengths and exact receptive fields of every trunk value.

    ``length`` is the input length in samples; ``check_shapes`` compares the computed lengths with
    ``plan.example_shapes`` (valid when ``length`` is the example input's length).
    """
    vals: dict[fx.Node, _Val] = {}
    for p in plan.nodes:
        n = p.node
        if p.kind == "input":
            vals[n] = _Val(length, 0, 0, 1, Fraction(1))
            continue
        if p.kind == "alias":  # padding fused into its only consumer, whose op carries the padding
            assert p.source is not None
            vals[n] = vals[p.source]
            continue
        if p.kind == "framewise":
            vals[n] = vals[p.temporal_args[0]]
        elif p.kind == "align":
            # branches are aligned frame by frame from their first frame and combined as far as all
            # reach (AlignQueues: the shortest length; a crop to a partner's length, such as an SOI
            # fill's crop_like, drops the longer branch's last frames and the taint they carried)
            ins = [vals[a] for a in p.temporal_args]
            m = min(v.length for v in ins)
            which = getattr(p.op, "value_args", None)  # inputs whose values reach the output (all: None)
            used = ins if which is None else [ins[i] for i in which]
            vals[n] = _Val(m, min(m, max(v.left for v in used)),
                           min(m, max(max(v.right - (v.length - m), 0) for v in used)),
                           max(v.rf for v in ins), ins[0].rate)
        elif p.kind == "temporal":
            assert p.op is not None
            vals[n] = _apply(vals[p.temporal_args[0]], p.op, p)
        else:  # const, dyn, head: no frames of the window
            continue
        if check_shapes and p.tdim is not None:
            want = _time_length(plan.example_shapes.get(n), p.tdim)
            if want is not None and want != vals[n].length:
                raise RuntimeError(
                    f"zero-padding reach: node '{n.name}' has {want} frames on the example input but the "
                    f"analysis derived {vals[n].length}; its op ({type(p.op).__name__}) does not follow "
                    "the sliding-window arithmetic the analysis assumes"
                )
    return vals


def _op_kind(op: StreamOp | None) -> str:
    if isinstance(op, ChainOp):
        return "+".join(o.kind for o in op.ops)
    return op.kind if op is not None else ""


def _row(p: NodePlan, v: _Val) -> dict[str, Any]:
    n = v.length
    tainted = min(n, v.left + v.right)  # a prefix and a suffix: their union
    return {
        "node": p.node.name,
        "op": _op_kind(p.op) if p.kind == "temporal" else p.kind,
        "frames": n,
        "left": v.left,
        "right": v.right,
        "share": tainted / n if n else 0.0,
        "rate": int(v.rate) if v.rate.denominator == 1 else str(v.rate),
        "receptive_field": v.rf,
    }


def zero_padding_reach(plan: Plan, every_value: bool = False) -> list[dict[str, Any]]:
    """Frames of each temporal layer's output (in the example window) that depend on zero padding.

    Computed analytically: a sliding op's output frame ``j`` reads padded-input frames
    ``[j*s, j*s + span - 1]``; the padded input is ``pad_left`` zeros, the input frames (the first
    ``left_in`` and last ``right_in`` of them already tainted), then ``pad_right`` zeros. So with
    ``L = pad_left + left_in`` tainted frames at the left, ``ceil(L / s)`` outputs are tainted, and
    symmetrically at the right (including the frames that floor division drops). Frame-wise ops keep
    the counts, branch combinations take the maximum, constant padding adds and trimming removes.

    Returns one dict per conv/pool/pad output in graph order (``every_value=True``: every trunk value)
    with ``node``, ``op``, ``frames``, ``left``, ``right`` (tainted frame counts at each edge; they may
    overlap in short layers), ``share`` (tainted frames / frames), ``rate`` (input samples per frame)
    and ``receptive_field`` (exact, in samples). Lengths come from ``plan.example_shapes``' input
    length and are checked against every recorded shape.

    Upsampling (ConvTranspose1d, Upsample, the SOI fills) spreads each tainted frame over the output
    frames it reaches; an alignment (branches combined frame by frame) keeps the shortest branch's
    length, and an SOI fill's crop the reach of the filled values only.

    Raises:
        NotImplementedError: an op declares no rule (:meth:`StreamOp.taint`).
    """
    length = int(plan.input_shape[-1])
    vals = _propagate(plan, length, check_shapes=True)
    keep = ("temporal",) if not every_value else ("input", "framewise", "align", "temporal")
    return [_row(p, vals[p.node]) for p in plan.nodes if p.kind in keep and p.node in vals]


# ---------------------------------------------------------------------------------------------------
# zero-padding reach: empirical (for verification)
# ---------------------------------------------------------------------------------------------------
class _TrunkRecorder(fx.Interpreter):
    """Runs the trunk of a graph (head nodes skipped) and keeps the values of the chosen nodes."""

    def __init__(self, gm: fx.GraphModule, skip: set[str], keep: set[str]) -> None:
        super().__init__(gm)
        self.skip, self.keep = skip, keep
        self.values: dict[str, torch.Tensor] = {}

    def run_node(self, n: fx.Node) -> Any:
        if n.op == "output" or n.name in self.skip:
            return None  # heads mix the time axis and may need the exact window length
        out = super().run_node(n)
        if n.name in self.keep and isinstance(out, torch.Tensor):
            self.values[n.name] = out
        return out


def _differs(a: torch.Tensor, b: torch.Tensor, tdim: int) -> torch.Tensor:
    """Per frame: does any element differ beyond float64 round-off (relative to the plain run ``a``)?"""
    n = a.shape[tdim]
    if a.numel() == 0:
        return torch.zeros(n, dtype=torch.bool)
    scale = float(a.abs().nan_to_num(0, 0, 0).max())
    close = torch.isclose(a, b, rtol=0.0, atol=1e-9 * max(scale, 1e-30), equal_nan=True)
    return (~close).movedim(tdim, -1).reshape(-1, n).any(dim=0)


def _run_len(mask: torch.Tensor) -> int:
    """Length of the leading run of True values."""
    idx = torch.nonzero(~mask)
    return int(idx[0]) if idx.numel() else int(mask.numel())


def empirical_padding_reach(plan: Plan, trials: int = 16, seed: int = 0, every_value: bool = False,
                            extension: int | None = None, loudness: float = 1e4) -> list[dict[str, Any]]:
    """Measure the zero-padding reach by running the graph: the frames that change when the padding
    is replaced by real signal.

    The window (random, ``trials`` rows) is run once as is, once with ``extension`` random samples
    before it and once with them after it, in float64; each value of the extended runs is cropped back
    to the window's frames. Frames that differ from the plain run at the left (right) are those the
    left (right) zero padding reaches. ``extension`` defaults to a multiple of the trunk's stride period
    (so that frames stay aligned) larger than its receptive field. In every other row the extension is
    ``loudness`` times louder than the window: a changed input then wins the max of every pool it
    reaches whenever its sign is positive, so chains of max pools cannot hide it; the other rows keep
    the extension at the window's scale, so saturating activations (tanh) cannot hide it either.
    Random weights and ``trials`` rows make an accidental equality negligible - except where the
    network itself makes the value independent of the padding (a ReLU that is zero on every row): the
    analytic count is about dependence through the graph, so such frames still count there.

    Returns dicts like :func:`zero_padding_reach` (``node``, ``frames``, ``left``, ``right``, ``share``)
    plus ``stray``: differing frames outside the leading/trailing runs (0 unless the analysis'
    prefix/suffix picture is wrong), and ``left_cover``/``right_cover``: the shortest prefix (suffix)
    holding every frame the left (right) extension changes - what the analysis counts where a layer
    leaves unchanged frames among changed ones (an SOI fill's exact even slots between interpolated
    odd ones); equal to ``left``/``right`` when ``stray`` is 0.
    """
    from .window import stride_period

    period, _ = stride_period(plan)
    keep_kinds = ("temporal",) if not every_value else ("input", "framewise", "align", "temporal")
    rows = [p for p in plan.nodes if p.kind in keep_kinds and p.tdim is not None]
    if extension is None:
        rf = max((int(math.ceil(p.rf)) for p in plan.nodes if p.temporal), default=1)
        extension = period * (rf // period + 2)
    if extension % period:
        raise ValueError(f"extension={extension} must be a multiple of the stride period {period}")
    gm = copy.deepcopy(plan.gm).double()
    skip = {p.node.name for p in plan.head_nodes}
    keep = {p.node.name for p in rows}
    g = torch.Generator().manual_seed(seed)
    frame = tuple(plan.input_shape[1:-1])
    W = int(plan.input_shape[-1])
    x = torch.randn((trials, *frame, W), generator=g, dtype=torch.float64)
    loud = torch.where(torch.arange(trials) % 2 == 1, float(loudness), 1.0).to(torch.float64)
    loud = loud.reshape(trials, *([1] * (len(frame) + 1)))
    pre = loud * torch.randn((trials, *frame, extension), generator=g, dtype=torch.float64)
    post = loud * torch.randn((trials, *frame, extension), generator=g, dtype=torch.float64)

    def record(inp: torch.Tensor) -> dict[str, torch.Tensor]:
        rec = _TrunkRecorder(gm, skip, keep)
        with torch.no_grad():
            rec.run(inp)
        return rec.values

    plain = record(x)
    left_run = record(torch.cat([pre, x], dim=-1))
    right_run = record(torch.cat([x, post], dim=-1))
    out = []
    for p in rows:
        name = p.node.name
        if name not in plain:
            continue
        a, d = plain[name], p.tdim
        n = a.shape[d]
        off = Fraction(extension) / Fraction(p.rate)
        if off.denominator != 1:
            raise ValueError(f"extension {extension} is not a whole number of frames of node '{name}'")
        lmask = _differs(a, left_run[name].narrow(d, int(off), n), d)
        rmask = _differs(a, right_run[name].narrow(d, 0, n), d)
        left, right = _run_len(lmask), _run_len(rmask.flip(0))
        covered = torch.zeros(n, dtype=torch.bool)
        covered[:left] = True
        covered[n - right:] = True
        stray = int(((lmask | rmask) & ~covered).sum())
        lidx, ridx = torch.nonzero(lmask), torch.nonzero(rmask)
        out.append({"node": name, "frames": n, "left": left, "right": right,
                    "share": min(n, left + right) / n if n else 0.0, "stray": stray,
                    "left_cover": int(lidx[-1]) + 1 if lidx.numel() else 0,
                    "right_cover": n - int(ridx[0]) if ridx.numel() else 0})
    return out
