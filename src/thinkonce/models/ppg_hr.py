"""Heart rate from wrist PPG: the reference network of the StreamiNNC PPG experiment.

Layout follows "Don't Think It Twice" (Kechris, Dan, Atienza, AAAI-25): a causal, dilated
convolutional trunk with average pooling (total stride 16) turns a 256-sample window (8 s at 32 Hz)
into 16 feature frames; an attention head reads those 16 frames and regresses one heart rate.

Streaming constraints shape the code:

* every conv is left-padded explicitly (``F.pad(x, (8, 0))`` then ``padding=0``), so the trunk is
  causal and a converter sees the padding as its own graph node;
* input normalisation is a fixed affine map (buffers), never a statistic over the window, so the
  trunk can run frame by frame;
* the forward is straight-line code, so ``torch.fx.symbolic_trace`` captures it whole.
"""

from __future__ import annotations

from importlib import resources

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PPGHeartRateNet", "ppg_hr", "PPG_HR_WEIGHTS", "PPG_HR_SIGNAL_WEIGHTS"]

PPG_HR_WEIGHTS = "ppg_hr.safetensors"
PPG_HR_SIGNAL_WEIGHTS = "ppg_hr_signal.safetensors"  # trained with signal padding
# trained on real wrist PPG (TROIKA train/) + simulation; 4 channels, raw units, running normalisation
PPG_HR_REAL_WEIGHTS = {"zero": "ppg_hr_real.safetensors", "signal": "ppg_hr_real_signal.safetensors"}
_KERNEL = 5
_DILATION = 2
_CAUSAL_PAD = (_KERNEL - 1) * _DILATION  # 8: the left context one conv needs


