"""Speech for the SOI separation study: speakers, their split, and two-speaker mixtures (8 kHz).

Why a module of its own: the set-up (synthesis, package data, resampling) is slow once and cached, and
the split rule (no evaluation speaker or recording ever seen in training) must live in one place.

Sources (all at 8 kHz after loading; the cache lives outside the repository, ``~/.cache/thinkonce``):

* ``fsdd``: ``../shared/data/speech_fsdd`` (real, 6 male speakers). Train: george, jackson, lucas,
  nicolas. Evaluation: theo, yweweler.
* ``voxforge``: ``../shared/data/speech_voxforge_mini`` (real, 30 sessions = speakers, 16 kHz, polyphase
  down to 8 kHz). Sessions sorted by name; every fifth session (and one female session) is evaluation.
* ``synth``: speech synthesised from ``fortunes`` sentences by flite, festival and espeak-ng (Debian
  packages, see ``APT_SYNTH``). Voices that share a human source (flite ``kal16`` and festival
  ``kal_diphone``; flite ``slt`` and festival ``cmu_us_slt_arctic_hts``) are kept on the same side.
  Training and evaluation voices read different sentences.
* ``asterisk``: the asterisk prompt sets (real, one speaker per language, 8 kHz): evaluation only.

When the package data (synthesis, asterisk) are missing, :func:`load_speakers` says so in
``Speakers.missing`` and proceeds with the rest; ``synthetic_fallback`` builds formant-like "speakers"
so that the code path still runs (tests only, never reported as speech).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.io import wavfile
from scipy.signal import resample_poly

FS = 8000
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if not SHARED.is_dir():  # a worktree next to /work/main, or the main checkout itself
    SHARED = Path("/work/shared/data")
CACHE = Path(os.environ.get("THINKONCE_CACHE", Path.home() / ".cache" / "thinkonce")) / "soi_speech"
APT_SYNTH = ["flite", "festival", "festvox-kallpc16k", "festvox-kdlpc16k", "festvox-us-slt-hts", "espeak-ng",
             "sox", "fortunes"]
APT_ASTERISK = [f"asterisk-core-sounds-{lang}-wav" for lang in ("en", "fr", "it", "ru")]
FSDD_EVAL = ("theo", "yweweler")
# (engine, voice, side): side "train" or "eval"
VOICES = [
    ("flite", "awb", "train"), ("flite", "rms", "train"), ("flite", "kal16", "train"),
    ("festival", "voice_kal_diphone", "train"), ("festival", "voice_ked_diphone", "train"),
    ("espeak-ng", "en-us", "train"),
    ("flite", "slt", "eval"), ("festival", "voice_cmu_us_slt_arctic_hts", "eval"),
    ("espeak-ng", "en-gb-scotland+f3", "eval"),
]
SYNTH_SECONDS = {"train": 150.0, "eval": 45.0}  # speech per voice (about 14 words per 5 s)


@dataclass
class Speakers:
    """Per speaker one 8 kHz float32 signal (its recordings joined), grouped by split and source."""

    train: dict[str, np.ndarray] = field(default_factory=dict)
    eval: dict[str, np.ndarray] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # sources that could not be loaded, with why

    def source(self, name: str) -> str:
        return name.split(":", 1)[0]


def _float(x: np.ndarray) -> np.ndarray:
    scale = 32768.0 if np.issubdtype(x.dtype, np.integer) else 1.0
    return (x.astype(np.float32) / scale).astype(np.float32)


def _trim_silence(x: np.ndarray, frame: int = 160, rel_db: float = -35.0) -> np.ndarray:
    """Drop 20 ms frames far below the signal's loud frames: mixtures of pauses teach nothing."""
    n = len(x) // frame
    if n == 0:
        return x
    e = (x[: n * frame].reshape(n, frame) ** 2).mean(1) + 1e-12
    keep = 10 * np.log10(e / np.percentile(e, 95)) > rel_db
    return x[: n * frame].reshape(n, frame)[keep].reshape(-1)


def _fsdd(sp: Speakers) -> None:
    path = SHARED / "speech_fsdd" / "fsdd.npz"
    if not path.is_file():
        sp.missing.append(f"fsdd ({path} absent)")
        return
    z = np.load(path)
    audio, off, spk = z["audio"], z["offsets"], z["speaker"]
    for name in sorted(set(spk.tolist())):
        idx = np.flatnonzero(spk == name)
        x = np.concatenate([audio[off[i]:off[i + 1]] for i in idx])
        side = sp.eval if name in FSDD_EVAL else sp.train
        side[f"fsdd:{name}"] = _float(x)


