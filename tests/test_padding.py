"""Signal padding: a model trained through SignalPadded streams exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import thinkonce as to
from thinkonce.stream.padding import SignalPadded, extended_windows


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(1, 6, 5, padding=2)
        self.c2 = nn.Conv1d(6, 6, 3, padding=1, dilation=1)
        self.pool = nn.MaxPool1d(4)
        self.c3 = nn.Conv1d(6, 8, 3, padding="same")
        self.fc = nn.Linear(8 * 16, 2)

    def forward(self, x):
        h = self.pool(F.relu(self.c2(F.relu(self.c1(x)))))
        return self.fc(torch.flatten(F.relu(self.c3(h)), 1))


def test_extended_windows_layout() -> None:
    x = np.arange(20, dtype=np.float32)[None]
    w = extended_windows(x, window=8, hop=4, extension=4)
    assert w.shape == (4, 1, 12)
    assert torch.equal(w[0, 0], torch.tensor([0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7], dtype=torch.float32))
    assert torch.equal(w[2, 0, 4:], torch.arange(8, 16, dtype=torch.float32))
    assert torch.equal(w[2, 0, :4], torch.arange(4, 8, dtype=torch.float32))


def test_signal_padded_training_then_exact_stream() -> None:
    torch.manual_seed(0)
    model = Net()
    wrapped = SignalPadded(model, window=64)
    assert wrapped.extension % 4 == 0 and wrapped.extension >= 2 + 1 + 4 * 1
    opt = torch.optim.SGD(wrapped.parameters(), lr=0.05)
    x = torch.randn(1, 640)
    windows = extended_windows(x, 64, 16, wrapped.extension)
    target = torch.randn(windows.shape[0], 2)
    first = None
    for _ in range(5):  # a few steps of ordinary back-propagation through the wrapper
        loss = F.mse_loss(wrapped(windows), target)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < first  # gradients reach the shared parameters
    model.eval()
    s = to.stream(model, window=64, hop=16)
    y = s.run(x.unsqueeze(0))
    with torch.no_grad():
        ref = wrapped.eval()(extended_windows(x, 64, 16, s.extension))
    torch.testing.assert_close(y[0], ref, rtol=0, atol=1e-5)


def test_extension_must_be_a_period_multiple() -> None:
    with pytest.raises(ValueError, match="multiple of the stride period 4"):
        SignalPadded(Net(), window=64, extension=10)
