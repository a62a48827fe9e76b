"""What a quantised export costs: calibration data from the model's task, the task metric before and after
on held-out data, output agreement, size, and which layers to keep in float when the drop is too large.

    from mobilevision.export.quantize import task_samples, measure_accuracy, layer_sensitivity
    calib = task_samples(metadata, data=None, split="train", n=300)      # built-in data of the task
    held = task_samples(metadata, data=None, split="heldout", n=200)
    report = measure_accuracy(module, metadata, held, run=lambda xs: run_artifact(xs), size_bytes=...)

The data a task reads is the one ``mobilevision train <task> --data`` reads (built-in when None), with the
split the training engine uses: calibration draws from the training images, the metric runs on the
held-out ones (validation / test split). Inputs are prepared exactly as an app feeds the artifact
(the metadata's preprocessing; RAW packing for the ISP; the evaluation face crop for landmarks).

Thresholds (the loud warning; ``THRESHOLDS``): top-1 down more than 1 point, image AU-ROC down more than
0.01, PSNR down more than 0.5 dB, NME up more than 0.5 point (of %), or held-out output cosine with the
fp32 model under 0.98 (the one check left when the data carries no labels for the model, e.g. a zoo
classifier with random weights on the built-in digits).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from mobilevision.errors import DataError, MobileVisionError

from mobilevision.tasks import TASKS, TaskMetric, get_task

from .metadata import ModelMetadata

CALIB_MIN_IMAGES = 100   # fewer calibration images than this: a warning (ranges from few images are noisy)
DEFAULT_CALIB_N = 300
DEFAULT_EVAL_N = 200
MIN_AGREEMENT_COSINE = 0.98
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


# The metric of each task and its warning threshold (the tasks' own, ``mobilevision.tasks.TASKS``).
THRESHOLDS: dict[str, TaskMetric] = {name: task.metric for name, task in TASKS.items()}


@dataclass
class TaskSamples:
    """Inputs shaped as the artifact takes them ((1, C, H, W) float32 each) and what the metric needs."""

    source: str
    inputs: list[np.ndarray]
    targets: list[Any] | None = None     # None: the data has no labels this model's metric can use
    note: str | None = None              # why there are no targets
    images: int = 0                      # files / faces / patches read (the ISP packs several per input)
    reference: list[list[np.ndarray]] | None = field(default=None, repr=False)   # fp32 outputs, computed once


# ---------------------------------------------------------------- reading the task's data

def pick(n_available: int, n: int, seed: int) -> list[int]:
    """``n`` indices of ``n_available`` (all when fewer), a fixed random subset in file order."""
    if n >= n_available:
        return list(range(n_available))
    return sorted(np.random.default_rng(seed).choice(n_available, size=n, replace=False).tolist())


def flat_images(folder: str | Path) -> list[Path]:
    """The image files directly inside ``folder`` (a calibration folder with no dataset layout)."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def is_flat_folder(folder: str | Path) -> bool:
    """A folder of images with no subfolders: calibration images without a dataset layout (or labels)."""
    folder = Path(folder)
    return folder.is_dir() and bool(flat_images(folder)) and not any(p.is_dir() for p in folder.iterdir())


def input_hw(md: ModelMetadata) -> tuple[int, int]:
    shape = md.inputs[0].shape
    return int(shape[2]), int(shape[3])


def preprocess_input(image: np.ndarray, md: ModelMetadata) -> np.ndarray:
    from mobilevision.runtime.tasks.classify import preprocess

    if md.preprocessing is None:
        raise MobileVisionError(f"{md.model} has no image preprocessing in its metadata")
    return preprocess(image, md.preprocessing)