def _voxforge(sp: Speakers) -> None:
    path = SHARED / "speech_voxforge_mini" / "voxforge_mini.npz"
    if not path.is_file():
        sp.missing.append(f"voxforge ({path} absent)")
        return
    z = np.load(path)
    audio, off, ses, gender = z["audio"], z["offsets"], z["session"], z["gender"]
    sessions = sorted(set(ses.tolist()))
    female = sorted({s for s, g in zip(ses.tolist(), gender.tolist()) if g == "female"})
    evals = set(sessions[::5]) | {female[0]} if female else set(sessions[::5])
    for s in sessions:
        idx = np.flatnonzero(ses == s)
        x = np.concatenate([audio[off[i]:off[i + 1]] for i in idx])
        x = resample_poly(_float(x), 1, 2).astype(np.float32)
        (sp.eval if s in evals else sp.train)[f"voxforge:{s}"] = _trim_silence(x)


def _fortunes(n_chars: int, side: str, voice_index: int) -> list[str]:
    """Sentences from the ``fortunes`` files: training voices read the first half, evaluation the second."""
    root = Path("/usr/share/games/fortunes")
    texts: list[str] = []
    for f in sorted(root.glob("*")):
        if f.suffix or not f.is_file():
            continue
        for block in f.read_text(errors="ignore").split("\n%\n"):
            t = " ".join(block.split())
            if 40 <= len(t) <= 300 and t.isascii() and sum(c.isalpha() for c in t) > 0.7 * len(t):
                texts.append(t)
    half = len(texts) // 2
    pool = texts[:half] if side == "train" else texts[half:]
    rng = np.random.default_rng(voice_index)  # each voice its own sentences
    out, total = [], 0
    for i in rng.permutation(len(pool)):
        out.append(pool[i])
        total += len(pool[i])
        if total >= n_chars:
            break
    return out


def _read_wav(path: Path) -> np.ndarray:
    fs, x = wavfile.read(path)
    if x.ndim > 1:
        x = x.mean(1)
    x = _float(x)
    if fs != FS:
        from math import gcd
        g = gcd(fs, FS)
        x = resample_poly(x, FS // g, fs // g)
    return x.astype(np.float32)


def _synthesise(engine: str, voice: str, text: str, out: Path) -> None:
    with tempfile.TemporaryDirectory() as d:
        txt = Path(d) / "t.txt"
        txt.write_text(text)
        if engine == "flite":
            cmd = ["flite", "-voice", voice, "-f", str(txt), "-o", str(out)]
        elif engine == "festival":
            cmd = ["text2wave", "-eval", f"({voice})", "-o", str(out), str(txt)]
        else:
            cmd = ["espeak-ng", "-v", voice, "-f", str(txt), "-w", str(out)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=600)


def _synth(sp: Speakers) -> None:
    engines = {"flite": "flite", "festival": "text2wave", "espeak-ng": "espeak-ng"}
    absent = [e for e, exe in engines.items() if shutil.which(exe) is None]
    if absent or not Path("/usr/share/games/fortunes").is_dir():
        sp.missing.append(f"synth (missing {absent or ['fortunes']}; `make soi-data` installs {' '.join(APT_SYNTH)})")
        return
    cache = CACHE / "synth"
    cache.mkdir(parents=True, exist_ok=True)
    for i, (engine, voice, side) in enumerate(VOICES):
        f = cache / f"{engine}_{voice.replace('+', '_')}.wav"
        if not f.is_file():
            texts = _fortunes(int(SYNTH_SECONDS[side] * 14), side, i)
            try:  # one sentence per call: festival's diphone voices crash on some texts (skipped)
                parts, errors = [], []
                for t in texts:
                    try:
                        _synthesise(engine, voice, t, f.with_suffix(".tmp.wav"))
                        parts.append(_read_wav(f.with_suffix(".tmp.wav")))
                    except subprocess.CalledProcessError as e:
                        errors.append(e)
                if len(parts) < len(texts) // 2:
                    raise errors[0]
                wavfile.write(f, FS, np.concatenate(parts))
            except (subprocess.SubprocessError, OSError) as e:
                sp.missing.append(f"synth:{engine}/{voice} ({e})")
                continue
        (sp.train if side == "train" else sp.eval)[f"synth:{engine}/{voice}"] = _trim_silence(_read_wav(f))


def _asterisk(sp: Speakers) -> None:
    root = Path("/usr/share/asterisk/sounds")
    found = False
    for lang in ("en", "fr", "it", "ru"):
        d = root / lang
        files = sorted(d.rglob("*.wav")) if d.is_dir() else []
        if not files:
            continue
        found = True
        cache = CACHE / f"asterisk_{lang}.npy"
        if not cache.is_file():
            CACHE.mkdir(parents=True, exist_ok=True)
            x = np.concatenate([w for w in map(_read_wav, files[:400]) if len(w)])
            np.save(cache, _trim_silence(x))
        sp.eval[f"asterisk:{lang}"] = np.load(cache)
    if not found:
        sp.missing.append(f"asterisk (absent; `make soi-data` installs {' '.join(APT_ASTERISK)})")


def load_speakers(sources: tuple[str, ...] = ("fsdd", "voxforge", "synth", "asterisk")) -> Speakers:
    """All speakers of the study, split; builds the cache on first use (synthesis takes ~1 min)."""
    sp = Speakers()
    loaders = {"fsdd": _fsdd, "voxforge": _voxforge, "synth": _synth, "asterisk": _asterisk}
    for s in sources:
        loaders[s](sp)
    for side in (sp.train, sp.eval):
        for k in list(side):
            x = side[k]
            side[k] = (x / (np.sqrt((x ** 2).mean()) + 1e-8) * 0.1).astype(np.float32)
    return sp


def synthetic_fallback(n_train: int = 6, n_eval: int = 3, seconds: float = 20.0, seed: int = 0) -> Speakers:
    """Formant-like voiced signals with per-"speaker" pitch and formants: only to exercise the code."""
    rng = np.random.default_rng(seed)
    sp = Speakers(missing=["speech (synthetic fallback: harmonic test signals, not speech)"])
    n = int(seconds * FS)
    t = np.arange(n) / FS
    for i in range(n_train + n_eval):
        f0 = rng.uniform(90, 250) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.2, 1) * t))
        phase = 2 * np.pi * np.cumsum(f0) / FS
        x = sum(np.sin(k * phase) / k * np.exp(-((k * f0 - rng.uniform(300, 2500)) / 800) ** 2) for k in range(1, 20))
        env = (np.sin(2 * np.pi * rng.uniform(2, 5) * t) > -0.3).astype(float)
        x = (x * env).astype(np.float32)
        x = x / (np.sqrt((x ** 2).mean()) + 1e-8) * 0.1
        (sp.train if i < n_train else sp.eval)[f"fallback:{i}"] = x
    return sp


