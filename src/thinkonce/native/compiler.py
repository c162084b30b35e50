"""The system C compiler and the flags for this CPU: AVX-512, AVX2, NEON or portable C.

Discovery order: ``$CC``, then ``cc``, ``gcc``, ``clang`` on the PATH. The vector width of the
generated kernels follows the CPU's widest float vectors (16 lanes with AVX-512, 8 with AVX2, 4 with
NEON/SSE, 0: plain C with no vector extensions). MSVC is not supported (no GCC vector extensions, no
``-shared``): on Windows the native backend falls back to eager and says so.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Toolchain:
    """A working C compiler and the flags the native backend uses with it."""

    cc: str
    version: str
    flags: tuple[str, ...]
    vector_width: int  # float lanes of the vector type in generated kernels (0: none)
    isa: str  # "avx512" | "avx2" | "neon" | "sse" | "portable"
    cpu: str  # CPU identity for the cache key (model name and feature flags)


def cpu_identity() -> tuple[str, set[str]]:
    """The CPU model and feature flags (Linux /proc/cpuinfo; elsewhere the platform's description)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "CPU part") and model in ("", platform.machine(), platform.processor()):
            model = val.strip()
        if key in ("flags", "Features") and not flags:
            flags = set(val.split())
    return model, flags


def _isa(flags: set[str]) -> tuple[str, int]:
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64", "i686", "x86"):
        if {"avx512f", "avx512vl"} <= flags:
            return "avx512", 16
        if {"avx2", "fma"} <= flags:
            return "avx2", 8
        return "sse", 4
    if machine in ("aarch64", "arm64") or "asimd" in flags or "neon" in flags:
        return "neon", 4
    return "portable", 0


def candidates() -> list[str]:
    env = os.environ.get("CC")
    names = ([env] if env else []) + ["cc", "gcc", "clang"]
    out = []
    for n in names:
        path = shutil.which(n)
        if path and path not in out:
            out.append(path)
    return out


def _works(cc: str, flags: list[str]) -> bool:
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "t.c"
        src.write_text("typedef float vf __attribute__((vector_size(16)));\n"
                       "void f(float* a) { vf v = {1, 2, 3, 4}; v = v * a[0]; a[1] = v[2]; }\n")
        try:
            r = subprocess.run([cc, *flags, "-shared", "-fPIC", "-o", str(Path(d) / "t.so"), str(src)],
                               capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return False
        return r.returncode == 0


@functools.lru_cache(maxsize=None)
def find_toolchain() -> Toolchain | None:
    """The first compiler that builds a shared library with GCC vector extensions, or None."""
    if os.name == "nt":
        return None
    model, flags = cpu_identity()
    isa, width = _isa(flags)
    for cc in candidates():
        base = ["-O3", "-std=gnu99", "-fno-math-errno"]
        arch = ["-march=native"] if isa in ("avx512", "avx2", "sse") else (["-mcpu=native"] if isa == "neon" else [])
        for extra in ([arch, []] if arch else [[]]):
            fl = base + extra
            if _works(cc, fl):
                try:
                    ver = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout.splitlines()[0]
                except (OSError, subprocess.SubprocessError, IndexError):
                    ver = "unknown"
                w = width if extra else (4 if isa != "portable" else 0)
                return Toolchain(cc, ver, tuple(fl), w, isa if extra else ("sse" if w else "portable"),
                                 f"{model}|{platform.machine()}|{' '.join(sorted(flags))}")
    return None


def why_no_toolchain() -> str:
    if os.name == "nt":
        return "the native backend needs a GCC or Clang compiler; Windows/MSVC is not supported"
    if not candidates():
        return "no C compiler found ($CC, cc, gcc or clang on the PATH)"
    return f"no C compiler among {candidates()} could build a shared library with vector extensions"
