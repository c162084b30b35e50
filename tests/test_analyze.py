"""StreamiNNC analysis tools: zero-padding reach (analytic vs empirical), pooling error bound, analyze()."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import thinkonce as to
from thinkonce.analyze import Analysis
from thinkonce.errors import UnsupportedNodeError
from thinkonce.stream.bounds import (
    CosineSum,
    empirical_padding_reach,
    pool_shift_deviation,
    pooling_error_bound,
    zero_padding_reach,
)
from thinkonce.stream.convert import Converter


# ------------------------------------------------------------------------------------------ helpers
@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: intra-op threads only add contention (100x slower on a busy 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class SpecNet(nn.Module):
    """A trunk unrolled from a list of block specs (plain code for torch.fx), optionally a mean head.

    Specs: ("conv", k, s, d, pad) with pad an int or "same"; ("causal", k, d) = F.pad left + conv;
    ("pool", "max"|"avg", k, s, p); ("pad", left, right, then_act) = F.pad on time (negative trims);
    ("res", k, d) = x + tanh(same conv); ("act",) = leaky ReLU.
    """

    def __init__(self, specs: list[tuple], c_in: int = 2, width: int = 3, head: bool = False) -> None:
        super().__init__()
        self.specs = list(specs)
        self.head = head
        mods = []
        c = c_in
        for sp in specs:
            if sp[0] == "conv":
                _, k, s, d, pad = sp
                mods.append(nn.Conv1d(c, width, k, stride=s, dilation=d, padding=pad))
                c = width
            elif sp[0] == "causal":
                mods.append(nn.Conv1d(c, width, sp[1], dilation=sp[2]))
                c = width
            elif sp[0] == "pool":
                _, kind, k, s, p = sp
                mods.append((nn.MaxPool1d if kind == "max" else nn.AvgPool1d)(k, stride=s, padding=p))
            elif sp[0] == "res":
                mods.append(nn.Conv1d(c, c, sp[1], dilation=sp[2], padding="same"))
            else:
                mods.append(nn.Identity())
        self.mods = nn.ModuleList(mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for sp, m in zip(self.specs, self.mods):
            kind = sp[0]
            if kind == "causal":
                x = m(F.pad(x, ((sp[1] - 1) * sp[2], 0)))
            elif kind == "pad":
                x = F.pad(x, (sp[1], sp[2]))
                if sp[3]:
                    x = torch.tanh(x)
            elif kind == "res":
                x = x + torch.tanh(m(x))
            elif kind == "act":  # injective: a ReLU net can be dead at a frame, hiding the dependence
                x = F.leaky_relu(x, 0.2)
            else:
                x = m(x)
        if self.head:
            return x.mean(dim=-1)
        return x


@st.composite
def block(draw) -> tuple:
    kind = draw(st.sampled_from(["conv", "conv", "causal", "pool", "pool", "pad", "res", "act"]))
    if kind == "conv":
        k, d = draw(st.integers(1, 5)), draw(st.integers(1, 2))
        pad = draw(st.sampled_from(["same", 0, 1, 2]))
        s = 1 if pad == "same" else draw(st.integers(1, 2))
        return ("conv", k, s, d, pad)
    if kind == "causal":
        return ("causal", draw(st.integers(2, 5)), draw(st.integers(1, 2)))
    if kind == "pool":
        k = draw(st.integers(1, 4))
        return ("pool", draw(st.sampled_from(["max", "avg"])), k, draw(st.integers(1, 3)), draw(st.integers(0, k // 2)))
    if kind == "pad":
        return ("pad", draw(st.integers(-1, 3)), draw(st.integers(-1, 3)), draw(st.booleans()))
    if kind == "res":
        return ("res", draw(st.integers(2, 4)), draw(st.integers(1, 2)))
    return ("act",)


def plan_of(model: nn.Module, window: int, c_in: int = 2):
    return Converter(model.eval(), torch.zeros(2, c_in, window), window).convert()


def by_node(rows: list[dict]) -> dict[str, tuple[int, int]]:
    return {r["node"]: (r["left"], r["right"]) for r in rows}


# ------------------------------------------------------------------------------------------ reach
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(specs=st.lists(block(), min_size=1, max_size=6), window=st.integers(12, 72), head=st.booleans(),
       seed=st.integers(0, 2**16))
def test_analytic_reach_equals_empirical_on_random_nets(specs, window, head, seed) -> None:
    torch.manual_seed(seed)
    model = SpecNet(specs, head=head).eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 2, window))
        plan = plan_of(model, window)
    except (RuntimeError, UnsupportedNodeError):
        assume(False)  # a layer got an empty input, or an op a stream does not support
        return
    analytic = zero_padding_reach(plan, every_value=True)
    empirical = empirical_padding_reach(plan, trials=32, seed=seed, every_value=True)
    assert by_node(analytic) == by_node(empirical), (specs, window)
    assert all(r["stray"] == 0 for r in empirical), "tainted frames must form a prefix and a suffix"
    # the exact receptive field never exceeds the converter's conservative bound
    exact_rf = {r["node"]: r["receptive_field"] for r in analytic}
    for p in plan.nodes:
        if p.node.name in exact_rf:
            assert exact_rf[p.node.name] <= p.rf


class _HeadInputs(torch.fx.Interpreter):
    """Runs a plan's trunk and keeps the head inputs (the features a window head reads)."""

    def __init__(self, plan) -> None:
        super().__init__(plan.gm)
        self.plan = plan
        self.skip = {p.node for p in plan.head_nodes}
        self.values: dict = {}

    def run_node(self, n):
        if n.op == "output" or n in self.skip:
            return None
        out = super().run_node(n)
        if n in self.plan.head_inputs:
            self.values[n.name] = out
        return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(specs=st.lists(block(), min_size=1, max_size=5), window=st.integers(16, 64), seed=st.integers(0, 2**16))
