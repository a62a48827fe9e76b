"""``export(model_or_name, target, ...)``: convert, embed metadata, prove parity, write atomically.

Per target: convert in memory -> save into a scratch folder inside ``out_dir`` -> run the
saved file in its own runtime and compare with PyTorch -> rewrite it with the parity report
in its metadata -> re-run to prove the rewrite changed nothing -> move it (and its sidecar
``<artifact>.json``) into place. A failed parity check raises ExportParityError and leaves
nothing under the final name.
"""
from __future__ import annotations

import datetime as _dt
import importlib.metadata
import shutil
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import mobilevision
from mobilevision.atomic_io import (atomic_write_text, folder_lock, make_scratch_dir, move_into_place,
                                   remove_stale_scratch)
from mobilevision.errors import ArtifactError, ExportError, ExportParityError, MobileVisionError, UnknownTarget
from mobilevision.registry import ModelCard

from .integrity import artifact_digests, companions, sidecar_text
from .interface import artifact_metadata, to_artifact_inputs, to_artifact_outputs
from .metadata import LandmarkOutput, ModelMetadata, Preprocessing, RawInput, TensorSpec, sidecar_path
from .parity import INT8_BROKEN_COSINE, TOLERANCES, ParityReport, compare, parity_inputs
from .quantize import CALIB_MIN_IMAGES, AccuracyReport
from .targets import DEFAULT_TARGET, TARGETS, get_target
from .targets.base import ExportOptions

PRECISIONS = ("fp32", "fp16", "int8", "bf16")   # bf16: fp32 weights, computed in bf16 (OpenVINO)

Progress = Callable[[str], None]
# torch.export and torch's flop counter push process-wide dispatch modes: two threads tracing at once corrupt
# each other's ("ProxyTorchDispatchMode slot already occupied"). Conversions take turns; the rest runs in parallel.
_TRACING = threading.Lock()


@dataclass
class ExportResult:
    """One written artifact and the proof that it computes what the PyTorch model computes."""

    model: str
    target: str
    precision: str
    path: Path
    files: list[Path]
    sidecar: Path
    metadata: ModelMetadata
    parity: ParityReport
    seconds: float
    accuracy: "AccuracyReport | None" = None     # quantised exports: the task metric before / after
    warnings: list[str] = field(default_factory=list)

    @property
    def size_bytes(self) -> int:
        """Bytes on disk of all files of the artifact (a .mlpackage is a folder)."""
        return files_size(self.files)


def files_size(files: list[Path]) -> int:
    """Bytes on disk of files and folders (a .mlpackage is a folder)."""
    return sum(f.stat().st_size if f.is_file() else
               sum(x.stat().st_size for x in f.rglob("*") if x.is_file()) for f in files)


@dataclass
class QuantizeOptions:
    """Calibration and accuracy reporting of fp16 / bf16 / int8 exports (see ``export/quantize.py``).

    ``calib_data`` / ``eval_data``: the task's dataset folder (as ``mobilevision train <task> --data``),
    for calibration also a flat folder of images; None: the data the weights were trained on (their run
    card), else the task's built-in data. ``keep_float``: PyTorch module paths left in float (int8).
    ``accuracy``: measure the task metric before and after (fp16, bf16 and int8).
    """

    calib_data: str | None = None
    calib_n: int = 300
    keep_float: tuple[str, ...] = ()
    eval_data: str | None = None
    eval_n: int = 200
    category: str | None = None          # anomaly: the category inside a folder of categories
    accuracy: bool = True
    seed: int = 0
    fp32_accuracy: bool = False          # also measure fp32 artifacts (benchmarks compare all precisions)


@dataclass
class ExportFailure:
    model: str
    target: str
    precision: str
    error: str


@dataclass
class PreparedModel:
    """A model ready to export: module in eval mode, its card, and the metadata common to all targets."""

    module: torch.nn.Module
    card: ModelCard
    input_size: tuple[int, int, int]
    base: ModelMetadata
    example: torch.Tensor = field(repr=False)
    trained_on: dict = field(default_factory=dict)   # the run card's task options (data, category), if any
    samples: dict = field(default_factory=dict, repr=False)   # task data read once for several targets


