"""MAC counts from PyTorch's own FLOP counter, never from hand arithmetic.

``torch.utils.flop_counter.FlopCounterMode`` counts 2 FLOPs per multiply-accumulate for convolutions,
matmuls and attention; a MAC count is half of it. Elementwise ops (activations, additions) are not
counted, as is usual for MAC figures.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_macs(fn_or_module: Callable[..., Any] | Any, *inputs: Any, **kwargs: Any) -> int:
    """Multiply-accumulates of one call of ``fn_or_module(*inputs, **kwargs)``.

    A :class:`thinkonce.Stream` counts one :meth:`~thinkonce.Stream.step`: ``count_macs(stream, x, state)``.
    The step is counted on its eager implementation whatever the stream's backend: the compiled and
    ONNX backends run the same operations, but the counter cannot see inside onnxruntime, and a first
    compiled call would also count its tracing passes.
    """
    from ..stream.stream import Stream

    fn = fn_or_module
    if isinstance(fn_or_module, Stream):
        s = fn_or_module
        s._check_chunk(inputs[0])
        s._check_state(inputs[1], inputs[0].shape[0])  # outside the counter: a first check of a phase
        # computes (and caches) that phase's zero-history counters, which is not the step's work

        def fn(x: Any, state: Any) -> Any:
            return s._step_impl(x, state)

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        fn(*inputs, **kwargs)
    return int(counter.get_total_flops()) // 2


def head_macs(stream: Any) -> int:
    """MACs of a window stream's head (run once per window on the buffered features)."""
    if stream.spec is None:
        return 0
    state = stream.init_state(1)
    feats = {v: state[f"@ring.{v.name}"] for v in stream.plan.head_inputs}
    return count_macs(stream.program.head, feats, dict(stream.program.consts))


def ideal_step_macs(stream: Any, model: Any) -> int:
    """The least MACs a window-mode hop can cost: the trunk's share of the new samples plus the head.

    Trunk MACs scale with the frames computed; a hop adds ``hop / window`` of a window's frames.
    """
    if stream.spec is None:
        raise ValueError("ideal_step_macs is defined for window mode")
    x = torch.zeros((1, *stream.input_frame_shape, stream.window), dtype=stream.dtype)
    head = head_macs(stream)
    full = count_macs(model, x)
    return int(round((full - head) * stream.hop / stream.window)) + head
