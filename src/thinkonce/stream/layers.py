"""Streaming counterparts of temporal layers.

Every op here is *stateless code over explicit state*: ``run(xs, state, mode)`` takes the new frames of
its inputs and the op's own state (a dict of batch-first tensors) and returns the new output frames and
a new state dict. Nothing is modified in place, so an old state stays valid and a step can be replayed.

``mode`` is one of

* ``"step"``  - commit: emit only the frames whose whole input context is known;
* ``"flush"`` - end of signal: also emit what the right-edge padding owes (the stream ends here);
* ``"stale"`` - StreamiNNC's cheap edge: emit the right-edge frames computed against zero padding *and
  keep them* (the paper's reuse of stale edge frames), instead of recomputing them later.

Rows of a batch advance in lock-step (same chunk length), so phase counters are equal across rows; they
are stored per row anyway so the state stays batch-first everywhere.

State contract: every op declares its state with :meth:`StreamOp.state_spec` (per-row shapes, dtypes,
time axes with their maximum lengths), and ``run`` returns exactly that layout at every phase. Buffers
are kept at their maximum length, right-aligned: the valid frames are the last ``fill`` of them.
Integer counters (fills, skips, flags) are :class:`~thinkonce.stream.state.Field` s of shape ``()``: the
op reads and returns them as Python ints in its state dict, and the :class:`Program` stores all of
them in one ``@n`` tensor (one read per step instead of one per op).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InternalStateError
from .state import Field, counter

State = dict[str, Tensor]

MODES = ("step", "flush", "stale")


def _counter(batch: int, value: int, device: torch.device) -> Tensor:
    return torch.full((batch,), int(value), dtype=torch.int64, device=device)


def _empty_like_frames(x: Tensor, dim: int, n: int = 0, channels: int | None = None, dim_c: int = 1) -> Tensor:
    shape = list(x.shape)
    shape[dim] = n
    if channels is not None:
        shape[dim_c] = channels
    return x.new_zeros(shape)


@dataclass(frozen=True)
class TimeFacts:
    """What an op does to the time axis, in frames of its input. The converter, ``analyze`` and the
    bounds read these instead of knowing op classes: a new op declares them and is understood.

    ``stride``: input frames per output frame (2: halves the rate; 1/2: doubles it). ``span``: input
    frames one output frame reads (kernel extent with dilation). ``pad_left``/``pad_right``: frames of
    padding added before/after the signal (negative: frames trimmed). ``rf_frames``: how far the
    receptive field grows, in input frames (an upper bound).
    """

    stride: Fraction = Fraction(1)
    span: int = 1
    pad_left: int = 0
    pad_right: int = 0
    rf_frames: int = 0


class StreamOp:
    """Base class: a temporal op with explicit state of a fixed layout (see :meth:`state_spec`)."""

    #: short human name used in error messages and reports
    kind: str = "op"
    #: names of the op's counters (keys of its state_spec) whose value depends on more than the clock
    #: (an SOI shifted S-CC's held-frame counter, 0 after ``Stream.precompute``; the queue fills of the
    #: joins where frames computed ahead wait): traced backends add their values to the trace key
    layout_keys: tuple[str, ...] = ()

    def facts(self) -> TimeFacts:
        """Time-axis facts (see :class:`TimeFacts`); the default is a frame-wise op."""
        return TimeFacts()

    def taint(self, n: int, left: int, right: int) -> tuple[int, int, int]:
        """Zero-padding reach: given ``n`` input frames of which the first ``left`` and last ``right``
        depend on zero padding, the output's frame count and its tainted prefix and suffix."""
        raise NotImplementedError(f"zero-padding reach: {type(self).__name__} declares no rule")

    def owes_at_end(self) -> bool:
        """Whether the op can still emit frames when the stream ends (right padding, held frames)."""
        return True

    def state_spec(self, in_shapes: Sequence[tuple[int, ...]], dtype: torch.dtype) -> dict[str, Field]:
        """The op's state: key -> :class:`Field`. ``in_shapes`` are the per-row shapes (batch dim
        excluded; the time axis' length is irrelevant) of its temporal inputs."""
        return {}

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-row shape of the output frames for input frames of ``in_shape`` (time length kept)."""
        return in_shape

    def frames_out(self, m: Tensor, mode: str = "step") -> Tensor:
        """Frames emitted in total after ``m`` input frames (element-wise over an int64 tensor ``m``),
        in "step" or "stale" mode: the op's time-axis arithmetic, used to bound alignment queues."""
        return m

    def init_state(self, batch: int, like: Tensor, in_shapes: Sequence[tuple[int, ...]] | None = None) -> State:
        """A fresh state from :meth:`state_spec`: buffers filled with their ``init``, counters as ints."""
        spec = self.state_spec(in_shapes or [], like.dtype)
        st: dict = {}
        for k, f in spec.items():
            if f.is_counter:
                st[k] = int(f.init)
            else:
                st[k] = f.initial(batch, f.dtype, like.device)
        return st

    def run(self, xs: Sequence[Tensor], st: State, mode: str) -> tuple[Tensor, State]:  # pragma: no cover
        raise NotImplementedError


