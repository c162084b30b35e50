"""The state layout is fixed from init_state() on, at every phase, for every op: walk every zoo model
that streams, the reference nets (window mode and their feature trunks in continuous mode) and nets
made of the registry's newer ops (recurrences with a learned h0, 2-D layers, reflect/replicate
padding, cumulative sums, trims) over many steps of random chunk lengths; after every step the keys,
per-row shapes and dtypes must be those of ``Stream.state_spec()``.

Also: the rewritten edge padding and cumulative sum stream exactly under random chunkings."""

from __future__ import annotations

import random
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import thinkonce as to
from nets import assert_close
from zoo import ZOO

BATCH = 2


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models (and recurrences spin on every intra-op thread)
    yield
    torch.set_num_threads(n)


def _layout(state: dict) -> dict:
    return {k: (tuple(v.shape), v.dtype) for k, v in state.items()}


def walk(s: to.Stream, steps: int, seed: int = 0) -> int:
    """Step ``s`` over random chunk lengths (0 and 1 sample chunks, lengths around the stride period,
    long ones) and assert the layout after every step; returns the samples streamed."""
    spec = s.state_spec()
    want = {k: ((BATCH, *f.shape), f.dtype) for k, f in spec.items()}
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    p = s._period if s.spec is None else s.hop
    state = s.init_state(BATCH)
    assert _layout(state) == want, "init_state() does not follow state_spec()"
    total = 0
    for i in range(steps):
        c = rng.choice([0, 1, 2, max(p - 1, 1), p, p + 1, rng.randint(1, 3 * p)])
        x = torch.randn((BATCH, *s.input_frame_shape, c), generator=gen, dtype=torch.float64).to(s.dtype)
        _, state = s.step(x, state)
        total += c
        got = _layout(state)
        assert got == want, f"step {i} (after {total} samples, chunk {c}): layout changed: " + ", ".join(
            f"{k}: {got.get(k)} != {want.get(k)}" for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k))
    _, state = s.flush(state) if s.spec is None else (None, state)
    assert _layout(state) == want
    return total


STREAMING = [e for e in ZOO if e.expect == "stream"]


@pytest.mark.parametrize("entry", STREAMING, ids=[e.name for e in STREAMING])
def test_zoo_state_layout_is_fixed(entry) -> None:
    torch.manual_seed(0)
    model = entry.build(0)
    length = entry.window if entry.mode == "window" else entry.length
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = to.stream(model, window=entry.window, hop=entry.hop,
                      example_input=torch.zeros(1, *entry.input_shape, length), check=False)
    walk(s, steps=40 if entry.mode == "continuous" else 24)


def _reference(name: str):
    from thinkonce.models import acc_seizure, eeg_seizure, ppg_hr

    return {"ppg_hr": (lambda: ppg_hr(pretrained=True), 1, 256, 64),
            "eeg_seizure": (eeg_seizure, 18, 1024, 256),
            "acc_seizure": (acc_seizure, 4, 960, 160)}[name]


