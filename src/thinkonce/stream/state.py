"""The explicit state of a stream: a flat dict of batch-first tensors, saved without pickle.

Keys are ``"<node>.<field>"`` for layer buffers, ``"@t"`` for the samples seen and ``"@ring.<node>"`` for
window-mode feature buffers. Every tensor has the batch as its first dimension, so that one state
serves many streams and rows can be reset, gathered or saved independently.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

State = dict[str, torch.Tensor]

FORMAT = "thinkonce-state"
VERSION = "1"


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
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(tmp), metadata=meta)
    os.replace(tmp, path)


def load_state(path: str | os.PathLike, device: str | torch.device = "cpu") -> State:
    """Load a state saved by :func:`save_state`."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a thinkonce state file (metadata: {json.dumps(meta)})")
    return dict(load_file(str(path), device=str(device)))
