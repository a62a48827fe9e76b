"""Facial landmarks with knowledge distillation (Fard & Mahoor, CVIU 2022): Tough / Tolerant teachers and a
MobileNetV2 student trained with KD-Loss, on the shared training engine.

Roles (spec §3-§6):

* ``teacher-tough``: EfficientNet-B3 regressing the ground-truth ("hard") landmarks with MSE;
* ``teacher-tolerant``: the same network regressing soft landmarks, the ground truth projected onto a PCA
  shape model keeping ``asm_variance`` of the variance (coefficients clamped to +-3 sqrt(lambda));
* ``student``: MobileNetV2 with MSE (no distillation) or, with ``kd_from`` = the two teachers' weights,
  KD-Loss; the teachers run frozen in eval mode on every batch (augmentation is online, pitfall 7).

Coordinates are the reference's: a 224 (``size``) crop, x_n = (size/2 - x) / size, interleaved (2N).
300W / COFW files are 1-based (MATLAB); they are read 0-based (minus 1) so horizontal flips are exact, a
constant shift that does not change NME (the reference keeps the file's numbers).
Validation NME is measured in crop pixels against held-out training faces (split by image, before any
augmentation: pitfall 4).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import mobilevision
from mobilevision.data.landmarks import (AugmentOptions, LandmarkSample, augment, augment_points, crop_resize,
                                         dataset_box, extent_box, load_image, normalize, resolve_landmark_data)
from mobilevision.data.seeded import SeededDraws
from mobilevision.data.shape_model import DEFAULT_VARIANCE, ShapeModel
from mobilevision.devices import resolve_torch_device
from mobilevision.errors import DataError, TrainingError
from mobilevision.losses.landmark_kd import KDLoss, LandmarkMSE
from mobilevision.run_card import RunCard
from mobilevision.train.config import TrainConfig

from .landmark_metrics import NORMALISERS, per_image_nme

ROLES = ("teacher-tough", "teacher-tolerant", "student")
DEFAULT_MODEL = {"teacher-tough": "landmarks_effb3", "teacher-tolerant": "landmarks_effb3",
                 "student": "landmarks_mnv2"}
CROPS = ("extent", "box")
TEST_MARGIN = {68: 10.0, 98: 3.0, 29: 10.0}     # GT-extent crop margins of the author's test protocol (spec §7.5)
VAL_FRACTION = 0.05


@dataclass
class LandmarkOptions:
    role: str = "student"
    model: str | None = None          # None: EfficientNet-B3 for teachers, MobileNetV2 for the student
    data: str | None = None           # 300W / WFLW / COFW layout; None: the built-in procedural faces
    points: int | None = None         # 68 / 98 / 29; None: what the data has
    kd_from: list[str] | None = None  # student: weights of the two teachers (Tough and Tolerant, any order)
    asm_variance: float = DEFAULT_VARIANCE
    dropout: float | None = None      # head dropout; None: the model's default (student 0.1, teacher 0.5)
    size: int = 224                   # input crop side (pixels)
    augmentation_factor: int = 4      # draws per training image and epoch (the reference's offline factor)
    crop: str = "extent"              # evaluation crop: GT extent + margin (the author's protocol) or dataset box
    backbone_weights: str | None = None   # torchvision ImageNet file for the trunk (off by default: fidelity)
    seed_data: int = 0                # which built-in face set
    augment: dict[str, Any] = field(default_factory=dict)   # AugmentOptions overrides

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise TrainingError(f"--role {self.role!r}: choose one of {', '.join(ROLES)}")
        if self.model is None:
            self.model = DEFAULT_MODEL[self.role]
        if mobilevision.get_model_card(self.model).task != "landmarks":
            raise TrainingError(f"{self.model} is not a landmark model: run `mobilevision list --task landmarks`")
        if self.kd_from is not None:
            if self.role != "student":
                raise TrainingError("--kd-from is for the student: teachers train on their own targets")
            if len(self.kd_from) != 2:
                raise TrainingError(f"--kd-from needs the two teachers' weights (Tough and Tolerant) separated by a "
                                    f"comma, got {len(self.kd_from)}")
            for path in self.kd_from:
                if not Path(path).is_file():
                    raise TrainingError(f"--kd-from {path}: no such file; train the teachers first with "
                                        "`mobilevision train landmarks --role teacher-tough|teacher-tolerant`")
        if not 0.0 < self.asm_variance < 1.0:
            raise TrainingError(f"--asm-variance {self.asm_variance}: use a fraction in (0, 1), e.g. 0.90")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise TrainingError(f"--dropout {self.dropout}: use a probability in [0, 1)")
        if not 32 <= self.size <= 1024:
            raise TrainingError(f"--imgsz {self.size}: use 32..1024 pixels (the paper: 224)")
        if self.augmentation_factor < 1:
            raise TrainingError("--augmentation-factor must be >= 1")
        if self.crop not in CROPS:
            raise TrainingError(f"--crop {self.crop!r}: choose extent or box")
        if self.backbone_weights is not None and not Path(self.backbone_weights).is_file():
            raise TrainingError(f"--backbone-weights {self.backbone_weights}: no such file")
        AugmentOptions(**self.augment)      # unknown keys fail here


def landmark_recipe(epochs: int = 150, batch_size: int = 70, **overrides: Any) -> TrainConfig:
    """Spec §6: Adam 1e-3, betas (0.9, 0.999), Keras decay 1e-4 per step (lr / (1 + 1e-4 t)), no weight
    decay, batch 70, 150 epochs, for teachers and student alike."""
    cfg = dict(epochs=epochs, batch_size=batch_size, optimizer="adam", lr=1e-3, weight_decay=0.0,
               betas=(0.9, 0.999), schedule="inverse_time", inverse_time_rate=1e-4, warmup_epochs=0.0)
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**cfg)


def eval_crop(image: np.ndarray, sample: LandmarkSample, size: int, crop: str) -> tuple[np.ndarray, np.ndarray, tuple]:
    """(crop image, GT points in crop pixels, box) for evaluation: GT extent + the dataset's margin or its box."""
    n = len(sample.points)
    box = extent_box(sample.points, TEST_MARGIN.get(n, 10.0)) if crop == "extent" else dataset_box(sample)
    out, pts = crop_resize(image, sample.points, box, size)
    return out, pts, box


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 HWC RGB -> float CHW in [0, 1] (pixels / 255, no mean/std: spec §1)."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)


