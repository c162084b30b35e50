"""Continuous mode: concatenated steps + flush equal the offline model, for any chunking."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import thinkonce as to
from nets import conv_block, random_net_case, upsampling_block

TOL = 1e-5  # relative to the output scale (float32)


def _stream_all(s: to.Stream, x: torch.Tensor, chunks: list[int]) -> torch.Tensor:
    state = s.init_state(x.shape[0])
    outs, pos, i = [], 0, 0
    while pos < x.shape[-1]:
        c = chunks[i % len(chunks)]
        y, state = s.step(x[..., pos : pos + c], state)
        outs.append(y)
        pos += c
        i += 1
    y, _ = s.flush(state)
    outs.append(y)
    return torch.cat(outs, dim=-1)


def _assert_close(y: torch.Tensor, ref: torch.Tensor) -> None:
    assert y.shape == ref.shape, (y.shape, ref.shape)
    scale = max(1.0, float(ref.abs().max()))
    err = float((y - ref).abs().max()) if ref.numel() else 0.0
    assert err <= TOL * scale, f"max abs error {err} > {TOL} x scale {scale}"


@st.composite
def net_and_signal(draw):
    blocks = draw(st.lists(conv_block(), min_size=1, max_size=6))
    if draw(st.booleans()):
        blocks.insert(draw(st.integers(0, len(blocks))), draw(upsampling_block()))
    c_in = draw(st.integers(1, 3))
    length = draw(st.integers(120, 260))
    chunks = draw(st.lists(st.integers(0, 37), min_size=1, max_size=12).filter(lambda c: sum(c) > 0))
    seed = draw(st.integers(0, 2**16))
    return blocks, c_in, length, chunks, seed


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net_and_signal())
def test_random_stacks_exact_under_random_chunkings(case) -> None:
    blocks, c_in, length, chunks, seed = case
    case = random_net_case(blocks, c_in, seed, 2, length)
    if case is None:
        return  # the drawn stack does not fit this length offline either
    model, x, ref = case
    s = to.stream(model, example_input=x)
    _assert_close(_stream_all(s, x, chunks), ref)


def test_delay_reports_same_padding_lookahead() -> None:
    model = torch.nn.Sequential(torch.nn.Conv1d(1, 1, 5, padding=2), torch.nn.Conv1d(1, 1, 3, padding=1)).eval()
    s = to.stream(model, example_input=torch.zeros(1, 1, 64))
    assert s.delay == 3  # 2 + 1 frames of look-ahead at rate 1
    causal = torch.nn.Sequential(torch.nn.ConstantPad1d((4, 0), 0.0), torch.nn.Conv1d(1, 1, 5)).eval()
    assert to.stream(causal, example_input=torch.zeros(1, 1, 64)).delay == 0


def test_chunk_of_one_sample_and_empty_chunks() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv1d(2, 4, 3, stride=2, padding=1), torch.nn.ReLU(), torch.nn.MaxPool1d(3, 2, 1),
        torch.nn.ConvTranspose1d(4, 2, 4, stride=2, padding=1),
    ).eval()
    x = torch.randn(1, 2, 97)
    s = to.stream(model, example_input=x)
    _assert_close(_stream_all(s, x, [1, 0, 1, 0, 0]), model(x).detach())
