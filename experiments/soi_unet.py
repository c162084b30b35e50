"""The causal 1-D U-Net of the SOI separation study, with its S-CC insertion points as parameters.

Why written out here rather than by ``thinkonce.soi.apply``: the study must run (and be trained) whether or
not the library layers exist yet; every SOI variant of the paper is a choice of where the network's rate
halves and how the half-rate path refills the full-rate slots, and both are explicit arguments:

* ``scc``: encoder positions whose convolution becomes a strided-cloned convolution (stride 2). Position
  ``p < levels`` is encoder conv ``p``; ``p == levels`` is the bottleneck conv. From it on, the path runs
  at half the frame rate (a quarter after a second S-CC) until the decoder level where it meets the
  full-rate skip connection again.
* ``fill``: how a half-rate frame fills the skipped slot where the paths rejoin. Extrapolation (causal,
  no delay): ``duplicate`` (clone, the paper's S-CC), ``tconv`` (learned transposed conv, kernel 2,
  stride 2), ``hybrid`` (clone + learned transposed-conv correction). Interpolation (needs the *next*
  computed frame, so the whole full-rate side is delayed): ``nearest`` (the skipped slot takes the next
  frame; delay 1), ``linear`` (mean of both neighbours; delay 1), ``cubic`` (Catmull-Rom from four
  half-rate frames; delay 3). Interpolation kernels are fixed transposed convolutions (not trained).
* ``mode``: ``pp`` (partially predictive: the clone fills the slot right after its frame) or ``fp`` (fully
  predictive: the refilled path is shifted one frame into the future, so each deep frame is only needed
  one step after the input it depends on arrived; its work can run ahead, in idle time).

All of it is made of ``Conv1d``, ``ConvTranspose1d``, nearest ``Upsample``, causal ``F.pad`` and slices:
``thinkonce.stream`` streams it exactly (checked at conversion) and really skips the half-rate layers on
the steps where they have no new frame, which is the point of SOI.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

EXTRAPOLATE = ("duplicate", "tconv", "hybrid")
INTERPOLATE = {"nearest": ([1.0, 1.0, 0.0], 1),  # kernel of a stride-2 transposed conv, delay in frames
               "linear": ([0.5, 1.0, 0.5], 1),
               "cubic": ([-1 / 16, 0.0, 9 / 16, 1.0, 9 / 16, 0.0, -1 / 16], 3)}
FILLS = EXTRAPOLATE + tuple(INTERPOLATE)


def delay(x: Tensor, d: int) -> Tensor:
    """Causal delay by ``d`` frames (zeros in front), same length."""
    return x if d == 0 else F.pad(x, (d, 0))[..., :-d]


class Fill(nn.Module):
    """Half rate -> full rate where the paths rejoin; output trimmed to the full-rate length.

    ``delay`` frames: what this fill adds to the full-rate side (interpolation waits for the next frame;
    FP shifts by one more frame into the future)."""

    def __init__(self, channels: int, kind: str, mode: str) -> None:
        super().__init__()
        if kind not in FILLS:
            raise ValueError(f"fill {kind!r} unknown; choose one of {FILLS}")
        if mode not in ("pp", "fp"):
            raise ValueError(f"mode {mode!r} unknown; choose 'pp' or 'fp'")
        self.kind, self.mode = kind, mode
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.tconv = nn.ConvTranspose1d(channels, channels, 2, stride=2) if kind in ("tconv", "hybrid") else None
        if kind in INTERPOLATE:
            k, self.interp_delay = INTERPOLATE[kind]
            self.interp = nn.ConvTranspose1d(channels, channels, len(k), stride=2, groups=channels, bias=False)
            self.interp.weight.data[:] = torch.tensor(k).view(1, 1, -1)
            self.interp.weight.requires_grad_(False)
            self.trim = len(k) - 2  # a stride-2 transposed conv of kernel K makes 2N + K - 2 frames
        else:
            self.interp, self.interp_delay = None, 0
        self.shift = 1 if mode == "fp" else 0

    @property
    def delay(self) -> int:
        return self.interp_delay

    def forward(self, d: Tensor) -> Tensor:
        """(B, C, N) at half rate -> (B, C, 2N). The caller keeps the full-rate length a multiple of 2."""
        if self.interp is not None:
            u = self.interp(d)[..., : -self.trim]
        elif self.kind == "duplicate":
            u = self.up(d)
        elif self.kind == "tconv":
            u = self.tconv(d)
        else:
            u = self.up(d) + self.tconv(d)
        return delay(u, self.shift)


def causal_conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Conv1d:
    return nn.Conv1d(cin, cout, k, stride=stride)


class SepUNet(nn.Module):
    """Causal U-Net over STFT frames: log-magnitude (B, F, T) -> two sigmoid masks (B, 2F, T).

    Encoder ``e[i]``: causal conv k3 + ReLU; bottleneck ``b``; decoder ``d[i]`` on cat(up path, skip i);
    output 1x1 conv on cat(decoder, input features) (an input skip, so that an S-CC at position 0 still
    leaves a full-rate path to the output)."""

    def __init__(self, bins: int = 129, channels: Sequence[int] = (32, 48, 64, 96), bottleneck: int = 96,
                 scc: Sequence[int] = (), mode: str = "pp", fill: str = "duplicate", k: int = 3) -> None:
        super().__init__()
        L = len(channels)
        scc = tuple(sorted(set(scc)))
        if any(not 0 <= p <= L for p in scc):
            raise ValueError(f"S-CC positions {scc} outside 0..{L} (encoder levels, then the bottleneck)")
        if fill in INTERPOLATE and len(scc) > 1:
            raise ValueError("interpolation fills are supported for one S-CC only")
        self.bins, self.channels, self.scc, self.mode, self.fill_kind, self.k = bins, tuple(channels), scc, mode, fill, k
        cins = (bins,) + tuple(channels[:-1])
        self.e = nn.ModuleList(causal_conv(ci, co, k, 2 if i in scc else 1) for i, (ci, co) in enumerate(zip(cins, channels)))
        self.b = causal_conv(channels[-1], bottleneck, k, 2 if L in scc else 1)
        ups = tuple(channels[1:]) + (bottleneck,)
        self.d = nn.ModuleList(causal_conv(u + c, c, k) for u, c in zip(ups, channels))
        # fill[i] refills the path arriving at decoder level i (from level i+1 or the bottleneck), or at the
        # output (key "out") when the S-CC is at position 0
        self.fills = nn.ModuleDict()
        for p in scc:
            key = "out" if p == 0 else str(p - 1)
            width = channels[p] if p < L else bottleneck
            self.fills[key] = Fill(channels[0] if p == 0 else width, fill, mode)
        self.out = nn.Conv1d(channels[0] + bins, 2 * bins, 1)

    @property
    def delay(self) -> int:
        """Frames the output lags the input (interpolation fills wait for a later half-rate frame)."""
        return sum(f.delay for f in self.fills.values())

    @property
    def period(self) -> int:
        """Input frames per frame of the slowest path: offline input lengths must be multiples of it."""
        return 2 ** len(self.scc)

    def _pad(self, x: Tensor) -> Tensor:
        return F.pad(x, (self.k - 1, 0))

    def forward(self, feats: Tensor) -> Tensor:
        """``feats`` (B, F, T) with T a multiple of :attr:`period` (pad on the right: the net is causal)."""
        hs, h = [], feats
        for conv in self.e:
            h = F.relu(conv(self._pad(h)))
            hs.append(h)
        g = F.relu(self.b(self._pad(h)))
        dl = 0  # delay of the deep path relative to the full-rate skips, in frames of the skip's rate
        for i in reversed(range(len(self.channels))):
            skip = hs[i]
            if str(i) in self.fills:
                f = self.fills[str(i)]
                g = f(g)
                dl += f.delay
            g = F.relu(self.d[i](self._pad(torch.cat([g, delay(skip, dl)], 1))))
        if "out" in self.fills:
            f = self.fills["out"]
            g = f(g)
            dl += f.delay
        return torch.sigmoid(self.out(torch.cat([g, delay(feats, dl)], 1)))


def describe(scc: Sequence[int], mode: str, fill: str) -> str:
    if not scc:
        return "STMC"
    return f"{mode.upper()} S-CC@{'+'.join(map(str, scc))} {fill}"
