"""``RayStreamPool``: the :class:`StreamPool` API over shard actors on a Ray cluster.

>>> import functools, ray, thinkonce as to                                        # doctest: +SKIP
>>> from thinkonce.cluster import RayStreamPool                                   # doctest: +SKIP
>>> ray.init()                                                                    # doctest: +SKIP
>>> factory = functools.partial(to.stream, model, window=256, hop=64)             # doctest: +SKIP
>>> pool = RayStreamPool(factory, shards=4, checkpoint_dir="/shared/ckpt", checkpoint_every=20_000)  # doctest: +SKIP
>>> pool.add("wrist-17"); pool.submit("wrist-17", chunk, seq=0)                   # doctest: +SKIP
>>> pool.results("wrist-17")                                                      # doctest: +SKIP

Differences from the local pool, all for exactly-once delivery across failures:

* ``submit`` takes the chunk's per-stream sequence number ``seq`` (0, 1, 2, ...): a retry of an applied
  chunk is ignored (returns False), a gap is refused (:class:`SequenceGapError`);
* the shards step what is complete at the end of every ``submit`` / ``submit_many`` call, so outputs
  are ready when it returns; use ``submit_many`` to send many streams' chunks in one call per shard;
* ``results`` acknowledges what the previous ``results`` call of the stream returned, and the shard keeps
  outputs until acknowledged: a reply lost with a dying actor is served again, never twice. One
  consumer per stream (this object, or the HTTP ingress, not both).

Every call is retried while a shard restarts (``retry_s``, default 60 s). ``checkpoint_dir`` holds the
ring file and one directory per slot (see :mod:`.slot`); on several machines it must be storage every
machine reaches (NFS, a mounted bucket), since a shard may restart elsewhere.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from .._optional import require
from ..errors import StreamInputError
from ..stream import Stream
from .errors import ClusterError, SlotMovedError, decode_error
from .hashing import HashRing, slot_of
from .ring_file import RING_FILE, read_ring, ring_of, write_ring
from .shard import FACTORY_FILE, Shard

__all__ = ["RayStreamPool"]


def _ray() -> Any:
    return require("ray", "ray", "RayStreamPool")


def _wire(chunk: Any) -> Any:
    """What travels to the shard: a numpy view of a CPU tensor (cheap to serialise), else as given."""
    if isinstance(chunk, Tensor) and chunk.device.type == "cpu" and chunk.dtype != torch.bfloat16 and not chunk.requires_grad:
        return chunk.numpy()
    return chunk


def _packed(batch: list[tuple[int, str, Any, Any]]) -> tuple[str, tuple]:
    """The shard method and arguments for a batch: chunks that are numpy arrays of one dtype and frame are
    concatenated along time into one array (one buffer to serialise instead of one per chunk); any other
    batch goes item by item, so each odd chunk gets its own refusal."""
    chunks = [c for _, _, _, c in batch]
    if chunks and all(isinstance(c, np.ndarray) and c.ndim >= 1 for c in chunks):
        first = chunks[0]
        if all(c.dtype == first.dtype and c.shape[:-1] == first.shape[:-1] for c in chunks):
            meta = [(k, sid, seq, int(c.shape[-1])) for (k, sid, seq, _), c in zip(batch, chunks)]
            return "submit_packed", (meta, np.concatenate(chunks, axis=-1))
    return "submit_many", (batch,)


class RayStreamPool:
    """Many streams of one model, sharded over Ray actors, durable and exactly-once.

    Args:
        stream_factory: the :class:`Stream` itself (converted once here, pickled to every shard), or a
            picklable callable that returns it, run on each shard (converts there, e.g. for a model that
            does not pickle: ``functools.partial(thinkonce.stream, model, window=256, hop=64)``).
        shards: number of shard actors.
        checkpoint_dir: the cluster's directory (ring file, slot checkpoints and journals); a fresh
            temporary directory if None (recovers from actor deaths, not from losing this machine).
        checkpoint_every: each shard checkpoints its slots after this many applied chunks (None: only on
            :meth:`checkpoint`). Bounds the journal replayed on recovery.
        slots: fixed number of hash slots (the unit that moves when shards are added); at least the most
            shards the cluster will ever have.
        quantum, max_batch: as for :class:`StreamPool`.
        threads_per_shard: torch intra-op threads in each shard actor.
        fsync: fsync every journal record (survive machine loss, not only process loss).
        actor_options: extra ``ray.remote`` options for the shard actors (``num_cpus``, ``resources``...).
        name, namespace: Ray actor names are ``{name}-{i}`` in ``namespace`` (so an ingress finds them).
        retry_s: how long a call keeps retrying an unreachable (restarting) shard.
    """

    def __init__(
        self,
        stream_factory: Stream | Callable[[], Stream],
        shards: int = 2,
        *,
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int | None = None,
        slots: int = 64,
        vnodes: int = 64,
        quantum: int | None = None,
        max_batch: int = 1024,
        threads_per_shard: int = 1,
        fsync: bool = False,
        actor_options: dict[str, Any] | None = None,
        name: str = "thinkonce",
        namespace: str = "thinkonce",
        retry_s: float = 60.0,
        _connect: dict[str, Any] | None = None,
    ) -> None:
        ray = _ray()
        self.retry_s = retry_s
        self._cursor: dict[str, int] = {}
        if _connect is not None:  # RayStreamPool.connect
            self.root = Path(_connect["root"])
            self._load_ring(read_ring(self.root))
            self._describe = self._call(self.shard_names[0], "describe")
            return
        if not isinstance(stream_factory, Stream) and not callable(stream_factory):
            raise TypeError("stream_factory must be a thinkonce Stream or a callable returning one (e.g. functools.partial)")
        if not isinstance(shards, int) or shards < 1:
            raise ValueError(f"shards must be a positive int, got {shards!r}")
        if not isinstance(slots, int) or slots < shards:
            raise ValueError(f"slots={slots!r} must be an int >= shards ({shards}): a slot is the smallest unit a shard owns")
        if checkpoint_every is not None and (not isinstance(checkpoint_every, int) or checkpoint_every < 1):
            raise ValueError(f"checkpoint_every must be a positive int (chunks per shard) or None, got {checkpoint_every!r}")
        try:
            ray.cloudpickle.dumps(stream_factory)
        except Exception as e:
            if isinstance(stream_factory, Stream):
                raise TypeError(
                    f"this Stream cannot be pickled to the shards ({type(e).__name__}: {e}); pass a factory that "
                    "builds it on each shard instead, e.g. functools.partial(thinkonce.stream, model, window=..., hop=...)"
                ) from e
            raise TypeError(f"stream_factory cannot be pickled to the shards ({type(e).__name__}: {e})") from e
        self.root = Path(tempfile.mkdtemp(prefix="thinkonce-cluster-") if checkpoint_dir is None else checkpoint_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        if (self.root / RING_FILE).exists():
            raise ClusterError(
                f"{self.root} already holds a cluster ({RING_FILE}); attach to it with RayStreamPool.connect"
                f"({str(self.root)!r}), or pass an empty checkpoint_dir"
            )
        # On disk, not in the actors' constructor arguments: Ray keeps large arguments in the object store,
        # where they may be gone when it restarts an actor; the file lives as long as the cluster's state.
        self._factory = str(self.root / FACTORY_FILE)
        (self.root / FACTORY_FILE).write_bytes(ray.cloudpickle.dumps(stream_factory))
        self._shard_kw = dict(quantum=quantum, max_batch=max_batch, checkpoint_every=checkpoint_every,
                              threads=threads_per_shard, fsync=fsync)
        self._actor_options = dict(actor_options or {})
        names = [f"{name}-{i}" for i in range(shards)]
        spec = {"n_slots": slots, "vnodes": vnodes, "shards": names, "name": name, "namespace": namespace}
        write_ring(self.root, spec)  # before the actors start: they read it
        self._load_ring(spec, create=True)
        self._describe = self._call(names[0], "describe")

    @classmethod
    def connect(cls, checkpoint_dir: str | Path, *, retry_s: float = 60.0) -> "RayStreamPool":
        """Attach to a running cluster (its shard actors) through its ``checkpoint_dir`` (e.g. from the
        HTTP ingress, another process of the same Ray cluster)."""
        return cls(lambda: None, retry_s=retry_s, _connect={"root": str(checkpoint_dir)})  # type: ignore[arg-type,return-value]

    # ------------------------------------------------------------------ routing
    def _load_ring(self, spec: dict[str, Any], create: bool = False) -> None:
        ray = _ray()
        self._spec = spec
        self.n_slots = int(spec["n_slots"])
        self.ring: HashRing = ring_of(spec)
        self._owner = self.ring.assignment(self.n_slots)
        handles = getattr(self, "handles", {})
        self.handles: dict[str, Any] = {}
        for n in spec["shards"]:
            if n in handles:
                self.handles[n] = handles[n]
            elif create:
                self.handles[n] = self._start(n)
            else:
                self.handles[n] = ray.get_actor(n, namespace=spec["namespace"])

    def _start(self, shard_name: str) -> Any:
        ray = _ray()
        opts = {"max_restarts": -1, "max_task_retries": 0, "max_concurrency": 1,
                "name": shard_name, "namespace": self._spec["namespace"], **self._actor_options}
        return ray.remote(Shard).options(**opts).remote(shard_name, str(self.root), self._factory, **self._shard_kw)

    @property
    def shard_names(self) -> list[str]:
        return list(self._spec["shards"])

    def shard_of(self, stream_id: str) -> str:
        """The shard actor name that serves ``stream_id``."""
        return self._owner[slot_of(stream_id, self.n_slots)]

    def _refresh(self) -> None:
        self._load_ring(read_ring(self.root))

    def _call(self, shard: str, method: str, *args: Any) -> Any:
        """One call, retried while the shard is restarting."""
        ray = _ray()
        deadline = time.monotonic() + self.retry_s
        while True:
            try:
                return ray.get(getattr(self.handles[shard], method).remote(*args))
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as e:
                if time.monotonic() > deadline:
                    raise ClusterError(f"shard {shard} unreachable for {self.retry_s:.0f} s: {e}") from e
                time.sleep(0.05)

    def _checked(self, shard: str, method: str, *args: Any) -> Any:
        value, err = self._call(shard, method, *args)
        if err is not None:
            raise decode_error(err)
        return value

    def _routed(self, stream_id: str, method: str, *args: Any) -> Any:
        """Call ``method(slot, stream_id, *args)`` on the stream's shard, following a moved slot once."""
        k = slot_of(stream_id, self.n_slots)
        try:
            return self._checked(self._owner[k], method, k, stream_id, *args)
        except SlotMovedError:
            self._refresh()
            return self._checked(self._owner[k], method, k, stream_id, *args)

    # ------------------------------------------------------------------ the StreamPool API
    def add(self, stream_id: str) -> None:
        """Start a new stream (fresh state) on its shard."""
        if not isinstance(stream_id, str):
            raise TypeError(f"stream ids are str, got {type(stream_id).__name__}")
        k = slot_of(stream_id, self.n_slots)
        value, err = self._call(self._owner[k], "add", k, stream_id, False)
        if err is not None and err[0] == "moved":
            self._refresh()
            value, err = self._call(self._owner[k], "add", k, stream_id, False)
        if err is not None:
            raise decode_error(err)
        self._cursor[stream_id] = -1

    def add_many(self, stream_ids: Iterable[str]) -> None:
        """:meth:`add` for many streams, one call per shard. Idempotent: ids already in the cluster are left
        as they are (so a call retried after a shard died is harmless)."""
        ids = list(stream_ids)
        for sid in ids:
            if not isinstance(sid, str):
                raise TypeError(f"stream ids are str, got {type(sid).__name__}")
        by_shard: dict[str, list[str]] = {}
        for sid in ids:
            by_shard.setdefault(self.shard_of(sid), []).append(sid)
        first: Exception | None = None
        for sh, sids in by_shard.items():
            got = self._call(sh, "add_many", [(slot_of(s, self.n_slots), s, True) for s in sids])
            for sid, (_, err) in zip(sids, got):
                if err is None:
                    self._cursor.setdefault(sid, -1)
                elif err[0] == "moved":
                    self.add(sid)
                elif first is None:
                    first = decode_error(err)
        if first is not None:
            raise first

    def submit(self, stream_id: str, chunk: Tensor, seq: int) -> bool:
        """Apply chunk number ``seq`` of the stream (then step what is complete). True: applied; False:
        a retry of a chunk already applied (nothing done). Raises on a refused chunk, nothing changed."""
        return self.submit_many([(stream_id, chunk, seq)])[0]

    def submit_many(self, items: Iterable[tuple[str, Tensor, int]], *, errors: str = "raise") -> list[Any]:
        """Submit ``(stream_id, chunk, seq)`` items, one call per shard, shards in parallel. Each item is
        applied or refused on its own; returns True/False per item as :meth:`submit`. ``errors="raise"``
        raises the first refusal after all items were handled, ``"return"`` puts the exception in the list."""
        if errors not in ("raise", "return"):
            raise ValueError(f"errors must be 'raise' or 'return', got {errors!r}")
        items = list(items)
        out: list[Any] = [None] * len(items)
        todo = list(range(len(items)))
        for attempt in range(2):  # a second round only for items whose slot moved
            by_shard: dict[str, list[int]] = {}
            for i in todo:
                sid = items[i][0]
                if not isinstance(sid, str):
                    out[i] = TypeError(f"stream ids are str, got {type(sid).__name__}")
                    continue
                by_shard.setdefault(self._owner[slot_of(sid, self.n_slots)], []).append(i)
            res = self._fan_out({
                sh: [(slot_of(items[i][0], self.n_slots), items[i][0], items[i][2], _wire(items[i][1])) for i in idx]
                for sh, idx in by_shard.items()
            })
            moved = []
            for sh, idx in by_shard.items():
                for i, st in zip(idx, res[sh]):
                    if isinstance(st, bool):
                        out[i] = st
                    elif st[0] == "moved" and attempt == 0:
                        moved.append(i)
                    else:
                        out[i] = decode_error(st)
            if not moved:
                break
            self._refresh()
            todo = moved
        if errors == "raise":
            for i, v in enumerate(out):
                if isinstance(v, Exception):
                    raise type(v)(f"item {i} ({items[i][0]!r}, seq {items[i][2]!r}): {v}")
        return out

    def _fan_out(self, batches: dict[str, list]) -> dict[str, list]:
        """``submit_many`` on several shards at once; a shard that dies is retried alone (its applied
        chunks are dropped as retries by their sequence numbers)."""
        ray = _ray()
        calls = {sh: _packed(b) for sh, b in batches.items()}
        refs = {sh: getattr(self.handles[sh], m).remote(*a) for sh, (m, a) in calls.items()}
        out = {}
        for sh, ref in refs.items():
            try:
                out[sh] = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
                out[sh] = self._call(sh, calls[sh][0], *calls[sh][1])
        return out

    def results(self, stream_id: str, *, with_seq: bool = False) -> list[Any]:
        """The stream's new outputs, oldest first, each once (see the module docstring): tensors as
        :meth:`StreamPool.results` returns them, or ``(quantum_index, y)`` pairs with ``with_seq=True``."""
        return self.results_many([stream_id], with_seq=with_seq)[stream_id]

    def results_many(self, stream_ids: Sequence[str], *, with_seq: bool = False) -> dict[str, list[Any]]:
        """:meth:`results` of many streams, one call per shard."""
        ray = _ray()
        by_shard: dict[str, list[str]] = {}
        for sid in stream_ids:
            by_shard.setdefault(self.shard_of(sid), []).append(sid)
        reqs = {sh: [(slot_of(s, self.n_slots), s, self._cursor.get(s), False) for s in sids] for sh, sids in by_shard.items()}
        refs = {sh: self.handles[sh].results_packed.remote(r) for sh, r in reqs.items()}
        out: dict[str, list[Any]] = {}
        for sh, sids in by_shard.items():
            try:
                got, flat = ray.get(refs[sh])
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
                got, flat = self._call(sh, "results_packed", reqs[sh])
            values = torch.from_numpy(flat.copy()) if flat is not None else None  # Ray hands read-only arrays
            off = 0
            for sid, (items, err) in zip(sids, got):
                if err is not None and err[0] == "moved":
                    self._refresh()
                    out[sid] = self.results_many([sid], with_seq=True)[sid]
                    continue
                if err is not None:
                    raise decode_error(err)
                ys = []
                for q, shape in items:
                    n = math.prod(shape)
                    assert values is not None
                    ys.append((int(q), values[off : off + n].reshape(shape)))
                    off += n
                if ys:
                    self._cursor[sid] = ys[-1][0]
                out[sid] = ys
        return out if with_seq else {sid: [y for _, y in v] for sid, v in out.items()}

    def results_after(self, stream_id: str, after: int) -> list[tuple[int, Tensor]]:
        """``(quantum_index, y)`` outputs with index > ``after``, acknowledging those <= ``after``: a
        consumer that keeps its own cursor (an HTTP client) gets exactly-once delivery."""
        items = self._routed(stream_id, "results_one", after, False)
        return [(int(q), torch.from_numpy(y.copy())) for q, y in items]

    def take(self, stream_id: str) -> list[tuple[int, Tensor]]:
        """Pop the stream's outputs as ``(quantum_index, y)`` (acknowledged as they are returned: a reply
        lost in a crash is not served again)."""
        items = self._routed(stream_id, "results_one", None, True)
        return [(int(q), torch.from_numpy(y.copy())) for q, y in items]

    def evict(self, stream_id: str) -> list[Tensor]:
        """Remove a stream; returns its outputs not yet returned by :meth:`results`."""
        items = self._routed(stream_id, "evict")
        after = self._cursor.pop(stream_id, -1)
        return [torch.from_numpy(y.copy()) for q, y in items if after is None or q > after]

    def reset(self, stream_id: str) -> None:
        """Fresh state, pending samples dropped; sequence numbers and quantum indices keep counting."""
        self._routed(stream_id, "reset")

    def info(self, stream_id: str) -> dict[str, int]:
        """The stream's counters: ``next_seq`` (chunk number expected next), ``position``, ``seq`` (next
        quantum index), ``pending``, ``outbox`` (outputs kept until acknowledged)."""
        return self._routed(stream_id, "info")

    def ids(self) -> list[str]:
        ray = _ray()
        return [sid for ids in ray.get([h.ids.remote() for h in self.handles.values()]) for sid in ids]

    def checkpoint(self) -> list[Path]:
        """Checkpoint every slot of every shard now (shards in parallel); returns the checkpoint dirs."""
        ray = _ray()
        refs = {sh: h.checkpoint.remote() for sh, h in self.handles.items()}
        out: list[Path] = []
        for sh, ref in refs.items():
            try:
                paths = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
                paths = self._call(sh, "checkpoint")
            out.extend(Path(p) for p in paths)
        return out

    def stats(self) -> dict[str, Any]:
        """Totals over shards plus each shard's counters (``per_shard``)."""
        per = [self._call(sh, "stats") for sh in self.handles]
        steps = sum(s["steps"] for s in per)
        batches = sum(s["batches"] for s in per)
        return {
            "shards": len(per), "slots": self.n_slots, "streams": sum(s["streams"] for s in per),
            "steps": steps, "batches": batches, "mean_batch": steps / batches if batches else 0.0,
            "pending_samples": sum(s["pending_samples"] for s in per),
            "queued_results": sum(s["outbox"] for s in per), "per_shard": per,
        }

    # ------------------------------------------------------------------ cluster operations
    def add_shards(self, n: int = 1) -> dict[str, Any]:
        """Rebalance onto ``n`` new shards: the slots the new ring gives them are checkpointed and released
        by their old owners, then opened (state, pending samples, outputs, counters) by the new ones.
        Returns the moved slots and the seconds it took."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        ray = _ray()
        t0 = time.perf_counter()
        old = self._owner
        names = self.shard_names
        base = self._spec["name"]
        used = set(names)
        new_names, i = [], len(names)
        while len(new_names) < n:
            cand = f"{base}-{i}"
            if cand not in used:
                new_names.append(cand)
            i += 1
        spec = {**self._spec, "shards": names + new_names}
        if spec["n_slots"] < len(spec["shards"]):
            raise ValueError(f"{len(spec['shards'])} shards need at least as many slots (have {spec['n_slots']})")
        new_owner = ring_of(spec).assignment(self.n_slots)
        moved = [k for k in range(self.n_slots) if new_owner[k] != old[k]]
        by_old: dict[str, list[int]] = {}
        for k in moved:
            by_old.setdefault(old[k], []).append(k)
        if not hasattr(self, "_factory"):
            raise ClusterError("add_shards needs the RayStreamPool that created the cluster (it holds the stream factory)")
        ray.get([self.handles[sh].release.remote(ks) for sh, ks in by_old.items()])
        write_ring(self.root, spec)
        self._load_ring(spec, create=True)
        by_new: dict[str, list[int]] = {}
        for k in moved:
            by_new.setdefault(new_owner[k], []).append(k)
        for sh, ks in by_new.items():
            self._call(sh, "load", ks)
        return {"moved_slots": moved, "new_shards": new_names, "seconds": time.perf_counter() - t0}

    def kill_shard(self, shard: str, *, restart: bool = True) -> None:
        """Kill a shard actor as a crash would (``ray.kill``); Ray restarts it unless ``restart=False``."""
        _ray().kill(self.handles[shard], no_restart=not restart)

    def shutdown(self) -> None:
        """Stop every shard actor (the checkpoint directory stays)."""
        ray = _ray()
        for h in self.handles.values():
            ray.kill(h, no_restart=True)

    def describe(self) -> dict[str, Any]:
        """The model's input frame, dtype, window and hop, as a shard reports them."""
        return dict(self._describe)

    def __repr__(self) -> str:
        return f"RayStreamPool(shards={len(self.handles)}, slots={self.n_slots}, root={str(self.root)!r})"
