"""``thinkonce.analyze`` and the zero-padding reach on every SOI layer: each op's taint rule equals the
frames a real context changes (measured by running the graph), so the analysis of an SOI model is exact."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import thinkonce as to
import thinkonce.soi as soi
from thinkonce.stream.bounds import empirical_padding_reach, zero_padding_reach
from thinkonce.stream.convert import Converter

FILLS = soi.EXTRAPOLATE_MODES + soi.INTERPOLATE_MODES


class Level(nn.Module):
    """conv -> S-CC (plain or shifted) -> shifted conv -> fill cropped to the S-CC input, added back."""

    def __init__(self, fill: str, fp: bool, pad: tuple[int, int]) -> None:
        super().__init__()
        self.pad = pad
        self.c = nn.Conv1d(1, 3, 3)
        self.e = (soi.ShiftedStridedClonedConv1d if fp else soi.StridedClonedConv1d)(3, 3, 2)
        self.sh = soi.ShiftedConv1d(3, 3, 2)
        self.f = soi.Interpolate(fill) if fill in soi.INTERPOLATE_MODES else soi.Extrapolate(fill, channels=3)
        with torch.no_grad():
            for p in self.f.parameters():
                p.add_(0.3 * torch.randn_like(p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.tanh(self.c(F.pad(x, self.pad)))
        d = self.sh(torch.tanh(self.e(a)))
        return a + self.f(d, like=a)


class Uncropped(nn.Module):
    """A fill without ``like`` (two frames per computed one), then a strided conv back to whole samples."""

    def __init__(self, fill: str) -> None:
        super().__init__()
        self.e = soi.StridedClonedConv1d(1, 2, 3)
        self.f = soi.Interpolate(fill) if fill in soi.INTERPOLATE_MODES else soi.Extrapolate(fill, channels=2)
        self.out = nn.Conv1d(2, 2, 2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.f(torch.tanh(self.e(x))))


def _reach(model: nn.Module, window: int) -> tuple[dict, dict]:
    plan = Converter(model.eval(), torch.zeros(2, 1, window), window).convert()
    analytic = {r["node"]: (r["left"], r["right"]) for r in zero_padding_reach(plan, every_value=True)}
    empirical = {r["node"]: (r["left_cover"], r["right_cover"])
                 for r in empirical_padding_reach(plan, trials=8, every_value=True)}
    return analytic, empirical


@pytest.mark.parametrize("fill", FILLS)
def test_analyze_every_soi_layer_and_its_reach_is_exact(fill: str) -> None:
    torch.manual_seed(FILLS.index(fill))
    for fp in (False, True):
        for pad in ((1, 1),) if fp else ((2, 0), (1, 1)):
            model = Level(fill, fp, pad).eval()
            res = to.analyze(model, 40, example_input=torch.zeros(2, 1, 40))
            types = [lay.type for lay in res.layers]
            assert types[0] == "Conv1d" and types[1].endswith("StridedClonedConv1d") and "ShiftedConv1d" in types
            assert res.stride_period == 2 and res.layers[-1].rate == 1 and res.head_frames == 40
            analytic, empirical = _reach(model, 40)
            assert analytic == empirical, (fill, fp, pad)
    for window in (21,):
        analytic, empirical = _reach(Uncropped(fill), window)
        assert analytic == empirical, (fill, window)
        res = to.analyze(Uncropped(fill).eval(), window, example_input=torch.zeros(2, 1, window))
        assert res.layers[-1].rate == 1