class CausalConvBlock(nn.Module):
    """Three causal dilated Conv1d + ReLU layers, then average pooling.

    Padding only on the left makes each output depend on past samples alone, which is what lets a
    stream compute each new frame once.
    """

    def __init__(self, in_channels: int, channels: int, pool: int, n_convs: int = 3) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(in_channels if i == 0 else channels, channels, _KERNEL, dilation=_DILATION)
            for i in range(n_convs)
        )
        self.pool = nn.AvgPool1d(kernel_size=pool, stride=pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:  # a fixed loop over modules: unrolled by torch.fx
            x = F.relu(conv(F.pad(x, (_CAUSAL_PAD, 0))))
        return self.pool(x)


class PPGHeartRateNet(nn.Module):
    """PPG window ``(B, 1, 256)`` at 32 Hz -> heart rate ``(B, 1)`` in bpm.

    Buffers ``ppg_offset``/``ppg_scale`` normalise the input with constants fixed at training time;
    ``hr_offset``/``hr_scale`` map the normalised regression output back to bpm. They travel with
    the weights, so a loaded model takes raw PPG and returns bpm.
    """

    FS: float = 32.0
    WINDOW: int = 256
    HOP: int = 64
    FILTERS: tuple[int, int, int] = (32, 48, 64)
    POOLS: tuple[int, int, int] = (4, 2, 2)

    def __init__(self) -> None:
        super().__init__()
        channels = (1, *self.FILTERS)
        self.blocks = nn.ModuleList(
            CausalConvBlock(channels[i], channels[i + 1], pool) for i, pool in enumerate(self.POOLS)
        )
        dim = self.FILTERS[-1]
        self.n_frames = self.WINDOW // (self.POOLS[0] * self.POOLS[1] * self.POOLS[2])  # 16
        self.attn = nn.MultiheadAttention(dim, num_heads=4, batch_first=True)  # key dim 64/4 = 16
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(self.n_frames * dim, 32)
        self.fc2 = nn.Linear(32, 1)
        self.register_buffer("ppg_offset", torch.tensor(0.0))
        self.register_buffer("ppg_scale", torch.tensor(1.0))
        self.register_buffer("hr_offset", torch.tensor(0.0))
        self.register_buffer("hr_scale", torch.tensor(1.0))

    def set_normalisation(
        self, ppg_offset: float, ppg_scale: float, hr_offset: float, hr_scale: float
    ) -> None:
        """Fix the input and target affine constants (computed once on the training set)."""
        if ppg_scale <= 0 or hr_scale <= 0:
            raise ValueError("ppg_scale and hr_scale must be positive")
        for name, value in (
            ("ppg_offset", ppg_offset),
            ("ppg_scale", ppg_scale),
            ("hr_offset", hr_offset),
            ("hr_scale", hr_scale),
        ):
            getattr(self, name).fill_(float(value))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The streamable part: normalised PPG ``(B, 1, T)`` -> features ``(B, 64, T / 16)``."""
        x = (x - self.ppg_offset) / self.ppg_scale
        for block in self.blocks:
            x = block(x)
        return x

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """The window head: 16 feature frames ``(B, 64, 16)`` -> normalised HR ``(B, 1)``."""
        x = x.transpose(1, 2)
        x = self.norm(x + self.attn(x, x, x, need_weights=False)[0])
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)) * self.hr_scale + self.hr_offset


def ppg_hr(pretrained: bool = False, padding: str = "zero", trained_on: str = "sim") -> PPGHeartRateNet:
    """Build the PPG heart-rate network; ``pretrained=True`` loads the shipped weights (eval mode).

    ``trained_on="sim"`` (default): :class:`PPGHeartRateNet`, one PPG channel normalised by constants of
    the simulator (it has never seen real PPG). ``trained_on="real"``:
    :class:`~thinkonce.models.PPGHeartRateRealNet` trained on TROIKA train/ plus simulation
    (``experiments/train_ppg_hr_real.py``): input ``(B, 4, T)`` at 32 Hz = mean wrist PPG, ACC x, y, z in
    raw device units (a causal running normalisation inside), output bpm.

    ``padding`` picks which shipped weights: ``"zero"`` (default) was trained on plain windows with
    zero padding, as normal windowed inference runs it; ``"signal"`` was trained with StreamiNNC signal
    padding (windows extended to the left by real signal, see :class:`thinkonce.SignalPadded`), so a
    window stream of it equals its training-time inference exactly. Same architecture either way.

    Raises:
        ValueError: ``padding`` is neither ``"zero"`` nor ``"signal"``, or ``trained_on`` neither
            ``"sim"`` nor ``"real"``.
        FileNotFoundError: the packaged weights file is missing (train it with
            ``python experiments/train_ppg_hr.py [--padding signal]``).
    """
    if padding not in ("zero", "signal"):
        raise ValueError(f"padding must be 'zero' or 'signal', got {padding!r}")
    if trained_on not in ("sim", "real"):
        raise ValueError(f"trained_on must be 'sim' or 'real', got {trained_on!r}")
    if trained_on == "real":
        from thinkonce.models.ppg_hr_real import PPGHeartRateRealNet

        real = PPGHeartRateRealNet(in_channels=4)
        if pretrained:
            real.load_state_dict(_load_packaged_state(PPG_HR_REAL_WEIGHTS[padding]))
            real.eval()
        return real
    model = PPGHeartRateNet()
    if pretrained:
        name = PPG_HR_WEIGHTS if padding == "zero" else PPG_HR_SIGNAL_WEIGHTS
        model.load_state_dict(_load_packaged_state(name))
        model.eval()
    return model


def _load_packaged_state(name: str | None = None) -> dict[str, torch.Tensor]:
    """Read a safetensors file shipped in ``thinkonce/weights`` through importlib.resources.

    Reading bytes (not a filesystem path) keeps this working from zipped installs too.
    """
    from safetensors.torch import load

    name = PPG_HR_WEIGHTS if name is None else name
    resource = resources.files("thinkonce").joinpath("weights", name)
    if not resource.is_file():
        flag = " --padding signal" if "signal" in name else " --padding zero"
        script = "train_ppg_hr_real.py" if "real" in name else "train_ppg_hr.py"
        raise FileNotFoundError(
            f"pretrained weights thinkonce/weights/{name} are not installed; "
            f"run `python experiments/{script}{flag}` to create them"
        )
    return load(resource.read_bytes())