def test_extension_is_the_least_that_removes_left_padding(specs, window, seed) -> None:
    """With analyze()'s extension the window's head-input features equal those computed with a much
    longer left context; one stride period less changes them (when the extension is not 0)."""
    torch.manual_seed(seed)
    model = SpecNet(specs, head=True).eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 2, window))
        res = to.analyze(model, window, example_input=torch.zeros(2, 2, window))
    except (RuntimeError, UnsupportedNodeError):
        assume(False)
        return
    assume(res.stride_period <= window)  # otherwise no hop is allowed: there is no stream to compare
    assert res.extension <= res.stream_extension  # the stream keeps enough context
    model = model.double()
    plan = Converter(model, torch.zeros(2, 2, window, dtype=torch.float64), window).convert()
    g = torch.Generator().manual_seed(seed)
    big = res.extension + 4 * res.stride_period + 64
    big -= big % res.stride_period
    # a loud context wins the max of a pool whose padding (-inf) it replaces whenever it is positive;
    # quiet rows keep saturating activations (tanh) from hiding a difference
    rows = 64  # a chain of max pools lets a change through in some rows only (~20 % in bad cases)
    loud = torch.where(torch.arange(rows) % 2 == 1, 1e3, 1.0).to(torch.float64).view(rows, 1, 1)
    pre = loud * torch.randn(rows, 2, big, generator=g, dtype=torch.float64)
    x = torch.randn(rows, 2, window, generator=g, dtype=torch.float64)

    def features(e: int) -> torch.Tensor:
        rec = _HeadInputs(plan)
        with torch.no_grad():
            rec.run(torch.cat([pre[..., big - e :], x], dim=-1))
        parts = []
        for v in plan.head_inputs:
            d, n = plan.by_node[v].tdim, plan.example_shapes[v][plan.by_node[v].tdim]
            t = rec.values[v.name]
            parts.append(t.narrow(d, t.shape[d] - n, n).flatten())  # the window's frames
        return torch.cat(parts)

    want = features(big)
    assert torch.allclose(features(res.extension), want, rtol=0, atol=1e-9 * float(want.abs().max() + 1e-30))
    if res.extension:
        assert not torch.allclose(features(res.extension - res.stride_period), want, rtol=0, atol=1e-6)


