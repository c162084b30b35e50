"""Loaders of the real recordings, on tiny fixtures written here in the data sets' on-disk formats.

No test reads /work/shared: each fixture is a few seconds of synthetic signal saved exactly as the data
folders' READMEs describe (array names, shapes, dtypes, string scalars).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from thinkonce.data import (
    AccRecording, DataNotFoundError, EEGRecording, PPGRecording, data_root, load_bonn, load_malow, load_troika,
    load_uea_epilepsy, window_hr,
)
from thinkonce.data.real import resample


# --------------------------------------------------------------------------- fixtures
def _troika_file(path: Path, n_win: int, hr: float, split: str, seed: int, ecg: bool = True) -> None:
    fs, n = 125.0, 1000 + 250 * (n_win - 1)
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fs
    ppg = np.stack([100 * np.sin(2 * np.pi * hr / 60 * t), 80 * np.sin(2 * np.pi * hr / 60 * t + 0.3)])
    arrays = dict(ppg=(ppg + rng.normal(0, 1, ppg.shape)).astype(np.float32),
                  acc=rng.normal(0, 0.01, (3, n)).astype(np.float32),
                  bpm=np.full(n_win, hr, np.float32) + np.arange(n_win, dtype=np.float32),
                  fs=np.float32(fs), win_s=np.float32(8), hop_s=np.float32(2), rec_id=np.array(path.stem),
                  subject=np.array("s"), split=np.array(split), activity=np.array("test fixture"))
    if ecg:
        arrays["ecg"] = rng.normal(size=n).astype(np.float32)
    np.savez_compressed(path, **arrays)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    d = tmp_path / "ppg_spc2015_troika"
    for split in ("train", "test"):
        (d / split).mkdir(parents=True)
    _troika_file(d / "train" / "DATA_01_TYPE01.npz", 6, 90.0, "train", 0)
    _troika_file(d / "train" / "DATA_02_TYPE02.npz", 4, 120.0, "train", 1)
    _troika_file(d / "test" / "TEST_S01_T01.npz", 5, 70.0, "test", 2, ecg=False)
    b = tmp_path / "eeg_bonn"
    b.mkdir()
    sets = np.repeat(np.array(list("ABCDE")), 2)
    np.savez_compressed(b / "bonn_eeg.npz", x=np.arange(10 * 347, dtype=np.int16).reshape(10, 347) % 50,
                        set_abc=sets, set_zonfs=sets, segment=np.tile(np.arange(1, 3, dtype=np.int16), 5),
                        seizure=(sets == "E").astype(np.int8), fs=np.float32(173.61))
    m = tmp_path / "eeg_malow_seizure"
    m.mkdir()
    names = ["Fp1", "SP1", "SP2", "Cz", "T3", "ch22_unlabelled"]
    np.savez_compressed(m / "malow_seizure_eeg.npz", x=np.ones((6, 1000), np.int16) * np.arange(6, dtype=np.int16)[:, None],
                        channel=np.array(names), fs=np.float32(100.0), reported_onset_s=np.float32(6.0))
    u = tmp_path / "acc_uea_epilepsy"
    u.mkdir()
    rng = np.random.default_rng(3)
    np.savez_compressed(u / "uea_epilepsy.npz", x_train=rng.normal(size=(4, 3, 206)).astype(np.float32),
                        y_train=np.array([0, 1, 2, 3], np.int8), x_test=rng.normal(size=(2, 3, 206)).astype(np.float32),
                        y_test=np.array([3, 0], np.int8),
                        classes=np.array(["EPILEPSY", "WALKING", "RUNNING", "SAWING"]), fs=np.float32(16.0))
    return tmp_path


# --------------------------------------------------------------------------- TROIKA
def test_troika_native_rate_keeps_signals_and_labels(root: Path) -> None:
    recs = load_troika("train", root=root, fs=None)
    assert [r.rec_id for r in recs] == ["DATA_01_TYPE01", "DATA_02_TYPE02"]
    r = recs[0]
    assert isinstance(r, PPGRecording)
    with np.load(root / "ppg_spc2015_troika" / "train" / "DATA_01_TYPE01.npz") as d:
        np.testing.assert_array_equal(r.ppg, d["ppg"])
        np.testing.assert_array_equal(r.window_bpm, d["bpm"])
    assert (r.fs, r.window, r.hop) == (125.0, 1000, 250)
    assert r.ecg is not None and r.split == "train" and r.activity == "test fixture"
    # the per-sample curve passes through each window's reference at that window's centre
    centres = np.arange(len(r.window_bpm)) * r.hop + r.window // 2
    np.testing.assert_allclose(r.hr_bpm[centres], r.window_bpm, atol=1e-4)


def test_troika_resampled_to_32hz_keeps_the_label_grid(root: Path) -> None:
    r = load_troika("train", root=root)[0]  # default 32 Hz
    assert (r.fs, r.window, r.hop) == (32.0, 256, 64)
    n_windows = (r.ppg.shape[1] - r.window) // r.hop + 1
    assert n_windows >= len(r.window_bpm) == 6
    assert r.ppg.shape == (2, r.acc.shape[1]) and r.hr_bpm.shape == (r.ppg.shape[1],)
    # the 90 bpm (1.5 Hz) pulse survives resampling: spectral peak of the first window
    x = r.ppg[0, :256]
    f = np.fft.rfftfreq(256, 1 / 32.0)[np.argmax(np.abs(np.fft.rfft(x - x.mean())))]
    assert abs(f - 1.5) < 0.2
    inp = r.model_input()
    assert inp.shape == (4, r.ppg.shape[1])
    np.testing.assert_allclose(inp[0], r.ppg.mean(0), rtol=1e-6)
    assert r.model_input("ppg").shape == (1, r.ppg.shape[1])
    with pytest.raises(ValueError, match="channels"):
        r.model_input("ecg")
    assert abs(window_hr(r.hr_bpm, 256, 64)[0] - r.window_bpm[0]) < 1.0


def test_troika_test_split_has_no_ecg_and_bad_split_refused(root: Path) -> None:
    (t,) = load_troika("test", root=root)
    assert t.ecg is None and t.split == "test"
    with pytest.raises(ValueError, match="split"):
        load_troika("validation", root=root)
    with pytest.raises(DataNotFoundError, match="extra"):  # folder absent in the fixture
        load_troika("extra", root=root)


def test_troika_labels_that_do_not_fit_are_refused(root: Path) -> None:
    p = root / "ppg_spc2015_troika" / "train" / "DATA_01_TYPE01.npz"
    with np.load(p) as d:
        arrays = {k: d[k] for k in d.files}
    arrays["bpm"] = arrays["bpm"][:-2]
    np.savez_compressed(p, **arrays)
    with pytest.raises(ValueError, match="bpm labels do not fit"):
        load_troika("train", root=root)


# --------------------------------------------------------------------------- Bonn, Malow, UEA
def test_bonn_segments(root: Path) -> None:
    segs = load_bonn(root=root)
    assert len(segs) == 10 and all(isinstance(s, EEGRecording) for s in segs)
    assert [s.set_name for s in segs][::2] == list("ABCDE")
    assert [s.seizure for s in segs] == [False] * 8 + [True] * 2
    assert segs[-1].events == [(0.0, 347 / 173.61)] and segs[0].events == []
    assert segs[0].eeg.shape == (1, 347) and segs[0].eeg.dtype == np.float32
    only = load_bonn(root=root, sets="AE", fs=256.0)
    assert [s.set_name for s in only] == list("AAEE")
    assert only[0].eeg.shape[1] == int(np.ceil(347 * 25600 / 17361)) and only[0].fs == 256.0
    with pytest.raises(ValueError, match="sets"):
        load_bonn(root=root, sets="AZ")


def test_malow_channels_and_onset(root: Path) -> None:
    r = load_malow(root=root)
    assert isinstance(r, EEGRecording)
    assert r.channels == ("Fp1", "T3")  # SP1, SP2, Cz and unnamed channels dropped
    np.testing.assert_array_equal(r.eeg[:, 0], [0, 4])
    assert r.events == [(6.0, 10.0)] and r.labels[599] == 0 and r.labels[600] == 1
    assert load_malow(root=root, channels="all").eeg.shape == (6, 1000)
    assert load_malow(root=root, channels=("T3",)).channels == ("T3",)
    up = load_malow(root=root, fs=256.0)
    assert up.eeg.shape == (2, 2560) and up.labels.sum() == 1024
    with pytest.raises(ValueError, match="unknown channels"):
        load_malow(root=root, channels=("O9",))


def test_uea_epilepsy(root: Path) -> None:
    tr = load_uea_epilepsy("train", root=root)
    assert len(tr) == 4 and all(isinstance(s, AccRecording) for s in tr)
    assert [s.class_name for s in tr] == ["EPILEPSY", "WALKING", "RUNNING", "SAWING"]
    assert tr[0].labels.all() and not tr[1].labels.any()
    assert tr[0].acc.shape == (4, 206)
    np.testing.assert_allclose(tr[1].acc[3], np.linalg.norm(tr[1].acc[:3], axis=0), rtol=1e-6)
    te = load_uea_epilepsy("test", root=root, fs=32.0)
    assert [s.label for s in te] == [3, 0] and te[0].acc.shape == (4, 412) and te[0].fs == 32.0
    with pytest.raises(ValueError, match="split"):
        load_uea_epilepsy("val", root=root)


# --------------------------------------------------------------------------- where the data are
def test_missing_data_names_path_and_layout(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"eeg_bonn.*Expected layout.*bonn_eeg\.npz"):
        load_bonn(root=tmp_path)
    with pytest.raises(DataNotFoundError, match=r"looked at .*nowhere.*THINKONCE_DATA"):
        load_uea_epilepsy(root=tmp_path / "nowhere")
    with pytest.raises(DataNotFoundError, match=r"missing bonn_eeg\.npz"):
        (tmp_path / "eeg_bonn").mkdir()
        load_bonn(root=tmp_path)


def test_environment_variable_sets_the_default_root(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THINKONCE_DATA", str(root))
    assert data_root() == root
    assert len(load_uea_epilepsy("test")) == 2


def test_resample_rates() -> None:
    x = np.sin(2 * np.pi * 2 * np.arange(1250) / 125.0)[None]
    y = resample(x, 125.0, 32.0)
    assert y.shape == (1, 320) and y.dtype == np.float32
    np.testing.assert_allclose(y[0, 20:300], np.sin(2 * np.pi * 2 * np.arange(320) / 32.0)[20:300], atol=0.02)
    assert resample(x, 125.0, 125.0).shape == x.shape
    with pytest.raises(ValueError, match="positive"):
        resample(x, 0.0, 32.0)
