"""Shared pytest hooks: the zoo summary line (tests/test_zoo.py), and hypothesis' profile.

The property tests draw the same examples on every run (``derandomize``), so that CI judges the code,
not the luck of a draw; set ``THINKONCE_HYPOTHESIS=explore`` to draw new random examples (what a
developer should do after changing the converter, and what found the bugs these tests now pin).
"""

from __future__ import annotations

import json
import os

from hypothesis import settings

settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile("explore" if os.environ.get("THINKONCE_HYPOTHESIS") == "explore" else "deterministic")

_ZOO: dict = {}  # zoo entry name -> outcome record (filled from the test reports)


def pytest_runtest_logreport(report) -> None:
    """Collect the zoo outcomes from the reports: runs in the xdist controller too (user_properties are
    sent with each report), so the summary works with and without ``-n``."""
    if report.when != "call":
        return
    for key, value in getattr(report, "user_properties", ()):
        if key == "zoo":
            try:
                rec = json.loads(value)
            except (TypeError, ValueError):
                continue
            rec["passed"] = report.passed
            _ZOO[rec["name"]] = rec



def _short(reason: str) -> str:
    try:
        from zoo.harness import short_reason
    except ImportError:  # the zoo is not importable: fall back to the first line
        return reason.split("\n", 1)[0][:70]
    return short_reason(reason)


def zoo_summary(records: dict) -> str | None:
    if not records:
        return None
    recs = list(records.values())
    ok = [r for r in recs if r["outcome"] == "stream"]
    cont = sum(1 for r in ok if r["mode"] == "continuous")
    line = f"zoo: {len(ok)}/{len(recs)} stream as published (continuous {cont}, window {len(ok) - cont})"
    wrong = [r for r in recs if r["outcome"] == "wrong"]
    if wrong:
        line += f"; {len(wrong)} WRONG NUMBERS: " + ", ".join(f"{r['name']} ({_short(r['reason'])})" for r in wrong)
    rest = [r for r in recs if r["outcome"] not in ("stream", "wrong")]
    if rest:
        line += f"; {len(rest)} not: " + ", ".join(
            f"{r['name']} ({r['outcome']}: {_short(r['reason'])})" for r in sorted(rest, key=lambda r: r["name"]))
    return line


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    line = zoo_summary(_ZOO)
    if line:
        terminalreporter.write_line(line)
