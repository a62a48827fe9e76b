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

from .metadata import ModelMetadata

CALIB_MIN_IMAGES = 100   # fewer calibration images than this: a warning (ranges from few images are noisy)
DEFAULT_CALIB_N = 300
DEFAULT_EVAL_N = 200
MIN_AGREEMENT_COSINE = 0.98
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class TaskMetric:
    """The metric a task is judged by, and how much of it a quantised export may lose before a warning."""

    key: str
    label: str
    unit: str
    higher_is_better: bool
    threshold: float

    def format(self, value: float | None) -> str:
        if value is None:
            return "n/a"
        digits = 4 if self.key == "image_auroc" else 2
        return f"{value:.{digits}f}{(' ' + self.unit) if self.unit and self.unit != '%' else self.unit}"


THRESHOLDS: dict[str, TaskMetric] = {
    "classify": TaskMetric("top1", "top-1", "%", True, 1.0),
    "anomaly": TaskMetric("image_auroc", "image AU-ROC", "", True, 0.01),
    "isp": TaskMetric("psnr", "PSNR", "dB", True, 0.5),
    "landmarks": TaskMetric("nme", "NME", "%", False, 0.5),
}


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

def _pick(n_available: int, n: int, seed: int) -> list[int]:
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


def _input_hw(md: ModelMetadata) -> tuple[int, int]:
    shape = md.inputs[0].shape
    return int(shape[2]), int(shape[3])


def _preprocess(image: np.ndarray, md: ModelMetadata) -> np.ndarray:
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
    chosen = [paths[i] for i in _pick(len(paths), n, seed)]
    return TaskSamples(f"{folder} ({len(paths)} images, no labels)", [_preprocess(load_rgb(p), md) for p in chosen],
                       None, "a flat image folder has no labels", len(chosen))


def _classify(md: ModelMetadata, data: str | None, split: str, n: int, seed: int) -> TaskSamples:
    from mobilevision.data.classification import open_classification_data

    ds = open_classification_data(data)
    src = ds.train if split == "train" else ds.val
    if len(src) == 0:
        raise DataError(f"{ds.name} has no {'training' if split == 'train' else 'validation'} images")
    idx = _pick(len(src), n, seed)
    inputs = [_preprocess(np.asarray(src.image(i)), md) for i in idx]
    labels = [int(src.labels[i]) for i in idx]
    from mobilevision.registry import same_classes

    same = same_classes(md.labels, md.label_set, ds.classes) if md.labels else md.num_classes == len(ds.classes)
    note = None if same else (f"the model's {md.num_classes} classes are not the {len(ds.classes)} classes of "
                              f"{ds.name}: top-1 needs a model trained on that data")
    return TaskSamples(f"{ds.name}, {'train' if split == 'train' else 'validation'} split", inputs,
                       labels if same else None, note, len(idx))


def _anomaly(md: ModelMetadata, data: str | None, split: str, n: int, seed: int,
             category: str | None) -> TaskSamples:
    from mobilevision.data.anomaly import load_rgb, resolve_anomaly_data

    ds = resolve_anomaly_data(data, category)
    if split == "train":
        idx = _pick(len(ds.train), n, seed)
        return TaskSamples(f"{ds.name}, train/good", [_preprocess(load_rgb(ds.train[i]), md) for i in idx], None,
                           "training images are all good", len(idx))
    if not ds.test:
        raise DataError(f"{ds.root} has no test images to measure image AU-ROC on")
    idx = _pick(len(ds.test), n, seed)
    samples = [ds.test[i] for i in idx]
    labels = [s.label for s in samples]
    note = None if 0 < sum(labels) < len(labels) else "image AU-ROC needs good and anomalous test images"
    return TaskSamples(f"{ds.name}, test split", [_preprocess(load_rgb(s.path), md) for s in samples],
                       labels if note is None else None, note, len(idx))


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


def _isp(md: ModelMetadata, data: str | None, split: str, n: int, seed: int) -> TaskSamples:
    """Packed RAW patches laid into the artifact's input size (a grid of patches when they are smaller);
    held-out targets are the matching sRGB patches laid the same way."""
    from mobilevision.data.isp import load_mosaic, load_srgb, resolve_isp_data

    ds = resolve_isp_data(data)
    h, w = _input_hw(md)
    raws = ds.train_raw if split == "train" else ds.test_raw
    if not raws:
        raise DataError(f"{ds.root} has no {'training' if split == 'train' else 'test'} RAW files")
    first = load_mosaic(raws[0], ds.black_level, ds.white_level, ds.pattern).numpy()
    per = math.ceil(h / first.shape[1]) * math.ceil(w / first.shape[2])
    if len(raws) < per:
        raise DataError(f"{ds.root}: {len(raws)} RAW patches of {first.shape[1]}x{first.shape[2]} packed pixels "
                        f"cannot fill the model's {h}x{w} input")
    # calibration: patches in a seeded random order; held-out: the test set in file order
    order = np.random.default_rng(seed).permutation(len(raws)).tolist() if split == "train" else list(range(len(raws)))
    groups = [order[k:k + per] for k in range(0, len(order) - per + 1, per)][:n]
    inputs, targets = [], []
    for g in groups:
        packed = [load_mosaic(raws[i], ds.black_level, ds.white_level, ds.pattern).numpy() for i in g]
        inputs.append(tile_grid(packed, h, w)[None])
        if split != "train":
            rgb = [load_srgb(ds.test_rgb[i], (2 * p.shape[1], 2 * p.shape[2])).numpy() for i, p in zip(g, packed)]
            targets.append(tile_grid(rgb, 2 * h, 2 * w))
    what = "train RAW" if split == "train" else "test RAW/sRGB pairs"
    return TaskSamples(f"{ds.name} {what}, {per} patch(es) per input", inputs,
                       targets if split != "train" else None,
                       "training RAW has no paired target here" if split == "train" else None, len(groups) * per)


