"""thinkonce: make convolutional networks think each activation once on live signals.

>>> import thinkonce as to
>>> s = to.stream(model, window=256, hop=64)      # doctest: +SKIP
>>> state = s.init_state(batch=8)                  # doctest: +SKIP
>>> y, state = s.step(chunk, state)                # doctest: +SKIP
"""

from .errors import AlignmentError, ConversionError, StreamInputError, ThinkonceError, UnsupportedNodeError
from .measure import count_macs
from .pool import StreamPool
from .stream import SignalPadded, Stream, extended_windows, load_state, register_framewise, save_state, state_nbytes, stream
from .verify import Report, verify
from .analyze import analyze
from .ops import register_op
from . import soi  # noqa: E402  (registers the SOI layers' stream ops)

__version__ = "0.1.0"

__all__ = [
    "stream", "Stream", "StreamPool", "SignalPadded", "extended_windows", "verify", "Report", "count_macs", "save_state", "load_state", "state_nbytes",
    "register_framewise", "register_op", "analyze", "ThinkonceError", "ConversionError", "UnsupportedNodeError", "AlignmentError", "StreamInputError",
]
