"""``mobilevision`` command line: parse arguments, call the Python API, print.

Every MobileVisionError, usage error, missing optional package and OS error on a user's path
becomes one line on stderr and exit code 2; ``--debug`` shows the traceback instead. Heavy
imports (torch, converters, runtimes) happen inside commands. Text that comes from files
(artifact metadata, paths, tool messages) is printed through ``mobilevision.terminal``.
"""
from __future__ import annotations

import json
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from mobilevision import __version__
from mobilevision.errors import DEBUG_ENV, MobileVisionError, os_problem
from mobilevision.export.targets import TARGETS   # the registry only: no converter is imported
from mobilevision.runtime.backends import BACKENDS as _BACKENDS, SUFFIX_BACKENDS   # no runtime is imported
from mobilevision.terminal import print_json, safe as _safe, say as _say, visible as _visible

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="mobilevision: export lightweight vision models to ONNX / TFLite / Core ML / "
                       "OpenVINO with parity checks, run them without torch, and benchmark them.")
# Piped output keeps whole table rows instead of folding them to 80 columns.
out = Console(width=None if sys.stdout.isatty() else 200)  # a log keeps every column of the widest table
err = Console(stderr=True, soft_wrap=True)  # a message is one line, also in a log file

def _bounded(low: float | None = None, high: float | None = None, *, above: bool = False,
             below: bool = False) -> Callable[[Any], Any]:
    """An option callback: each number finite and within [low, high] (``above``/``below``: open ends).
    A bad value is a usage error (one line, exit 2)."""
    ends = ((f"> {low:g}" if above else f">= {low:g}") if low is not None else None,
            (f"< {high:g}" if below else f"<= {high:g}") if high is not None else None)
    rule = " and ".join(e for e in ends if e) or "finite"

    def check(value: Any) -> Any:
        for v in value if isinstance(value, tuple) else (value,):
            if v is None:
                continue
            ok = (math.isfinite(v) and (low is None or (v > low if above else v >= low))
                  and (high is None or (v < high if below else v <= high)))
            if not ok:
                raise typer.BadParameter(f"must be a finite number{'' if rule == 'finite' else ' ' + rule} (got {v})")
        return value
    return check


def _progress(status: Any, message: str, keep: bool = False) -> None:
    """A progress message: the spinner's text; a message to ``keep`` (a long wait, and how to avoid it) is also
    printed as a line, which a log file keeps too."""
    if keep:
        err.print(_visible(message), markup=False, highlight=False)
    status.update(_safe(message))


def _torch_device(value: str) -> str:
    """Option callback: ``--device`` of a command that runs PyTorch, as torch names it (``mobilevision.devices``)."""
    from mobilevision.devices import torch_device_name

    try:
        return torch_device_name(value)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


_TORCH_DEVICE_OPTION = typer.Option("auto", "--device", callback=_torch_device,
                                    help="auto (a GPU when torch sees one, else the CPU), cpu, gpu or gpu:N "
                                         "(cuda, cuda:N: the same).")


def _check_output(path: Path, flag: str, folder: bool) -> Path:
    """Fail in one line before any work when ``path`` cannot be written: a file where a folder is meant (or
    the reverse), a file inside its path, or a read-only parent. Nothing is created."""
    if path.exists():
        if path.is_dir() != folder:
            problem = "a file, not a folder: give a folder" if folder else "a folder: give a file name"
            raise MobileVisionError(f"{flag} {path} is {problem}")
        return path
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise MobileVisionError(f"{flag} {path}: {parent} is a file, not a folder: choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MobileVisionError(f"{flag} {path}: {parent} is not writable: choose another path")
    return path


def _write(write: Callable[[], Any], path: Path, note: str = "") -> None:
    """Run ``write`` (which writes ``path``); an OS error (a full disk) becomes one line naming the path."""
    try:
        write()
    except OSError as e:
        raise MobileVisionError(f"cannot write {path}: {os_problem(e)}{note}") from None


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
             imgsz: Optional[int] = typer.Option(None, min=32, max=4096,
                                                 help="Count MACs at this input size instead of the default "
                                                      "(counted now, with torch: a few seconds).")
             ) -> None:
    """List the model zoo: task, parameters (M), MACs (M) at the default input size."""
    from mobilevision.tasks import get_task
    from mobilevision.zoo_table import count, declared

    if task is not None:
        get_task(task)   # an unknown task is an error naming the known ones, not an empty table
    rows = [r for r in declared() if task is None or r["task"] == task]
    table = Table(title="mobilevision model zoo")
    for col in ("model", "task", "params (M)", "MACs (M)", "input"):
        table.add_column(col, justify="right" if col in ("params (M)", "MACs (M)") else "left")
    with err.status("counting MACs (torch.utils.flop_counter)") if imgsz else _no_status() as status:
        for row in rows:
            size, params, macs = tuple(row["input"]), row["params"], row["macs"]
            if imgsz:   # counted now: the declared table holds the cards' own sizes only
                status.update(f"counting {_safe(row['name'])}")
                size = (size[0], imgsz, imgsz)
                params, macs = count(row["name"], size)
            table.add_row(_safe(row["name"]), _safe(row["task"]), f"{params / 1e6:.3f}", f"{macs / 1e6:.1f}",
                          "x".join(map(str, size)))
    out.print(table)


class _no_status:
    """``err.status``'s stand-in when nothing slow happens."""

    def __enter__(self) -> "_no_status":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def update(self, *args: Any) -> None:
        return None


def _trained_model_name(path: Path, weights: Optional[Path]) -> str:
    from mobilevision.checkpoints import read_run_card
    from mobilevision.errors import WeightsError

    if weights is not None:
        raise MobileVisionError(f"give either a checkpoint ({path}) or --weights, not both")
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    run = read_run_card(path)
    if run is None:
        raise WeightsError(f"{path} has no run card ({path.with_suffix('.json').name}): pass the model name "
                           f"and --weights {path}")
    return run.model


def _export_table(results) -> Table:
    from mobilevision.export.api import ExportFailure

    folder = results[0].path.parent if results and hasattr(results[0], "path") else ""
    table = Table(title=f"export summary ({_safe(folder)})")
    for col in ("target", "precision", "artifact", "MB", "parity", "status", "s"):
        table.add_column(col)
    for r in results:
        if isinstance(r, ExportFailure):
            table.add_row(_safe(r.target), _safe(r.precision), "-", "-", _safe(r.error), "[red]FAILED[/red]", "-")
            continue
        size = r.size_bytes / 1e6
        status = "[green]OK[/green]" if r.parity.numeric else "[yellow]OK (structure)[/yellow]"
        if r.warnings:
            status = "[bold yellow]WARN[/bold yellow]"
        parity = _safe(r.parity.summary()) if r.parity.numeric else "interface + ops checked; numbers need macOS"
        table.add_row(_safe(r.target), _safe(r.precision), _safe(r.path.name), f"{size:.2f}", parity, status,
                      f"{r.seconds:.1f}")
    return table


