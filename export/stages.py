"""The export pipeline as named stages, each a function of one ``ArtifactRecord``.

    plan -> calibrate -> convert -> save -> validate -> parity -> accuracy -> speed -> finalise

``plan`` checks what was asked and builds the record (the artifact's metadata, a scratch folder inside the
output folder); each later stage reads what the earlier ones put in the record and adds its own part, so a
test can run any prefix of the pipeline and look at the record. Only ``finalise`` touches the final names:
it rewrites the artifact with the parity report in its metadata, re-runs it to prove the rewrite changed
nothing, writes the sidecar (the SHA-256 of every file) and renames everything into place, the sidecar last.
A stage that fails raises; ``export_prepared`` then removes the scratch folder and nothing is left under a
final name. No stage names a format: what differs between formats is the target's (``export/targets``).
"""
from __future__ import annotations

import datetime as _dt
import importlib.metadata
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

import mobilevision
from mobilevision.atomic_io import (atomic_write_text, folder_lock, make_scratch_dir, move_into_place,
                                   remove_stale_scratch)
from mobilevision.errors import ArtifactError, ExportError, ExportParityError, UnknownTarget

from .integrity import artifact_digests, companions, sidecar_text
from .interface import artifact_metadata, to_artifact_inputs, to_artifact_outputs
from .metadata import ModelMetadata, sidecar_path
from .parity import INT8_BROKEN_COSINE, TOLERANCES, ParityReport, compare, parity_inputs
from .quantize import CALIB_MIN_IMAGES, AccuracyReport, degenerate_outputs, torch_outputs
from .speed import SpeedReport
from .targets import get_target
from .targets.base import ExportOptions

if TYPE_CHECKING:
    from .api import PreparedModel

PRECISIONS = ("fp32", "fp16", "int8", "bf16")   # bf16: fp32 weights, computed in bf16 (OpenVINO)
DEGENERATE_PROBES = 8   # calibration inputs run through fp32 PyTorch to see whether its outputs carry a signal

Progress = Callable[[str], None]


class Notice(str):
    """A progress message the user should keep (a long wait and how to avoid it), not just a status update."""
# torch.export and torch's flop counter push process-wide dispatch modes: two threads tracing at once corrupt
# each other's ("ProxyTorchDispatchMode slot already occupied"). Conversions take turns; the rest runs in parallel.
TRACING = threading.Lock()


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
    speed: bool = True                   # int8: time it against its fp32 program in the runtime (export/speed.py)


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
    speed: "SpeedReport | None" = None           # int8: its latency against its fp32 program, same runtime

    @property
    def size_bytes(self) -> int:
        """Bytes on disk of all files of the artifact (a .mlpackage is a folder)."""
        return files_size(self.files)


def files_size(files: list[Path]) -> int:
    """Bytes on disk of files and folders (a .mlpackage is a folder)."""
    return sum(f.stat().st_size if f.is_file() else
               sum(x.stat().st_size for x in f.rglob("*") if x.is_file()) for f in files)


@dataclass
class ArtifactRecord:
    """What the stages pass along: the request, then each stage's product."""

    prep: "PreparedModel"
    target: Any                    # the target object (export/targets)
    precision: str
    out: Path
    stem: str
    q: QuantizeOptions
    model_md: ModelMetadata        # the model's own view (NCHW, normalised floats, logits)
    md: ModelMetadata              # what the artifact presents, and what its metadata says
    parity_samples: int = 4
    say: Progress = field(default=lambda msg: None, repr=False)
    dynamic_batch: bool = False    # the artifact takes any batch size; parity also runs a batch of several
    t0: float = field(default_factory=time.perf_counter)
    work: Path | None = None       # scratch folder inside ``out``
    warnings: list[str] = field(default_factory=list)
    calibration: Any = None        # TaskSamples of the training split (int8)
    degenerate: str | None = None  # why the fp32 outputs carry no signal for int8 (untrained weights), if so
    held: Any = None               # TaskSamples of the held-out split (metric)
    options: ExportOptions | None = None
    handle: Any = None             # the converted program, in memory
    path: Path | None = None       # the artifact in the scratch folder
    structure: dict = field(default_factory=dict)
    samples: list[list[np.ndarray]] = field(default_factory=list, repr=False)    # artifact-side inputs
    reference: list[list[np.ndarray]] = field(default_factory=list, repr=False)  # PyTorch's, artifact-side
    actual: list[list[np.ndarray]] | None = field(default=None, repr=False)      # the runtime's
    report: ParityReport | None = None
    accuracy: AccuracyReport | None = None
    speed: SpeedReport | None = None
    files: list[Path] = field(default_factory=list)
    result: ExportResult | None = None


