"""The DESIGN.md reference networks stream exactly and a hop costs close to the ideal MACs."""

from __future__ import annotations

import pytest
import torch

import thinkonce as to
from thinkonce.measure import head_macs, ideal_step_macs
from thinkonce.models import acc_seizure, eeg_seizure, ppg_hr

NETS = {
    "ppg_hr": (lambda: ppg_hr(pretrained=True), 1, 256, 64),
    "eeg_seizure": (eeg_seizure, 18, 1024, 256),
    "acc_seizure": (acc_seizure, 4, 960, 160),
}


@pytest.mark.parametrize("name", list(NETS))
def test_reference_net_window_stream(name: str) -> None:
    factory, c, W, H = NETS[name]
    torch.manual_seed(0)
    model = factory().eval()
    s = to.stream(model, window=W, hop=H)
    x = torch.randn(2, c, W + 3 * H)
    y = s.run(x)
    E = s.extension
    xp = torch.cat([x.new_zeros(2, c, E), x], dim=-1)
    ref = torch.stack([s.reference(xp[..., k * H : k * H + W + E]) for k in range(y.shape[1])], dim=1)
    scale = max(1.0, float(ref.abs().max()))
    assert float((y - ref).abs().max()) <= 1e-5 * scale

    st = s.init_state(1)
    _, st = s.step(x[:1, :, :W], st)
    step = to.count_macs(s, x[:1, :, W : W + H], st)
    ideal = ideal_step_macs(s, model)
    assert 0 < head_macs(s) < ideal
    assert ideal <= step <= 1.10 * ideal, (name, step, ideal)