class AugmentedFaces(SeededDraws):
    """``factor`` augmented draws of every training face per epoch, reproducible from (seed, epoch, index):
    image, normalised GT target and, with a shape model, the soft (Tolerant-teacher) target."""

    def __init__(self, samples: list[LandmarkSample], size: int, opts: AugmentOptions, factor: int, seed: int,
                 shape_model: ShapeModel | None = None):
        super().__init__(len(samples) * factor, seed)
        self.samples, self.size, self.opts, self.shape_model = samples, size, opts, shape_model

    def draw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        sample = self.samples[index % len(self.samples)]
        return augment(load_image(sample), sample.points, self.rng(index), self.opts, self.size)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image, points = self.draw(index)
        target = normalize(points, self.size)
        item = {"image": to_tensor(image), "target": torch.from_numpy(target).float()}
        if self.shape_model is not None:
            item["soft"] = torch.from_numpy(self.shape_model.soften(target)).float()
        return item


class EvalFaces(torch.utils.data.Dataset):
    """Held-out faces, cropped as the evaluation protocol: image and GT points in crop pixels."""

    def __init__(self, samples: list[LandmarkSample], size: int, crop: str):
        self.samples, self.size, self.crop = samples, size, crop

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.samples[index]
        image, points, _ = eval_crop(load_image(sample), sample, self.size, self.crop)
        return {"image": to_tensor(image), "points": torch.from_numpy(points).float(),
                "target": torch.from_numpy(normalize(points, self.size)).float()}


