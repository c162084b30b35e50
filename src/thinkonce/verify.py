"""Deviation of a stream from normal inference, the number users check before deploying.

Continuous mode compares with ``model(signal)`` (the deviation should be float round-off). Window
mode compares with normal windowed inference: every window cut out and run alone with the model's
zero padding, which is what the network was trained on. The deviation there is the price of
streaming (zero padding and pooling break shift invariance) and is reported as NRMSE, as in
StreamiNNC: RMSE divided by the range (max - min) of the reference output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from .errors import StreamInputError
from .stream.stream import Stream


@dataclass
class Report:
    mode: str
    reference: str
    n_outputs: int
    max_abs_error: float
    rmse: float
    nrmse: float  # rmse / (max - min of the reference), over all outputs
    output_scale: float  # max |reference|
    nrmse_per_output: list[float] = field(default_factory=list)  # per output feature

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def __str__(self) -> str:
        return (
            f"{self.mode} stream vs {self.reference}: {self.n_outputs} outputs, max|d|={self.max_abs_error:.3g}, "
            f"RMSE={self.rmse:.3g}, NRMSE={100 * self.nrmse:.3f}% (scale {self.output_scale:.3g})"
        )


def deviation(stream_out: Tensor, ref: Tensor, mode: str, reference: str, feature_dim: int = -1) -> Report:
    """Compare two equally shaped outputs; NRMSE per feature along ``feature_dim``."""
    a = stream_out.detach().double().cpu()
    b = ref.detach().double().cpu()
    if a.shape != b.shape:
        raise ValueError(f"stream output {tuple(a.shape)} and reference {tuple(b.shape)} differ in shape")
    d = a - b
    rng = float(b.max() - b.min()) if b.numel() else 0.0
    rmse = float(d.pow(2).mean().sqrt()) if d.numel() else 0.0
    per = []
    if b.dim() >= 1 and b.numel():
        bf = b.movedim(feature_dim, -1).reshape(-1, b.shape[feature_dim])
        df = d.movedim(feature_dim, -1).reshape(-1, b.shape[feature_dim])
        for j in range(bf.shape[1]):
            r = float(bf[:, j].max() - bf[:, j].min())
            e = float(df[:, j].pow(2).mean().sqrt())
            per.append(e / r if r > 0 else (0.0 if e == 0 else float("inf")))
    return Report(
        mode=mode,
        reference=reference,
        n_outputs=int(b.shape[1]) if b.dim() > 1 else int(b.numel()),
        max_abs_error=float(d.abs().max()) if d.numel() else 0.0,
        rmse=rmse,
        nrmse=rmse / rng if rng > 0 else (0.0 if rmse == 0 else float("inf")),
        output_scale=float(b.abs().max()) if b.numel() else 0.0,
        nrmse_per_output=per,
    )


def windowed_inference(model: nn.Module, signal: Tensor, window: int, hop: int, batch: int = 256) -> Tensor:
    """Normal inference: every window (start 0, step hop) cut out and run alone. (B, n_windows, ...)."""
    n = signal.shape[-1]
    if n < window:
        raise StreamInputError(_too_short(n, window))
    starts = list(range(0, n - window + 1, hop))
    outs = []
    if isinstance(model, torch.export.ExportedProgram):
        model = model.module()
        batch = 1  # exported shapes are static: one window at a time
    with torch.no_grad():
        for i in range(0, len(starts), batch):
            wins = torch.stack([signal[..., s : s + window] for s in starts[i : i + batch]], dim=1)
            flat = wins.reshape(-1, *wins.shape[2:])
            y = model(flat)
            outs.append(y.reshape(signal.shape[0], -1, *y.shape[1:]))
    return torch.cat(outs, dim=1)


def _too_short(n: int, window: int) -> str:
    return (f"the signal has {n} samples, shorter than one window ({window} samples): normal windowed "
            f"inference has no window to compare with; pass at least {window} samples (several windows "
            "give a meaningful NRMSE)")


def verify(model: nn.Module, stream: Stream, signal: Tensor | np.ndarray, chunk: int | None = None) -> Report:
    """Run ``stream`` over ``signal`` and report its deviation from normal inference of ``model``.

    ``signal`` is (channels, time) or (batch, channels, time). Window mode: normal windowed inference
    (zero padding per window); continuous mode: ``model(signal)``.

    Raises:
        StreamInputError (a ``ValueError``): the signal's shape does not fit the stream, it is shorter
            than one window (window mode) or too short for the model itself (continuous mode).
    """
    x = torch.as_tensor(signal, dtype=stream.dtype)
    given = tuple(x.shape)
    frame = tuple(stream.input_frame_shape)
    if x.dim() == len(frame) + 1:
        x = x.unsqueeze(0)
    if x.dim() != len(frame) + 2 or tuple(x.shape[1:-1]) != frame:
        want = ", ".join(map(str, frame))
        raise StreamInputError(
            f"signal has shape {given} but the stream expects ({want}, time) or (batch, {want}, time), "
            "time last"
        )
    n = x.shape[-1]
    if stream.spec is not None and n < stream.window:
        raise StreamInputError(_too_short(n, stream.window))
    if n == 0:
        raise StreamInputError("the signal is empty: pass at least one sample")
    if stream.spec is None:
        try:
            with torch.no_grad():
                ref = (model.module() if isinstance(model, torch.export.ExportedProgram) else model)(x)
        except RuntimeError as e:
            raise StreamInputError(
                f"the model itself cannot run on a signal of {n} samples "
                f"({str(e).splitlines()[0][:160]}); pass a longer signal"
            ) from e
        ys = stream.run(x, chunk=chunk)
        return deviation(ys, ref, "continuous", "offline model on the whole signal", feature_dim=1)
    ys = stream.run(x, chunk=chunk)
    ref = windowed_inference(model, x, stream.window, stream.hop)
    return deviation(ys, ref, "window", "normal windowed inference (zero padding per window)")
