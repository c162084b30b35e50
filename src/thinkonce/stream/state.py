"""The explicit state of a stream: a flat dict of batch-first tensors, saved without pickle.

Keys are ``"<node>.<field>"`` for layer buffers, ``"@n"`` for every integer phase counter of the
layers (one column each), ``"@t"`` for the samples seen, ``"@fp"`` for the stream's fingerprint and
``"@ring.<node>"`` for window-mode feature buffers. Every tensor has the batch as its first dimension,
so that one state serves many streams and rows can be reset, gathered or saved independently.

The layout is a contract (:class:`StateSpec`): the same keys, per-row shapes and dtypes from
``init_state()`` on, at every phase. Buffers whose content grows and shrinks with the phase are kept
at their maximum length, *right-aligned*: the valid frames are the last ``fill`` frames along the time
axis (``fill`` is the buffer's column in ``@n``); frames left of them are stale and never read.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save_file

from ..errors import StateFileError

State = dict[str, torch.Tensor]

FORMAT = "thinkonce-state"
VERSION = "1"


@dataclass(frozen=True)
class Field:
    """One entry of a state: its shape per row (batch dim excluded) and dtype.

    ``time_axis`` (an index into ``shape``) marks a variable-length time axis kept at its maximum
    length ``shape[time_axis]``; ``fill`` names the counter holding how many of its last frames are
    valid. Counters (``shape == ()``, int64) are stored as columns of ``@n``; ``init`` is the value a
    fresh state holds: a number (a buffer is filled with it) or, for a buffer whose start is not
    uniform (a recurrence's learned ``h0``), a tensor of the per-row shape, or ``(1 or B, *shape)``
    (see :meth:`initial`). ``init`` takes no part in comparisons: the layout is shape and dtype.
    """

    shape: tuple[int, ...]
    dtype: torch.dtype
    time_axis: int | None = None
    fill: str | None = None
    init: float | torch.Tensor = field(default=0.0, compare=False)

    def initial(self, batch: int, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
        """A fresh ``(batch, *shape)`` tensor holding ``init`` (``dtype`` for floating fields)."""
        if not isinstance(self.init, torch.Tensor):
            return torch.full((batch, *self.shape), self.init, dtype=dtype, device=device)
        v = self.init.to(dtype=dtype, device=device)
        if v.dim() == len(self.shape):
            v = v.unsqueeze(0)
        if tuple(v.shape[1:]) != self.shape or v.shape[0] not in (1, batch):
            raise ValueError(f"initial value of shape {tuple(v.shape)} does not fit a state of {batch} rows "
                             f"of shape {self.shape} (a constant initial state made for another batch size?)")
        return v.expand(batch, *self.shape).contiguous()

    @property
    def is_counter(self) -> bool:
        return self.shape == () and self.dtype == torch.int64

    @property
    def max_len(self) -> int | None:
        return None if self.time_axis is None else self.shape[self.time_axis]


def counter(init: int = 0) -> Field:
    return Field((), torch.int64, init=int(init))


class StateSpec:
    """The layout of a stream's state: key -> :class:`Field` (per-row shape, dtype, time axis), plus the
    names of the counter columns of ``@n``. Printable; ``spec[key]`` gives one field."""

    def __init__(self, fields: dict[str, Field], counters: tuple[str, ...] = ()) -> None:
        self.fields = dict(fields)
        self.counters = tuple(counters)

    def __getitem__(self, key: str) -> Field:
        return self.fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def __contains__(self, key: object) -> bool:
        return key in self.fields

    def items(self):
        return self.fields.items()

    def layout(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        """key -> (shape per row, dtype)."""
        return {k: (f.shape, f.dtype) for k, f in self.fields.items()}

    def nbytes_per_row(self) -> int:
        total = 0
        for f in self.fields.values():
            n = 1
            for d in f.shape:
                n *= d
            total += n * torch.empty((), dtype=f.dtype).element_size()
        return total

    def __repr__(self) -> str:
        w = max((len(k) for k in self.fields), default=4)
        lines = [f"StateSpec({len(self.fields)} entries, {self.nbytes_per_row()} bytes per row)"]
        for k, f in self.fields.items():
            dt = str(f.dtype).replace("torch.", "")
            extra = ""
            if f.time_axis is not None:
                extra = f"  time axis {f.time_axis}, max {f.max_len} frames, valid = last @n[{f.fill}]"
            shape = ", ".join(["B", *map(str, f.shape)])
            lines.append(f"  {k:<{w}}  ({shape}) {dt}{extra}")
        if self.counters:
            lines.append("  @n columns: " + ", ".join(f"{i}={c}" for i, c in enumerate(self.counters)))
        return "\n".join(lines)

    __str__ = __repr__


def fingerprint(*parts: Any, tensors: Iterator[tuple[str, torch.Tensor]] = iter(())) -> int:
    """A 63-bit hash of ``parts`` (their ``str``) and of named tensors (dtype, shape, bytes)."""
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(str(p).encode())
        h.update(b"\0")
    for name, t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return int.from_bytes(h.digest(), "little") & (2**63 - 1)


def state_batch(state: State) -> int:
    """The number of streams (rows) a state holds."""
    t = state.get("@t")
    if t is None:
        raise ValueError("not a thinkonce state: no '@t' entry (was it produced by Stream.init_state?)")
    return int(t.shape[0])


def state_nbytes(state: State, per_row: bool = True) -> int:
    """Bytes held by the state (per stream by default)."""
    total = sum(v.numel() * v.element_size() for v in state.values())
    return total // max(state_batch(state), 1) if per_row else total


def save_state(path: str | os.PathLike, state: State, **metadata: str) -> None:
    """Save a state with safetensors (a format that cannot execute code when loaded).

    The file is written next to its destination and renamed, so a crash never leaves half a state.
    """
    path = Path(path)
    meta = {"format": FORMAT, "version": VERSION, **{k: str(v) for k, v in metadata.items()}}
    fp = state.get("@fp")
    if fp is not None and fp.numel():
        if bool((fp != fp[0]).any()):
            raise StateFileError("the state's rows come from different streams (their '@fp' fingerprints differ)")
        meta["fingerprint"] = f"{int(fp[0]):016x}"
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(tmp), metadata=meta)
    os.replace(tmp, path)


def read_safetensors(path: str | os.PathLike, what: str = "state") -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Metadata and tensors of a safetensors file; a corrupted or truncated file raises
    :class:`StateFileError` saying so (safetensors' own errors name byte offsets, not the problem)."""
    from safetensors import safe_open

    if not Path(path).is_file():
        raise FileNotFoundError(f"no {what} file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise StateFileError(
            f"{path} is not a readable safetensors {what} file: it is corrupted or truncated "
            f"({type(e).__name__}: {str(e)[:200]})"
        ) from e
    return meta, tensors


def load_state(path: str | os.PathLike, device: str | torch.device = "cpu", stream: Any = None) -> State:
    """Load a state saved by :func:`save_state`.

    With ``stream=``, the file must have been written from a state of that stream (same fingerprint:
    graph, weights, window/hop/edge) and match its state layout; otherwise :class:`StateFileError`.
    """
    meta, tensors = read_safetensors(path)
    if meta.get("format") != FORMAT:
        raise StateFileError(f"{path} is not a thinkonce state file (metadata: {json.dumps(meta)[:300]})")
    state = {k: v.to(device) for k, v in tensors.items()}
    if stream is not None:
        want = f"{stream.fingerprint:016x}"
        got = meta.get("fingerprint")
        if got != want:
            raise StateFileError(
                f"{path} holds a state of another stream (fingerprint {got}, this stream {want}: graph, "
                "weights, window, hop or edge differ)"
            )
        try:
            stream.check_state(state)
        except Exception as e:
            raise StateFileError(f"{path} does not match the stream's state layout: {e}") from e
    return state
