"""EfficientAD training on the shared engine, and evaluation on an MVTec-style test set.

Per step (spec §3, batch 1 as the paper): hard-feature loss on the student-teacher distance (only
elements above its 0.999 quantile), penalty on a separate image (keeps the student from matching
the teacher outside normal images), autoencoder loss on a colour-augmented copy and the
student-autoencoder loss; Adam 1e-4 with coupled weight decay 1e-5, x0.1 for the last 5 % of
the steps. Before step 1 the teacher's per-channel statistics are fitted on the training images;
after every epoch the map quantiles are fitted on a held-out 10 % of the *training* normals
(never the test set) and saved with the weights, so the saved detector is complete.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import mobilevision
from mobilevision.data.anomaly import (AnomalyData, AnomalyImages, grayscale_rgb, load_rgb, resolve_anomaly_data,
                                       split_validation)
from mobilevision.data.classification import IMAGE_SUFFIXES
from mobilevision.data.seeded import SeededDraws
from mobilevision.devices import resolve_torch_device
from mobilevision.errors import DataError, TrainingError
from mobilevision.models.efficientad import TEACHER_CHANNELS, EfficientADDetector
from mobilevision.run_card import RunCard
from mobilevision.train.config import TrainConfig

MODELS = ("efficientad_s", "efficientad_m")
P_HARD = 0.999
STEPS_PER_EPOCH = 500          # an "epoch" here is this many steps: checkpoints + quantile fit after each
QUANTILE_LIMIT = 2 ** 24       # torch.quantile's input limit


@dataclass
class AnomalyOptions:
    model: str = "efficientad_s"
    data: str | None = None              # MVTec-style folder; None: the built-in ``category``
    category: str | None = None
    teacher: str | None = None           # pretrained teacher weights (pdn_s / pdn_m formats)
    penalty_data: str | None = None      # folder of unrelated images (ImageNet in the paper)
    steps: int = 70_000
    imgsz: int = 256

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise TrainingError(f"unknown anomaly model {self.model!r}: choose {' or '.join(MODELS)}")
        if self.steps < 1:
            raise TrainingError("--steps must be >= 1")
        if self.imgsz < 256 or self.imgsz % 4:
            raise TrainingError(f"--imgsz {self.imgsz}: EfficientAD needs a multiple of 4, at least 256")


def recipe(steps: int, **overrides: Any) -> TrainConfig:
    """The paper's optimiser and schedule for ``steps`` single-image steps, as engine epochs."""
    epochs = math.ceil(steps / STEPS_PER_EPOCH)
    cfg = dict(epochs=epochs, batch_size=1, optimizer="adam", schedule="step", milestones=(0.95,),
               warmup_epochs=0.0)
    cfg.update(overrides)
    return TrainConfig(**cfg)


def augment_for_autoencoder(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """One of brightness / contrast / saturation, factor ~ U(0.8, 1.2) (torchvision adjust_* semantics)."""
    kind, factor = int(rng.integers(3)), float(rng.uniform(0.8, 1.2))
    gray = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]).unsqueeze(0)
    if kind == 0:
        out = image * factor
    elif kind == 1:
        out = (image - gray.mean()) * factor + gray.mean()
    else:
        out = (image - gray) * factor + gray
    return out.clamp(0.0, 1.0)


def penalty_image(path: Path, size: int, rng: np.random.Generator) -> torch.Tensor:
    """Spec §3: resize to 2x the training size, grayscale with p = 0.3, centre-crop ``size``."""
    arr = load_rgb(path, (2 * size, 2 * size))
    if rng.random() < 0.3:
        arr = grayscale_rgb(arr)
    o = size // 2
    arr = arr[o:o + size, o:o + size]
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float().div_(255.0)


class EfficientADTrainSet(SeededDraws):
    """``length`` steps over the training images: image, its autoencoder-augmented copy, and a penalty
    image when a penalty folder is given. Randomness comes from (seed, epoch, index): resumable."""

    def __init__(self, paths: list[Path], size: int, length: int, penalty: list[Path] | None, seed: int):
        super().__init__(length, seed)
        self.images = AnomalyImages(paths, size)
        self.size, self.penalty = size, penalty

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = self.rng(index)
        image = self.images[index % len(self.images)]["image"]
        item = {"image": image, "image_aug": augment_for_autoencoder(image, rng)}
        if self.penalty:
            item["penalty"] = penalty_image(self.penalty[int(rng.integers(len(self.penalty)))], self.size, rng)
        return item


