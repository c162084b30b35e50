"""2-D layers with time last (thinkonce.ops.conv2d): Conv2d / pooling / ConvTranspose2d / Upsample on
(batch, channels, freq, time) stream exactly, continuous and window mode."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import thinkonce as to
from nets import assert_close as _assert_close



@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@st.composite
def block2d(draw, window: bool = False):
    kind = draw(st.sampled_from(["conv", "conv", "same", "pool", "bn", "convT", "up", "sep"]))
    if kind == "conv":
        k = (draw(st.integers(1, 4)), draw(st.integers(1, 5)))
        s = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        p = (draw(st.integers(0, 2)), draw(st.integers(0, 3)))
        mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate"]))
        return ("conv", k, s, d, p, mode)
    if kind == "same":
        return ("same", (draw(st.integers(1, 3)), draw(st.integers(1, 6))), (1, draw(st.integers(1, 2))))
    if kind == "pool":
        k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        s = (draw(st.integers(1, 2)), draw(st.integers(1, 3)))
        p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
        return ("pool", k, s, p, draw(st.booleans()), draw(st.booleans()))  # max?, ceil_mode (max only)
    if kind == "convT":
        k = (draw(st.integers(1, 3)), draw(st.integers(1, 4)))
        s = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        p = (draw(st.integers(0, k[0] - 1)), draw(st.integers(0, k[1] - 1)))
        return ("convT", k, s, p, 0 if window else draw(st.integers(0, s[1] - 1)))
    if kind == "up":
        return ("up", draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    return (kind,)


class Net2d(nn.Module):
    """(batch, freq, time) -> unsqueeze(1) -> 2-D blocks -> [head] ; or (batch, 1, freq, time) input."""

    def __init__(self, blocks: list[tuple], freq: int, width: int = 3, head: str | None = None,
                 unsqueeze: bool = True) -> None:
        super().__init__()
        self.unsqueeze = unsqueeze
        mods: list[nn.Module] = []
        c = 1
        for b in blocks:
            if b[0] == "conv":
                _, k, s, d, p, mode = b
                if mode != "zeros":  # reflect needs padding < size along freq; keep the freq padding small
                    p = (min(p[0], 1), min(p[1], k[1] - 1))
                mods += [nn.Conv2d(c, width, k, stride=s, dilation=d, padding=p, padding_mode=mode), nn.ReLU()]
                c = width
            elif b[0] == "same":
                mods.append(nn.Conv2d(c, width, b[1], padding="same", dilation=b[2]))
                c = width
            elif b[0] == "sep":  # EEGNet's depthwise over all of freq is in "conv"; here a grouped 1 x k conv
                mods.append(nn.Conv2d(c, c, (1, 3), padding=(0, 1), groups=c, bias=False))
            elif b[0] == "pool":
                _, k, s, p, is_max, ceil = b
                mods.append(nn.MaxPool2d(k, s, p, ceil_mode=ceil) if is_max else nn.AvgPool2d(k, s, p))
            elif b[0] == "bn":
                mods.append(nn.BatchNorm2d(c))
            elif b[0] == "convT":
                _, k, s, p, op = b
                mods.append(nn.ConvTranspose2d(c, width, k, stride=s, padding=p, output_padding=(0, op)))
                c = width
            elif b[0] == "up":
                mods.append(nn.Upsample(scale_factor=(b[1], b[2])))
        self.body = nn.Sequential(*mods)
        for m in self.body:
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
        self.head = head
        if head is not None:
            self.fc = nn.Linear(c, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x.unsqueeze(1) if self.unsqueeze else x)
        if self.head == "mean":
            return self.fc(y.mean(dim=(2, 3)))
        if self.head == "max":
            return self.fc(torch.amax(y, dim=3).mean(dim=2))
        return y


def _stride(blocks) -> tuple[int, int]:
    """Downsampling along time (stride product) and upsampling factor."""
    down = up = 1
    for b in blocks:
        if b[0] == "conv":
            down *= b[2][1]
        elif b[0] == "pool":
            down *= b[2][1]
        elif b[0] == "convT":
            up *= b[2][1]
        elif b[0] == "up":
            up *= b[2]
    return down, up


@st.composite
def continuous_case(draw):
    blocks = draw(st.lists(block2d(), min_size=1, max_size=4))
    freq = draw(st.integers(3, 10))
    length = draw(st.integers(20, 70))
    chunks = draw(st.lists(st.integers(0, 11), min_size=1, max_size=8).filter(lambda c: sum(c) > 0))
    return blocks, freq, length, chunks, draw(st.booleans()), draw(st.integers(0, 2**16))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(continuous_case())
def test_2d_stacks_stream_exactly_under_random_chunkings(case) -> None:
    blocks, freq, length, chunks, unsqueeze, seed = case
    torch.manual_seed(seed)
    model = Net2d(blocks, freq, unsqueeze=unsqueeze).eval()
    x = torch.randn(2, freq, length) if unsqueeze else torch.randn(2, 1, freq, length)
    try:
        with torch.no_grad():
            ref = model(x)
    except RuntimeError:
        return  # the drawn stack does not fit this input offline either
    if ref.numel() == 0:
        return  # the drawn stack shrinks the frequency axis to nothing (the stream raises on it; noted on issue 8)
    s = to.stream(model, example_input=x)
    _assert_close(s.run(x, chunk=chunks), ref)


@st.composite
def window_case(draw):
    blocks = [b for b in draw(st.lists(block2d(window=True), min_size=1, max_size=4)) if b[0] not in ("convT", "up")]
    freq = draw(st.integers(3, 10))
    head = draw(st.sampled_from(["mean", "max"]))
    chunks = draw(st.lists(st.integers(0, 40), min_size=1, max_size=8).filter(lambda c: sum(c) > 0))
    return blocks, freq, head, chunks, draw(st.integers(1, 3)), draw(st.integers(0, 2**16))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(window_case())
def test_2d_window_streams_match_extended_windows(case) -> None:
    blocks, freq, head, chunks, mult, seed = case
    torch.manual_seed(seed)
    W = 48
    model = Net2d(blocks, freq, head=head).eval()
    try:
        with torch.no_grad():
            probe = model.body(torch.zeros(1, 1, freq, W))
    except RuntimeError:
        return
    if probe.shape[-1] < 2:
        return
    down, _ = _stride(blocks)
    H = down * mult
    if H > W:
        return
    s = to.stream(model, window=W, hop=H, example_input=torch.zeros(1, freq, W))
    x = torch.randn(2, freq, W + 4 * H + 3)
    y = s.run(x, chunk=chunks)
    n = (x.shape[-1] - W) // H + 1
    E = s.extension
    xp = torch.cat([x.new_zeros(2, freq, E), x], dim=-1)
    ref = torch.stack([s.reference(xp[..., k * H : k * H + W + E]) for k in range(n)], dim=1)
    _assert_close(y, ref)


def test_same_padding_delay_and_one_sample_chunks() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 2, (1, 6), padding="same"), nn.BatchNorm2d(2), nn.ELU(),
                          nn.Conv2d(2, 4, (4, 1), groups=2), nn.AvgPool2d((1, 4))).eval()
    x = torch.randn(2, 1, 4, 37)
    assert to.stream(model[:3].eval(), example_input=x).delay == 3  # 'same', even kernel of 6: 2 frames left, 3 right
    s = to.stream(model, example_input=x)
    assert s.delay == 4  # ... which the pooling by 4 owes as one frame (4 samples)
    _assert_close(s.run(x, chunk=[1, 0, 1, 0, 0]), model(x).detach())


class TimeOnAxis2(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.unsqueeze(1).transpose(2, 3))  # (batch, 1, time, freq)


def test_time_not_last_is_refused_with_the_hint() -> None:
    with pytest.raises(to.UnsupportedNodeError, match=r"time is on axis 2.*Transpose so that time is the last axis"):
        to.stream(TimeOnAxis2().eval(), example_input=torch.zeros(1, 8, 32))


def test_circular_time_padding_is_refused() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular")).eval()
    with pytest.raises(to.UnsupportedNodeError, match="circular"):
        to.stream(model, example_input=torch.zeros(1, 1, 6, 32))
