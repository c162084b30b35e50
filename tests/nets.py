"""Random network builders shared by the property tests.

A network is a list of block specs drawn by hypothesis; ``RandomNet`` unrolls them in ``forward`` so
torch.fx sees plain code. Blocks cover every supported temporal layer and the branch combinations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import strategies as st


@dataclass(frozen=True)
class Block:
    kind: str  # conv | causal | pool | res | cat | convT | up | bn | act
    k: int = 3
    s: int = 1
    d: int = 1
    p: object = 0
    groups: int = 1
    extra: int = 0  # output_padding for convT, 1 = max pool / 0 = avg pool


class RandomNet(nn.Module):
    def __init__(self, blocks: list[Block], c_in: int, width: int = 4, head: str | None = None, frames: int = 0) -> None:
        super().__init__()
        self.blocks = list(blocks)
        mods = []
        c = c_in
        for b in blocks:
            if b.kind in ("conv", "causal"):
                g = b.groups if c % b.groups == 0 and width % b.groups == 0 else 1
                pad = 0 if b.kind == "causal" else b.p
                mods.append(nn.Conv1d(c, width, b.k, stride=b.s, dilation=b.d, padding=pad, groups=g))
                c = width
            elif b.kind == "pool":
                pool = nn.MaxPool1d if b.extra else nn.AvgPool1d
                mods.append(pool(b.k, stride=b.s, padding=min(b.p if isinstance(b.p, int) else 0, b.k // 2)))
            elif b.kind == "res":
                mods.append(nn.Conv1d(c, c, b.k, dilation=b.d, padding="same"))
            elif b.kind == "cat":
                mods.append(nn.Conv1d(c, 2, b.k, padding=b.p if isinstance(b.p, int) else 0))
                c = c + 2
            elif b.kind == "convT":
                mods.append(nn.ConvTranspose1d(c, width, b.k, stride=b.s, dilation=b.d, padding=b.p,
                                               output_padding=b.extra, groups=1))
                c = width
            elif b.kind == "up":
                mods.append(nn.Upsample(scale_factor=b.s, mode="nearest"))
            elif b.kind == "bn":
                bn = nn.BatchNorm1d(c)
                with torch.no_grad():
                    bn.running_mean.uniform_(-0.5, 0.5)
                    bn.running_var.uniform_(0.5, 2.0)
                    bn.weight.uniform_(0.5, 1.5)
                mods.append(bn)
            else:
                mods.append(nn.GELU())
        self.mods = nn.ModuleList(mods)
        self.head = head
        if head == "linear":
            self.fc = nn.Linear(c * frames, 3)
        elif head in ("mean", "adaptive"):
            self.fc = nn.Linear(c, 3)
            self.pool = nn.AdaptiveAvgPool1d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b, m in zip(self.blocks, self.mods):
            if b.kind == "causal":
                x = m(F.pad(x, ((b.k - 1) * b.d, 0)))
            elif b.kind == "res":
                x = x + torch.tanh(m(x))
            elif b.kind == "cat":
                x = torch.cat([x, m(x)], dim=1)
            else:
                x = m(x)
        if self.head == "linear":
            return self.fc(torch.flatten(x, 1))
        if self.head == "mean":
            return self.fc(x.mean(dim=-1))
        if self.head == "adaptive":
            return self.fc(self.pool(x).squeeze(-1))
        return x


def random_net_case(blocks: list, c_in: int, seed: int, batch: int, length: int):
    """The drawn :class:`RandomNet` (eval mode), a random input ``(batch, c_in, length)`` and the offline
    output, seeded by ``seed``; ``None`` when the drawn stack does not fit this length offline either."""
    torch.manual_seed(seed)
    model = RandomNet(blocks, c_in).eval()
    x = torch.randn(batch, c_in, length)
    try:
        with torch.no_grad():
            ref = model(x)
    except RuntimeError:
        return None
    return model, x, ref


@st.composite
def conv_block(draw, allow_stride: bool = True) -> Block:
    kind = draw(st.sampled_from(["conv", "conv", "causal", "pool", "res", "cat", "bn", "act"]))
    k = draw(st.integers(1, 7))
    d = draw(st.integers(1, 3))
    s = draw(st.integers(1, 2)) if allow_stride else 1
    if kind == "conv":
        pad = draw(st.sampled_from(["same", "valid", 0, 1, 2, 3]))
        if pad == "same":
            s = 1
        return Block("conv", k, s, d, pad, draw(st.sampled_from([1, 2])))
    if kind == "causal":
        return Block("causal", k, s, d)
    if kind == "pool":
        k = draw(st.integers(1, 4))
        return Block("pool", k, s if allow_stride else 1, 1, draw(st.integers(0, 2)), extra=draw(st.integers(0, 1)))
    if kind == "res":
        return Block("res", k, 1, d)
    if kind == "cat":
        return Block("cat", k, 1, 1, k // 2 if k % 2 else 0)
    return Block(kind)


@st.composite
def upsampling_block(draw) -> Block:
    if draw(st.booleans()):
        s = draw(st.integers(1, 3))
        k = draw(st.integers(1, 5))
        d = draw(st.integers(1, 2))
        p = draw(st.integers(0, d * (k - 1)))
        op = draw(st.integers(0, max(s, d) - 1))
        return Block("convT", k, s, d, p, extra=op)
    return Block("up", s=draw(st.integers(2, 3)))


@st.composite
def stack_case(draw, variants: list[str], max_blocks: int = 4):
    """(blocks, input channels, seed, variant): a random stack, sometimes with an upsampling block."""
    blocks = draw(st.lists(conv_block(), min_size=1, max_size=max_blocks))
    if draw(st.booleans()):
        blocks.insert(draw(st.integers(0, len(blocks))), draw(upsampling_block()))
    return blocks, draw(st.integers(1, 3)), draw(st.integers(0, 2**16)), draw(st.sampled_from(variants))


def assert_close(y: torch.Tensor, ref: torch.Tensor, tol: float = 1e-5) -> None:
    """Stream output equals the offline model's: max abs error <= tol x max(1, output scale)."""
    assert y.shape == ref.shape, (y.shape, ref.shape)
    scale = max(1.0, float(ref.abs().max())) if ref.numel() else 1.0
    err = float((y - ref).abs().max()) if ref.numel() else 0.0
    assert err <= tol * scale, f"max abs error {err} > {tol} x scale {scale}"