def _tool_versions(target) -> dict[str, str]:
    """mobilevision's, torch's and the target's own tools' versions (its ``tools`` attribute)."""
    versions = {"mobilevision": mobilevision.__version__, "torch": torch.__version__}
    for pkg in getattr(target, "tools", ()):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return versions


def prepare(model_or_name: str | torch.nn.Module, weights: str | None = None, imgsz: int | None = None,
            num_classes: int | None = None, checkpoint_key: str | None = None, seed: int = 0) -> PreparedModel:
    """Build (or adopt) the module and the target-independent part of its metadata."""
    from mobilevision.checkpoints import sha256_of
    from mobilevision.complexity import count_macs, count_params

    if isinstance(model_or_name, str):
        torch.manual_seed(seed)  # random-init exports are reproducible
        module = mobilevision.create_model(model_or_name, weights=weights, num_classes=num_classes,
                                           checkpoint_key=checkpoint_key)
        card = module.model_card
    elif isinstance(model_or_name, torch.nn.Module):
        card = getattr(model_or_name, "model_card", None)
        if card is None:
            raise ExportError("this module has no model card: pass a zoo model name, or a model made by "
                              "mobilevision.create_model, or set module.model_card = ModelCard(...)")
        module = model_or_name
    else:
        raise ExportError(f"expected a model name or nn.Module, got {type(model_or_name).__name__}")
    module.eval()
    c = card.input_size[0]
    h = w = int(imgsz) if imgsz is not None else None
    if h is not None and not 32 <= h <= 4096:
        raise ExportError(f"--imgsz {h} is out of range: use 32..4096 pixels")
    size = (c, h or card.input_size[1], w or card.input_size[2])
    n_cls = card.num_classes
    with torch.no_grad():
        example = torch.randn(1, *size, generator=torch.Generator().manual_seed(seed))
        out = module(example)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    if card.task == "classify" and n_cls and int(np.prod(outs[0].shape[1:])) != n_cls:
        raise ExportError(f"{card.name}: the card says {n_cls} classes but the model's first output is "
                          f"{list(outs[0].shape)}: give num_classes (--num-classes) that matches the head")
    with _TRACING:
        macs = count_macs(module, size)
    raw = (RawInput(black_level=list(card.raw_black_level), white_level=float(card.raw_white_level),
                    clip=bool(card.raw_clip)) if card.raw_black_level is not None else None)
    pre = None if raw is not None else Preprocessing.for_card(card, size[1], size[2])
    landmarks = _landmark_output(outs[0].shape[1]) if card.task == "landmarks" else None
    labels = list(card.labels) if card.labels else None
    base = ModelMetadata(
        task=card.task, model=card.name, target="", precision="",
        inputs=[TensorSpec(card.input_names[0], [1, *size], "float32", card.layout)],
        outputs=[TensorSpec(n, list(o.shape), "float32") for n, o in zip(card.output_names, outs)],
        preprocessing=pre, raw=raw, landmarks=landmarks, labels=labels, label_set=card.label_set,
        num_classes=n_cls if card.task == "classify" else None,
        params=count_params(module), macs=macs,
        weights=Path(weights).name if weights else None,
        weights_sha256=sha256_of(weights) if weights else None)
    trained_on = {}
    if weights:
        from mobilevision.checkpoints import read_run_card

        run = read_run_card(weights) if Path(weights).suffix == ".safetensors" else None
        trained_on = dict((run or {}).get("task_options", {}) or {})
    return PreparedModel(module, card, size, base, example, trained_on)


def _landmark_output(points: int) -> LandmarkOutput:
    from mobilevision.data.landmarks import FLIP_PAIRS, INTER_OCULAR

    return LandmarkOutput(points=points, flip_pairs=[list(p) for p in FLIP_PAIRS.get(points, ())],
                          eye_corners=list(INTER_OCULAR[points]) if points in INTER_OCULAR else None)