def _overflow(op: StreamOp, what: str, n: int, cap: int) -> InternalStateError:
    return InternalStateError(
        f"{op.kind} op: {what} would hold {n} frames but its state spec declares at most {cap}; "
        "this is a bug in thinkonce's bounds (please report it with the model)"
    )


def _with_time(shape: tuple[int, ...], axis: int, n: int) -> tuple[int, ...]:
    sh = list(shape)
    sh[axis] = n
    return tuple(sh)


@dataclass
class SlidingOp(StreamOp):
    """Conv1d / MaxPool1d / AvgPool1d: a kernel sliding over time with stride, dilation and padding.

    State: ``buf`` (C_in, L) holds, right-aligned, the last ``fill`` input frames (padding frames
    included) that later outputs still need; ``skip`` counts future input frames to discard when the
    stride is larger than the kernel span. Left padding is the initial content of ``buf``; right padding
    is appended only when the stream ends (``flush``) or provisionally (``stale``).

    Bound ``L = max(pad_left, span - 1)``: a fresh state holds ``pad_left`` frames. After a run over
    ``E`` available frames (buffer, new input and any right padding), if ``E < span`` nothing is emitted
    and at most ``E <= span - 1`` frames remain; otherwise ``k = (E - span) // s + 1`` outputs consume
    ``k * s`` frames and ``E - k*s = (E - span) mod s + span - s <= span - 1`` remain (fewer when right
    padding or a skip is among them, none after ``flush``). So no run leaves more than ``span - 1``.
    """

    fn: Callable[[Tensor], Tensor]  # applies the op with padding=0 to a contiguous block of frames
    kernel: int
    stride: int
    dilation: int
    pad_left: int
    pad_right: int
    pad_value: float
    in_channels: int
    out_channels: int | None  # None: same as input (pooling)
    kind: str = "conv"

    @property
    def span(self) -> int:
        return self.dilation * (self.kernel - 1) + 1

    @property
    def max_buffer(self) -> int:
        return max(self.pad_left, self.span - 1)

    def owes_at_end(self) -> bool:
        return self.pad_right > 0

    def facts(self) -> TimeFacts:
        span = self.span
        return TimeFacts(Fraction(self.stride), span, self.pad_left, self.pad_right,
                         span - 1 + max(self.pad_left - (span - 1), 0))

    def taint(self, n: int, left: int, right: int) -> tuple[int, int, int]:
        """Output frame j reads padded-input frames [j*s, j*s + span - 1] (always its first and last)."""
        s, span = self.stride, self.span
        total = self.pad_left + n + self.pad_right
        n_out = (total - span) // s + 1 if total >= span else 0
        tl = self.pad_left + min(left, n)  # tainted padded-input frames at the left
        tr = self.pad_right + min(right, n)
        out_left = min(n_out, -(-tl // s)) if tl > 0 else 0
        out_right = 0
        if tr > 0:
            first = max(0, -(-(total - tr - span + 1) // s))  # first output reading a tainted right frame
            out_right = max(0, n_out - first)
        return n_out, out_left, min(out_right, n_out)

    @property
    def may_skip(self) -> bool:
        """Whether the skip counter can become non-zero: only when the stride outruns the kernel span
        (or stale right padding outruns it); otherwise the op keeps no ``skip``."""
        return self.stride > self.span or self.pad_right > self.span - self.stride

    def state_spec(self, in_shapes, dtype):
        spec = {"buf": Field((self.in_channels, self.max_buffer), dtype, 1, "fill", self.pad_value),
                "fill": counter(self.pad_left)}
        if self.may_skip:
            spec["skip"] = counter(0)
        return spec

    def out_shape(self, in_shape):
        c = self.out_channels if self.out_channels is not None else in_shape[0]
        return (c, *in_shape[1:])

    def frames_out(self, m: Tensor, mode: str = "step") -> Tensor:
        e = m + self.pad_left + (self.pad_right if mode == "stale" else 0)
        return torch.where(e >= self.span, torch.div(e - self.span, self.stride, rounding_mode="floor") + 1, 0)

    def run(self, xs: Sequence[Tensor], st: State, mode: str) -> tuple[Tensor, State]:
        (x,) = xs
        L = self.max_buffer
        n = x.shape[2]
        full = torch.cat([st["buf"], x], dim=2) if n else st["buf"]  # L + n frames, valid: the last fill + n
        fill: int = st["fill"]  # type: ignore[assignment]
        skip: int = st.get("skip", 0)  # type: ignore[assignment]
        start, real = L - fill, fill + n
        if skip:
            drop = min(skip, real)
            start, real, skip = start + drop, real - drop, skip - drop
        buf = full if start == 0 else full.narrow(2, start, real)
        ext = buf
        virtual = 0  # right-pad positions swallowed by a pending skip (stride larger than span)
        if mode != "step" and self.pad_right:
            virtual = min(skip, self.pad_right)
            npad = self.pad_right - virtual
            if npad:
                pad = buf.new_full((buf.shape[0], buf.shape[1], npad), self.pad_value)
                ext = torch.cat([buf, pad], dim=2)
        span, s = self.span, self.stride
        n_out = (ext.shape[2] - span) // s + 1 if ext.shape[2] >= span else 0
        if n_out:
            used = (n_out - 1) * s + span
            y = self.fn(ext if used == ext.shape[2] else ext.narrow(2, 0, used))  # no no-op slice in traced graphs; narrow is one op where [:, :, a:b] traces as three
        else:
            c = self.out_channels if self.out_channels is not None else buf.shape[1]
            y = buf.new_zeros((buf.shape[0], c, 0))
        consume = n_out * s
        if consume <= real:
            rest = real - consume
        else:
            skip = virtual + consume - real
            rest = 0
        if mode == "flush":
            rest = 0
        if rest > L:
            raise _overflow(self, "buf", rest, L)
        new: dict = {"buf": full.narrow(2, n, L) if n else st["buf"], "fill": rest}
        if "skip" in st:
            new["skip"] = skip
        elif skip:
            raise _overflow(self, "skip", skip, 0)
        return y, new


@dataclass
class TransposedConvOp(StreamOp):
    """ConvTranspose1d by overlap-add (tSTMC): each input frame is multiplied once.

    ``F.conv_transpose1d`` over the new frames gives their full overlap-add block; the first frames of
    the block are final (no later input reaches them) and are emitted, the tail is carried in ``carry``
    and added to the next block. Padding and output_padding are applied by a following :class:`TrimOp`
    and the extra zero frames this op appends at the end of the stream.

    State: ``carry`` (C_out, max(span - stride, 0)) partial sums (always full length: zeros before the
    first frame), ``started`` 0 before the first frame.
    """

    weight: Tensor
    bias: Tensor | None
    stride: int
    dilation: int
    groups: int
    output_padding: int
    out_channels: int
    kind: str = "conv_transpose"

    @property
    def span(self) -> int:
        return self.dilation * (self.weight.shape[2] - 1) + 1

    def facts(self) -> TimeFacts:
        reach = math.ceil(self.span / self.stride)  # input frames the widest output frame sums
        return TimeFacts(Fraction(1, self.stride), reach, 0, 0, reach)

    def taint(self, n: int, left: int, right: int) -> tuple[int, int, int]:
        """Input frame ``i`` adds into output frames ``[i*s, i*s + span)``; ``output_padding`` frames
        follow. The frames before the signal (zeros here, real signal in a longer run) reach the first
        ``span - s`` outputs, those after it the last ``span - s + output_padding``."""
        if n == 0:
            return 0, 0, 0
        s, span = self.stride, self.span
        n_out = (n - 1) * s + span + self.output_padding
        out_left = max(span - s, (left - 1) * s + span if left else 0)
        out_right = n_out - (n - right) * s  # outputs reached by input frames >= n - right
        return n_out, min(n_out, max(out_left, 0)), min(n_out, max(out_right, 0))

    def state_spec(self, in_shapes, dtype):
        return {"carry": Field((self.out_channels, max(self.span - self.stride, 0)), dtype),
                "started": counter(0)}

    def out_shape(self, in_shape):
        return (self.out_channels, *in_shape[1:])

    def frames_out(self, m: Tensor, mode: str = "step") -> Tensor:
        s, span = self.stride, self.span
        if span >= s:
            return m * s
        return torch.where(m > 0, (m - 1) * s + span, 0)

    def _bias(self, y: Tensor) -> Tensor:
        return y if self.bias is None else y + self.bias.view(1, -1, 1)

    def run(self, xs: Sequence[Tensor], st: State, mode: str) -> tuple[Tensor, State]:
        (x,) = xs
        started: int = st["started"]  # type: ignore[assignment]
        carry = st["carry"]
        s, span = self.stride, self.span
        tail = max(span - s, 0)
        out = carry.new_zeros((x.shape[0], self.out_channels, 0))
        if x.shape[2]:
            y = F.conv_transpose1d(x, self.weight, None, stride=s, dilation=self.dilation, groups=self.groups)
            if started and span < s:  # zero frames between the previous block and this one
                y = torch.cat([y.new_zeros((y.shape[0], y.shape[1], s - span)), y], dim=2)
            if tail:
                y = torch.cat([y.narrow(2, 0, tail) + carry, y.narrow(2, tail, y.shape[2] - tail)], dim=2)
            out = y.narrow(2, 0, y.shape[2] - tail)
            carry = y.narrow(2, y.shape[2] - tail, tail)
            started = 1
        if mode == "flush" and started:
            extra = carry.new_zeros((carry.shape[0], carry.shape[1], self.output_padding))
            out = torch.cat([out, carry, extra], dim=2)
            carry = torch.zeros_like(carry)
        return self._bias(out), {"carry": carry, "started": started}  # type: ignore[dict-item]


@dataclass
class TrimOp(StreamOp):
    """Drop ``left`` frames at the start and ``right`` frames at the end of a stream (negative padding).

    The last ``right`` frames cannot be known to be last until the stream ends, so they are held back in
    ``held``: that is a delay of ``right`` frames, which :attr:`Stream.delay` reports.

    State: ``drop`` (frames still to drop at the start); if ``right``: ``held`` (its input frame shape with
    ``right`` frames on the time axis, right-aligned) and its fill ``nheld`` (at most ``right``: every
    frame beyond the last ``right`` is emitted).
    """

    left: int
    right: int
    dim: int = 2
    kind: str = "trim"

    def facts(self) -> TimeFacts:
        return TimeFacts(pad_left=-self.left, pad_right=-self.right)

    def taint(self, n: int, left: int, right: int) -> tuple[int, int, int]:
        n_out = max(0, n - self.left - self.right)
        return n_out, min(n_out, max(0, left - self.left)), min(n_out, max(0, right - self.right))

    def state_spec(self, in_shapes, dtype):
        spec: dict[str, Field] = {"drop": counter(self.left)}
        if self.right:
            if not in_shapes:
                raise ValueError("TrimOp.state_spec needs the input frame shape")
            ax = self.dim - 1
            spec["held"] = Field(_with_time(tuple(in_shapes[0]), ax, self.right), dtype, ax, "nheld")
            spec["nheld"] = counter(0)
        return spec

    def frames_out(self, m: Tensor, mode: str = "step") -> Tensor:
        return torch.clamp(m - self.left - self.right, min=0)

    def run(self, xs: Sequence[Tensor], st: State, mode: str) -> tuple[Tensor, State]:
        (x,) = xs
        d, R = self.dim, self.right
        n = x.shape[d]
        if R:
            nh: int = st["nheld"]  # type: ignore[assignment]
            full = torch.cat([st["held"], x], dim=d) if n else st["held"]
            start, avail = R - nh, nh + n
        else:
            full, start, avail = x, 0, n
        drop: int = st["drop"]  # type: ignore[assignment]
        if drop:
            k = min(drop, avail)
            start, avail, drop = start + k, avail - k, drop - k
        valid = full if start == 0 else full.narrow(d, start, avail)
        keep = max(avail - R, 0)
        new: dict = {"drop": drop}
        if R:
            new["held"] = full.narrow(d, n, R) if n else st["held"]
            new["nheld"] = 0 if mode == "flush" else avail - keep
        if mode == "flush" or keep == avail:
            return valid if keep == avail else valid.narrow(d, 0, keep), new
        return valid.narrow(d, 0, keep), new


@dataclass
class PadOp(StreamOp):
    """Constant padding on the time axis (``F.pad`` / ``ConstantPad1d``) that could not be fused into
    the following sliding op: ``left`` frames are emitted with the first chunk, ``right`` at the end.

    State: ``started`` (0 before the first run)."""

    left: int
    right: int
    value: float
    dim: int = 2
    kind: str = "pad"

    def facts(self) -> TimeFacts:
        return TimeFacts(pad_left=self.left, pad_right=self.right, rf_frames=self.left + self.right)

    def taint(self, n: int, left: int, right: int) -> tuple[int, int, int]:
        n_out = n + self.left + self.right
        return n_out, min(n_out, self.left + left), min(n_out, self.right + right)

    def state_spec(self, in_shapes, dtype):
        return {"started": counter(0)}

    def frames_out(self, m: Tensor, mode: str = "step") -> Tensor:
        return m + self.left

    def _frames(self, x: Tensor, n: int) -> Tensor:
        shape = list(x.shape)
        shape[self.dim] = n
        return x.new_full(shape, self.value)

    def run(self, xs: Sequence[Tensor], st: State, mode: str) -> tuple[Tensor, State]:
        (x,) = xs
        started = st["started"]
        parts = []
        if not started and self.left:
            parts.append(self._frames(x, self.left))
        parts.append(x)
        if mode == "flush" and self.right:
            parts.append(self._frames(x, self.right))
        y = torch.cat(parts, dim=self.dim) if len(parts) > 1 else x
        return y, {"started": 1}  # type: ignore[dict-item]


@dataclass
class UpsampleOp(StreamOp):
    """Nearest-neighbour upsampling by an integer factor: every frame repeated, no state needed."""

    factor: int
    dim: int = 2
    kind: str = "upsample"

    def facts(self) -> TimeFacts:
        return TimeFacts(stride=Fraction(1, self.factor), rf_frames=1)

    def owes_at_end(self) -> bool:
        return False

    def taint(self, n: int, left: int, right: int) -> tuple[int, int, int]:
        """Each output frame is a copy of one input frame: the tainted edges are repeated too."""
        f = self.factor
        return n * f, left * f, right * f

    def frames_out(self, m: Tensor, mode: str = "step") -> Tensor:
        return m * self.factor

    def run(self, xs: Sequence[Tensor], st: State, mode: str) -> tuple[Tensor, State]:
        (x,) = xs
        return torch.repeat_interleave(x, self.factor, dim=self.dim), st


@dataclass
class ChainOp(StreamOp):
    """Several ops applied in sequence for one graph node (ConvTranspose1d = overlap-add, then trim)."""

    ops: tuple[StreamOp, ...]
    kind: str = "chain"

    def taint(self, n: int, left: int, right: int) -> tuple[int, int, int]:
        for op in self.ops:
            n, left, right = op.taint(n, left, right)
        return n, left, right

    def owes_at_end(self) -> bool:
        return any(op.owes_at_end() for op in self.ops)

    def state_spec(self, in_shapes, dtype):
        spec: dict[str, Field] = {}
        shapes = list(in_shapes)
        for i, op in enumerate(self.ops):
            for k, f in op.state_spec(shapes, dtype).items():
                if f.fill is not None:
                    f = Field(f.shape, f.dtype, f.time_axis, f"{i}.{f.fill}", f.init)
                spec[f"{i}.{k}"] = f
            shapes = [op.out_shape(tuple(shapes[0]))] if shapes else []
        return spec

    def out_shape(self, in_shape):
        for op in self.ops:
            in_shape = op.out_shape(in_shape)
        return in_shape

    def frames_out(self, m: Tensor, mode: str = "step") -> Tensor:
        for op in self.ops:
            m = op.frames_out(m, mode)
        return m

    def run(self, xs: Sequence[Tensor], st: State, mode: str) -> tuple[Tensor, State]:
        new: State = {}
        y = xs[0]
        for i, op in enumerate(self.ops):
            pre = f"{i}."
            local = {k[len(pre):]: v for k, v in st.items() if k.startswith(pre)}
            y, out = op.run([y], local, mode)
            new.update({pre + k: v for k, v in out.items()})
        return y, new


@dataclass
class AlignQueues(StreamOp):
    """Delay alignment for ops that combine branches frame by frame (add, mul, cat over channels, ...).

    Branches with different look-ahead produce frames at different times; each branch's frames wait in
    its queue ``q<i>`` until every branch has produced the same frame. ``run`` returns the aligned,
    equal-length blocks; the caller applies the combining op to them.

    State: for each branch ``i`` that can be ahead (``bounds[i] > 0``), ``q<i>`` (its frame shape with
    ``bounds[i]`` frames on the time axis, right-aligned) and its fill ``n<i>``. ``bounds`` comes from
    the branches' frame arithmetic (:func:`thinkonce.stream.layout.queue_bounds`); a queue that would
    outgrow it raises :class:`~thinkonce.errors.InternalStateError`.
    """

    dims: tuple[int, ...]  # time axis of each temporal input
    kind: str = "align"
    bounds: tuple[int, ...] | None = None  # most frames each queue holds (set by the Program)

    def owes_at_end(self) -> bool:
        return False  # queues only wait for the other branches, which are counted themselves

    def _bounds(self) -> tuple[int, ...]:
        if self.bounds is None:
            raise ValueError("AlignQueues needs its queue bounds (thinkonce.stream.layout.queue_bounds)")
        return self.bounds

    def state_spec(self, in_shapes, dtype):
        spec: dict[str, Field] = {}
        for i, (b, d) in enumerate(zip(self._bounds(), self.dims)):
            if b:
                ax = d - 1
                spec[f"q{i}"] = Field(_with_time(tuple(in_shapes[i]), ax, b), dtype, ax, f"n{i}")
                spec[f"n{i}"] = counter(0)
        return spec

    def frames_out(self, m: Tensor, mode: str = "step") -> Tensor:  # m: (branches, T)
        return m.min(dim=0).values

    def run(self, xs: Sequence[Tensor], st: State, mode: str) -> tuple[list[Tensor], State]:  # type: ignore[override]
        bounds = self._bounds()
        fulls, starts, avails = [], [], []
        for i, (x, d, b) in enumerate(zip(xs, self.dims, bounds)):
            if b:
                q = st[f"q{i}"]
                k: int = st[f"n{i}"]  # type: ignore[assignment]
                fulls.append(torch.cat([q, x], dim=d) if x.shape[d] else q)
                starts.append(b - k)
                avails.append(k + x.shape[d])
            else:
                fulls.append(x)
                starts.append(0)
                avails.append(x.shape[d])
        n = min(avails)
        new: dict = {}
        heads = []
        for i, (f, d, b) in enumerate(zip(fulls, self.dims, bounds)):
            rest = 0 if mode == "flush" else avails[i] - n
            if rest > b:
                raise _overflow(self, f"queue q{i}", rest, b)
            heads.append(f if (starts[i] == 0 and f.shape[d] == n) else f.narrow(d, starts[i], n))
            if b:
                m = xs[i].shape[d]
                new[f"q{i}"] = f.narrow(d, m, b) if m else st[f"q{i}"]
                new[f"n{i}"] = rest
        return heads, new
