"""Signal padding (StreamiNNC): train on windows extended to the left by real signal.

Zero padding breaks shift invariance: the same sample gets different activations depending on where
the window starts. If the model is instead trained on each window joined with the samples before it,
with the extension's features cropped before the head, then every window's features come from real
signal only, and a window stream reproduces training-time inference exactly.

* :func:`extended_windows` cuts a recording into extended windows (zeros before the recording start,
  the same zero history a fresh stream has).
* :class:`SignalPadded` wraps a model: ``forward(x_ext)`` runs the trunk on the extended window and
  crops every head input to the window's frames. It shares the model's parameters, so training the
  wrapper trains the model; afterwards ``thinkonce.stream(model, window=W, hop=H)`` equals the wrapper.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
from torch import Tensor

from .convert import Converter
from .window import stride_period, window_spec


def _crop_last(x: Tensor, dim: int, n: int) -> Tensor:
    """The last ``n`` frames along ``dim`` (the window's part of an extended window's features)."""
    return x.narrow(dim, x.shape[dim] - n, n)


class SignalPadded(nn.Module):
    """A model that takes windows extended by :attr:`extension` samples and crops features before its head.

    ``extension`` is the least multiple of the trunk's stride period covering its receptive field
    (pass a larger one to be safe with extra context; it must stay a multiple of :attr:`period`).
    """

    def __init__(self, model: nn.Module, window: int, example_input: Tensor | None = None,
                 extension: int | None = None) -> None:
        super().__init__()
        if example_input is None:
            from .stream import _infer_channels

            c = _infer_channels(model)
            if c is None:
                raise ValueError("cannot infer the input channels; pass example_input=torch.zeros(1, C, window)")
            example_input = torch.zeros(2, c, window)
        was_training = model.training
        model.eval()
        try:
            plan = Converter(model, example_input, window).convert()
        finally:
            model.train(was_training)
        period, _ = stride_period(plan)
        spec = window_spec(plan, window, period)
        if extension is None:
            extension = spec.extension
        if extension % period:
            raise ValueError(f"extension={extension} must be a multiple of the stride period {period}")
        self.window, self.period, self.extension = window, period, int(extension)
        self.frames = dict(spec.frames)
        graph = fx.Graph()
        remap: dict[fx.Node, fx.Node] = {}
        crops = {v: (plan.by_node[v].tdim, spec.frames[v.name]) for v in plan.head_inputs}
        cropped: dict[fx.Node, fx.Node] = {}
        head = {p.node for p in plan.head_nodes}

        def lookup_for(user_is_head: bool):
            def look(a: fx.Node) -> fx.Node:
                if user_is_head and a in cropped:
                    return cropped[a]
                return remap[a]
            return look

        for n in plan.gm.graph.nodes:
            is_head = n in head or n.op == "output"
            new = graph.node_copy(n, lookup_for(is_head))
            remap[n] = new
            if n in crops:
                d, f = crops[n]
                cropped[n] = graph.call_function(_crop_last, (new, d, f))
        self.net = fx.GraphModule(plan.gm, graph)

    def forward(self, x_ext: Tensor) -> Tensor:
        return self.net(x_ext)


def extended_windows(x: np.ndarray | Tensor, window: int, hop: int, extension: int) -> Tensor:
    """Windows of ``window`` samples every ``hop``, each preceded by ``extension`` samples of signal.

    ``x`` is (channels, n). Returns (n_windows, channels, extension + window); before the start of the
    recording the extension is zeros (a fresh stream's history). Window k covers samples
    ``[k*hop, k*hop + window)``, as in normal windowed inference.
    """
    t = torch.as_tensor(x)
    if t.dim() != 2:
        raise ValueError(f"x must be (channels, n), got shape {tuple(t.shape)}")
    if window <= 0 or hop <= 0 or extension < 0:
        raise ValueError("window and hop must be positive and extension >= 0")
    padded = torch.cat([t.new_zeros(t.shape[0], extension), t], dim=1)
    n = t.shape[1]
    if n < window:
        return t.new_zeros((0, t.shape[0], extension + window))
    starts = range(0, n - window + 1, hop)
    return torch.stack([padded[:, s : s + extension + window] for s in starts])