@app.command("export")
def export_cmd(
    model: str = typer.Argument(..., help="Zoo model name (see `mobilevision list`), a training run's weights "
                                          "(RUN_DIR/best.safetensors: classes travel into the metadata), or your "
                                          "own model as a torch.export program (model.pt2, with --task, --mean, "
                                          "--std)."),
    target: list[str] = typer.Option(..., "--target", "-t", help=f"{', '.join(TARGETS)} or all (repeatable)."),
    task: Optional[str] = typer.Option(None, "--task", help="Own model (.pt2): classify, anomaly or landmarks."),
    mean: Optional[str] = typer.Option(None, "--mean", help="Own model: per-channel mean after scaling pixels to "
                                                            "[0, 1], e.g. 0.485,0.456,0.406 (0: none)."),
    std: Optional[str] = typer.Option(None, "--std", help="Own model: per-channel std, e.g. 0.229,0.224,0.225 "
                                                          "(1: none)."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Own classifier: a UTF-8 file, one class name "
                                                                 "per line."),
    dynamic_batch: bool = typer.Option(False, "--dynamic-batch",
                                       help="Artifacts take any batch size (ONNX, OpenVINO, TFLite signatures; "
                                            "ExecuTorch up to 8; checked at two batch sizes); default: batch 1, "
                                            "as phones run."),
    weights: Optional[Path] = typer.Option(None, help="Local checkpoint (.pth/.pt/.safetensors); default: random init."),
    imgsz: Optional[int] = typer.Option(None, min=32, max=4096,
                                        help="Square input size in pixels (default: the model's)."),
    precision: list[str] = typer.Option(["fp32"], "--precision", "-p",
                                        help="fp32, fp16, int8 or bf16 (repeatable). fp16 / bf16 / int8 report "
                                             "the task metric before and after on held-out data; int8 calibrates "
                                             "first; bf16 (openvino only): fp32 weights, checked and run in bf16."),
    out_dir: Path = typer.Option(Path("exports"), "--out", help="Output folder."),
    num_classes: Optional[int] = typer.Option(None, min=2, max=100_000,
                                              help="Classifier size when the weights are fine-tuned."),
    checkpoint_key: Optional[str] = typer.Option(None, help="Entry of a training checkpoint to load (EMO: net or net_E)."),
    bench: bool = typer.Option(False, "--bench", help="Benchmark every runnable artifact afterwards."),
    runs: int = typer.Option(50, min=1, help="Timed runs per artifact for --bench."),
    calib_data: Optional[Path] = typer.Option(None, "--calib-data",
                                              help="int8 calibration images: the task's dataset folder (as for "
                                                   "`train --data`) or a flat folder of images. Default: what the "
                                                   "weights were trained on, else the task's built-in data."),
    calib_n: int = typer.Option(300, "--calib-n", min=1, help="Calibration inputs to use (a warning under 100)."),
    keep_float: list[str] = typer.Option([], "--keep-float",
                                         help="int8: keep this PyTorch module (path prefix, e.g. head or "
                                              "stages.0) in float (repeatable, or comma-separated)."),
    eval_data: Optional[Path] = typer.Option(None, "--eval-data",
                                             help="Held-out data for the metric before/after (the task's dataset "
                                                  "folder). Default: --calib-data's held-out split, the training "
                                                  "data of the weights, else the built-in data."),
    eval_n: int = typer.Option(200, "--eval-n", min=1, help="Held-out inputs for the metric before/after."),
    category: Optional[str] = typer.Option(None, help="Anomaly: the category inside a folder of categories."),
    accuracy: bool = typer.Option(True, "--accuracy/--no-accuracy",
                                  help="Measure the task metric before/after for fp16 / bf16 / int8."),
    speed_check: bool = typer.Option(True, "--speed-check/--no-speed-check",
                                     help="int8: time the artifact against its fp32 program in the runtime and "
                                          "warn when int8 is not faster (a few seconds per artifact)."),
    fail_on_drop: bool = typer.Option(False, "--fail-on-drop",
                                      help="Exit 3 when a quantised artifact loses more than its task's threshold."),
    layout: Optional[str] = typer.Option(None, "--layout",
                                         help="Image input layout, NHWC or NCHW, for targets that write both "
                                              "(TFLite: NHWC by default, as MediaPipe and LiteRT's GPU take it)."),
) -> None:
    """Export a zoo model; each artifact is run in its runtime and compared with PyTorch."""
    from mobilevision.export.api import PRECISIONS, ExportFailure, QuantizeOptions, export_all, resolve_targets
    from mobilevision.export.stages import Notice
    from mobilevision.errors import UnknownTarget

    import mobilevision

    own = Path(model).suffix.lower() == ".pt2"
    if own:   # the user's own model: its card comes from the flags
        from mobilevision.export.own_model import read_labels

        if task is None:
            raise MobileVisionError(f"{Path(model).name} is your own model: give its task with --task "
                                    "(classify, anomaly or landmarks)")
        if weights is not None or num_classes is not None or checkpoint_key is not None:
            raise MobileVisionError("a .pt2 holds its weights: drop --weights / --num-classes / --checkpoint-key")
        own_args = dict(task=task, mean=_floats(mean, "--mean"), std=_floats(std, "--std"),
                        labels=list(read_labels(labels)) if labels is not None else None)
    else:
        if task is not None or mean is not None or std is not None or labels is not None:
            raise MobileVisionError("--task, --mean, --std and --labels describe your own model (a .pt2 from "
                                    "torch.export.save); zoo models carry their own")
        own_args = {}
        if Path(model).suffix in (".safetensors", ".pt", ".pth"):  # a training run's weights
            model, weights = _trained_model_name(Path(model), weights), Path(model)
        mobilevision.get_model_card(model)  # unknown names fail before anything is built
    targets = [t for name in target for t in resolve_targets(name)]
    for p in precision:
        if p not in PRECISIONS:
            raise UnknownTarget(f"unknown precision {p!r}: choose one of {', '.join(PRECISIONS)}")
    if layout is not None and layout.upper() not in ("NCHW", "NHWC"):
        raise MobileVisionError(f"--layout {layout!r} is not a layout: use NHWC or NCHW")
    if layout is not None:
        from mobilevision.export.targets import get_target

        kept = [t for t in dict.fromkeys(targets) if layout.upper() not in getattr(get_target(t), "layouts", ("NCHW",))]
        if kept and len(kept) < len(set(targets)):
            err.print(f"note: --layout {layout.upper()} applies to the targets that write it; "
                      f"{', '.join(kept)} keep their own layout")
    if dynamic_batch:
        from mobilevision.export.targets import get_target

        static = [t for t in dict.fromkeys(targets) if not getattr(get_target(t), "dynamic_batch", False)]
        if static or "int8" in precision:
            err.print(f"note: --dynamic-batch applies to {', '.join(t for t in dict.fromkeys(targets) if t not in static) or 'none of these targets'}"
                      f"{' (not to int8, which is calibrated at batch 1)' if 'int8' in precision else ''}; "
                      f"{', '.join(static) or 'the others'} stay batch 1")
    keep = tuple(dict.fromkeys(k.strip() for item in keep_float for k in item.split(",") if k.strip()))
    if keep and "int8" not in precision:
        raise MobileVisionError("--keep-float applies to --precision int8: add -p int8")
    if (calib_data is not None or calib_n != 300) and "int8" not in precision:
        err.print("note: --calib-data / --calib-n only matter for --precision int8")
    if weights is None and not own:
        err.print("note: no --weights given: exporting randomly initialised weights "
                  "(right for latency and parity, not for predictions)")
    quantize = QuantizeOptions(calib_data=str(calib_data) if calib_data else None, calib_n=calib_n, keep_float=keep,
                               eval_data=str(eval_data) if eval_data else None, eval_n=eval_n, category=category,
                               accuracy=accuracy, speed=speed_check)
    _check_output(out_dir, "--out", folder=True)
    with err.status(f"exporting {_safe(model)}") as status:
        results = export_all(model, list(dict.fromkeys(targets)), precisions=tuple(dict.fromkeys(precision)),
                             weights=str(weights) if weights else None, imgsz=imgsz, out_dir=out_dir,
                             num_classes=num_classes, checkpoint_key=checkpoint_key,
                             on_progress=lambda msg: _progress(status, f"{model}: {msg}", isinstance(msg, Notice)),
                             quantize=quantize,
                             layout=layout.upper() if layout else None, dynamic_batch=dynamic_batch, **own_args)
    out.print(_export_table(results))
    notes = {r.parity.note for r in results if not isinstance(r, ExportFailure) and r.parity.note}
    for note in notes:
        err.print(f"note: {_visible(note)}", markup=False, highlight=False)
    done = [r for r in results if not isinstance(r, ExportFailure)]
    for r in done:
        if r.accuracy is not None:
            out.print(f"{_safe(r.target)} {_safe(r.precision)} accuracy ({_safe(r.accuracy.data)}, "
                      f"{r.accuracy.samples} inputs): {_safe(r.accuracy.summary())}")
        if r.speed is not None:
            out.print(f"{_safe(r.target)} int8 speed: {_safe(r.speed.summary())}")
    for r in done:
        for w in r.warnings:
            err.print(f"[bold yellow]WARNING[/bold yellow] {_safe(r.target)} {_safe(w)}")
    failed = [r for r in results if isinstance(r, ExportFailure)]
    if bench:
        runnable = [str(r.path) for r in results if not isinstance(r, ExportFailure) and r.parity.numeric]
        if runnable:
            _run_bench(runnable, None, None, runs, 5, None)
    if failed:
        for f in failed:
            err.print(f"error: {_visible(f.target)} {_visible(f.precision)}: {_visible(f.error)}", markup=False,
                      highlight=False)
        raise typer.Exit(2)
    if fail_on_drop and any(r.accuracy is not None and r.accuracy.exceeded for r in done):
        err.print("error: a quantised artifact lost more than its task's threshold (--fail-on-drop); "
                  "it was written, see the warnings above")
        raise typer.Exit(3)


