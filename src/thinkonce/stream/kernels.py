"""Convolution kernels for small streaming chunks.

A step convolves only a few new frames, which is exactly where PyTorch's CPU convolution is worst for
dilated kernels: ``F.conv1d`` with dilation > 1 goes through ``slow_conv_dilated2d``, a per-sample loop
that costs ~50-100 us per call whatever the size (3-4x the cost of the same MACs as one matrix product,
measured on the PPG reference network). A step would then run no faster than recomputing the window.

:func:`conv1d` computes the same result with the same MACs as an im2col matrix product (a strided
view of the input, one copy, one ``addmm``) when that is the cheaper path: dilated, ungrouped, and few
output frames in the batch, or undilated with a batch of several streams and few frames (PyTorch's
per-sample loop again). A single output frame (steps of one sample) is one matrix-vector product. Everything else, and every ONNX export (onnxruntime's own Conv handles
dilation well), uses ``F.conv1d`` unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: largest batch x output frames for which im2col beats slow_conv_dilated2d (measured: at 64 x 64
#: frames the per-sample loop is amortised and wins; at 64 x 16 and below im2col wins)
IM2COL_MAX_COLUMNS = 1024
#: same for undilated kernels at batch > 1 (measured, traced: 64 x 5 frames of 256 channels and 8 x 16 of
#: 32 win; 64 x 16 frames of 128 channels loses)
IM2COL_MAX_COLUMNS_UNDILATED = 512


def conv1d(x: Tensor, weight: Tensor, bias: Tensor | None, stride: int, dilation: int, groups: int) -> Tensor:
    """``F.conv1d(x, weight, bias, stride, 0, dilation, groups)``, by im2col where that is faster."""
    batch, c_in, length = x.shape
    c_out, _, k = weight.shape
    span = dilation * (k - 1) + 1
    n = (length - span) // stride + 1 if length >= span else 0
    if (
        groups != 1
        or n == 0
        or batch * n > IM2COL_MAX_COLUMNS
        or (dilation == 1 and batch == 1 and n != 1)  # PyTorch's own path below anyway: skip the checks (~3 us)
        or torch.onnx.is_in_onnx_export()
        or x.requires_grad
        or weight.requires_grad and torch.is_grad_enabled()
    ):
        return F.conv1d(x, weight, bias, stride, 0, dilation, groups)
    if n == 1 and dilation == 1:
        # one output frame (hop 1): a matrix-vector product over the flattened block; the conv call
        # would spend ~10 us unsqueezing to 2-D and dispatching for 2.5 k MACs
        block = x if length == span else x.narrow(2, 0, span)
        return F.linear(block.reshape(batch, c_in * k), weight.reshape(c_out, c_in * k), bias).unsqueeze(2)
    if dilation == 1 and (batch == 1 or batch * n > IM2COL_MAX_COLUMNS_UNDILATED):
        # undilated at batch 1, PyTorch's own convolution is the faster path; at batch > 1 with few
        # frames its per-sample loop (thnn) loses to one matrix product
        return F.conv1d(x, weight, bias, stride, 0, dilation, groups)
    x = x.contiguous()  # the strided view below assumes the contiguous layout (a no-op in a step)
    # columns (c_in, k, batch, n): element [c, j, b, t] = x[b, c, t * stride + j * dilation]
    cols = x.as_strided((c_in, k, batch, n), (length, dilation, c_in * length, stride)).reshape(c_in * k, batch * n)
    w2 = weight.reshape(c_out, c_in * k)
    y = torch.mm(w2, cols) if bias is None else torch.addmm(bias.unsqueeze(1), w2, cols)
    return y.view(c_out, batch, n).transpose(0, 1)
