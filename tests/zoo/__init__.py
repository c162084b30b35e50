"""A zoo of published time-axis CNNs, re-implemented from their papers with the quirks real code has.

Each entry says how the model is meant to be streamed (continuous or window mode) and what
``thinkonce.stream`` does with it today: ``expect="stream"`` (converts; tests/test_zoo.py then checks
the numbers) or ``expect="refuse:<substring of the error message>"``. ``expect="crash:<substring>"``
records a conversion that fails with an exception that is not a ``ThinkonceError`` (a bug in the
converter's error reporting, never a wrong answer) and ``expect="broken:<substring>"`` a model that
converts but whose stream raises when it runs (a converter bug too, but not a silent one). A stream
whose numbers differ from the reference is always a test failure, whatever ``expect`` says. Comments say what issue-8 feature would make a
refused model stream.

``input_shape`` is the shape of one frame of the signal (channels, ...; ``()`` for a bare waveform of
shape (batch, time)); time is the last axis of the model's input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch.nn as nn

from . import codec, ecg, eeg, separation, sound, speech, tcn, tsc
from ._util import randomize


@dataclass(frozen=True)
class ZooEntry:
    name: str
    factory: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    mode: str  # "continuous" | "window"
    window: int | None = None
    hop: int | None = None
    expect: str = "stream"
    length: int = 0  # continuous mode: samples of the test signal (and of the example input)
    paper: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        assert self.mode in ("continuous", "window"), self.mode
        assert (self.mode == "window") == (self.window is not None and self.hop is not None), self.name
        assert self.mode == "window" or self.length > 0, self.name
        assert self.expect == "stream" or self.expect.split(":", 1)[0] in ("refuse", "crash", "broken"), self.expect

    def build(self, seed: int = 0) -> nn.Module:
        """The model in eval mode with non-trivial random weights (normalisation statistics included)."""
        return randomize(self.factory(), seed).eval()


def _hifigan() -> nn.Module:
    g = codec.HiFiGANGenerator()
    g.remove_weight_norm()  # as the authors' inference script does
    return g


ZOO: list[ZooEntry] = [
    # ------------------------------------------------------------------ continuous (sequence outputs)
    ZooEntry("tcn", tcn.TCN, (4,), "continuous", length=160,
             expect="stream",  # hook-based weight norm folded, Chomp1d x[:, :, :-n] is a trim op
             paper="Bai et al. 2018, arXiv:1803.01271"),
    ZooEntry("wavenet", tcn.WaveNet, (1,), "continuous", length=160,
             paper="van den Oord et al. 2016, arXiv:1609.03499"),
    ZooEntry("convtasnet_causal", separation.ConvTasNet, (1,), "continuous", length=256,
             expect="refuse:length of the time axis",  # needs: cumulative LN (cumsum over time / arange(T) counts) as a running-statistics op
             paper="Luo & Mesgarani 2019, arXiv:1809.07454"),
    ZooEntry("demucs_causal", separation.Demucs, (1,), "continuous", length=512,
             expect="refuse:std over the time axis",  # torch.export traces it (dim checks and the valid-length pad specialise away); the std-over-time input normalisation needs the whole signal, so no stream exists; without it the seq-first LSTM streams (ops/rnn.py + stream/rewrite.py)
             paper="Defossez et al. 2020, arXiv:2006.12847"),
    ZooEntry("seanet_encoder", codec.SEANetEncoder, (1,), "continuous", length=256,
             expect="refuse:padding widths are computed from the input",  # torch.export traces it; the extra right padding to a whole number of frames (math.ceil on the length) has no streaming form; reflect pad on the left and the seq-first SLSTM with its skip stream
             paper="Defossez et al. 2022 (EnCodec), arXiv:2210.13438"),
    ZooEntry("hifigan", _hifigan, (8,), "continuous", length=48,
             paper="Kong et al. 2020, arXiv:2010.05646"),
    ZooEntry("quartznet", speech.QuartzNet, (16,), "continuous", length=96,
             expect="stream",  # the optional length=None input is traced at its default
             paper="Kriman et al. 2020, arXiv:1910.10261"),
    ZooEntry("wav2letter", speech.Wav2Letter, (13,), "continuous", length=128,
             paper="Collobert et al. 2016, arXiv:1609.03193"),
    ZooEntry("wav2vec2_fe_groupnorm", lambda: speech.Wav2Vec2FeatureExtractor("default"), (), "continuous", length=3200,
             expect="refuse:group_norm",  # by design: GroupNorm(C, C) normalises each channel over the whole time axis
             paper="Baevski et al. 2020, arXiv:2006.11477"),
    ZooEntry("wav2vec2_fe_layernorm", lambda: speech.Wav2Vec2FeatureExtractor("layer_norm"), (), "continuous",
             length=3200,
             paper="Baevski et al. 2020, arXiv:2006.11477"),
    ZooEntry("hannun_ecg", ecg.HannunECG, (1,), "continuous", length=256,
             expect="stream",
             paper="Hannun et al. 2019, doi:10.1038/s41591-018-0268-3"),
    # ------------------------------------------------------------------ window mode (per-window outputs)
    ZooEntry("ribeiro_ecg", ecg.RibeiroResNet1d, (12,), "window", window=256, hop=64,
             expect="stream",
             paper="Ribeiro et al. 2020, doi:10.1038/s41467-020-15432-4"),
    ZooEntry("xresnet1d", ecg.XResNet1d, (12,), "window", window=128, hop=16,
             paper="Strodthoff et al. 2021, arXiv:2004.13701"),
    ZooEntry("inception1d", ecg.Inception1d, (3,), "window", window=128, hop=16,
             paper="Ismail Fawaz et al. 2020, arXiv:1909.04939"),
    ZooEntry("net1d", ecg.Net1D, (1,), "window", window=128, hop=16,
             paper="Hong et al. 2020, arXiv:2008.04063"),
    ZooEntry("fcn_tsc", tsc.FCN, (3,), "window", window=64, hop=8,
             paper="Wang et al. 2017, arXiv:1611.06455"),
    ZooEntry("resnet_tsc", tsc.ResNetTSC, (2,), "window", window=64, hop=8,
             paper="Wang et al. 2017, arXiv:1611.06455"),
    ZooEntry("mobilenet1d", tsc.MobileNet1d, (3,), "window", window=128, hop=16,
             paper="Sandler et al. 2018, arXiv:1801.04381"),
    ZooEntry("tc_resnet8", speech.TCResNet8, (40,), "window", window=96, hop=16,
             expect="stream",
             paper="Choi et al. 2019, arXiv:1904.03814"),
    ZooEntry("xvector_tdnn", speech.XVector, (24,), "window", window=100, hop=10,
             paper="Snyder et al. 2018, doi:10.1109/ICASSP.2018.8461375"),
    ZooEntry("ecapa_tdnn", speech.ECAPATDNN, (24,), "window", window=100, hop=10,
             paper="Desplanques et al. 2020, arXiv:2005.07143"),
    ZooEntry("sincnet_like", speech.SincNetLike, (), "window", window=400, hop=80,
             paper="Ravanelli & Bengio 2018, arXiv:1808.00158"),
    ZooEntry("deepsleepnet_cnn", eeg.DeepSleepNetCNN, (1,), "window", window=960, hop=128,
             expect="stream",
             paper="Supratak et al. 2017, arXiv:1703.04046"),
    ZooEntry("eegnet", eeg.EEGNet, (1, 4), "window", window=128, hop=32,
             expect="stream",  # torch.export route (the assert), batch kept dynamic; Conv2d/BN2d/AvgPool2d with time last
             paper="Lawhern et al. 2018, arXiv:1611.08024"),
    ZooEntry("panns_cnn6", sound.PANNsCnn6, (16,), "window", window=64, hop=8,
             expect="stream",  # Conv2d / BatchNorm2d / 2-D pooling with time on the last axis
             paper="Kong et al. 2020, arXiv:1912.10211"),
    ZooEntry("crnn_sed", sound.CRNN, (16,), "window", window=64, hop=8,
             expect="stream",  # Conv2d with time last; the GRU (restarting at each window) is the head
             paper="Cakir et al. 2017, arXiv:1702.06286"),
]

BY_NAME = {e.name: e for e in ZOO}
assert len(BY_NAME) == len(ZOO)

__all__ = ["ZOO", "ZooEntry", "BY_NAME", "randomize"]
