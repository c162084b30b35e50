"""The stream checks itself before it is handed out: never a silent wrong answer.

A conversion rests on facts the registry declares and on the graph the frontend traced; when either is
wrong for some model (a builder's rule that does not fit an unusual spelling, code the tracer could not
see), the stream would give wrong numbers without a word. So :func:`self_check` runs the new stream on
a random probe signal under a random chunking (chunks of 0 and 1 samples included) and compares it
with the model itself (continuous mode) or with :meth:`Stream.reference` (window mode). On a mismatch
it streams the probe once more, keeping every trunk value, and names the first node (in graph order)
whose streamed frames differ from the offline graph's.

``edge="stale"`` and misaligned hops deviate by design and are not checked (their deviation is what
``thinkonce.verify`` measures).
"""

from __future__ import annotations

import random
import warnings
from typing import TYPE_CHECKING, Any

import torch
import torch.fx as fx
from torch import Tensor

from torch.utils.flop_counter import FlopCounterMode

from ..errors import ConversionError, HeavyHeadWarning

if TYPE_CHECKING:  # pragma: no cover
    from .stream import Stream

#: agreement required, relative to the output's scale (float32 round-off stays ~1e-6)
RTOL = 1e-4


def _chunks(rng: random.Random, n: int, period: int) -> list[int]:
    """Few chunks (the check must stay cheap) of telling lengths: empty, one sample, a length off the
    stride period, then the rest in three random pieces."""
    head = [0, 1, min(rng.randint(1, period + 2), max(n - 1, 0))]
    rest = n - sum(head)
    if rest <= 0:
        return [c for c in head if c] or [n]
    cuts = sorted(rng.randint(0, rest) for _ in range(2))
    return head + [cuts[0], cuts[1] - cuts[0], rest - cuts[1]]


def _run_eager(s: "Stream", x: Tensor, lengths: list[int]) -> Tensor:
    st = s.init_state(x.shape[0])
    outs, pos = [], 0
    for c in lengths:
        y, st = s._step_impl(x[..., pos:pos + c], st)
        outs.append(y)
        pos += c
    if s.spec is None:
        y, _ = s.flush(st)
        outs.append(y)
        return torch.cat(outs, dim=s.out_tdim)
    return torch.cat(outs, dim=1)


def _window_reference(s: "Stream", x: Tensor, n_windows: int, start: int = 0) -> Tensor:
    assert s.spec is not None
    W, H, E = s.spec.window, s.spec.hop, s.spec.extension
    xp = torch.cat([x.new_zeros((*x.shape[:-1], E)), x], dim=-1)  # the stream's history starts as zeros
    refs = [s.reference(xp[..., i * H: i * H + W + E]) for i in range(start, n_windows)]
    return torch.stack(refs, dim=1)


