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
    """
    from ..stream.stream import Stream

    fn = fn_or_module.step if isinstance(fn_or_module, Stream) else fn_or_module
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        fn(*inputs, **kwargs)
    return int(counter.get_total_flops()) // 2
