"""Serve many independent streams with batched steps: :class:`StreamPool`.

Thousands of live signals (one per sensor, patient, microphone) send chunks at their own pace. A pool
keeps one explicit state per stream, buffers each stream's pending samples, and steps every stream that
has a full *quantum* of samples (the hop ``H`` in window mode, a fixed ``quantum`` in continuous mode)
in one batched :meth:`Stream.step`, so all rows of a batch advance in lock-step.

>>> pool = StreamPool(thinkonce.stream(model, window=256, hop=64))    # doctest: +SKIP
>>> pool.add("wrist-17"); pool.submit("wrist-17", chunk)              # doctest: +SKIP
>>> pool.process(); pool.results("wrist-17")                          # doctest: +SKIP

Batching
    Rows of a batched state must agree on everything the step reads from row 0: the sample clock's
    window phase (window mode) and the integer phase counters of strided layers. The pool groups the
    ready streams by a *signature* (state layout plus those counters, plus the window phase) and runs one
    ``step`` per group. States stay in the batched tensors a step produced; a stream only remembers its
    batch and row, so a group that steps together again reuses the batch without copying (the steady
    state of a real-time server), and a batch whose rows have mostly moved on is compacted.

Results
    Every quantum a stream consumes yields one item: that stream's ``y`` with the batch dim removed
    (window mode: ``(n_windows, *out)``, the windows that quantum completed - 0 before the first window,
    then ``quantum // hop``; continuous mode: ``(channels, frames)``). Items carry a per-stream *quantum index* (``seq``): 0 for the first quantum
    the stream consumed, 1 for the next, ... (never reused, also across :meth:`reset`). Without
    ``on_output`` they queue until :meth:`results` pops them; with ``on_output`` they are handed to the
    callback (in order, from the thread that runs :meth:`process`) and not queued.

Checkpoint contract
    :meth:`checkpoint` captures, at one instant between batched steps, every stream's state, its pending
    (submitted, not yet stepped) samples, its undelivered results and its counters, and replaces
    ``<checkpoint_dir>/pool.safetensors`` atomically (temp file, fsync, ``os.replace``): a process killed
    at any moment leaves either the previous or the new checkpoint complete. After
    ``StreamPool.restore(stream, checkpoint_dir)``:

    * outputs delivered (popped by :meth:`results` or passed to ``on_output``) before the checkpoint are
      not delivered again;
    * outputs that were undelivered at the checkpoint are delivered again (they are in the file);
    * every quantum index from the checkpoint on is produced again exactly once, with the same value (up
      to float rounding of a different batch composition), once its samples are submitted;
    * samples submitted after the checkpoint are not in it: :meth:`position` of the restored pool says how
      many samples of each stream's signal (since :meth:`add` / :meth:`reset`) it holds, so the producer
      resends from there.

    Outputs delivered after the checkpoint and before a crash are therefore delivered twice, once before
    and once after the restore, under the same quantum index: a consumer that keeps the last index it
    saw per stream (``results(id, with_seq=True)``, ``on_output`` with ``callback_seq=True``) gets
    exactly-once delivery.

Thread safety
    One lock guards the pool's maps (:meth:`submit`, :meth:`add`, :meth:`results`, ... take it briefly).
    :meth:`process` takes a snapshot of the ready quanta under it, runs the batched step outside it (new
    submissions go to the pending buffers meanwhile), then commits. Calls to :meth:`process` and
    :meth:`checkpoint` are serialised with each other; a stream evicted or reset while its quantum is being
    stepped drops that step's result.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from safetensors.torch import save_file
from torch import Tensor

from .errors import StateFileError, StreamInputError, ThinkonceError
from .stream import Stream
from .stream.state import State, read_safetensors

__all__ = ["StreamPool", "UnknownStreamError", "CHECKPOINT_FILE"]

CHECKPOINT_FILE = "pool.safetensors"
FORMAT = "thinkonce-pool"
VERSION = "1"
_COMPACT_MIN_ROWS = 8  # batches smaller than this are never compacted
_LATENCY_WINDOW = 100_000  # batched-step latencies kept for the percentiles


class UnknownStreamError(StreamInputError, KeyError):
    """The stream id is not in the pool."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


