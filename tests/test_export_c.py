"""Stream.export_c: the generated C99 compiles with gcc -std=c99 and equals the eager stream over
many steps from a cold state (reference networks and a U-Net with transposed convs and skips)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import torch

import thinkonce as to
from nets import SmallUNet as UNet

GCC = shutil.which("gcc") or shutil.which("cc")
pytestmark = pytest.mark.skipif(GCC is None, reason="no C compiler (gcc/cc) on the PATH")

TOL = 1e-5


def _check(s, tmp_path, steps: int, chunk: int | None = None) -> None:
    info = s.export_c(str(tmp_path / "c"), chunk=chunk, check=False)  # this test is the check
    d = tmp_path / "c"
    r = subprocess.run([GCC, "-std=c99", "-O1", "-Wall", "-Wno-unused-variable", "-Wno-unused-function",
                        "-o", str(d / "prog"), str(d / "main.c"), str(d / "tk_model.c"), "-lm"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    n = info["chunk"]
    c = s.input_frame_shape[0]
    torch.manual_seed(5)
    x = torch.randn(1, c, n * steps)
    lines = "\n".join(" ".join(f"{v:.9g}" for v in x[0, :, t].tolist()) for t in range(x.shape[-1]))
    out = subprocess.run([str(d / "prog")], input=lines, capture_output=True, text=True, timeout=120).stdout.splitlines()
    assert len(out) == steps
    st = s.init_state(1)
    seen = 0
    for i in range(steps):
        y, st = s.step(x[..., i * n:(i + 1) * n], st)
        ref = y.reshape(-1).numpy()
        got = np.array([float(v) for v in out[i].split()], dtype=np.float64)
        assert got.shape == ref.shape, (i, got.shape, ref.shape)
        if ref.size:
            scale = max(1.0, float(np.abs(ref).max()))
            assert float(np.abs(got - ref).max()) <= TOL * scale, i
            seen += 1
    assert seen >= steps // 2


def _reference_nets():
    from thinkonce.models import acc_seizure, eeg_seizure, ppg_hr

    return [("ppg", ppg_hr, 256, 64), ("eeg", eeg_seizure, 1024, 256), ("acc", acc_seizure, 960, 160)]


@pytest.mark.parametrize("name,make,window,hop", _reference_nets(), ids=[n[0] for n in _reference_nets()])
def test_reference_nets_exported_c_equals_eager_from_cold(tmp_path, name, make, window, hop) -> None:
    torch.manual_seed(0)
    s = to.stream(make().eval(), window=window, hop=hop, check=False)
    _check(s, tmp_path, steps=window // hop + 5)


@pytest.mark.xfail(strict=True, reason="known bug since the state-contract-v2 merge: the exported warm-up step 2 "
                   "(t=8, first single-frame conv) disagrees with eager (max abs error 0.026); steady-state native "
                   "steps of the same net are exact (test_native.py::test_unet_with_transposed_convs_and_skips)")
def test_unet_exported_c_equals_eager_from_cold(tmp_path) -> None:
    torch.manual_seed(0)
    s = to.stream(UNet().eval(), example_input=torch.zeros(1, 2, 64))
    _check(s, tmp_path, steps=30, chunk=4)


def test_export_c_refuses_rather_than_writing_wrong_code(tmp_path) -> None:
    """The U-Net case above is a known wrong export: export_c's own check must catch it (a
    ConversionError naming the step), not hand out the file."""
    from thinkonce.errors import ConversionError

    torch.manual_seed(0)
    s = to.stream(UNet().eval(), example_input=torch.zeros(1, 2, 64))
    try:
        info = s.export_c(str(tmp_path / "c"), chunk=4)
    except ConversionError as e:
        assert "disagrees with the eager stream at step" in str(e)
    else:  # once the bug is fixed the export passes its check; then it must really equal eager
        assert info["checked"]
        _check(s, tmp_path, steps=30, chunk=4)


def test_cli_export_format_c(tmp_path) -> None:
    from typer.testing import CliRunner

    from thinkonce.cli import app

    out = tmp_path / "ppg_c"
    r = CliRunner().invoke(app, ["export", "ppg_hr", "--format", "c", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "tk_model.c").exists() and (out / "tk_model.h").exists() and (out / "main.c").exists()
    assert "static const float" in (out / "tk_model.c").read_text()