# ---------------------------------------------------------------- stages

def plan(prep: "PreparedModel", target: str, precision: str, out_dir: str | Path, name: str | None,
         q: QuantizeOptions, layout: str | None, parity_samples: int = 4, say: Progress | None = None,
         dynamic_batch: bool = False) -> ArtifactRecord:
    """Check the request against the target and the model before anything is converted; the record."""
    if precision not in PRECISIONS:
        raise UnknownTarget(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    tgt = get_target(target)
    if precision not in tgt.precisions:
        raise UnknownTarget(f"target {target} does not support {precision}: use one of {', '.join(tgt.precisions)}")
    why = tgt.unavailable() if hasattr(tgt, "unavailable") else None
    if why:
        raise ExportError(f"target {target} cannot export on this machine: {why}")
    if precision == "int8" and len(prep.base.inputs) != 1:
        raise ExportError(f"int8 calibrates on the task's images, and this model takes {len(prep.base.inputs)} "
                          "inputs: export it at fp32 or fp16")
    if q.keep_float and precision != "int8":
        raise ExportError("--keep-float applies to --precision int8 only")
    if dynamic_batch and not getattr(tgt, "dynamic_batch", False):
        raise ExportError(f"target {target} writes batch-1 artifacts only: drop --dynamic-batch for it")
    if dynamic_batch and prep.fixed_batch:
        raise ExportError(prep.fixed_batch)
    if dynamic_batch and precision == "int8":
        raise ExportError("int8 artifacts are calibrated and checked at batch 1: drop --dynamic-batch for -p int8")
    out = Path(out_dir)
    stem = artifact_stem(prep, precision, name)
    model_md = replace(prep.base, target=target, precision=precision, tools=tool_versions(tgt),
                       created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    md = artifact_metadata(model_md, tgt, layout)
    if dynamic_batch:   # -1: any batch size, in every input and every batched output
        md.inputs = [replace(t, shape=[-1, *t.shape[1:]]) for t in md.inputs]
        md.outputs = [replace(t, shape=[-1, *t.shape[1:]]) if t.shape[:1] == [1] else t for t in md.outputs]
    try:
        md.validate()   # what every runtime will check on load, checked before anything is converted
    except ArtifactError as e:
        raise ExportError(f"{prep.card.name}: {e}".replace("; re-export the artifact", "; fix the model card")) from e
    check_destination(out / f"{stem}{tgt.suffix}", getattr(tgt, "directory", False))
    return ArtifactRecord(prep, tgt, precision, out, stem, q, model_md, md, parity_samples,
                          say or (lambda msg: None), dynamic_batch=dynamic_batch)


def calibrate(r: ArtifactRecord) -> None:
    """int8 on a target that calibrates: the task's training inputs (a warning when there are few)."""
    if r.precision != "int8" or not getattr(r.target, "int8_calibrates", True):
        return
    r.say(f"{r.target.name} int8: reading calibration data")
    r.calibration = task_samples(r.prep, r.model_md, "train", r.q)
    if len(r.calibration.inputs) < CALIB_MIN_IMAGES:
        r.warnings.append(f"only {len(r.calibration.inputs)} calibration inputs ({r.calibration.source}); int8 "
                          f"ranges from fewer than {CALIB_MIN_IMAGES} are unreliable: give more with --calib-data "
                          f"/ --calib-n")
    r.degenerate = degenerate_outputs(torch_outputs(r.prep.module, r.calibration.inputs[:DEGENERATE_PROBES]))
    if r.degenerate:
        r.warnings.append(f"{r.degenerate}: int8 needs trained weights (give --weights), or export fp32 / fp16")


def convert(r: ArtifactRecord) -> None:
    """The target converts the module into its program, in memory (one conversion at a time per process)."""
    r.say(f"{r.target.name} {r.precision}: converting")
    keep = (*r.prep.card.int8_keep_float, *r.q.keep_float) if r.precision == "int8" else ()
    r.options = ExportOptions(
        precision=r.precision, input_names=tuple(i.name for i in r.md.inputs), output_names=tuple(o.name for o in r.md.outputs),
        workdir=r.work, calibration=[to_artifact_inputs([x], r.model_md, r.md)[0] for x in r.calibration.inputs]
        if r.calibration else [], keep_float=tuple(dict.fromkeys(keep)), metadata=r.md, model_metadata=r.model_md,
        dynamic_batch=r.dynamic_batch, max_batch=r.prep.max_batch)
    try:
        with TRACING:
            r.handle = r.target.convert(r.prep.module, r.prep.example if len(r.prep.examples) == 1
                                        else r.prep.examples, r.options)
    except ImportError as e:
        raise ExportError(f"target {r.target.name} needs '{e.name}', which is not installed: "
                          "pip install 'mobilevision[export]'") from e
    if r.precision != "fp32":
        r.md.quantization = {**r.options.quantization}
        if r.calibration is not None:
            r.md.quantization["calibration"] = {"source": r.calibration.source, "inputs": len(r.calibration.inputs)}


def save(r: ArtifactRecord) -> None:
    """The program written into the scratch folder with the metadata so far (parity comes later)."""
    r.path = r.work / f"{r.stem}{r.target.suffix}"
    r.target.save(r.handle, r.path, r.md.to_json())


def validate(r: ArtifactRecord) -> None:
    """What the target reads back from the written file: inputs, outputs, op types (and delegation)."""
    r.structure = r.target.validate(r.path)


def parity(r: ArtifactRecord) -> None:
    """The written file run in its runtime against PyTorch on the same inputs; raises when it disagrees."""
    tgt, precision = r.target, r.precision
    if r.q.accuracy and (precision != "fp32" or r.q.fp32_accuracy):
        r.say(f"{tgt.name} {precision}: reading held-out data")
        r.held = task_samples(r.prep, r.model_md, "heldout", r.q)
    # int8 is checked on the task's own images: its ranges come from them, and noise images lie outside
    if precision == "int8" and r.held is not None:
        samples = [[x] for x in r.held.inputs[:r.parity_samples]]
    elif precision == "int8" and r.calibration:
        samples = [[x] for x in r.calibration.inputs[:r.parity_samples]]
    else:
        samples = parity_inputs(r.model_md, n=r.parity_samples)
    if r.dynamic_batch and len(samples) > 1:   # the same inputs once more as one batch: batch 1 and batch N agree
        samples = [*samples, [np.concatenate(parts, axis=0) for parts in zip(*samples)]]
    with torch.no_grad():
        r.reference = [to_artifact_outputs(_as_list(r.prep.module(*[torch.from_numpy(a) for a in s])), r.model_md,
                                           r.md) for s in samples]
    r.samples = [to_artifact_inputs(s, r.model_md, r.md) for s in samples]
    report = ParityReport(target=tgt.name, runtime=tgt.runtime, precision=precision, samples=len(r.samples),
                          numeric=False, passed=False, tolerance=vars(TOLERANCES[precision]).copy(),
                          structure=r.structure)
    note = tgt.numeric_parity_unavailable()
    r.report = report
    if note is not None:
        check_structure(r.structure, r.md)
        report.passed, report.note = True, note
        r.md.parity = report.to_dict()
        return
    r.say(f"{tgt.name} {precision}: checking parity in {tgt.runtime}")
    r.actual, report.computed_precision = run_artifact(r.path, tgt.runtime, r.samples, precision)
    report.outputs, report.top1_agreement, report.passed = compare(
        r.reference, r.actual, [o.name for o in r.md.outputs], precision, r.md.task,
        probabilities=r.md.scores == "probabilities")
    report.numeric = True
    r.md.parity = report.to_dict()
    if precision == "bf16" and report.computed_precision != "bf16":
        r.warnings.append(f"this CPU computed the bf16 check in {report.computed_precision} (no bf16 support "
                          f"here): the artifact computes in bf16 only on CPUs with AVX512-BF16 / AMX")
    if report.passed:
        return
    file = f"{r.stem}{tgt.suffix}"
    if precision == "int8" and min(o.cosine for o in report.outputs) >= INT8_BROKEN_COSINE:
        r.warnings.append(f"int8 outputs differ from fp32 beyond the int8 tolerance: {report.failure()}")
    elif precision == "int8" and r.degenerate:
        raise ExportParityError(f"{file} cannot be int8: {r.degenerate}, too little signal for int8 to keep "
                                f"({report.failure()}); int8 needs trained weights: give --weights, or export "
                                "fp32 / fp16; nothing was written")
    elif precision == "int8" and r.calibration is not None:
        raise ExportParityError(f"{file} is broken by int8 (cosine with fp32 under {INT8_BROKEN_COSINE}): "
                                f"{report.failure()}; nothing was written{keep_float_hint(r)}")
    else:
        raise ExportParityError(f"{file} fails parity against PyTorch: {report.failure()}; nothing was written "
                                "(try --precision fp32, or report the model)")


def accuracy(r: ArtifactRecord) -> None:
    """The task metric of PyTorch and of the artifact on held-out data (read by ``parity``), when asked."""
    if r.held is None:
        return
    from .quantize import layer_sensitivity, measure_accuracy

    r.say(f"{r.target.name} {r.precision}: measuring {r.md.task} accuracy on {len(r.held.inputs)} held-out inputs")
    unavailable = r.target.numeric_parity_unavailable()

    def run(inputs):
        return run_artifact(r.path, r.target.runtime, [to_artifact_inputs([x], r.model_md, r.md) for x in inputs],
                            r.precision)[0]

    size = files_size([r.path, *[c for c in companions(r.path) if c.is_file()]])
    r.accuracy = measure_accuracy(r.prep.module, r.md, r.held, run if unavailable is None else None, size,
                                  unavailable=unavailable,
                                  as_artifact=lambda outs: to_artifact_outputs(outs, r.model_md, r.md),
                                  say=lambda msg: r.say(Notice(f"{r.target.name} {r.precision}: {msg}")),
                                  runtime=r.target.runtime)
    if r.accuracy.exceeded and r.precision == "int8" and r.calibration is not None:
        r.say(f"{r.target.name} int8: ranking layers by int8 sensitivity")
        r.accuracy.sensitive_layers = layer_sensitivity(r.prep.module, r.calibration.inputs[:4])
    if r.md.quantization is not None:   # fp32 (benchmarks only): returned, not embedded
        r.md.quantization["accuracy"] = r.accuracy.to_dict()
    if r.accuracy.warning():
        r.warnings.append(r.accuracy.warning())


def speed(r: ArtifactRecord) -> None:
    """int8: the artifact and the fp32 program it was quantised from, timed in the runtime on a held-out (or
    calibration) input; a warning when int8 is not faster. Skipped where the runtime cannot run here, where the
    target kept no fp32 program, or when ``QuantizeOptions.speed`` is off."""
    from .speed import measure

    program = r.options.float_program if r.options is not None else None
    if (r.precision != "int8" or not r.q.speed or program is None or not r.samples
            or r.target.numeric_parity_unavailable() is not None):
        return
    r.say(f"{r.target.name} int8: timing int8 against fp32 in {r.target.runtime} (--no-speed-check skips it)")
    try:
        r.speed = measure(program, r.path, r.target.runtime, r.samples[0], profile_folder=r.work)
    except Exception as e:   # timing is a report, not a condition of the artifact: say why it is missing
        r.warnings.append(f"int8: could not time it against fp32 ({type(e).__name__}: {str(e).splitlines()[0][:160]})")
        return
    finally:
        program.unlink(missing_ok=True)
    r.md.quantization["speed"] = r.speed.to_dict()
    if r.speed.warning():
        r.warnings.append(r.speed.warning())


def finalise(r: ArtifactRecord) -> None:
    """Rewrite with the full metadata, prove the bytes compute what was checked, sidecar, rename into place."""
    tgt = r.target
    r.say(f"{tgt.name} {r.precision}: writing")
    files = tgt.save(r.handle, r.path, r.md.to_json())
    r.warnings += tgt.warnings() if hasattr(tgt, "warnings") else []
    if r.actual is not None:  # the final bytes must compute exactly what was checked
        again, _ = run_artifact(r.path, tgt.runtime, r.samples, r.precision)
        if not all(np.array_equal(a, b) for s1, s2 in zip(r.actual, again) for a, b in zip(s1, s2)):
            raise ExportError(f"{tgt.name}: rewriting the metadata changed the outputs; nothing was written")
    # The sidecar is the manifest: the SHA-256 of every file, renamed into place last. A run killed
    # between two renames leaves files that disagree with the sidecar, which loading refuses.
    atomic_write_text(r.work / sidecar_path(r.path).name, sidecar_text(r.md, artifact_digests(r.path)))
    final = r.out / r.path.name
    with folder_lock(r.out):   # two exports of one name into one folder: one set of renames after the other
        for f in reversed(files):  # companions (.bin) first, the entry file, then the sidecar
            move_into_place(f, r.out / f.name)
            after_rename(r.out / f.name)
        sidecar = move_into_place(r.work / sidecar_path(r.path).name, sidecar_path(final))
    r.files = [r.out / f.name for f in files]
    r.result = ExportResult(r.prep.card.name, tgt.name, r.precision, final, r.files, sidecar, r.md, r.report,
                            time.perf_counter() - r.t0, r.accuracy, r.warnings, r.speed)


STAGES: tuple[Callable[[ArtifactRecord], None], ...] = (calibrate, convert, save, validate, parity, accuracy,
                                                        speed, finalise)


def scratch(r: ArtifactRecord) -> Path:
    """The record's scratch folder inside the output folder (what killed exports left there removed first)."""
    r.out.mkdir(parents=True, exist_ok=True)
    remove_stale_scratch(r.out)
    r.work = make_scratch_dir(r.out, f".{r.stem}.{r.target.name}.")
    return r.work


# ---------------------------------------------------------------- helpers of the stages

def _as_list(out) -> list[np.ndarray]:
    return [o.numpy() for o in (out if isinstance(out, (tuple, list)) else [out])]


def tool_versions(target) -> dict[str, str]:
    """mobilevision's, torch's and the target's own tools' versions (its ``tools`` attribute)."""
    versions = {"mobilevision": mobilevision.__version__, "torch": torch.__version__}
    for pkg in getattr(target, "tools", ()):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return versions


def artifact_stem(prep: "PreparedModel", precision: str, name: str | None) -> str:
    if name:
        return name
    stem = prep.card.name
    if prep.input_size[1:] != prep.card.input_size[1:]:
        stem += f"_{prep.input_size[1]}"
    return stem + ("" if precision == "fp32" else f"_{precision}")


def task_samples(prep: "PreparedModel", md: ModelMetadata, split: str, q: QuantizeOptions):
    """Calibration ("train") or held-out samples of the model's task, read once per prepared model."""
    from .quantize import is_flat_folder, task_samples as read

    given = q.calib_data if split == "train" else q.eval_data
    if split == "heldout" and given is None and q.calib_data is not None:
        if Path(q.calib_data).is_dir() and not is_flat_folder(q.calib_data):
            given = q.calib_data   # a dataset folder: its held-out split
    data = given if given is not None else prep.trained_on.get("data")
    category = q.category or (prep.trained_on.get("category") if given is None else None)
    n = q.calib_n if split == "train" else q.eval_n
    key = (split, data, category, n, q.seed, tuple(md.inputs[0].shape))
    if key not in prep.samples:
        prep.samples[key] = read(md, data, split, n, seed=q.seed, category=category)
    return prep.samples[key]


def run_artifact(path: Path, runtime: str, samples: list[list[np.ndarray]],
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


def check_structure(structure: dict, md: ModelMetadata) -> None:
    """Without a runtime (Core ML off macOS): the saved program must have the promised interface."""
    for kind, got, want in (("input", structure.get("inputs", []), md.inputs),
                            ("output", structure.get("outputs", []), md.outputs)):
        got_sig = [(f["name"], list(f["shape"])) for f in got]
        want_sig = [(t.name, list(t.shape)) for t in want]
        if got_sig != want_sig:
            raise ExportParityError(f"{md.target} program {kind}s are {got_sig}, expected {want_sig}")
    if not structure.get("ops"):
        raise ExportParityError(f"{md.target} program has no operations")


def keep_float_hint(r: ArtifactRecord) -> str:
    """'; the layers that lose most ...: --keep-float ...' for an int8 export that failed."""
    from .quantize import keep_float_hint as hint, layer_sensitivity

    r.say("int8: ranking layers by int8 sensitivity")
    return hint(layer_sensitivity(r.prep.module, r.calibration.inputs[:4], top=3)) or "; try --precision fp16"


def check_destination(final: Path, folder: bool) -> None:
    """Refuse, before converting, a final name taken by something the export would not replace."""
    for f in [final, *companions(final), sidecar_path(final)]:
        if f.is_symlink() or not f.exists():
            continue
        if f.is_dir() != (folder and f == final):
            raise ExportError(f"{f} exists and is {'a folder' if f.is_dir() else 'a file'}, where the export writes "
                              f"its {'package folder' if folder and f == final else 'file'}: move it away, or export "
                              f"with another --name / --out")


def after_rename(path: Path) -> None:
    """Fault-injection point between two renames of an export (tests kill the process here)."""
