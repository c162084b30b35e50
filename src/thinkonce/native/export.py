"""``Stream.export_c``: the stream as self-contained C99 for a device (no allocation, no libc beyond
``memcpy`` and ``math.h``).

A stream's state changes layout while it warms up (buffers fill, the first window completes) and then
repeats with the stride/hop phase. The export steps the eager stream from a cold state, one chunk at
a time, until a (phase, layout) pair repeats; every distinct step becomes one case of ``tk_step``'s
switch on a step counter in the state, and calls a generated C function (constants shared between
them; steps whose code is the same share the function).
The state is a struct of two arenas (the current and the next layout, swapped each step) and the
workspace, so its size is known at compile time (``TK_STATE_BYTES``) and several streams can run side
by side. Generated with vector width 0 (``portable=True``) it is plain C99 for any compiler; with
``portable=False`` it uses the GCC/Clang vector extensions of the host's kernels.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .codegen import ALIGN, ConstPool, const_array, generate
from .trace import Buf, record

if TYPE_CHECKING:  # pragma: no cover
    from ..stream.stream import Stream

#: most distinct steps (warm-up plus one phase cycle) an export generates
MAX_STEPS = 512
#: the step function's name while its source is compared with earlier steps' (then renamed)
_PLACEHOLDER = "tk_step_fn_"


def _layout(state: dict[str, torch.Tensor]) -> tuple[dict[str, tuple[int, int, torch.dtype]], int]:
    """Byte offset, element count and dtype of each state entry in an arena; and the arena size."""
    off, out = 0, {}
    for k in sorted(state):
        v = state[k]
        out[k] = (off, v.numel(), v.dtype)
        off += -(-max(v.numel() * v.element_size(), 1) // ALIGN) * ALIGN
    return out, off


def _signature(stream: "Stream", state: dict[str, torch.Tensor], modulus: int) -> tuple:
    """What a step's control flow depends on: the clock phase, the state's shapes, and the integer
    entries (fill counters, skips) the eager step reads back as Python ints."""
    t = int(state["@t"][0])
    phase = t % modulus if t >= stream.warmup else ("warm", t)
    ints = tuple((k, tuple(v.reshape(-1).tolist())) for k, v in sorted(state.items())
                 if k != "@t" and not v.is_floating_point())
    return phase, tuple((k, tuple(v.shape), str(v.dtype)) for k, v in sorted(state.items())), ints


def export_c(stream: "Stream", directory: str | Path, chunk: int | None = None, portable: bool = True,
             name: str = "tk_model", check: bool = True) -> dict[str, Any]:
    """Write ``<name>.h``, ``<name>.c`` and ``main.c`` to ``directory``; returns a summary dict.

    ``check`` (default): when a C compiler is available, the written files are compiled and run from a
    cold state on a random probe through every recorded step and a cycle more, and compared with the
    eager stream; a mismatch raises :class:`~thinkonce.errors.ConversionError` naming the step, so a
    wrong C file is never handed out silently (no compiler: a warning, unchecked)."""
    from .compiler import find_toolchain

    n = chunk if chunk is not None else (stream.hop if stream.spec is not None else stream._period)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"chunk must be a positive number of samples, got {n!r}")
    if stream.input_frame_shape and len(stream.input_frame_shape) != 1:
        raise ValueError("export_c supports (batch, channels, time) inputs")
    if stream.dtype != torch.float32:
        raise ValueError(f"export_c generates float32 C; the model computes in {stream.dtype}")
    vw = 0
    if not portable:
        tc = find_toolchain()
        vw = tc.vector_width if tc is not None else 0
    modulus = math.lcm(stream.hop, stream._period) if stream.spec is not None else stream._period
    channels = stream.input_frame_shape[0]
    pool = ConstPool()
    gen = torch.Generator().manual_seed(0)
    state = stream.init_state(1)
    init = {k: v.clone() for k, v in state.items()}
    sigs: dict[tuple, int] = {}
    steps: list[dict[str, Any]] = []
    sources: dict[str, int] = {}
    cycle_start = None
    with torch.no_grad():
        while True:
            sig = _signature(stream, state, modulus)
            if sig in sigs:
                cycle_start = sigs[sig]
                break
            if len(steps) >= MAX_STEPS:
                raise ValueError(f"the stream's state does not settle into a cycle within {MAX_STEPS} steps of {n} "
                                 "samples; export a larger chunk")
            sigs[sig] = len(steps)
            x = torch.randn(1, channels, n, generator=gen, dtype=stream.dtype)
            sc = {k: v.contiguous().clone() for k, v in state.items()}
            trace, (y, new) = record(stream._step_impl, x.clone(), sc)
            cs = generate(trace, vw, embed_consts=True, func=_PLACEHOLDER, const_pool=pool, prelude=False,
                          staged=False)
            # warm-up steps differ in their clock and counters, but many compute the very same thing:
            # steps with the same source share one C function (the switch case maps each step's own
            # buffers into the pointer array, so only the code needs to be equal)
            fidx = sources.get(cs.source)
            emit = fidx is None
            if emit:
                fidx = sources[cs.source] = len(sources)
            func = f"tk_f{fidx}"
            cs = replace(cs, source=cs.source.replace(_PLACEHOLDER, func), func=func)
            lay_in, _ = _layout(state)
            lay_out, _ = _layout(new)
            steps.append({"c": cs, "in": lay_in, "out": lay_out, "y": y.numel(), "emit": emit})
            state = new
    arenas = [max(_layout(init)[1], 64)]
    for s in steps:
        arenas.append(max(max((o + c * torch.empty(0, dtype=d).element_size() for o, c, d in s["out"].values()), default=0), 64))
    arena = -(-max(arenas) // ALIGN) * ALIGN
    ws = -(-max(max(s["c"].workspace_bytes for s in steps), 64) // ALIGN) * ALIGN
    y_max = max(s["y"] for s in steps)
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    _write_header(d / f"{name}.h", name, channels, n, y_max, arena, ws, len(steps), cycle_start, stream)
    _write_source(d / f"{name}.c", name, steps, pool, init, arena, cycle_start, vw)
    _write_main(d / "main.c", name)
    checked = _check_export(stream, d, name, n, channels, len(steps) + (len(steps) - (cycle_start or 0)) + 2) if check else False
    return {"checked": checked, "files": [f"{name}.h", f"{name}.c", "main.c"], "chunk": n, "steps": len(steps),
            "functions": len(sources),
            "cycle_start": cycle_start, "state_bytes": 2 * arena + ws + 16, "y_max": y_max, "portable": portable}


def _write_header(path: Path, name: str, channels: int, n: int, y_max: int, arena: int, ws: int, nsteps: int,
                  cycle: int, stream: "Stream") -> None:
    up = name.upper()
    mode = "continuous" if stream.spec is None else f"window={stream.window}, hop={stream.hop}"
    path.write_text(f"""/* {name}: streaming step generated by thinkonce ({mode}).
 *
 * Call {name}_init once, then {name}_step with each chunk of {up}_CHUNK samples of {up}_CHANNELS
 * channels, channel-major: x[c * {up}_CHUNK + t]. Each step writes its outputs (float32, the flat
 * stream output of that step, at most {up}_Y_MAX values) to y and returns how many it wrote.
 * The state holds everything (no globals, no allocation): {up}_STATE_BYTES bytes per stream.
 */