# ---------------------------------------------------------------------------------------------- internals
class _Batch:
    """A batched state some streams live in, one row each. ``state`` is never mutated."""

    __slots__ = ("state", "size", "members", "sig")

    def __init__(self, state: State, sig: tuple) -> None:
        self.state = state
        self.size = int(state["@t"].shape[0])
        self.members: dict[int, _Entry] = {}
        self.sig = sig


class _Entry:
    """One stream of the pool."""

    __slots__ = ("sid", "batch", "row", "pending", "pending_n", "tickets", "results", "seq", "t", "gen", "busy")

    def __init__(self, sid: str) -> None:
        self.sid = sid
        self.batch: _Batch | None = None
        self.row = 0
        self.pending: deque[Tensor] = deque()  # submitted samples, (*frame, n) each, in order
        self.pending_n = 0
        self.tickets: deque[int] = deque()  # arrival order of each complete pending quantum
        self.results: deque[tuple[int, Tensor]] = deque()  # (quantum index, y)
        self.seq = 0  # quanta consumed since add (the next quantum index)
        self.t = 0  # samples consumed by the state since add / reset
        self.gen = 0  # bumped by reset: a step in flight for an older generation is dropped
        self.busy = False  # a quantum of this stream is being stepped


def _signature(state: State) -> tuple:
    """What rows must share to be stepped together: layout of every entry and the integer phase counters
    (layers read them from row 0). The sample clock ``@t`` is left out (it only matters through the window
    phase, which the pool adds to the key)."""
    sig = []
    for k, v in state.items():
        if k == "@t":
            continue
        val = tuple(v[0].reshape(-1).tolist()) if not v.is_floating_point() and v.shape[0] else None
        sig.append((k, tuple(v.shape[1:]), v.dtype, val))
    return tuple(sig)


def _gather(refs: list[tuple[State, int]], keys: Iterable[str]) -> State:
    """Stack rows ``(state, row)`` (in this order) into one batched state. Consecutive rows of one source
    are taken with one ``index_select`` per key; a whole source in order is reused without a copy."""
    parts: list[tuple[State, list[int]]] = []
    for st, row in refs:
        if parts and parts[-1][0] is st:
            parts[-1][1].append(row)
        else:
            parts.append((st, [row]))
    out: State = {}
    idx_cache: list[Tensor | None] = []
    for st, rows in parts:
        n = int(st["@t"].shape[0])
        whole = len(rows) == n and rows == list(range(n))
        idx_cache.append(None if whole else torch.tensor(rows, dtype=torch.int64))
    for k in keys:
        pieces = []
        for (st, _), idx in zip(parts, idx_cache):
            v = st[k]
            pieces.append(v if idx is None else v.index_select(0, idx.to(v.device)))
        out[k] = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=0)
    return out


def _config_of(s: Stream, quantum: int, keys: Iterable[str]) -> dict[str, Any]:
    """What a checkpoint must agree on with the stream that restores it."""
    return {
        "window": s.window, "hop": s.hop, "edge": s.edge, "quantum": quantum,
        "frame": list(s.input_frame_shape), "dtype": str(s.dtype), "keys": list(keys),
        "fingerprint": f"{s.fingerprint:016x}",
    }


