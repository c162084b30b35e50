"""Command line: ``thinkonce demo`` (the main job), ``analyze``, ``verify``, ``describe``, ``export``.

Every command that takes a model takes a built-in network name or a model file, read by one loader
(:func:`load_model`) that never unpickles Python objects. Misuse (unknown model, unreadable file,
bad window/hop, short signal, unsupported layer) prints one ``Error: ...`` line, not a traceback;
set ``THINKONCE_TRACEBACK=1`` to see the traceback.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

app = typer.Typer(add_completion=False, help="Make convolutional networks think each activation once on live signals.")
console = Console()
err_console = Console(stderr=True)


def _version() -> str:
    """The installed distribution's version, else the package's ``__version__`` (source checkouts)."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("thinkonce")
    except PackageNotFoundError:
        from . import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        console.print(f"thinkonce {_version()}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="print the version and exit"),
) -> None:
    """Make convolutional networks think each activation once on live signals."""


@contextlib.contextmanager
def _clean_errors() -> Iterator[None]:
    """Turn a library error into one red ``Error: ...`` line and exit code 1 (usage errors stay typer's,
    exit code 2). ``THINKONCE_TRACEBACK=1`` re-raises instead."""
    try:
        yield
    except (typer.Exit, typer.Abort, typer.BadParameter, KeyboardInterrupt):
        raise
    except Exception as e:
        if os.environ.get("THINKONCE_TRACEBACK"):
            raise
        from .errors import ThinkonceError

        msg = " ".join(str(e).split("\n\n")[0].split()) or type(e).__name__
        if not isinstance(e, (ThinkonceError, ValueError, FileNotFoundError)):
            msg = f"{type(e).__name__}: {msg}"
        from rich.markup import escape

        err_console.print(f"[bold red]Error:[/] {escape(msg)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


#: loggers whose warnings PyTorch prints while converting TorchScript or exporting ONNX
_NOISY_LOGGERS = ("torch._export", "torch.export", "torch.fx.experimental.symbolic_shapes", "torch._dynamo",
                  "torch.onnx")


@contextlib.contextmanager
def _quiet_torch() -> Iterator[None]:
    """Within: PyTorch's tracer/converter warnings and its export loggers' warnings are not printed
    (``torch.jit`` TracerWarnings, TS2EPConverter's ``num_batches_tracked`` notes, the shape-
    specialisation log of ``torch._export``). Scoped to the call: filters and levels are restored."""
    import torch

    saved = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r"Manually populate .* into state_dict ExportedProgram")
        warnings.filterwarnings("ignore", message=r".*is deprecated\. Please switch to", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch(\.|$)")
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch(\.|$)")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch(\.|$)")
        for name in _NOISY_LOGGERS:
            lg = logging.getLogger(name)
            saved.append((lg, lg.level))
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in saved:
                lg.setLevel(level)

#: reference networks: name -> (factory, channels, window, hop)
BUILTIN = {
    "ppg_hr": ("thinkonce.models:ppg_hr", 1, 256, 64),
    "eeg_seizure": ("thinkonce.models:eeg_seizure", 18, 1024, 256),
    "acc_seizure": ("thinkonce.models:acc_seizure", 4, 960, 160),
}


def _builtin(name: str):
    import importlib

    if name not in BUILTIN:
        raise typer.BadParameter(f"unknown model {name!r}; choose one of {', '.join(BUILTIN)}")
    path, c, w, h = BUILTIN[name]
    mod, fn = path.split(":")
    factory = getattr(importlib.import_module(mod), fn)
    model = factory(pretrained=True) if name == "ppg_hr" else factory()
    return model.eval(), c, w, h


