"""SOI layers, fills, apply, precompute and accounting: streams equal the training form, on every backend."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import thinkonce as to
import thinkonce.soi as soi
from nets import assert_close
from thinkonce.errors import AlignmentError, StreamInputError, ThinkonceError
from thinkonce.stream.backends import BACKENDS
from test_soi_props import stream_all


class UNet(nn.Module):
    """A causal 1-D U-Net without SOI (the STMC baseline): skips by addition and concatenation."""

    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.e1, self.e2, self.e3 = nn.Conv1d(2, c, 3), nn.Conv1d(c, c, 3), nn.Conv1d(c, c, 3, dilation=2)
        self.d3, self.d2, self.out = nn.Conv1d(c, c, 3), nn.Conv1d(2 * c, c, 3), nn.Conv1d(c, 1, 1)

    @staticmethod
    def causal(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(conv(F.pad(x, ((conv.kernel_size[0] - 1) * conv.dilation[0], 0))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.causal(self.e1, x)
        b = self.causal(self.e2, a)
        c = self.causal(self.e3, b)
        u = self.causal(self.d3, c) + b
        return self.out(self.causal(self.d2, torch.cat([u, a], 1)))


class Spectro(nn.Module):
    """(batch, 1, freq, time) with an S-CC in the middle, a shifted conv in the deep path, a skip."""

    def __init__(self, fill: str, fp: bool) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 3, (3, 3), padding=(1, 0))
        self.entry = (soi.ShiftedStridedClonedConv2d if fp else soi.StridedClonedConv2d)(3, 3, (3, 2), padding=1)
        self.deep = soi.ShiftedConv2d(3, 3, (3, 2), padding=1)
        self.fill = (soi.Interpolate(fill) if fill in soi.INTERPOLATE_MODES
                     else soi.Extrapolate(fill, channels=3, dim=2))
        with torch.no_grad():
            for p in self.fill.parameters():
                p.add_(0.3 * torch.randn_like(p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.c1(F.pad(x, (2, 0))))
        d = torch.tanh(self.deep(torch.relu(self.entry(a))))
        return a + self.fill(d, like=a)


FILLS = soi.EXTRAPOLATE_MODES + soi.INTERPOLATE_MODES


# ---------------------------------------------------------------------------- training form
def test_lengths_and_causality() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 2, 11)
    for cls, n in ((soi.StridedClonedConv1d, 6), (soi.ShiftedStridedClonedConv1d, 6), (soi.ShiftedConv1d, 11)):
        m = cls(2, 3, 3)
        y = m(x)
        assert y.shape[-1] == n
        x2 = x.clone()
        x2[..., 7:] += 1.0  # changing frames >= 7 leaves every frame computed from frames < 7 alone
        y2 = m(x2)
        stride = 2 if cls is not soi.ShiftedConv1d else 1
        shift = 0 if cls is soi.StridedClonedConv1d else 1
        last_clean = max(j for j in range(n) if j * stride - shift < 7)
        assert torch.equal(y[..., :last_clean + 1], y2[..., :last_clean + 1])
        assert not torch.equal(y, y2)
    # the shifted S-CC keeps the prediction past the signal for even lengths: T // 2 + 1 frames
    assert soi.ShiftedStridedClonedConv1d(2, 3, 3)(torch.randn(1, 2, 10)).shape[-1] == 6
    assert soi.StridedClonedConv1d(2, 3, 3)(torch.randn(1, 2, 10)).shape[-1] == 5
    # the shifted conv at frame t is the causal conv at frame t - 1
    m, c = soi.ShiftedConv1d(2, 3, 3), nn.Conv1d(2, 3, 3)
    c.load_state_dict(m.state_dict())
    assert_close(m(x)[..., 1:], c(F.pad(x, (2, 0)))[..., :-1])


def test_fills_start_as_duplication_and_interpolate_like_torch() -> None:
    torch.manual_seed(1)
    y = torch.randn(2, 3, 9)
    dup = torch.repeat_interleave(y, 2, dim=-1)
    assert torch.equal(soi.Extrapolate("duplicate")(y), dup)
    for mode in ("tconv", "hybrid"):
        assert_close(soi.Extrapolate(mode, channels=3)(y), dup)
    # interpolation at the midpoints: torch's linear/bicubic with align_corners=True, 2L - 1 points
    n = 2 * y.shape[-1] - 1
    lin = F.interpolate(y, size=n, mode="linear", align_corners=True)
    assert_close(soi.Interpolate("linear")(y)[..., :n], lin)
    cub = F.interpolate(y.unsqueeze(2), size=(1, n), mode="bicubic", align_corners=True).squeeze(2)
    assert_close(soi.Interpolate("cubic")(y)[..., :n], cub)
    z = soi.Interpolate("nearest")(y)
    assert torch.equal(z[..., 1:-1:2], y[..., 1:]) and torch.equal(z[..., ::2], y)
    like = torch.zeros(2, 3, 17)
    assert soi.Extrapolate()(y, like=like).shape[-1] == 17


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="channels=C"):
        soi.Extrapolate("tconv")
    with pytest.raises(ValueError, match="mode must be one of"):
        soi.Extrapolate("linear")
    with pytest.raises(ValueError, match="mode must be one of"):
        soi.Interpolate("duplicate")
    with pytest.raises(ValueError, match="sets the time stride"):
        soi.StridedClonedConv1d(1, 1, 3, stride=2)
    with pytest.raises(ValueError, match="frequency axis only"):
        soi.StridedClonedConv2d(1, 1, 3, padding=(1, 1))
    with pytest.raises(ValueError, match="fewer than"):
        soi.Extrapolate()(torch.zeros(1, 1, 3), like=torch.zeros(1, 1, 9))


# ---------------------------------------------------------------------------- streams
@pytest.mark.parametrize("fill,fp", [(f, i % 2 == 1) for i, f in enumerate(FILLS)] + [("duplicate", True)])
def test_2d_streams_exact(fill: str, fp: bool) -> None:
    torch.manual_seed(2)
    model = Spectro(fill, fp).eval()
    x = torch.randn(2, 1, 5, 33)
    with torch.no_grad():
        ref = model(x)
    s = to.stream(model, example_input=x)
    assert_close(stream_all(s, x, [1, 3, 0, 2]), ref)
    if fp:
        assert_close(stream_all(s, x, [1, 2], [True, False, True]), ref)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "eager"])
def test_backends_agree_with_the_model(backend: str) -> None:
    """Traced steps (several per phase and per precompute layout) give the model's output."""
    torch.manual_seed(3)
    for mode in ("pp", "fp"):
        model = soi.apply(UNet(), at=["e2"], mode=mode, fill="hybrid").eval()
        x = torch.randn(1, 2, 64)
        with torch.no_grad():
            ref = model(x)
        s = to.stream(model, example_input=x, backend=backend)
        assert_close(stream_all(s, x, [1]), ref)
        if mode == "fp":
            assert_close(stream_all(s, x, [1], [True]), ref)
            assert_close(stream_all(s, x, [1, 1, 2], [False, True]), ref)


