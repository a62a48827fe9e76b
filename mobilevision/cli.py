"""``mobilevision`` command line: parse arguments, call the Python API, print.

Every MobileVisionError becomes one line on stderr and exit code 2; ``--debug`` shows the
traceback instead. Heavy imports (torch, converters, runtimes) happen inside commands.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from mobilevision import __version__
from mobilevision.errors import MobileVisionError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="mobilevision: export lightweight vision models to ONNX / TFLite / Core ML / "
                       "OpenVINO with parity checks, run them without torch, and benchmark them.")
# Piped output keeps whole table rows instead of folding them to 80 columns.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        out.print(f"mobilevision {__version__}")
        raise typer.Exit()


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
          version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """On-device vision SDK."""


@app.command("list")
def list_cmd(task: Optional[str] = typer.Option(None, help="Only models of this task (e.g. classify)."),
             imgsz: Optional[int] = typer.Option(None, help="Count MACs at this input size instead of the default.")
             ) -> None:
    """List the model zoo: task, parameters (M), MACs (M) at the default input size."""
    import mobilevision
    from mobilevision.complexity import count_macs, count_params

    table = Table(title="mobilevision model zoo")
    for col in ("model", "task", "params (M)", "MACs (M)", "input"):
        table.add_column(col, justify="right" if col in ("params (M)", "MACs (M)") else "left")
    names = mobilevision.list_models(task)
    with err.status("counting parameters and MACs (torch.utils.flop_counter)") as status:
        for name in names:
            status.update(f"counting {name}")
            card = mobilevision.get_model_card(name)
            size = (card.input_size[0], imgsz, imgsz) if imgsz else card.input_size
            model = mobilevision.create_model(name)
            table.add_row(name, card.task, f"{count_params(model) / 1e6:.3f}",
                          f"{count_macs(model, size) / 1e6:.1f}", "x".join(map(str, size)))
    out.print(table)


def _export_table(results) -> Table:
    from mobilevision.export.api import ExportFailure

    table = Table(title=f"export summary ({results[0].path.parent if results and hasattr(results[0], 'path') else ''})")
    for col in ("target", "precision", "artifact", "MB", "parity", "status", "s"):
        table.add_column(col)
    for r in results:
        if isinstance(r, ExportFailure):
            table.add_row(r.target, r.precision, "-", "-", r.error, "[red]FAILED[/red]", "-")
            continue
        size = r.size_bytes / 1e6
        status = "[green]OK[/green]" if r.parity.numeric else "[yellow]OK (structure)[/yellow]"
        parity = r.parity.summary() if r.parity.numeric else "interface + ops checked; numbers need macOS"
        table.add_row(r.target, r.precision, r.path.name, f"{size:.2f}", parity, status,
                      f"{r.seconds:.1f}")
    return table


@app.command("export")
def export_cmd(
    model: str = typer.Argument(..., help="Zoo model name (see `mobilevision list`)."),
    target: list[str] = typer.Option(..., "--target", "-t", help="onnx, tflite, coreml, openvino or all (repeatable)."),
    weights: Optional[Path] = typer.Option(None, help="Local checkpoint (.pth/.pt/.safetensors); default: random init."),
    imgsz: Optional[int] = typer.Option(None, help="Square input size in pixels (default: the model's)."),
    precision: list[str] = typer.Option(["fp32"], "--precision", "-p", help="fp32 or fp16 (repeatable)."),
    out_dir: Path = typer.Option(Path("exports"), "--out", help="Output folder."),
    num_classes: Optional[int] = typer.Option(None, help="Classifier size when the weights are fine-tuned."),
    checkpoint_key: Optional[str] = typer.Option(None, help="Entry of a training checkpoint to load (EMO: net or net_E)."),
    bench: bool = typer.Option(False, "--bench", help="Benchmark every runnable artifact afterwards."),
    runs: int = typer.Option(50, help="Timed runs per artifact for --bench."),
) -> None:
    """Export a zoo model; each artifact is run in its runtime and compared with PyTorch."""
    from mobilevision.export.api import PRECISIONS, ExportFailure, export_all, resolve_targets
    from mobilevision.errors import UnknownTarget

    import mobilevision

    mobilevision.get_model_card(model)  # unknown names fail before anything is built
    targets = [t for name in target for t in resolve_targets(name)]
    for p in precision:
        if p not in PRECISIONS:
            raise UnknownTarget(f"unknown precision {p!r}: choose one of {', '.join(PRECISIONS)}")
    if weights is None:
        err.print("note: no --weights given: exporting randomly initialised weights "
                  "(right for latency and parity, not for predictions)")
    with err.status(f"exporting {model}") as status:
        results = export_all(model, list(dict.fromkeys(targets)), precisions=tuple(dict.fromkeys(precision)),
                             weights=str(weights) if weights else None, imgsz=imgsz, out_dir=out_dir,
                             num_classes=num_classes, checkpoint_key=checkpoint_key,
                             on_progress=lambda msg: status.update(f"{model}: {msg}"))
    out.print(_export_table(results))
    notes = {r.parity.note for r in results if not isinstance(r, ExportFailure) and r.parity.note}
    for note in notes:
        err.print(f"note: {note}")
    failed = [r for r in results if isinstance(r, ExportFailure)]
    if bench:
        runnable = [str(r.path) for r in results if not isinstance(r, ExportFailure) and r.parity.numeric]
        if runnable:
            _run_bench(runnable, None, None, runs, 5, None)
    if failed:
        for f in failed:
            err.print(f"error: {f.target} {f.precision}: {f.error}")
        raise typer.Exit(2)


def _bench_table(rows) -> Table:
    table = Table(title="latency (ms; timed runs interleaved across rows)")
    cols = ("artifact", "backend", "threads", "load", "first", "median", "mean", "p90", "min", "max", "std",
            "peak RSS MB", "GMAC/s")
    for col in cols:
        table.add_column(col, justify="left" if col in ("artifact", "backend") else "right")
    for r in rows:
        if r.error:
            table.add_row(Path(r.artifact).name, r.backend, "-", *["-"] * 9, f"[red]{r.error}[/red]")
            continue
        table.add_row(Path(r.artifact).name, r.backend, str(r.threads or "default"),
                      *(f"{v:.2f}" for v in (r.load_ms, r.first_ms, r.median_ms, r.mean_ms, r.p90_ms,
                                              r.min_ms, r.max_ms, r.std_ms)),
                      f"{r.peak_rss_mb:.0f}", f"{r.gmacs_per_s:.1f}" if r.gmacs_per_s else "-")
    return table


def _run_bench(artifacts, backends, threads, runs, warmup, json_path, rewarm: int = 1) -> list:
    from mobilevision.runtime.profile import benchmark, write_json

    with err.status("benchmarking") as status:
        rows = benchmark(artifacts, backends=backends, threads=threads, runs=runs, warmup=warmup,
                         rewarm=rewarm, on_progress=lambda msg: status.update(msg))
    out.print(_bench_table(rows))
    if json_path:
        write_json(rows, json_path)
        err.print(f"wrote {json_path}")
    return rows


@app.command("bench")
def bench_cmd(
    artifacts: list[Path] = typer.Argument(..., help="Exported artifacts (.onnx, .tflite, .xml, .mlpackage)."),
    backend: Optional[list[str]] = typer.Option(None, "--backend", "-b",
                                                help="ort, litert, openvino, coreml or torch (repeatable); "
                                                     "default: each artifact's own runtime."),
    threads: Optional[int] = typer.Option(None, help="CPU threads per backend (default: the runtime's)."),
    runs: int = typer.Option(50, help="Timed runs per artifact x backend."),
    warmup: int = typer.Option(5, help="Untimed runs after the first inference."),
    rewarm: int = typer.Option(1, help="Untimed runs right before each timed run (steady-state latency; "
                                       "0 measures a cold turn after another row's)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the rows as JSON."),
) -> None:
    """Measure latency: load, first inference, median/mean/p90/min/max/std, peak RSS, GMAC/s."""
    from mobilevision.errors import MobileVisionError as _E

    if runs < 1 or warmup < 0 or rewarm < 0 or (threads is not None and threads < 1):
        raise _E("--runs must be >= 1, --warmup and --rewarm >= 0 and --threads >= 1")
    rows = _run_bench([str(a) for a in artifacts], backend or None, threads, runs, warmup, json_path, rewarm)
    if all(r.error for r in rows):
        raise typer.Exit(2)


@app.command("info")
def info_cmd(artifact: Path = typer.Argument(..., help="An exported artifact.")) -> None:
    """Show an artifact's metadata (task, input, preprocessing, parity report)."""
    from mobilevision.runtime import load
    from mobilevision.errors import BackendUnavailable
    from mobilevision.export.metadata import read_sidecar

    try:
        with load(artifact) as model:
            md = model.metadata
    except BackendUnavailable:
        md = read_sidecar(artifact)
    if md is None:
        raise MobileVisionError(f"{artifact} carries no mobilevision metadata")
    out.print_json(md.to_json())


@app.command("classify")
def classify_cmd(artifact: Path = typer.Argument(..., help="An exported classifier."),
                 image: Path = typer.Argument(..., help="An image file."),
                 top_k: int = typer.Option(5, help="How many classes to print."),
                 backend: Optional[str] = typer.Option(None, help="Runtime (default: the artifact's own).")) -> None:
    """Classify one image with an exported model, using the preprocessing in its metadata."""
    from mobilevision.runtime import load

    with load(artifact, backend=backend) as model:
        for c in model.classify(image, top_k=top_k):
            out.print(f"{c.score:7.4f}  {c.index:5d}  {c.label}")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (usage errors 2, MobileVisionError 2, interrupted 130)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        app(args=args, prog_name="mobilevision")
        return 0
    except SystemExit as e:  # typer/click end every run with SystemExit in standalone mode
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except MobileVisionError as e:
        if debug:
            raise
        err.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        return 2


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