@app.command()
def demo(
    seconds: float = typer.Option(300.0, help="length of the simulated PPG recording"),
    seed: int = typer.Option(7, help="simulation seed"),
    plot: Path = typer.Option(Path("thinkonce_demo.png"), help="where to save the heart-rate plot"),
    rows: int = typer.Option(12, help="windows shown in the table"),
    padding: str = typer.Option("signal", help="shipped model trained with 'signal' (StreamiNNC) or 'zero' padding"),
    backend: str = typer.Option("compiled", help="the stream's step backend: eager | compiled | onnx"),
    data: str = typer.Option("sim", help="'sim': simulated PPG; 'troika': a real TROIKA test recording "
                                         "(PPG + ACC through the real-data model), when the data are present"),
    recording: Optional[str] = typer.Option(None, help="with --data troika: the test recording, e.g. TEST_S04_T02"),
    root: Optional[Path] = typer.Option(None, help="with --data troika: the real-data folder "
                                                   "(default THINKONCE_DATA, else ../shared/data)"),
) -> None:
    """Stream the shipped PPG heart-rate network over a simulated (or real) recording, next to normal inference."""
    from .data import DataNotFoundError
    from .demo import FS, HOP, WINDOW, plot_demo, run_demo

    what = f"{seconds:.0f} s simulated recording (seed {seed})" if data == "sim" else \
        f"up to {seconds:.0f} s of a real TROIKA test recording"
    console.print(
        f"[bold]thinkonce demo[/]: PPG heart-rate network (DESIGN.md), window {WINDOW} / hop {HOP} at {FS:.0f} Hz, {what}"
    )
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task("streaming hops", total=None)
        try:
            res = run_demo(seconds, seed, progress=lambda i, n: bar.update(task, completed=i, total=n),
                           padding=padding, backend=backend, data=data, recording=recording, root=root)
        except ValueError as e:
            raise typer.BadParameter(str(e)) from e
        except DataNotFoundError as e:
            raise typer.BadParameter(f"--data troika needs the TROIKA recordings: {e}") from e
    if res.source:
        console.print(f"streamed: {res.source}")

    table = Table(title="Per-window heart rate (bpm)")
    for col in ("window end (s)", "ground truth", "normal windowed", "stream", "stream - normal"):
        table.add_column(col, justify="right")
    step = max(1, len(res.t_s) // rows)
    for i in range(0, len(res.t_s), step):
        table.add_row(f"{res.t_s[i]:.0f}", f"{res.hr_true[i]:.1f}", f"{res.hr_normal[i]:.1f}", f"{res.hr_stream[i]:.1f}",
                      f"{res.hr_stream[i] - res.hr_normal[i]:+.2f}")
    console.print(table)

    summary = Table(title=f"Per hop, {len(res.t_s)} windows, batch 1, one thread; normal = eager model, "
                          f"stream = backend {res.backend!r}")
    summary.add_column("")
    summary.add_column("normal windowed", justify="right")
    summary.add_column("thinkonce stream", justify="right")
    summary.add_column("ratio", justify="right")
    summary.add_row("MACs per hop", f"{res.macs_normal:,}", f"{res.macs_stream:,}", f"{res.macs_normal / res.macs_stream:.2f}x")
    summary.add_row("median time per hop (us)", f"{res.us_normal:.0f}", f"{res.us_stream:.0f}", f"{res.us_normal / res.us_stream:.2f}x")
    summary.add_row("HR MAE vs ground truth (bpm)", f"{res.mae_normal:.2f}", f"{res.mae_stream:.2f}", "")
    summary.add_row("state per stream (bytes)", "-", f"{res.state_bytes:,}", "")
    console.print(summary)
    console.print(
        f"{res.padding}-padding model, stream vs normal windowed inference: NRMSE {100 * res.nrmse:.3f}%, "
        f"max |d| {res.max_abs_bpm:.3f} bpm (the stream is exact against signal-padded inference)"
    )
    if res.nrmse_zero_padded_model is not None:
        z = res.nrmse_zero_padded_model
        shown = f"{100 * z:.2f}%" if math.isfinite(z) else "n/a (normal outputs do not vary over so few windows)"
        console.print(
            f"for contrast, the zero-padding-trained model: stream vs normal NRMSE "
            f"{shown} (StreamiNNC: 5.83% zero vs 2.03% signal padding)"
        )
    out = plot_demo(res, plot)
    console.print(f"plot saved to [bold]{out}[/]")


_FS = {"ppg_hr": 32.0, "eeg_seizure": 256.0, "acc_seizure": 32.0}
_TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".jit", ".torchscript", ".zip")
_MODEL_HELP = ("built-in network (" + ", ".join(BUILTIN) + "), a TorchScript archive (.pt), a torch.export "
               "archive (.pt2), or a .safetensors state dict with --arch")


@dataclass
class Loaded:
    """A model read by :func:`load_model` with what is known about how it runs."""

    model: object  # nn.Module or torch.export.ExportedProgram
    name: str  # the built-in name or the file name
    channels: int
    window: int | None
    hop: int | None
    fs: float | None  # sampling rate in Hz, known for the built-in networks only


