"""Where a stream lives: stream id -> slot (fixed) -> shard (consistent hashing).

Two levels, as in Redis Cluster or Kafka partitions, because a slot is the unit a :class:`StreamPool`
checkpoint covers:

* a stream id hashes to one of ``n_slots`` *slots* (``blake2b(id) mod n_slots``). This never changes for
  the life of a cluster, so a slot's checkpoint and journal always hold the same set of streams;
* slots are placed on shards with a *consistent-hash ring*: each shard owns ``vnodes`` points on a 64-bit
  ring and a slot goes to the first point clockwise of its own hash. Adding a shard moves only the slots
  that fall before its points (about ``1 / new_shard_count`` of them), each with its whole state, so a
  rebalance copies a fraction of the cluster instead of reshuffling everything.

Python's ``hash()`` is salted per process, so every hash here is ``blake2b``: the driver, the HTTP
ingress and the shard actors (different processes, possibly different machines) agree.
"""

from __future__ import annotations

import bisect
import hashlib

__all__ = ["slot_of", "HashRing"]


def _h64(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")


def slot_of(stream_id: str, n_slots: int) -> int:
    """The slot of a stream id, in ``range(n_slots)``; the same in every process."""
    if not isinstance(stream_id, str):
        raise TypeError(f"stream ids are str, got {type(stream_id).__name__}")
    return _h64("stream:" + stream_id) % n_slots


class HashRing:
    """A consistent-hash ring of shard names with ``vnodes`` points each.

    >>> r = HashRing(["a", "b"]); r.owner(3) in ("a", "b")
    True
    """

    def __init__(self, shards: list[str], vnodes: int = 64) -> None:
        if not shards:
            raise ValueError("a ring needs at least one shard")
        if len(set(shards)) != len(shards):
            raise ValueError(f"shard names must be unique, got {shards}")
        if vnodes < 1:
            raise ValueError(f"vnodes must be >= 1, got {vnodes}")
        self.shards = list(shards)
        self.vnodes = vnodes
        points = sorted((_h64(f"shard:{s}:{v}"), s) for s in shards for v in range(vnodes))
        self._keys = [p for p, _ in points]
        self._owners = [s for _, s in points]

    def owner(self, slot: int) -> str:
        """The shard that owns ``slot``: the first ring point clockwise of the slot's hash."""
        i = bisect.bisect_right(self._keys, _h64(f"slot:{slot}")) % len(self._keys)
        return self._owners[i]

    def assignment(self, n_slots: int) -> dict[int, str]:
        """Owner of every slot."""
        return {k: self.owner(k) for k in range(n_slots)}
