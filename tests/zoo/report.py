"""Print the zoo as a table: model, mode, outcome, reason and, for streams, MACs per hop vs per window.

    python -m tests.zoo.report          (from the repository root)
    python tests/zoo/report.py [NAME ...]
"""

from __future__ import annotations

import os
import sys
import warnings

if __package__ in (None, ""):  # run as a script: make tests/ importable and load the package as `zoo`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "zoo"
    import zoo  # noqa: F401

import torch
from rich.console import Console
from rich.table import Table

import thinkonce as to

from . import ZOO, ZooEntry
from .harness import Outcome, evaluate, short_reason

SEED = 1234


def macs(entry: ZooEntry, out: Outcome) -> tuple[str, str, str]:
    """(MACs of one stream step, MACs of the offline model on the same span, ratio)."""
    s = out.stream
    if s is None:
        return "", "", ""
    model = entry.build(SEED)
    with torch.no_grad():
        if entry.mode == "window":
            W, H = entry.window, entry.hop
            st = s.init_state(1)
            _, st = s.step(torch.randn(1, *entry.input_shape, W), st)
            step = to.count_macs(s, torch.randn(1, *entry.input_shape, H), st)
            full = to.count_macs(model, torch.randn(1, *entry.input_shape, W))
            return f"{step:,} / hop {H}", f"{full:,} / window {W}", f"{full / max(step, 1):.1f}x"
        P = max(1, int(s._period))
        n = max(P, 16 // P * P)
        st = s.init_state(1)
        _, st = s.step(torch.randn(1, *entry.input_shape, entry.length), st)
        step = to.count_macs(s, torch.randn(1, *entry.input_shape, n), st)
        L = entry.length
        full = to.count_macs(model, torch.randn(1, *entry.input_shape, L))
        per = full * n / L
        return f"{step:,} / {n} samples", f"{per:,.0f} (model, same span)", f"{per / max(step, 1):.1f}x"


def main(argv: list[str]) -> int:
    warnings.simplefilter("ignore")
    names = set(argv)
    table = Table(title="thinkonce zoo: published time-axis CNNs as published")
    for col in ("model", "paper", "mode", "outcome", "reason / max |d|", "MACs per step", "MACs offline", "saving"):
        table.add_column(col, overflow="fold")
    n_ok = 0
    for e in ZOO:
        if names and e.name not in names:
            continue
        out = evaluate(e, seed=SEED)
        try:
            m = macs(e, out)
        except Exception as ex:  # counting is informative only
            m = (f"({type(ex).__name__})", "", "")
        mode = e.mode if e.mode == "continuous" else f"window {e.window}/{e.hop}"
        if out.outcome == "stream":
            n_ok += 1
            detail = f"max |d| {out.max_err:.1e} (scale {out.scale:.2g})" + (f", delay {out.delay}" if out.delay else "")
            style = "green"
        else:
            detail = f"{out.reason.split(':', 1)[0]}: {short_reason(out.reason, 160)}"
            style = "red bold" if out.outcome in ("wrong", "broken", "crash") else "yellow"
        flag = "" if out.expect_key.startswith(e.expect.split(":", 1)[0]) else " (!= expect)"
        table.add_row(e.name, e.paper, mode, f"[{style}]{out.outcome}{flag}[/]", detail, *m)
    Console(width=200).print(table)
    print(f"{n_ok} of {len(names) or len(ZOO)} stream as published")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
