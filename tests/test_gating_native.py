"""Native gated inference (thinkonce.gating.native) equals the deployed PyTorch model, which equals the
masked dense computation (tests/test_gating.py): random gated CNNs (1-D and 2-D, strides, dilations,
pooling, residual sums, groups of kernels, budgets), batch 1 and batched, every input with its own
switches; plain CNNs too (the dense baseline the benchmarks compare with)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings, strategies as st

from nets import assert_close
from thinkonce import gating
from thinkonce.gating import GateError
from thinkonce.native.backend import available

pytestmark = pytest.mark.skipif(not available(), reason="no C compiler")


class Net(nn.Module):
    """conv blocks from a drawn recipe; optional residual block; global mean; Linear head."""

    def __init__(self, dim: int, recipe: list[dict], residual: bool, act: str, cin: int = 2) -> None:
        super().__init__()
        conv, bn, mp, ap = ((nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d) if dim == 2 else
                            (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AvgPool1d))
        layers: list[nn.Module] = []
        c = cin
        for r in recipe:
            layers.append(conv(c, r["out"], r["k"], stride=r["stride"], padding=r["pad"], dilation=r["dil"],
                               bias=r["bias"]))
            if r["bn"]:
                layers.append(bn(r["out"]))
            layers.append({"relu": nn.ReLU(), "leaky": nn.LeakyReLU(0.1), "tanh": nn.Tanh(), "silu": nn.SiLU(),
                           "gelu": nn.GELU()}[act])
            if r["pool"] == "max":
                layers.append(mp(2))
            elif r["pool"] == "avg":
                layers.append(ap(2))
            c = r["out"]
        self.body = nn.Sequential(*layers)
        self.res = conv(c, c, 3, padding=1) if residual else None
        self.fc = nn.Linear(c, 3)

    def forward(self, x):
        h = self.body(x)
        if self.res is not None:
            h = h + torch.relu(self.res(h))
        return self.fc(h.flatten(2).mean(-1))


layer = st.fixed_dictionaries({
    "out": st.integers(1, 19), "k": st.sampled_from([1, 2, 3, 5]), "stride": st.sampled_from([1, 1, 2]),
    "pad": st.integers(0, 2), "dil": st.sampled_from([1, 1, 2]), "bias": st.booleans(), "bn": st.booleans(),
    "pool": st.sampled_from([None, None, "max", "avg"])})


def build(dim, recipe, residual, act, seed, group, spread):
    torch.manual_seed(seed)
    m = Net(dim, recipe, residual, act)
    for b in m.modules():
        if isinstance(b, (nn.BatchNorm1d, nn.BatchNorm2d)):
            b.running_mean.normal_()
            b.running_var.uniform_(0.5, 2.0)
            b.weight.data.normal_()
            b.bias.data.normal_()
    m.eval()
    try:
        g = gating.insert(m, after="all", group=group)
    except GateError:
        return m, None
    for lk in gating.gates(g).values():
        lk.proj.weight.data.normal_(std=spread)
        lk.proj.bias.data.normal_()
    return m, g.eval()


def fits(recipe, sizes):
    return all(_fits(recipe, n) for n in sizes)


def _fits(recipe, n):
    for r in recipe:
        n = (n + 2 * r["pad"] - r["dil"] * (r["k"] - 1) - 1) // r["stride"] + 1
        if n < 1:
            return False
        if r["pool"]:
            n //= 2
            if n < 1:
                return False
    return True


@settings(max_examples=25, deadline=None)
@given(dim=st.sampled_from([1, 2]), recipe=st.lists(layer, min_size=1, max_size=4), residual=st.booleans(),
       act=st.sampled_from(["relu", "leaky", "tanh", "silu", "gelu"]), seed=st.integers(0, 10_000),
       batch=st.integers(1, 4), group=st.sampled_from([1, 1, 2]), spread=st.sampled_from([0.5, 3.0]),
       threshold=st.floats(0.1, 0.9), budget=st.sampled_from([1.0, 1.0, 0.5]))
def test_native_equals_deployed_on_random_gated_nets(dim, recipe, residual, act, seed, batch, group, spread,
                                                     threshold, budget):
    size = 16 if dim == 2 else 40
    if not fits(recipe, (size, size - 3) if dim == 2 else (size,)):
        return
    if group > 1:
        for r in recipe:
            r["out"] += r["out"] % 2  # a group must divide the kernels it switches
    base, g = build(dim, recipe, residual, act, seed, group, spread)
    torch.manual_seed(seed + 1)
    x = torch.randn(batch, 2, *((size, size - 3) if dim == 2 else (size,)))
    with torch.no_grad():
        nd = gating.native(base, x)  # the plain CNN (dense baseline)
        assert_close(nd(x), base(x))
        if g is None:
            return
        dep = gating.deploy(g, threshold=threshold, budget=budget)
        ng = gating.native(dep, x)
        ref = dep(x)
        assert_close(ng(x), ref)
        for i in range(batch):  # batch 1: the main case
            assert_close(ng(x[i:i + 1]), ref[i:i + 1])
        assert_close(ng(x), g.eval()(x) if threshold == 0.5 and budget == 1.0 else ref)
        engaged = ng.engaged
        assert engaged is not None and engaged.shape == (batch, len(gating.gates(g)))
        n_kernels = [lk.n_kernels for lk in gating.gates(g).values()]
        assert all(0 <= int(e) <= n for row in engaged.tolist() for e, n in zip(row, n_kernels))


def test_engaged_counts_match_the_gates_and_nothing_engaged_still_answers():
    torch.manual_seed(0)
    recipe = [dict(out=8, k=3, stride=1, pad=1, dil=1, bias=True, bn=True, pool="max"),
              dict(out=12, k=3, stride=1, pad=1, dil=1, bias=True, bn=True, pool=None),
              dict(out=6, k=3, stride=1, pad=1, dil=1, bias=True, bn=False, pool=None)]
    base, g = build(2, recipe, False, "relu", 0, 1, 2.0)
    x = torch.randn(5, 2, 12, 12)
    dep = gating.deploy(g)
    ng = gating.native(dep, x)
    with torch.no_grad():
        assert_close(ng(x), dep(x))
    shares = gating.engaged(g, x)
    want = torch.stack([(s * lk.n_kernels).round() for s, lk in zip(shares.values(), gating.gates(g).values())], 1)
    assert torch.equal(ng.engaged.to(want.dtype), want)
    for lk in gating.gates(g).values():  # every kernel off: the output is the bias path only
        lk.proj.bias.data.fill_(-50.0)
    dep = gating.deploy(g)
    with torch.no_grad():
        assert_close(gating.native(dep, x)(x), dep(x))


def test_refusals_name_the_node_and_the_fix():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv1d(2, 4, 3, groups=2)

        def forward(self, x):
            return self.c(x).sum(-1)

    with pytest.raises(GateError, match=r"'c'.*groups=2"):
        gating.native(Odd().eval(), torch.randn(1, 2, 9))

    class Cumsum(nn.Module):
        def forward(self, x):
            return torch.cumsum(x, -1)

    with pytest.raises(GateError, match=r"cumsum.*no lowering.*deploy"):
        gating.native(Cumsum(), torch.randn(1, 2, 9))
    nd = gating.native(nn.Sequential(nn.Conv1d(2, 3, 3), nn.Flatten()).eval(), torch.randn(1, 2, 9))
    with pytest.raises(ValueError, match=r"float32 input of shape \(batch, 2, 9\)"):
        nd(torch.randn(1, 2, 10))
