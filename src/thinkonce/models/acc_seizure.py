"""The accelerometer seizure detector of StreamiNNC (Kechris et al., AAAI-25; DESIGN.md sec. 4).

A window of 960 samples (30 s at 32 Hz; x, y, z and magnitude) goes through six blocks of
``Conv1d(k=3, padding='same') -> BatchNorm1d -> ReLU`` with 8, 16, 32, 64, 128, 256 filters and
no pooling; the head averages the features over time, then ``Linear(256, 64) -> ReLU ->
Linear(64, 2)`` gives two logits. The paper runs it every 160 samples (hop 160).

Why no pooling matters: every feature frame maps to one input sample, so a stream recomputes only
``hop`` frames per layer and any hop is aligned. 'same' padding needs one future sample per layer
at the right edge; a stream either waits for it (a delay of 6 samples) or zero-pads as the paper's
code does. The global average pool is the head a stream runs on its ring buffer of features.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ACCSeizureNet", "acc_seizure"]

_DEFAULT_FILTERS = (8, 16, 32, 64, 128, 256)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class ACCSeizureNet(nn.Module):
    """Window classifier for convulsive seizures: (B, in_channels, T) -> (B, n_classes) logits.

    The global average pool makes the model accept any length T; the paper trains on 960.

    Args:
        in_channels: accelerometer channels (x, y, z, magnitude).
        filters: output channels of each conv/BN/ReLU block.
        kernel_size: odd kernel size of every convolution ('same' padding needs it symmetric).
        hidden: width of the hidden dense layer of the head.
        n_classes: output logits (2: background, seizure).
        window: the paper's window in samples (metadata for streaming and demos).
        fs: sampling rate the model expects, in Hz (metadata).
        hop: the paper's hop in samples (metadata).

    Raises:
        ValueError: empty filters, a non-positive size, or an even kernel size.
    """

    def __init__(
        self,
        in_channels: int = 4,
        filters: Sequence[int] = _DEFAULT_FILTERS,
        kernel_size: int = 3,
        hidden: int = 64,
        n_classes: int = 2,
        window: int = 960,
        fs: float = 32.0,
        hop: int = 160,
    ) -> None:
        super().__init__()
        filters = tuple(filters)
        if not filters:
            raise ValueError("filters must name at least one block")
        for i, f in enumerate(filters):
            _positive_int(f"filters[{i}]", f)
        for name, value in (
            ("in_channels", in_channels), ("kernel_size", kernel_size), ("hidden", hidden),
            ("n_classes", n_classes), ("window", window), ("hop", hop),
        ):
            _positive_int(name, value)
        if kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size must be odd so that 'same' padding is symmetric, got {kernel_size}"
            )
        self.in_channels = in_channels
        self.n_classes = n_classes
        self.window = window
        self.hop = hop
        self.fs = float(fs)

        layers: list[nn.Module] = []
        ch = in_channels
        for f in filters:
            layers += [
                nn.Conv1d(ch, f, kernel_size=kernel_size, padding="same"),
                nn.BatchNorm1d(f),
                nn.ReLU(),
            ]
            ch = f
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(ch, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, n_classes) for windows x of shape (B, in_channels, T)."""
        return self.head(self.features(x).mean(dim=-1))


def acc_seizure(
    *,
    in_channels: int = 4,
    filters: Sequence[int] = _DEFAULT_FILTERS,
    kernel_size: int = 3,
    hidden: int = 64,
    n_classes: int = 2,
    window: int = 960,
    fs: float = 32.0,
    hop: int = 160,
) -> ACCSeizureNet:
    """Build the paper's ACC seizure network, randomly initialised (see :class:`ACCSeizureNet`)."""
    return ACCSeizureNet(
        in_channels=in_channels, filters=filters, kernel_size=kernel_size, hidden=hidden,
        n_classes=n_classes, window=window, fs=fs, hop=hop,
    )