def _landmarks(md: ModelMetadata, data: str | None, split: str, n: int, seed: int) -> TaskSamples:
    from mobilevision.data.landmarks import load_image, resolve_landmark_data
    from mobilevision.tasks.landmarks import eval_crop

    points = md.landmarks.points if md.landmarks else None
    train, test = resolve_landmark_data(data, n_points=points, zero_based=True)
    samples = train if split == "train" else test
    if not samples:
        raise DataError(f"no {'training' if split == 'train' else 'test'} faces in {data or 'the built-in faces'}")
    h, w = _input_hw(md)
    if h != w:
        raise MobileVisionError(f"landmark models take square crops; this artifact's input is {h}x{w}")
    inputs, targets = [], []
    idx = _pick(len(samples), n, seed)
    for i in idx:
        crop, pts, _ = eval_crop(load_image(samples[i]), samples[i], h, "extent")
        inputs.append(_preprocess(crop, md))
        targets.append(pts.astype(np.float64))
    name = data or "built-in faces"
    return TaskSamples(f"{name}, {'train' if split == 'train' else 'test'} faces (GT-extent crops)", inputs,
                       targets, None, len(idx))


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
    if folder is not None and md.task in ("classify", "anomaly", "landmarks") and is_flat_folder(folder):
        if split == "heldout":
            raise DataError(f"{folder} is a flat folder of images without labels: give the task's dataset "
                            f"folder (as for `mobilevision train {md.task} --data`) to measure "
                            f"{THRESHOLDS[md.task].label}")
        return _from_flat_folder(md, folder, n, seed)
    data_s = str(folder) if folder is not None else None
    if md.task == "classify":
        return _classify(md, data_s, split, n, seed)
    if md.task == "anomaly":
        return _anomaly(md, data_s, split, n, seed, category)
    if md.task == "isp":
        return _isp(md, data_s, split, n, seed)
    if md.task == "landmarks":
        return _landmarks(md, data_s, split, n, seed)
    raise MobileVisionError(f"no calibration data for task {md.task!r} ({md.model}); give --calib-data")


# ---------------------------------------------------------------- the metric

def _output(md: ModelMetadata, outputs: list[np.ndarray], name: str) -> np.ndarray:
    names = [o.name for o in md.outputs]
    return np.asarray(outputs[names.index(name)] if name in names else outputs[0])


def task_metric(md: ModelMetadata, outputs: list[list[np.ndarray]], targets: list[Any]) -> float:
    """The task's metric of per-input outputs against the targets of ``task_samples``."""
    from mobilevision.tasks.anomaly_metrics import image_auroc
    from mobilevision.tasks.landmark_metrics import per_image_nme

    if md.task == "classify":
        return 100.0 * float(np.mean([int(np.argmax(o[0])) == t for o, t in zip(outputs, targets)]))
    if md.task == "anomaly":
        scores = []
        for o in outputs:
            s = _output(md, o, "score")
            scores.append(float(s.max()) if s.size != 1 else float(s.reshape(())))
        return image_auroc(scores, targets)
    if md.task == "isp":
        values = []
        for o, t in zip(outputs, targets):  # 8-bit outputs, as the ISP evaluation scores saved PNGs
            pred = np.round(np.clip(_output(md, o, "rgb").reshape(t.shape), 0.0, 1.0) * 255.0) / 255.0
            mse = float(np.mean((pred.astype(np.float64) - t) ** 2))
            values.append(10.0 * math.log10(1.0 / max(mse, 1e-12)))
        return float(np.mean(values))
    if md.task == "landmarks":
        pred = np.stack([_output(md, o, "landmarks").reshape(-1, 2) for o in outputs])
        return 100.0 * float(per_image_nme(pred, np.stack(targets)).mean())
    raise MobileVisionError(f"no metric for task {md.task!r}")


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


def measure_accuracy(module: nn.Module, md: ModelMetadata, held: TaskSamples,
                     run: Callable[[list[np.ndarray]], list[list[np.ndarray]]] | None, size_bytes: int,
                     unavailable: str | None = None,
                     as_artifact: Callable[[list[np.ndarray]], list[np.ndarray]] | None = None) -> AccuracyReport:
    """Metric of the fp32 PyTorch model and of the artifact (``run``: inputs -> outputs in its runtime) on
    ``held``, and their output agreement (the model's outputs first mapped by ``as_artifact`` to what the
    artifact gives, e.g. probabilities). ``run`` None (no runtime here) leaves ``after`` empty with
    ``unavailable`` as the note."""
    metric = THRESHOLDS[md.task] if md.task in THRESHOLDS else TaskMetric("output", "output", "", True, math.inf)
    report = AccuracyReport(md.precision, metric.label, metric.unit, metric.higher_is_better, metric.threshold,
                            held.source, len(held.inputs), size_bytes=size_bytes)
    if held.reference is None:   # the same module for every target and precision of one export run
        held.reference = torch_outputs(module, held.inputs)
    reference = held.reference
    notes = [held.note] if held.note else []
    if held.targets is not None:
        report.before = task_metric(md, reference, held.targets)
    if run is None:
        notes.append(unavailable or "no runtime for this artifact here")
    else:
        actual = run(held.inputs)
        report.agreement = _agreement([as_artifact(r) for r in reference] if as_artifact else reference, actual)
        if held.targets is not None:
            report.after = task_metric(md, actual, held.targets)
    report.note = "; ".join(notes) or None
    return report


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
