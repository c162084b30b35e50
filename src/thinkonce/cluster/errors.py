"""Errors of the cluster layer. Input errors keep :class:`thinkonce.StreamInputError` as base, so code
that handles a refused chunk from a local :class:`StreamPool` handles a refused one from a cluster too."""

from __future__ import annotations

from ..errors import StreamInputError, ThinkonceError
from ..pool import UnknownStreamError

__all__ = ["SequenceGapError", "SlotMovedError", "ClusterError", "UnknownStreamError", "encode_error", "decode_error"]


class SequenceGapError(StreamInputError):
    """A chunk's sequence number skips chunks the shard has not received; nothing was applied."""


class SlotMovedError(ThinkonceError):
    """The shard no longer owns the stream's slot (a rebalance moved it); the caller re-reads the ring."""


class ClusterError(ThinkonceError):
    """A shard stayed unreachable past the retry deadline, or the cluster's files disagree."""


_KINDS: dict[str, type[Exception]] = {
    "unknown": UnknownStreamError,
    "gap": SequenceGapError,
    "input": StreamInputError,
    "moved": SlotMovedError,
}


def encode_error(e: Exception) -> tuple[str, str]:
    """An input error as ``(kind, message)``, sent back as a value (a raised exception would cross Ray
    wrapped in a remote traceback, and would hide which item of a batch was refused)."""
    for kind, cls in _KINDS.items():  # most specific first
        if isinstance(e, cls):
            return kind, str(e)
    raise e


def decode_error(err: tuple[str, str]) -> Exception:
    kind, msg = err
    return _KINDS[kind](msg)