def _floats(text: str | None, flag: str) -> tuple[float, ...] | None:
    """'0.485,0.456,0.406' (or spaces) -> floats; one clear line for anything else."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise MobileVisionError(f"{flag} {text!r}: give numbers separated by commas, e.g. {flag} 0.5,0.5,0.5") from None
    if not values:
        raise MobileVisionError(f"{flag} is empty: give one number per channel, e.g. {flag} 0.5,0.5,0.5")
    return values


def _num(value, spec: str = ".2f") -> str:
    """A table cell: the number, or '-' where the tool did not report it (e.g. median on older Android tools)."""
    return "-" if value is None else format(value, spec)


def _delegation_cell(r) -> str:
    """Where an accelerator row ran, as its runtime reports it."""
    on = ", ".join(r.executed_on or []) or "-"
    if r.accelerated is None:
        return f"{on} (coverage not reported)"
    if r.accelerated:
        return f"{on} (whole graph)"
    n = len(r.fallback_ops or [])
    return f"{on} ({n} op{'s' if n != 1 else ''} on CPU)" if n else f"{on} (partial)"


def _backend_cell(r) -> str:
    """The backend, with the precision asked of OpenVINO when it is not ours (f32)."""
    asked = getattr(r, "ov_precision", None)
    return r.backend if asked in (None, "f32") else f"{r.backend} ({asked})"


def _input_cell(r) -> str:
    """The input shape(s) timed, e.g. 1x3x224x224."""
    shapes = getattr(r, "input_shapes", None) or {}
    return ", ".join("x".join(map(str, s)) for s in shapes.values()) or "-"


def _bench_table(rows, title: str = "latency (ms; timed runs interleaved across rows)",
                 delegation: bool = False, inputs: bool = True):
    """One row per BenchResult, then each error row's message in full on its own line (a table cell would
    wrap it into fragments); ``inputs``: with the input shape column (accelerator tables, already wide, show
    it only when --shape set one)."""
    from rich.console import Group
    from rich.text import Text

    table = Table(title=title)
    cols = ("artifact", "backend", "precision") + (("input",) if inputs else ()) + ("threads", "load", "first", "median", "mean", "p90",
            "p99", "min", "max", "std", "FPS", "RSS MB", "GMAC/s") + (("ran on",) if delegation else ())
    ran_on = {id(r): _safe(_delegation_cell(r)) for r in rows if not r.error} if delegation else {}
    names = [Text.from_markup(_safe(Path(r.artifact).name)).cell_len for r in rows]   # as the cell shows it
    backends = [len(_backend_cell(r)) for r in rows]
    for col in cols:   # where each row ran is the point of an accelerator table: the other columns wrap first
        table.add_column(col, justify="left" if col in ("artifact", "backend", "precision", "ran on") else "right",
                         min_width=min(40, max((len(w) for c in ran_on.values() for w in c.split()), default=0))
                         if col == "ran on" else   # wide enough for a device name: wraps between names
                         min(32, max(names, default=0)) if col == "artifact" else
                         min(28, max(backends, default=0)) if col == "backend" else None)
    for r in rows:
        precision = _safe(getattr(r, "precision", None) or "-")
        if r.error:
            table.add_row(_safe(Path(r.artifact).name), _safe(_backend_cell(r)), precision,
                          *([_input_cell(r)] if inputs else []), "-",
                          *["-"] * 11, "[red]error[/red]", *(["-"] if delegation else []))
            continue
        table.add_row(_safe(Path(r.artifact).name), _safe(_backend_cell(r)), precision,
                      *([_input_cell(r)] if inputs else []), str(r.threads or "default"),
                      *(_num(v) for v in (r.load_ms, r.first_ms, r.median_ms, r.mean_ms, r.p90_ms,
                                           getattr(r, "p99_ms", None), r.min_ms, r.max_ms, r.std_ms)),
                      _num(getattr(r, "fps", None), ".1f"), _num(r.peak_rss_mb, ".0f"), f"{r.gmacs_per_s:.1f}" if r.gmacs_per_s else "-",
                      *([ran_on[id(r)]] if delegation else []))
    errors = [Text(_visible(f"{Path(r.artifact).name} {_backend_cell(r)}: {r.error}"), style="red")
              for r in rows if r.error]
    return Group(table, *errors) if errors else table


PROFILE_RUNS = 20   # bench --profile: profiled runs per row (on a separate session, after the timed runs)
BENCH_BLOCK = 10    # bench --block: timed runs per turn (runtime.profile.DEFAULT_BLOCK)
TOP_OPS = 10


def _run_bench(artifacts, backends, threads, runs, warmup, json_path, rewarm: int = 0, ov_precisions=None,
               shapes=None, profile_dir: Optional[Path] = None, streams: int = 1, block: int = BENCH_BLOCK) -> list:
    from mobilevision.runtime.profile import benchmark

    if profile_dir is not None:
        _write(lambda: profile_dir.mkdir(parents=True, exist_ok=True), profile_dir)
    with err.status("benchmarking") as status:
        rows = benchmark(artifacts, backends=backends, threads=threads, runs=runs, warmup=warmup,
                         rewarm=rewarm, on_progress=lambda msg: status.update(_safe(msg)),
                         ov_precisions=ov_precisions, shapes=shapes,
                         profile_runs=PROFILE_RUNS if profile_dir is not None else 0, profile_dir=profile_dir,
                         streams=streams, block=block)
    out.print(_bench_table(rows))
    if streams > 1:
        _print_throughput(rows, streams)
    if profile_dir is not None:
        _print_profiles(rows, profile_dir)
    _write_bench_json(rows, json_path)
    return rows


def _print_throughput(rows, streams: int) -> None:
    """bench --streams: inferences per second with N requests in flight, next to one at a time."""
    table = Table(title=f"throughput with {streams} requests in flight (after the timed runs)")
    for col in ("artifact", "backend", "FPS, 1 request", f"FPS, {streams} streams", "gain", "latency per request ms"):
        table.add_column(col, justify="left" if col in ("artifact", "backend") else "right")
    for r in rows:
        if r.error:
            continue
        if r.throughput_fps is None:
            _say(err, f"{Path(r.artifact).name} {_backend_cell(r)}: no throughput: {r.throughput_error}")
            continue
        table.add_row(_safe(Path(r.artifact).name), _safe(_backend_cell(r)), f"{r.fps:.1f}", f"{r.throughput_fps:.1f}",
                      f"{r.throughput_fps / r.fps:.2f}x", f"{r.stream_latency_ms:.2f}")
    out.print(table)


def _print_comparison(rows, path: Path, baseline: Optional[str]) -> None:
    """bench --compare: each row against the baseline, and the chart."""
    from mobilevision.runtime.compare import chart, compare

    base, rows_vs = compare(rows, baseline)
    table = Table(title=f"vs {_safe(base)} (one interleaved run; ratio = median / baseline median)")
    for col in ("row", "precision", "median ms", "p90 ms", "ratio", "speed-up", "p90 ratio"):
        table.add_column(col, justify="left" if col in ("row", "precision") else "right")
    for c in rows_vs:
        table.add_row(_safe(c.label), _safe(c.precision or "-"), f"{c.median_ms:.2f}", f"{c.p90_ms:.2f}",
                      f"{c.ratio:.2f}", f"{c.speedup:.2f}x", f"{c.p90_ratio:.2f}")
    out.print(table)
    host = platform.node()
    _write(lambda: chart(base, rows_vs, path, f"bench --compare on {host}: medians of one interleaved run"), path)
    _say(err, f"wrote {path}")


def _print_profiles(rows, folder: Path) -> None:
    """Each row's slowest ops (the runtime's own profiler), and its whole profile as JSON in ``folder``."""
    from mobilevision.atomic_io import atomic_write_text

    for r in rows:
        name = f"{Path(r.artifact).name} {_backend_cell(r)}"
        if r.error:
            continue
        if not r.op_profile:
            _say(err, f"{name}: no per-op profile: {r.profile_error}")
            continue
        prof = r.op_profile
        table = Table(title=f"{_safe(name)}: slowest ops ({prof['runtime']} profiler, mean of {prof['runs']} runs; "
                            f"ops sum {prof['total_ms']:.2f} ms, median latency {r.median_ms:.2f} ms)")
        for col in ("op", "type", "kernel", "ms", "share"):
            table.add_column(col, justify="right" if col in ("ms", "share") else "left")
        total = prof["total_ms"] or 1.0
        for op in prof["ops"][:TOP_OPS]:
            table.add_row(_safe(op["name"][-60:]), _safe(op["op_type"]), _safe(op["kernel"] or "-"),
                          f"{op['ms']:.3f}", f"{100 * op['ms'] / total:.1f} %")
        out.print(table)
        types = ", ".join(f"{_safe(t['op_type'])} {100 * t['ms'] / total:.0f} %" for t in prof["by_type"][:6])
        _say(out, f"by op type: {types}")
        stem = f"{Path(r.artifact).name}_{r.backend}" + (f"_{r.ov_precision}" if r.ov_precision else "")
        path = folder / f"{stem}.ops.json"
        _write(lambda: atomic_write_text(path, json.dumps(prof, indent=2) + "\n"), path)
    _say(err, f"wrote the per-op profiles to {folder}")


def _write_bench_json(rows, json_path: Optional[Path]) -> None:
    from mobilevision.runtime.profile import write_json

    if json_path:
        _write(lambda: write_json(rows, json_path), json_path, "; the table above has the results")
        err.print(f"wrote {_visible(json_path)}", markup=False, highlight=False)


@app.command("bench")
def bench_cmd(
    artifacts: list[Path] = typer.Argument(..., help=f"Exported artifacts ({', '.join(SUFFIX_BACKENDS)})."),
    backend: Optional[list[str]] = typer.Option(None, "--backend", "-b",
                                                help=f"{', '.join(_BACKENDS)} (repeatable); "
                                                     "default: each artifact's own runtime."),
    threads: Optional[int] = typer.Option(None, min=1, max=1024,
                                          help="CPU threads per backend (default: the runtime's)."),
    runs: int = typer.Option(50, min=1, help="Timed runs per artifact x backend."),
    warmup: int = typer.Option(5, min=0, help="Untimed runs after the first inference."),
    rewarm: int = typer.Option(0, min=0, help="Untimed runs at the start of each row's turn, before its timed runs."),
    block: int = typer.Option(BENCH_BLOCK, min=1, help="Timed runs per turn, back to back (as litert-benchmark and "
                                                       "benchmark_app time them); the rows take turns."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the rows as JSON."),
    streams: int = typer.Option(1, min=1, max=64, help="Also measure throughput with N requests in flight after the "
                                                       "timed runs (OpenVINO THROUGHPUT hint with N streams, ONNX "
                                                       "Runtime N sessions, others N threads)."),
    compare: Optional[Path] = typer.Option(None, "--compare",
                                           help="Also print every row as a ratio to a baseline row (same run) and "
                                                "draw the medians as a PNG chart to this file."),
    baseline: Optional[str] = typer.Option(None, "--baseline",
                                           help="--compare's baseline row: 'ARTIFACT · BACKEND' or a prefix of it "
                                                "(default: the first row)."),
    profile: Optional[Path] = typer.Option(None, "--profile",
                                           help="Also run each runtime's own per-op profiler (ONNX Runtime, "
                                                "OpenVINO) after the timed runs; print the slowest ops and write "
                                                "the profiles to this folder."),
    ov_precision: Optional[list[str]] = typer.Option(None, "--ov-precision",
                                                     help="OpenVINO rows: f32 (default; ours), default (no hint: the "
                                                          "plugin's own choice, bf16 on bf16/AMX CPUs, as "
                                                          "benchmark_app) or bf16; repeatable, one row each."),
    shape: Optional[list[str]] = typer.Option(None, "--shape",
                                              help="NAME=1x3x224x224: the shape to time for an input with dynamic "
                                                   "dimensions (repeatable)."),
    device: str = typer.Option("cpu", "--device", help="cpu (this machine), gpu / npu (this machine's accelerator, "
                                                      "through every runtime that has one here), or android[:SERIAL] "
                                                      "(a phone over adb: .tflite with LiteRT's benchmark_model)."),
    npu_soc: Optional[str] = typer.Option(None, "--npu-soc",
                                          help="NPU: compile the .tflite ahead of time for a phone SoC "
                                               "(qualcomm:SM8650, mediatek:MT6989, google:Tensor_G4) with LiteRT's "
                                               "AOT compiler and the vendor SDK; writes <name>_<target>.tflite "
                                               "beside it, to run with --device android --use-npu."),
    android_binary: Optional[str] = typer.Option(None, "--android-binary",
                                                 help="Android: benchmark_model as a file here (pushed and made "
                                                      "executable) or a path on the phone; default: found there."),
    taskset: Optional[str] = typer.Option(None, help="Android: pin to these cores (hex mask, e.g. f0 = big cores)."),
    use_gpu: bool = typer.Option(False, "--use-gpu", help="Android: the LiteRT GPU delegate."),
    use_nnapi: bool = typer.Option(False, "--use-nnapi", help="Android: the NNAPI delegate (TFLite benchmark_model)."),
    use_npu: bool = typer.Option(False, "--use-npu", help="Android: the LiteRT NPU accelerator (LiteRT "
                                                          "CompiledModel benchmark_model)."),
    nnapi_accelerator: Optional[str] = typer.Option(None, "--nnapi-accelerator",
                                                    help="Android: NNAPI device name (e.g. qti-htp)."),
    android_arg: Optional[list[str]] = typer.Option(None, "--android-arg",
                                                    help="Android: extra benchmark_model flag, repeatable "
                                                         "(e.g. --android-arg=--use_hexagon=true)."),
) -> None:
    """Measure latency: load, first inference, median/mean/p90/min/max/std, peak RSS, GMAC/s."""
    from mobilevision.errors import MobileVisionError as _E
    from mobilevision.runtime.devices import parse_device

    from mobilevision.runtime.profile import parse_shapes

    target = parse_device(device)
    shapes = parse_shapes(shape or [])
    if json_path is not None:
        _check_output(json_path, "--json", folder=False)
    if compare is not None:
        _check_output(compare, "--compare", folder=False)
        if compare.suffix.lower() != ".png":
            raise _E(f"--compare {compare}: the chart is a PNG; give a file name ending in .png")
    elif baseline is not None:
        raise _E("--baseline applies to --compare")
    if profile is not None:
        _check_output(profile, "--profile", folder=True)
    for flag, used in (("--profile", profile is not None), ("--streams", streams > 1)):
        if used and target.kind != "cpu":
            raise _E(f"{flag} applies to --device cpu")
    android_only = {"--android-binary": android_binary, "--taskset": taskset, "--use-gpu": use_gpu,
                    "--use-nnapi": use_nnapi, "--use-npu": use_npu, "--nnapi-accelerator": nnapi_accelerator,
                    "--android-arg": android_arg}
    if npu_soc and target.kind != "npu":
        raise _E("--npu-soc applies to --device npu only")
    if target.kind in ("cpu", "gpu", "npu"):
        given = [name for name, value in android_only.items() if value]
        if given:
            raise _E(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to --device android only")
    if target.kind == "cpu":
        rows = _run_bench([str(a) for a in artifacts], backend or None, threads, runs, warmup, json_path, rewarm,
                          ov_precision or None, shapes or None, profile, streams, block)
    elif npu_soc:
        if backend:
            raise _E("--backend does not apply to --npu-soc: LiteRT's AOT compiler compiles the .tflite")
        _run_npu_aot([str(a) for a in artifacts], npu_soc)
        return
    elif target.kind in ("gpu", "npu"):
        rows = _run_accelerated_bench([str(a) for a in artifacts], target.kind, backend or None, threads, runs,
                                      warmup, rewarm, json_path, ov_precision or None, shapes or None, block)
    else:
        from mobilevision.runtime.devices.android import AndroidBenchOptions

        if ov_precision or shape:
            raise _E(f"{'--ov-precision' if ov_precision else '--shape'} applies to --device cpu, gpu or npu; on a "
                     "phone LiteRT's benchmark_model runs the .tflite")
        if backend:
            raise _E("--backend applies to --device cpu; on a phone LiteRT's benchmark_model runs the .tflite "
                     "(--use-gpu / --use-nnapi / --use-npu pick its accelerator)")
        accelerators = [name for name, on in (("gpu", use_gpu), ("nnapi", use_nnapi), ("npu", use_npu)) if on]
        if len(accelerators) > 1:
            raise _E("choose one of --use-gpu, --use-nnapi, --use-npu")
        options = AndroidBenchOptions(serial=target.serial, binary=android_binary,
                                      accelerator=(accelerators or ["cpu"])[0], threads=threads, runs=runs,
                                      warmup=warmup, taskset=taskset, nnapi_accelerator=nnapi_accelerator,
                                      extra_args=tuple(android_arg or ()))
        rows = _run_android_bench([str(a) for a in artifacts], options, json_path)
    if compare is not None:
        _print_comparison(rows, compare, baseline)
    if all(r.error for r in rows):
        raise typer.Exit(2)


def _run_accelerated_bench(artifacts, device, backends, threads, runs, warmup, rewarm, json_path,
                           ov_precisions=None, shapes=None, block: int = BENCH_BLOCK) -> list:
    """GPU/NPU rows from every runtime with that accelerator here; one line per runtime without."""
    from mobilevision.runtime.devices.accelerators import plan_accelerated
    from mobilevision.runtime.profile import benchmark

    name = device.upper()
    with err.status(f"looking for a {name}"):
        pairs, unavailable = plan_accelerated(artifacts, device, backends)
    for av in unavailable:
        err.print(_visible(av.line()), markup=False, highlight=False, soft_wrap=True)
    if not pairs:
        files = ", ".join(Path(a).name for a in artifacts)
        article = "an" if device == "npu" else "a"
        raise MobileVisionError(f"nothing ran: no runtime here can run {files} on {article} {name} (reasons above)")
    with err.status(f"benchmarking on the {name}") as status:
        rows = benchmark([], threads=threads, runs=runs, warmup=warmup, rewarm=rewarm, pairs=pairs, device=device,
                         on_progress=lambda msg: status.update(_safe(msg)), ov_precisions=ov_precisions,
                         shapes=shapes, block=block)
    out.print(_bench_table(rows, title=f"latency on the {name} (ms; timed runs interleaved across rows)",
                           delegation=True, inputs=bool(shapes)))
    for r in rows:
        if not r.error and r.accelerated is False:
            ops = r.fallback_ops or []
            shown = ", ".join(ops[:6]) + (f" and {len(ops) - 6} more" if len(ops) > 6 else "")
            err.print(_visible(f"warning: {Path(r.artifact).name} {r.backend}: part of the graph ran on the CPU"
                               f"{f' ({shown})' if shown else ''}: not a pure {name} number"),
                      markup=False, highlight=False, soft_wrap=True)
    _write_bench_json(rows, json_path)
    return rows


def _run_npu_aot(artifacts, spec) -> None:
    """Compile each .tflite ahead of time for a phone NPU and say how to measure it there."""
    from mobilevision.export.npu import compile_for_npu, parse_npu_soc

    target = parse_npu_soc(spec)
    for a in artifacts:
        with err.status(_safe(f"compiling {Path(a).name} for {target.target_id}")):
            done = compile_for_npu(a, target)
        share = "all" if done.fully_offloaded else f"{done.ops_offloaded} of {done.ops_total}"
        out.print(_visible(f"{Path(a).name} -> {done.path}: {share} ops on the {target.vendor.name} NPU in "
                           f"{done.partitions} partition(s); measure it on {target.vendor.hardware}: "
                           f"mobilevision bench {done.path} --device android --use-npu"), markup=False, highlight=False)
        if not done.fully_offloaded:
            err.print(_visible(f"warning: {done.ops_total - done.ops_offloaded} ops of {Path(a).name} stay on the "
                               "phone's CPU"), markup=False, highlight=False)


def _run_android_bench(artifacts, options, json_path) -> list:
    from mobilevision.runtime.devices.android import benchmark_android

    with err.status("benchmarking on Android") as status:
        rows = benchmark_android(artifacts, options, on_progress=lambda msg: status.update(_safe(msg)))
    out.print(_bench_table(rows, title="latency on Android (ms; benchmark_model's timed runs)"))
    for r in rows:
        if r.warning:
            err.print(_visible(f"warning: {Path(r.artifact).name}: {r.warning}"), markup=False, highlight=False,
                      soft_wrap=True)
    _write_bench_json(rows, json_path)
    return rows


@app.command("crosscheck")
def crosscheck_cmd(
    artifacts: list[Path] = typer.Argument(..., help=".tflite (litert-benchmark) and OpenVINO .xml (benchmark_app) "
                                                     "files."),
    out_dir: Path = typer.Option(Path("crosscheck"), "--out", "-o", help="Folder for crosscheck.json and .md."),
    threads: int = typer.Option(2, min=1, max=1024, help="CPU threads, ours and the tools'."),
    runs: int = typer.Option(100, min=1, help="Timed runs per measurement."),
    warmup: int = typer.Option(10, min=0, help="Untimed runs before timing."),
    rounds: int = typer.Option(3, min=1, help="Interleaved rounds (ours, then each tool; the order alternates)."),
    rewarm: int = typer.Option(0, min=0, help="Our runner's untimed runs at the start of each turn (as in bench)."),
    block: int = typer.Option(BENCH_BLOCK, min=1, help="Our runner's timed runs per turn, back to back (as in bench)."),
) -> None:
    """Check `bench` against the runtimes' own tools: same artifact, threads and precision, interleaved rounds;
    our median must be within ±10 % of litert-benchmark's / benchmark_app's (exit 1 when not)."""
    from mobilevision.runtime.crosscheck import BAND, check_artifacts, crosscheck

    paths = check_artifacts(artifacts)
    _check_output(out_dir, "--out", folder=True)
    with err.status("cross-checking") as status:
        report, code = crosscheck(paths, out_dir, threads=threads, runs=runs, warmup=warmup, rounds=rounds,
                                  rewarm=rewarm, block=block, on_progress=lambda msg: status.update(_safe(msg)))
    table = Table(title=f"bench vs the runtimes' own tools ({threads} threads, median of {rounds} rounds)")
    for col in ("artifact", "tool", "asked", "computed (ours / tool)", "ours ms", "tool ms", "ratio",
                f"within ±{BAND:.0%}"):
        table.add_column(col, justify="right" if col.endswith(("ms", "ratio")) else "left")
    for r in report["pairs"]:
        computed = f"{r.get('ours_precision') or '-'} / {r.get('tool_precision') or '-'}"
        if r["error"]:
            table.add_row(_safe(r["artifact"]), r["tool"], r.get("ov_precision") or "-", computed, "-", "-", "-",
                          "[red]error[/red]")
        else:
            table.add_row(_safe(r["artifact"]), r["tool"], r.get("ov_precision") or "-", computed,
                          f"{r['ours_median_ms']:.2f}", f"{r['tool_median_ms']:.2f}", f"{r['ratio']:.2f}",
                          "yes" if r["within_band"] else "[red]NO[/red]")
    out.print(table)
    for r in report["pairs"]:
        if r["error"]:
            _say(err, f"{r['artifact']} {r['tool']}: {r['error']}")
    _say(err, f"wrote {out_dir / 'crosscheck.json'} and {out_dir / 'crosscheck.md'}")
    if code:
        raise typer.Exit(code)


@app.command("info")
def info_cmd(artifact: Path = typer.Argument(..., help="An exported artifact."),
             as_json: bool = typer.Option(False, "--json", help="Print the whole metadata record as JSON.")) -> None:
    """Summarise an artifact: task, inputs and outputs, preprocessing, classes, precision, parity, quantisation,
    tools, and the SHA-256 of its files checked against its sidecar (``integrity``). ``--json``: the raw record."""
    import json

    from mobilevision.runtime import load
    from mobilevision.errors import BackendUnavailable
    from mobilevision.export.integrity import verify_artifact
    from mobilevision.export.metadata import read_sidecar
    from mobilevision.export.summary import summary_rows

    try:
        with load(artifact) as model:
            md, integrity = model.metadata, model.integrity
    except BackendUnavailable:   # e.g. a .mlpackage off macOS: the files are still checked
        integrity = verify_artifact(artifact)
        md = read_sidecar(artifact)
    if md is None:
        raise MobileVisionError(f"{artifact} carries no mobilevision metadata")
    checked = {"sha256": integrity.verified} if integrity.verified else {"not_verified": integrity.note}
    if as_json:
        print_json(out, json.dumps({**json.loads(md.to_json()), "integrity": checked}))
        return
    try:
        size = (sum(f.stat().st_size for f in artifact.rglob("*") if f.is_file()) if artifact.is_dir()
                else artifact.stat().st_size)
    except OSError:
        size = None
    table = Table(title=_safe(artifact.name), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for field, value in summary_rows(md, checked, size):
        table.add_row(field, _safe(value))
    out.print(table)
    out.print("all fields: mobilevision info --json " + _safe(str(artifact)), highlight=False)


_IMAGES_HELP = "An image file; several files or folders (every image below them) give one row per image."
_OUT_HELP = ("Several images: write the rows to this .csv, .json or .jsonl file (default: CSV on stdout). One image: "
             "also a row file instead of the printout.")


def _batch_mode(images: list[Path], rows_out: Optional[Path]) -> bool:
    """One row per image (CSV / JSON) instead of the one-image printout: several inputs, a folder, or --out."""
    return rows_out is not None or len(images) > 1 or any(p.is_dir() for p in images)


def _run_batch(model: Any, task: str, images: list[Path], options: dict[str, Any], rows_out: Optional[Path],
               overlays: Optional[Path] = None, draw: Optional[Callable[[Path, Any, Path], None]] = None) -> int:
    """The model over every image (``Model.predict_each``) with a progress bar: one row per image (the task's
    ``row`` plus ``image`` and ``error``) to ``rows_out`` (atomic) or stdout as CSV, and with ``overlays`` a
    picture per image drawn by ``draw``. Exit code 0, or 1 when some images failed (their rows say why)."""
    from mobilevision.atomic_io import atomic_write_text
    from mobilevision.runtime.batch import expand_images, row_format, rows_text, task_runtime

    model._require_task(task)
    fmt = row_format(rows_out) if rows_out is not None else ".csv"
    if rows_out is not None:
        _check_output(rows_out, "--out", folder=False)
    if overlays is not None:
        _check_output(overlays, "--overlays", folder=True)
    found = expand_images(images)
    task = task_runtime(model)
    # part.png -> part.png, part.jpg -> part.jpg.png: two images never share an overlay
    pictures = ({path: overlays / (name if name.lower().endswith(".png") else f"{name}.png") for path, name in found}
                if overlays is not None else {})
    inputs = {path.resolve() for path, _ in found}
    clash = next((p for p in pictures.values() if p.resolve() in inputs), None)
    if clash is not None:
        raise MobileVisionError(f"--overlays {overlays}: the overlay {clash} would replace an input image; "
                                "give a folder outside the images")
    rows, failed, written = [], 0, []
    try:
        failed = _batch_rows(model, task, found, options, pictures, draw, rows, written)
    except BaseException:   # the run stopped (a model problem, Ctrl-C): no overlay of it stays behind
        for picture in written:
            picture.unlink(missing_ok=True)
        raise
    text = rows_text(rows, fmt)
    if rows_out is not None:
        _write(lambda: atomic_write_text(rows_out, text), rows_out)
        _say(err, f"wrote {len(rows)} rows to {rows_out}" + (f" and {len(written)} overlays to {overlays}"
                                                             if overlays is not None else ""))
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    if failed:
        _say(err, f"{failed} of {len(rows)} images failed: their rows hold the reason (error column)")
        return 1
    return 0


def _batch_rows(model: Any, task: Any, found: list, options: dict[str, Any], pictures: dict, draw: Any,
                rows: list, written: list) -> int:
    """Fill ``rows`` (and ``written``: the overlays drawn) from the model over ``found``; the failed count."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    failed = 0
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err, transient=True) as progress:
        bar = progress.add_task(_safe(model.metadata.task), total=len(found))
        for (path, name), item in zip(found, model.predict_each([p for p, _ in found], **options)):
            row: dict[str, Any] = {"image": name}
            if item.ok:
                row.update(task.row(item.result))
                if pictures and draw is not None:
                    picture = pictures[path]
                    _write(lambda: draw(path, item.result, picture), picture)
                    written.append(picture)
                    row["overlay"] = str(picture)
            else:
                failed += 1
            row["error"] = item.error
            rows.append(row)
            progress.advance(bar)
    return failed


