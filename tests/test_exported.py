"""Models given as ATen graphs (torch.export programs, TorchScript modules) stream like the nn.Module."""

from __future__ import annotations

import io
import logging
import warnings

import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings

import thinkonce as to
from nets import RandomNet, stack_case
from thinkonce.models import acc_seizure, eeg_seizure, ppg_hr
from thinkonce.stream.exported import is_aten_graph, lift_aten_graph

logging.getLogger("torch").setLevel(logging.ERROR)  # export's notes on specialised batch dims

TOL = 1e-5


def _script(model: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """A TorchScript archive as a user would ship it: traced, saved, loaded back."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (example,), check_trace=False)
    buf = io.BytesIO()
    torch.jit.save(traced, buf)
    buf.seek(0)
    return torch.jit.load(buf)


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    scale = max(1.0, float(b.abs().max())) if b.numel() else 1.0
    assert float((a - b).abs().max() if b.numel() else 0.0) <= TOL * scale


@pytest.mark.parametrize("form", ["export", "script"])
@pytest.mark.parametrize("name", ["ppg", "eeg", "acc"])
def test_reference_nets_stream_identically_from_exported_forms(name: str, form: str) -> None:
    torch.manual_seed(0)
    model, c, window, hop = {
        "ppg": (ppg_hr(pretrained=True, padding="signal"), 1, 256, 64),
        "eeg": (eeg_seizure(), 18, 1024, 256),
        "acc": (acc_seizure(), 4, 960, 160),
    }[name]
    model.eval()
    example = torch.randn(1, c, window)
    other = torch.export.export(model, (example,)) if form == "export" else _script(model, example)
    want = to.stream(model, window=window, hop=hop)
    got = to.stream(other, window=window, hop=hop)
    x = torch.randn(1, c, window + 3 * hop + 5)
    _close(got.run(x, chunk=[hop // 2, hop, 3]), want.run(x, chunk=hop))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stack_case(["export", "script"]))
def test_random_exported_stacks_exact_in_continuous_mode(case) -> None:
    blocks, c_in, seed, form = case
    torch.manual_seed(seed)
    model = RandomNet(blocks, c_in).eval()
    example = torch.zeros(1, c_in, 64)
    x = torch.randn(1, c_in, 140)
    try:
        with torch.no_grad():
            ref = model(x)
            model(example)
    except RuntimeError:
        return  # the drawn stack does not fit these lengths offline either
    other = torch.export.export(model, (example,)) if form == "export" else _script(model, example)
    s = to.stream(other, example_input=example)
    _close(s.run(x, chunk=[3, 8, 1]), ref)


def test_lift_turns_aten_layers_into_modules() -> None:
    model = nn.Sequential(nn.Conv1d(2, 4, 3, dilation=2), nn.BatchNorm1d(4), nn.ReLU(), nn.MaxPool1d(2)).eval()
    example = torch.randn(1, 2, 32)
    gm = torch.export.export(model, (example,)).module()
    assert is_aten_graph(gm)
    lifted = lift_aten_graph(gm, example)
    kinds = {type(m) for m in lifted.modules()}
    assert {nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d} <= kinds
    assert lifted.lifted_conv_1.dilation == (2,)
    torch.testing.assert_close(lifted(example), model(example))


def test_exported_unknown_temporal_op_is_named_in_the_error() -> None:
    class Cum(nn.Module):
        def forward(self, x):
            return torch.cumsum(torch.relu(x), dim=-1)

    ep = torch.export.export(Cum().eval(), (torch.randn(1, 2, 16),))
    with pytest.raises(to.UnsupportedNodeError, match="cumsum"):
        to.stream(ep)


def test_exported_program_window_must_match_its_static_length() -> None:
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.AdaptiveAvgPool1d(1), nn.Flatten()).eval()
    ep = torch.export.export(model, (torch.randn(1, 1, 64),))
    with pytest.raises(to.ThinkonceError, match="exported for 64 samples"):
        to.stream(ep, window=32, hop=8)
    s = to.stream(ep, window=64, hop=8)
    assert s.window == 64


def test_analyze_and_verify_take_an_exported_program() -> None:
    torch.manual_seed(0)
    model = eeg_seizure().eval()
    ep = torch.export.export(model, (torch.randn(1, 18, 1024),))
    a_ep, a_m = to.analyze(ep, 1024, fs=256.0), to.analyze(model, 1024, fs=256.0)
    assert [(la.receptive_field, round(la.pad_share, 6)) for la in a_ep.layers] == [
        (la.receptive_field, round(la.pad_share, 6)) for la in a_m.layers
    ]
    assert a_ep.allowed_hops == a_m.allowed_hops
    x = torch.randn(18, 1024 + 4 * 256)
    r_ep = to.verify(ep, to.stream(ep, window=1024, hop=256), x)
    r_m = to.verify(model, to.stream(model, window=1024, hop=256), x)
    assert abs(r_ep.nrmse - r_m.nrmse) < 1e-6