class SmallUNet(nn.Module):
    """Encoder stride 2, dilated residual middle, transposed-conv decoder with a skip concatenation (the
    native backend's and the C export's U-Net)."""

    def __init__(self) -> None:
        super().__init__()
        self.e1 = nn.Conv1d(2, 8, 3, padding=1)
        self.d1 = nn.Conv1d(8, 16, 4, stride=2, padding=1)
        self.mid = nn.Conv1d(16, 16, 3, padding=2, dilation=2)
        self.u1 = nn.ConvTranspose1d(16, 8, 4, stride=2, padding=1)
        self.out = nn.Conv1d(16, 1, 1)

    def forward(self, x):
        a = F.relu(self.e1(x))
        b = F.relu(self.d1(a))
        b = b + torch.tanh(self.mid(b))
        return self.out(torch.cat([F.relu(self.u1(b)), a], 1))


class ResNet(nn.Module):
    """Residual branch with look-ahead, strided conv, pooling, then a transposed conv or a mean head."""

    def __init__(self, head: bool) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(2, 8, 5, padding=2)
        self.c2 = nn.Conv1d(8, 8, 3, padding=1, dilation=1)
        self.c3 = nn.Conv1d(8, 8, 3, stride=2, padding=1)
        self.pool = nn.MaxPool1d(2)
        self.up = nn.ConvTranspose1d(8, 8, 4, stride=2, padding=1)
        self.head = head
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        h = F.relu(self.c1(x))
        h = h + F.relu(self.c2(h))
        h = self.pool(F.relu(self.c3(h)))
        if self.head:
            return self.fc(h.mean(dim=-1))
        return self.up(h)