def _random_weights_note(model: Any) -> None:
    from mobilevision.export.summary import random_weights

    if model.metadata is not None and random_weights(model.metadata):
        _say(err, f"note: {model.metadata.model} was exported with random weights: these results carry no meaning "
                  "(export with --weights for a trained model)")


@app.command("classify")
def classify_cmd(artifact: Path = typer.Argument(..., help="An exported classifier."),
                 images: list[Path] = typer.Argument(..., help=_IMAGES_HELP),
                 top_k: int = typer.Option(5, min=1, help="How many classes to print."),
                 rows_out: Optional[Path] = typer.Option(None, "--out", help=_OUT_HELP),
                 backend: Optional[str] = typer.Option(None, help="Runtime (default: the artifact's own).")) -> None:
    """Classify images with an exported model, using the preprocessing in its metadata."""
    from mobilevision.runtime import load

    with load(artifact, backend=backend) as model:
        _random_weights_note(model)
        if _batch_mode(images, rows_out):
            raise typer.Exit(_run_batch(model, "classify", images, {"top_k": top_k}, rows_out))
        classes = model.classify(images[0], top_k=top_k)
        out.print(f"{'score':>7}  {'class':>5}  label", markup=False, highlight=False)
        for c in classes:
            out.print(f"{c.score:7.4f}  {c.index:5d}  {_visible(c.label)}", markup=False, highlight=False)


