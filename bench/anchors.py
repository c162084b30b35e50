"""Adapters that express the benchmark networks with other streaming libraries.

* continual-inference 1.2.4 (``import continual as co``): exact per-sample steps (``forward_step``,
  one frame ``(B, C)`` per call; ``forward_steps`` loops over the frames of a chunk layer by layer).
  Modules hold their state in buffers (mutated per call). No temporal dilation (``co.Conv1d`` asserts
  ``dilation[0] == 1``), so the PPG network (dilation 2) and its attention head cannot be expressed.
* cached_conv 2.5.0 (``import cached_conv as cc``): ``CachedConv1d`` keeps ``padding`` frames of
  left context in a module buffer of ``MAX_BATCH_SIZE`` (64) rows; there are no streaming pooling
  layers, so pooling runs as plain ``nn.*Pool1d`` on chunks aligned to the pooling grid (a chunk of
  one sample cannot pass a stride-2 pool: hop 1 is not expressible, hop 2 is). A head window is a
  ``CachedPadding1d`` of ``frames - new`` frames in front of the new feature frames. "Same" padding
  becomes a delay of ``pad_right`` frames per conv (cached_conv's ``cumulative_delay``): the stream
  never computes the right edge; with pooling after such a conv, the pools see a shifted grid.

Each ``build_*`` returns an :class:`Adapter` or raises :class:`Unsupported` with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn


class Unsupported(Exception):
    """The library cannot express this network (the message says why)."""


@dataclass
class Adapter:
    call: Callable[[Tensor], Tensor | None]  # one chunk in, output of the last completed step (or None)
    state_bytes: Callable[[int], int]  # bytes per stream, given the batch in use
    note: str
    exact: str  # how its outputs relate to the model


def versions() -> dict[str, str]:
    """Installed versions of the two libraries, or why they cannot be imported."""
    out = {}
    for mod, name in (("continual", "continual-inference"), ("cached_conv", "cached-conv")):
        try:
            m = __import__(mod)
            out[name] = getattr(m, "__version__", None) or _dist_version(name)
        except Exception as e:  # pragma: no cover - reported in the JSON
            out[name] = f"not importable: {type(e).__name__}: {e}"
    return out


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def _copy_conv(dst: nn.Conv1d, src: nn.Conv1d) -> nn.Conv1d:
    with torch.no_grad():
        dst.weight.copy_(src.weight)
        if src.bias is not None:
            dst.bias.copy_(src.bias)
    return dst.eval()


def _tensor_bytes(objs) -> int:
    total = 0
    for t in objs:
        if isinstance(t, Tensor):
            total += t.numel() * t.element_size()
        elif isinstance(t, (tuple, list)):
            total += _tensor_bytes(t)
    return total


# ====================================================================== continual-inference
def _co_state_bytes(net: nn.Module, batch: int) -> int:
    total = 0
    for m in net.modules():
        buf = getattr(m, "state_buffer", None)
        if isinstance(buf, Tensor) and buf.numel():
            total += buf.numel() * buf.element_size()
    return total // max(batch, 1)


def continual_anchor(model: nn.Module, full: bool) -> Adapter:
    """The anchor net, one sample per ``forward_step``: trunk only (``full=False``, one 32-channel
    frame every 2 samples) or the whole network (global average over the last 128 frames as a
    ``co.AvgPool1d(128, stride=1)``, then ``co.Linear``): an output every frame (2 samples), equal to
    the model on the window extended to the left by real signal, features cropped to the window."""
    import continual as co

    mods: list[nn.Module] = []
    for m in model.trunk:
        if isinstance(m, nn.Conv1d):
            mods.append(_copy_conv(co.Conv1d(m.in_channels, m.out_channels, m.kernel_size[0]), m))
        elif isinstance(m, nn.ReLU):
            mods.append(nn.ReLU())
        elif isinstance(m, nn.MaxPool1d):
            mods.append(co.MaxPool1d(m.kernel_size))
    if full:
        mods.append(co.AvgPool1d(model.WINDOW // 2, stride=1))  # nn's default stride = kernel
        mods.append(co.Linear.build_from(model.fc, channel_dim=1))
    net = co.Sequential(*mods).eval()

    def call(x: Tensor) -> Tensor | None:
        y = None
        with torch.no_grad():
            for t in range(x.shape[2]):
                o = net.forward_step(x[:, :, t])
                if isinstance(o, Tensor):
                    y = o
        return y

    return Adapter(call, lambda b: _co_state_bytes(net, b),
                   "co.Sequential of co.Conv1d(padding=0)/nn.ReLU/co.MaxPool1d" + (
                       "/co.AvgPool1d(128, stride=1)/co.Linear" if full else "") + "; forward_step per sample",
                   "exact after the first receptive field (valid convs emit from their 5th frame)")


def continual_window(name: str, model: nn.Module) -> Adapter:
    """EEG / ACC at their hop: ``forward_steps`` over the hop's samples, last output kept."""
    import continual as co

    if name == "ppg":
        raise Unsupported("temporal dilation is not supported (co.Conv1d asserts dilation[0] == 1; the PPG "
                          "convs use dilation 2) and the attention head over 16 frames has no co equivalent")
    if name == "eeg":
        feats = co.continual(model.features)
        head = co.continual(model.head)  # Conv1d(k=16) over the last 16 frames, ReLU, Conv1d(k=1)
        net = co.Sequential(feats, head).eval()
        note = ("co.continual(features + head): Conv1d(k3, padding=1)/BN/ReLU/MaxPool1d(4), head Conv1d(k16) "
                "(emits every pooled frame: 4 head outputs per hop, the last is kept)")
        exact = "'same' padding becomes a delay of 1 frame per conv; pools see the delayed grid"
    elif name == "acc":
        # co.continual(nn.Conv1d(padding="same")) raises TypeError (it subtracts the string from an int):
        # the convs are rebuilt by hand with the equivalent integer padding
        mods: list[nn.Module] = []
        for m in model.features:
            if isinstance(m, nn.Conv1d):
                k = m.kernel_size[0]
                mods.append(_copy_conv(co.Conv1d(m.in_channels, m.out_channels, k, padding=(k - 1) // 2), m))
            else:
                mods.append(co.continual(m))
        lin = [co.Linear.build_from(m, channel_dim=1) if isinstance(m, nn.Linear) else m for m in model.head]
        net = co.Sequential(*mods, co.AvgPool1d(model.window, stride=model.hop), *lin).eval()
        note = ("co.Conv1d(k3, padding=1) by hand (co.continual fails on padding='same') + BN/ReLU + "
                f"co.AvgPool1d(960, stride={model.hop}) (one output per hop) + co.Linear head (channel_dim=1)")
        exact = "'same' padding becomes a delay of 6 samples; no right-edge recompute"
    else:
        raise Unsupported(f"no continual adapter for {name}")

    def call(x: Tensor) -> Tensor | None:
        with torch.no_grad():
            y = net.forward_steps(x)
        return None if not isinstance(y, Tensor) else y[..., -1]

    return Adapter(call, lambda b: _co_state_bytes(net, b), note + "; forward_steps(hop samples)", exact)


# ====================================================================== cached_conv
def _cc_bytes(net: nn.Module) -> int:
    import cached_conv as cc

    total = 0
    for m in net.modules():
        if isinstance(m, cc.CachedPadding1d) and hasattr(m, "pad"):
            total += m.pad.numel() * m.pad.element_size()
    return total // cc.MAX_BATCH_SIZE  # buffers always hold MAX_BATCH_SIZE rows


def _cc_conv(m: nn.Conv1d, pad: tuple[int, int]) -> nn.Module:
    import cached_conv as cc

    c = cc.CachedConv1d(m.in_channels, m.out_channels, m.kernel_size[0], dilation=m.dilation[0], padding=pad)
    return _copy_conv(c, m)


class _Head(nn.Module):
    """Feature window for the head: a CachedPadding1d in front of the new frames, then ``fn``."""

    def __init__(self, frames_kept: int, fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        import cached_conv as cc

        self.pad = cc.CachedPadding1d(frames_kept)
        self.fn = fn

    def forward(self, f: Tensor) -> Tensor:
        return self.fn(self.pad(f))


class _Lambda(nn.Module):
    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


def cached_conv_net(name: str, model: nn.Module, hop: int, trunk_only: bool = False) -> Adapter:
    """cached_conv at hop ``hop`` (chunks of ``hop`` samples; see the module docstring)."""
    import cached_conv as cc

    mods: list[nn.Module] = []
    exact = "exact (causal convolutions, pools aligned to the hop)"
    if name == "anchor":
        if hop % 2:
            raise Unsupported("no streaming pooling layer: a chunk of 1 sample cannot pass MaxPool1d(2) "
                              "(a plain pool needs both frames in one chunk); hop 2 is expressible")
        for m in model.trunk:
            if isinstance(m, nn.Conv1d):
                mods.append(_cc_conv(m, (m.kernel_size[0] - 1, 0)))
            elif isinstance(m, (nn.ReLU, nn.MaxPool1d)):
                mods.append(m)
        stride, frames = 2, model.WINDOW // 2
        fc = model.fc
        head_fn = lambda f: fc(f.mean(-1))  # noqa: E731
    elif name == "ppg":
        off, sc = model.ppg_offset, model.ppg_scale
        mods.append(_Lambda(lambda x: (x - off) / sc))
        for blk in model.blocks:
            for cv in blk.convs:
                mods += [_cc_conv(cv, ((cv.kernel_size[0] - 1) * cv.dilation[0], 0)), nn.ReLU()]
            mods.append(blk.pool)
        stride, frames = 16, model.n_frames
        ho, hs = model.hr_offset, model.hr_scale
        head_fn = lambda f: model.head(f) * hs + ho  # noqa: E731
    elif name == "eeg":
        for m in model.features:
            mods.append(_cc_conv(m, (m.padding[0], m.padding[0])) if isinstance(m, nn.Conv1d) else m)
        stride, frames = 64, model.head_kernel
        hd = model.head
        head_fn = lambda f: torch.flatten(hd(f), 1)  # noqa: E731
        exact = "'same' padding becomes a delay of 1 frame per conv: pools see a shifted grid, no right edge"
    elif name == "acc":
        for m in model.features:
            mods.append(_cc_conv(m, (m.padding[0] if isinstance(m.padding, tuple) else 1,) * 2)
                        if isinstance(m, nn.Conv1d) else m)
        stride, frames = 1, model.window
        hd = model.head
        head_fn = lambda f: hd(f.mean(-1))  # noqa: E731
        exact = "'same' padding becomes a delay of 6 samples; no right-edge recompute"
    else:
        raise Unsupported(f"no cached_conv adapter for {name}")
    if hop % stride:
        raise Unsupported(f"hop {hop} is not a multiple of the pooling stride {stride}")
    if not trunk_only:
        mods.append(_Head(frames - hop // stride, head_fn))
    net = cc.CachedSequential(*mods).eval()

    def call(x: Tensor) -> Tensor:
        with torch.no_grad():
            return net(x)

    note = "cc.CachedConv1d + plain pooling on hop-aligned chunks" + ("" if trunk_only else
                                                                      " + CachedPadding1d feature window")
    return Adapter(call, lambda b: _cc_bytes(net), note + f"; buffers hold MAX_BATCH_SIZE={cc.MAX_BATCH_SIZE} rows",
                   exact)