def test_window_classifier_with_an_scc() -> None:
    """Window mode: the trunk below the S-CC runs at half rate, the hop must keep it aligned."""

    class Cls(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1, self.s, self.c2 = nn.Conv1d(1, 4, 3), soi.StridedClonedConv1d(4, 6, 3), nn.Conv1d(6, 6, 3)
            self.fc = nn.Linear(6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.relu(self.c2(torch.relu(self.s(torch.relu(self.c1(x)))))).mean(-1))

    model = Cls().eval()
    s = to.stream(model, window=64, hop=16, example_input=torch.zeros(1, 1, 64))  # self-checked vs reference
    assert s.spec is not None and s.spec.period == 2
    with pytest.raises(AlignmentError):
        to.stream(model, window=64, hop=15, example_input=torch.zeros(1, 1, 64))
    with pytest.raises(ThinkonceError, match="continuous"):
        s.precompute(s.init_state())


def test_precompute_refusals() -> None:
    pp = soi.apply(UNet(), at=["e2"], mode="pp").eval()
    s = to.stream(pp, example_input=torch.zeros(1, 2, 64))
    with pytest.raises(ThinkonceError, match="no shifted S-CC"):
        s.precompute(s.init_state())

    class Direct(nn.Module):  # the deep path is the output: precomputed frames would come out early
        def __init__(self) -> None:
            super().__init__()
            self.e = soi.ShiftedStridedClonedConv1d(1, 2, 3)
            self.f = soi.Extrapolate()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.f(torch.tanh(self.e(x)))

    s = to.stream(Direct().eval(), example_input=torch.zeros(1, 1, 64))
    st, _ = s.init_state(), None
    _, st = s.step(torch.randn(1, 1, 5), st)
    with pytest.raises(ThinkonceError, match="without meeting full-rate"):
        s.precompute(st)


def test_precomputed_states_follow_the_state_contract(tmp_path) -> None:
    """A state after precompute keeps the layout, passes the clock check (the counters before the
    S-CC are still checked against @t), saves, loads and resets."""
    torch.manual_seed(5)
    model = soi.apply(UNet(), at=["e2"], mode="fp").eval()
    s = to.stream(model, example_input=torch.zeros(1, 2, 64))
    st = s.init_state()
    for _ in range(9):
        _, st = s.step(torch.randn(1, 2, 1), st)
    pre = s.precompute(st)
    assert {k: v.shape for k, v in pre.items()} == {k: v.shape for k, v in st.items()}
    assert pre["@n"].tolist() != st["@n"].tolist()  # the deep path really moved on
    s.check_state(pre)
    to.save_state(tmp_path / "pre.safetensors", pre)
    s.check_state(to.load_state(tmp_path / "pre.safetensors", stream=s))
    keys = s.program.counter_keys
    j = next(i for i, k in enumerate(keys) if i not in s._free_cols)  # a counter of the path before the S-CC
    bad = dict(pre)
    bad["@n"] = pre["@n"].clone()
    bad["@n"][:, j] += 1
    with pytest.raises(StreamInputError, match="does not match the clock"):
        s.step(torch.randn(1, 2, 1), bad)
    again = s.reset(pre, 0)  # a zero history precomputed too (tests/test_soi_fixes.py: exact)
    assert again["@n"].tolist() == pre["@n"].tolist()
    s.check_state(again)
    s.reset(st, 0)  # a state of plain steps resets as before


# ---------------------------------------------------------------------------- apply
def test_apply_copies_weights_trains_and_streams() -> None:
    torch.manual_seed(4)
    base = UNet()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    x = torch.randn(2, 2, 45)
    for at, mode, fill in ((["e2"], "pp", "duplicate"), (["e3"], "fp", "tconv"), (["e2", "e3"], "pp", "linear"),
                           (["e2", "e3"], "fp", "hybrid")):
        model = soi.apply(base, at=at, mode=mode, fill=fill)
        assert model.training
        assert torch.equal(model.get_submodule(at[0]).weight, base.get_submodule(at[0]).weight)
        assert model.get_submodule(at[0]).weight is not base.get_submodule(at[0]).weight  # copied
        loss = model(x).square().mean()
        loss.backward()
        assert model.get_submodule(at[-1]).weight.grad is not None
        model.eval()
        with torch.no_grad():
            ref = model(x)
        assert ref.shape == base(x).shape
        s = to.stream(model, example_input=x)
        assert_close(stream_all(s, x, [1, 4, 0, 3]), ref)
    for k, v in base.state_dict().items():
        assert torch.equal(v, before[k])  # the original is untouched


def test_apply_refusals_name_the_fix() -> None:
    with pytest.raises(ValueError, match=r"conv layers: \['e1', 'e2'"):
        soi.apply(UNet(), at=["nope"])
    with pytest.raises(ValueError, match="mode must be"):
        soi.apply(UNet(), at=["e2"], mode="xx")
    with pytest.raises(ValueError, match="fill must be"):
        soi.apply(UNet(), at=["e2"], fill="xx")
    strided = nn.Sequential(nn.Conv1d(1, 2, 3, stride=2), nn.ReLU())
    with pytest.raises(ValueError, match="time stride 2"):
        soi.apply(strided, at=["0"])


# ---------------------------------------------------------------------------- accounting
def test_cost_counts_the_skipped_work() -> None:
    """Per-step MACs from the FLOP counter: PP halves the deep path's share, FP moves it to precompute;
    over a whole signal the stream does exactly the offline model's MACs."""
    torch.manual_seed(5)
    base = UNet().eval()
    stmc = to.stream(base, example_input=torch.zeros(1, 2, 64)).cost(1)
    pp_model = soi.apply(base, at=["e2"], mode="pp").eval()
    pp = to.stream(pp_model, example_input=torch.zeros(1, 2, 64)).cost(1)
    fp = to.stream(soi.apply(base, at=["e2"], mode="fp").eval(), example_input=torch.zeros(1, 2, 64)).cost(1)
    assert stmc.steps == 1 and pp.steps == 2 and fp.steps == 2
    shallow = min(pp.macs)
    deep = max(pp.macs) - shallow
    assert stmc.peak_macs == shallow + deep  # STMC computes every layer every step
    assert pp.mean_macs == shallow + deep / 2 and pp.peak_macs == stmc.peak_macs
    assert fp.macs == (shallow, shallow) and sum(fp.precompute_macs) == deep
    assert fp.fp_share == pytest.approx(deep / (2 * shallow + deep))
    assert pp.state_bytes > 0 and pp.macs_per_sample == pp.mean_macs
    # the stream computes what the model computes, frame for frame
    x = torch.zeros(1, 2, 40)
    s = to.stream(pp_model, example_input=x)
    st, total = s.init_state(), 0
    for t in range(40):
        total += to.count_macs(s, x[..., t:t + 1], st)
        _, st = s.step(x[..., t:t + 1], st)
    assert total == to.count_macs(pp_model, x)