def _artifact_stem(prep: PreparedModel, precision: str, name: str | None) -> str:
    if name:
        return name
    stem = prep.card.name
    if prep.input_size[1:] != prep.card.input_size[1:]:
        stem += f"_{prep.input_size[1]}"
    return stem + ("" if precision == "fp32" else f"_{precision}")


def _task_samples(prep: PreparedModel, md: ModelMetadata, split: str, q: QuantizeOptions):
    """Calibration ("train") or held-out samples of the model's task, read once per prepared model."""
    from .quantize import task_samples

    given = q.calib_data if split == "train" else q.eval_data
    if split == "heldout" and given is None and q.calib_data is not None:
        from .quantize import is_flat_folder

        if Path(q.calib_data).is_dir() and not is_flat_folder(q.calib_data):
            given = q.calib_data   # a dataset folder: its held-out split
    data = given if given is not None else prep.trained_on.get("data")
    category = q.category or (prep.trained_on.get("category") if given is None else None)
    n = q.calib_n if split == "train" else q.eval_n
    key = (split, data, category, n, q.seed, tuple(md.inputs[0].shape))
    if key not in prep.samples:
        prep.samples[key] = task_samples(md, data, split, n, seed=q.seed, category=category)
    return prep.samples[key]


def _run_artifact(path: Path, runtime: str, samples: list[list[np.ndarray]],
                  precision: str) -> tuple[list[list[np.ndarray]], str | None]:
    """Outputs of ``samples`` run as ``mobilevision.runtime.load`` runs an artifact stored at ``precision``,
    and what the runtime computed in where it reads that back (OpenVINO), else None."""
    from mobilevision.runtime.api import run_options
    from mobilevision.runtime.backends import open_backend

    backend = open_backend(path, backend=runtime, **run_options(runtime, precision))
    try:
        computed = backend.precision() if hasattr(backend, "precision") else None
        return [[np.array(o) for o in backend.run(s)] for s in samples], computed
    finally:
        backend.close()


def _check_structure(structure: dict, md: ModelMetadata) -> None:
    """Without a runtime (Core ML off macOS): the saved program must have the promised interface."""
    for kind, got, want in (("input", structure.get("inputs", []), md.inputs),
                            ("output", structure.get("outputs", []), md.outputs)):
        got_sig = [(f["name"], list(f["shape"])) for f in got]
        want_sig = [(t.name, list(t.shape)) for t in want]
        if got_sig != want_sig:
            raise ExportParityError(f"{md.target} program {kind}s are {got_sig}, expected {want_sig}")
    if not structure.get("ops"):
        raise ExportParityError(f"{md.target} program has no operations")


