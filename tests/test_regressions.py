"""Regression tests for the silent wrong answers and hangs found while trying published models (issue 8)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
import pytest

import thinkonce as to
from nets import assert_close as _exact


class PaddedConv(nn.Conv1d):
    """A Conv1d subclass whose forward pads causally, then calls ``super().forward`` (padding=0)."""

    def forward(self, x):
        return super().forward(F.pad(x, ((self.kernel_size[0] - 1) * self.dilation[0], 0)))


def test_conv_subclass_with_own_forward_and_weight_norm_is_traced_through() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.utils.parametrizations.weight_norm(PaddedConv(2, 4, 3, dilation=2)), nn.ReLU(),
                        nn.utils.weight_norm(PaddedConv(4, 3, 5))).eval()
    x = torch.randn(2, 2, 120)
    s = to.stream(net, example_input=x[:1])
    _exact(s.run(x, chunk=[7, 1, 0, 13]), net(x))


def test_time_length_read_from_shape_is_refused_in_continuous_mode() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(1, 2, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            B, C, T = y.shape
            return y / T

    with pytest.raises(to.UnsupportedNodeError, match="length of the time axis"):
        to.stream(Net().eval(), example_input=torch.zeros(1, 1, 32))


def test_time_length_in_window_mode_is_the_windows() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(1, 3, 5, padding=2)
            self.fc = nn.Linear(3, 1)

        def forward(self, x):
            h = F.relu(self.conv(x))
            return self.fc(h.sum(-1) / x.shape[-1])

    torch.manual_seed(1)
    net = Net().eval()
    s = to.stream(net, window=32, hop=8)  # the self-check compares with the signal-padded reference
    x = torch.randn(1, 1, 32 + 2 * 8)
    y = s.run(x)
    assert y.shape[1] == 3


def test_head_view_on_the_feature_buffer() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(1, 4, 5, padding=2)
            self.fc = nn.Linear(4 * 64, 2)

        def forward(self, x):
            h = self.conv(x)
            return self.fc(h.view(h.size(0), -1))

    s = to.stream(Net().eval(), window=64, hop=16)
    y = s.run(torch.randn(1, 1, 64 + 5 * 16), chunk=[3, 16, 1, 29])
    assert y.shape == (1, 6, 2)


def test_backward_hook_does_not_hang_the_converter() -> None:
    conv = nn.Conv1d(1, 2, 3)
    conv.register_full_backward_hook(lambda *a: None)
    net = nn.Sequential(conv, nn.ReLU()).eval()
    x = torch.randn(1, 1, 40)
    _exact(to.stream(net, example_input=x).run(x, chunk=5), net(x))


def test_forward_hooks_are_refused() -> None:
    conv = nn.Conv1d(1, 2, 3)
    conv.register_forward_hook(lambda m, i, o: o * 2)
    with pytest.raises(to.UnsupportedNodeError, match="forward hooks"):
        to.stream(nn.Sequential(conv).eval(), example_input=torch.zeros(1, 1, 16))


@pytest.mark.parametrize("backend", ["eager", "compiled"])
def test_stride_periods_that_are_not_powers_of_one_number(backend) -> None:
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv1d(1, 2, 2, stride=2), nn.Upsample(scale_factor=4), nn.Conv1d(2, 2, 3, stride=3)).eval()
    x = torch.randn(1, 1, 6 * 24)
    s = to.stream(net, example_input=x, backend=backend)
    _exact(s.run(x, chunk=[6, 6, 12, 6]), net(x))


def test_run_with_chunk_zero_raises() -> None:
    s = to.stream(nn.Sequential(nn.Conv1d(1, 1, 3)).eval(), example_input=torch.zeros(1, 1, 16))
    with pytest.raises(ValueError, match="chunk"):
        s.run(torch.zeros(1, 1, 10), chunk=0)


def test_pure_pooling_net_streams_without_example() -> None:
    net = nn.Sequential(nn.MaxPool1d(2), nn.AvgPool1d(3, stride=1)).eval()
    s = to.stream(net)
    x = torch.randn(1, 1, 50)
    _exact(s.run(x, chunk=[4, 2]), net(x))


def test_chomp_trim_is_a_trim_not_a_head() -> None:
    class Chomp(nn.Module):
        def forward(self, x):
            return x[:, :, :-4].contiguous()

    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv1d(1, 3, 5, padding=4), Chomp(), nn.ReLU(), nn.Conv1d(3, 2, 3, padding=2), Chomp()).eval()
    x = torch.randn(2, 1, 80)
    s = to.stream(net, example_input=x[:1])
    _exact(s.run(x, chunk=[1, 9, 0, 5]), net(x))
    w = to.stream(nn.Sequential(net, nn.AdaptiveAvgPool1d(1), nn.Flatten()).eval(), window=64, hop=16)
    assert sum(p.kind == "head" for p in w.plan.nodes) <= 3  # only the pooling and flatten


def test_reflect_padding_streams() -> None:
    torch.manual_seed(4)
    net = nn.Sequential(nn.Conv1d(2, 3, 5, padding=2, padding_mode="reflect"), nn.ReLU(),
                        nn.ReflectionPad1d((3, 0)), nn.Conv1d(3, 1, 4)).eval()
    x = torch.randn(2, 2, 70)
    _exact(to.stream(net, example_input=x[:1]).run(x, chunk=[1, 2, 3, 11]), net(x))


def test_self_check_refuses_a_wrong_registered_rule() -> None:
    class Doubler(nn.Module):
        def forward(self, x):
            return torch.cat([x[..., :1], x[..., :-1]], dim=-1) * 2  # a one-frame shift, not frame-wise

    class Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.d = Doubler()

        def forward(self, x):
            return self.d(x)

    to.register_framewise(Doubler)  # a wrong declaration: the self-check must catch it
    try:
        with pytest.raises(to.ConversionError, match="first node whose streamed values diverge is 'd'"):
            to.stream(Wrapped().eval(), example_input=torch.zeros(1, 1, 32))
    finally:
        from thinkonce.ops import registry

        registry._MODULES.pop(Doubler, None)


def test_window_head_taking_most_macs_warns_and_names_the_node() -> None:
    """Issue 8: a time-mixing op early in the net moves nearly all work into the per-window head; the
    stream says so (HeavyHeadWarning naming the node) instead of quietly saving nothing."""
    import warnings

    from thinkonce.errors import HeavyHeadWarning

    class EarlyMean(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c = nn.Conv1d(2, 4, 3), nn.Conv1d(4, 32, 5), nn.Conv1d(32, 32, 5)

        def forward(self, x):
            x = self.a(x)
            x = x - x.mean(-1, keepdim=True)  # a per-window normalisation: forces the head here
            return self.c(torch.relu(self.b(x))).mean(-1)

    with pytest.warns(HeavyHeadWarning, match="head starts at node 'mean'"):
        to.stream(EarlyMean().eval(), window=128, hop=32, example_input=torch.zeros(1, 2, 128))
    with warnings.catch_warnings():
        warnings.simplefilter("error", HeavyHeadWarning)  # the shipped net's head is small: no warning
        from thinkonce.models import ppg_hr

        to.stream(ppg_hr(pretrained=True), window=256, hop=64)
