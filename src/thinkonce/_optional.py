"""Optional dependencies: import them with a message that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import ThinkonceError

__all__ = ["MissingExtraError", "require"]


class MissingExtraError(ThinkonceError, ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""


def require(module_name: str, extra: str, purpose: str | None = None) -> ModuleType:
    """Import ``module_name`` or raise :class:`MissingExtraError` naming ``pip install thinkonce[extra]``.

    >>> require("math", "none").sqrt(4.0)
    2.0

    ``purpose`` says what needs the module (``"ONNX export"``); the error is also an ``ImportError``,
    so code that already catches ``ImportError`` keeps working.
    """
    try:
        return importlib.import_module(module_name)
    except ImportError as e:
        what = f"{purpose} needs" if purpose else "this needs"
        raise MissingExtraError(
            f"{what} the optional package {module_name!r}, which is not installed: "
            f"pip install 'thinkonce[{extra}]'"
        ) from e