class Features(nn.Module):
    """A reference net's streamable trunk (``model.features``, a method or a module) as a model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x)


@pytest.mark.parametrize("mode", ["window", "continuous"])
@pytest.mark.parametrize("name", ["ppg_hr", "eeg_seizure", "acc_seizure"])
def test_reference_net_state_layout_is_fixed(name: str, mode: str) -> None:
    factory, c, W, H = _reference(name)
    torch.manual_seed(0)
    model = factory().eval()
    if mode == "window":
        s = to.stream(model, window=W, hop=H, check=False)
    else:
        s = to.stream(Features(model).eval(), example_input=torch.zeros(1, c, W), check=False)
    walk(s, steps=30)


class RecurrentH0(nn.Module):
    """Conv -> GRU from a learned h0 -> LSTM from zeros -> conv: both recurrences' states in the stream."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 4, 3, padding=1)
        self.gru = nn.GRU(4, 5, 2, batch_first=True)
        self.lstm = nn.LSTM(5, 3, batch_first=True)
        self.h0 = nn.Parameter(torch.randn(2, 1, 5))
        self.out = nn.Conv1d(3, 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.relu(self.conv(x)).transpose(1, 2)
        y, _ = self.gru(z, self.h0.expand(-1, x.size(0), -1).contiguous())
        y, _ = self.lstm(y)
        return self.out(y.transpose(1, 2))


class Spectro2d(nn.Module):
    """(B, F, T) -> 2-D convs (zeros, reflect, replicate padding along time), pooling, transposed conv,
    upsampling: every 2-D op with state."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 3, (3, 3), padding=(1, 2), padding_mode="reflect"), nn.ReLU(),
            nn.Conv2d(3, 3, (1, 3), padding=(0, 1), padding_mode="replicate"), nn.BatchNorm2d(3),
            nn.MaxPool2d((2, 3), (1, 2), (1, 1)),
            nn.Conv2d(3, 2, (2, 2), stride=(1, 3)),
            nn.ConvTranspose2d(2, 3, (2, 4), stride=(1, 3), padding=(0, 1), output_padding=(0, 1)),
            nn.Upsample(scale_factor=(1, 2)),
            nn.AvgPool2d((1, 2), (1, 2)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.unsqueeze(1))


class PadCumsum(nn.Module):
    """Reflect and replicate padding (the ops the converter cannot fold into a conv), a trim, a running
    sum, and a branch sum that needs alignment queues."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv1d(2, 3, 3)
        self.b = nn.Conv1d(2, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.pad(x, (3, 2), mode="reflect")
        g = F.pad(x, (1, 2), mode="replicate")
        y = torch.relu(self.a(h))[..., 1:-1] + self.b(g)[..., :-2]
        return torch.cumsum(y, dim=-1)


@pytest.mark.parametrize("net,shape", [(RecurrentH0, (2,)), (Spectro2d, (6,)), (PadCumsum, (2,))],
                         ids=["recurrent_h0", "spectro2d", "pad_cumsum"])
def test_op_state_layout_is_fixed_and_exact(net, shape) -> None:
    torch.manual_seed(1)
    model = net().eval()
    if isinstance(model, Spectro2d):
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    s = to.stream(model, example_input=torch.zeros(1, *shape, 64))
    n = walk(s, steps=50, seed=3)
    assert n > 0
    x = torch.randn(BATCH, *shape, 97)
    with torch.no_grad():
        ref = model(x)
    for chunks in ([1], [0, 2, 5, 1], [13, 0, 7], [97]):
        assert_close(s.run(x, chunk=chunks), ref)


@st.composite
def pad_case(draw):
    mode = draw(st.sampled_from(["reflect", "replicate", "constant"]))
    left, right = draw(st.integers(0, 4)), draw(st.integers(0, 4))
    trim = draw(st.integers(0, 3))
    cumsum = draw(st.booleans())
    length = draw(st.integers(max(left, right) + trim + 6, 40))
    chunks = draw(st.lists(st.integers(0, 7), min_size=1, max_size=6).filter(lambda c: sum(c) > 0))
    return mode, left, right, trim, cumsum, length, chunks, draw(st.integers(0, 2**16))


class PadNet(nn.Module):
    def __init__(self, mode: str, left: int, right: int, trim: int, cumsum: bool) -> None:
        super().__init__()
        self.mode, self.pad, self.trim, self.cumsum = mode, (left, right), trim, cumsum
        self.conv = nn.Conv1d(2, 2, 1)  # frame-wise: the padding stays an op of its own

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(F.pad(x, self.pad, mode=self.mode))
        if self.trim:
            y = y[..., self.trim:]
        return torch.cumsum(y, dim=-1) if self.cumsum else y


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pad_case())
def test_edge_padding_and_cumsum_stream_exactly(case) -> None:
    mode, left, right, trim, cumsum, length, chunks, seed = case
    torch.manual_seed(seed)
    model = PadNet(mode, left, right, trim, cumsum).eval()
    s = to.stream(model, example_input=torch.zeros(1, 2, 32), check=False)
    x = torch.randn(BATCH, 2, length)
    with torch.no_grad():
        ref = model(x)
    spec = s.state_spec()
    state, outs, pos, i = s.init_state(BATCH), [], 0, 0
    while pos < length:
        c = chunks[i % len(chunks)]
        y, state = s.step(x[..., pos:pos + c], state)
        assert _layout(state) == {k: ((BATCH, *f.shape), f.dtype) for k, f in spec.items()}
        outs.append(y)
        pos, i = pos + c, i + 1
    y, _ = s.flush(state)
    assert_close(torch.cat([*outs, y], dim=-1), ref)


# ---------------------------------------------------------------------------- SOI (thinkonce.soi)
def _soi_models():
    import thinkonce.soi as soi
    from test_soi import Spectro, UNet

    torch.manual_seed(4)
    return {
        "unet_pp_e2": (soi.apply(UNet(), at=["e2"], mode="pp", fill="hybrid").eval(), (2,)),
        "unet_fp_e2": (soi.apply(UNet(), at=["e2"], mode="fp", fill="duplicate").eval(), (2,)),
        "unet_fp_e1_e3": (soi.apply(UNet(), at=["e1", "e3"], mode="fp", fill="tconv").eval(), (2,)),
        "spectro_pp_linear": (Spectro("linear", fp=False).eval(), (1, 5)),
        "spectro_fp_cubic": (Spectro("cubic", fp=True).eval(), (1, 5)),
    }


SOI_NAMES = ["unet_pp_e2", "unet_fp_e2", "unet_fp_e1_e3", "spectro_pp_linear", "spectro_fp_cubic"]


@pytest.mark.parametrize("name", SOI_NAMES)
@pytest.mark.parametrize("seed", [0, 1])
def test_soi_state_layout_is_fixed_with_precompute(name: str, seed: int) -> None:
    """SOI streams keep state_spec()'s layout after every step and, for FP models, after precompute
    called at random steps (the frames computed ahead fit the fixed queues); the outputs equal the
    model on the whole signal."""
    model, shape = _soi_models()[name]
    s = to.stream(model, example_input=torch.zeros(1, *shape, 64))
    fp = name.split("_")[1] == "fp"
    spec = s.state_spec()
    want = {k: ((BATCH, *f.shape), f.dtype) for k, f in spec.items()}
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((BATCH, *shape, 150), generator=gen)
    state, outs, pos, i = s.init_state(BATCH), [], 0, 0
    assert _layout(state) == want
    while pos < x.shape[-1]:
        c = rng.choice([0, 1, 1, 2, 3, rng.randint(1, 12)])
        y, state = s.step(x[..., pos:pos + c], state)
        outs.append(y)
        assert _layout(state) == want, f"{name}: layout changed after step {i} ({pos + c} samples)"
        if fp and rng.random() < 0.5:
            state = s.precompute(state)
            assert _layout(state) == want, f"{name}: layout changed after precompute at step {i}"
        pos, i = pos + c, i + 1
    y, state = s.flush(state)
    assert _layout(state) == want
    with torch.no_grad():
        ref = model(x)
    assert_close(torch.cat([*outs, y], dim=-1), ref)
