"""One slot of a cluster: a :class:`StreamPool` made durable and idempotent on its own directory.

A slot is the unit of recovery and of movement (see :mod:`.hashing`): every stream of the slot lives in
one ``StreamPool``, and the slot's directory holds everything needed to rebuild it anywhere:

    <dir>/CURRENT            the epoch k of the last committed checkpoint (absent: none yet, k = 0)
    <dir>/ckpt-k/            pool.safetensors (StreamPool.checkpoint), outbox.safetensors, slot.json
    <dir>/journal-k          every operation accepted since checkpoint k (see :mod:`.journal`)

Only the pool's public checkpoint/restore API touches stream states, so the state layout can change
under it. Recovery = ``StreamPool.restore(ckpt-k)`` + re-applying ``journal-k`` in order, including the
points where the live slot called ``process()`` (journal ``P`` records), so a ``reset`` drops exactly the
samples it dropped live. Committing checkpoint k+1 is one atomic rename of ``CURRENT``: before it,
recovery uses ckpt-k + journal-k (complete up to that instant); after it, ckpt-(k+1) + journal-(k+1).

Exactly once, both ways:

* **in**: chunk ``seq`` numbers count 0, 1, 2, ... per stream (never reused, also across ``reset``). A
  chunk below the next expected number is a retry and is ignored (``submit`` returns False); one above it
  is refused (:class:`SequenceGapError`) so a lost chunk is never silently skipped;
* **out**: outputs wait in the slot's *outbox*, with the pool's quantum index, until the consumer
  acknowledges them (``results(id, after=q)`` drops those up to ``q``; the ack is journaled). A reply lost
  with a dying actor is therefore asked for again and served again, and an output acknowledged before a
  crash is never served again.
"""

from __future__ import annotations

import json
import operator
import os
import shutil
from collections import deque
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from ..errors import StreamInputError
from ..pool import StreamPool, UnknownStreamError
from ..stream import Stream
from .errors import SequenceGapError
from .journal import ACK, ADD, EVICT, PROCESS, RESET, SUBMIT, Journal, read_journal

__all__ = ["Slot"]

CURRENT = "CURRENT"


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def check_seq(seq: Any) -> int:
    """A chunk sequence number: a non-negative int (bools and floats refused, never truncated)."""
    if isinstance(seq, bool):
        raise StreamInputError(f"seq must be a non-negative int, got {seq!r}")
    try:
        s = operator.index(seq)
    except TypeError:
        raise StreamInputError(f"seq must be a non-negative int, got {type(seq).__name__} {seq!r}") from None
    if s < 0:
        raise StreamInputError(f"seq must be a non-negative int, got {s}")
    return s