def test_hand_computed_same_convs_then_maxpool() -> None:
    """Two 'same' convs k3 then MaxPool1d(2) on W=16, by hand:
    conv1: pads 1|1 -> 1 frame tainted at each edge of 16; RF 3.
    conv2: inherits 1 + pads 1 -> 2|2 of 16; RF 5.
    pool (k2 s2, no pad): left ceil(2/2)=1; right: 2 tainted of 16 -> outputs j with 2j+1 >= 14 -> j=7 -> 1;
    8 frames, share 2/8; RF 5 + 1 = 6 samples, cumulative stride 2."""
    model = SpecNet([("conv", 3, 1, 1, "same"), ("act",), ("conv", 3, 1, 1, "same"), ("pool", "max", 2, 2, 0)],
                    head=True)
    plan = plan_of(model, 16)
    rows = zero_padding_reach(plan)
    assert [(r["frames"], r["left"], r["right"], r["receptive_field"], r["rate"]) for r in rows] == [
        (16, 1, 1, 3, 1), (16, 2, 2, 5, 1), (8, 1, 1, 6, 2)]
    assert [r["share"] for r in rows] == [2 / 16, 4 / 16, 2 / 8]
    assert by_node(rows) == by_node(empirical_padding_reach(plan, trials=8))

    res = to.analyze(model, 16, fs=32.0, f_max=4.0)
    assert [lay.type for lay in res.layers] == ["Conv1d", "Conv1d", "MaxPool1d"]
    assert [lay.padding for lay in res.layers] == [[1, 1], [1, 1], [0, 0]]
    assert res.stride_period == 2
    assert res.allowed_hops == [2, 4, 6, 8, 10, 12, 14, 16]
    assert res.extension == 2  # 1 tainted pooled frame at 2 samples per frame
    assert res.stream_extension == res.extension == 2  # the stream keeps exactly the left padding reach
    assert res.expected_deviation == pytest.approx(2 / 8)
    assert res.expected_deviation_left == pytest.approx(1 / 8)
    assert res.layers[0].pool_error_bound is None
    assert res.layers[2].pool_error_bound == pytest.approx(math.pi / 4)  # (2-1) * 2 pi * 4 / 32


def test_hand_computed_strided_conv_unfused_pad_padded_maxpool() -> None:
    """Conv1d(k3, s2, p1) on 16: N = 18, 8 outputs; left ceil(1/2) = 1; right: output 7 reads padded
    frames 14..16, never the pad at 17 -> 0. F.pad(2, 1) (kept: a max pool pads with -inf, not 0):
    11 frames, 3 | 1. MaxPool1d(3, s2, p1): N = 13, 6 outputs; left 1+3 = 4 tainted -> ceil(4/2) = 2;
    right 1+1 = 2 tainted (11, 12) -> only output 5 (reads 10..12) -> 1. RF 3, 3, 3 + 2*2 = 7."""
    model = SpecNet([("conv", 3, 2, 1, 1), ("pad", 2, 1, False), ("pool", "max", 3, 2, 1)], head=True)
    plan = plan_of(model, 16)
    rows = zero_padding_reach(plan)
    assert [r["op"] for r in rows] == ["conv", "pad", "maxpool"]
    assert [(r["frames"], r["left"], r["right"], r["receptive_field"], r["rate"]) for r in rows] == [
        (8, 1, 0, 3, 2), (11, 3, 1, 3, 2), (6, 2, 1, 7, 4)]
    assert by_node(rows) == by_node(empirical_padding_reach(plan, trials=8))
    res = to.analyze(model, 16)
    assert res.extension == 8  # 2 tainted frames at 4 samples per frame
    assert res.layers[1].padding == [2, 1] and res.layers[1].kernel is None