def _from_flat_folder(md: ModelMetadata, folder: Path, n: int, seed: int) -> TaskSamples:
    from mobilevision.data.anomaly import load_rgb

    paths = flat_images(folder)
    if not paths:
        raise DataError(f"no images in {folder}: give the task's dataset folder (as for `mobilevision train "
                        f"--data`) or a folder of {', '.join(sorted(IMAGE_SUFFIXES))} images")
    chosen = [paths[i] for i in pick(len(paths), n, seed)]
    return TaskSamples(f"{folder} ({len(paths)} images, no labels)", [preprocess_input(load_rgb(p), md) for p in chosen],
                       None, "a flat image folder has no labels", len(chosen))


def tile_grid(patches: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """Lay (C, h, w) patches row by row into one (C, height, width) array (the last row / column cut)."""
    c, ph, pw = patches[0].shape
    rows, cols = math.ceil(height / ph), math.ceil(width / pw)
    if len(patches) < rows * cols:
        raise ValueError(f"{len(patches)} patches cannot cover {height}x{width} ({rows * cols} needed)")
    out = np.zeros((c, rows * ph, cols * pw), dtype=np.float32)
    for k in range(rows * cols):
        r, q = divmod(k, cols)
        out[:, r * ph:(r + 1) * ph, q * pw:(q + 1) * pw] = patches[k]
    return out[:, :height, :width]


def task_samples(md: ModelMetadata, data: str | Path | None, split: str, n: int, seed: int = 0,
                 category: str | None = None) -> TaskSamples:
    """``n`` inputs of the model's task from ``data`` (the task's dataset layout, a flat folder of images for
    calibration, or None for the built-in data); ``split`` "train" (calibration) or "heldout" (the metric)."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")
    if n < 1:
        raise MobileVisionError(f"the number of samples must be >= 1 (got {n})")
    folder = Path(data) if data is not None else None
    if folder is not None and not folder.exists():
        raise DataError(f"data folder not found: {folder}")
    task = get_task(md.task)
    if folder is not None and task.image_input and is_flat_folder(folder):
        if split == "heldout":
            raise DataError(f"{folder} is a flat folder of images without labels: give the task's dataset "
                            f"folder (as for `mobilevision train {md.task} --data`) to measure {task.metric.label}")
        return _from_flat_folder(md, folder, n, seed)
    return task.samples(md, str(folder) if folder is not None else None, split, n, seed, category)


# ---------------------------------------------------------------- the metric

def named_output(md: ModelMetadata, outputs: list[np.ndarray], name: str) -> np.ndarray:
    names = [o.name for o in md.outputs]
    return np.asarray(outputs[names.index(name)] if name in names else outputs[0])


def task_metric(md: ModelMetadata, outputs: list[list[np.ndarray]], targets: list[Any]) -> float:
    """The task's metric of per-input outputs against the targets of ``task_samples`` (the task's own scoring)."""
    return get_task(md.task).score(md, outputs, targets)


# ---------------------------------------------------------------- the report

@dataclass
class AccuracyReport:
    """The cost of one quantised artifact on held-out data of its task."""

    precision: str
    metric: str
    unit: str
    higher_is_better: bool
    threshold: float
    data: str
    samples: int
    before: float | None = None          # fp32 PyTorch
    after: float | None = None           # the artifact in its runtime
    agreement: dict[str, float] = field(default_factory=dict)   # cosine / max_abs / mean_abs vs fp32, worst output
    size_bytes: int = 0
    note: str | None = None
    sensitive_layers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def loss(self) -> float | None:
        """How much worse the artifact is, in the metric's units (positive = worse)."""
        if self.before is None or self.after is None:
            return None
        return (self.before - self.after) if self.higher_is_better else (self.after - self.before)

    @property
    def exceeded(self) -> bool:
        """A drop past the threshold, or outputs that stray from fp32 (cosine under MIN_AGREEMENT_COSINE)."""
        loss = self.loss
        cos = self.agreement.get("cosine")
        return bool((loss is not None and loss > self.threshold) or (cos is not None and cos < MIN_AGREEMENT_COSINE))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(loss=self.loss, exceeded=self.exceeded)
        return d

    def summary(self) -> str:
        m = TaskMetric(self.metric, self.metric, self.unit, self.higher_is_better, self.threshold)
        parts = []
        if self.before is not None:
            change = "" if self.after is None else f" ({self.after - self.before:+.4g})"
            parts.append(f"{self.metric} {m.format(self.before)} -> {m.format(self.after)}{change}")
        if self.agreement:
            parts.append(f"vs fp32 cos {self.agreement['cosine']:.4f} max|d| {self.agreement['max_abs']:.3g}")
        parts.append(f"{self.size_bytes / 1e6:.2f} MB")
        if self.note:
            parts.append(self.note)
        return "; ".join(parts)

    def warning(self) -> str | None:
        """The loud line, with the layers to keep in float, when ``exceeded``."""
        if not self.exceeded:
            return None
        loss = self.loss
        if loss is not None and loss > self.threshold:
            unit = f" {self.unit}" if self.unit and self.unit != "%" else (" point(s)" if self.unit == "%" else "")
            what = (f"{self.metric} {'fell' if self.higher_is_better else 'rose'} by {abs(loss):.4g}{unit}, past the "
                    f"{self.threshold:g}{unit} threshold")
        else:
            what = (f"outputs agree with fp32 only to cosine {self.agreement['cosine']:.4f} on held-out data "
                    f"(threshold {MIN_AGREEMENT_COSINE})")
        return f"{self.precision}: {what}{keep_float_hint(self.sensitive_layers)}"


