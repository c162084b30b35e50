"""The EEG seizure detector of StreamiNNC (Kechris, Dan, Atienza; AAAI-25), DESIGN.md section 4.

A window of 1024 samples (4 s at 256 Hz, 18 bipolar channels) goes through three blocks of
``Conv1d(k=3, padding=1) -> BatchNorm1d -> ReLU -> MaxPool1d(4)``, which leave 1024 / 4**3 = 16
frames of 128 features; a head ``Conv1d(k=16)`` spans exactly those 16 frames (a dense layer written
as a convolution), then ``ReLU -> Conv1d(k=1)`` gives two logits. The paper runs it every 256
samples (hop 256), which the pooling allows: 256 is a multiple of 4**3.

Why the split into ``features`` and ``head``: the feature extractor is what a window stream
computes incrementally, one hop at a time; the head runs on a ring buffer of the last window's
features. The forward has no data-dependent Python control flow, so ``torch.fx.symbolic_trace``
sees the whole graph.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["EEGSeizureNet", "eeg_seizure"]


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class EEGSeizureNet(nn.Module):
    """Window classifier for EEG seizures: (B, in_channels, window) -> (B, n_classes) logits.

    Args:
        in_channels: EEG channels (18 bipolar channels in the paper).
        n_filters: filters of every convolution in the feature extractor.
        n_blocks: number of conv/BN/ReLU/max-pool blocks.
        pool: max-pooling size and stride of each block.
        head_channels: channels of the head's window-spanning convolution.
        n_classes: output logits (2: background, seizure).
        window: input length in samples the model is built for; the head kernel is
            ``window // pool**n_blocks`` so that it spans the remaining frames exactly.
        fs: sampling rate the model expects, in Hz (metadata for streaming and demos).
        hop: the paper's hop in samples (metadata).

    Raises:
        ValueError: a non-positive size, or a window that the pooling does not divide.
    """

    def __init__(
        self,
        in_channels: int = 18,
        n_filters: int = 128,
        n_blocks: int = 3,
        pool: int = 4,
        head_channels: int = 100,
        n_classes: int = 2,
        window: int = 1024,
        fs: float = 256.0,
        hop: int = 256,
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_channels", in_channels), ("n_filters", n_filters), ("n_blocks", n_blocks),
            ("pool", pool), ("head_channels", head_channels), ("n_classes", n_classes),
            ("window", window), ("hop", hop),
        ):
            _positive_int(name, value)
        reduction = pool**n_blocks
        if window % reduction:
            raise ValueError(
                f"window={window} must be a multiple of pool**n_blocks={reduction} so that the "
                "head spans whole frames"
            )
        self.in_channels = in_channels
        self.n_classes = n_classes
        self.window = window
        self.hop = hop
        self.fs = float(fs)
        self.head_kernel = window // reduction

        layers: list[nn.Module] = []
        ch = in_channels
        for _ in range(n_blocks):
            layers += [
                nn.Conv1d(ch, n_filters, kernel_size=3, padding=1),
                nn.BatchNorm1d(n_filters),
                nn.ReLU(),
                nn.MaxPool1d(pool),
            ]
            ch = n_filters
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Conv1d(n_filters, head_channels, kernel_size=self.head_kernel),
            nn.ReLU(),
            nn.Conv1d(head_channels, n_classes, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, n_classes) for windows x of shape (B, in_channels, window)."""
        # With an input of exactly `window` samples the head leaves one frame, so flattening
        # gives (B, n_classes); longer inputs give (B, n_classes * frames), a sliding head.
        return torch.flatten(self.head(self.features(x)), start_dim=1)


def eeg_seizure(
    *,
    in_channels: int = 18,
    n_filters: int = 128,
    n_blocks: int = 3,
    pool: int = 4,
    head_channels: int = 100,
    n_classes: int = 2,
    window: int = 1024,
    fs: float = 256.0,
    hop: int = 256,
) -> EEGSeizureNet:
    """Build the paper's EEG seizure network, randomly initialised (see :class:`EEGSeizureNet`)."""
    return EEGSeizureNet(
        in_channels=in_channels, n_filters=n_filters, n_blocks=n_blocks, pool=pool,
        head_channels=head_channels, n_classes=n_classes, window=window, fs=fs, hop=hop,
    )