def export_prepared(prep: PreparedModel, target: str, precision: str = "fp32", out_dir: str | Path = "exports",
                    name: str | None = None, parity_samples: int = 4, on_progress: Progress | None = None,
                    quantize: QuantizeOptions | None = None, layout: str | None = None) -> ExportResult:
    """Export an already-prepared model to one target (see module docstring for the steps).

    The artifact presents the interface its target declares (``export/interface.py``: TFLite takes an NHWC
    image, Core ML an image it normalises itself, their classifiers end in a softmax); ``layout`` ("NCHW" /
    "NHWC") overrides the target's default image layout where it can write both. Samples and references are
    made in the model's own terms and converted to the artifact's for every comparison.

    fp16 / bf16 / int8 exports also measure the task metric before and after on held-out data (``quantize``;
    defaults: the built-in data of the task, or what the weights were trained on); int8 calibrates on the
    task's training images. A loss past the task's threshold is returned in ``warnings``, with the layers
    to keep in float."""
    say = on_progress or (lambda msg: None)
    q = quantize or QuantizeOptions()
    if precision not in PRECISIONS:
        raise UnknownTarget(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    tgt = get_target(target)
    if precision not in tgt.precisions:
        raise UnknownTarget(f"target {target} does not support {precision}: use one of {', '.join(tgt.precisions)}")
    if q.keep_float and precision != "int8":
        raise ExportError("--keep-float applies to --precision int8 only")
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = _artifact_stem(prep, precision, name)
    model_md = replace(prep.base, target=target, precision=precision, tools=_tool_versions(tgt),
                       created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    md = artifact_metadata(model_md, tgt, layout)   # what the artifact presents, and what its metadata says
    try:
        md.validate()   # what every runtime will check on load, checked before anything is converted
    except ArtifactError as e:
        raise ExportError(f"{prep.card.name}: {e}".replace("; re-export the artifact", "; fix the model card")) from e
    warnings: list[str] = []
    calibration = None
    if precision == "int8" and getattr(tgt, "int8_calibrates", True):
        say(f"{target} int8: reading calibration data")
        calibration = _task_samples(prep, model_md, "train", q)
        if len(calibration.inputs) < CALIB_MIN_IMAGES:
            warnings.append(f"only {len(calibration.inputs)} calibration inputs ({calibration.source}); int8 ranges "
                            f"from fewer than {CALIB_MIN_IMAGES} are unreliable: give more with --calib-data / "
                            f"--calib-n")
    _check_destination(out / f"{stem}{tgt.suffix}", getattr(tgt, "directory", False))
    remove_stale_scratch(out)   # what killed exports into this folder left behind
    work = make_scratch_dir(out, f".{stem}.{target}.")
    try:
        say(f"{target} {precision}: converting")
        options = ExportOptions(precision=precision, input_names=prep.card.input_names,
                                output_names=tuple(o.name for o in md.outputs), workdir=work,
                                calibration=[to_artifact_inputs([x], model_md, md)[0] for x in calibration.inputs]
                                if calibration else [],
                                keep_float=tuple(dict.fromkeys((*prep.card.int8_keep_float, *q.keep_float)))
                                if precision == "int8" else (), metadata=md,
                                model_metadata=model_md)
        try:
            with _TRACING:
                handle = tgt.convert(prep.module, prep.example, options)
        except ImportError as e:
            raise ExportError(f"target {target} needs '{e.name}', which is not installed: "
                              "pip install 'mobilevision[export]'") from e
        if precision != "fp32":
            md.quantization = {**options.quantization}
            if calibration is not None:
                md.quantization["calibration"] = {"source": calibration.source, "inputs": len(calibration.inputs)}
        path = work / f"{stem}{tgt.suffix}"
        tgt.save(handle, path, md.to_json())
        structure = tgt.validate(path)
        held = None
        if q.accuracy and (precision != "fp32" or q.fp32_accuracy):
            say(f"{target} {precision}: reading held-out data")
            held = _task_samples(prep, model_md, "heldout", q)
        # int8 is checked on the task's own images: its ranges come from them, and noise images lie outside
        samples = ([[x] for x in held.inputs[:parity_samples]] if precision == "int8" and held is not None
                   else [[x] for x in calibration.inputs[:parity_samples]] if precision == "int8" and calibration
                   else parity_inputs(model_md, n=parity_samples))
        with torch.no_grad():
            reference = [to_artifact_outputs([o.numpy() for o in (lambda r: r if isinstance(r, (tuple, list)) else [r])(
                prep.module(torch.from_numpy(s[0])))], model_md, md) for s in samples]
        samples = [to_artifact_inputs(s, model_md, md) for s in samples]
        tol = TOLERANCES[precision]
        report = ParityReport(target=target, runtime=tgt.runtime, precision=precision, samples=len(samples),
                              numeric=False, passed=False, tolerance=vars(tol).copy(), structure=structure)
        note = tgt.numeric_parity_unavailable()
        actual = None
        if note is None:
            say(f"{target} {precision}: checking parity in {tgt.runtime}")
            actual, report.computed_precision = _run_artifact(path, tgt.runtime, samples, precision)
            report.outputs, report.top1_agreement, report.passed = compare(
                reference, actual, [o.name for o in md.outputs], precision, md.task,
                probabilities=md.scores == "probabilities")
            report.numeric = True
            if precision == "bf16" and report.computed_precision != "bf16":
                warnings.append(f"this CPU computed the bf16 check in {report.computed_precision} (no bf16 support "
                                f"here): the artifact computes in bf16 only on CPUs with AVX512-BF16 / AMX")
            worst = min(o.cosine for o in report.outputs)
            if precision == "int8" and not report.passed and worst >= INT8_BROKEN_COSINE:
                warnings.append(f"int8 outputs differ from fp32 beyond the int8 tolerance: {report.failure()}")
            elif precision == "int8" and not report.passed and calibration is not None:
                raise ExportParityError(f"{stem}{tgt.suffix} is broken by int8 (cosine with fp32 under "
                                        f"{INT8_BROKEN_COSINE}): {report.failure()}; nothing was written"
                                        f"{_keep_float_hint(prep, calibration, say)}")
            elif not report.passed:
                raise ExportParityError(f"{stem}{tgt.suffix} fails parity against PyTorch: {report.failure()}; "
                                        "nothing was written (try --precision fp32, or report the model)")
        else:
            _check_structure(structure, replace(md, target=target))
            report.passed, report.note = True, note
        md.parity = report.to_dict()
        accuracy = None
        if held is not None:
            say(f"{target} {precision}: measuring {md.task} accuracy on {len(held.inputs)} held-out inputs")
            accuracy = _measure(prep, model_md, md, held, path, tgt, note,
                                files_size([path, *[c for c in companions(path) if c.is_file()]]))
            if accuracy.exceeded and precision == "int8" and calibration is not None:
                from .quantize import layer_sensitivity

                say(f"{target} int8: ranking layers by int8 sensitivity")
                accuracy.sensitive_layers = layer_sensitivity(prep.module, calibration.inputs[:4])
            if md.quantization is not None:   # fp32 (benchmarks only): returned, not embedded
                md.quantization["accuracy"] = accuracy.to_dict()
            if accuracy.warning():
                warnings.append(accuracy.warning())
        say(f"{target} {precision}: writing")
        files = tgt.save(handle, path, md.to_json())
        warnings += tgt.warnings() if hasattr(tgt, "warnings") else []
        if actual is not None:  # the final bytes must compute exactly what was checked
            again, _ = _run_artifact(path, tgt.runtime, samples, precision)
            if not all(np.array_equal(a, b) for s1, s2 in zip(actual, again) for a, b in zip(s1, s2)):
                raise ExportError(f"{target}: rewriting the metadata changed the outputs; nothing was written")
        # The sidecar is the manifest: the SHA-256 of every file, renamed into place last. A run killed
        # between two renames leaves files that disagree with the sidecar, which loading refuses.
        atomic_write_text(work / sidecar_path(path).name, sidecar_text(md, artifact_digests(path)))
        final = out / path.name
        with folder_lock(out):   # two exports of one name into one folder: one set of renames after the other
            for f in reversed(files):  # companions (.bin) first, the entry file, then the sidecar
                move_into_place(f, out / f.name)
                _after_rename(out / f.name)
            sidecar = move_into_place(work / sidecar_path(path).name, sidecar_path(final))
        return ExportResult(prep.card.name, target, precision, final, [out / f.name for f in files],
                            sidecar, md, report, time.perf_counter() - t0, accuracy, warnings)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _keep_float_hint(prep: PreparedModel, calibration, say: Progress) -> str:
    """'; the layers that lose most ...: --keep-float ...' for an int8 export that failed."""
    from .quantize import keep_float_hint, layer_sensitivity

    say("int8: ranking layers by int8 sensitivity")
    return keep_float_hint(layer_sensitivity(prep.module, calibration.inputs[:4], top=3)) or \
        "; try --precision fp16"


def _check_destination(final: Path, folder: bool) -> None:
    """Refuse, before converting, a final name taken by something the export would not replace."""
    for f in [final, *companions(final), sidecar_path(final)]:
        if f.is_symlink() or not f.exists():
            continue
        if f.is_dir() != (folder and f == final):
            raise ExportError(f"{f} exists and is {'a folder' if f.is_dir() else 'a file'}, where the export writes "
                              f"its {'package folder' if folder and f == final else 'file'}: move it away, or export "
                              f"with another --name / --out")


def _after_rename(path: Path) -> None:
    """Fault-injection point between two renames of an export (tests kill the process here)."""


def _measure(prep: PreparedModel, model_md: ModelMetadata, md: ModelMetadata, held, path: Path, tgt,
             unavailable: str | None, size_bytes: int):
    from .quantize import measure_accuracy

    def run(inputs):
        return _run_artifact(path, tgt.runtime, [to_artifact_inputs([x], model_md, md) for x in inputs],
                             md.precision)[0]

    return measure_accuracy(prep.module, md, held, run if unavailable is None else None, size_bytes,
                            unavailable=unavailable, as_artifact=lambda outs: to_artifact_outputs(outs, model_md, md))


def resolve_targets(target: str | list[str]) -> list[str]:
    names = list(TARGETS) if target == "all" else ([target] if isinstance(target, str) else list(target))
    for n in names:
        if n not in TARGETS:
            raise UnknownTarget(f"unknown target {n!r}: choose one of {', '.join(TARGETS)} or 'all'")
    return names


def export(model_or_name: str | torch.nn.Module, target: str | None = None, *, weights: str | None = None,
           imgsz: int | None = None, precision: str = "fp32", out_dir: str | Path = "exports",
           num_classes: int | None = None, checkpoint_key: str | None = None, name: str | None = None,
           on_progress: Progress | None = None, quantize: QuantizeOptions | None = None,
           layout: str | None = None) -> ExportResult:
    """Export one model to one target (default: the registry's ``DEFAULT_TARGET``); raises ExportParityError if
    the artifact disagrees with PyTorch."""
    target = target or DEFAULT_TARGET
    if target == "all":
        raise UnknownTarget("export() writes one target; use export_all() for 'all'")
    (t,) = resolve_targets(target)
    prep = prepare(model_or_name, weights=weights, imgsz=imgsz, num_classes=num_classes,
                   checkpoint_key=checkpoint_key)
    return export_prepared(prep, t, precision, out_dir, name=name, on_progress=on_progress, quantize=quantize,
                           layout=layout)


def export_all(model_or_name: str | torch.nn.Module, targets: str | list[str] = "all", *,
               precisions: tuple[str, ...] = ("fp32",), weights: str | None = None, imgsz: int | None = None,
               out_dir: str | Path = "exports", num_classes: int | None = None, checkpoint_key: str | None = None,
               on_progress: Progress | None = None, quantize: QuantizeOptions | None = None,
               layout: str | None = None) -> list[ExportResult | ExportFailure]:
    """Export to several targets; one target's failure is recorded and the others still run. ``layout`` applies
    to the targets that can write it (the others keep their own); ExportError when none can."""
    names = resolve_targets(targets)
    writes = {t: layout is None or layout.upper() in getattr(get_target(t), "layouts", ("NCHW",)) for t in names}
    if layout is not None and not any(writes.values()):
        raise ExportError(f"no target among {', '.join(names)} writes image inputs as {layout!r}: drop --layout")
    prep = prepare(model_or_name, weights=weights, imgsz=imgsz, num_classes=num_classes,
                   checkpoint_key=checkpoint_key)
    results: list[ExportResult | ExportFailure] = []
    for precision in precisions:
        for t in names:
            try:
                results.append(export_prepared(prep, t, precision, out_dir, on_progress=on_progress,
                                               quantize=quantize, layout=layout if writes[t] else None))
            except MobileVisionError as e:
                results.append(ExportFailure(prep.card.name, t, precision, str(e)))
    return results