class Slot:
    """A durable, idempotent :class:`StreamPool` on ``directory`` (recovered from it if it holds one).

    Not thread-safe: the shard actor that owns a slot runs one call at a time.
    """

    def __init__(
        self,
        stream: Stream,
        directory: str | os.PathLike,
        *,
        quantum: int | None = None,
        max_batch: int = 1024,
        fsync: bool = False,
    ) -> None:
        self.stream = stream
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.outbox: dict[str, deque[tuple[int, Tensor]]] = {}
        self.next_seq: dict[str, int] = {}
        self.acked: dict[str, int] = {}
        self.epoch = self._read_current()
        self._frame = tuple(stream.input_frame_shape)
        if self.epoch:
            d = self.dir / f"ckpt-{self.epoch}"
            self.pool = StreamPool.restore(stream, d, max_batch=max_batch, on_output=self._collect, callback_seq=True)
            self._load_meta(d)
            for sid in self.pool.ids():  # none are queued (outputs go to the outbox), but be exact
                for q, y in self.pool.results(sid, with_seq=True):
                    self._collect(sid, y, q)
        else:
            self.pool = StreamPool(stream, max_batch=max_batch, quantum=quantum, on_output=self._collect, callback_seq=True)
        self._remove_stale()
        self.accepted_since_checkpoint = 0
        self.replayed = self._replay(self.dir / f"journal-{self.epoch}")
        self.journal = Journal(self.dir / f"journal-{self.epoch}", fsync=fsync)
        self._dirty = False

    # ------------------------------------------------------------------ operations (journaled)
    def add(self, stream_id: str, *, exist_ok: bool = False) -> bool:
        """Start a stream; False if it exists and ``exist_ok`` (a retried add)."""
        if stream_id in self.next_seq:
            if exist_ok:
                return False
            raise StreamInputError(f"stream {stream_id!r} is already in the pool")
        self.pool.add(stream_id)  # validates the id
        self.journal.append(ADD, stream_id)
        self._added(stream_id)
        return True

    def submit(self, stream_id: str, chunk: Tensor, seq: Any) -> bool:
        """Apply chunk number ``seq`` of a stream once: True if applied, False if it is a retry of one
        already applied. Refused (nothing changes): unknown stream, sequence gap, bad chunk."""
        s = check_seq(seq)
        nxt = self.next_seq.get(stream_id)
        if nxt is None:
            raise UnknownStreamError(f"unknown stream {stream_id!r}: add it first with pool.add({stream_id!r})")
        if s < nxt:
            return False
        if s > nxt:
            raise SequenceGapError(
                f"stream {stream_id!r}: chunk seq {s} arrived but the next expected is {nxt}: chunks "
                f"{nxt}..{s - 1} are missing; resend from seq {nxt}"
            )
        self.pool.submit(stream_id, chunk)  # the pool's validation: shape, dtype, device, finiteness
        self.journal.append(SUBMIT, stream_id, s, chunk.detach().cpu().contiguous().numpy().tobytes())
        self.next_seq[stream_id] = s + 1
        self.accepted_since_checkpoint += 1
        self._dirty = True
        return True

    def process(self) -> int:
        """Step every stream with a full quantum (after a batch of submits). Journaled as a point, so a
        replay steps at the same points."""
        if not self._dirty:
            return 0
        self.journal.append(PROCESS)
        self._dirty = False
        return self.pool.process()

    def results(self, stream_id: str, after: int | None = None) -> list[tuple[int, Tensor]]:
        """The stream's outputs not yet acknowledged, as ``(quantum_index, y)``, oldest first; ``after``
        acknowledges (drops) those up to that index first. Idempotent for a fixed ``after``."""
        self._known(stream_id)
        if after is not None:
            self.ack(stream_id, after)
        return list(self.outbox.get(stream_id, ()))

    def take(self, stream_id: str) -> list[tuple[int, Tensor]]:
        """Pop the stream's outputs (returned and acknowledged at once: at-most-once if the reply is lost)."""
        items = self.results(stream_id)
        if items:
            self.ack(stream_id, items[-1][0])
        return items

    def ack(self, stream_id: str, upto: Any) -> None:
        q = check_seq(upto) if upto != -1 else -1
        self._known(stream_id)
        if q <= self.acked.get(stream_id, -1):
            return
        self.journal.append(ACK, stream_id, q)
        self._acked(stream_id, q)

    def evict(self, stream_id: str) -> list[tuple[int, Tensor]]:
        """Remove a stream; returns its unacknowledged outputs."""
        self._known(stream_id)
        self.process()
        self.journal.append(EVICT, stream_id)
        return self._evicted(stream_id)

    def reset(self, stream_id: str) -> None:
        """Fresh state, pending samples dropped; chunk seq numbers and quantum indices keep counting."""
        self._known(stream_id)
        self.process()
        self.journal.append(RESET, stream_id)
        self.pool.reset(stream_id)

    # ------------------------------------------------------------------ checkpoint
    def checkpoint(self) -> Path:
        """Commit checkpoint k+1 (pool, outbox, counters) and start journal k+1; see the module docstring."""
        k = self.epoch + 1
        d = self.dir / f"ckpt-{k}"
        if d.exists():
            shutil.rmtree(d)  # left by a checkpoint that died before committing
        self.pool.checkpoint_dir = d
        self.pool.checkpoint()
        tensors: dict[str, Tensor] = {}
        boxes = []
        for i, (sid, box) in enumerate(self.outbox.items()):
            if box:
                tensors[f"o/{i}"] = torch.cat([y.reshape(-1) for _, y in box]).contiguous()
                boxes.append([sid, i, [[q, list(y.shape)] for q, y in box]])
        save_file(tensors, str(d / "outbox.safetensors"))
        meta = {"epoch": k, "next_seq": self.next_seq, "acked": self.acked, "outbox": boxes}
        _write_atomic(d / "slot.json", json.dumps(meta).encode())
        jpath = self.dir / f"journal-{k}"
        jpath.unlink(missing_ok=True)
        new = Journal(jpath, fsync=self.fsync)
        _fsync_dir(self.dir)
        _write_atomic(self.dir / CURRENT, str(k).encode())  # the commit point
        old, self.journal, self.epoch = self.journal, new, k
        old.close()
        self._remove_stale()
        self.accepted_since_checkpoint = 0
        return d

    def close(self) -> None:
        self.journal.close()

    # ------------------------------------------------------------------ introspection
    def ids(self) -> list[str]:
        return list(self.next_seq)

    def info(self, stream_id: str) -> dict[str, int]:
        self._known(stream_id)
        return {**self.pool.info(stream_id), "next_seq": self.next_seq[stream_id], "acked": self.acked[stream_id],
                "outbox": len(self.outbox.get(stream_id, ()))}

    def stats(self) -> dict[str, Any]:
        s = self.pool.stats()
        s["outbox"] = sum(len(b) for b in self.outbox.values())
        s["epoch"] = self.epoch
        s["journal_bytes"] = (self.dir / f"journal-{self.epoch}").stat().st_size
        return s

    # ------------------------------------------------------------------ internals
    def _collect(self, sid: str, y: Tensor, q: int) -> None:
        if q <= self.acked.get(sid, -1):
            return
        box = self.outbox.setdefault(sid, deque())
        if box and box[-1][0] >= q:
            return
        box.append((q, y))

    def _known(self, sid: str) -> None:
        if sid not in self.next_seq:
            raise UnknownStreamError(f"unknown stream {sid!r}: add it first with pool.add({sid!r})")

    def _added(self, sid: str) -> None:
        self.next_seq[sid] = 0
        self.acked[sid] = -1

    def _acked(self, sid: str, q: int) -> None:
        self.acked[sid] = q
        box = self.outbox.get(sid)
        while box and box[0][0] <= q:
            box.popleft()

    def _evicted(self, sid: str) -> list[tuple[int, Tensor]]:
        self.pool.evict(sid)
        del self.next_seq[sid], self.acked[sid]
        return list(self.outbox.pop(sid, ()))

    def _replay(self, path: Path) -> int:
        n = 0
        dtype = self.stream.dtype
        for rec in read_journal(path):
            if rec.kind == ADD:
                self.pool.add(rec.stream_id)
                self._added(rec.stream_id)
            elif rec.kind == SUBMIT:
                x = torch.frombuffer(bytearray(rec.payload), dtype=dtype) if rec.payload else torch.zeros(0, dtype=dtype)
                self.pool.submit(rec.stream_id, x.reshape(*self._frame, -1).to(self.stream.device))
                self.next_seq[rec.stream_id] = rec.seq + 1
                self.accepted_since_checkpoint += 1
            elif rec.kind == PROCESS:
                self.pool.process()
            elif rec.kind == ACK:
                self._acked(rec.stream_id, rec.seq)
            elif rec.kind == EVICT:
                self.pool.process()
                self._evicted(rec.stream_id)
            elif rec.kind == RESET:
                self.pool.process()
                self.pool.reset(rec.stream_id)
            n += 1
        self.pool.process()
        return n

    def _read_current(self) -> int:
        p = self.dir / CURRENT
        return int(p.read_text().strip()) if p.exists() else 0

    def _load_meta(self, d: Path) -> None:
        meta = json.loads((d / "slot.json").read_text())
        self.next_seq = {k: int(v) for k, v in meta["next_seq"].items()}
        self.acked = {k: int(v) for k, v in meta["acked"].items()}
        with safe_open(str(d / "outbox.safetensors"), framework="pt") as f:
            for sid, i, items in meta["outbox"]:
                flat = f.get_tensor(f"o/{i}")
                box, p = deque(), 0
                for q, shape in items:
                    n = 1
                    for s in shape:
                        n *= int(s)
                    box.append((int(q), flat[p : p + n].reshape(shape).clone()))
                    p += n
                self.outbox[sid] = box

    def _remove_stale(self) -> None:
        """Checkpoints and journals of other epochs (older, or a newer one that never committed)."""
        for p in self.dir.iterdir():
            name = p.name
            for prefix in ("ckpt-", "journal-"):
                if name.startswith(prefix) and name[len(prefix):].isdigit() and int(name[len(prefix):]) != self.epoch:
                    shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