def self_check(s: "Stream", seed: int = 0) -> None:
    """Raise :class:`ConversionError` if the stream disagrees with the model on a random probe."""
    if s.edge == "stale" or getattr(s, "_misaligned", False):
        return
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    period = s.clock.period
    if s.spec is None:
        rf = int(max(p.rf for p in s.plan.nodes if p.temporal))
        n = min(max(3 * period, rf + 2 * period, 32), 8192)
        n = -(-n // period) * period  # strided encoder/decoder pairs fit lengths that are multiples only
    else:
        n = s.spec.window + s.spec.hop  # two windows: the first, and one whose history is the stream's

    def probe(length: int) -> Tensor:
        # the conversion's batch (two rows when the model takes them): at one row, squeeze() and friends
        # also drop the batch axis, so the model's own output would not be comparable
        return torch.randn((s.plan.input_shape[0], *s.input_frame_shape, length), generator=gen,
                           dtype=torch.float64).to(s.dtype)

    x = probe(n)
    want: Any = None
    with torch.no_grad():
        if s.spec is None:
            try:
                want = s.model(x)
            except Exception:  # the model itself needs other lengths: probe with the example's
                x = probe(s.plan.input_shape[-1])
                want = s.model(x)
        lengths = _chunks(rng, x.shape[-1], period)
        head_flops = [0]
        if s.spec is not None:  # count the head as the stream runs it (its per-window share of the MACs)
            head = s.program.head

            def counted(feats: Any, env: Any, _head: Any = head) -> Any:
                c = FlopCounterMode(display=False)
                with c:
                    out = _head(feats, env)
                head_flops[0] = max(head_flops[0], int(c.get_total_flops()))
                return out

            s.program.head = counted  # type: ignore[method-assign]
        try:
            got = _run_eager(s, x, lengths)
        except Exception as e:  # a stream that cannot run its own probe is not a stream
            raise ConversionError(f"the converted stream failed on a probe signal ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0] if str(e) else ''}); please report the model") from e
        finally:
            s.program.__dict__.pop("head", None)
        if s.spec is not None:
            counter = FlopCounterMode(display=False)
            with counter:
                want = _window_reference(s, x, 1)  # counted: the MACs of one (extended) window
            if got.shape[1] > 1:
                want = torch.cat([want, _window_reference(s, x, got.shape[1], start=1)], dim=1)
            warn_heavy_head(s, int(counter.get_total_flops()) // 2, head_flops[0] // 2)
    if isinstance(want, Tensor) and got.shape == want.shape:
        scale = max(1.0, float(want.abs().max())) if want.numel() else 1.0
        err = float((got - want).abs().max()) if want.numel() else 0.0
        if err <= RTOL * scale:
            return
        what = f"max |d| = {err:.3g} (scale {scale:.3g})"
    else:
        what = f"output shape {tuple(got.shape)} vs {tuple(want.shape) if isinstance(want, Tensor) else type(want)}"
    node = first_divergence(s, x, lengths)
    where = f"; the first node whose streamed values diverge is {node}" if node else ""
    raise ConversionError(
        f"the converted stream disagrees with the model on a random probe ({what}, chunks "
        f"{lengths[:6]}{'...' if len(lengths) > 6 else ''}){where}. Refusing rather than giving wrong numbers; "
        "please report the model (thinkonce.stream(..., check=False) skips this check)."
    )


def warn_heavy_head(s: "Stream", window_macs: int, head: int) -> None:
    """Warn (:class:`HeavyHeadWarning`) when the head takes more than half of a window's MACs: every
    window recomputes it, so streaming saves little. Names the node that made the head start there."""
    from .convert import _source_line

    if window_macs <= 0 or not s.plan.head_nodes:
        return
    if head <= window_macs / 2:
        return
    first = next((p for p in s.plan.head_nodes if p.reason), s.plan.head_nodes[0])
    n = first.node
    src = _source_line(n)
    where = f"node '{n.name}'" + (f" (module '{n.target}')" if n.op == "call_module" else "") + (f" at {src}" if src else "")
    warnings.warn(
        f"the window head takes {head:,} of {window_macs:,} MACs per window ({100 * head / window_macs:.0f} %), "
        f"recomputed for every window: streaming saves little. The head starts at {where}"
        f"{' (' + first.reason + ')' if first.reason else ''}. Layers after it run on the whole window "
        "buffer; move time-mixing operations (global pooling, flatten over time, attention) as late as possible.",
        HeavyHeadWarning, stacklevel=4)


def first_divergence(s: "Stream", x: Tensor, lengths: list[int]) -> str | None:
    """Stream ``x`` through the trunk keeping every value, and compare each with the offline graph."""
    prog, plan = s.program, s.plan
    if s.spec is not None:
        x = torch.cat([x.new_zeros((*x.shape[:-1], s._preroll_len)), x], dim=-1)
        lengths = [s._preroll_len, *lengths]
    temporal = [p for p in prog.trunk if p.temporal and p.kind != "input" and p.tdim is not None]
    pieces: dict[fx.Node, list[Tensor]] = {p.node: [] for p in temporal}
    st = prog.init_state(x.shape[0], s._like)
    pos = 0
    with torch.no_grad():
        try:
            for c in lengths:
                env, st = prog.run(x[..., pos:pos + c], st, "step")
                pos += c
                for p in temporal:
                    v = env.get(p.node)
                    if isinstance(v, Tensor):
                        pieces[p.node].append(v)
            env, _ = prog.run(x[..., :0], st, "flush")
            for p in temporal:
                v = env.get(p.node)
                if isinstance(v, Tensor):
                    pieces[p.node].append(v)
            offline = _offline_values(plan.gm, x, set(pieces))
        except Exception:
            return None
    for p in temporal:
        got, want = pieces[p.node], offline.get(p.node)
        if not got or not isinstance(want, Tensor):
            continue
        g = torch.cat(got, dim=p.tdim)
        if want.dim() != g.dim():  # the offline value has another rank (an axis squeezed away): not comparable
            continue
        k = min(g.shape[p.tdim], want.shape[p.tdim])
        if k == 0 or g.shape[:p.tdim] != want.shape[:p.tdim]:
            continue
        a, b = g.narrow(p.tdim, 0, k), want.narrow(p.tdim, 0, k)
        scale = max(1.0, float(b.abs().max()))
        if a.shape != b.shape or float((a - b).abs().max()) > RTOL * scale:
            mod = f", module '{p.node.target}'" if p.node.op == "call_module" else ""
            return f"'{p.node.name}' ({p.kind}{mod}{', op ' + p.op.kind if p.op is not None else ''})"
    return None


def _offline_values(gm: fx.GraphModule, x: Tensor, keep: set[fx.Node]) -> dict[fx.Node, Any]:
    vals: dict[fx.Node, Any] = {}

    class Keep(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            out = super().run_node(n)
            if n in keep:
                vals[n] = out
            return out

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Keep(gm).run(x)
    return vals