def _untrained(name: str):
    """The built-in network without weights, from its own module (when the package's factory or its
    weights are not available, e.g. an untrained checkout). Weights do not change an analysis."""
    import importlib

    fn = BUILTIN[name][0].split(":")[1]
    return getattr(importlib.import_module(f"thinkonce.models.{name}"), fn)().eval()


def load_model(model: str, arch: str | None = None, channels: int | None = None, window: int | None = None,
               untrained_ok: bool = False) -> Loaded:
    """A model for any command, loaded without unpickling Python objects.

    Accepted: a built-in name; a safetensors state dict + ``--arch``; a TorchScript archive (read by
    ``torch.jit.load``, whose C++ unpickler builds tensors and TorchScript code, never Python objects;
    streamed through PyTorch's TorchScript-to-export converter); a ``torch.export`` ``.pt2`` archive
    (read with every unpickling restricted to tensors, see ``load_exported_archive``). ``untrained_ok``:
    a built-in network whose weights cannot be loaded is built untrained (for ``analyze``).
    ``--window`` overrides a built-in's window; a TorchScript archive needs it.
    """
    if arch is not None and arch not in BUILTIN:
        raise typer.BadParameter(f"unknown --arch {arch!r}; choose one of {', '.join(BUILTIN)}")
    if model in BUILTIN and arch is None:
        path, c, w, h = BUILTIN[model]
        if untrained_ok:
            try:
                net = _builtin(model)[0]
            except (FileNotFoundError, AttributeError, ImportError, TypeError):
                net = _untrained(model)
        else:
            net = _builtin(model)[0]
        return Loaded(net, model, c, window or w, h, _FS[model])
    path = Path(model)
    if not path.exists():
        raise typer.BadParameter(
            f"{model!r} is neither a built-in network ({', '.join(BUILTIN)}) nor an existing file"
        )
    if path.is_dir():
        raise typer.BadParameter(f"{model!r} is a directory; pass a model file ({_MODEL_HELP})")
    if path.suffix == ".pt2":
        from .stream.exported import example_from_program, load_exported_archive

        try:
            with _quiet_torch():
                program = load_exported_archive(str(path))
        except Exception as e:
            raise typer.BadParameter(f"{path.name}: {_first_line(e)}") from e
        example = example_from_program(program)
        if example is None or example.dim() != 3:
            raise typer.BadParameter(f"{path.name}: the program does not take exactly one (batch, channels, "
                                     "time) signal input")
        if window is not None and window != example.shape[-1]:
            raise typer.BadParameter(f"{path.name} was exported for windows of {example.shape[-1]} samples "
                                     f"(exported shapes are static), not --window {window}")
        return Loaded(program, path.name, int(example.shape[1]), int(example.shape[-1]), None, None)
    if path.suffix in _TORCHSCRIPT_SUFFIXES:
        net, c = _load_torchscript(path, channels, window)
        return Loaded(net, path.name, c, window, None, None)
    if path.suffix != ".safetensors":
        raise typer.BadParameter(
            f"{path.name}: expected a TorchScript archive ({', '.join(_TORCHSCRIPT_SUFFIXES)}), a torch.export "
            "archive (.pt2) or a .safetensors state dict with --arch"
        )
    if arch is None:
        raise typer.BadParameter(f"pass --arch with the registered architecture: one of {', '.join(BUILTIN)}")
    from safetensors.torch import load_file

    try:
        weights = load_file(str(path))
    except Exception as e:
        raise typer.BadParameter(f"{path.name} is not a readable safetensors file ({_first_line(e)})") from e
    net = _untrained(arch)
    missing, unexpected = net.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise typer.BadParameter(f"weights do not fit {arch}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    _, c, w, h = BUILTIN[arch]
    return Loaded(net.eval(), path.name, c, window or w, h, _FS[arch])


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]