def test_reference_networks() -> None:
    from thinkonce.models.acc_seizure import acc_seizure
    from thinkonce.models.eeg_seizure import eeg_seizure
    from thinkonce.models.ppg_hr import ppg_hr

    acc = to.analyze(acc_seizure(), 960)
    assert [(lay.pad_left, lay.pad_right) for lay in acc.layers] == [(i, i) for i in range(1, 7)]
    assert acc.layers[-1].pad_share == pytest.approx(0.0125)  # the paper's 1.25 %
    assert acc.allowed_hops == list(range(1, 961))
    eeg = to.analyze(eeg_seizure(), 1024, fs=256.0, f_max=4.0)
    shares = {lay.node: lay.pad_share for lay in eeg.layers}
    assert shares["features_7"] == pytest.approx(2 / 64)  # the paper's 3.1 %
    assert shares["features_11"] == pytest.approx(2 / 16)
    assert eeg.stride_period == 64 and eeg.extension == 64
    assert [lay.receptive_field for lay in eeg.layers] == [3, 6, 14, 26, 58, 106]
    ppg = to.analyze(ppg_hr(), 256)
    assert [lay.pad_left for lay in ppg.layers] == [8, 16, 24, 6, 14, 22, 30, 15, 23, 31, 32, 16]
    assert all(lay.pad_right == 0 for lay in ppg.layers)  # causal trunk
    assert ppg.layers[-1].receptive_field == 328 and ppg.extension == 320
    assert ppg.expected_deviation == 1.0


def test_upsampling_reach_is_exact_but_analyze_refuses_fractional_rates() -> None:
    """Transposed convs and nearest upsampling spread each tainted frame over the frames it reaches
    (analytic reach = the frames a real context changes); analyze's rows count whole samples per
    frame, so a trunk upsampled above the input rate is refused with the way out."""
    class Up(nn.Module):
        def __init__(self, up: nn.Module) -> None:
            super().__init__()
            self.conv = nn.Conv1d(1, 2, 3, padding=1)
            self.up = up

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.up(torch.tanh(self.conv(x)))

    ups = [nn.ConvTranspose1d(2, 2, k, stride=s, padding=p, output_padding=o)
           for k, s, p, o in ((4, 2, 1, 0), (3, 2, 0, 1), (1, 3, 0, 2), (5, 3, 2, 0))]
    for up in ups + [nn.Upsample(scale_factor=3)]:
        plan = plan_of(Up(up), 32, c_in=1)
        empirical = {r["node"]: (r["left_cover"], r["right_cover"])
                     for r in empirical_padding_reach(plan, trials=8, every_value=True)}
        assert by_node(zero_padding_reach(plan, every_value=True)) == empirical, up
    with pytest.raises(NotImplementedError, match="ConvTranspose1d.*zero_padding_reach"):
        to.analyze(Up(ups[0]), 32)


# ------------------------------------------------------------------------------------------ bound
def test_pooling_error_bound_formula_and_saturation() -> None:
    assert pooling_error_bound(2, 256.0, 4.0) == pytest.approx(2 * math.pi * 4 / 256)
    assert pooling_error_bound(2, 256.0, 4.0, amplitude=3.0) == pytest.approx(3 * 2 * math.pi * 4 / 256)
    assert pooling_error_bound(4, 1024.0, 8.0) == pytest.approx(3 * 2 * math.pi * 8 / 1024)
    assert pooling_error_bound(4, 32.0, 4.0) == 2.0  # 3 * pi / 4 > 2: saturates at 2A
    assert pooling_error_bound(16, 32.0, 4.0, amplitude=0.5) == 1.0
    assert pooling_error_bound(1, 32.0, 4.0) == 0.0  # no misalignment possible
    assert pooling_error_bound(8, 32.0, 0.0) == 0.0  # a constant signal
    for bad in (dict(pool_size=0), dict(pool_size=True), dict(fs=0.0), dict(f_max=-1.0), dict(amplitude=-1.0)):
        kw = dict(pool_size=2, fs=32.0, f_max=4.0, amplitude=1.0) | bad
        with pytest.raises(ValueError):
            pooling_error_bound(**kw)


@settings(max_examples=40, deadline=None)
@given(fs=st.floats(8.0, 2048.0), frac=st.floats(0.001, 0.5), pool=st.integers(2, 16),
       kind=st.sampled_from(["max", "avg"]), amplitude=st.floats(0.1, 10.0), seed=st.integers(0, 2**16))