#ifndef {up}_H
#define {up}_H
#include <stdint.h>

#define {up}_CHANNELS {channels}
#define {up}_CHUNK {n}
#define {up}_Y_MAX {max(y_max, 1)}
#define {up}_ARENA_BYTES {arena}
#define {up}_WORKSPACE_BYTES {ws}
#define {up}_STEPS {nsteps}      /* distinct steps: warm-up, then a cycle from step {cycle} */

typedef struct {{
  int64_t step;                 /* the next step function (warm-up ones, then the phase cycle) */
  int64_t cur;                  /* which arena holds the current state (0 or 1) */
  double arena[2][{up}_ARENA_BYTES / 8];
  double workspace[{up}_WORKSPACE_BYTES / 8];
}} {name}_state;

#define {up}_STATE_BYTES ((long)sizeof({name}_state))

void {name}_init({name}_state* s);
int {name}_step({name}_state* s, const float* x, float* y);
#endif
""")


def _init_bytes(init: dict[str, torch.Tensor], arena: int) -> list[int]:
    lay, _ = _layout(init)
    buf = bytearray(arena)
    for k, (off, cnt, dt) in lay.items():
        raw = init[k].contiguous().numpy().tobytes()
        buf[off:off + len(raw)] = raw
    return list(buf)


def _write_source(path: Path, name: str, steps: list[dict[str, Any]], pool: ConstPool, init: dict[str, torch.Tensor],
                  arena: int, cycle: int, vw: int) -> None:
    from .codegen import OPAQUE_PRELUDE, VECTOR_PRELUDE

    parts = [f'#include "{name}.h"', "#include <string.h>", "#include <math.h>", "", OPAQUE_PRELUDE]
    if vw:
        parts.append(VECTOR_PRELUDE.format(nb=4 * vw))
    parts.append(pool.source())
    ib = _init_bytes(init, arena)
    last = max((i for i, v in enumerate(ib) if v), default=0) + 1
    rows = [", ".join(str(v) for v in ib[i:min(i + 32, last)]) for i in range(0, last, 32)]
    parts.append(f"static const unsigned char tk_init_state[{last}] = {{\n  " + ",\n  ".join(rows) + "\n};")
    for s in steps:
        if s["emit"]:
            parts.append(s["c"].source)
    parts.append(f"void {name}_init({name}_state* s) {{\n  memset(s, 0, sizeof(*s));\n"
                 f"  memcpy(s->arena[0], tk_init_state, sizeof(tk_init_state));\n}}")
    cases = []
    for i, s in enumerate(steps):
        cs = s["c"]
        lines = [f"  case {i}: {{", f"    void* p[{len(cs.params) + 1}];"]
        for j, b in enumerate(cs.params):
            if b.kind == "input":
                lines.append(f"    p[{j}] = (void*)x;")
            elif b.kind == "state":
                lines.append(f"    p[{j}] = (void*)(cur + {s['in'][b.key][0]});")
            elif b.kind == "out":
                lines.append(f"    p[{j}] = (void*)y;" if b.key == "y" else f"    p[{j}] = (void*)(nxt + {s['out'][b.key][0]});")
        lines.append(f"    p[{len(cs.params)}] = (void*)s->workspace;")
        lines.append(f"    {cs.func}(p);")
        for k in cs.passthrough:
            o_in, cnt, dt = s["in"][k]
            o_out = s["out"][k][0]
            nbytes = cnt * torch.empty(0, dtype=dt).element_size()
            if nbytes:
                lines.append(f"    memcpy(nxt + {o_out}, cur + {o_in}, {nbytes});")
        lines.append(f"    ny = {s['y']}; break;\n  }}")
        cases.append("\n".join(lines))
    nsteps = len(steps)
    parts.append(f"""int {name}_step({name}_state* s, const float* x, float* y) {{
  unsigned char* cur = (unsigned char*)s->arena[s->cur];
  unsigned char* nxt = (unsigned char*)s->arena[1 - s->cur];
  int64_t k = s->step;  /* index of the step function: warm-up steps, then the cycle */
  int ny = 0;
  switch ((int)k) {{
{chr(10).join(cases)}
  default: return -1;
  }}
  s->cur = 1 - s->cur;
  s->step = k + 1 < {nsteps} ? k + 1 : {cycle};
  return ny;
}}
""")
    path.write_text("\n".join(parts))


def _check_export(stream: "Stream", d: Path, name: str, n: int, channels: int, steps: int) -> bool:
    """Compile the export with the system compiler and compare it with the eager stream from cold."""
    import subprocess
    import tempfile
    import warnings

    from ..errors import ConversionError
    from .compiler import find_toolchain, why_no_toolchain

    tc = find_toolchain()
    if tc is None:
        warnings.warn(f"export_c: not checked against the eager stream ({why_no_toolchain()})", stacklevel=3)
        return False
    with tempfile.TemporaryDirectory() as tmp:
        prog = Path(tmp) / "prog"
        r = subprocess.run([tc.cc, "-std=c99", "-O1", "-o", str(prog), str(d / "main.c"), str(d / f"{name}.c"), "-lm"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise ConversionError(f"export_c wrote C that does not compile with {tc.cc}: {r.stderr.strip()[-800:]}")
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(1, channels, n * steps, generator=gen)
        lines = "\n".join(" ".join(f"{v:.9g}" for v in x[0, :, t].tolist()) for t in range(x.shape[-1]))
        out = subprocess.run([str(prog)], input=lines, capture_output=True, text=True, timeout=300).stdout.splitlines()
    st = stream.init_state(1)
    with torch.no_grad():
        for i in range(steps):
            y, st = stream._step_impl(x[..., i * n:(i + 1) * n], st)
            ref = y.reshape(-1).double()
            got = torch.tensor([float(v) for v in out[i].split()], dtype=torch.float64) if i < len(out) else None
            bad = got is None or got.shape != ref.shape
            if not bad and ref.numel():
                bad = float((got - ref).abs().max()) > 1e-4 * max(1.0, float(ref.abs().max()))
            if bad:
                raise ConversionError(
                    f"export_c: the generated C disagrees with the eager stream at step {i} (samples "
                    f"{i * n}..{(i + 1) * n - 1} from a cold state); refusing rather than writing wrong code. "
                    "Please report the model (export_c(..., check=False) writes it unchecked).")
    return True


def _write_main(path: Path, name: str) -> None:
    up = name.upper()
    path.write_text(f"""/* Example: read samples from stdin ({up}_CHANNELS values per sample, whitespace separated), step every
 * {up}_CHUNK samples, print each step's outputs on one line. Build: cc -O2 main.c {name}.c -lm */
#include <stdio.h>
#include "{name}.h"

static {name}_state state;

int main(void) {{
  static float x[{up}_CHANNELS * {up}_CHUNK];
  static float y[{up}_Y_MAX];
  {name}_init(&state);
  for (;;) {{
    for (int t = 0; t < {up}_CHUNK; t++)
      for (int c = 0; c < {up}_CHANNELS; c++)
        if (scanf("%f", &x[c * {up}_CHUNK + t]) != 1) return 0;
    int n = {name}_step(&state, x, y);
    for (int i = 0; i < n; i++) printf(i ? " %.9g" : "%.9g", y[i]);
    printf("\\n");
  }}
}}
""")


_ = (Buf, const_array)
