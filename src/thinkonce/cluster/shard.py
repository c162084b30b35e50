"""The shard actor: the slots (each a durable :class:`StreamPool`, see :mod:`.slot`) one Ray actor owns.

Ray restarts a dead shard (``max_restarts=-1``) by calling its constructor again with the same
arguments; the constructor reads the ring file and recovers every slot the ring gives it from disk
(checkpoint + journal), so the actor is consistent before it answers its first call. Calls that were in
flight when it died fail in the caller, which retries them (:class:`RayStreamPool` does): retried submits
are dropped by sequence number, retried result reads are idempotent.

Methods return refused inputs as ``(kind, message)`` values instead of raising (see
:func:`.errors.encode_error`), so one bad chunk in a batch does not hide what happened to the others.
The stream factory is read from ``<checkpoint_dir>/stream_factory.pkl`` rather than passed as an argument:
Ray keeps large constructor arguments in its object store, where they can be gone by the time it
restarts the actor. The class is plain Python; :class:`RayStreamPool` wraps it with ``ray.remote`` so that importing
:mod:`thinkonce.cluster` does not need Ray.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import StreamInputError
from ..stream import Stream
from .errors import SlotMovedError, encode_error
from .ring_file import read_ring, ring_of
from .slot import Slot

__all__ = ["Shard", "slot_dir", "FACTORY_FILE"]

FACTORY_FILE = "stream_factory.pkl"

Status = Any  # True (applied) | False (retry of an applied chunk) | (kind, message)


def slot_dir(root: str | os.PathLike, slot: int) -> Path:
    return Path(root) / f"slot-{slot:05d}"


def _as_tensor(chunk: Any) -> Any:
    if isinstance(chunk, np.ndarray):
        return torch.from_numpy(np.require(chunk, requirements=["W"]))  # Ray hands read-only arrays
    return chunk  # a Tensor, or something the pool's validation refuses by name


class Shard:
    """One shard (run as a Ray actor, one call at a time)."""

    def __init__(
        self,
        name: str,
        root: str,
        factory_path: str,
        *,
        quantum: int | None = None,
        max_batch: int = 1024,
        checkpoint_every: int | None = None,
        threads: int = 1,
        fsync: bool = False,
    ) -> None:
        t0 = time.perf_counter()
        torch.set_num_threads(threads)
        self.name, self.root = name, Path(root)
        import pickle

        factory = pickle.loads(Path(factory_path).read_bytes())  # written by RayStreamPool (cloudpickle)
        self.stream = factory if isinstance(factory, Stream) else factory()
        if not isinstance(self.stream, Stream):
            raise TypeError(f"stream_factory must return a thinkonce Stream, got {type(self.stream).__name__}")
        self.quantum, self.max_batch, self.fsync = quantum, max_batch, fsync
        self.checkpoint_every = checkpoint_every
        self.slots: dict[int, Slot] = {}
        self.released: set[int] = set()
        self.accepted = 0  # chunks applied since this shard's last checkpoint
        self.replayed = 0
        spec = read_ring(self.root)
        ring = ring_of(spec)
        for k in range(int(spec["n_slots"])):
            if ring.owner(k) == name and slot_dir(root, k).exists():
                self._open(k)
        self.recovery_s = time.perf_counter() - t0 if self.slots else 0.0

    # ------------------------------------------------------------------ slots
    def _open(self, k: int) -> Slot:
        sl = Slot(self.stream, slot_dir(self.root, k), quantum=self.quantum, max_batch=self.max_batch, fsync=self.fsync)
        self.slots[k] = sl
        self.replayed += sl.replayed
        self.accepted += sl.accepted_since_checkpoint
        return sl

    def _slot(self, k: int) -> Slot:
        sl = self.slots.get(k)
        if sl is not None:
            return sl
        owner = ring_of(read_ring(self.root)).owner(k)
        if k in self.released or owner != self.name:
            raise SlotMovedError(f"slot {k} is owned by {owner}, not {self.name}: re-read the ring")
        return self._open(k)

    def _guard(self, fn: Callable[[], Any]) -> tuple[Any, tuple[str, str] | None]:
        try:
            return fn(), None
        except (StreamInputError, SlotMovedError) as e:
            return None, encode_error(e)

    def _after_writes(self, touched: set[int]) -> None:
        for k in touched:
            self.slots[k].process()
        if self.checkpoint_every is not None and self.accepted >= self.checkpoint_every:
            self.checkpoint()

    # ------------------------------------------------------------------ API (called by RayStreamPool)
    def describe(self) -> dict[str, Any]:
        s = self.stream
        return {"frame": list(s.input_frame_shape), "dtype": str(s.dtype).replace("torch.", ""),
                "window": s.window, "hop": s.hop, "pid": os.getpid()}

    def add(self, k: int, sid: str, exist_ok: bool) -> tuple[Any, Any]:
        return self._guard(lambda: self._slot(k).add(sid, exist_ok=exist_ok))

    def add_many(self, items: list[tuple[int, str, bool]]) -> list[tuple[Any, Any]]:
        return [self.add(k, sid, exist_ok) for k, sid, exist_ok in items]

    def submit_many(self, items: list[tuple[int, str, Any, Any]]) -> list[Status]:
        out: list[Status] = []
        touched: set[int] = set()
        for k, sid, seq, chunk in items:
            try:
                sl = self._slot(k)
                ok = sl.submit(sid, _as_tensor(chunk), seq)
                touched.add(k)
                self.accepted += int(ok)
                out.append(ok)
            except (StreamInputError, SlotMovedError) as e:
                out.append(encode_error(e))
        self._after_writes(touched)
        return out

    def submit_packed(self, meta: list[tuple[int, str, Any, int]], data: np.ndarray) -> list[Status]:
        """:meth:`submit_many` with the chunks concatenated along time in one array (``meta`` gives each
        item's sample count): one buffer to serialise instead of one per chunk."""
        x = _as_tensor(data)
        items, off = [], 0
        for k, sid, seq, n in meta:
            items.append((k, sid, seq, x[..., off : off + n]))
            off += n
        return self.submit_many(items)

    def results_packed(self, reqs: list[tuple[int, str, int | None, bool]]) -> tuple[list, np.ndarray | None]:
        """:meth:`results_many` with every output flattened into one array: per request
        ``([(q, shape), ...], None)`` or ``(None, error)``, and the concatenated values."""
        out, flat = [], []
        for (items, err) in self.results_many(reqs):
            if err is not None:
                out.append((None, err))
                continue
            out.append(([(q, y.shape) for q, y in items], None))
            flat.extend(y.reshape(-1) for _, y in items)
        return out, (np.concatenate(flat) if flat else None)

    def results_many(self, reqs: list[tuple[int, str, int | None, bool]]) -> list[tuple[Any, Any]]:
        """``(slot, id, after, take)`` each: ``([(q, y as ndarray), ...], None)`` or ``(None, error)``."""
        out = []
        for k, sid, after, take in reqs:
            def one(k=k, sid=sid, after=after, take=take) -> list:
                sl = self._slot(k)
                items = sl.take(sid) if take else sl.results(sid, after)
                return [(q, y.numpy()) for q, y in items]
            out.append(self._guard(one))
        return out

    def results_one(self, k: int, sid: str, after: int | None, take: bool) -> tuple[Any, Any]:
        return self.results_many([(k, sid, after, take)])[0]

    def evict(self, k: int, sid: str) -> tuple[Any, Any]:
        return self._guard(lambda: [(q, y.numpy()) for q, y in self._slot(k).evict(sid)])

    def reset(self, k: int, sid: str) -> tuple[Any, Any]:
        return self._guard(lambda: self._slot(k).reset(sid))

    def info(self, k: int, sid: str) -> tuple[Any, Any]:
        return self._guard(lambda: self._slot(k).info(sid))

    def ids(self) -> list[str]:
        return [sid for k in sorted(self.slots) for sid in self.slots[k].ids()]

    def checkpoint(self) -> list[str]:
        paths = [str(sl.checkpoint()) for sl in self.slots.values()]
        self.accepted = 0
        return paths

    def release(self, ks: list[int]) -> None:
        """Give slots away (rebalance): checkpoint them, close their journals, refuse them from now on."""
        for k in ks:
            sl = self.slots.pop(k, None)
            if sl is not None:
                sl.checkpoint()
                sl.close()
            self.released.add(k)

    def load(self, ks: list[int]) -> float:
        """Open slots the ring now gives this shard (after a rebalance); returns the seconds it took."""
        t0 = time.perf_counter()
        for k in ks:
            self.released.discard(k)
            self._slot(k)
        return time.perf_counter() - t0

    def stats(self) -> dict[str, Any]:
        per = {k: sl.stats() for k, sl in self.slots.items()}
        steps = sum(int(s["steps"]) for s in per.values())
        batches = sum(int(s["batches"]) for s in per.values())
        p99 = [s["p99_step_us"] for s in per.values() if s["p99_step_us"] is not None]
        return {
            "name": self.name, "pid": os.getpid(), "slots": len(per),
            "streams": sum(int(s["streams"]) for s in per.values()),
            "steps": steps, "batches": batches, "mean_batch": steps / batches if batches else 0.0,
            "max_p99_step_us": max(p99) if p99 else None,
            "pending_samples": sum(int(s["pending_samples"]) for s in per.values()),
            "outbox": sum(int(s["outbox"]) for s in per.values()),
            "journal_bytes": sum(int(s["journal_bytes"]) for s in per.values()),
            "recovery_s": self.recovery_s, "replayed_records": self.replayed,
        }

    def crash(self) -> None:
        """Die at once, as a crashed process does (tests and the benchmark kill shards with it)."""
        os._exit(1)
