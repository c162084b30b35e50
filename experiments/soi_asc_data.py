"""Ambience and event sounds for the SOI scene-classification study, from Debian game-data packages.

Why packages: they are real recordings that install offline (``apt-get download``), with stated licences.
The set-up (:func:`prepare`) downloads the .deb files with ``apt-get download`` when they are missing,
extracts only the audio with ``dpkg-deb --fsys-tarfile`` (and ``zipfile`` for 0 A.D.'s ``public.zip``),
decodes it with ``sox`` to 16 kHz mono, and caches it outside the repository
(``~/.cache/thinkonce/soi_asc``). Identical files shipped under several names (megaglest copies its
tileset sounds) are kept once (by content hash), so the split by source file puts no recording on both sides.

Licences (from each package's ``debian/copyright``): ``0ad-data`` CC BY-SA 3.0 (art and sounds of
Wildfire Games); ``megaglest-data`` CC BY-SA 3.0 (data, per Debian's copyright file); ``wesnoth-1.16-data``
GPL-2+ (sounds included).

Classes are assigned from the file paths by keyword (:data:`CLASSES`, first match wins); classes with
fewer than two distinct files are dropped (no file-level split possible).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from scipy.io import wavfile

FS = 16000
CACHE = Path(os.environ.get("THINKONCE_CACHE", Path.home() / ".cache" / "thinkonce"))
DEBS = {"0ad-data": "CC BY-SA 3.0", "megaglest-data": "CC BY-SA 3.0", "wesnoth-1.16-data": "GPL-2+"}
# (class, regex on the lower-case path), first match wins; paths outside AUDIO_DIRS are ignored
CLASSES = [
    ("storm", r"thunder|storm|lightning"),
    ("rain", r"rain"),
    ("wind", r"wind|blizzard|howl_wind"),
    ("waves", r"wave|ocean|sea_|surf|shore|beach"),
    ("harbour", r"ship|harbo|dock|seagull|gull|port_"),
    ("river", r"river|stream|creek|water|lapping|brook"),
    ("fire", r"campfire|fireplace|/fire\.|crackl"),
    ("farm", r"rooster|chicken|cow|pig|sheep|goat|farm|cattle"),
    ("crowd", r"crowd|market|trade|city|town|people|village"),
    ("night", r"night|cricket|insect|frog|owl"),
    ("birds", r"bird|day|morning|forest|jungle|dayscape|meadow"),
]
AUDIO_DIRS = {  # per package: which audio counts as ambience/events (not speech, music or weapon sounds)
    "megaglest-data": r"tilesets/[^/]+/sounds/|water_sounds/|units/(chicken|cow|pig|sheep)/sounds/",
    "wesnoth-1.16-data": r"sounds/ambient/",
    "0ad-data": r"audio/ambient/",
}


def classify(path: str) -> str | None:
    p = path.lower()
    for name, rx in CLASSES:
        if re.search(rx, p.rsplit("/", 1)[-1]) or re.search(rx, p.rsplit("/", 2)[-2] if p.count("/") >= 2 else ""):
            return name
    return None


def _decode(data: bytes, suffix: str) -> np.ndarray | None:
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / f"in{suffix}", Path(d) / "out.wav"
        src.write_bytes(data)
        r = subprocess.run(["sox", str(src), "-r", str(FS), "-c", "1", "-b", "16", str(dst)], capture_output=True)
        if r.returncode != 0 or not dst.is_file():
            return None
        _, x = wavfile.read(dst)
    return x.astype(np.int16)


def _members(pkg: str, deb: Path):
    """(path, bytes) of the package's ambience audio, from the .deb without installing it."""
    rx = re.compile(AUDIO_DIRS[pkg])
    pre = CACHE / "asc_extract" / "usr/share/games/0ad/mods/public/public.zip"  # an earlier extraction
    if pkg == "0ad-data" and pre.is_file() and "done" in (CACHE / "asc_extract" / "x0ad.log").read_text():
        with zipfile.ZipFile(pre) as z:
            for zi in z.infolist():
                if rx.search(zi.filename.lower()) and zi.filename.lower().endswith((".ogg", ".wav")):
                    yield zi.filename, z.read(zi)
        return
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        for m in tar:
            name = m.name.lower()
            if pkg == "0ad-data" and name.endswith("public/public.zip"):
                tmp = CACHE / "soi_asc" / "public.zip"
                with tar.extractfile(m) as f, open(tmp, "wb") as out:
                    shutil.copyfileobj(f, out, 1 << 22)
                with zipfile.ZipFile(tmp) as z:
                    for zi in z.infolist():
                        if rx.search(zi.filename.lower()) and zi.filename.lower().endswith((".ogg", ".wav")):
                            yield zi.filename, z.read(zi)
                tmp.unlink()
            elif m.isfile() and rx.search(name) and name.endswith((".ogg", ".wav")):
                yield m.name, tar.extractfile(m).read()
    proc.wait()


