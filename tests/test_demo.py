"""The main job: `thinkonce demo` runs offline, prints the table and writes the plot."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from thinkonce.cli import app
from thinkonce.demo import run_demo


def test_demo_prints_the_table_and_writes_the_plot(tmp_path) -> None:
    plot = tmp_path / "hr.png"
    r = CliRunner().invoke(app, ["demo", "--seconds", "40", "--plot", str(plot)], terminal_width=120)
    assert r.exit_code == 0, r.output
    for text in ("MACs per hop", "median time per hop", "HR MAE", "NRMSE", "ground truth"):
        assert text in r.output
    assert plot.stat().st_size > 10_000


def test_demo_stream_is_exact_against_signal_padding_and_cheaper() -> None:
    res = run_demo(40.0, seed=3)
    assert res.macs_normal / res.macs_stream > 3.5
    assert len(res.hr_stream) == len(res.hr_normal) == len(res.hr_true) == (40 * 32 - 256) // 64 + 1
    assert res.nrmse < 0.1  # signal-padded model: the stream stays close to normal inference


def test_demo_refuses_a_recording_shorter_than_three_windows() -> None:
    with pytest.raises(ValueError, match="at least 12 s"):
        run_demo(5.0)
    r = CliRunner().invoke(app, ["demo", "--seconds", "5"])
    assert r.exit_code != 0 and "at least 12 s" in r.output