# Every layer alone at least this faithful: no single layer explains the loss.
NO_CULPRIT_COSINE = 0.999


def keep_float_hint(ranked: list[dict[str, Any]]) -> str:
    """'; ... --keep-float ...' from ``layer_sensitivity``'s ranking ('' without one)."""
    if not ranked:
        return ""
    if ranked[0]["cosine"] >= NO_CULPRIT_COSINE:
        return (f"; no convolution or linear layer loses much when quantised alone (worst: {ranked[0]['module']}, "
                f"cos {ranked[0]['cosine']:.4f}): the loss comes from the arithmetic between them; try "
                f"--keep-float . (the model's own top-level operations) or --precision fp16")
    listed = ", ".join(f"{s['module']} (cos {s['cosine']:.4f})" for s in ranked)
    return (f"; the layers that lose most when quantised alone: {listed}; keep them in float with "
            f"--keep-float {' '.join(s['module'] for s in ranked[:3])}")


def _agreement(reference: list[list[np.ndarray]], actual: list[list[np.ndarray]]) -> dict[str, float]:
    """Cosine (worst output) and max / mean absolute error over all held-out inputs."""
    worst: dict[str, float] = {}
    for k in range(len(reference[0])):
        ref = np.concatenate([np.asarray(r[k], np.float64).ravel() for r in reference])
        act = np.concatenate([np.asarray(a[k], np.float64).ravel() for a in actual])
        na, nb = np.linalg.norm(ref), np.linalg.norm(act)
        cos = float(ref @ act / (na * nb)) if na > 0 and nb > 0 else float(na == nb)
        err = np.abs(ref - act)
        row = {"cosine": cos if np.isfinite(err).all() else float("nan"), "max_abs": float(err.max()),
               "mean_abs": float(err.mean())}
        if not worst or not row["cosine"] >= worst["cosine"]:
            worst = row
    return worst