# ---------------------------------------------------------------------------------------------- the pool
class StreamPool:
    """Many independent streams of one :class:`Stream`, stepped in batches.

    Args:
        stream: the converted model (window or continuous mode).
        max_batch: most streams stepped in one :meth:`process` round (default for ``process``).
        checkpoint_dir: where :meth:`checkpoint` writes ``pool.safetensors``.
        quantum: samples per stream-step. Window mode: a multiple of the hop (default: the hop).
            Continuous mode: required.
        on_output: ``on_output(stream_id, y)`` receives every output instead of the result queue
            (``on_output(stream_id, y, seq)`` with ``callback_seq=True``). It runs on the thread calling
            :meth:`process`, in order per stream; it may call :meth:`submit`, :meth:`results`, ... but not
            :meth:`process` or :meth:`checkpoint`. If it raises, the outputs not yet handed over are queued
            (see :meth:`results`) and the exception propagates from :meth:`process`.
    """

    def __init__(
        self,
        stream: Stream,
        *,
        max_batch: int = 1024,
        checkpoint_dir: str | os.PathLike | None = None,
        quantum: int | None = None,
        on_output: Callable[..., Any] | None = None,
        callback_seq: bool = False,
    ) -> None:
        if not isinstance(stream, Stream):
            raise TypeError(f"StreamPool needs a thinkonce Stream, got {type(stream).__name__}")
        if not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be a positive int, got {max_batch!r}")
        if stream.window is None:
            if quantum is None:
                raise ValueError(
                    "a continuous-mode stream has no hop: pass quantum=N, the samples every stream-step consumes"
                )
        else:
            assert stream.hop is not None
            quantum = stream.hop if quantum is None else quantum
        if not isinstance(quantum, int) or quantum < 1:
            raise ValueError(f"quantum must be a positive int, got {quantum!r}")
        if stream.window is not None and quantum % stream.hop:
            raise ValueError(f"quantum={quantum} must be a multiple of the hop ({stream.hop}) in window mode")
        self.stream = stream
        self.quantum = quantum
        self.max_batch = max_batch
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.on_output = on_output
        self.callback_seq = callback_seq
        self._frame = tuple(stream.input_frame_shape)
        init = stream.init_state(1)
        self._keys = tuple(init.keys())
        self._fresh = _Batch(init, _signature(init))  # shared by every fresh stream (never mutated)
        self._streams: dict[str, _Entry] = {}
        self._ready: dict[str, _Entry] = {}  # streams with >= one quantum pending and none in flight
        self._ticket = 0
        self._lock = threading.Lock()  # the maps
        self._step_lock = threading.Lock()  # process() and checkpoint() snapshots
        self._ckpt_lock = threading.Lock()  # checkpoint writers
        self._stepper: int | None = None  # thread inside process()
        self._steps = 0
        self._batches = 0
        self._step_us: deque[float] = deque(maxlen=_LATENCY_WINDOW)
        self._batch_us: deque[float] = deque(maxlen=_LATENCY_WINDOW)

    # ------------------------------------------------------------------ membership
    def add(self, stream_id: str) -> None:
        """Start a new stream (fresh state, nothing pending)."""
        if not isinstance(stream_id, str):
            raise TypeError(f"stream ids are str, got {type(stream_id).__name__}")
        with self._lock:
            if stream_id in self._streams:
                raise StreamInputError(f"stream {stream_id!r} is already in the pool")
            e = _Entry(stream_id)
            self._place(e, self._fresh, 0)
            self._streams[stream_id] = e

    def evict(self, stream_id: str) -> list[Tensor]:
        """Remove a stream; returns its undelivered results (a step in flight for it is dropped)."""
        with self._lock:
            e = self._get(stream_id)
            del self._streams[stream_id]
            self._ready.pop(stream_id, None)
            self._unplace(e)
            e.gen += 1
            return [y for _, y in e.results]

    def reset(self, stream_id: str) -> None:
        """Restart a stream: fresh state (as after :meth:`add`), pending samples dropped. Undelivered
        results stay queued and quantum indices keep counting, so they never repeat."""
        with self._lock:
            e = self._get(stream_id)
            self._unplace(e)
            self._place(e, self._fresh, 0)
            e.pending.clear()
            e.pending_n = 0
            e.tickets.clear()
            e.t = 0
            e.gen += 1
            e.busy = False
            self._ready.pop(stream_id, None)

    def __contains__(self, stream_id: object) -> bool:
        with self._lock:
            return stream_id in self._streams

    def __len__(self) -> int:
        with self._lock:
            return len(self._streams)

    def ids(self) -> list[str]:
        """Stream ids in the order they were added."""
        with self._lock:
            return list(self._streams)

    # ------------------------------------------------------------------ input
    def submit(self, stream_id: str, chunk: Tensor) -> None:
        """Append ``chunk`` (channels, n), any n >= 0, to a stream's pending samples. Thread-safe.

        The chunk is validated (id, shape, dtype, device, finiteness) before anything is buffered, and
        copied, so the caller may reuse its tensor.
        """
        s = self.stream
        if not isinstance(chunk, Tensor):
            raise StreamInputError(f"chunk must be a torch.Tensor, got {type(chunk).__name__}")
        want = len(self._frame) + 1
        if chunk.dim() != want or tuple(chunk.shape[:-1]) != self._frame:
            dims = ", ".join([*map(str, self._frame), "time"])
            raise StreamInputError(
                f"chunk must be shaped ({dims}) for one stream (no batch dim), got {tuple(chunk.shape)}"
            )
        if chunk.dtype != s.dtype:
            raise StreamInputError(f"chunk dtype is {chunk.dtype} but the model computes in {s.dtype}; convert with x.to({s.dtype})")
        if chunk.device != s.device:
            raise StreamInputError(f"chunk is on {chunk.device} but the stream is on {s.device}")
        if not s.allow_nonfinite and chunk.numel() and not bool(torch.isfinite(chunk).all()):
            raise StreamInputError(
                "chunk contains NaN or Inf; they would poison the stream's cached activations. Clean the "
                "signal first, or pass allow_nonfinite=True to thinkonce.stream."
            )
        n = int(chunk.shape[-1])
        data = chunk.detach().clone(memory_format=torch.contiguous_format) if n else None
        with self._lock:
            e = self._get(stream_id)
            if data is None:
                return
            before = e.pending_n // self.quantum
            e.pending.append(data)
            e.pending_n += n
            for _ in range(e.pending_n // self.quantum - before):
                e.tickets.append(self._ticket)
                self._ticket += 1
            if e.tickets and not e.busy:
                self._ready[stream_id] = e

    # ------------------------------------------------------------------ stepping
    def process(self, max_batch: int | None = None) -> int:
        """Step every stream that has a full quantum pending, in batches of at most ``max_batch`` streams
        (oldest pending quantum first), until none has; returns the number of stream-steps done."""
        mb = self.max_batch if max_batch is None else max_batch
        if not isinstance(mb, int) or mb < 1:
            raise ValueError(f"max_batch must be a positive int, got {mb!r}")
        self._no_reentry("process")
        done = 0
        with self._step_lock:
            self._stepper = threading.get_ident()
            try:
                while True:
                    n = self._round(mb)
                    if n < 0:
                        break
                    done += n
            finally:
                self._stepper = None
        return done

    def _round(self, mb: int) -> int:
        """One round: take up to ``mb`` ready quanta, step them in signature groups. -1: nothing ready."""
        q = self.quantum
        with self._lock:
            if not self._ready:
                return -1
            cands = sorted(self._ready.values(), key=lambda e: e.tickets[0])[:mb]
            groups: dict[tuple, list[tuple[_Entry, int, State, int, Tensor]]] = {}
            for e in cands:
                del self._ready[e.sid]
                e.busy = True
                e.tickets.popleft()
                x = self._take(e, q)
                assert e.batch is not None
                key = (e.batch.sig, self._phase(e.t))
                groups.setdefault(key, []).append((e, e.gen, e.batch.state, e.row, x))
        done = 0
        todo = list(groups.values())
        try:
            while todo:
                n, out = self._step_group(todo[0])  # commits the group
                todo.pop(0)
                done += n
                if out:
                    self._deliver(out)
        except BaseException:
            with self._lock:  # give the quanta not stepped back, in front of what came since
                for grp in todo:
                    for e, gen, _, _, x in grp:
                        e.busy = False
                        if e.gen != gen:
                            continue
                        e.pending.appendleft(x)
                        e.pending_n += q
                        e.tickets.appendleft(-1)  # oldest
                        if e.sid in self._streams:
                            self._ready[e.sid] = e
            raise
        return done

    def _step_group(self, grp: list[tuple[_Entry, int, State, int, Tensor]]) -> tuple[int, list]:
        """Step one group of compatible rows and commit; returns (stream-steps, outputs for the callback)."""
        s, q = self.stream, self.quantum
        # rows of one source next to each other, in row order: a batch that steps together again is reused
        order: dict[int, int] = {}
        grp = sorted(grp, key=lambda r: (order.setdefault(id(r[2]), len(order)), r[3]))
        t0 = time.perf_counter()
        state = _gather([(r[2], r[3]) for r in grp], self._keys)
        x = torch.stack([r[4] for r in grp])
        t1 = time.perf_counter()
        y, new = s.step(x, state)
        t2 = time.perf_counter()
        ys = y.unbind(0)
        sig = _signature(new)
        t3 = time.perf_counter()
        batch = _Batch(new, sig)
        out: list[tuple[_Entry, int, Tensor]] = []
        with self._lock:
            self._steps += len(grp)
            self._batches += 1
            self._step_us.append((t2 - t1) * 1e6)
            self._batch_us.append((t3 - t0) * 1e6)
            for i, (e, gen, _, _, _) in enumerate(grp):
                e.busy = False
                if e.gen != gen or self._streams.get(e.sid) is not e:
                    continue  # evicted or reset meanwhile: its result is dropped
                self._unplace(e)
                self._place(e, batch, i)
                e.t += q
                seq = e.seq
                e.seq += 1
                if self.on_output is None:
                    e.results.append((seq, ys[i]))
                else:
                    out.append((e, seq, ys[i]))
                if e.tickets:
                    self._ready[e.sid] = e
            self._maybe_compact(batch)
        return len(grp), out

    def _deliver(self, out: list[tuple[_Entry, int, Tensor]]) -> None:
        cb = self.on_output
        assert cb is not None
        for j, (e, seq, y) in enumerate(out):
            try:
                if self.callback_seq:
                    cb(e.sid, y, seq)
                else:
                    cb(e.sid, y)
            except BaseException:
                with self._lock:  # nothing is lost: the rest waits in the result queues
                    for e2, seq2, y2 in out[j:]:
                        if self._streams.get(e2.sid) is e2:
                            e2.results.append((seq2, y2))
                raise

    # ------------------------------------------------------------------ output
    def results(self, stream_id: str, *, with_seq: bool = False) -> list[Any]:
        """Pop a stream's undelivered outputs, oldest first: one tensor per quantum (batch dim removed), or
        ``(quantum_index, y)`` pairs with ``with_seq=True``."""
        with self._lock:
            e = self._get(stream_id)
            items = list(e.results)
            e.results.clear()
        return items if with_seq else [y for _, y in items]

    def position(self, stream_id: str) -> int:
        """Samples of the stream's signal (since :meth:`add` / :meth:`reset`) the pool holds: consumed plus
        pending. After :meth:`restore`, the producer resends its signal from this sample on."""
        with self._lock:
            e = self._get(stream_id)
            return e.t + e.pending_n

    def info(self, stream_id: str) -> dict[str, int]:
        """``seq`` (next quantum index), ``position``, ``pending`` samples, ``queued`` results."""
        with self._lock:
            e = self._get(stream_id)
            return {"seq": e.seq, "position": e.t + e.pending_n, "pending": e.pending_n, "queued": len(e.results)}

    def state(self, stream_id: str) -> State:
        """A copy of the stream's state (batch of 1), e.g. to continue it alone with ``stream.step``."""
        with self._lock:
            e = self._get(stream_id)
            assert e.batch is not None
            st, row = e.batch.state, e.row
        return {k: v[row : row + 1].clone() for k, v in st.items()}

    def stats(self) -> dict[str, float | int | None]:
        """Counters and latencies (us) of the batched steps: ``step`` is the ``Stream.step`` call alone,
        ``batch`` adds stacking the states/chunks and splitting the outputs."""
        with self._lock:
            step_us = sorted(self._step_us)
            batch_us = sorted(self._batch_us)
            pending = sum(e.pending_n for e in self._streams.values())
            queued = sum(len(e.results) for e in self._streams.values())
            streams, steps, batches = len(self._streams), self._steps, self._batches

        def pct(v: list[float], p: float) -> float | None:
            if not v:
                return None
            return float(v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))])

        return {
            "streams": streams,
            "steps": steps,
            "batches": batches,
            "mean_batch": steps / batches if batches else 0.0,
            "p50_step_us": pct(step_us, 50),
            "p99_step_us": pct(step_us, 99),
            "p50_batch_us": pct(batch_us, 50),
            "p99_batch_us": pct(batch_us, 99),
            "pending_samples": pending,
            "queued_results": queued,
        }

    # ------------------------------------------------------------------ checkpoint
    def checkpoint(self) -> Path:
        """Write every stream's state, pending samples, undelivered results and counters to
        ``checkpoint_dir/pool.safetensors``, atomically (see the module docstring for the contract)."""
        if self.checkpoint_dir is None:
            raise ThinkonceError("this pool has no checkpoint_dir; pass StreamPool(..., checkpoint_dir=path)")
        self._no_reentry("checkpoint")
        with self._ckpt_lock:
            with self._step_lock, self._lock:  # an instant between batched steps
                snap = [
                    (e.sid, e.batch.state, e.row, e.batch.sig, list(e.pending), list(e.results), e.seq, e.t, list(e.tickets))
                    for e in self._streams.values()
                    if e.batch is not None
                ]
            return self._write(snap)

    def _write(self, snap: list) -> Path:
        s = self.stream
        tensors: dict[str, Tensor] = {}
        groups: dict[tuple, list[int]] = {}
        for i, rec in enumerate(snap):
            groups.setdefault(rec[3], []).append(i)
        row_of: dict[int, tuple[int, int]] = {}
        for g, members in enumerate(groups.values()):
            st = _gather([(snap[i][1], snap[i][2]) for i in members], self._keys)
            for k, v in st.items():
                tensors[f"state/{g}/{k}"] = v.detach().clone(memory_format=torch.contiguous_format)
            for r, i in enumerate(members):
                row_of[i] = (g, r)
        pend, res, streams = [], [], []
        for i, (sid, _, _, _, pending, results, seq, t, tickets) in enumerate(snap):
            n = sum(int(p.shape[-1]) for p in pending)
            pend.extend(pending)
            res.extend(y.reshape(-1) for _, y in results)
            streams.append({
                "id": sid, "group": row_of[i][0], "row": row_of[i][1], "seq": seq, "t": t, "pending": n,
                "tickets": tickets, "results": [[q, list(y.shape)] for q, y in results],
            })
        empty = torch.zeros((*self._frame, 0), dtype=s.dtype)
        tensors["pending"] = torch.cat([empty, *pend], dim=-1).contiguous()
        tensors["results"] = torch.cat([empty.reshape(-1), *res]).contiguous()
        manifest = {
            "config": self._config(),
            "streams": streams,
            "ticket": self._ticket,
            "steps": self._steps,
            "batches": self._batches,
        }
        meta = {"format": FORMAT, "version": VERSION, "manifest": json.dumps(manifest)}
        d = self.checkpoint_dir
        assert d is not None
        d.mkdir(parents=True, exist_ok=True)
        final = d / CHECKPOINT_FILE
        tmp = d / f"{CHECKPOINT_FILE}.tmp-{os.getpid()}-{threading.get_ident()}"
        try:
            save_file(tensors, str(tmp), metadata=meta)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        try:  # make the rename itself durable
            fd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass
        return final

    def _config(self) -> dict[str, Any]:
        return _config_of(self.stream, self.quantum, self._keys)

    @classmethod
    def restore(
        cls,
        stream: Stream,
        checkpoint_dir: str | os.PathLike,
        *,
        max_batch: int = 1024,
        on_output: Callable[..., Any] | None = None,
        callback_seq: bool = False,
    ) -> "StreamPool":
        """Resume a pool from ``checkpoint_dir/pool.safetensors`` (written by :meth:`checkpoint`) with the
        same stream (same model, window, hop). Undelivered results come back queued."""
        path = Path(checkpoint_dir) / CHECKPOINT_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no pool checkpoint at {path}")
        meta, tensors = read_safetensors(path, "pool checkpoint")
        if meta.get("format") != FORMAT:
            raise StateFileError(f"{path} is not a thinkonce pool checkpoint")
        if meta.get("version") != VERSION:
            raise StateFileError(f"{path} has pool checkpoint version {meta.get('version')}, expected {VERSION}")
        try:
            manifest = json.loads(meta["manifest"])
        except (KeyError, ValueError) as e:
            raise StateFileError(f"{path}: the checkpoint's manifest is corrupted ({e})") from e
        cfg = manifest["config"]
        mine = _config_of(stream, int(cfg["quantum"]), stream.init_state(1).keys())
        diff = [k for k in mine if mine[k] != cfg.get(k)]
        if diff:
            raise StateFileError(
                "the checkpoint was written for another stream: "
                + ", ".join(f"{k}={cfg.get(k)!r} (this stream: {mine[k]!r})" for k in diff)
            )
        pool = cls(stream, max_batch=max_batch, checkpoint_dir=checkpoint_dir, quantum=int(cfg["quantum"]),
                   on_output=on_output, callback_seq=callback_seq)
        dev = stream.device
        batches: dict[int, _Batch] = {}
        for g in sorted({int(name.split("/")[1]) for name in tensors if name.startswith("state/")}):
            try:
                st = {k: tensors[f"state/{g}/{k}"].to(dev) for k in pool._keys}
                stream.check_state(st, clock=False)  # rows of a group may be at different window phases
            except (KeyError, StreamInputError) as e:
                raise StateFileError(f"{path}: state group {g} does not match the stream's state layout ({e})") from e
            batches[g] = _Batch(st, _signature(st))
        pend = tensors["pending"].to(dev)
        res = tensors["results"].to(dev)
        pp = rp = 0
        for rec in manifest["streams"]:
            e = _Entry(rec["id"])
            pool._place(e, batches[rec["group"]], rec["row"])
            n = int(rec["pending"])
            if n:
                e.pending.append(pend[..., pp : pp + n].clone())
                e.pending_n = n
                pp += n
            for seq, shape in rec["results"]:
                k = 1
                for d in shape:
                    k *= int(d)
                e.results.append((int(seq), res[rp : rp + k].reshape(shape).clone()))
                rp += k
            e.seq, e.t = int(rec["seq"]), int(rec["t"])
            e.tickets = deque(int(t) for t in rec["tickets"])
            pool._streams[e.sid] = e
            if e.tickets:
                pool._ready[e.sid] = e
        pool._ticket = int(manifest["ticket"])
        pool._steps, pool._batches = int(manifest["steps"]), int(manifest["batches"])
        for stale in Path(checkpoint_dir).glob(f"{CHECKPOINT_FILE}.tmp-*"):  # left by a killed writer
            stale.unlink(missing_ok=True)
        return pool

    # ------------------------------------------------------------------ helpers (call with the lock held)
    def _get(self, stream_id: str) -> _Entry:
        e = self._streams.get(stream_id)  # type: ignore[arg-type]
        if e is None:
            raise UnknownStreamError(f"unknown stream {stream_id!r}: add it first with pool.add({stream_id!r})")
        return e

    def _phase(self, t: int) -> Any:
        """What the window emission of a step depends on besides the chunk length: the sample clock before
        the first window, its phase modulo the hop after it."""
        s = self.stream
        if s.window is None:
            return None
        assert s.hop is not None
        return t if t < s.window else ("steady", (t - s.window) % s.hop)

    def _take(self, e: _Entry, n: int) -> Tensor:
        """Pop the next ``n`` pending samples of a stream."""
        first = e.pending[0]
        m = int(first.shape[-1])
        if m == n:
            e.pending.popleft()
            out = first
        elif m > n:
            out = first[..., :n]
            e.pending[0] = first[..., n:]
        else:
            pieces, got = [], 0
            while got < n:
                p = e.pending.popleft()
                k = int(p.shape[-1])
                if got + k > n:
                    e.pending.appendleft(p[..., n - got :])
                    p = p[..., : n - got]
                    k = n - got
                pieces.append(p)
                got += k
            out = torch.cat(pieces, dim=-1)
        e.pending_n -= n
        return out

    def _place(self, e: _Entry, batch: _Batch, row: int) -> None:
        e.batch, e.row = batch, row
        if batch is not self._fresh:
            batch.members[row] = e

    def _unplace(self, e: _Entry) -> None:
        b = e.batch
        if b is None or b is self._fresh:
            return
        b.members.pop(e.row, None)
        e.batch = None
        self._maybe_compact(b)

    def _maybe_compact(self, b: _Batch) -> None:
        """A batch whose rows mostly left is copied down to its live rows, so memory stays within 4x the
        live states whatever the batching pattern."""
        if b.size < _COMPACT_MIN_ROWS or len(b.members) * 4 >= b.size:
            return
        rows = sorted(b.members)
        if not rows:
            return
        idx = torch.tensor(rows, dtype=torch.int64)
        st = {k: v.index_select(0, idx.to(v.device)) for k, v in b.state.items()}
        nb = _Batch(st, b.sig)
        for i, r in enumerate(rows):
            e = b.members[r]
            e.batch, e.row = nb, i
            nb.members[i] = e
        b.members.clear()

    def _no_reentry(self, what: str) -> None:
        if self._stepper == threading.get_ident():
            raise RuntimeError(f"StreamPool.{what}() called from an on_output callback (inside process())")

    def __repr__(self) -> str:
        return f"StreamPool({self.stream!r}, streams={len(self)}, quantum={self.quantum})"
