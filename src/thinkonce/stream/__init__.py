"""Conversion of a trained model into a streaming step function."""

from .padding import SignalPadded, extended_windows
from ..ops import register_framewise
from .state import load_state, save_state, state_nbytes
from .stream import Stream, stream

__all__ = ["SignalPadded", "extended_windows", "Stream", "stream", "register_framewise", "save_state", "load_state", "state_nbytes"]