class EfficientADTrainingGraph(nn.Module):
    """What the engine runs (and DDP wraps): the detector's networks -> the four losses of one batch."""

    def __init__(self, detector: EfficientADDetector, p_hard: float = P_HARD):
        super().__init__()
        self.detector, self.p_hard = detector, p_hard

    def forward(self, image: torch.Tensor, image_aug: torch.Tensor,
                penalty: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        d = self.detector
        x = d.normalize_image(image)
        with torch.no_grad():
            t = d.teacher_features(x)
        dist = (t - d.student(x)[:, :TEACHER_CHANNELS]).pow(2)
        flat = dist.flatten()
        sample = flat[:: math.ceil(flat.numel() / QUANTILE_LIMIT)] if flat.numel() > QUANTILE_LIMIT else flat
        d_hard = torch.quantile(sample.detach().float(), self.p_hard)
        losses = {"hard": dist[dist >= d_hard].mean()}
        if penalty is not None:
            losses["penalty"] = d.student(d.normalize_image(penalty))[:, :TEACHER_CHANNELS].pow(2).mean()
        xa = d.normalize_image(image_aug)
        with torch.no_grad():
            ta = d.teacher_features(xa)
        a = d.autoencoder(xa)
        losses["ae"] = (ta - a).pow(2).mean()
        losses["stae"] = (a - d.student(xa)[:, TEACHER_CHANNELS:]).pow(2).mean()
        return losses


def image_files(folder: str | Path, option: str, fix: str) -> list[Path]:
    """Every image under ``folder`` (recursive, sorted); a clear error naming ``option`` when there is none."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{option} folder not found: {root}")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise DataError(f"{option} {root} holds no images: {fix}")
    return paths


def _penalty_paths(folder: str | None) -> list[Path] | None:
    if folder is None:
        return None
    return image_files(folder, "--penalty-data", "point it at a folder of unrelated photos for the penalty "
                       "loss (the paper uses ImageNet)")


class AnomalyTask:
    """EfficientAD-S/M on one MVTec-style category (the engine's TrainTask)."""

    name = "anomaly"
    length_option = "--steps"   # the run's length, named in the long-run estimate
    main_metric = "st_map"          # mean raw student-teacher map on held-out normals: lower is better
    higher_is_better = False
    in_memory = False
    thresholds: dict[str, Any] | None = None   # the last validation's F1-optimal thresholds (None: no test split)

    def __init__(self, options: AnomalyOptions, data: AnomalyData | None = None):
        self.opts = options
        self.data = data if data is not None else resolve_anomaly_data(options.data, options.category)
        self.train_paths, self.val_paths = split_validation(self.data.train)
        self.penalty = _penalty_paths(options.penalty_data)
        epochs = math.ceil(options.steps / STEPS_PER_EPOCH)
        self.steps_per_epoch = math.ceil(options.steps / epochs)

    def options(self) -> dict[str, Any]:
        return asdict(self.opts)

    def build_model(self) -> EfficientADDetector:
        model = mobilevision.create_model(self.opts.model)
        if self.opts.teacher:
            teacher = mobilevision.create_model(self.opts.model.replace("efficientad_", "pdn_"), weights=self.opts.teacher)
            model.teacher.load_state_dict(teacher.state_dict())
        model.teacher.requires_grad_(False)  # frozen: pretrained once, never trained per category
        return model.train()

    def training_module(self, model: nn.Module) -> nn.Module:
        return EfficientADTrainingGraph(model)

    def criterion(self) -> nn.Module:
        return nn.Identity()  # the losses live in the training graph; nothing to keep between steps

    def datasets(self, seed: int) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset]:
        train = EfficientADTrainSet(self.train_paths, self.opts.imgsz, self.steps_per_epoch, self.penalty, seed)
        return train, AnomalyImages(self.val_paths, self.opts.imgsz)

    @torch.no_grad()
    def on_fit_start(self, model: EfficientADDetector, device: torch.device) -> None:
        """Teacher channel statistics over the (non-augmented) training images, two passes (spec §3)."""
        from mobilevision.models.patch_target import fit_channel_normalisation

        images = AnomalyImages(self.train_paths, self.opts.imgsz)
        loader = torch.utils.data.DataLoader(images, batch_size=1)
        mean, std = fit_channel_normalisation(
            lambda b: model.teacher(model.normalize_image(b["image"].to(device))), loader)
        model.teacher_mean.copy_(mean.view(1, -1, 1, 1))
        model.teacher_std.copy_(std.view(1, -1, 1, 1))

    def training_step(self, module: nn.Module, criterion: nn.Module, batch: dict[str, torch.Tensor],
                      device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
        b = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        losses = module(b["image"], b["image_aug"], b.get("penalty"))
        return sum(losses.values()), {k: float(v.detach()) for k, v in losses.items()}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: torch.utils.data.DataLoader, device: torch.device,
                 criterion: nn.Module) -> dict[str, float]:
        """Fit the map quantiles on the held-out normals (saved with the weights) and report their raw maps;
        then, where the data has a labelled test split, the F1-optimal image and pixel thresholds on it (as
        anomalib's adaptive threshold, on its MVTec default of validating on the test split), which the run
        card carries to the export's metadata."""
        sts, aes = [], []
        for batch in loader:
            st, ae = model.raw_maps(batch["image"].to(device))
            sts.append(st.cpu())
            aes.append(ae.cpu())
        st, ae = torch.cat(sts), torch.cat(aes)
        model.fit_quantiles(st, ae)
        row = {"st_map": float(st.mean()), "ae_map": float(ae.mean()),
               "q_st": float(model.quantiles_st[1]), "q_ae": float(model.quantiles_ae[1])}
        found = test_split_thresholds(model, self.data, self.opts.imgsz, device)
        if found is not None:
            self.thresholds, auroc = found
            row.update(test_image_auroc=auroc, image_threshold=self.thresholds["image"])
            if self.thresholds["pixel"] is not None:
                row["pixel_threshold"] = self.thresholds["pixel"]
        return row

    def run_card(self) -> RunCard:
        card = mobilevision.get_model_card(self.opts.model)
        extras: dict[str, Any] = {"train_images": len(self.train_paths), "val_images": len(self.val_paths)}
        if self.thresholds is not None:
            extras["thresholds"] = self.thresholds
        return RunCard(task=self.name, model=self.opts.model, input_size=(3, self.opts.imgsz, self.opts.imgsz),
                       mean=card.mean, std=card.std, interpolation=card.interpolation, crop_pct=card.crop_pct,
                       data=self.data.name, extras=extras)


def test_split_thresholds(model: nn.Module, data: AnomalyData, size: int, device: torch.device | str
                          ) -> tuple[dict[str, Any], float] | None:
    """(the run card's ``thresholds``, image AU-ROC) of a detector on ``data``'s labelled test split: the
    F1-optimal image threshold and, where masks mark defect pixels, the pixel one; None without good and
    anomalous test images."""
    from .anomaly_metrics import f1_threshold, image_auroc, pixel_f1_threshold

    labels = [s.label for s in data.test]
    n_bad = sum(labels)
    if not 0 < n_bad < len(labels):
        return None
    scores, maps, masks = detector_outputs(model, data.test, size, device)
    image, image_f1 = f1_threshold(scores, labels)
    pixel = pixel_f1 = None
    if masks.any() and not masks.all():
        pixel, pixel_f1 = pixel_f1_threshold(maps, masks)
    return ({"image": image, "pixel": pixel, "image_f1": image_f1, "pixel_f1": pixel_f1,
             "source": f"F1-optimal on {data.name} test split ({len(labels) - n_bad} good, {n_bad} anomalous)"},
            image_auroc(scores, labels))


@torch.no_grad()
def detector_outputs(model: nn.Module, samples: list, size: int, device: torch.device | str
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores (N,), maps (N, H, W), masks (N, H, W) bool) of a detector on labelled test samples at ``size``."""
    images = AnomalyImages.from_samples(samples, size)
    was_training = model.training
    model.eval()
    maps, scores = [], []
    for item in torch.utils.data.DataLoader(images, batch_size=4):
        amap, score = model(item["image"].to(device))
        maps.append(amap[:, 0].cpu().numpy())
        scores.append(score.reshape(-1).cpu().numpy())
    model.train(was_training)
    masks = np.stack([images[i]["mask"][0].numpy() > 0.5 for i in range(len(images))])
    return np.concatenate(scores), np.concatenate(maps), masks


@dataclass
class AnomalyEvaluation:
    model: str
    data: str
    report: Any                     # anomaly_metrics.AnomalyReport
    overlays: list[Path]
    summary: Path


@torch.no_grad()
def evaluate_detector(weights: str, data: str | None = None, category: str | None = None, out_dir: str | None = None,
                      device: str = "auto", overlays: bool = True) -> AnomalyEvaluation:
    """Image AU-ROC, pixel AU-ROC and AU-PRO of a trained detector on a test set, plus heat-map overlays
    and a summary JSON in ``out_dir`` (default: ``<weights stem>_eval`` beside the weights)."""
    import json

    from mobilevision.atomic_io import atomic_write_text
    from mobilevision.checkpoints import read_run_card
    from mobilevision.errors import WeightsError

    from .anomaly_metrics import evaluate_anomaly, save_overlay

    card = read_run_card(weights)
    if card is None or card.task != "anomaly":
        raise WeightsError(f"{weights} has no anomaly run card beside it: evaluate the best.safetensors or "
                           "last.safetensors of a `mobilevision train anomaly` run")
    trained_on = card.task_options
    if data is None and category is None:
        data, category = trained_on.get("data"), trained_on.get("category")
    dataset = resolve_anomaly_data(data, category)
    if not dataset.test:
        raise DataError(f"{dataset.root} has no test/ folder to evaluate on")
    device = resolve_torch_device(device)
    model = mobilevision.create_model(card.model, weights=weights).eval().to(device)
    size = card.input_size[1]
    all_scores, amaps, masks = detector_outputs(model, dataset.test, size, device)
    try:
        report = evaluate_anomaly(all_scores, [s.label for s in dataset.test], amaps, masks,
                                  [s.defect for s in dataset.test])
    except ValueError as e:  # e.g. a test set without anomalous (or without good) images
        raise DataError(f"{dataset.root}: {e}") from e
    out = Path(out_dir) if out_dir else Path(weights).with_name(f"{Path(weights).stem}_eval")
    written = []
    if overlays:
        vmax = float(np.quantile(amaps, 0.999))
        cut = report.image_threshold   # the F1-optimal threshold on these images: the title says which side
        for s, amap, mask, score in zip(dataset.test, amaps, masks, all_scores):
            path = out / s.defect / f"{s.path.stem}.png"
            save_overlay(load_rgb(s.path, size), amap, path, vmin=0.0, vmax=max(vmax, 1e-6), mask=mask if s.label else None,
                         title=f"{s.defect}: score {score:.3f} {'>' if score > cut else '<='} {cut:.3g}")
            written.append(path)
    summary = out / "summary.json"
    atomic_write_text(summary, json.dumps({"model": card.model, "weights": str(weights), "data": str(dataset.root),
                                           **report.to_dict(),
                                           "thresholds": report.thresholds(f"{dataset.name} test split"),
                                           "scores": [{"image": str(s.path), "defect": s.defect, "score": float(v)}
                                                      for s, v in zip(dataset.test, all_scores)]}, indent=2) + "\n")
    return AnomalyEvaluation(card.model, dataset.name, report, written, summary)


# ---------------------------------------------------------------- the export contract (mobilevision.tasks.TASKS)

def export_samples(md, data: str | None, split: str, n: int, seed: int, category: str | None = None):
    """Calibration: good training images; held-out: the test split with its good / anomalous labels."""
    from mobilevision.export import quantize as q

    ds = resolve_anomaly_data(data, category)
    if split == "train":
        idx = q.pick(len(ds.train), n, seed)
        return q.TaskSamples(f"{ds.name}, train/good", [q.preprocess_input(load_rgb(ds.train[i]), md) for i in idx], None,
                           "training images are all good", len(idx))
    if not ds.test:
        raise DataError(f"{ds.root} has no test images to measure image AU-ROC on")
    idx = q.pick(len(ds.test), n, seed)
    samples = [ds.test[i] for i in idx]
    labels = [s.label for s in samples]
    note = None if 0 < sum(labels) < len(labels) else "image AU-ROC needs good and anomalous test images"
    return q.TaskSamples(f"{ds.name}, test split", [q.preprocess_input(load_rgb(s.path), md) for s in samples],
                       labels if note is None else None, note, len(idx))


def describe_run(run) -> dict[str, Any]:
    """The thresholds the training run chose (``AnomalyTask.evaluate``), as the artifact's ``anomaly`` field."""
    from mobilevision.errors import ArtifactError, WeightsError
    from mobilevision.export.metadata import AnomalyThresholds

    found = run.extras.get("thresholds")
    if found is None:
        return {}
    try:
        if not isinstance(found, dict):
            raise TypeError("not an object")
        keep = {k: found.get(k) for k in ("image", "pixel", "image_f1", "pixel_f1")}
        thresholds = AnomalyThresholds(**keep, source=str(found.get("source", ""))[:200])
        thresholds.validate("thresholds")
    except (TypeError, ArtifactError) as e:
        raise WeightsError(f"the run card's thresholds are unreadable ({str(e).split(';')[0]}): retrain, or "
                           "delete the thresholds entry from the run card") from e
    return {"anomaly": thresholds}


def score_outputs(md, outputs, targets) -> float:
    """Image AU-ROC of the ``score`` output (its maximum where it is a map) against the anomaly labels."""
    from mobilevision.export.quantize import named_output

    from .anomaly_metrics import image_auroc

    scores = []
    for o in outputs:
        s = named_output(md, o, "score")
        scores.append(float(s.max()) if s.size != 1 else float(s.reshape(())))
    return image_auroc(scores, targets)