@app.command("landmarks")
def landmarks_cmd(artifact: Path = typer.Argument(..., help="An exported landmark model."),
                  images: list[Path] = typer.Argument(..., help=_IMAGES_HELP),
                  box: Optional[str] = typer.Option(None, help="Face box x0,y0,x1,y1 in image pixels (default: the "
                                                               "whole image, stretched to the model input)."),
                  output: Optional[Path] = typer.Option(None, "-o", "--output",
                                                        help="One image: write an overlay PNG/JPEG (points and box)."),
                  overlays: Optional[Path] = typer.Option(None, "--overlays",
                                                          help="Several images: write an overlay PNG per image here."),
                  rows_out: Optional[Path] = typer.Option(None, "--out", help=_OUT_HELP),
                  backend: Optional[str] = typer.Option(None, help="Runtime (default: the artifact's own).")) -> None:
    """Detect facial landmarks in face crops with an exported model; one image prints one "x y" line per point."""
    from mobilevision.runtime import load
    from mobilevision.runtime.tasks.landmarks import write_overlay

    batch = _batch_mode(images, rows_out)
    if output is not None and batch:
        raise MobileVisionError("-o/--output draws one image: with several images use --overlays FOLDER")
    if output is not None and output.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise MobileVisionError(f"--output {output}: use a .png or .jpg file name")
    coords = None
    if box is not None:
        try:
            coords = [float(v) for v in box.split(",")]
        except ValueError:
            raise MobileVisionError(f"--box {box!r}: give four numbers x0,y0,x1,y1") from None
    if output is not None:
        _check_output(output, "--output", folder=False)
    with load(artifact, backend=backend) as model:
        _random_weights_note(model)
        if batch:
            raise typer.Exit(_run_batch(model, "landmarks", images, {"box": coords}, rows_out, overlays,
                                        lambda path, points, picture: write_overlay(path, points, picture, coords)))
        points = model.detect_landmarks(images[0], box=coords)
    for x, y in points:
        _say(out, f"{x:.2f} {y:.2f}")
    if output is not None:
        _write(lambda: write_overlay(images[0], points, output, coords), output)
        err.print(f"wrote {_visible(output)}", markup=False, highlight=False)


@app.command("anomaly")
def anomaly_cmd(artifact: Path = typer.Argument(..., help="An exported anomaly detector."),
                images: list[Path] = typer.Argument(..., help=_IMAGES_HELP),
                threshold: Optional[float] = typer.Option(None, callback=_bounded(),
                                                          help="Score above which the image is anomalous "
                                                               "(default: the F1-optimal threshold the artifact "
                                                               "carries from training, if any)."),
                output: Optional[Path] = typer.Option(None, "-o", "--output",
                                                      help="One image: write the heatmap over it (PNG/JPEG)."),
                overlays: Optional[Path] = typer.Option(None, "--overlays",
                                                        help="Several images: write a heatmap overlay PNG per image "
                                                             "here."),
                heat_range: tuple[float, float] = typer.Option((0.0, 0.2), "--range", callback=_bounded(),
                                                               help="Map values drawn blue .. red."),
                rows_out: Optional[Path] = typer.Option(None, "--out", help=_OUT_HELP),
                backend: Optional[str] = typer.Option(None, help="Runtime (default: the artifact's own).")) -> None:
    """Score images with an exported anomaly detector; optionally write heatmap overlays."""
    from mobilevision.runtime import load
    from mobilevision.runtime.tasks.anomaly import write_overlay
    from mobilevision.runtime.tasks.classify import as_rgb_image

    batch = _batch_mode(images, rows_out)
    if output is not None and batch:
        raise MobileVisionError("-o/--output draws one image: with several images use --overlays FOLDER")
    if output is not None and output.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise MobileVisionError(f"--output {output}: use a .png or .jpg file name")
    if not heat_range[1] > heat_range[0]:
        raise MobileVisionError(f"--range {heat_range[0]} {heat_range[1]}: the second value must exceed the first")
    if output is not None:
        _check_output(output, "--output", folder=False)
    with load(artifact, backend=backend) as model:
        _random_weights_note(model)
        if batch:
            raise typer.Exit(_run_batch(model, "anomaly", images, {"threshold": threshold}, rows_out, overlays,
                                        lambda path, r, picture: write_overlay(path, r, picture, heat_range)))
        image = as_rgb_image(images[0])          # read once: scored and drawn on
        r = model.detect_anomaly(image, threshold=threshold)
    if r.is_anomalous is None:
        verdict = "  (no threshold: give --threshold, or export a detector trained here, which carries one)"
    else:
        verdict = (f"  {'anomalous' if r.is_anomalous else 'normal'} (threshold {r.threshold:.4g}"
                   f"{'' if threshold is not None else ', from the artifact'})")
    _say(out, f"score {r.score:.4f}{verdict}")
    if output is not None:
        _write(lambda: write_overlay(image, r, output, heat_range), output)
        err.print(f"wrote {_visible(output)}", markup=False, highlight=False)


@app.command("isp")
def isp_cmd(
    photo: Path = typer.Argument(..., help="Camera RAW file (.dng, .nef, .cr2, .arw, ...; 2x2 Bayer sensors)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output image (.png, .jpg or .tif)."),
    model: str = typer.Option("efficientisp", help="ISP model: efficientisp, robustisp or rmfa_net_tiny."),
    weights: Optional[Path] = typer.Option(None, help="Local generator weights (the paper's released .pth files "
                                                      "or a `mobilevision train isp` run). Default: random init."),
    tile: int = typer.Option(512, help="Tile side in packed pixels (memory bound); 0 = the whole image at once."),
    clip: bool = typer.Option(False, "--clip", help="Clip normalised RAW values at 0 (below-black noise)."),
    device: str = _TORCH_DEVICE_OPTION,
) -> None:
    """Render a camera RAW photo to RGB with a learned ISP (mosaic, CFA pattern and levels read by LibRaw)."""
    from mobilevision.data.raw import check_isp_request, read_raw

    check_isp_request(photo, output, model, tile, weights, device)  # torch-free: bad arguments fail in ms
    raw = read_raw(photo)  # and a truncated or stub RAW before torch loads
    from mobilevision.tasks.isp import process_raw_file

    if weights is None:
        _say(err, f"note: no --weights, {model} has random weights (the output shows the pipeline, not a "
                  "trained ISP)")
    with err.status("rendering"):
        r = process_raw_file(raw, output, model=model, weights=str(weights) if weights else None, tile=tile,
                             clip=clip, device=device)
    h, w = r.rgb.shape[:2]
    _say(out, f"wrote {output} ({w}x{h}, {r.pattern}, black {'/'.join(f'{b:g}' for b in r.black_level)}, "
              f"white {r.white_level:g}, {r.tiles} tile{'s' if r.tiles != 1 else ''})")


@app.command("serve-demo")
def serve_demo_cmd(
    models: Path = typer.Argument(..., help="A folder of exported .onnx / .tflite models (what `mobilevision export` "
                                           "wrote)."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port to listen on (0: any free port)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 lets a phone on the LAN open it)."),
) -> None:
    """Serve the web runtime's demo page and MODELS on http://HOST:PORT (Ctrl-C stops): run the four tasks
    in the browser (onnxruntime-web for .onnx, LiteRT.js for .tflite), with overlays and a benchmark panel."""
    from mobilevision.runtime.web_server import WebServer, default_mounts, model_index

    server = WebServer(default_mounts(models), host=host, port=port, quiet=False)
    count = len(model_index(models))
    _say(out, f"serving {count} model{'s' if count != 1 else ''} from {models} at {server.url}/demo/ "
              "(Ctrl-C stops)")
    if count == 0:
        _say(err, f"note: {models} holds no .onnx or .tflite file: export one with `mobilevision export MODEL "
                  f"-t onnx -o {models}`")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


train_app = typer.Typer(no_args_is_help=True, help="Train a model (one engine for every task).")
eval_app = typer.Typer(no_args_is_help=True, help="Evaluate trained weights.")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")


def _run_dir(out_dir: Optional[Path], model: str, resume: bool, task: str = "classify") -> Path:
    """--out, or runs/<task>/<model>[-N]: a new run never lands in a folder holding another run;
    --resume without --out continues the newest of them."""
    from mobilevision.train.checkpoint import has_state

    if out_dir is not None:
        return out_dir
    base = Path("runs") / task / model
    runs = [p for p in [base, *base.parent.glob(f"{model}-*")] if has_state(p)]
    if resume:
        if not runs:
            raise MobileVisionError(f"nothing to resume: no run of {model} under {base.parent} (pass --out RUN_DIR)")
        return max(runs, key=lambda p: (p / "last.state.pt").stat().st_mtime)
    n = 1
    while has_state(base if n == 1 else base.with_name(f"{model}-{n}")):
        n += 1
    return base if n == 1 else base.with_name(f"{model}-{n}")


RESUME_HELP = ("Continue the run in --out from its last finished epoch, with the run's saved settings: "
               "only --epochs (to extend it), --workers and --device may change; any other option given with "
               "a value unlike the run's is refused, naming both.")