def prepare(packages: tuple[str, ...] = tuple(DEBS), download: bool = True) -> dict[str, list[str]]:
    """Build the cache (index.tsv + one .npy per distinct file); returns the problems met per package."""
    root = CACHE / "soi_asc"
    (root / "audio").mkdir(parents=True, exist_ok=True)
    debdir = CACHE / "asc_debs"
    debdir.mkdir(parents=True, exist_ok=True)
    problems: dict[str, list[str]] = {}
    index = root / "index.tsv"
    done = {l.split("\t")[0] for l in index.read_text().splitlines()} if index.is_file() else set()
    for pkg in packages:
        if pkg in done:
            continue
        debs = sorted(debdir.glob(f"{pkg}_*.deb"))
        if not debs and download and shutil.which("apt-get"):
            subprocess.run(["apt-get", "download", pkg], cwd=debdir, capture_output=True)
            debs = sorted(debdir.glob(f"{pkg}_*.deb"))
        if not debs:
            problems[pkg] = [f"{pkg}: no .deb (run `make soi-data` or `apt-get download {pkg}` in {debdir})"]
            continue
        rows = []
        for path, data in _members(pkg, debs[-1]):
            cls = classify(path)
            if cls is None:
                continue
            h = hashlib.sha1(data).hexdigest()[:16]
            f = root / "audio" / f"{h}.npy"
            if not f.is_file():
                x = _decode(data, Path(path).suffix)
                if x is None or len(x) < FS // 2:
                    continue
                np.save(f, x)
            rows.append(f"{pkg}\t{cls}\t{h}\t{path}")
        with open(index, "a") as fh:
            fh.write("".join(r + "\n" for r in rows) or f"{pkg}\t-\t-\t(no audio matched)\n")
    return problems


def load(min_files: int = 2) -> tuple[dict[str, list[tuple[str, np.ndarray]]], dict[str, str]]:
    """{class: [(source id, 16 kHz float32 signal), ...]} of distinct files, and {class: sources note}."""
    index = CACHE / "soi_asc" / "index.tsv"
    if not index.is_file():
        return {}, {}
    seen, out, pkgs = set(), {}, {}
    for line in sorted(index.read_text().splitlines()):
        pkg, cls, h, path = line.split("\t")
        if cls == "-" or h in seen:
            continue
        seen.add(h)
        x = np.load(CACHE / "soi_asc" / "audio" / f"{h}.npy").astype(np.float32) / 32768
        out.setdefault(cls, []).append((f"{pkg}:{path}", x))
        pkgs.setdefault(cls, set()).add(pkg)
    out = {c: v for c, v in out.items() if len(v) >= min_files}
    return out, {c: ", ".join(sorted(pkgs[c])) for c in out}


def synthetic_fallback(classes: int = 4, files: int = 3, seconds: float = 6.0, seed: int = 0):
    """Coloured-noise "scenes" (only to exercise the code path when the packages are absent)."""
    rng = np.random.default_rng(seed)
    out = {}
    n = int(seconds * FS)
    for c in range(classes):
        lo = 200 * (c + 1)
        clips = []
        for f in range(files):
            w = rng.standard_normal(n)
            spec = np.fft.rfft(w)
            fr = np.fft.rfftfreq(n, 1 / FS)
            spec *= np.exp(-((fr - lo) / (150 + 50 * c)) ** 2) + 0.05
            clips.append((f"fallback:{c}/{f}", (np.fft.irfft(spec, n) * 3).astype(np.float32)))
        out[f"class{c}"] = clips
    return out, {k: "synthetic fallback" for k in out}
