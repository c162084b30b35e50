"""Convert one zoo entry and check the stream's numbers (shared by tests/test_zoo.py and report.py)."""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

import thinkonce as to

from . import ZooEntry

TOL = 1e-4  # max |stream - reference| <= TOL * max(1, output scale)
N_HOPS = 4  # window mode: windows beyond the first in the test signal


@dataclass
class Outcome:
    name: str
    mode: str
    outcome: str  # "stream" | "refuse" | "crash" | "wrong" | "broken"
    reason: str = ""
    max_err: float = 0.0
    scale: float = 0.0
    delay: int | None = None
    chunkings: list[list[int]] = field(default_factory=list)
    stream: Any = None  # the converted Stream (not serialised)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("stream",)}

    @property
    def expect_key(self) -> str:
        return "stream" if self.outcome == "stream" else f"{self.outcome}:{self.reason}"


def short_reason(reason: str, n: int = 70) -> str:
    """The gist of a refusal: the node (and module type) plus the reason, without the hints."""
    import re

    msg = reason.split(": ", 1)[-1] if re.match(r"^\w+(Error|Exception): ", reason) else reason
    m = re.match(r"cannot stream node '([^']+)'", msg)
    if m:
        head = msg.split(". ", 1)[0]
        typ = re.search(r"type (\w+)\)", head) or re.search(r"call_\w+ ([\w.]+)", head)
        why = head.rsplit(": ", 1)[-1]
        t = typ.group(1).rsplit(".", 1)[-1] if typ else ""
        msg = f"{m.group(1)}{f' [{t}]' if t and t != m.group(1) else ''}: {why}"
    else:
        msg = msg.split("\n", 1)[0].split(". ", 1)[0]
    return msg if len(msg) <= n else msg[: n - 3] + "..."


def seed_all(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _signal(entry: ZooEntry, n: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, *entry.input_shape, n)


def _chunkings(rng: random.Random, n: int, period: int) -> list[list[int]]:
    """Several chunkings: random lengths around the stride period (with 0 and 1 sample chunks), random
    long chunks, and the whole signal at once."""
    small = [rng.choice([0, 1, 2, 3, period, period + 1, 2 * period - 1, rng.randint(1, 3 * period)]) for _ in range(24)]
    if sum(small) == 0:
        small.append(1)
    mean_small = max(1, sum(small) // len(small))
    # keep the step count moderate: at most ~300 steps
    if n // mean_small > 300:
        small = [c + n // 300 for c in small]
    large = [rng.randint(max(1, n // 8), max(2, n // 3)) for _ in range(6)]
    return [small, large, [n]]


def _extended_reference(s: to.Stream, x: torch.Tensor, n_windows: int) -> torch.Tensor:
    """Every window run on its left-extended input (zeros before the signal start), as tests/test_window.py."""
    E, W, H = s.extension, s.window, s.hop
    xp = torch.cat([x.new_zeros(*x.shape[:-1], E), x], dim=-1)
    return torch.stack([s.reference(xp[..., k * H : k * H + W + E]) for k in range(n_windows)], dim=1)


def evaluate(entry: ZooEntry, seed: int = 0) -> Outcome:
    seed_all(seed)
    model = entry.build(seed)
    length = entry.window if entry.mode == "window" else entry.length
    example = torch.zeros(1, *entry.input_shape, length)
    out = Outcome(entry.name, entry.mode, "stream")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = to.stream(model, window=entry.window, hop=entry.hop, example_input=example)
    except to.ThinkonceError as e:
        out.outcome, out.reason = "refuse", f"{type(e).__name__}: {e}"
        return out
    except Exception as e:  # a converter bug: it should refuse with a ThinkonceError
        out.outcome, out.reason = "crash", f"{type(e).__name__}: {e}"
        return out
    out.stream = s
    rng = random.Random(seed)
    try:
        if entry.mode == "continuous":
            x = _signal(entry, entry.length)
            with torch.no_grad():
                ref = model(x)
            out.delay = s.delay
            checks = [(c, ref) for c in _chunkings(rng, x.shape[-1], max(16, s._period))]
            runs = [(c, s.run(x, chunk=c)) for c, _ in checks]
        else:
            W, H = entry.window, entry.hop
            x = _signal(entry, W + N_HOPS * H + rng.randint(0, H - 1))
            n_win = (x.shape[-1] - W) // H + 1
            ref = _extended_reference(s, x, n_win)
            chunks = _chunkings(rng, x.shape[-1], H)
            runs = [(c, s.run(x, chunk=c)) for c in chunks]
    except Exception as e:
        out.outcome, out.reason = "broken", f"{type(e).__name__}: {e}"
        return out
    out.scale = float(ref.abs().max())
    tol = TOL * max(1.0, out.scale)
    for c, y in runs:
        out.chunkings.append(c)
        if tuple(y.shape) != tuple(ref.shape):
            out.outcome = "wrong"
            out.reason = f"output shape {tuple(y.shape)} != reference {tuple(ref.shape)} (chunks {c[:8]}...)"
            return out
        err = float((y - ref).abs().max()) if y.numel() else 0.0
        if not err <= tol:  # NaN fails too
            out.outcome = "wrong"
            out.max_err = err
            out.reason = f"max |d| = {err:.3g} > {tol:.3g} (chunks {c[:8]}...)"
            return out
        out.max_err = max(out.max_err, err)
    return out