def _load_torchscript(path: Path, channels: int | None, window: int | None):
    """A TorchScript archive as an ExportedProgram (and its channels); the window must be given."""
    import torch

    from .stream.exported import _script_example, from_torchscript

    if window is None:
        raise typer.BadParameter("a TorchScript archive does not say its window: pass --window (and --hop)")
    try:
        with _quiet_torch():
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:
        raise typer.BadParameter(
            f"{path.name} is not a TorchScript archive ({type(e).__name__}: {_first_line(e)[:120]}). Pickled "
            "models (torch.save(model)) are refused: unpickling can run arbitrary code. Save it with "
            "torch.jit.save(torch.jit.trace(model, x), path) or as a safetensors state dict with --arch."
        ) from e
    module.eval()
    if channels is not None:
        example = torch.zeros(1, channels, window)
    else:
        try:
            example = _script_example(module, window)
        except Exception as e:
            raise typer.BadParameter(f"{e}; pass --channels") from e
    with _quiet_torch():
        program = from_torchscript(module, example)
    return program, int(example.shape[1])


def _positive(name: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise typer.BadParameter(f"{name} must be positive, got {value:g}")


def _window_hop(m: Loaded, window: int | None, hop: int | None) -> tuple[int, int]:
    w = window or m.window
    if w is None:
        raise typer.BadParameter(f"{m.name} does not say its window: pass --window (samples)")
    h = hop or m.hop
    if h is None:
        raise typer.BadParameter("pass --hop (samples between windows)")
    return w, h


_ARCH = typer.Option(None, help=f"registered architecture of a .safetensors state dict: {', '.join(BUILTIN)}")
_CHANNELS = typer.Option(None, min=1, help="input channels of a TorchScript archive (default: its first conv's)")


@app.command()
def verify(
    model: str = typer.Argument("ppg_hr", help=_MODEL_HELP),
    seconds: float = typer.Option(120.0, min=0.0, help="length of the random test signal (needs a sampling rate)"),
    samples: int = typer.Option(None, min=1, help="length of the test signal in samples (overrides --seconds; "
                                                  "default for a model file without --fs: window + 32 hops)"),
    fs: float = typer.Option(None, "--fs", help="sampling rate in Hz (default: the network's)"),
    window: int = typer.Option(None, min=1, help="window (samples); default: the network's own"),
    hop: int = typer.Option(None, min=1, help="hop (samples); default: the network's own"),
    arch: str = _ARCH,
    channels: int = _CHANNELS,
    edge: str = typer.Option("exact", help="exact | stale"),
    seed: int = typer.Option(0),
) -> None:
    """Deviation of the window stream from normal windowed inference on a random signal."""
    import torch

    from . import stream as make_stream
    from . import verify as run_verify

    with _clean_errors():
        _positive("--fs", fs)
        m = load_model(model, arch, channels, window)
        w, h = _window_hop(m, window, hop)
        rate = fs if fs is not None else m.fs
        if samples is not None:
            n = samples
        elif rate is not None:
            n = int(seconds * rate)
        else:
            n = w + 32 * h
        if n < w:
            raise typer.BadParameter(
                f"the test signal has {n} samples, shorter than one window ({w} samples): pass --seconds >= "
                f"{w / rate:g}" if rate else f"the test signal has {n} samples, shorter than one window ({w}): "
                f"pass --samples >= {w}"
            )
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(m.channels, n, generator=g)
        with _quiet_torch():
            s = make_stream(m.model, window=w, hop=h, edge=edge)
        rep = run_verify(m.model, s, x)
        console.print(str(rep), soft_wrap=True)


@app.command()
def describe(
    model: str = typer.Argument("ppg_hr", help=_MODEL_HELP),
    window: int = typer.Option(None, min=1, help="window (samples); default: the network's own"),
    hop: int = typer.Option(None, min=1, help="hop (samples); default: the network's own"),
    arch: str = _ARCH,
    channels: int = _CHANNELS,
) -> None:
    """How each node of a network is streamed (kind, stride, receptive field in input samples)."""
    from . import stream as make_stream

    with _clean_errors():
        m = load_model(model, arch, channels, window)
        w, h = _window_hop(m, window, hop)
        with _quiet_torch():
            s = make_stream(m.model, window=w, hop=h)
        table = Table(title=f"{m.name}: window {w}, hop {h}, extension {s.extension}")
        for col in ("node", "target", "kind", "stride", "receptive field", "op"):
            table.add_column(col)
        for r in s.describe():
            table.add_row(*(str(r[k]) if r[k] is not None else ""
                            for k in ("node", "target", "kind", "stride", "receptive_field", "op")))
        _wide().print(table)


def _wide() -> Console:
    # the tables need ~110 columns; rich assumes 80 when the output is not a terminal (pipes, files)
    return console if console.is_terminal else Console(width=max(console.width, 120))


@app.command()
def analyze(
    model: str = typer.Argument("ppg_hr", help=_MODEL_HELP),
    fs: float = typer.Option(None, "--fs", help="sampling rate in Hz (default: the network's)"),
    f_max: float = typer.Option(None, "--f-max",
                                help="signal band limit in Hz: adds the pooling error bounds"),
    amplitude: float = typer.Option(1.0, help="amplitude bound A of the signal (pooling error bounds)"),
    json_out: Path = typer.Option(None, "--json", help="also write the analysis as JSON to this file"),
    window: int = typer.Option(None, min=1, help="window (samples); default: the network's own"),
    arch: str = _ARCH,
    channels: int = _CHANNELS,
) -> None:
    """Per-layer StreamiNNC analysis: zero-padding reach, receptive field, allowed hops, pooling bounds."""
    import json

    from .analyze import analyze as run_analyze

    with _clean_errors():
        _positive("--fs", fs)
        _positive("--f-max", f_max)
        m = load_model(model, arch, channels, window, untrained_ok=True)
        if m.window is None:
            raise typer.BadParameter(f"{m.name} does not say its window: pass --window (samples)")
        rate = fs if fs is not None else m.fs
        if f_max is not None and rate is None:
            raise typer.BadParameter("--f-max needs the sampling rate of a model file: pass --fs too")
        with _quiet_torch():
            res = run_analyze(m.model, m.window, fs=rate, f_max=f_max, amplitude=amplitude)
        res.model = m.name
        _wide().print(res.to_table())
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(res.to_dict(), indent=2))
            console.print(f"analysis written to [bold]{json_out}[/]")


