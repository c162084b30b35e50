"""Errors with messages that name the problem and the fix."""

from __future__ import annotations


class ThinkonceError(Exception):
    """Base class of every error raised by thinkonce."""


class UnsupportedNodeError(ThinkonceError):
    """A node of the traced graph has no streaming counterpart (the message names node, path, type)."""


class AlignmentError(ThinkonceError):
    """The hop breaks pooling/stride alignment (the message lists the allowed hops)."""


class StreamInputError(ThinkonceError, ValueError):
    """A chunk or a state passed to a stream is malformed; the state was not touched."""


class ConversionError(ThinkonceError):
    """The converted stream disagreed with the model on its self-check probe (the message names the
    first diverging node); the conversion is refused rather than giving wrong numbers."""


class StateFileError(ThinkonceError, ValueError):
    """A saved state or checkpoint file is not readable as one: foreign, corrupted, truncated, or written
    by another stream (its fingerprint differs)."""


class InternalStateError(ThinkonceError, RuntimeError):
    """A buffer would outgrow the size its state spec declares: a bug in thinkonce, never silently
    truncated (please report it with the model)."""
