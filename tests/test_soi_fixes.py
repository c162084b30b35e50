"""SOI streams in the corners of the stream API: reset after precompute, the clock check downstream of a
shifted S-CC, ONNX export of the precompute, channel inference on ``soi.apply`` models."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import thinkonce as to
from nets import assert_close
from test_soi_props import SoiNet, level


@st.composite
def fp_levels(draw):
    levels = draw(st.lists(level(), min_size=1, max_size=2))
    if not any(lv.fp for lv in levels):
        levels[-1] = draw(level(fp=True))
    return levels


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(levels=fp_levels(), chunks=st.lists(st.integers(1, 4), min_size=1, max_size=4),
       pre=st.lists(st.booleans(), min_size=1, max_size=5), at=st.integers(0, 8),
       rows=st.sampled_from([[1], [0, 2], [0, 1, 2]]), seed=st.integers(0, 2**16))
def test_reset_after_precompute_equals_a_zero_history(levels, chunks, pre, at, rows, seed) -> None:
    """Rows reset in a state after precompute continue exactly as the model on zeros up to the reset,
    then their own input; the other rows as the model on their whole signal."""
    torch.manual_seed(seed)
    model = SoiNet(levels, (), 1).eval()
    x = torch.randn(3, 1, 40)
    with torch.no_grad():
        ref = model(x)
    s = to.stream(model, example_input=x, check=False)  # the test itself compares with the model
    state = s.init_state(3)
    outs: list[torch.Tensor] = []
    pos, i, t_reset, k_reset = 0, 0, None, 0
    while pos < x.shape[-1]:
        c = chunks[i % len(chunks)]
        y, state = s.step(x[..., pos:pos + c], state)
        outs.append(y)
        pos += c
        ahead = s.precompute(state)
        moved = ahead["@n"].tolist() != state["@n"].tolist()  # the deep path really ran ahead
        if t_reset is None and i >= at and moved and pos < x.shape[-1]:
            state = s.reset(ahead, rows)
            t_reset, k_reset = pos, sum(o.shape[-1] for o in outs)
        elif pre[i % len(pre)]:
            state = ahead
        i += 1
    y, _ = s.flush(state)
    got = torch.cat(outs + [y], dim=-1)
    if t_reset is None:  # no step left the deep path with work to run ahead: nothing to reset here
        assert_close(got, ref)
        return
    fresh = torch.cat([torch.zeros(3, 1, t_reset), x[..., t_reset:]], dim=-1)
    with torch.no_grad():
        ref_fresh = model(fresh)
    for r in range(3):
        if r in rows:
            assert_close(got[r, :, k_reset:], ref_fresh[r, :, k_reset:])
        else:
            assert_close(got[r], ref[r])
