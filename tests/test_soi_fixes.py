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


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
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


# ---------------------------------------------------------------------------- ONNX export of precompute
def _ort_session(path: str):
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return sess, [i.name for i in sess.get_inputs()], [o.name for o in sess.get_outputs()]


def test_export_onnx_of_an_fp_stream_runs_precompute_then_step_like_eager(tmp_path) -> None:
    """From a cold state over many steps, with precompute after some of them (an irregular pattern),
    onnxruntime's step and precompute graphs give eager's outputs and states step by step. Chunks of 3
    samples (not a multiple of the S-CC's period 2): the phases cycle, each with and without precompute."""
    import numpy as np
    from safetensors.numpy import load_file

    from test_soi_props import Level

    chunk = 3
    torch.manual_seed(3)
    model = SoiNet([Level(((2, 1),), 2, 1, True, "linear", "add")], (), 1).eval()
    s = to.stream(model, example_input=torch.zeros(1, 1, 64), check=False)  # compared with eager below
    info = s.export_onnx(str(tmp_path / "fp.onnx"), chunk=chunk)
    assert info["precompute"] == str(tmp_path / "fp.precompute.onnx") and info["key_columns"]
    step, step_in, step_out = _ort_session(str(tmp_path / "fp.onnx"))
    pre, pre_in, pre_out = _ort_session(info["precompute"])
    pattern = [True, False, True, True, False, False, True]
    x = torch.randn(2, 1, chunk * 30)
    st = s.init_state(2)
    ost = {k: np.repeat(v, 2, 0) for k, v in load_file(info["init_state"]).items()}
    moved = 0
    for i, pos in enumerate(range(0, x.shape[-1], chunk)):
        xc = x[..., pos:pos + chunk]
        y, st = s.step(xc, st)
        feed = {"x": xc.numpy()} if "x" in step_in else {}
        feed.update({nm: ost[nm[6:]] for nm in step_in if nm.startswith("state.")})
        res = dict(zip(step_out, step.run(None, feed)))
        np.testing.assert_allclose(res["y"], y.numpy(), rtol=1e-5, atol=1e-5)
        ost.update({k[10:]: v for k, v in res.items() if k.startswith("new_state.")})
        if pattern[i % len(pattern)]:
            ahead = s.precompute(st)
            moved += ahead["@n"].tolist() != st["@n"].tolist()
            st = ahead
            res = dict(zip(pre_out, pre.run(None, {nm: ost[nm[6:]] for nm in pre_in})))
            ost.update({k[10:]: v for k, v in res.items() if k.startswith("new_state.")})
        for k, v in st.items():
            np.testing.assert_allclose(ost[k], v.numpy(), rtol=1e-5, atol=1e-5, err_msg=k)
    assert moved > 5  # precompute really ran the deep path ahead on many steps


# ---------------------------------------------------------------------------- clock check after an S-CC
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(levels=fp_levels(), chunks=st.lists(st.integers(0, 3), min_size=1, max_size=3),
       pre=st.lists(st.booleans(), min_size=1, max_size=4), data=st.data())
def test_clock_check_predicts_the_counters_downstream_of_a_shifted_scc(levels, chunks, pre, data) -> None:
    """Every counter of a state, also those the deep path of a shifted S-CC moves, is predicted from the
    clock (the zero histories some schedule of steps, empty steps included, and precomputes reaches):
    states the stream made pass, one counter off is refused."""
    from thinkonce.errors import StreamInputError

    model = SoiNet(levels, (), 1).eval()
    s = to.stream(model, example_input=torch.zeros(1, 1, 64), check=False)
    free = sorted(s._free_cols)
    assert free  # counters downstream of the shifted S-CC
    state = s.init_state(2)
    for i in range(16):
        _, state = s.step(torch.randn(2, 1, chunks[i % len(chunks)]), state)
        if pre[i % len(pre)]:
            state = s.precompute(state)
        s.check_state(state)
    j = data.draw(st.sampled_from(free))
    t = int(state["@t"][0])
    admissible = {tuple(s._counters_at(t)), *s._precomputed_rows(t)}
    bad = dict(state)
    bad["@n"] = state["@n"].clone()
    for d in (1, 2, 3):  # one counter off, and not by chance another admissible row
        bad["@n"][:, j] = state["@n"][:, j] + d
        if tuple(bad["@n"][0].tolist()) not in admissible:
            break
    with pytest.raises(StreamInputError, match="does not match the clock"):
        s.step(torch.randn(2, 1, 1), bad)


# ---------------------------------------------------------------------------- channel inference
@pytest.mark.parametrize("mode", ["pp", "fp"])
def test_channels_are_inferred_on_apply_models(mode: str) -> None:
    """An S-CC as the first layer of a ``soi.apply`` model is one node of the trace (its own forward
    is not traced through), so the signal's channels are its in_channels and the stream needs no
    example input."""
    import thinkonce.soi as soi
    from test_soi import UNet
    from test_soi_props import stream_all
    from thinkonce.stream.stream import _infer_channels

    torch.manual_seed(7)
    base = UNet().eval()
    for at in (["e1"], ["e2"], ["e1", "e3"]):
        model = soi.apply(base, at=at, mode=mode).eval()
        assert _infer_channels(model) == 2, at
    model = soi.apply(base, at=["e1"], mode=mode).eval()
    s = to.stream(model, check=False)
    assert s.input_frame_shape == (2,)
    x = torch.randn(1, 2, 37)
    with torch.no_grad():
        assert_close(stream_all(s, x, [2, 3]), model(x))
