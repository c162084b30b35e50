"""One property test per registered builder: a small model that exercises it, streamed under random
chunkings, against the offline model (continuous mode) or the extended windows (window mode); builders
that must refuse are checked to refuse with a reason.

``test_every_registered_builder_has_an_example`` fails when an op is registered without an entry here,
so a new op cannot land untested (add its example to ``CASES``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import thinkonce as to
import thinkonce.gating as gating  # registers its ops: every registered builder must have an example here
from nets import assert_close
import thinkonce.soi as soi
import thinkonce.soi.fill as soi_fill
from thinkonce.errors import ThinkonceError
from thinkonce.ops import registry

C = 2  # input channels of every example


class Net(nn.Module):
    """``fn(x, *mods)`` as forward: fx traces the function body, the modules stay leaves."""

    def __init__(self, fn: Callable, *mods: nn.Module) -> None:
        super().__init__()
        self.fn = fn
        self.mods = nn.ModuleList(mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x, *self.mods)


@dataclass(frozen=True)
class Case:
    builder: str  # "<family>.<builder name>" as registered
    make: Callable[[], nn.Module]
    mode: str  # "cont" (continuous, exact) | "win" (window mode, exact vs extended windows) | "refuse"
    note: str = ""
    #: False where the converter never consults the builder for this example (a layer that only ever sits
    #: downstream of the window head, where every node runs on the buffer without classification)
    reaches: bool = True


def conv(c_in: int = C, c_out: int = 3, k: int = 3, **kw) -> nn.Conv1d:
    return nn.Conv1d(c_in, c_out, k, **kw)


def conv2(c_in: int = 1, c_out: int = 2, k=(2, 3), **kw) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, **kw)


def bn(c: int, d2: bool = False) -> nn.Module:
    m = nn.BatchNorm2d(c) if d2 else nn.BatchNorm1d(c)
    with torch.no_grad():
        m.running_mean.uniform_(-0.5, 0.5)
        m.running_var.uniform_(0.5, 2.0)
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.2, 0.2)
    return m


def planes(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T) -> (B, 1, C, T): a 2-D map with time last."""
    return x.unsqueeze(1)


def gated_seq(pooling: str = "global") -> nn.Module:
    torch.manual_seed(0)
    seq = nn.Sequential(conv(c_out=4, padding=1), nn.ReLU(), nn.Conv1d(4, 3, 3, padding=1), nn.ReLU(), nn.Conv1d(3, 2, 1))
    g = gating.insert(seq, after=["0", "2"], pooling=pooling) if pooling == "causal" else gating.insert(seq, after=["0", "2"])
    return g.eval()