_RESUME_APPLIES = ("epochs", "workers", "device", "resume", "out_dir")
_SAVED_AS = {"bias_norm": ("bias_normalisation",), "imgsz": ("imgsz", "size")}


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` was given (command line or environment), not left at its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT")


def _same(value: Any, kept: Any) -> bool:
    if isinstance(value, Path) and isinstance(kept, str):
        return value == Path(kept)
    if isinstance(value, str) and isinstance(kept, list):  # --kd-from A,B
        return [v.strip() for v in value.split(",") if v.strip()] == kept
    if isinstance(value, (tuple, list)) and isinstance(kept, (tuple, list)):
        return list(value) == list(kept)
    if isinstance(value, float) and isinstance(kept, (int, float)) and not isinstance(kept, bool):
        return math.isclose(value, kept, rel_tol=1e-9)
    return value == kept


def _spelled(param, value: Any) -> str:
    """An option as a user types it: ``--lr 0.5``, ``--no-augment``, ``--lr default`` for None."""
    if isinstance(value, bool):
        names = param.opts if value or not param.secondary_opts else param.secondary_opts
        return max(names, key=len) if value or param.secondary_opts else f"no {max(param.opts, key=len)}"
    return f"{max(param.opts, key=len)} {'default' if value is None else value}"


def _refuse_changes(ctx: typer.Context, run_dir: Path, saved: dict[str, Any]) -> None:
    """--resume keeps the run's recipe: an option given with another value than the run's is an error."""
    changed = []
    for param in ctx.command.params:
        if param.name in _RESUME_APPLIES or not _given(ctx, param.name):
            continue
        value = ctx.params[param.name]
        key = next((k for k in _SAVED_AS.get(param.name, (param.name,)) if k in saved), None)
        if key is None:
            changed.append(_spelled(param, value))
        elif not _same(value, saved[key]):
            changed.append(f"{_spelled(param, value)} (the run has {_spelled(param, saved[key])})")
    if changed:
        one = len(changed) == 1
        raise MobileVisionError(f"--resume keeps the saved settings of {run_dir}, but {'; '.join(changed)} "
                                f"{'was' if one else 'were'} given: drop {'it' if one else 'them'}, or start a new "
                                "run with another --out (with --resume only --epochs, --workers and --device change)")


def _run_setup(ctx: typer.Context, resume: bool, out_dir: Optional[Path], model: str, task: str, options_cls,
               fresh: Callable[[], tuple[Any, Any]], epochs: Optional[int] = None):
    """(options, TrainConfig, run_dir): ``fresh()`` -> (options, config) for a new run; for --resume the saved
    ones, where only --epochs (extend), --workers and --device may change (``RESUME_HELP``). A new run's
    folder is checked here, before any data is read."""
    from mobilevision.errors import TrainingError
    from mobilevision.train import TrainConfig
    from mobilevision.train.checkpoint import load_state

    if not resume:
        options, config = fresh()
        return options, config, _check_output(_run_dir(out_dir, model, False, task), "--out", folder=True)
    run_dir = _run_dir(out_dir, model, True, task)
    state = load_state(run_dir)
    _refuse_changes(ctx, run_dir, {**state["config"], **state["task"]["options"]})
    options, config = options_cls(**state["task"]["options"]), TrainConfig.from_dict(state["config"])
    done = int(state["epoch"])
    finished = f"{run_dir} has already finished {done} epoch{'s' if done != 1 else ''}"
    if epochs is not None:
        if epochs <= done:
            raise TrainingError(f"--epochs {epochs}: {finished}; give more --epochs to extend it")
        config.epochs = epochs
    elif done >= config.epochs:  # nothing to train: say so, rather than seem to resume
        _say(err, f"note: {finished} of {config.epochs}, so there is nothing to train; " + (
            f"extend it with --epochs above {done}" if "epochs" in ctx.params
            else "start a longer run with another --out"))
    for name in ("workers", "device"):
        if _given(ctx, name):
            setattr(config, name, ctx.params[name])
    return options, config, run_dir


def _fit(task, config, run_dir: Path, resume: bool, command: str):
    """The engine's fit; Ctrl-C says where the finished epochs are and how to continue (exit 130)."""
    from mobilevision.train import fit

    try:
        return fit(task, config, run_dir, resume=resume, console=err)
    except KeyboardInterrupt:
        err.print(_visible(f"interrupted: the finished epochs are in {run_dir}; continue with "
                           f"`mobilevision train {command} --resume --out {run_dir}`"), markup=False, highlight=False)
        raise typer.Exit(130)


@train_app.command("classify")
def train_classify_cmd(
    ctx: typer.Context,
    model: Optional[str] = typer.Option(None, help="Zoo classifier, e.g. skipnet_m or emo_1m (see `mobilevision list`)."),
    loss: str = typer.Option("ce", help="ce (cross-entropy) or bias (Bias Loss, ICCV 2021)."),
    data: Optional[Path] = typer.Option(None, help="Image folder (train/<class>/..., val/<class>/...) or CIFAR python "
                                                   "folder; default: the built-in digits."),
    epochs: Optional[int] = typer.Option(None, min=1,
                                         help="Epochs in total (default 10; with --resume: extend the run)."),
    batch_size: int = typer.Option(64, min=1, help="Global batch size (split over torchrun processes)."),
    imgsz: Optional[int] = typer.Option(None, min=16, max=2048, help="Square input size (default: 64 for digits, "
                                                                     "32 for CIFAR, else the model's)."),
    optimizer: str = typer.Option("adamw", help="adamw, sgd or adam."),
    lr: Optional[float] = typer.Option(None, callback=_bounded(0, above=True),
                                       help="Peak learning rate (default: AdamW 1e-3, SGD 0.1)."),
    weight_decay: Optional[float] = typer.Option(None, callback=_bounded(0),
                                                 help="Default: AdamW 0.05, SGD 1e-4 (not on biases/norms)."),
    schedule: str = typer.Option("cosine", help="cosine, step (x0.1 at 50 % and 75 %) or constant, after warm-up."),
    warmup_epochs: float = typer.Option(1.0, callback=_bounded(0), help="Linear warm-up length in epochs."),
    label_smoothing: float = typer.Option(0.0, callback=_bounded(0, 1, below=True),
                                          help="Cross-entropy label smoothing (--loss ce only)."),
    ema_decay: Optional[float] = typer.Option(None, callback=_bounded(0, 1, above=True, below=True),
                                              help="Keep an EMA of the weights with this decay (e.g. 0.999); "
                                                   "the EMA is evaluated and saved."),
    clip_grad: Optional[float] = typer.Option(None, callback=_bounded(0, above=True),
                                              help="Clip the global gradient norm to this."),
    amp: bool = typer.Option(False, "--amp", help="Mixed precision (fp16 on CUDA, bf16 on CPU)."),
    bias_alpha: float = typer.Option(0.3, callback=_bounded(), help="Bias Loss alpha."),
    bias_beta: float = typer.Option(0.3, callback=_bounded(), help="Bias Loss beta."),
    bias_norm: str = typer.Option("global", help="Bias Loss variance normalisation: global or local."),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Random-resized crop (+ flip where it keeps the class)."),
    weights: Optional[Path] = typer.Option(None, help="Start from this local checkpoint (classifier replaced if the class count differs)."),
    seed: int = typer.Option(0, min=0, max=2**32 - 1, help="Seed for initialisation, shuffling and augmentation."),
    workers: Optional[int] = typer.Option(None, min=0,
                                          help="Data-loader processes (default: 0 for in-memory data, else up to 4)."),
    device: str = _TORCH_DEVICE_OPTION,
    sync_bn: bool = typer.Option(False, "--sync-bn", help="With torchrun: BatchNorm statistics over the global batch."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/classify/<model>[-N])."),
    resume: bool = typer.Option(False, "--resume", help=RESUME_HELP),
) -> None:
    """Train a classifier; writes RUN_DIR/{best,last}.safetensors + .json, metrics.csv."""
    from mobilevision.tasks.classify import ClassifyOptions, ClassifyTask
    from mobilevision.train import TrainConfig

    if resume and model is None and out_dir is None:
        raise MobileVisionError("--resume needs --out RUN_DIR (or --model to continue its newest run)")
    if not resume and model is None:
        raise MobileVisionError("--model is required: e.g. --model skipnet_m (see `mobilevision list --task classify`)")
    if not resume and loss == "bias" and batch_size < 2:
        raise MobileVisionError("Bias Loss needs --batch-size >= 2 (it normalises by the batch's variance range)")
    options, config, run_dir = _run_setup(ctx, resume, out_dir, model or "", "classify", ClassifyOptions, lambda: (
        ClassifyOptions(model=model, data=str(data) if data else None, loss=loss, imgsz=imgsz,
                        label_smoothing=label_smoothing, bias_alpha=bias_alpha, bias_beta=bias_beta,
                        bias_normalisation=bias_norm, augment=augment, weights=str(weights) if weights else None),
        TrainConfig(epochs=10 if epochs is None else epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                    weight_decay=weight_decay, schedule=schedule, warmup_epochs=warmup_epochs, ema_decay=ema_decay,
                    clip_grad=clip_grad, amp=amp, seed=seed, workers=workers, device=device, sync_bn=sync_bn)),
        epochs=epochs)
    with err.status("reading the dataset"):
        task = ClassifyTask(options)
    is_main = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 talks
    if is_main:
        err.print(_visible(f"training {options.model} ({options.loss}) on {task.data.name}: {len(task.data.classes)} "
                           f"classes, {len(task.data.train)} train / {len(task.data.val)} val images at "
                           f"{task.card.input_size[1]} px -> {run_dir}"), markup=False, highlight=False)
    result = _fit(task, config, run_dir, resume, "classify")
    best = result.best_metric
    if is_main:
        out.print(_visible(f"best val top-1 {best * 100:.2f} % at epoch {result.best_epoch}: {result.best}"
                           if best is not None else f"done: {result.last}"), markup=False, highlight=False)


@eval_app.command("classify")
def eval_classify_cmd(
    weights: Path = typer.Option(..., help="Trained weights, e.g. RUN_DIR/best.safetensors."),
    data: Optional[Path] = typer.Option(None, help="Dataset whose validation split is used (default: the run's)."),
    model: Optional[str] = typer.Option(None, help="Model name, for checkpoints without a run card."),
    batch_size: int = typer.Option(64, min=1, help="Batch size."),
    device: str = _TORCH_DEVICE_OPTION,
    confusion: Optional[Path] = typer.Option(None, help="Confusion-matrix PNG (default: beside the weights)."),
) -> None:
    """Top-1 / top-5 and a confusion-matrix PNG of trained weights on a validation split."""
    from mobilevision.tasks.classify import evaluate_checkpoint, save_confusion_png

    if confusion is not None:
        _check_output(confusion, "--confusion", folder=False)
    with err.status("evaluating"):
        report = evaluate_checkpoint(str(weights), data=str(data) if data else None, model=model,
                                     batch_size=batch_size, device=device)
    table = Table(title=_safe(f"{report.model} on {report.data} ({int(report.confusion.sum())} images)"))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in report.metrics.items():
        table.add_row(_safe(k), f"{v * 100:.2f} %" if k.startswith("top") else f"{v:.4f}")
    out.print(table)
    png = confusion or weights.with_name(f"{weights.stem}_confusion.png")
    _write(lambda: save_confusion_png(report, str(png)), png)
    _say(err, f"wrote {png}")


@train_app.command("anomaly")
def train_anomaly_cmd(
    ctx: typer.Context,
    model: str = typer.Option("efficientad_s", help="efficientad_s or efficientad_m."),
    data: Optional[Path] = typer.Option(None, help="MVTec AD-style folder (train/good, test/<defect>, ground_truth/); "
                                                   "default: a built-in category."),
    category: Optional[str] = typer.Option(None, help="Built-in category (brick, grass, gravel, tissue, stars), "
                                                      "or a category sub-folder of --data."),
    teacher: Optional[Path] = typer.Option(None, help="Pretrained teacher weights (nelson1425 or anomalib format). "
                                                      "Without it the teacher keeps random weights."),
    penalty_data: Optional[Path] = typer.Option(None, help="Folder of unrelated images for the penalty loss "
                                                           "(the paper: ImageNet). Without it the penalty is off."),
    steps: int = typer.Option(70_000, min=1, help="Training steps of one image each (paper: 70,000)."),
    imgsz: int = typer.Option(256, min=256, max=4096, help="Square input size (multiple of 4, >= 256)."),
    lr: Optional[float] = typer.Option(None, callback=_bounded(0, above=True),
                                       help="Adam learning rate (default 1e-4; x0.1 for the last 5 %)."),
    seed: int = typer.Option(0, min=0, max=2**32 - 1, help="Seed for initialisation and augmentation."),
    workers: Optional[int] = typer.Option(None, min=0, help="Data-loader processes (default up to 4)."),
    device: str = _TORCH_DEVICE_OPTION,
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/anomaly/<model>[-N])."),
    resume: bool = typer.Option(False, "--resume", help=RESUME_HELP),
) -> None:
    """Train an EfficientAD detector on normal images; writes RUN_DIR/{best,last}.safetensors + .json."""
    from mobilevision.tasks.anomaly import AnomalyOptions, AnomalyTask, recipe

    options, config, run_dir = _run_setup(ctx, resume, out_dir, model, "anomaly", AnomalyOptions, lambda: (
        AnomalyOptions(model=model, data=str(data) if data else None, category=category,
                       teacher=str(teacher) if teacher else None,
                       penalty_data=str(penalty_data) if penalty_data else None, steps=steps, imgsz=imgsz),
        recipe(steps, lr=lr, seed=seed, workers=workers, device=device)))
    with err.status("reading the dataset"):
        task = AnomalyTask(options)
    _say(err, f"training {options.model} on {task.data.name}: {len(task.train_paths)} train / {len(task.val_paths)} "
              f"validation normals at {options.imgsz} px, {config.epochs * task.steps_per_epoch} steps"
              f"{'' if options.teacher else ' (random teacher: pass --teacher for the paper setting)'}"
              f"{'' if options.penalty_data else ', no penalty images'} -> {run_dir}")
    result = _fit(task, config, run_dir, resume, "anomaly")
    _say(out, f"done: {result.last} (evaluate with `mobilevision eval anomaly --weights {result.last}`)")


@train_app.command("anomaly-teacher")
def train_anomaly_teacher_cmd(
    ctx: typer.Context,
    model: str = typer.Option("pdn_s", help="Teacher to pretrain: pdn_s (EfficientAD-S) or pdn_m (EfficientAD-M)."),
    data: Optional[Path] = typer.Option(None, help="Folder of generic photos, searched recursively (the paper: "
                                                   "ImageNet train)."),
    extractor: str = typer.Option("wide_resnet101_2", help="Feature extractor to distil: wide_resnet101_2 (the "
                                                           "paper's) or wide_resnet50_2."),
    extractor_weights: Optional[Path] = typer.Option(None, help="Local torchvision-format state dict of the "
                                                                "extractor (IMAGENET1K_V1)."),
    steps: int = typer.Option(60_000, min=1, help="Training steps (paper: 60,000)."),
    batch_size: int = typer.Option(16, min=1, help="Global batch size (paper: 16; split over torchrun processes)."),
    imgsz: int = typer.Option(256, min=32, max=4096, help="PDN input size (paper: 256)."),
    target_size: int = typer.Option(512, min=32, max=8192, help="Extractor input size (paper: 512; twice --imgsz)."),
    norm_images: int = typer.Option(10_000, min=1,
                                    help="Images for the target's channel mean/std (paper: about 10,000)."),
    lr: Optional[float] = typer.Option(None, callback=_bounded(0, above=True),
                                       help="Adam learning rate (default 1e-4, constant)."),
    seed: int = typer.Option(0, min=0, max=2**32 - 1, help="Seed for initialisation and image sampling."),
    workers: Optional[int] = typer.Option(None, min=0, help="Data-loader processes (default up to 4)."),
    device: str = _TORCH_DEVICE_OPTION,
    amp: bool = typer.Option(False, "--amp", help="Mixed precision (fp16 on CUDA, bf16 on CPU)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/anomaly_teacher/<model>[-N])."),
    resume: bool = typer.Option(False, "--resume", help=RESUME_HELP),
) -> None:
    """Pretrain an EfficientAD teacher by distilling a WideResNet's features (done once; then
    `mobilevision train anomaly --teacher RUN_DIR/last.safetensors`)."""
    from mobilevision.tasks.anomaly_teacher import TeacherOptions, TeacherPretrainTask, recipe

    options, config, run_dir = _run_setup(ctx, resume, out_dir, model, "anomaly_teacher", TeacherOptions, lambda: (
        TeacherOptions(model=model, data=str(data) if data else "", extractor=extractor,
                       extractor_weights=str(extractor_weights) if extractor_weights else None, steps=steps,
                       imgsz=imgsz, target_size=target_size, norm_images=norm_images, workers=workers),
        recipe(steps, batch_size=batch_size, lr=lr, seed=seed, workers=workers, device=device, amp=amp)))
    with err.status("loading the extractor and listing the images"):
        task = TeacherPretrainTask(options, batch_size=config.batch_size)
    is_main = os.environ.get("RANK", "0") == "0"
    if is_main:
        _say(err, f"distilling {options.extractor} ({'+'.join(options.layers)} at {options.target_size} px) into a "
                  f"padded {options.model} at {options.imgsz} px: {len(task.train_paths)} train / "
                  f"{len(task.val_paths)} held-out images, {config.epochs * task.steps_per_epoch} steps x "
                  f"{config.batch_size}; target statistics on {options.norm_images} images first -> {run_dir}")
    result = _fit(task, config, run_dir, resume, "anomaly-teacher")
    if is_main:
        _say(out, f"done: {result.last} (use it with `mobilevision train anomaly --model "
                  f"{options.model.replace('pdn_', 'efficientad_')} --teacher {result.last}`)")