def torch_outputs(module: nn.Module, inputs: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
    """The fp32 PyTorch model's outputs, one list per input."""
    out = []
    with torch.no_grad():
        for x in inputs:
            y = module(torch.from_numpy(np.ascontiguousarray(x)))
            out.append([t.numpy() for t in (y if isinstance(y, (tuple, list)) else [y])])
    return out


NEAR_ZERO = 1e-4          # fp32 outputs all smaller than this: nothing for int8 to resolve
SAME_FOR_ALL = 1e-2       # outputs that vary between inputs by less than this x their size (a trained model's
                          # vary by about their size): too little signal for int8's 256 levels to keep


def degenerate_outputs(outputs: list[list[np.ndarray]]) -> str | None:
    """Why int8 cannot work on a model whose fp32 outputs carry no signal, or None.

    An untrained zoo model can give logits that are all near zero (SkipNet at random initialisation: at most
    3e-7) or nearly the same for every input (EMO-1M: logits up to 0.67 that vary by 0.002 between images). int8 ranges calibrated on such outputs round them to one value, and the int8
    artifact then disagrees with fp32 completely: the cause is the weights, not the quantiser."""
    values = [np.asarray(o, np.float64) for sample in outputs for o in sample]
    if not values or any(v.size == 0 for v in values):
        return None
    peak = max(float(np.max(np.abs(v))) for v in values)
    if not np.isfinite(peak):
        return None
    if peak < NEAR_ZERO:
        return f"the fp32 model's outputs are all near zero (largest |output| {peak:.1g})"
    if len(outputs) > 1:
        first = outputs[0]
        spread = max(float(np.max(np.abs(np.asarray(o, np.float64) - np.asarray(f, np.float64))))
                     for sample in outputs[1:] for o, f in zip(sample, first) if np.shape(o) == np.shape(f))
        if spread <= SAME_FOR_ALL * peak:
            return (f"the fp32 model's outputs hardly depend on the input (they vary by at most {spread:.1g} "
                    f"between inputs, against a size of {peak:.2g})")
    return None


ACCURACY_PROBE = 2         # held-out inputs timed first, to say how long the rest will take
SAY_LONGER_THAN_S = 60.0   # an accuracy report estimated longer than this says so, and how to shorten or skip it


def measure_accuracy(module: nn.Module, md: ModelMetadata, held: TaskSamples,
                     run: Callable[[list[np.ndarray]], list[list[np.ndarray]]] | None, size_bytes: int,
                     unavailable: str | None = None,
                     as_artifact: Callable[[list[np.ndarray]], list[np.ndarray]] | None = None,
                     say: Callable[[str], None] | None = None, runtime: str = "the runtime") -> AccuracyReport:
    """Metric of the fp32 PyTorch model and of the artifact (``run``: inputs -> outputs in its runtime) on
    ``held``, and their output agreement (the model's outputs first mapped by ``as_artifact`` to what the
    artifact gives, e.g. probabilities). ``run`` None (no runtime here) leaves ``after`` empty with
    ``unavailable`` as the note.

    The first ``ACCURACY_PROBE`` inputs are timed in PyTorch and in the runtime; when the rest would take over
    ``SAY_LONGER_THAN_S``, ``say`` tells how long, at what cost per input, and how to shorten (--eval-n) or skip
    (--no-accuracy) it."""
    import time

    metric = THRESHOLDS[md.task] if md.task in THRESHOLDS else TaskMetric("output", "output", "", True, math.inf)
    report = AccuracyReport(md.precision, metric.label, metric.unit, metric.higher_is_better, metric.threshold,
                            held.source, len(held.inputs), size_bytes=size_bytes)
    head, rest = held.inputs[:ACCURACY_PROBE], held.inputs[ACCURACY_PROBE:]
    per_ref = per_run = 0.0
    reference = held.reference
    if reference is None:   # the same module for every target and precision of one export run: computed once
        t0 = time.perf_counter()
        reference = torch_outputs(module, head)
        per_ref = (time.perf_counter() - t0) / max(len(head), 1)
    actual = None
    if run is not None:
        t0 = time.perf_counter()
        actual = run(head)
        per_run = (time.perf_counter() - t0) / max(len(head), 1)
    left = len(rest) * (per_ref + per_run)
    if say is not None and left > SAY_LONGER_THAN_S:
        parts = [f"{per_run:.2g} s an input in {runtime}"] if run is not None else []
        parts += [f"{per_ref:.2g} s in PyTorch"] if per_ref else []
        say(f"the accuracy report on {len(held.inputs)} held-out inputs will take about {_minutes(left)} more "
            f"({', '.join(parts)}): --eval-n N shortens it, --no-accuracy skips it")
    if held.reference is None:
        held.reference = reference + torch_outputs(module, rest)
    reference = held.reference
    notes = [held.note] if held.note else []
    if held.targets is not None:
        report.before = task_metric(md, reference, held.targets)
    if run is None:
        notes.append(unavailable or "no runtime for this artifact here")
    else:
        actual = actual + run(rest) if rest else actual
        report.agreement = _agreement([as_artifact(r) for r in reference] if as_artifact else reference, actual)
        if held.targets is not None:
            report.after = task_metric(md, actual, held.targets)
    report.note = "; ".join(notes) or None
    return report


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


# ---------------------------------------------------------------- which layers to keep in float

def _flat(y: Any) -> torch.Tensor:
    return torch.cat([t.reshape(-1).double() for t in (y if isinstance(y, (tuple, list)) else [y])])


def quantisable_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """The convolutions and linear layers, by module path: what int8 quantisation changes most."""
    return [(n, m) for n, m in module.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)) and n]


