"""The cluster's ring file ``<checkpoint_dir>/ring.json``: which shards exist and so who owns each slot.

It lives next to the slots' checkpoints because it is part of what recovery needs: a restarted shard
reads it to know which slots are its own (and refuses, with :class:`SlotMovedError`, a slot the ring has
given to another shard, so two actors never write one slot), and a new client (an HTTP ingress replica)
reads it to route. It is replaced atomically; a rebalance writes it after the moved slots were released.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .hashing import HashRing

__all__ = ["RING_FILE", "read_ring", "write_ring", "ring_of"]

RING_FILE = "ring.json"


def write_ring(root: str | os.PathLike, spec: dict[str, Any]) -> None:
    p = Path(root) / RING_FILE
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(spec, indent=1))
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, p)


def read_ring(root: str | os.PathLike) -> dict[str, Any]:
    p = Path(root) / RING_FILE
    if not p.is_file():
        raise FileNotFoundError(f"no cluster ring at {p}: is {root} the checkpoint_dir of a RayStreamPool?")
    return json.loads(p.read_text())


def ring_of(spec: dict[str, Any]) -> HashRing:
    return HashRing(list(spec["shards"]), int(spec["vnodes"]))
