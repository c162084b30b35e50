"""An append-only journal of what a slot accepted since its last checkpoint.

Why a journal on the shard's disk rather than a buffer kept by the submitter: a chunk acknowledged to
an HTTP device (or any producer that does not keep its history) must survive the shard's process dying,
and the producer may be a Serve replica that restarts too. With the journal, an acknowledgement means
"written to the OS", which a killed process cannot undo; recovery needs nothing from anyone else
(restore the checkpoint, re-apply the journal), and a restarted actor is consistent before it answers
its first call. The cost is one ``write`` per accepted chunk (tens of microseconds) and the disk space of
the chunks since the last checkpoint.

Records are written with one unbuffered ``os.write`` each: a killed process leaves every record it
acknowledged complete, and at most a torn last record (a crash inside the write, never acknowledged),
which :func:`read_journal` detects by its length and CRC and drops. ``fsync=True`` also syncs every
record, for machine (power) loss rather than process loss; that needs the checkpoint directory on
storage that outlives the machine, which a multi-machine deployment needs anyway.

Record layout (little endian): ``kind:u8, id_len:u16, seq:i64, n_bytes:u32, id, payload, crc32:u32``
(the CRC covers everything before it).
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Iterator, NamedTuple

__all__ = ["Journal", "Record", "read_journal", "ADD", "SUBMIT", "ACK", "EVICT", "RESET", "PROCESS"]

ADD, SUBMIT, ACK, EVICT, RESET, PROCESS = b"A", b"S", b"K", b"E", b"R", b"P"
_HEAD = struct.Struct("<cHqI")
_CRC = struct.Struct("<I")


class Record(NamedTuple):
    kind: bytes
    stream_id: str
    seq: int
    payload: bytes


class Journal:
    """Appends records to one file; see the module docstring for the guarantees."""

    def __init__(self, path: str | os.PathLike, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, kind: bytes, stream_id: str = "", seq: int = 0, payload: bytes = b"") -> None:
        sid = stream_id.encode("utf-8")
        body = _HEAD.pack(kind, len(sid), seq, len(payload)) + sid + payload
        buf = body + _CRC.pack(zlib.crc32(body))
        n = os.write(self._fd, buf)
        while n < len(buf):  # regular files write fully, but be exact
            n += os.write(self._fd, buf[n:])
        if self.fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass


def read_journal(path: str | os.PathLike) -> Iterator[Record]:
    """The complete records of a journal, in order; a torn or corrupt tail ends the iteration."""
    p = Path(path)
    if not p.exists():
        return
    data = p.read_bytes()
    i, n = 0, len(data)
    while i + _HEAD.size <= n:
        kind, id_len, seq, n_bytes = _HEAD.unpack_from(data, i)
        end = i + _HEAD.size + id_len + n_bytes
        if end + _CRC.size > n:
            return
        (crc,) = _CRC.unpack_from(data, end)
        if crc != zlib.crc32(data[i:end]):
            return
        j = i + _HEAD.size
        yield Record(kind, data[j : j + id_len].decode("utf-8"), seq, data[j + id_len : end])
        i = end + _CRC.size
