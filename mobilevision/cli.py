"""``mobilevision`` command line: parse arguments, call the Python API, print.

Every MobileVisionError becomes one line on stderr and exit code 2; ``--debug`` shows the
traceback instead. Heavy imports (torch, converters, runtimes) happen inside commands.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
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

    table = Table(title="mobilevision model zoo")
    for col in ("model", "task", "params (M)", "MACs (M)", "input"):
        table.add_column(col, justify="right" if col in ("params (M)", "MACs (M)") else "left")
    names = mobilevision.list_models(task)
    with err.status("counting parameters and MACs (torch.utils.flop_counter)") as status:
        for name in names:
            status.update(f"counting {name}")
            card = mobilevision.get_model_card(name)
            size = (card.input_size[0], imgsz, imgsz) if imgsz else card.input_size
            params, macs = _count(name, size)
            table.add_row(name, card.task, f"{params / 1e6:.3f}", f"{macs / 1e6:.1f}", "x".join(map(str, size)))
    out.print(table)


def _count(name: str, size: tuple[int, ...]) -> tuple[int, int]:
    """Params and MACs, counted on the meta device where the model builds there (shapes only: instant,
    same numbers), otherwise on the CPU."""
    import torch

    import mobilevision
    from mobilevision.complexity import count_macs, count_params

    try:
        with torch.device("meta"):
            model = mobilevision.create_model(name)
            return count_params(model), count_macs(model, size)
    except (NotImplementedError, RuntimeError):  # a builder that reads tensor values (e.g. EMO's drop-path rates)
        model = mobilevision.create_model(name)
        return count_params(model), count_macs(model, size)


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
    return run["model"]


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
        if r.warnings:
            status = "[bold yellow]WARN[/bold yellow]"
        parity = r.parity.summary() if r.parity.numeric else "interface + ops checked; numbers need macOS"
        table.add_row(r.target, r.precision, r.path.name, f"{size:.2f}", parity, status,
                      f"{r.seconds:.1f}")
    return table


@app.command("export")
def export_cmd(
    model: str = typer.Argument(..., help="Zoo model name (see `mobilevision list`), or a training run's "
                                          "weights (RUN_DIR/best.safetensors: classes travel into the metadata)."),
    target: list[str] = typer.Option(..., "--target", "-t", help="onnx, tflite, coreml, openvino or all (repeatable)."),
    weights: Optional[Path] = typer.Option(None, help="Local checkpoint (.pth/.pt/.safetensors); default: random init."),
    imgsz: Optional[int] = typer.Option(None, help="Square input size in pixels (default: the model's)."),
    precision: list[str] = typer.Option(["fp32"], "--precision", "-p",
                                        help="fp32, fp16 or int8 (repeatable). fp16 / int8 report the task metric "
                                             "before and after on held-out data; int8 calibrates first."),
    out_dir: Path = typer.Option(Path("exports"), "--out", help="Output folder."),
    num_classes: Optional[int] = typer.Option(None, help="Classifier size when the weights are fine-tuned."),
    checkpoint_key: Optional[str] = typer.Option(None, help="Entry of a training checkpoint to load (EMO: net or net_E)."),
    bench: bool = typer.Option(False, "--bench", help="Benchmark every runnable artifact afterwards."),
    runs: int = typer.Option(50, help="Timed runs per artifact for --bench."),
    calib_data: Optional[Path] = typer.Option(None, "--calib-data",
                                              help="int8 calibration images: the task's dataset folder (as for "
                                                   "`train --data`) or a flat folder of images. Default: what the "
                                                   "weights were trained on, else the task's built-in data."),
    calib_n: int = typer.Option(300, "--calib-n", help="Calibration inputs to use (a warning under 100)."),
    keep_float: list[str] = typer.Option([], "--keep-float",
                                         help="int8: keep this PyTorch module (path prefix, e.g. head or "
                                              "stages.0) in float (repeatable, or comma-separated)."),
    eval_data: Optional[Path] = typer.Option(None, "--eval-data",
                                             help="Held-out data for the metric before/after (the task's dataset "
                                                  "folder). Default: --calib-data's held-out split, the training "
                                                  "data of the weights, else the built-in data."),
    eval_n: int = typer.Option(200, "--eval-n", help="Held-out inputs for the metric before/after."),
    category: Optional[str] = typer.Option(None, help="Anomaly: the category inside a folder of categories."),
    accuracy: bool = typer.Option(True, "--accuracy/--no-accuracy",
                                  help="Measure the task metric before/after for fp16 / int8."),
    fail_on_drop: bool = typer.Option(False, "--fail-on-drop",
                                      help="Exit 3 when a quantised artifact loses more than its task's threshold."),
) -> None:
    """Export a zoo model; each artifact is run in its runtime and compared with PyTorch."""
    from mobilevision.export.api import PRECISIONS, ExportFailure, QuantizeOptions, export_all, resolve_targets
    from mobilevision.errors import UnknownTarget

    import mobilevision

    if Path(model).suffix in (".safetensors", ".pt", ".pth"):  # a training run's weights
        model, weights = _trained_model_name(Path(model), weights), Path(model)
    mobilevision.get_model_card(model)  # unknown names fail before anything is built
    targets = [t for name in target for t in resolve_targets(name)]
    for p in precision:
        if p not in PRECISIONS:
            raise UnknownTarget(f"unknown precision {p!r}: choose one of {', '.join(PRECISIONS)}")
    for value, flag in ((calib_n, "--calib-n"), (eval_n, "--eval-n")):
        if value < 1:
            raise MobileVisionError(f"{flag} must be >= 1 (got {value})")
    keep = tuple(dict.fromkeys(k.strip() for item in keep_float for k in item.split(",") if k.strip()))
    if keep and "int8" not in precision:
        raise MobileVisionError("--keep-float applies to --precision int8: add -p int8")
    if (calib_data is not None or calib_n != 300) and "int8" not in precision:
        err.print("note: --calib-data / --calib-n only matter for --precision int8")
    if weights is None:
        err.print("note: no --weights given: exporting randomly initialised weights "
                  "(right for latency and parity, not for predictions)")
    quantize = QuantizeOptions(calib_data=str(calib_data) if calib_data else None, calib_n=calib_n, keep_float=keep,
                               eval_data=str(eval_data) if eval_data else None, eval_n=eval_n, category=category,
                               accuracy=accuracy)
    with err.status(f"exporting {model}") as status:
        results = export_all(model, list(dict.fromkeys(targets)), precisions=tuple(dict.fromkeys(precision)),
                             weights=str(weights) if weights else None, imgsz=imgsz, out_dir=out_dir,
                             num_classes=num_classes, checkpoint_key=checkpoint_key,
                             on_progress=lambda msg: status.update(f"{model}: {msg}"), quantize=quantize)
    out.print(_export_table(results))
    notes = {r.parity.note for r in results if not isinstance(r, ExportFailure) and r.parity.note}
    for note in notes:
        err.print(f"note: {note}")
    done = [r for r in results if not isinstance(r, ExportFailure)]
    for r in done:
        if r.accuracy is not None:
            out.print(f"{r.target} {r.precision} accuracy ({escape(r.accuracy.data)}, {r.accuracy.samples} inputs): "
                      f"{escape(r.accuracy.summary())}")
    for r in done:
        for w in r.warnings:
            err.print(f"[bold yellow]WARNING[/bold yellow] {r.target} {escape(w)}")
    failed = [r for r in results if isinstance(r, ExportFailure)]
    if bench:
        runnable = [str(r.path) for r in results if not isinstance(r, ExportFailure) and r.parity.numeric]
        if runnable:
            _run_bench(runnable, None, None, runs, 5, None)
    if failed:
        for f in failed:
            err.print(f"error: {f.target} {f.precision}: {f.error}")
        raise typer.Exit(2)
    if fail_on_drop and any(r.accuracy is not None and r.accuracy.exceeded for r in done):
        err.print("error: a quantised artifact lost more than its task's threshold (--fail-on-drop); "
                  "it was written, see the warnings above")
        raise typer.Exit(3)


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


def _bench_table(rows, title: str = "latency (ms; timed runs interleaved across rows)",
                 delegation: bool = False) -> Table:
    table = Table(title=title)
    cols = ("artifact", "backend", "threads", "load", "first", "median", "mean", "p90", "min", "max", "std",
            "peak RSS MB", "GMAC/s") + (("ran on",) if delegation else ())
    for col in cols:
        table.add_column(col, justify="left" if col in ("artifact", "backend", "ran on") else "right")
    for r in rows:
        if r.error:
            message = f"[red]{escape(r.error)}[/red]" if delegation else f"[red]{r.error}[/red]"
            table.add_row(Path(r.artifact).name, r.backend, "-", *["-"] * 9, message, *(["-"] if delegation else []))
            continue
        table.add_row(Path(r.artifact).name, r.backend, str(r.threads or "default"),
                      *(_num(v) for v in (r.load_ms, r.first_ms, r.median_ms, r.mean_ms, r.p90_ms,
                                           r.min_ms, r.max_ms, r.std_ms)),
                      _num(r.peak_rss_mb, ".0f"), f"{r.gmacs_per_s:.1f}" if r.gmacs_per_s else "-",
                      *([escape(_delegation_cell(r))] if delegation else []))
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

    if runs < 1 or warmup < 0 or rewarm < 0 or (threads is not None and threads < 1):
        raise _E("--runs must be >= 1, --warmup and --rewarm >= 0 and --threads >= 1")
    target = parse_device(device)
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
        rows = _run_bench([str(a) for a in artifacts], backend or None, threads, runs, warmup, json_path, rewarm)
    elif npu_soc:
        if backend:
            raise _E("--backend does not apply to --npu-soc: LiteRT's AOT compiler compiles the .tflite")
        _run_npu_aot([str(a) for a in artifacts], npu_soc)
        return
    elif target.kind in ("gpu", "npu"):
        rows = _run_accelerated_bench([str(a) for a in artifacts], target.kind, backend or None, threads, runs,
                                      warmup, rewarm, json_path)
    else:
        from mobilevision.runtime.devices.android import AndroidBenchOptions

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
    if all(r.error for r in rows):
        raise typer.Exit(2)


def _run_accelerated_bench(artifacts, device, backends, threads, runs, warmup, rewarm, json_path) -> list:
    """GPU/NPU rows from every runtime with that accelerator here; one line per runtime without."""
    from mobilevision.runtime.devices.accelerators import plan_accelerated
    from mobilevision.runtime.profile import benchmark, write_json

    name = device.upper()
    with err.status(f"looking for a {name}"):
        pairs, unavailable = plan_accelerated(artifacts, device, backends)
    for av in unavailable:
        err.print(av.line(), markup=False, highlight=False, soft_wrap=True)
    if not pairs:
        files = ", ".join(Path(a).name for a in artifacts)
        article = "an" if device == "npu" else "a"
        raise MobileVisionError(f"nothing ran: no runtime here can run {files} on {article} {name} (reasons above)")
    with err.status(f"benchmarking on the {name}") as status:
        rows = benchmark([], threads=threads, runs=runs, warmup=warmup, rewarm=rewarm, pairs=pairs, device=device,
                         on_progress=lambda msg: status.update(msg))
    out.print(_bench_table(rows, title=f"latency on the {name} (ms; timed runs interleaved across rows)",
                           delegation=True))
    for r in rows:
        if not r.error and r.accelerated is False:
            ops = r.fallback_ops or []
            shown = ", ".join(ops[:6]) + (f" and {len(ops) - 6} more" if len(ops) > 6 else "")
            err.print(f"warning: {Path(r.artifact).name} {r.backend}: part of the graph ran on the CPU"
                      f"{f' ({shown})' if shown else ''}: not a pure {name} number",
                      markup=False, highlight=False, soft_wrap=True)
    if json_path:
        write_json(rows, json_path)
        err.print(f"wrote {json_path}")
    return rows


def _run_npu_aot(artifacts, spec) -> None:
    """Compile each .tflite ahead of time for a phone NPU and say how to measure it there."""
    from mobilevision.runtime.devices.accelerators import compile_for_npu, parse_npu_soc

    target = parse_npu_soc(spec)
    for a in artifacts:
        with err.status(f"compiling {Path(a).name} for {target.target_id}"):
            done = compile_for_npu(a, target)
        share = "all" if done.fully_offloaded else f"{done.ops_offloaded} of {done.ops_total}"
        out.print(f"{Path(a).name} -> {done.path}: {share} ops on the {target.vendor.name} NPU in "
                  f"{done.partitions} partition(s); measure it on {target.vendor.hardware}: "
                  f"mobilevision bench {done.path} --device android --use-npu", markup=False, highlight=False)
        if not done.fully_offloaded:
            err.print(f"warning: {done.ops_total - done.ops_offloaded} ops of {Path(a).name} stay on the phone's CPU",
                      markup=False, highlight=False)


def _run_android_bench(artifacts, options, json_path) -> list:
    from mobilevision.runtime.devices.android import benchmark_android
    from mobilevision.runtime.profile import write_json

    with err.status("benchmarking on Android") as status:
        rows = benchmark_android(artifacts, options, on_progress=lambda msg: status.update(msg))
    out.print(_bench_table(rows, title="latency on Android (ms; benchmark_model's timed runs)"))
    for r in rows:
        if r.warning:
            err.print(f"warning: {Path(r.artifact).name}: {r.warning}", markup=False, highlight=False, soft_wrap=True)
    if json_path:
        write_json(rows, json_path)
        err.print(f"wrote {json_path}")
    return rows


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


@app.command("landmarks")
def landmarks_cmd(artifact: Path = typer.Argument(..., help="An exported landmark model."),
                  image: Path = typer.Argument(..., help="An image file."),
                  box: Optional[str] = typer.Option(None, help="Face box x0,y0,x1,y1 in image pixels (default: the "
                                                               "whole image, stretched to the model input)."),
                  output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write an overlay PNG/JPEG."),
                  backend: Optional[str] = typer.Option(None, help="Runtime (default: the artifact's own).")) -> None:
    """Detect facial landmarks in one face crop with an exported model; prints one "x y" line per point."""
    from mobilevision.runtime import load
    from mobilevision.runtime.tasks.landmarks import write_overlay

    if output is not None and output.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise MobileVisionError(f"--output {output}: use a .png or .jpg file name")
    coords = None
    if box is not None:
        try:
            coords = [float(v) for v in box.split(",")]
        except ValueError:
            raise MobileVisionError(f"--box {box!r}: give four numbers x0,y0,x1,y1") from None
    with load(artifact, backend=backend) as model:
        points = model.detect_landmarks(image, box=coords)
    for x, y in points:
        out.print(f"{x:.2f} {y:.2f}", markup=False, highlight=False)
    if output is not None:
        write_overlay(image, points, output)
        err.print(f"wrote {output}", markup=False, highlight=False)


@app.command("anomaly")
def anomaly_cmd(artifact: Path = typer.Argument(..., help="An exported anomaly detector."),
                image: Path = typer.Argument(..., help="An image file."),
                threshold: Optional[float] = typer.Option(None, help="Score above which the image is anomalous "
                                                                     "(pick it on your own data)."),
                output: Optional[Path] = typer.Option(None, "-o", "--output",
                                                      help="Write the heatmap over the image (PNG/JPEG)."),
                heat_range: tuple[float, float] = typer.Option((0.0, 0.2), "--range",
                                                               help="Map values drawn blue .. red."),
                backend: Optional[str] = typer.Option(None, help="Runtime (default: the artifact's own).")) -> None:
    """Score one image with an exported anomaly detector; optionally write its heatmap overlay."""
    import io

    import numpy as np
    from PIL import Image

    from mobilevision.atomic_io import atomic_write_bytes
    from mobilevision.runtime import load
    from mobilevision.runtime.tasks.anomaly import heatmap, overlay
    from mobilevision.runtime.tasks.classify import as_rgb_image

    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(output.suffix.lower()) if output else None
    if output is not None and fmt is None:
        raise MobileVisionError(f"--output {output}: use a .png or .jpg file name")
    if not heat_range[1] > heat_range[0]:
        raise MobileVisionError(f"--range {heat_range[0]} {heat_range[1]}: the second value must exceed the first")
    rgb = np.asarray(as_rgb_image(image))          # read once: scored and drawn on
    with load(artifact, backend=backend) as model:
        r = model.detect_anomaly(rgb, threshold=threshold)
    verdict = "" if r.is_anomalous is None else ("  anomalous" if r.is_anomalous else "  normal")
    out.print(f"score {r.score:.4f}{verdict}", markup=False, highlight=False)
    if output is not None:
        buf = io.BytesIO()
        Image.fromarray(overlay(rgb, heatmap(r.anomaly_map, *heat_range))).save(buf, format=fmt)
        atomic_write_bytes(output, buf.getvalue())
        err.print(f"wrote {output}", markup=False, highlight=False)


@app.command("isp")
def isp_cmd(
    photo: Path = typer.Argument(..., help="Camera RAW file (.dng, .nef, .cr2, .arw, ...; 2x2 Bayer sensors)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output image (.png, .jpg or .tif)."),
    model: str = typer.Option("efficientisp", help="ISP model: efficientisp, robustisp or rmfa_net_tiny."),
    weights: Optional[Path] = typer.Option(None, help="Local generator weights (the paper's released .pth files "
                                                      "or a `mobilevision train isp` run). Default: random init."),
    tile: int = typer.Option(512, help="Tile side in packed pixels (memory bound); 0 = the whole image at once."),
    clip: bool = typer.Option(False, "--clip", help="Clip normalised RAW values at 0 (below-black noise)."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
) -> None:
    """Render a camera RAW photo to RGB with a learned ISP (mosaic, CFA pattern and levels read by LibRaw)."""
    from mobilevision.tasks.isp import process_raw_file

    if weights is None:
        err.print(f"note: no --weights, {model} has random weights (the output shows the pipeline, not a "
                  "trained ISP)", markup=False, highlight=False)
    with err.status("rendering"):
        r = process_raw_file(photo, output, model=model, weights=str(weights) if weights else None, tile=tile,
                             clip=clip, device=device)
    h, w = r.rgb.shape[:2]
    out.print(f"wrote {output} ({w}x{h}, {r.pattern}, black {'/'.join(f'{b:g}' for b in r.black_level)}, "
              f"white {r.white_level:g}, {r.tiles} tile{'s' if r.tiles != 1 else ''})", markup=False, highlight=False)


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


def _run_setup(resume: bool, out_dir: Optional[Path], model: str, task: str, options_cls, fresh):
    """(options, TrainConfig, run_dir): from the run being resumed, or ``fresh()`` -> (options, config)."""
    from mobilevision.train import TrainConfig
    from mobilevision.train.checkpoint import load_state

    if resume:
        run_dir = _run_dir(out_dir, model, True, task)
        state = load_state(run_dir)
        return options_cls(**state["task"]["options"]), TrainConfig.from_dict(state["config"]), run_dir
    options, config = fresh()
    return options, config, _run_dir(out_dir, model, False, task)


def _fit(task, config, run_dir: Path, resume: bool, command: str):
    """The engine's fit; Ctrl-C says where the finished epochs are and how to continue (exit 130)."""
    from mobilevision.train import fit

    try:
        return fit(task, config, run_dir, resume=resume, console=err)
    except KeyboardInterrupt:
        err.print(f"interrupted: the finished epochs are in {run_dir}; continue with "
                  f"`mobilevision train {command} --resume --out {run_dir}`", markup=False, highlight=False)
        raise typer.Exit(130)