@eval_app.command("anomaly")
def eval_anomaly_cmd(
    weights: Path = typer.Option(..., help="Trained detector, e.g. RUN_DIR/last.safetensors."),
    data: Optional[Path] = typer.Option(None, help="MVTec AD-style folder with test/ (default: the run's data)."),
    category: Optional[str] = typer.Option(None, help="Built-in category or category sub-folder of --data."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Folder for overlays and summary.json "
                                                               "(default: <weights stem>_eval beside the weights)."),
    overlays: bool = typer.Option(True, "--overlays/--no-overlays", help="Write a heat-map PNG per test image."),
    device: str = _TORCH_DEVICE_OPTION,
) -> None:
    """Image AU-ROC, pixel AU-ROC and AU-PRO (30 % FPR) on a test set, heat-map overlays, summary JSON."""
    from mobilevision.tasks.anomaly import evaluate_detector

    if out_dir is not None:
        _check_output(out_dir, "--out", folder=True)
    with err.status("evaluating"):
        result = evaluate_detector(str(weights), data=str(data) if data else None, category=category,
                                   out_dir=str(out_dir) if out_dir else None, device=device, overlays=overlays)
    r = result.report
    table = Table(title=_safe(f"{result.model} on {result.data} ({r.n_good} good / {r.n_anomalous} anomalous)"))
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("image AU-ROC", f"{r.image_auroc * 100:.2f} %")
    if r.pixel_auroc is not None:
        table.add_row("pixel AU-ROC", f"{r.pixel_auroc * 100:.2f} %")
        table.add_row(f"AU-PRO (FPR <= {r.max_fpr:g})", f"{r.au_pro * 100:.2f} %")
    for defect, v in r.per_defect.items():
        table.add_row(_safe(f"  {defect} image AU-ROC"), f"{v * 100:.2f} %")
    table.add_row("image threshold (F1-optimal)", f"{r.image_threshold:.4g} (F1 {r.image_f1:.3f})")
    if r.pixel_threshold is not None:
        table.add_row("pixel threshold (F1-optimal)", f"{r.pixel_threshold:.4g} (F1 {r.pixel_f1:.3f})")
    out.print(table)
    _say(err, f"wrote {result.summary}" + (f" and {len(result.overlays)} overlays" if result.overlays else ""))


@train_app.command("isp")
def train_isp_cmd(
    ctx: typer.Context,
    model: str = typer.Option("efficientisp", help="efficientisp, robustisp or rmfa_net_tiny."),
    mode: str = typer.Option("paired", help="paired (L1 + SSIM on aligned pairs) or unpaired (the paper: content, "
                                            "TV, two texture and one colour discriminator, gradient-norm balanced)."),
    data: Optional[Path] = typer.Option(None, help="Zurich RAW-to-RGB folder (train/huawei_raw + train/canon) or a "
                                                   "built-in-style one; default: the built-in unprocessed photos."),
    steps: int = typer.Option(2000, min=1, help="Generator steps (batches)."),
    batch_size: int = typer.Option(32, min=1, help="Global batch size (paper: 32)."),
    vgg19_weights: Optional[Path] = typer.Option(None, help="Unpaired: VGG-19 for the content term (torchvision "
                                                            "state dict or imagenet-vgg-verydeep-19.mat)."),
    alexnet_weights: Optional[Path] = typer.Option(None, help="Unpaired: AlexNet for the texture discriminators "
                                                              "(torchvision or pyiqa LPIPS file)."),
    vit_weights: Optional[Path] = typer.Option(None, help="Unpaired: ViT-B/16 for the colour discriminator (Hugging "
                                                          "Face google/vit-base-patch16-224 or torchvision file)."),
    lr: Optional[float] = typer.Option(None, callback=_bounded(0, above=True),
                                       help="Adam learning rate (default 5e-4, betas 0.5/0.9, constant)."),
    seed: int = typer.Option(0, min=0, max=2**32 - 1, help="Seed for initialisation and sampling."),
    workers: Optional[int] = typer.Option(None, min=0, help="Data-loader processes (default up to 4)."),
    device: str = _TORCH_DEVICE_OPTION,
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/isp/<model>[-N])."),
    resume: bool = typer.Option(False, "--resume", help=RESUME_HELP),
) -> None:
    """Train a learned ISP (RAW -> RGB); writes RUN_DIR/{best,last}.safetensors (best = validation PSNR)."""
    from mobilevision.tasks.isp import IspOptions, IspTask, isp_recipe

    options, config, run_dir = _run_setup(ctx, resume, out_dir, model, "isp", IspOptions, lambda: (
        IspOptions(model=model, mode=mode, data=str(data) if data else None, steps=steps,
                   vgg19_weights=str(vgg19_weights) if vgg19_weights else None,
                   alexnet_weights=str(alexnet_weights) if alexnet_weights else None,
                   vit_weights=str(vit_weights) if vit_weights else None),
        isp_recipe(steps, batch_size=batch_size, lr=lr, seed=seed, workers=workers, device=device)))
    with err.status("reading the dataset"):
        task = IspTask(options, batch_size=config.batch_size)
    _say(err, f"training {options.model} ({options.mode}) on {task.data.name}: {len(task.train_idx)} train / "
              f"{len(task.val_idx)} validation pairs, {config.epochs * task.steps_per_epoch} steps x {config.batch_size} "
              f"-> {run_dir}")
    if options.mode == "unpaired":
        missing = [n for n, w in (("VGG-19", options.vgg19_weights), ("AlexNet", options.alexnet_weights),
                                  ("ViT-B/16", options.vit_weights)) if not w]
        if missing:
            _say(err, f"note: {', '.join(missing)} randomly initialised (no weights given): the losses run, but the "
                      "paper's objective needs the pretrained networks; recorded in the run card")
    result = _fit(task, config, run_dir, resume, "isp")
    _say(out, f"best validation PSNR {result.best_metric:.2f} dB at epoch {result.best_epoch}: {result.best} "
              f"(evaluate with `mobilevision eval isp --weights {result.best}`)")