def test_measured_pooling_deviation_never_exceeds_bound(fs, frac, pool, kind, amplitude, seed) -> None:
    f_max = frac * fs  # up to Nyquist
    rng = np.random.default_rng(seed)
    sig = CosineSum.random(rng, 16, f_max, amplitude)
    offset = float(rng.uniform(0, 10))
    t = offset + np.arange(64) / fs
    assert np.abs(sig(t)).max() <= amplitude * (1 + 1e-12)
    dev = pool_shift_deviation(sig, fs, pool, kind, n_windows=4, offset=offset)  # (16, pool-1, 4)
    for d in range(1, pool):  # a shift by d samples: the bound with L_p - 1 = d
        assert dev[:, d - 1].max() <= pooling_error_bound(d + 1, fs, f_max, amplitude) * (1 + 1e-9) + 1e-12
    assert dev.max() <= pooling_error_bound(pool, fs, f_max, amplitude) * (1 + 1e-9) + 1e-12


def test_bound_is_nearly_tight_for_a_tone_at_f_max() -> None:
    """A pure tone at f_max, sampled finely, comes within 1 % of the bound: the bound is not loose."""
    sig = CosineSum(np.array([[1.0]]), np.array([[2.0]]), np.array([[0.3]]))
    dev = pool_shift_deviation(sig, 1024.0, 2, "avg", n_windows=512)
    assert dev.max() >= 0.99 * pooling_error_bound(2, 1024.0, 2.0)


# ------------------------------------------------------------------------------------------ analyze API
def test_json_round_trip_and_table() -> None:
    model = SpecNet([("causal", 3, 2), ("pool", "avg", 2, 2, 0), ("conv", 3, 1, 1, "same")], head=True)
    res = to.analyze(model, 32, fs=64.0, f_max=5.0, amplitude=2.0)
    text = json.dumps(res.to_dict())
    back = Analysis.from_dict(json.loads(text))
    assert back == res
    assert back.layers[1].pool_error_bound == pytest.approx(pooling_error_bound(2, 64.0, 5.0, 2.0))
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(res.to_table())
    out = console.export_text()
    assert "AvgPool1d" in out and "allowed hops 2, 4" in out


def test_analyze_arguments_and_model_untouched() -> None:
    model = SpecNet([("conv", 3, 1, 1, "same"), ("pool", "max", 2, 2, 0)], head=True)
    bn = nn.Sequential(nn.Conv1d(2, 2, 3, padding=1), nn.BatchNorm1d(2))
    bn.train()
    before = bn[1].running_mean.clone()
    to.analyze(bn, 32)
    assert torch.equal(bn[1].running_mean, before) and bn.training  # analysis copies the model
    with pytest.raises(ValueError, match="window"):
        to.analyze(model, 0)
    with pytest.raises(ValueError, match="fs="):
        to.analyze(model, 32, f_max=4.0)
    with pytest.raises(ValueError, match="samples but window"):
        to.analyze(model, 32, example_input=torch.zeros(1, 2, 30))


def test_allowed_hops_are_multiples_of_the_stride_period() -> None:
    model = SpecNet([("pool", "avg", 2, 2, 0), ("conv", 3, 3, 1, 1), ("pool", "max", 2, 2, 0)], head=True).eval()
    res = to.analyze(model, 48)
    assert res.stride_period == 12
    assert res.allowed_hops == [12, 24, 36, 48]
    s = to.stream(model, window=48, hop=24, example_input=torch.zeros(1, 2, 48))
    assert s.spec.period == res.stride_period


def test_cli_analyze(tmp_path) -> None:
    from typer.testing import CliRunner

    from thinkonce.cli import app

    out = tmp_path / "acc.json"
    r = CliRunner().invoke(app, ["analyze", "acc_seizure", "--fs", "32", "--f-max", "4", "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "acc_seizure" in r.output and "1.25 %" in r.output
    data = json.loads(out.read_text())
    assert data["model"] == "acc_seizure" and len(data["layers"]) == 6
    assert data["expected_deviation"] == pytest.approx(0.0125)
    r = CliRunner().invoke(app, ["analyze", "ppg_hr", "--f-max", "4"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["analyze", "no_such_net"])
    assert r.exit_code != 0