CASES: list[Case] = [
    # conv
    Case("conv.conv1d_module", lambda: Net(lambda x, m: m(x), conv(padding=2, dilation=2)), "cont"),
    Case("conv.conv1d_module", lambda: Net(lambda x, m: m(x), conv(k=4, stride=3)), "cont", "stride 3"),
    Case("conv.conv1d_function", lambda: Net(lambda x, m: F.conv1d(x, m.weight, m.bias, padding=1, stride=2), conv()), "cont"),
    Case("conv.conv_transpose1d_module", lambda: Net(lambda x, m: m(x), nn.ConvTranspose1d(C, 3, 4, stride=2, padding=1)), "cont"),
    Case("conv.conv_transpose1d_function",
         lambda: Net(lambda x, m: F.conv_transpose1d(x, m.weight, m.bias, stride=3), nn.ConvTranspose1d(C, 3, 3, stride=3)), "cont"),
    # 2-D layers with time last
    Case("conv2d.conv2d_module", lambda: Net(lambda x, m: m(planes(x)).flatten(1, 2), conv2(padding=(0, 1))), "cont"),
    Case("conv2d.conv2d_function",
         lambda: Net(lambda x, m: F.conv2d(planes(x), m.weight, m.bias, stride=(1, 2)).flatten(1, 2), conv2()), "cont"),
    Case("conv2d.conv_transpose2d_module",
         lambda: Net(lambda x, m: m(planes(x)).flatten(1, 2), nn.ConvTranspose2d(1, 2, (1, 4), stride=(1, 2), padding=(0, 1))), "cont"),
    Case("conv2d.conv_transpose2d_function",
         lambda: Net(lambda x, m: F.conv_transpose2d(planes(x), m.weight, m.bias, stride=(1, 2)).flatten(1, 2),
                     nn.ConvTranspose2d(1, 2, (2, 2), stride=(1, 2))), "cont"),
    Case("conv2d.maxpool2d_module", lambda: Net(lambda x, m: m(planes(x)).flatten(1, 2), nn.MaxPool2d((2, 2))), "cont"),
    Case("conv2d.maxpool2d_function", lambda: Net(lambda x: F.max_pool2d(planes(x), (1, 3), stride=1, padding=(0, 1)).flatten(1, 2)), "cont"),
    Case("conv2d.avgpool2d_module", lambda: Net(lambda x, m: m(planes(x)).flatten(1, 2), nn.AvgPool2d((2, 3), stride=(1, 2))), "cont"),
    Case("conv2d.avgpool2d_function", lambda: Net(lambda x: F.avg_pool2d(planes(x), (2, 2)).flatten(1, 2)), "cont"),
    Case("conv2d.adaptive_pool2d",
         lambda: Net(lambda x, m, p, f: f(p(m(planes(x))).flatten(1)), conv2(), nn.AdaptiveAvgPool2d(1), nn.Linear(2, 3)), "win"),
    Case("conv2d.adaptive_pool2d", lambda: Net(lambda x: F.adaptive_max_pool2d(planes(x), (1, None)).flatten(1, 2)), "cont",
         "over the frequency axis only: frame-wise"),
    Case("conv2d.interpolate", lambda: Net(lambda x, m: F.interpolate(m(x), scale_factor=2), conv()), "cont"),
    Case("conv2d.upsample_module", lambda: Net(lambda x, m: m(planes(x)).flatten(1, 2), nn.Upsample(scale_factor=(1, 3))), "cont"),
    Case("conv2d.upsample_module", lambda: Net(lambda x, m: m(x), nn.Upsample(scale_factor=2)), "cont"),
    Case("conv2d.relu_inplace", lambda: Net(lambda x, m: torch.relu_(m(x)), conv()), "cont"),
    # heads and linear maps
    Case("head.whole_axis",
         lambda: Net(lambda x, m, a: a(m(x).transpose(1, 2), m(x).transpose(1, 2), m(x).transpose(1, 2))[0].mean(1),
                     conv(c_out=4), nn.MultiheadAttention(4, 2, batch_first=True)), "win"),
    Case("linear.attention",
         lambda: Net(lambda x, m: F.scaled_dot_product_attention(*(m(x).transpose(1, 2),) * 3).mean(1), conv()), "win"),
    Case("linear.linear", lambda: Net(lambda x, m: m(x.transpose(1, 2)).transpose(1, 2), nn.Linear(C, 3)), "cont",
         "over channels: frame-wise"),
    Case("linear.matmul",
         lambda: Net(lambda x, m: m.weight[:, :, 0] @ x, conv()), "cont"),
    # norms
    Case("norm.batchnorm", lambda: Net(lambda x, m, b: b(m(x)), conv(), bn(3)), "cont"),
    Case("norm.batchnorm", lambda: Net(lambda x, m, b: b(m(planes(x))).flatten(1, 2), conv2(), bn(2, d2=True)), "cont"),
    Case("norm.batchnorm_function",
         lambda: Net(lambda x, b: F.batch_norm(x, b.running_mean, b.running_var, b.weight, b.bias), bn(C)), "cont"),
    Case("norm.layernorm", lambda: Net(lambda x, n: n(x.transpose(1, 2)).transpose(1, 2), nn.LayerNorm(C)), "cont"),
    Case("norm.layernorm", lambda: Net(lambda x, n: n(x.transpose(1, 2)).transpose(1, 2), nn.RMSNorm(C)), "cont"),
    Case("norm.layernorm_function", lambda: Net(lambda x: F.layer_norm(x.transpose(1, 2), (C,)).transpose(1, 2)), "cont"),
    Case("norm.local_response_norm", lambda: Net(lambda x, m: F.local_response_norm(m(x), 2), conv()), "cont"),
    Case("norm.over_time", lambda: Net(lambda x, m, g: g(m(x)), conv(c_out=4), nn.GroupNorm(2, 4)), "refuse",
         "statistics over the whole time axis"),
    Case("norm.over_time", lambda: Net(lambda x, m, g, f: f(g(m(x)).mean(-1)), conv(c_out=4), nn.InstanceNorm1d(4), nn.Linear(4, 2)),
         "win", "window mode: the head"),
    # padding
    Case("pad.pad_module", lambda: Net(lambda x, p, m: m(p(x)), nn.ReflectionPad1d(2), conv()), "cont"),
    Case("pad.pad_module", lambda: Net(lambda x, p, m: m(p(x)), nn.ReplicationPad1d((3, 1)), conv()), "cont"),
    Case("pad.pad_module", lambda: Net(lambda x, p, m: m(p(x)), nn.ConstantPad1d((2, 0), 0.5), conv()), "cont"),
    Case("pad.pad_module", lambda: Net(lambda x, p: p(x), nn.CircularPad1d(2)), "refuse", "wraps the end of the signal"),
    Case("pad.pad_function", lambda: Net(lambda x, m: m(F.pad(x, (4, 0)))[..., :-2], conv()), "cont"),
    Case("pad.pad_function", lambda: Net(lambda x, m: F.pad(m(x), (-1, -2)), conv()), "cont", "negative widths: trims"),
    # pointwise
    Case("pointwise.framewise", lambda: Net(lambda x, m, a: a(m(x)) * torch.sigmoid(x[:, :1]) + 1.0, conv(padding=1), nn.GELU()), "cont"),
    Case("pointwise.prelu", lambda: Net(lambda x, m, a: a(m(x)), conv(), nn.PReLU(3)), "cont"),
    # 1-D pooling
    Case("pool.maxpool_module", lambda: Net(lambda x, p: p(x), nn.MaxPool1d(3, stride=2, padding=1)), "cont"),
    Case("pool.maxpool_module", lambda: Net(lambda x, p: p(x), nn.MaxPool1d(3, stride=3, ceil_mode=True)), "win",
         "ceil_mode: the window decides the last partial pool"),
    Case("pool.maxpool_function", lambda: Net(lambda x: F.max_pool1d(x, 2)), "cont"),
    Case("pool.avgpool_module", lambda: Net(lambda x, p: p(x), nn.AvgPool1d(4, stride=3, padding=2)), "cont"),
    Case("pool.avgpool_function", lambda: Net(lambda x: F.avg_pool1d(x, 3, stride=1, padding=1)), "cont"),
    Case("pool.avgpool_function", lambda: Net(lambda x: F.avg_pool1d(x, 3, stride=1, padding=1, count_include_pad=False)), "refuse",
         "edge divisors not yet streamed"),
    Case("pool.adaptive_pool", lambda: Net(lambda x, m, p, f: f(p(m(x)).flatten(1)), conv(), nn.AdaptiveMaxPool1d(1), nn.Linear(3, 2)),
         "win"),
    Case("pool.adaptive_pool", lambda: Net(lambda x, m: F.adaptive_avg_pool1d(m(x), 1), conv()), "refuse",
         "continuous mode has no whole axis"),
    # reductions
    Case("reduce.along_axis", lambda: Net(lambda x, m: F.softmax(m(x), dim=1), conv()), "cont", "over channels"),
    Case("reduce.along_axis", lambda: Net(lambda x, m: F.softmax(m(x), dim=-1).sum(1), conv()), "win", "over time: the head"),
    Case("reduce.cumsum", lambda: Net(lambda x, m: torch.cumsum(m(x), dim=-1), conv()), "cont"),
    Case("reduce.dim_module", lambda: Net(lambda x, m, g: g(m(x)), conv(c_out=4), nn.GLU(dim=1)), "cont"),
    Case("reduce.dim_module", lambda: Net(lambda x, m, s: s(m(x)), conv(), nn.LogSoftmax(dim=1)), "cont"),
    Case("reduce.glu", lambda: Net(lambda x, m: F.glu(m(x), 1), conv(c_out=4)), "cont"),
    Case("reduce.reduction", lambda: Net(lambda x, m: m(x).amax(1, keepdim=True) + m(x).std(1, keepdim=True), conv()), "cont",
         "over channels"),
    Case("reduce.reduction", lambda: Net(lambda x, m: m(x).mean(-1), conv()), "win", "over time: the head"),
    Case("reduce.reduction", lambda: Net(lambda x, m: m(x).mean(-1), conv()), "refuse", "over time, continuous"),
    # recurrences
    Case("rnn.recurrence", lambda: Net(lambda x, r: r(x.transpose(1, 2))[0].transpose(1, 2), nn.GRU(C, 3, batch_first=True)), "cont"),
    Case("rnn.recurrence", lambda: Net(lambda x, r: r(x.permute(2, 0, 1))[0].permute(1, 2, 0), nn.LSTM(C, 3)), "cont"),
    Case("rnn.recurrence",
         lambda: Net(lambda x, r: r(x.transpose(1, 2))[0].transpose(1, 2), nn.GRU(C, 3, batch_first=True, bidirectional=True)),
         "refuse", "bidirectional: needs the future"),
    # shapes
    Case("shape.attribute", lambda: Net(lambda x, m: m(x) + torch.zeros(1, dtype=getattr(x, "dtype")), conv()), "cont"),
    Case("shape.cat", lambda: Net(lambda x, m: torch.cat([x[:, :, 2:], m(x)], dim=1), conv()), "cont"),
    Case("shape.flatten", lambda: Net(lambda x, m: m(planes(x)).flatten(1, 2), conv2()), "cont"),
    Case("shape.flatten_module", lambda: Net(lambda x, m, f: f(m(planes(x))), conv2(), nn.Flatten(1, 2)), "cont"),
    Case("shape.getitem", lambda: Net(lambda x, m: m(x)[:, 1:][..., 3:], conv()), "cont"),
    Case("shape.getitem", lambda: Net(lambda x, m: m(x)[:, 1:, 3:], conv()), "refuse", "time and channels sliced at once"),
    Case("linear.matmul", lambda: Net(lambda x: x @ x.transpose(1, 2)), "refuse", "a product over the time axis"),
    Case("shape.mixing_method", lambda: Net(lambda x: x.repeat(1, 1, 2)), "refuse", "repeats the time axis"),
    Case("shape.movedim", lambda: Net(lambda x, n: n(x.movedim(1, -1)).movedim(-1, 1), nn.LayerNorm(C)), "cont"),
    Case("shape.narrow", lambda: Net(lambda x, m: m(x).narrow(1, 1, 2), conv()), "cont"),
    Case("shape.ndim", lambda: Net(lambda x, m: m(x).unsqueeze(x.dim() - 1).squeeze(2), conv()), "cont"),
    Case("shape.permute", lambda: Net(lambda x, n: n(x.permute(0, 2, 1)).permute(0, 2, 1), nn.LayerNorm(C)), "cont"),
    Case("shape.select", lambda: Net(lambda x, m: m(planes(x)).select(2, 0), conv2()), "cont"),
    Case("shape.size", lambda: Net(lambda x, m: m(x).view(x.size(0), 3, 1, -1).squeeze(2), conv()), "cont"),
    Case("shape.split", lambda: Net(lambda x, m: torch.tanh(m(x).split(2, dim=1)[0]) * m(x).chunk(2, dim=1)[1][:, :1],
         conv(c_out=4)), "cont"),
    Case("shape.squeeze", lambda: Net(lambda x, m: m(planes(x)).squeeze(), conv2(c_out=1)), "cont", "squeeze() keeps time"),
    Case("shape.stack", lambda: Net(lambda x, m: torch.stack([x, m(x)], dim=1).flatten(1, 2), conv(c_out=C, padding=1)), "cont"),
    Case("shape.transpose", lambda: Net(lambda x, f: f(x.transpose(-1, -2)).transpose(-1, -2), nn.Linear(C, 2)), "cont"),
    Case("shape.unbind", lambda: Net(lambda x, m: (m(x).unbind(1)[0] * m(x).unbind(dim=1)[2]).unsqueeze(1), conv()), "cont"),
    Case("shape.unbind", lambda: Net(lambda x, m: sum(m(x).unbind(1)).unsqueeze(1), conv()), "cont", "iterated: the export route"),
    Case("shape.unflatten", lambda: Net(lambda x, m: m(x).unflatten(1, (2, 2)).sum(1), conv(c_out=4)), "cont"),
    Case("shape.unsqueeze", lambda: Net(lambda x, m: m(x.unsqueeze(1)).squeeze(1), nn.Conv2d(1, 1, (1, 3))), "cont"),
    # gating (thinkonce.gating): causal gates stream, global gates decide once per window (the head)
    Case("stream_ops.gate", lambda: gated_seq("causal"), "cont", "causal LKAM: running mean"),
    Case("stream_ops.mask", lambda: gated_seq("causal"), "cont"),
    Case("stream_ops.gate", lambda: gated_seq(), "win", "global LKAM: once per window"),
    Case("stream_ops.gate", lambda: gated_seq(), "refuse", "global LKAM, continuous"),
    Case("stream_ops.gathered", lambda: gating.deploy(gated_seq()), "win", "deployed: after the gate, in the head",
         reaches=False),
    Case("shape.view", lambda: Net(lambda x, m: m(x).reshape(x.shape[0], 2, 2, -1).mean(2), conv(c_out=4)), "cont"),
    # SOI (thinkonce.soi): S-CC / shifted convs, the fills and their crop to full rate
    Case("ops.soi_conv_op", lambda: Net(lambda x, s, f: x + f(torch.tanh(s(x)), like=x),
                                        soi.StridedClonedConv1d(C, C, 3, dilation=2), soi.Extrapolate("duplicate")),
         "cont", "S-CC, PP"),
    Case("ops.soi_conv_op", lambda: Net(lambda x, s, d, f: x + f(d(torch.tanh(s(x))), like=x),
                                        soi.ShiftedStridedClonedConv1d(C, C, 2), soi.ShiftedConv1d(C, C, 3),
                                        soi.Extrapolate("tconv", channels=C)),
         "cont", "shifted S-CC and shifted conv, FP"),
    Case("ops.soi_conv_op", lambda: Net(lambda x, s, f: (planes(x) + f(s(planes(x)), like=planes(x))).flatten(1, 2),
                                        soi.StridedClonedConv2d(1, 1, (3, 2), padding=1),
                                        soi.Extrapolate("hybrid", channels=1, dim=2)),
         "cont", "2-D S-CC"),
    Case("ops.soi_conv_op", lambda: Net(lambda x, s: s(x), soi.StridedClonedConv1d(C, 3, 3)), "win",
         "S-CC in a window trunk"),
    Case("ops.duplicate_op", lambda: Net(lambda x, s: soi_fill.duplicate(s(x)), soi.StridedClonedConv1d(C, 3, 3)), "cont"),
    Case("ops.crop_like_op", lambda: Net(lambda x, s: soi_fill.crop_like(soi_fill.duplicate(s(x)), x), soi.StridedClonedConv1d(C, C, 1)),
         "cont"),
    Case("ops.crop_like_op", lambda: Net(lambda x, s: soi_fill.crop_like(x, torch.zeros(1, C, 8)), soi.StridedClonedConv1d(C, C, 1)),
         "refuse", "like= without a time axis of the stream"),
    Case("ops.interpolate_op", lambda: Net(lambda x, s, f: x + f(s(x), like=x), soi.ShiftedStridedClonedConv1d(C, C, 3),
                                           soi.Interpolate("cubic")), "cont"),
    Case("ops.interpolate_op", lambda: Net(lambda x, s: soi_fill.interpolate(s(x), "linear"), soi.StridedClonedConv1d(C, C, 2)),
         "cont", "uncropped"),
]


