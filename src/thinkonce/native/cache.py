"""Compiled steps cached on disk, keyed by a hash of the source, the flags and the CPU.

The cache lives in ``$XDG_CACHE_HOME/thinkonce/native`` (default ``~/.cache/thinkonce/native``):
a stream rebuilt in a new process reloads its libraries instead of compiling (0.2-0.5 s each). A
library is written under a temporary name and renamed, so concurrent processes never load half a
file. The key includes the CPU because ``-march=native`` code may not run on another machine.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

from .compiler import Toolchain


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "thinkonce" / "native"


def key(source: str, tc: Toolchain) -> str:
    h = hashlib.sha256()
    for part in (source, tc.cc, tc.version, " ".join(tc.flags), tc.cpu):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


class CompileError(RuntimeError):
    """The C compiler rejected generated code (a bug of an emitter; the message has the compiler's)."""


def compiled_library(source: str, tc: Toolchain) -> Path:
    """Path of the shared library for ``source``, compiling it on a cache miss."""
    d = cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{key(source, tc)}.so"
    if path.exists():
        return path
    fd, tmp_src = tempfile.mkstemp(suffix=".c", dir=d)
    with os.fdopen(fd, "w") as f:
        f.write(source)
    tmp_so = tmp_src[:-2] + ".so.tmp"
    try:
        r = subprocess.run([tc.cc, *tc.flags, "-shared", "-fPIC", "-o", tmp_so, tmp_src, "-lm"],
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise CompileError(f"{tc.cc} failed on generated code: {r.stderr[-2000:]}")
        os.replace(tmp_so, path)
    finally:
        for p in (tmp_src, tmp_so):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
    return path