@app.command("export")
def export_cmd(
    model: str = typer.Argument(..., help=_MODEL_HELP),
    output: Path = typer.Option(Path("step.onnx"), "-o", "--output", help="ONNX file to write"),
    window: int = typer.Option(None, min=1, help="window (samples); default: the network's own"),
    hop: int = typer.Option(None, min=1, help="hop (samples); default: the network's own"),
    arch: str = _ARCH,
    edge: str = typer.Option("exact", help="exact | stale"),
    channels: int = _CHANNELS,
    chunk: int = typer.Option(None, min=1, help="samples per step call (default: the hop); any size, the phase is in the state"),
    format: str = typer.Option("onnx", "--format", help="onnx (one step graph) | c (C99 source for a device, -o is a directory)"),
    portable: bool = typer.Option(True, "--portable/--native-vectors", help="C: plain C99, or this CPU's vector extensions"),
) -> None:
    """Export a window stream's step to ONNX (state as explicit inputs and outputs) or to C."""
    from . import stream as make_stream
    from ._optional import require

    if format not in ("onnx", "c"):
        err_console.print(f"[red]Error:[/] --format must be onnx or c, got {format!r}")
        raise typer.Exit(2)
    with _clean_errors():
        m = load_model(model, arch, channels, window)
        w, h = _window_hop(m, window, hop)
        if format == "c":
            out_dir = output if output != Path("step.onnx") else Path("step_c")
            with _quiet_torch():
                s = make_stream(m.model, window=w, hop=h, edge=edge)
                info = s.export_c(str(out_dir), chunk=chunk, portable=portable)
            console.print(
                f"wrote [bold]{out_dir}[/]: {', '.join(info['files'])}; chunk {info['chunk']} samples, "
                f"{info['steps']} step function(s), state {info['state_bytes']} bytes; build: "
                f"cc -O2 {out_dir}/main.c {out_dir}/tk_model.c -lm"
            )
            return
        require("onnx", "onnx", "ONNX export")
        with _quiet_torch():
            s = make_stream(m.model, window=w, hop=h, edge=edge)
            info = s.export_onnx(str(output), chunk=chunk)
        console.print(
            f"wrote [bold]{output}[/]: {len(info['inputs'])} inputs (x + state), {len(info['outputs'])} outputs, chunk "
            f"{info['chunk']} samples ({len(info['phases'])} phase branch(es)); feed a state after the first "
            f"{info['warmup']} samples"
        )


if __name__ == "__main__":  # pragma: no cover
    app()