def teacher_cards(paths: list[str]) -> dict[str, tuple[str, RunCard]]:
    """{"teacher-tough": (path, run card), "teacher-tolerant": (...)} from two trained teachers' weights,
    in any order (their run cards say which is which)."""
    from mobilevision.checkpoints import read_run_card

    found: dict[str, tuple[str, RunCard]] = {}
    for path in paths:
        card = read_run_card(path)
        role = card.role if card is not None else None
        if role not in ("teacher-tough", "teacher-tolerant"):
            raise TrainingError(f"--kd-from {path}: not a teacher trained by `mobilevision train landmarks --role "
                                f"teacher-tough|teacher-tolerant` (its run card says role {role!r})")
        if role in found:
            raise TrainingError(f"--kd-from: both files are {role} teachers; give one Tough and one Tolerant teacher")
        found[role] = (path, card)
    return found


class KDCriterion(nn.Module):
    """KD-Loss with the two frozen teachers, which run in eval mode without gradients on every batch.
    The teachers are not registered submodules: they stay out of the run's saved state (only their
    paths are recorded); ``_apply`` still moves them with ``.to(device)``."""

    def __init__(self, tough: nn.Module, tolerant: nn.Module, loss: KDLoss | None = None):
        super().__init__()
        self._teachers = {"tough": tough.eval().requires_grad_(False),
                          "tolerant": tolerant.eval().requires_grad_(False)}
        self.loss = loss or KDLoss()

    def _apply(self, fn: Any, recurse: bool = True) -> "KDCriterion":
        super()._apply(fn, recurse)
        for net in self._teachers.values():
            net._apply(fn)
        return self

    def train(self, mode: bool = True) -> "KDCriterion":
        super().train(mode)
        for net in self._teachers.values():
            net.eval()                       # always inference mode: dropout off, BN running statistics
        return self

    @torch.no_grad()
    def teachers(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._teachers["tough"](images), self._teachers["tolerant"](images)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        tough, tolerant = self.teachers(images)
        return self.loss(pred, target, tough, tolerant)


def _image_width(sample: LandmarkSample) -> int:
    """Width in pixels of the picture :func:`load_image` returns (upright by EXIF), from the header only."""
    if isinstance(sample.image, np.ndarray):
        return int(sample.image.shape[1])
    from mobilevision.imaging import image_size

    return image_size(sample.image, DataError)[0]


def _split(samples: list[LandmarkSample], seed: int = 0) -> tuple[list[LandmarkSample], list[LandmarkSample]]:
    """Held-out validation faces by image (at least 1, about 5 %), fixed by ``seed``."""
    if len(samples) < 4:
        raise DataError(f"only {len(samples)} training faces: landmark training needs at least 4 "
                        "(3 to train, 1 to validate)")
    order = np.random.default_rng(seed).permutation(len(samples))
    n_val = max(1, int(round(VAL_FRACTION * len(samples))))
    return [samples[i] for i in sorted(order[n_val:])], [samples[i] for i in sorted(order[:n_val])]


class LandmarkTask:
    """Tough / Tolerant teacher or student training (see the module docstring)."""

    name = "landmarks"
    main_metric = "nme"
    higher_is_better = False
    in_memory = False

    def __init__(self, options: LandmarkOptions, train: list[LandmarkSample] | None = None,
                 test: list[LandmarkSample] | None = None):
        self.opts = options
        if train is None:
            train, test = resolve_landmark_data(options.data, options.points, zero_based=True, seed=options.seed_data)
        self.points = len(train[0].points)
        if options.points is not None and options.points != self.points:
            raise DataError(f"--points {options.points}: the data has {self.points}-point annotations")
        self.train_samples, self.val_samples = _split(train)
        self.test_samples = test or []
        self.augment_options = AugmentOptions(**options.augment)
        self.shape_model: ShapeModel | None = None
        self.teachers = teacher_cards(options.kd_from) if options.kd_from else None
        if self.teachers:
            for role, (path, card) in self.teachers.items():
                if card.points != self.points or card.input_size[1:] != (options.size, options.size):
                    raise TrainingError(f"--kd-from {path}: the {role} teacher predicts {card.points} "
                                        f"points at {list(card.input_size)}, the student {self.points} points at "
                                        f"{options.size}x{options.size}")

    def options(self) -> dict[str, Any]:
        return asdict(self.opts)

    def build_model(self) -> nn.Module:
        kwargs = {} if self.opts.dropout is None else {"dropout": self.opts.dropout}
        model = mobilevision.create_model(self.opts.model, num_classes=self.points, **kwargs)
        if self.opts.backbone_weights:
            model.net.load_backbone(self.opts.backbone_weights)
        return model.train()

    def training_module(self, model: nn.Module) -> nn.Module:
        return model.net        # the normalised 2N regressor; the exported wrapper adds de-normalisation

    def criterion(self) -> nn.Module:
        if self.teachers:
            nets = {role: mobilevision.create_model(card.model, weights=path).net
                    for role, (path, card) in self.teachers.items()}
            return KDCriterion(nets["teacher-tough"], nets["teacher-tolerant"])
        return LandmarkMSE()

    def fit_shape_model(self, seed: int) -> ShapeModel:
        """PCA on the augmented training shapes (spec §4), ``augmentation_factor`` draws per face as the
        reference's offline-augmented set; geometry only, so no pixels are decoded."""
        shapes = []
        for k, sample in enumerate(self.train_samples):
            width = _image_width(sample)
            for j in range(self.opts.augmentation_factor):
                rng = np.random.default_rng([seed, 10_000 + j, k])
                shapes.append(normalize(augment_points(sample.points, width, rng, self.augment_options,
                                                       self.opts.size), self.opts.size))
        return ShapeModel.fit(np.stack(shapes), self.opts.asm_variance)

    def datasets(self, seed: int) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset]:
        if self.opts.role == "teacher-tolerant" and self.shape_model is None:
            self.shape_model = self.fit_shape_model(seed)
        train = AugmentedFaces(self.train_samples, self.opts.size, self.augment_options,
                               self.opts.augmentation_factor, seed, self.shape_model)
        return train, EvalFaces(self.val_samples, self.opts.size, "extent")

    def training_step(self, module: nn.Module, criterion: nn.Module, batch: dict[str, torch.Tensor],
                      device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
        images, target = batch["image"].to(device), batch["target"].to(device)
        pred = module(images)
        if isinstance(criterion, KDCriterion):
            loss = criterion(pred, target, images)
            return loss, dict(criterion.loss.last_terms)
        goal = batch["soft"].to(device) if self.opts.role == "teacher-tolerant" else target
        loss = criterion(pred, goal)
        return loss, {"mae": float((pred.detach() - target).abs().mean())}

    def evaluate(self, model: nn.Module, loader: torch.utils.data.DataLoader, device: torch.device,
                 criterion: nn.Module) -> dict[str, float]:
        """Validation NME (%, inter-ocular, crop pixels) and mean |pred - GT| in normalised units (the
        reference's per-epoch log value)."""
        preds, gts, maes = [], [], []
        for batch in loader:
            pixels = model(batch["image"].to(device)).double().cpu()     # the exported graph: crop pixels
            normalised = (self.opts.size / 2.0 - pixels.flatten(1)) / self.opts.size
            maes.append((normalised - batch["target"].double()).abs().mean(dim=1))
            preds.append(pixels.numpy())
            gts.append(batch["points"].double().numpy())
        nme = per_image_nme(np.concatenate(preds), np.concatenate(gts))
        return {"nme": float(100.0 * nme.mean()), "mae": float(torch.cat(maes).mean())}

    def run_card(self) -> RunCard:
        from mobilevision.checkpoints import sha256_of

        card = mobilevision.get_model_card(self.opts.model)
        return RunCard(
            task=self.name, model=self.opts.model, role=self.opts.role, points=self.points,
            input_size=(3, self.opts.size, self.opts.size), mean=card.mean, std=card.std,
            data=self.opts.data or "built-in procedural faces",
            extras={"train_faces": len(self.train_samples), "val_faces": len(self.val_samples),
                    "dropout": self.opts.dropout, "backbone_pretrained": bool(self.opts.backbone_weights),
                    "augmentation": {**self.augment_options.options_dict(), "factor": self.opts.augmentation_factor},
                    "shape_model": self.shape_model.summary() if self.shape_model else None,
                    "kd_from": ({role: {"weights": str(path), "sha256": sha256_of(path)}
                                 for role, (path, _) in self.teachers.items()} if self.teachers else None),
                    "loss": "kd" if self.teachers else "mse"})


# ---------------------------------------------------------------- evaluation

def _load_trained(weights: str, device: str) -> tuple[nn.Module, RunCard]:
    from mobilevision.checkpoints import read_run_card

    card = read_run_card(weights)
    if card is None or card.task != "landmarks":
        raise DataError(f"{weights} has no landmark run card beside it: evaluate a `mobilevision train landmarks` "
                        "run's best.safetensors / last.safetensors")
    return mobilevision.create_model(card.model, weights=weights).eval().to(device), card


@torch.no_grad()
def predict_crops(model: nn.Module, samples: list[LandmarkSample], size: int, crop: str, device: str = "cpu",
                  batch_size: int = 32) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(predictions, ground truth) as (M, N, 2) crop pixels, plus the crops (uint8) for overlays."""
    preds, gts, crops = [], [], []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        images, points = zip(*(eval_crop(load_image(s), s, size, crop)[:2] for s in chunk))
        x = torch.stack([to_tensor(im) for im in images]).to(device)
        preds.append(model(x).double().cpu().numpy())
        gts.append(np.stack(points))
        crops.extend(images)
    return np.concatenate(preds), np.concatenate(gts), crops


def evaluate_landmarks(weights: list[str], data: str | None = None, out_dir: str | None = None,
                       normaliser: str = "inter_ocular", crop: str = "extent", overlays: int = 8,
                       device: str = "auto") -> tuple[list[Any], Path, Path, Path | None]:
    """NME / FR@0.1 / AUC@0.1 of each trained model on the test split (the first run's data unless ``data``),
    a summary JSON, one CED plot of all models and an overlay grid (green GT, red prediction)."""
    import json

    from mobilevision.atomic_io import atomic_write_text

    from .landmark_metrics import ced_curve, landmark_report

    if not weights:
        raise DataError("give at least one --weights file to evaluate")
    if normaliser not in NORMALISERS:
        raise DataError(f"--normaliser {normaliser!r}: choose inter_ocular or inter_pupil")
    if crop not in CROPS:
        raise DataError(f"--crop {crop!r}: choose extent or box")
    device = resolve_torch_device(device)
    loaded = [_load_trained(w, device) for w in weights]
    first = loaded[0][1].task_options
    _, test = resolve_landmark_data(data if data is not None else first.get("data"), zero_based=True,
                                    seed=first.get("seed_data", 0))
    if not test:
        raise DataError(f"{data or first.get('data') or 'the data'} has no test split to evaluate on "
                        "(300W: a test/ folder or helen/testset, lfpw/testset, ibug)")
    reports, curves, shown = [], [], None
    for (model, card), w in zip(loaded, weights):
        if card.points != len(test[0].points):
            raise DataError(f"{w} predicts {card.points} points, the test faces have {len(test[0].points)}")
        size = card.input_size[-1]
        pred, gt, crops = predict_crops(model, test, size, crop, device)
        name = f"{card.model} {card.role or ''}" + (" +KD" if card.extras.get("kd_from") else "")
        report, nme = landmark_report(name.strip(), pred, gt, normaliser)
        reports.append(report)
        curves.append((report.name, *ced_curve(nme)))
        if shown is None:
            shown = (crops, gt, [])
        shown[2].append(pred)
    out = Path(out_dir) if out_dir else Path(weights[0]).with_name(f"{Path(weights[0]).stem}_eval")
    summary = out / "summary.json"
    atomic_write_text(summary, json.dumps({
        "data": data or first.get("data") or "built-in procedural faces", "test_faces": len(test),
        "crop": crop, "normaliser": normaliser, "space": "crop pixels (anisotropic resize, spec §7.5)",
        "reports": [r.to_dict() for r in reports]}, indent=2) + "\n")
    ced = out / "ced.png"
    _save_ced(ced, curves, normaliser)
    grid = None
    if overlays:
        grid = out / "overlays.png"
        _save_overlays(grid, shown[0][:overlays], shown[1][:overlays], [p[:overlays] for p in shown[2]],
                       [r.name for r in reports])
    return reports, summary, ced, grid


def _save_ced(path: Path, curves: list[tuple[str, np.ndarray, np.ndarray]], normaliser: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mobilevision.atomic_io import atomic_save_figure

    fig, ax = plt.subplots(figsize=(4.8, 3.4), dpi=120)
    for name, e, frac in curves:
        ax.plot(e, frac, label=name)
    ax.set_xlabel(f"NME ({normaliser.replace('_', '-')})")
    ax.set_ylabel("fraction of test faces")
    ax.set_xlim(0, 0.1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("cumulative error distribution", fontsize=9)
    fig.tight_layout()
    atomic_save_figure(fig, path)


def _save_overlays(path: Path, crops: list[np.ndarray], gts: np.ndarray, preds: list[np.ndarray],
                   names: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mobilevision.atomic_io import atomic_save_figure

    fig, axes = plt.subplots(len(preds), len(crops), figsize=(1.6 * len(crops), 1.7 * len(preds)), dpi=110,
                             squeeze=False)
    for r, (pred, name) in enumerate(zip(preds, names)):
        for c, image in enumerate(crops):
            ax = axes[r][c]
            ax.imshow(image)
            ax.scatter(gts[c][:, 0], gts[c][:, 1], s=2, c="lime")
            ax.scatter(pred[c][:, 0], pred[c][:, 1], s=2, c="red")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=6)
    fig.tight_layout()
    atomic_save_figure(fig, path)


# ---------------------------------------------------------------- the export contract (mobilevision.tasks.TASKS)

def export_samples(md, data: str | None, split: str, n: int, seed: int, category: str | None = None):
    """Faces of ``data`` (None: the built-in faces) cropped as evaluation crops them, with their landmarks."""
    from mobilevision.data.landmarks import load_image, resolve_landmark_data
    from mobilevision.errors import MobileVisionError
    from mobilevision.export import quantize as q

    points = md.landmarks.points if md.landmarks else None
    train, test = resolve_landmark_data(data, n_points=points, zero_based=True)
    samples = train if split == "train" else test
    if not samples:
        raise DataError(f"no {'training' if split == 'train' else 'test'} faces in {data or 'the built-in faces'}")
    h, w = q.input_hw(md)
    if h != w:
        raise MobileVisionError(f"landmark models take square crops; this artifact's input is {h}x{w}")
    inputs, targets = [], []
    idx = q.pick(len(samples), n, seed)
    for i in idx:
        crop, pts, _ = eval_crop(load_image(samples[i]), samples[i], h, "extent")
        inputs.append(q.preprocess_input(crop, md))
        targets.append(pts.astype(np.float64))
    name = data or "built-in faces"
    return q.TaskSamples(f"{name}, {'train' if split == 'train' else 'test'} faces (GT-extent crops)", inputs,
                       targets, None, len(idx))


def score_outputs(md, outputs, targets) -> float:
    """NME in % of the ``landmarks`` output (normalised as the metadata's eye corners say)."""
    from mobilevision.export.quantize import named_output

    pred = np.stack([named_output(md, o, "landmarks").reshape(-1, 2) for o in outputs])
    return 100.0 * float(per_image_nme(pred, np.stack(targets)).mean())


def describe_outputs(card, outputs) -> dict[str, Any]:
    """The landmark output: its point count (from the model's output, 2 numbers per point), flip pairs, eyes."""
    from mobilevision.data.landmarks import FLIP_PAIRS, INTER_OCULAR
    from mobilevision.export.metadata import LandmarkOutput

    points = int(outputs[0].shape[1])
    return {"landmarks": LandmarkOutput(points=points, flip_pairs=[list(p) for p in FLIP_PAIRS.get(points, ())],
                                        eye_corners=list(INTER_OCULAR[points]) if points in INTER_OCULAR else None)}
