"""Command line: ``thinkonce demo`` (the main job), ``thinkonce verify``, ``thinkonce describe``."""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

app = typer.Typer(add_completion=False, help="Make convolutional networks think each activation once on live signals.")
console = Console()

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
) -> None:
    """Stream the shipped PPG heart-rate network over a simulated recording, next to normal inference."""
    from .demo import FS, HOP, WINDOW, plot_demo, run_demo

    console.print(
        f"[bold]thinkonce demo[/]: PPG heart-rate network (DESIGN.md), window {WINDOW} / hop {HOP} at {FS:.0f} Hz, "
        f"{seconds:.0f} s simulated recording (seed {seed})"
    )
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task("streaming hops", total=None)
        try:
            res = run_demo(seconds, seed, progress=lambda i, n: bar.update(task, completed=i, total=n),
                           padding=padding, backend=backend)
        except ValueError as e:
            raise typer.BadParameter(str(e)) from e

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


@app.command()
def verify(
    model: str = typer.Argument("ppg_hr", help=f"reference network: {', '.join(BUILTIN)}"),
    seconds: float = typer.Option(120.0, help="length of the random test signal"),
    edge: str = typer.Option("exact", help="exact | stale"),
    seed: int = typer.Option(0),
) -> None:
    """Deviation of the window stream from normal windowed inference on a random signal."""
    import torch

    from . import stream as make_stream
    from . import verify as run_verify

    m, c, w, h = _builtin(model)
    fs = {"ppg_hr": 32, "eeg_seizure": 256, "acc_seizure": 32}[model]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(c, int(seconds * fs), generator=g)
    s = make_stream(m, window=w, hop=h, edge=edge)
    rep = run_verify(m, s, x)
    console.print(str(rep))


@app.command()
def describe(model: str = typer.Argument("ppg_hr", help=f"reference network: {', '.join(BUILTIN)}")) -> None:
    """How each node of a reference network is streamed (kind, stride, receptive field)."""
    from . import stream as make_stream

    m, c, w, h = _builtin(model)
    s = make_stream(m, window=w, hop=h)
    table = Table(title=f"{model}: window {w}, hop {h}, extension {s.extension}")
    for col in ("node", "target", "kind", "stride", "receptive field", "op"):
        table.add_column(col)
    for r in s.describe():
        table.add_row(*(str(r[k]) if r[k] is not None else "" for k in ("node", "target", "kind", "stride", "receptive_field", "op")))
    console.print(table)


_FS = {"ppg_hr": 32.0, "eeg_seizure": 256.0, "acc_seizure": 32.0}


def _analysis_model(name: str):
    """A reference network for analysis. Weights do not change the analysis, so when ``_builtin``
    cannot load them (untrained checkout: FileNotFoundError) or ``thinkonce.models`` does not export the
    factory (AttributeError, or TypeError once the same-named submodule shadows it), the untrained
    network is built from its own module."""
    import importlib

    try:
        return _builtin(name)
    except (FileNotFoundError, AttributeError, ImportError, TypeError):
        path, c, w, h = BUILTIN[name]
        fn = path.split(":")[1]
        factory = getattr(importlib.import_module(f"thinkonce.models.{name}"), fn)
        return factory().eval(), c, w, h


@app.command()
def analyze(
    model: str = typer.Argument("ppg_hr", help=f"reference network: {', '.join(BUILTIN)}"),
    fs: float = typer.Option(None, "--fs", help="sampling rate in Hz (default: the network's)"),
    f_max: float = typer.Option(None, "--f-max", help="signal band limit in Hz: adds the pooling error bounds"),
    amplitude: float = typer.Option(1.0, help="amplitude bound A of the signal (pooling error bounds)"),
    json_out: Path = typer.Option(None, "--json", help="also write the analysis as JSON to this file"),
) -> None:
    """Per-layer StreamiNNC analysis: zero-padding reach, receptive field, allowed hops, pooling bounds."""
    import json

    from .analyze import analyze as run_analyze

    m, c, w, h = _analysis_model(model)
    rate = fs if fs is not None else _FS[model]
    res = run_analyze(m, w, fs=rate, f_max=f_max, amplitude=amplitude)
    res.model = model
    # the table needs ~110 columns; rich assumes 80 when the output is not a terminal (pipes, files)
    out = console if console.is_terminal else Console(width=max(console.width, 120))
    out.print(res.to_table())
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(res.to_dict(), indent=2))
        console.print(f"analysis written to [bold]{json_out}[/]")


_TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".jit", ".torchscript", ".zip")


def _load_for_export(model: str, arch: str | None, channels: int | None, window: int | None):
    """A model for export, loaded without unpickling Python objects.

    Accepted: a built-in name; a safetensors state dict + ``--arch``; a TorchScript archive (read by
    ``torch.jit.load``, whose C++ unpickler builds tensors and TorchScript code, never Python objects;
    streamed through PyTorch's TorchScript-to-export converter); a ``torch.export`` ``.pt2`` archive
    (read with every unpickling restricted to tensors, see ``load_exported_archive``).
    """
    from pathlib import Path as _P

    if model in BUILTIN and arch is None:
        return _builtin(model)
    path = _P(model)
    if not path.exists():
        raise typer.BadParameter(f"{model!r} is neither a built-in network ({', '.join(BUILTIN)}) nor a file")
    if path.suffix == ".pt2":
        from .stream.exported import example_from_program, load_exported_archive

        try:
            program = load_exported_archive(str(path))
        except Exception as e:
            raise typer.BadParameter(f"{path.name}: {e}") from e
        example = example_from_program(program)
        if example is None:
            raise typer.BadParameter(f"{path.name}: the program does not take exactly one signal input")
        return program, example.shape[1], example.shape[-1], None
    if path.suffix in _TORCHSCRIPT_SUFFIXES:
        return _load_torchscript(path, channels, window)
    if path.suffix != ".safetensors":
        raise typer.BadParameter(
            f"{path.name}: expected a TorchScript archive ({', '.join(_TORCHSCRIPT_SUFFIXES)}), a torch.export "
            "archive (.pt2) or a .safetensors state dict with --arch"
        )
    if arch is None or arch not in BUILTIN:
        raise typer.BadParameter(f"pass --arch with the registered architecture: one of {', '.join(BUILTIN)}")
    from safetensors.torch import load_file

    import importlib

    mod, fn = BUILTIN[arch][0].split(":")
    net = getattr(importlib.import_module(mod), fn)()
    missing, unexpected = net.load_state_dict(load_file(str(path)), strict=False)
    if missing or unexpected:
        raise typer.BadParameter(f"weights do not fit {arch}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    _, c, w, h = BUILTIN[arch]
    return net.eval(), c, w, h


def _load_torchscript(path, channels: int | None, window: int | None):
    """A TorchScript archive as an ExportedProgram; window and hop must be given on the command line."""
    import torch

    from .stream.exported import _script_example, from_torchscript

    if window is None:
        raise typer.BadParameter("a TorchScript archive does not say its window: pass --window (and --hop)")
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:
        raise typer.BadParameter(
            f"{path.name} is not a TorchScript archive ({type(e).__name__}: {str(e).splitlines()[0][:120]}). Pickled "
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
    return from_torchscript(module, example), example.shape[1], window, None


@app.command("export")
def export_cmd(
    model: str = typer.Argument(..., help="built-in network name, a TorchScript archive (.pt), a torch.export "
                                          "archive (.pt2), or a .safetensors state dict with --arch"),
    output: Path = typer.Option(Path("step.onnx"), "-o", "--output", help="ONNX file to write"),
    window: int = typer.Option(None, help="window (samples); default: the network's own"),
    hop: int = typer.Option(None, help="hop (samples); default: the network's own"),
    arch: str = typer.Option(None, help=f"registered architecture for a state dict: {', '.join(BUILTIN)}"),
    edge: str = typer.Option("exact", help="exact | stale"),
    channels: int = typer.Option(None, help="input channels of a TorchScript archive (default: its first conv's)"),
    chunk: int = typer.Option(None, help="samples per step call (default: the hop); any size, the phase is in the state"),
) -> None:
    """Export a window stream's step to ONNX with its state as explicit inputs and outputs."""
    from . import stream as make_stream

    net, c, w, h = _load_for_export(model, arch, channels, window)
    if (hop or h) is None:
        raise typer.BadParameter("pass --hop (samples between windows)")
    s = make_stream(net, window=window or w, hop=hop or h, edge=edge)
    info = s.export_onnx(str(output), chunk=chunk)
    console.print(
        f"wrote [bold]{output}[/]: {len(info['inputs'])} inputs (x + state), {len(info['outputs'])} outputs, chunk "
        f"{info['chunk']} samples ({len(info['phases'])} phase branch(es)); feed a state after the first "
        f"{info['warmup']} samples"
    )


if __name__ == "__main__":  # pragma: no cover
    app()
