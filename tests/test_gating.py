"""thinkonce.gating: deployed (gathered) execution equals the masked dense computation; bad input is refused."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings, strategies as st

from nets import assert_close
from thinkonce import count_macs, gating
from thinkonce.gating import GateError


class VGG(nn.Module):
    """conv-BN-ReLU blocks with pooling, a conv without BN, a Linear head on the pooled last conv."""

    def __init__(self, dim: int = 2, width: tuple[int, ...] = (8, 16, 16, 8)) -> None:
        super().__init__()
        conv, bn, pool = ((nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d) if dim == 2 else
                          (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d))
        self.c1, self.b1 = conv(2, width[0], 3, padding=1), bn(width[0])
        self.c2, self.b2 = conv(width[0], width[1], 3, padding=1), bn(width[1])
        self.pool = pool(2)
        self.c3 = conv(width[1], width[2], 3, padding=1)
        self.c4 = conv(width[2], width[3], 3)
        self.fc = nn.Linear(width[3], 5)

    def forward(self, x):
        x = torch.relu(self.b1(self.c1(x)))
        x = self.pool(torch.relu(self.b2(self.c2(x))))
        x = torch.relu(self.c3(x))
        return self.fc(self.c4(x).flatten(2).mean(-1))


def randomized(dim: int, seed: int, group: int = 1, after="all", bias: float = 0.0) -> nn.Module:
    """A gated VGG with random BN statistics and random gates (about half the kernels on)."""
    torch.manual_seed(seed)
    m = VGG(dim)
    for b in (m.b1, m.b2):
        b.running_mean.normal_()
        b.running_var.uniform_(0.5, 2.0)
        b.weight.data.normal_()
        b.bias.data.normal_()
    g = gating.insert(m, after=after, group=group)
    for lk in gating.gates(g).values():
        lk.proj.weight.data.normal_(std=2.0)
        lk.proj.bias.data.normal_(mean=bias)
    return g.eval()


def inputs(dim: int, batch: int, seed: int) -> torch.Tensor:
    torch.manual_seed(seed + 1000)
    return torch.randn(batch, 2, *((12, 10) if dim == 2 else (24,)))


@settings(max_examples=15, deadline=None)
@given(dim=st.sampled_from([1, 2]), seed=st.integers(0, 10_000), batch=st.integers(1, 6),
       group=st.sampled_from([1, 2, 4]), threshold=st.floats(0.05, 0.95),
       crossover=st.sampled_from([0.0, 0.5, 1.0]), mode=st.sampled_from(["union", "split"]))
def test_deploy_equals_masked_dense(dim, seed, batch, group, threshold, crossover, mode):
    g = randomized(dim, seed, group)
    for lk in gating.gates(g).values():
        lk.threshold = threshold
    x = inputs(dim, batch, seed)
    dep = gating.deploy(g, threshold=threshold, batch=mode, crossover=crossover)
    with torch.no_grad():
        ref = g(x)
        assert_close(dep(x), ref)
        for i in range(batch):  # batch 1, each input with its own kernels
            assert_close(dep(x[i:i + 1]), ref[i:i + 1])


def test_deploy_many_inputs_and_partial_gating():
    for dim in (1, 2):
        for after in (["c1"], ["c2", "c3"], ["c3", "c1"]):
            g = randomized(dim, 3, after=after)
            dep = gating.deploy(g)
            x = inputs(dim, 32, 7)
            with torch.no_grad():
                ref = g(x)
                assert_close(dep(x), ref)
                for i in range(0, 32, 8):
                    assert_close(dep(x[i:i + 1]), ref[i:i + 1])
            shares = gating.engaged(g, x)
            assert all(0.0 < float(s.mean()) < 1.0 for s in shares.values()), shares  # the test gates for real


@pytest.mark.parametrize("bias", [-50.0, 50.0])
def test_all_off_and_all_on(bias):
    g = randomized(2, 1, bias=bias)
    for lk in gating.gates(g).values():
        lk.proj.weight.data.zero_()
    x = inputs(2, 3, 1)
    dep = gating.deploy(g)
    with torch.no_grad():
        assert_close(dep(x), g(x))
        assert_close(dep(x[:1]), g(x[:1]))
    assert all(float(s.mean()) == (1.0 if bias > 0 else 0.0) for s in gating.engaged(g, x).values())


def conv_macs(g: nn.Module, x: torch.Tensor) -> int:
    """MACs of the convs with only the engaged kernels (1-D VGG, batch 1), from the engaged pattern."""
    on = {}
    hooks = [lk.register_forward_hook(lambda m, i, o, n=n: on.__setitem__(n, int(o.sum()))) for n, lk in
             gating.gates(g).items()]
    with torch.no_grad():
        g(x)
    for h in hooks:
        h.remove()
    c1, c2, c3, c4 = (g.get_submodule(n) for n in ("c1", "c2", "c3", "c4"))
    o2, o3, o4 = on["gate_c1"], on["gate_c2"], on["gate_c3"]
    t = x.shape[-1]
    convs = (c1.out_channels * 2 * 3 * t + o2 * c1.out_channels * 3 * t + o3 * o2 * 3 * (t // 2)
             + o4 * o3 * 3 * (t // 2 - 2))
    gates = c1.out_channels * c2.out_channels + o2 * c3.out_channels + o3 * c4.out_channels  # gates read compact inputs
    head = c4.out_channels * 5  # the Linear reads the expanded channels
    return convs + gates + head


def test_count_macs_counts_only_engaged_kernels():
    g = randomized(1, 5)
    dep = gating.deploy(g)
    for i in range(4):
        x = inputs(1, 1, i)
        assert count_macs(dep, x) == conv_macs(g, x)
        assert count_macs(dep, x) < count_macs(g, x)


def test_budget_knob():
    g = randomized(2, 2, bias=10.0)
    x = inputs(2, 8, 2)
    dep = gating.deploy(g, budget=0.25)
    for lk in gating.gates(g).values():
        lk.budget = 0.25
    with torch.no_grad():
        assert_close(dep(x), g(x))
    for n, s in gating.engaged(g, x).items():
        assert float(s.max()) <= math.ceil(0.25 * gating.gates(g)[n].n_switches) / gating.gates(g)[n].n_switches
    dep.set_budget(1.0).set_threshold(0.99)
    for lk in gating.gates(g).values():
        lk.budget, lk.threshold = 1.0, 0.99
    with torch.no_grad():
        assert_close(dep(x), g(x))


def test_insert_does_not_modify_the_original():
    torch.manual_seed(0)
    m = VGG(2).eval()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    x = inputs(2, 2, 0)
    with torch.no_grad():
        y = m(x)
        g = gating.insert(m, after="all")
        gating.deploy(g.eval())
        assert not any(isinstance(s, gating.LKAM) for s in m.modules())
        assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
        assert torch.equal(m(x), y)
        assert_close(g(x), y)  # gates start all on: the gated model starts as the original


def test_sparsity_loss_is_the_papers_cost():
    g = randomized(2, 4)
    g.train()
    g(inputs(2, 3, 4))
    gs = gating.gates(g)
    expect = sum(0.5 / (2 * lk.n_switches) * lk.probs.sum(1).mean() for lk in gs.values())
    assert torch.allclose(gating.sparsity_loss(g, 0.5), expect)
    one = gating.sparsity_loss(g, {"c1": 2.0})
    assert torch.allclose(one, 2.0 / (2 * gs["gate_c1"].n_switches) * gs["gate_c1"].probs.sum(1).mean())
    one.backward()
    assert gs["gate_c1"].proj.weight.grad is not None and gs["gate_c2"].proj.weight.grad is None


@pytest.mark.parametrize("relax", ["ste", "anneal", "gumbel"])
def test_relaxations_train_and_eval_is_hard(relax):
    g = randomized(1, 6)
    for lk in gating.gates(g).values():
        lk.relax = relax
        lk.temperature = 0.5
    g.train()
    x = inputs(1, 4, 0)
    (g(x).square().mean() + gating.sparsity_loss(g, 1.0)).backward()
    assert all(lk.proj.weight.grad is not None and lk.proj.weight.grad.abs().sum() > 0 for lk in gating.gates(g).values())
    g.eval()
    for lk in gating.gates(g).values():
        o = lk(torch.randn(3, lk.in_channels, 5))
        assert set(o.unique().tolist()) <= {0.0, 1.0}


def test_bad_input_is_refused_with_the_fix():
    m = VGG(2)
    with pytest.raises(GateError, match=r"unknown conv layer 'conv9'.*\['c1', 'c2', 'c3', 'c4'\]"):
        gating.insert(m, after=["conv9"])
    with pytest.raises(GateError, match="'c4' is not followed by a conv"):
        gating.insert(m, after=["c4"])
    with pytest.raises(GateError, match="list of conv layer names or 'all'"):
        gating.insert(m, after="c1")
    with pytest.raises(GateError, match="names a layer twice"):
        gating.insert(m, after=["c1", "c1"])
    with pytest.raises(ValueError, match="group=3 must divide n_kernels=16"):
        gating.insert(m, after=["c1"], group=3)
    with pytest.raises(GateError, match="no nn.Conv1d or nn.Conv2d"):
        gating.insert(nn.Sequential(nn.Linear(3, 3)))
    with pytest.raises(GateError, match="feeds 2 nodes"):
        class Branch(nn.Module):
            def __init__(self):
                super().__init__()
                self.a, self.b = nn.Conv1d(1, 4, 3), nn.Conv1d(4, 4, 3)

            def forward(self, x):
                h = torch.relu(self.a(x))
                return self.b(h) + h.mean()
        gating.insert(Branch(), after=["a"])
    g = gating.insert(m, after=["c1"])
    with pytest.raises(GateError, match="gain for unknown layer 'c3'.*gate_c1"):
        gating.sparsity_loss(g, {"c3": 1.0})
    with pytest.raises(GateError, match="after a forward pass in training mode"):
        gating.sparsity_loss(g, 1.0)
    with pytest.raises(GateError, match="needs a gated model"):
        gating.deploy(m)
    with pytest.raises(ValueError, match="threshold must lie strictly between 0 and 1"):
        gating.deploy(g, threshold=1.0)
    with pytest.raises(ValueError, match="unknown batch mode"):
        gating.deploy(g, batch="fast")
    with pytest.raises(ValueError, match=r"expects \(batch, 8, \*spatial\)"):
        gating.gates(g)["gate_c1"](torch.randn(1, 3, 4))