def _builder_name(build: Callable) -> str:
    return build.__module__.split(".")[-1] + "." + build.__qualname__


def test_every_registered_builder_has_an_example() -> None:
    registered = {_builder_name(b) for b in (*registry._MODULES.values(), *registry._TARGETS.values())}
    covered = {c.builder for c in CASES}
    missing = sorted(registered - covered)
    assert not missing, f"registered builders without a property-test example in CASES: {missing}"
    stale = sorted(covered - registered)
    assert not stale, f"examples for builders that are no longer registered: {stale}"


def _ids(c: Case) -> str:
    return f"{c.builder}[{c.mode}{':' + c.note if c.note else ''}]"


def _builder_used(case: Case) -> None:
    """The example really reaches its builder (guards against an example that tests something else)."""
    calls: list[str] = []
    originals = {}
    for table in (registry._MODULES, registry._TARGETS):
        for key, build in table.items():
            if _builder_name(build) == case.builder:
                def spy(ctx, _b=build):
                    calls.append(case.builder)
                    return _b(ctx)
                originals[(id(table), key)] = (table, key, build)
                table[key] = spy
    try:
        model = case.make().eval()
        try:
            if case.mode == "win":
                to.stream(model, window=48, hop=12, example_input=torch.zeros(1, C, 48), check=False)
            else:
                to.stream(model, example_input=torch.zeros(1, C, 64), check=False)
        except ThinkonceError:
            pass
    finally:
        for table, key, build in originals.values():
            table[key] = build
    assert calls, f"{_ids(case)}: the example never reached builder {case.builder}"


