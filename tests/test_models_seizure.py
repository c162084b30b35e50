"""Tests of the StreamiNNC seizure reference networks (EEG and accelerometer)."""

from __future__ import annotations

import pytest
import torch
import torch.fx
from torch import nn

from thinkonce.models.acc_seizure import ACCSeizureNet, acc_seizure
from thinkonce.models.eeg_seizure import EEGSeizureNet, eeg_seizure


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_eeg_output_shape_and_structure() -> None:
    model = eeg_seizure().eval()
    assert isinstance(model, EEGSeizureNet)
    x = torch.randn(3, 18, 1024)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (3, 2) and y.dtype == torch.float32
    convs = [m for m in model.features if isinstance(m, nn.Conv1d)]
    pools = [m for m in model.features if isinstance(m, nn.MaxPool1d)]
    assert len(convs) == 3 and len(pools) == 3
    assert all(c.kernel_size == (3,) and c.padding == (1,) and c.out_channels == 128 for c in convs)
    assert all(p.kernel_size == 4 for p in pools)
    head_conv = model.head[0]
    assert head_conv.kernel_size == (16,) and head_conv.out_channels == 100
    assert model.head[2].out_channels == 2 and model.head[2].kernel_size == (1,)
    assert (model.window, model.hop, model.fs) == (1024, 256, 256.0)


def test_eeg_constructor_arguments() -> None:
    model = eeg_seizure(in_channels=4, n_filters=16, head_channels=8, window=512).eval()
    assert model.head_kernel == 8
    with torch.no_grad():
        assert model(torch.randn(2, 4, 512)).shape == (2, 2)
    with pytest.raises(ValueError):
        EEGSeizureNet(window=1000)  # not a multiple of 4**3
    with pytest.raises(ValueError):
        EEGSeizureNet(in_channels=0)


def test_acc_output_shape_and_structure() -> None:
    model = acc_seizure().eval()
    assert isinstance(model, ACCSeizureNet)
    with torch.no_grad():
        y = model(torch.randn(5, 4, 960))
    assert y.shape == (5, 2) and y.dtype == torch.float32
    convs = [m for m in model.features if isinstance(m, nn.Conv1d)]
    assert [c.out_channels for c in convs] == [8, 16, 32, 64, 128, 256]
    assert all(c.kernel_size == (3,) and c.padding == "same" for c in convs)
    assert not any(isinstance(m, (nn.MaxPool1d, nn.AvgPool1d)) for m in model.modules())
    assert [m.out_features for m in model.head if isinstance(m, nn.Linear)] == [64, 2]
    assert (model.window, model.hop, model.fs) == (960, 160, 32.0)
    with torch.no_grad():  # global average pooling accepts other lengths
        assert model(torch.randn(1, 4, 160)).shape == (1, 2)


def test_acc_constructor_arguments() -> None:
    model = acc_seizure(in_channels=3, filters=(4, 8), hidden=16, n_classes=3).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 100)).shape == (2, 3)
    with pytest.raises(ValueError):
        ACCSeizureNet(filters=())
    with pytest.raises(ValueError):
        ACCSeizureNet(kernel_size=4)
    with pytest.raises(ValueError):
        ACCSeizureNet(filters=(8, 0))


@pytest.mark.parametrize(
    ("factory", "shape"), [(eeg_seizure, (2, 18, 1024)), (acc_seizure, (2, 4, 960))]
)
def test_fx_traceable(factory, shape) -> None:
    model = factory().eval()
    traced = torch.fx.symbolic_trace(model)
    ops = {n.op for n in traced.graph.nodes}
    assert ops <= {"placeholder", "call_module", "call_function", "call_method", "output"}
    x = torch.randn(*shape)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x))


@pytest.mark.parametrize("factory", [eeg_seizure, acc_seizure])
def test_train_step_runs(factory) -> None:
    model = factory()
    x = torch.randn(4, model.in_channels, model.window)
    loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