def layer_sensitivity(module: nn.Module, inputs: Sequence[np.ndarray], top: int = 5) -> list[dict[str, Any]]:
    """One layer at a time, int8 fake-quantised in PyTorch (per-channel symmetric weights, per-tensor uint8
    input activations with min/max ranges from ``inputs``), everything else float: the output cosine
    against fp32. Returns the ``top`` least faithful layers as {"module", "cosine"}, worst first.

    A simulation with torch's fake-quantisation ops, not the target's kernels: it ranks layers, which is
    what a --keep-float hint needs; the artifact's own numbers are in the accuracy report."""
    layers = quantisable_layers(module)
    xs = [torch.from_numpy(np.ascontiguousarray(x)) for x in inputs]
    ranges: dict[str, list[float]] = {}

    def record(name: str):
        def hook(_m, args):
            a = args[0].detach()
            lo, hi = float(a.min()), float(a.max())
            r = ranges.setdefault(name, [lo, hi])
            r[0], r[1] = min(r[0], lo), max(r[1], hi)
        return hook

    handles = [m.register_forward_pre_hook(record(n)) for n, m in layers]
    try:
        with torch.no_grad():
            reference = [_flat(module(x)) for x in xs]
    finally:
        for h in handles:
            h.remove()
    results = []
    for name, layer in layers:
        if name not in ranges:
            continue  # not on the inference path
        w = layer.weight.data
        scale = (w.abs().amax(dim=tuple(range(1, w.ndim))).clamp_min(1e-12) / 127.0).float()
        wq = torch.fake_quantize_per_channel_affine(w, scale, torch.zeros_like(scale, dtype=torch.int32), 0, -128, 127)
        lo, hi = min(ranges[name][0], 0.0), max(ranges[name][1], 0.0)
        a_scale = max(hi - lo, 1e-12) / 255.0
        a_zero = int(round(-lo / a_scale))
        hook = layer.register_forward_pre_hook(
            lambda _m, args, s=a_scale, z=a_zero: (torch.fake_quantize_per_tensor_affine(args[0], s, z, 0, 255),
                                                   *args[1:]))
        saved = w.clone()
        layer.weight.data = wq
        try:
            with torch.no_grad():
                got = [_flat(module(x)) for x in xs]
        finally:
            layer.weight.data = saved
            hook.remove()
        ref, act = torch.cat(reference), torch.cat(got)
        cos = float(ref @ act / (ref.norm() * act.norm()).clamp_min(1e-30))
        results.append({"module": name, "cosine": cos})
    results.sort(key=lambda r: r["cosine"])
    return results[:top]


__all__ = ["AccuracyReport", "CALIB_MIN_IMAGES", "DEFAULT_CALIB_N", "DEFAULT_EVAL_N", "MIN_AGREEMENT_COSINE",
           "THRESHOLDS", "TaskMetric", "TaskSamples", "flat_images", "is_flat_folder", "keep_float_hint", "layer_sensitivity",
           "measure_accuracy",
           "quantisable_layers", "task_metric", "task_samples", "tile_grid", "torch_outputs"]