@pytest.mark.parametrize("case", [c for c in CASES if c.reaches], ids=_ids)
def test_example_reaches_its_builder(case: Case) -> None:
    _builder_used(case)


def _continuous(case: Case, seed: int, length: int, chunks: list[int]) -> None:
    torch.manual_seed(seed)
    model = case.make().eval()
    x = torch.randn(2, C, length)
    with torch.no_grad():
        ref = model(x)
    s = to.stream(model, example_input=x[:1])
    assert_close(s.run(x, chunks), ref)


def _window(case: Case, seed: int, chunks: list[int]) -> None:
    torch.manual_seed(seed)
    model = case.make().eval()
    W, H, n = 48, 12, 6
    s = to.stream(model, window=W, hop=H, example_input=torch.zeros(1, C, W))
    x = torch.randn(2, C, W + (n - 1) * H)
    y = s.run(x, chunks)
    assert y.shape[1] == n, (y.shape, n)
    E = s.extension
    xp = torch.cat([x.new_zeros(2, C, E), x], dim=-1)
    with torch.no_grad():
        ref = torch.stack([s.reference(xp[..., k * H : k * H + W + E]) for k in range(n)], dim=1)
    assert_close(y, ref)


@pytest.mark.parametrize("case", [c for c in CASES if c.mode != "refuse"], ids=_ids)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16), length=st.integers(60, 140),
       chunks=st.lists(st.integers(0, 29), min_size=1, max_size=6).filter(lambda c: sum(c) > 0))
def test_registered_op_streams_exactly(case: Case, seed: int, length: int, chunks: list[int]) -> None:
    if case.mode == "cont":
        _continuous(case, seed, length, chunks)
    else:
        _window(case, seed, chunks)


@pytest.mark.parametrize("case", [c for c in CASES if c.mode == "refuse"], ids=_ids)
def test_registered_op_refuses_with_a_reason(case: Case) -> None:
    model = case.make().eval()
    with pytest.raises(ThinkonceError) as err:
        to.stream(model, example_input=torch.zeros(1, C, 64))
    assert len(str(err.value)) > 20, str(err.value)