@train_app.command("classify")
def train_classify_cmd(
    model: Optional[str] = typer.Option(None, help="Zoo classifier, e.g. skipnet_m or emo_1m (see `mobilevision list`)."),
    loss: str = typer.Option("ce", help="ce (cross-entropy) or bias (Bias Loss, ICCV 2021)."),
    data: Optional[Path] = typer.Option(None, help="Image folder (train/<class>/..., val/<class>/...) or CIFAR python "
                                                   "folder; default: the built-in digits."),
    epochs: Optional[int] = typer.Option(None, help="Epochs in total (default 10; with --resume: extend the run)."),
    batch_size: int = typer.Option(64, help="Global batch size (split over torchrun processes)."),
    imgsz: Optional[int] = typer.Option(None, help="Square input size (default: 64 for digits, 32 for CIFAR, else the model's)."),
    optimizer: str = typer.Option("adamw", help="adamw, sgd or adam."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (default: AdamW 1e-3, SGD 0.1)."),
    weight_decay: Optional[float] = typer.Option(None, help="Default: AdamW 0.05, SGD 1e-4 (not on biases/norms)."),
    schedule: str = typer.Option("cosine", help="cosine, step (x0.1 at 50 % and 75 %) or constant, after warm-up."),
    warmup_epochs: float = typer.Option(1.0, help="Linear warm-up length in epochs."),
    label_smoothing: float = typer.Option(0.0, help="Cross-entropy label smoothing (--loss ce only)."),
    ema_decay: Optional[float] = typer.Option(None, help="Keep an EMA of the weights with this decay (e.g. 0.999); "
                                                         "the EMA is evaluated and saved."),
    clip_grad: Optional[float] = typer.Option(None, help="Clip the global gradient norm to this."),
    amp: bool = typer.Option(False, "--amp", help="Mixed precision (fp16 on CUDA, bf16 on CPU)."),
    bias_alpha: float = typer.Option(0.3, help="Bias Loss alpha."),
    bias_beta: float = typer.Option(0.3, help="Bias Loss beta."),
    bias_norm: str = typer.Option("global", help="Bias Loss variance normalisation: global or local."),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Random-resized crop (+ flip where it keeps the class)."),
    weights: Optional[Path] = typer.Option(None, help="Start from this local checkpoint (classifier replaced if the class count differs)."),
    seed: int = typer.Option(0, help="Seed for initialisation, shuffling and augmentation."),
    workers: Optional[int] = typer.Option(None, help="Data-loader processes (default: 0 for in-memory data, else up to 4)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    sync_bn: bool = typer.Option(False, "--sync-bn", help="With torchrun: BatchNorm statistics over the global batch."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/classify/<model>[-N])."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last finished epoch."),
) -> None:
    """Train a classifier; writes RUN_DIR/{best,last}.safetensors + .json, metrics.csv."""
    from mobilevision.tasks.classify import ClassifyOptions, ClassifyTask
    from mobilevision.train import TrainConfig
    from mobilevision.train.checkpoint import load_state

    if resume:
        if model is None and out_dir is None:
            raise MobileVisionError("--resume needs --out RUN_DIR (or --model to continue its newest run)")
        run_dir = _run_dir(out_dir, model or "", True)
        state = load_state(run_dir)
        options = ClassifyOptions(**state["task"]["options"])
        config = TrainConfig.from_dict({**state["config"], **({"epochs": epochs} if epochs else {})})
        if model is not None and model != options.model:
            raise MobileVisionError(f"{run_dir} trains {options.model}, not {model}: drop --model or pick another --out")
    else:
        if model is None:
            raise MobileVisionError("--model is required: e.g. --model skipnet_m (see `mobilevision list --task classify`)")
        options = ClassifyOptions(model=model, data=str(data) if data else None, loss=loss, imgsz=imgsz,
                                  label_smoothing=label_smoothing, bias_alpha=bias_alpha, bias_beta=bias_beta,
                                  bias_normalisation=bias_norm, augment=augment, weights=str(weights) if weights else None)
        config = TrainConfig(epochs=epochs or 10, batch_size=batch_size, optimizer=optimizer, lr=lr,
                             weight_decay=weight_decay, schedule=schedule, warmup_epochs=warmup_epochs,
                             ema_decay=ema_decay, clip_grad=clip_grad, amp=amp, seed=seed, workers=workers,
                             device=device, sync_bn=sync_bn)
        if loss == "bias" and batch_size < 2:
            raise MobileVisionError("Bias Loss needs --batch-size >= 2 (it normalises by the batch's variance range)")
        run_dir = _run_dir(out_dir, model, False)
    if workers is not None:
        config.workers = workers
    with err.status("reading the dataset"):
        task = ClassifyTask(options)
    is_main = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 talks
    if is_main:
        err.print(f"training {options.model} ({options.loss}) on {task.data.name}: {len(task.data.classes)} classes, "
                  f"{len(task.data.train)} train / {len(task.data.val)} val images at {task.card.input_size[1]} px "
                  f"-> {run_dir}", markup=False, highlight=False)
    result = _fit(task, config, run_dir, resume, "classify")
    best = result.best_metric
    if is_main:
        out.print(f"best val top-1 {best * 100:.2f} % at epoch {result.best_epoch}: {result.best}" if best is not None
                  else f"done: {result.last}", markup=False, highlight=False)


@eval_app.command("classify")
def eval_classify_cmd(
    weights: Path = typer.Option(..., help="Trained weights, e.g. RUN_DIR/best.safetensors."),
    data: Optional[Path] = typer.Option(None, help="Dataset whose validation split is used (default: the run's)."),
    model: Optional[str] = typer.Option(None, help="Model name, for checkpoints without a run card."),
    batch_size: int = typer.Option(64, help="Batch size."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    confusion: Optional[Path] = typer.Option(None, help="Confusion-matrix PNG (default: beside the weights)."),
) -> None:
    """Top-1 / top-5 and a confusion-matrix PNG of trained weights on a validation split."""
    from mobilevision.tasks.classify import evaluate_checkpoint, save_confusion_png

    if batch_size < 1:
        raise MobileVisionError("--batch-size must be >= 1")
    with err.status("evaluating"):
        report = evaluate_checkpoint(str(weights), data=str(data) if data else None, model=model,
                                     batch_size=batch_size, device=device)
    table = Table(title=f"{report.model} on {report.data} ({int(report.confusion.sum())} images)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in report.metrics.items():
        table.add_row(k, f"{v * 100:.2f} %" if k.startswith("top") else f"{v:.4f}")
    out.print(table)
    png = confusion or weights.with_name(f"{weights.stem}_confusion.png")
    save_confusion_png(report, str(png))
    err.print(f"wrote {png}", markup=False, highlight=False)


@train_app.command("anomaly")
def train_anomaly_cmd(
    model: str = typer.Option("efficientad_s", help="efficientad_s or efficientad_m."),
    data: Optional[Path] = typer.Option(None, help="MVTec AD-style folder (train/good, test/<defect>, ground_truth/); "
                                                   "default: a built-in category."),
    category: Optional[str] = typer.Option(None, help="Built-in category (brick, grass, gravel, tissue, stars), "
                                                      "or a category sub-folder of --data."),
    teacher: Optional[Path] = typer.Option(None, help="Pretrained teacher weights (nelson1425 or anomalib format). "
                                                      "Without it the teacher keeps random weights."),
    penalty_data: Optional[Path] = typer.Option(None, help="Folder of unrelated images for the penalty loss "
                                                           "(the paper: ImageNet). Without it the penalty is off."),
    steps: int = typer.Option(70_000, help="Training steps of one image each (paper: 70,000)."),
    imgsz: int = typer.Option(256, help="Square input size (multiple of 4, >= 256)."),
    lr: Optional[float] = typer.Option(None, help="Adam learning rate (default 1e-4; x0.1 for the last 5 %)."),
    seed: int = typer.Option(0, help="Seed for initialisation and augmentation."),
    workers: Optional[int] = typer.Option(None, help="Data-loader processes (default up to 4)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/anomaly/<model>[-N])."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
) -> None:
    """Train an EfficientAD detector on normal images; writes RUN_DIR/{best,last}.safetensors + .json."""
    from mobilevision.tasks.anomaly import AnomalyOptions, AnomalyTask, recipe

    options, config, run_dir = _run_setup(resume, out_dir, model, "anomaly", AnomalyOptions, lambda: (
        AnomalyOptions(model=model, data=str(data) if data else None, category=category,
                       teacher=str(teacher) if teacher else None,
                       penalty_data=str(penalty_data) if penalty_data else None, steps=steps, imgsz=imgsz),
        recipe(steps, lr=lr, seed=seed, workers=workers, device=device)))
    with err.status("reading the dataset"):
        task = AnomalyTask(options)
    err.print(f"training {options.model} on {task.data.name}: {len(task.train_paths)} train / {len(task.val_paths)} "
              f"validation normals at {options.imgsz} px, {config.epochs * task.steps_per_epoch} steps"
              f"{'' if options.teacher else ' (random teacher: pass --teacher for the paper setting)'}"
              f"{'' if options.penalty_data else ', no penalty images'} -> {run_dir}", markup=False, highlight=False)
    result = _fit(task, config, run_dir, resume, "anomaly")
    out.print(f"done: {result.last} (evaluate with `mobilevision eval anomaly --weights {result.last}`)",
              markup=False, highlight=False)


@train_app.command("anomaly-teacher")
def train_anomaly_teacher_cmd(
    model: str = typer.Option("pdn_s", help="Teacher to pretrain: pdn_s (EfficientAD-S) or pdn_m (EfficientAD-M)."),
    data: Optional[Path] = typer.Option(None, help="Folder of generic photos, searched recursively (the paper: "
                                                   "ImageNet train)."),
    extractor: str = typer.Option("wide_resnet101_2", help="Feature extractor to distil: wide_resnet101_2 (the "
                                                           "paper's) or wide_resnet50_2."),
    extractor_weights: Optional[Path] = typer.Option(None, help="Local torchvision-format state dict of the "
                                                                "extractor (IMAGENET1K_V1)."),
    steps: int = typer.Option(60_000, help="Training steps (paper: 60,000)."),
    batch_size: int = typer.Option(16, help="Global batch size (paper: 16; split over torchrun processes)."),
    imgsz: int = typer.Option(256, help="PDN input size (paper: 256)."),
    target_size: int = typer.Option(512, help="Extractor input size (paper: 512; twice --imgsz)."),
    norm_images: int = typer.Option(10_000, help="Images for the target's channel mean/std (paper: about 10,000)."),
    lr: Optional[float] = typer.Option(None, help="Adam learning rate (default 1e-4, constant)."),
    seed: int = typer.Option(0, help="Seed for initialisation and image sampling."),
    workers: Optional[int] = typer.Option(None, help="Data-loader processes (default up to 4)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    amp: bool = typer.Option(False, "--amp", help="Mixed precision (fp16 on CUDA, bf16 on CPU)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/anomaly_teacher/<model>[-N])."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
) -> None:
    """Pretrain an EfficientAD teacher by distilling a WideResNet's features (done once; then
    `mobilevision train anomaly --teacher RUN_DIR/last.safetensors`)."""
    from mobilevision.tasks.anomaly_teacher import TeacherOptions, TeacherPretrainTask, recipe

    options, config, run_dir = _run_setup(resume, out_dir, model, "anomaly_teacher", TeacherOptions, lambda: (
        TeacherOptions(model=model, data=str(data) if data else "", extractor=extractor,
                       extractor_weights=str(extractor_weights) if extractor_weights else None, steps=steps,
                       imgsz=imgsz, target_size=target_size, norm_images=norm_images, workers=workers),
        recipe(steps, batch_size=batch_size, lr=lr, seed=seed, workers=workers, device=device, amp=amp)))
    with err.status("loading the extractor and listing the images"):
        task = TeacherPretrainTask(options, batch_size=config.batch_size)
    is_main = os.environ.get("RANK", "0") == "0"
    if is_main:
        err.print(f"distilling {options.extractor} ({'+'.join(options.layers)} at {options.target_size} px) into a "
                  f"padded {options.model} at {options.imgsz} px: {len(task.train_paths)} train / "
                  f"{len(task.val_paths)} held-out images, {config.epochs * task.steps_per_epoch} steps x "
                  f"{config.batch_size}; target statistics on {options.norm_images} images first -> {run_dir}",
                  markup=False, highlight=False)
    result = _fit(task, config, run_dir, resume, "anomaly-teacher")
    if is_main:
        out.print(f"done: {result.last} (use it with `mobilevision train anomaly --model "
                  f"{options.model.replace('pdn_', 'efficientad_')} --teacher {result.last}`)",
                  markup=False, highlight=False)


@eval_app.command("anomaly")
def eval_anomaly_cmd(
    weights: Path = typer.Option(..., help="Trained detector, e.g. RUN_DIR/last.safetensors."),
    data: Optional[Path] = typer.Option(None, help="MVTec AD-style folder with test/ (default: the run's data)."),
    category: Optional[str] = typer.Option(None, help="Built-in category or category sub-folder of --data."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Folder for overlays and summary.json "
                                                               "(default: <weights stem>_eval beside the weights)."),
    overlays: bool = typer.Option(True, "--overlays/--no-overlays", help="Write a heat-map PNG per test image."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
) -> None:
    """Image AU-ROC, pixel AU-ROC and AU-PRO (30 % FPR) on a test set, heat-map overlays, summary JSON."""
    from mobilevision.tasks.anomaly import evaluate_detector

    with err.status("evaluating"):
        result = evaluate_detector(str(weights), data=str(data) if data else None, category=category,
                                   out_dir=str(out_dir) if out_dir else None, device=device, overlays=overlays)
    r = result.report
    table = Table(title=f"{result.model} on {result.data} ({r.n_good} good / {r.n_anomalous} anomalous)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("image AU-ROC", f"{r.image_auroc * 100:.2f} %")
    if r.pixel_auroc is not None:
        table.add_row("pixel AU-ROC", f"{r.pixel_auroc * 100:.2f} %")
        table.add_row(f"AU-PRO (FPR <= {r.max_fpr:g})", f"{r.au_pro * 100:.2f} %")
    for defect, v in r.per_defect.items():
        table.add_row(f"  {defect} image AU-ROC", f"{v * 100:.2f} %")
    out.print(table)
    err.print(f"wrote {result.summary}" + (f" and {len(result.overlays)} overlays" if result.overlays else ""),
              markup=False, highlight=False)


@train_app.command("isp")
def train_isp_cmd(
    model: str = typer.Option("efficientisp", help="efficientisp, robustisp or rmfa_net_tiny."),
    mode: str = typer.Option("paired", help="paired (L1 + SSIM on aligned pairs) or unpaired (the paper: content, "
                                            "TV, two texture and one colour discriminator, gradient-norm balanced)."),
    data: Optional[Path] = typer.Option(None, help="Zurich RAW-to-RGB folder (train/huawei_raw + train/canon) or a "
                                                   "built-in-style one; default: the built-in unprocessed photos."),
    steps: int = typer.Option(2000, help="Generator steps (batches)."),
    batch_size: int = typer.Option(32, help="Global batch size (paper: 32)."),
    vgg19_weights: Optional[Path] = typer.Option(None, help="Unpaired: VGG-19 for the content term (torchvision "
                                                            "state dict or imagenet-vgg-verydeep-19.mat)."),
    alexnet_weights: Optional[Path] = typer.Option(None, help="Unpaired: AlexNet for the texture discriminators "
                                                              "(torchvision or pyiqa LPIPS file)."),
    vit_weights: Optional[Path] = typer.Option(None, help="Unpaired: ViT-B/16 for the colour discriminator (Hugging "
                                                          "Face google/vit-base-patch16-224 or torchvision file)."),
    lr: Optional[float] = typer.Option(None, help="Adam learning rate (default 5e-4, betas 0.5/0.9, constant)."),
    seed: int = typer.Option(0, help="Seed for initialisation and sampling."),
    workers: Optional[int] = typer.Option(None, help="Data-loader processes (default up to 4)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/isp/<model>[-N])."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
) -> None:
    """Train a learned ISP (RAW -> RGB); writes RUN_DIR/{best,last}.safetensors (best = validation PSNR)."""
    from mobilevision.tasks.isp import IspOptions, IspTask, isp_recipe

    options, config, run_dir = _run_setup(resume, out_dir, model, "isp", IspOptions, lambda: (
        IspOptions(model=model, mode=mode, data=str(data) if data else None, steps=steps,
                   vgg19_weights=str(vgg19_weights) if vgg19_weights else None,
                   alexnet_weights=str(alexnet_weights) if alexnet_weights else None,
                   vit_weights=str(vit_weights) if vit_weights else None),
        isp_recipe(steps, batch_size=batch_size, lr=lr, seed=seed, workers=workers, device=device)))
    with err.status("reading the dataset"):
        task = IspTask(options, batch_size=config.batch_size)
    err.print(f"training {options.model} ({options.mode}) on {task.data.name}: {len(task.train_idx)} train / "
              f"{len(task.val_idx)} validation pairs, {config.epochs * task.steps_per_epoch} steps x {config.batch_size} "
              f"-> {run_dir}",
              markup=False, highlight=False)
    if options.mode == "unpaired":
        missing = [n for n, w in (("VGG-19", options.vgg19_weights), ("AlexNet", options.alexnet_weights),
                                  ("ViT-B/16", options.vit_weights)) if not w]
        if missing:
            err.print(f"note: {', '.join(missing)} randomly initialised (no weights given): the losses run, but the "
                      "paper's objective needs the pretrained networks; recorded in the run card",
                      markup=False, highlight=False)
    result = _fit(task, config, run_dir, resume, "isp")
    out.print(f"best validation PSNR {result.best_metric:.2f} dB at epoch {result.best_epoch}: {result.best} "
              f"(evaluate with `mobilevision eval isp --weights {result.best}`)", markup=False, highlight=False)


@eval_app.command("isp")
def eval_isp_cmd(
    weights: list[Path] = typer.Option(..., help="Trained ISP weights (repeatable: e.g. an unpaired and a paired run)."),
    data: Optional[Path] = typer.Option(None, help="Folder with test/ RAW + ground truth (default: the first run's)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Folder for summary.json and grid.png "
                                                               "(default: <first weights stem>_eval)."),
    grid_rows: int = typer.Option(4, help="Test images in the side-by-side grid (0: no grid)."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
) -> None:
    """PSNR / SSIM / MS-SSIM against ground truth, next to a naive demosaic; a side-by-side grid PNG."""
    from mobilevision.tasks.isp import evaluate_isp

    if grid_rows < 0:
        raise MobileVisionError("--grid-rows must be >= 0")
    with err.status("evaluating"):
        reports, summary, grid = evaluate_isp([str(w) for w in weights], data=str(data) if data else None,
                                              out_dir=str(out_dir) if out_dir else None, grid_rows=grid_rows,
                                              device=device)
    table = Table(title=f"RAW -> RGB on {reports[0].n_images} test images (8-bit outputs)")
    for col in ("pipeline", "PSNR dB", "SSIM", "MS-SSIM"):
        table.add_column(col, justify="left" if col == "pipeline" else "right")
    for r in reports:
        table.add_row(r.name, f"{r.psnr:.2f}", f"{r.ssim:.4f}", f"{r.ms_ssim:.4f}" if r.ms_ssim is not None else "-")
    out.print(table)
    err.print(f"wrote {summary}" + (f" and {grid}" if grid else ""), markup=False, highlight=False)


@train_app.command("landmarks")
def train_landmarks_cmd(
    role: str = typer.Option("student", help="teacher-tough (ground truth), teacher-tolerant (PCA soft landmarks) "
                                             "or student."),
    model: Optional[str] = typer.Option(None, help="Zoo landmark model (default: landmarks_effb3 for teachers, "
                                                   "landmarks_mnv2 for the student; see `mobilevision list --task landmarks`)."),
    kd_from: Optional[str] = typer.Option(None, help="Student: the two teachers' weights, TOUGH,TOLERANT (any order; "
                                                     "their run cards say which is which): train with KD-Loss."),
    data: Optional[Path] = typer.Option(None, help="300W (images + .pts, train/ + test/ or the official folders), WFLW "
                                                   "root or COFW .mat folder; default: the built-in procedural faces."),
    points: Optional[int] = typer.Option(None, help="68, 98 or 29: checked against the data."),
    epochs: Optional[int] = typer.Option(None, help="Epochs (paper: 150; default 150, with --resume: extend the run)."),
    batch_size: int = typer.Option(70, help="Global batch size (paper: 70)."),
    imgsz: int = typer.Option(224, help="Square input crop (paper: 224)."),
    lr: Optional[float] = typer.Option(None, help="Adam learning rate (default 1e-3, Keras decay 1e-4 per step)."),
    asm_variance: float = typer.Option(0.90, help="Tolerant teacher: shape-model variance kept (0.80 ... 0.97)."),
    dropout: Optional[float] = typer.Option(None, help="Head dropout (default: student 0.1, teachers 0.5)."),
    augmentation_factor: int = typer.Option(4, help="Augmented draws per face and epoch (reference: 300W 4, COFW 10)."),
    backbone_weights: Optional[Path] = typer.Option(None, help="torchvision ImageNet file for the trunk "
                                                               "(mobilenet_v2-*.pth / efficientnet_b3_*.pth; the paper trains from scratch)."),
    seed: int = typer.Option(0, help="Seed for initialisation, shuffling and augmentation."),
    workers: Optional[int] = typer.Option(None, help="Data-loader processes (default up to 4)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/landmarks/<model>[-N])."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
) -> None:
    """Train a landmark teacher or the student (MSE, or KD-Loss with --kd-from); best = lowest validation NME."""
    from mobilevision.tasks.landmarks import DEFAULT_MODEL, LandmarkOptions, LandmarkTask, landmark_recipe

    name = model or DEFAULT_MODEL.get(role, "landmarks")
    options, config, run_dir = _run_setup(resume, out_dir, name, "landmarks", LandmarkOptions, lambda: (
        LandmarkOptions(role=role, model=model, data=str(data) if data else None, points=points,
                        kd_from=[p.strip() for p in kd_from.split(",") if p.strip()] if kd_from else None,
                        asm_variance=asm_variance, dropout=dropout, size=imgsz,
                        augmentation_factor=augmentation_factor,
                        backbone_weights=str(backbone_weights) if backbone_weights else None),
        landmark_recipe(epochs or 150, batch_size=batch_size, lr=lr, seed=seed, workers=workers, device=device)))
    if resume and epochs:
        config.epochs = epochs
    with err.status("reading the dataset"):
        task = LandmarkTask(options)
    err.print(f"training {options.model} as {options.role}{' with KD-Loss' if options.kd_from else ''}: "
              f"{len(task.train_samples)} train / {len(task.val_samples)} validation faces x "
              f"{options.augmentation_factor} augmentations, {task.points} points, {options.size}px -> {run_dir}",
              markup=False, highlight=False)
    result = _fit(task, config, run_dir, resume, "landmarks")
    out.print(f"best validation NME {result.best_metric:.2f} % at epoch {result.best_epoch}: {result.best} "
              f"(evaluate with `mobilevision eval landmarks --weights {result.best}`)", markup=False, highlight=False)


@eval_app.command("landmarks")
def eval_landmarks_cmd(
    weights: list[Path] = typer.Option(..., help="Trained landmark weights (repeatable: student, student + KD, teachers)."),
    data: Optional[Path] = typer.Option(None, help="Dataset with a test split (default: the first run's data)."),
    normaliser: str = typer.Option("inter_ocular", help="inter_ocular (outer eye corners) or inter_pupil."),
    crop: str = typer.Option("extent", help="extent (GT landmarks + margin, the author's protocol) or box (the "
                                            "dataset's face box)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Folder for summary.json, ced.png and overlays.png "
                                                               "(default: <first weights stem>_eval)."),
    overlays: int = typer.Option(8, help="Test faces in the overlay grid (0: none)."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
) -> None:
    """NME, failure rate at 0.1 and AUC@0.1 on the test faces; a CED curve and landmark overlays."""
    from mobilevision.tasks.landmarks import evaluate_landmarks

    if overlays < 0:
        raise MobileVisionError("--overlays must be >= 0")
    with err.status("evaluating"):
        reports, summary, ced, grid = evaluate_landmarks([str(w) for w in weights], data=str(data) if data else None,
                                                         out_dir=str(out_dir) if out_dir else None,
                                                         normaliser=normaliser, crop=crop, overlays=overlays,
                                                         device=device)
    table = Table(title=f"landmarks on {reports[0].images} test faces ({normaliser.replace('_', '-')} NME, {crop} crop)")
    for col in ("model", "NME %", "FR@0.1 %", "AUC@0.1", "AUC (Fard 2022)"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in reports:
        table.add_row(r.name, f"{r.nme:.2f}", f"{r.failure_rate:.2f}", f"{r.auc:.4f}", f"{r.auc_fard2022:.4f}")
    out.print(table)
    err.print(f"wrote {summary}, {ced}" + (f" and {grid}" if grid else ""), markup=False, highlight=False)


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