@eval_app.command("isp")
def eval_isp_cmd(
    weights: list[Path] = typer.Option(..., help="Trained ISP weights (repeatable: e.g. an unpaired and a paired run)."),
    data: Optional[Path] = typer.Option(None, help="Folder with test/ RAW + ground truth (default: the first run's)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Folder for summary.json and grid.png "
                                                               "(default: <first weights stem>_eval)."),
    grid_rows: int = typer.Option(4, min=0, help="Test images in the side-by-side grid (0: no grid)."),
    device: str = _TORCH_DEVICE_OPTION,
) -> None:
    """PSNR / SSIM / MS-SSIM against ground truth, next to a naive demosaic; a side-by-side grid PNG."""
    from mobilevision.tasks.isp import evaluate_isp

    if out_dir is not None:
        _check_output(out_dir, "--out", folder=True)
    with err.status("evaluating"):
        reports, summary, grid = evaluate_isp([str(w) for w in weights], data=str(data) if data else None,
                                              out_dir=str(out_dir) if out_dir else None, grid_rows=grid_rows,
                                              device=device)
    table = Table(title=f"RAW -> RGB on {reports[0].n_images} test images (8-bit outputs)")
    for col in ("pipeline", "PSNR dB", "SSIM", "MS-SSIM"):
        table.add_column(col, justify="left" if col == "pipeline" else "right")
    for r in reports:
        table.add_row(_safe(r.name), f"{r.psnr:.2f}", f"{r.ssim:.4f}",
                      f"{r.ms_ssim:.4f}" if r.ms_ssim is not None else "-")
    out.print(table)
    _say(err, f"wrote {summary}" + (f" and {grid}" if grid else ""))


@train_app.command("landmarks")
def train_landmarks_cmd(
    ctx: typer.Context,
    role: str = typer.Option("student", help="teacher-tough (ground truth), teacher-tolerant (PCA soft landmarks) "
                                             "or student."),
    model: Optional[str] = typer.Option(None, help="Zoo landmark model (default: landmarks_effb3 for teachers, "
                                                   "landmarks_mnv2 for the student; see `mobilevision list --task landmarks`)."),
    kd_from: Optional[str] = typer.Option(None, help="Student: the two teachers' weights, TOUGH,TOLERANT (any order; "
                                                     "their run cards say which is which): train with KD-Loss."),
    data: Optional[Path] = typer.Option(None, help="300W (images + .pts, train/ + test/ or the official folders), WFLW "
                                                   "root or COFW .mat folder; default: the built-in procedural faces."),
    points: Optional[int] = typer.Option(None, help="68, 98 or 29: checked against the data."),
    epochs: Optional[int] = typer.Option(None, min=1,
                                         help="Epochs (paper: 150; default 150, with --resume: extend the run)."),
    batch_size: int = typer.Option(70, min=1, help="Global batch size (paper: 70)."),
    imgsz: int = typer.Option(224, min=32, max=1024, help="Square input crop (paper: 224)."),
    lr: Optional[float] = typer.Option(None, callback=_bounded(0, above=True),
                                       help="Adam learning rate (default 1e-3, Keras decay 1e-4 per step)."),
    asm_variance: float = typer.Option(0.90, callback=_bounded(0, 1, above=True, below=True),
                                       help="Tolerant teacher: shape-model variance kept (0.80 ... 0.97)."),
    dropout: Optional[float] = typer.Option(None, callback=_bounded(0, 1, below=True),
                                            help="Head dropout (default: student 0.1, teachers 0.5)."),
    augmentation_factor: int = typer.Option(4, min=1,
                                            help="Augmented draws per face and epoch (reference: 300W 4, COFW 10)."),
    backbone_weights: Optional[Path] = typer.Option(None, help="torchvision ImageNet file for the trunk "
                                                               "(mobilenet_v2-*.pth / efficientnet_b3_*.pth; the paper trains from scratch)."),
    seed: int = typer.Option(0, min=0, max=2**32 - 1, help="Seed for initialisation, shuffling and augmentation."),
    workers: Optional[int] = typer.Option(None, min=0, help="Data-loader processes (default up to 4)."),
    device: str = _TORCH_DEVICE_OPTION,
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/landmarks/<model>[-N])."),
    resume: bool = typer.Option(False, "--resume", help=RESUME_HELP),
) -> None:
    """Train a landmark teacher or the student (MSE, or KD-Loss with --kd-from); best = lowest validation NME."""
    from mobilevision.tasks.landmarks import DEFAULT_MODEL, LandmarkOptions, LandmarkTask, landmark_recipe

    name = model or DEFAULT_MODEL.get(role, "landmarks")
    options, config, run_dir = _run_setup(ctx, resume, out_dir, name, "landmarks", LandmarkOptions, lambda: (
        LandmarkOptions(role=role, model=model, data=str(data) if data else None, points=points,
                        kd_from=[p.strip() for p in kd_from.split(",") if p.strip()] if kd_from else None,
                        asm_variance=asm_variance, dropout=dropout, size=imgsz,
                        augmentation_factor=augmentation_factor,
                        backbone_weights=str(backbone_weights) if backbone_weights else None),
        landmark_recipe(150 if epochs is None else epochs, batch_size=batch_size, lr=lr, seed=seed, workers=workers,
                        device=device)), epochs=epochs)
    with err.status("reading the dataset"):
        task = LandmarkTask(options)
    _say(err, f"training {options.model} as {options.role}{' with KD-Loss' if options.kd_from else ''}: "
              f"{len(task.train_samples)} train / {len(task.val_samples)} validation faces x "
              f"{options.augmentation_factor} augmentations, {task.points} points, {options.size}px -> {run_dir}")
    result = _fit(task, config, run_dir, resume, "landmarks")
    _say(out, f"best validation NME {result.best_metric:.2f} % at epoch {result.best_epoch}: {result.best} "
              f"(evaluate with `mobilevision eval landmarks --weights {result.best}`)")


@eval_app.command("landmarks")
def eval_landmarks_cmd(
    weights: list[Path] = typer.Option(..., help="Trained landmark weights (repeatable: student, student + KD, teachers)."),
    data: Optional[Path] = typer.Option(None, help="Dataset with a test split (default: the first run's data)."),
    normaliser: str = typer.Option("inter_ocular", help="inter_ocular (outer eye corners) or inter_pupil."),
    crop: str = typer.Option("extent", help="extent (GT landmarks + margin, the author's protocol) or box (the "
                                            "dataset's face box)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Folder for summary.json, ced.png and overlays.png "
                                                               "(default: <first weights stem>_eval)."),
    overlays: int = typer.Option(8, min=0, help="Test faces in the overlay grid (0: none)."),
    device: str = _TORCH_DEVICE_OPTION,
) -> None:
    """NME, failure rate at 0.1 and AUC@0.1 on the test faces; a CED curve and landmark overlays."""
    from mobilevision.tasks.landmarks import evaluate_landmarks

    if out_dir is not None:
        _check_output(out_dir, "--out", folder=True)
    with err.status("evaluating"):
        reports, summary, ced, grid = evaluate_landmarks([str(w) for w in weights], data=str(data) if data else None,
                                                         out_dir=str(out_dir) if out_dir else None,
                                                         normaliser=normaliser, crop=crop, overlays=overlays,
                                                         device=device)
    table = Table(title=_safe(f"landmarks on {reports[0].images} test faces ({normaliser.replace('_', '-')} NME, "
                              f"{crop} crop)"))
    for col in ("model", "NME %", "FR@0.1 %", "AUC@0.1", "AUC (Fard 2022)"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in reports:
        table.add_row(_safe(r.name), f"{r.nme:.2f}", f"{r.failure_rate:.2f}", f"{r.auc:.4f}", f"{r.auc_fard2022:.4f}")
    out.print(table)
    _say(err, f"wrote {summary}, {ced}" + (f" and {grid}" if grid else ""))


_EXTRAS = {"torch": "export", "safetensors": "export", "onnx": "export", "onnxscript": "export",
           "coremltools": "export", "nncf": "export", "litert_torch": "export", "ai_edge_quantizer": "export",
           "sklearn": "train", "skimage": "train", "matplotlib": "train", "pytorch_msssim": "train", "h5py": "train",
           "rawpy": "isp", "colour_demosaicing": "isp", "onnxruntime": "runtime", "openvino": "runtime",
           "ai_edge_litert": "runtime"}


def _missing_package_line(e: ModuleNotFoundError, args: list[str]) -> str:
    """What to install for a command whose optional dependency is missing (a runtime-only install has no torch)."""
    package = (e.name or "").split(".")[0]
    command = next((a for a in args if not a.startswith("-")), "this command")
    extra = _EXTRAS.get(package)
    if extra == "export" and package in ("torch", "safetensors"):
        extra = {"train": "train", "eval": "train", "isp": "export,isp"}.get(command, "export")
    fix = f"pip install 'mobilevision[{extra}]'" if extra else "install it (run with --debug for the traceback)"
    return f"`mobilevision {command}` needs the Python package {package!r}, which is not installed: {fix}"


_PARSE_WORDS = (("Input should be greater than or equal to", "must be >="),
                ("Input should be less than or equal to", "must be <="), ("Input should be greater than", "must be >"),
                ("Input should be less than", "must be <"), ("Input should be", "must be"))


def _usage_line(e: Exception) -> str:
    """A usage error as one line naming the option, what it must be, what was given and the help command:
    ``--epochs must be >= 1 (got 0) (see 'mobilevision train classify --help')``."""
    param = getattr(e, "param", None)
    if param is not None and getattr(e, "message", None):  # a bad value
        detail = e.message.split(", unable to parse")[0]
        for words, short in _PARSE_WORDS:
            detail = detail.replace(words, short)
        errors = getattr(e.__cause__, "errors", None)  # typer's value parsing keeps what was typed here
        try:
            detail += f" (got {errors()[0]['input']})" if callable(errors) else ""
        except (LookupError, TypeError, ValueError):
            pass
        flag = max(param.opts, key=len) if param.param_type_name == "option" else param.human_readable_name
        message = f"{flag} {detail}"
    else:
        message = e.format_message() if hasattr(e, "format_message") else str(e)
    ctx = getattr(e, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else " (see 'mobilevision --help')"
    return (message[:1].lower() + message[1:]).rstrip(".") + hint


def _without_flag_types(command: Any) -> Any:
    """Flags take no value, so ``--help`` shows no type after them (typer writes ``<bool>``)."""
    for param in getattr(command, "params", []):
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _without_flag_types(sub)
    return command


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code: 0 done, 2 for any error a user can fix (one line on stderr:
    usage, MobileVisionError, a missing optional package, an OS error such as a full disk), 130 interrupted."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    before = os.environ.get(DEBUG_ENV)
    if debug:   # runtimes' own chatter (LiteRT's "INFO: Created ... delegate") is shown too
        os.environ[DEBUG_ENV] = "1"
    try:
        code = _without_flag_types(typer.main.get_command(app)).main(args=args, prog_name="mobilevision",
                                                                     standalone_mode=False)
        return code if isinstance(code, int) else 0
    except SystemExit as e:  # e.g. a closed stdout pipe
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except typer.TyperException as e:  # usage errors, before any work
        if type(e).__name__ == "NoArgsIsHelpError":
            e.show()
            return 2
        err.print(f"error: {_visible(_usage_line(e))}", markup=False, highlight=False)
        return getattr(e, "exit_code", 2)
    except MobileVisionError as e:
        if debug:
            raise
        err.print(f"error: {_visible(e)}", markup=False, highlight=False)
        return 2
    except ModuleNotFoundError as e:
        if debug:
            raise
        err.print(f"error: {_visible(_missing_package_line(e, args))}", markup=False, highlight=False)
        return 2
    except OSError as e:  # last resort for a user's path (full disk, permissions); write sites say more
        if debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        err.print(f"error: {_visible(where + os_problem(e))} (run with --debug for the traceback)", markup=False,
                  highlight=False)
        return 2
    finally:
        if debug and before is None:
            os.environ.pop(DEBUG_ENV, None)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