def _segment(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A random segment of ``n`` samples with speech in it (retry past pauses)."""
    if len(x) <= n:
        return np.pad(x, (0, n - len(x)))
    best = None
    for _ in range(8):
        s = int(rng.integers(0, len(x) - n))
        seg = x[s:s + n]
        if (seg ** 2).mean() > 0.3 * 0.01:  # signals are normalised to RMS 0.1
            return seg
        best = seg
    return best


def mixtures(speakers: dict[str, np.ndarray], count: int, n: int, seed: int,
             gain_db: float = 5.0) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """``count`` mixtures of two *different* speakers, each at a random gain in +-``gain_db`` dB.

    Returns (mix (count, n), sources (count, 2, n), speaker pairs)."""
    names = sorted(speakers)
    if len(names) < 2:
        raise ValueError(f"need at least two speakers to mix, got {names}")
    rng = np.random.default_rng(seed)
    src = np.zeros((count, 2, n), np.float32)
    pairs = []
    for i in range(count):
        a, b = rng.choice(len(names), 2, replace=False)
        for j, k in enumerate((a, b)):
            g = 10 ** (rng.uniform(-gain_db, gain_db) / 20)
            src[i, j] = g * _segment(speakers[names[k]], n, rng)
        pairs.append((names[a], names[b]))
    return src.sum(1), src, pairs


class MixtureSampler:
    """Fresh random training mixtures on every call (a new pair, segment and gain each time)."""

    def __init__(self, speakers: dict[str, np.ndarray], n: int, seed: int) -> None:
        self.speakers, self.n, self.rng = speakers, n, np.random.default_rng(seed)

    def __call__(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        mix, src, _ = mixtures(self.speakers, batch, self.n, int(self.rng.integers(1 << 31)))
        return mix, src


if __name__ == "__main__":  # set-up step: build the cache and say what is there
    sp = load_speakers()
    for side, d in (("train", sp.train), ("eval", sp.eval)):
        print(f"{side}: {len(d)} speakers, {sum(len(v) for v in d.values()) / FS / 60:.1f} min")
    print("missing:", sp.missing or "nothing")
