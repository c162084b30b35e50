"""The explicit state: replay, save/load, per-row reset, batching of independent streams."""

from __future__ import annotations

import torch
import torch.nn as nn

import thinkonce as to


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(2, 6, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(6, 6, 3, stride=2, dilation=2, padding=2), nn.BatchNorm1d(6),
        nn.ConvTranspose1d(6, 3, 4, stride=2, padding=1),
    ).eval()


def _snapshot(state: dict) -> dict:
    return {k: v.clone() for k, v in state.items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)


def test_step_is_pure_and_replayable() -> None:
    s = to.stream(_net(), example_input=torch.zeros(1, 2, 64))
    st = s.init_state(2)
    x = torch.randn(2, 2, 50)
    _, st = s.step(x[..., :23], st)
    before = _snapshot(st)
    y1, st1 = s.step(x[..., 23:], st)
    y2, st2 = s.step(x[..., 23:], st)
    assert _same(st, before)
    torch.testing.assert_close(y1, y2, rtol=0, atol=0)
    assert _same(st1, st2)


def test_save_load_mid_stream_continues_identically(tmp_path) -> None:
    s = to.stream(_net(), example_input=torch.zeros(1, 2, 64))
    x = torch.randn(3, 2, 120)
    st = s.init_state(3)
    _, st = s.step(x[..., :37], st)
    to.save_state(tmp_path / "s.safetensors", st)
    y_a, st_a = s.step(x[..., 37:], st)
    loaded = to.load_state(tmp_path / "s.safetensors")
    assert _same(loaded, st)
    y_b, st_b = s.step(x[..., 37:], loaded)
    torch.testing.assert_close(y_a, y_b, rtol=0, atol=0)
    torch.testing.assert_close(s.flush(st_a)[0], s.flush(st_b)[0], rtol=0, atol=0)


def test_load_state_refuses_foreign_files(tmp_path) -> None:
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(1)}, str(tmp_path / "x.safetensors"))
    try:
        to.load_state(tmp_path / "x.safetensors")
    except ValueError as e:
        assert "not a thinkonce state" in str(e)
    else:
        raise AssertionError("expected a ValueError")


def test_batch_of_8_equals_8_separate_streams() -> None:
    for kw in ({}, {"window": 64, "hop": 16}):
        model = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.AvgPool1d(4), nn.Conv1d(4, 4, 3, padding=1),
                              nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(4, 2)).eval() if kw else _net()
        s = to.stream(model, example_input=torch.zeros(1, 2, 64), **kw)
        x = torch.randn(8, 2, 150)
        batched = s.run(x, chunk=[16, 5, 27])
        for i in range(8):
            single = s.run(x[i : i + 1], chunk=[16, 5, 27])
            torch.testing.assert_close(batched[i : i + 1], single, rtol=1e-6, atol=1e-6)


def test_reset_row_i_leaves_row_j_untouched() -> None:
    for kw in ({}, {"window": 64, "hop": 16}):
        model = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.AvgPool1d(4), nn.Conv1d(4, 4, 3, padding=1),
                              nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(4, 2)).eval() if kw else _net()
        s = to.stream(model, example_input=torch.zeros(1, 2, 64), **kw)
        x = torch.randn(3, 2, 160)
        st = s.init_state(3)
        _, st = s.step(x[..., :96], st)
        reset = s.reset(st, [1])
        for k in st:
            torch.testing.assert_close(reset[k][[0, 2]], st[k][[0, 2]], rtol=0, atol=0)
        y_r, _ = s.step(x[..., 96:], reset)
        y_o, _ = s.step(x[..., 96:], st)
        torch.testing.assert_close(y_r[[0, 2]], y_o[[0, 2]], rtol=0, atol=0)
        assert not torch.allclose(y_r[1], y_o[1])
        # the reset row behaves as if its history had been zeros
        hist = x.clone()
        hist[1, :, :96] = 0
        y_z, _ = s.step(x[..., 96:], s.step(hist[..., :96], s.init_state(3))[1])
        torch.testing.assert_close(y_r[1], y_z[1], rtol=1e-6, atol=1e-6)


def test_state_is_batch_first_and_bounded() -> None:
    s = to.stream(_net(), example_input=torch.zeros(1, 2, 64))
    st = s.init_state(4)
    for _ in range(10):
        _, st = s.step(torch.randn(4, 2, 33), st)
    assert all(v.shape[0] == 4 for v in st.values())
    # no layer keeps more than its kernel span (a few frames), whatever the signal length
    frames = sum(v.shape[-1] for k, v in st.items() if v.dim() == 3)
    assert frames < 20
    assert to.state_nbytes(st) < 1000
