"""EfficientAD teacher pretraining: distil a pretrained feature extractor into a padded PDN (spec §2).

Per step: a batch of random images from a large generic folder (ImageNet in the paper), each turned
grayscale with p = 0.1; the same image resized to ``target_size`` (512) for the extractor and to
``imgsz`` (256) for the PDN. The target Ψ is the PatchCore-style aggregation of the extractor's
layer2 + layer3 features (:class:`PatchDescriptorTarget`), normalised per channel with μ_Ψ / σ_Ψ
fitted once on ``norm_images`` (10,000) images before step 1 (two passes, as nelson1425's
pretraining.py); loss = mean((Ψ̂ − PDN(I))²). Adam 1e-4, coupled weight decay 1e-5, no schedule,
60,000 steps x batch 16. The PDN is built with padding so its map matches Ψ's grid (64 x 64 at 256 /
512 px); the saved weights load into the unpadded teacher used for anomaly training
(``mobilevision train anomaly --teacher RUN/last.safetensors``): the keys do not depend on padding.

The extractor is pluggable: any module with ``intermediate(x, layers) -> {name: map}`` (the zoo's
wide_resnet101_2 / wide_resnet50_2 load torchvision-format state dicts from a local file). μ_Ψ / σ_Ψ
live in the loss's buffers, so they are saved with the run and a resumed run does not refit them.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import mobilevision
from mobilevision.data.anomaly import grayscale_rgb, load_rgb, resize_rgb
from mobilevision.data.seeded import SeededDraws
from mobilevision.errors import TrainingError
from mobilevision.models.efficientad import TEACHER_CHANNELS, pdn_output_size
from mobilevision.models.patch_target import TARGET_LAYERS, PatchDescriptorTarget, fit_channel_normalisation
from mobilevision.registry import IMAGENET_MEAN, IMAGENET_STD
from mobilevision.run_card import RunCard
from mobilevision.train.config import TrainConfig

from .anomaly import image_files

MODELS = ("pdn_s", "pdn_m")
EXTRACTORS = ("wide_resnet101_2", "wide_resnet50_2")
STEPS_PER_EPOCH = 1000         # an "epoch" is this many steps: checkpoint + validation after each
GRAYSCALE_P = 0.1
NORM_EPOCH = 2 ** 31           # rng stream of the normalisation pass (distinct from every training epoch)
VAL_FRACTION = 0.1             # at most this share of the folder is held out ...
VAL_MAX = 200                  # ... and at most this many images


@dataclass
class TeacherOptions:
    model: str = "pdn_s"
    data: str = ""                        # folder of generic images (ImageNet train in the paper), recursive
    extractor: str = "wide_resnet101_2"   # zoo model with intermediate(); the paper's
    extractor_weights: str | None = None  # torchvision-format state dict (IMAGENET1K_V1 in nelson1425)
    layers: tuple[str, ...] = TARGET_LAYERS
    steps: int = 60_000
    imgsz: int = 256                      # PDN input
    target_size: int = 512                # extractor input
    norm_images: int = 10_000             # images for μ_Ψ / σ_Ψ
    workers: int | None = None            # loader processes for the normalisation pass

    def __post_init__(self) -> None:
        self.layers = tuple(self.layers)
        if self.model not in MODELS:
            raise TrainingError(f"unknown teacher {self.model!r}: choose {' or '.join(MODELS)}")
        if not self.data:
            raise TrainingError("teacher pretraining needs --data: a folder of generic photos (the paper: ImageNet train)")
        checks = {"--steps must be >= 1": self.steps >= 1,
                  f"--imgsz {self.imgsz}: the PDN needs a multiple of 4, at least 32": self.imgsz >= 32 and self.imgsz % 4 == 0,
                  f"--target-size {self.target_size} must be >= 32": self.target_size >= 32,
                  "--norm-images must be >= 1": self.norm_images >= 1}
        for message, ok in checks.items():
            if not ok:
                raise TrainingError(message)
        pdn, grid = pdn_output_size(self.imgsz, padding=True), -(-self.target_size // 8)
        if self.layers[:1] == ("layer2",) and pdn != grid:
            raise TrainingError(f"--imgsz {self.imgsz} gives a {pdn}x{pdn} PDN map but --target-size "
                                f"{self.target_size} gives a {grid}x{grid} layer2 grid: keep a 1:2 ratio "
                                "(the paper: 256 and 512)")


def recipe(steps: int, batch_size: int = 16, **overrides: Any) -> TrainConfig:
    """Spec §2: Adam 1e-4, coupled weight decay 1e-5, constant rate, ``steps`` batches of ``batch_size``."""
    cfg = dict(epochs=math.ceil(steps / STEPS_PER_EPOCH), batch_size=batch_size, optimizer="adam",
               schedule="constant", warmup_epochs=0.0)
    cfg.update(overrides)
    return TrainConfig(**cfg)


class DistillationImages(SeededDraws):
    """``length`` items, each a random image of ``paths`` (grayscale with ``grayscale_p``) at two sizes:
    {"target_image": 3 x target_size², "image": 3 x imgsz²}, floats in [0, 1]. ``shuffle=False``
    walks ``paths`` in order instead (validation). Randomness comes from (seed, epoch, index)."""

    def __init__(self, paths: list[Path], imgsz: int, target_size: int, length: int, seed: int,
                 grayscale_p: float = GRAYSCALE_P, shuffle: bool = True):
        super().__init__(length, seed)
        self.paths, self.imgsz, self.target_size = paths, imgsz, target_size
        self.grayscale_p, self.shuffle = grayscale_p, shuffle

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = self.rng(index)
        path = self.paths[int(rng.integers(len(self.paths))) if self.shuffle else index % len(self.paths)]
        arr = load_rgb(path)
        if rng.random() < self.grayscale_p:
            arr = grayscale_rgb(arr)

        def tensor(size: int) -> torch.Tensor:
            a = resize_rgb(arr, size, path)
            return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float().div_(255.0)

        return {"target_image": tensor(self.target_size), "image": tensor(self.imgsz)}


def _normalize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


class TeacherDistillationGraph(nn.Module):
    """What the engine runs: (target_image, image) in [0, 1] -> (Ψ without grad, PDN(image))."""

    def __init__(self, pdn: nn.Module, target: PatchDescriptorTarget):
        super().__init__()
        self.pdn, self.target = pdn, target

    def forward(self, target_image: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            psi = self.target(_normalize(target_image))
        pred = self.pdn(_normalize(image))
        if psi.shape != pred.shape:
            raise TrainingError(f"the PDN's output {tuple(pred.shape[1:])} does not match the target "
                                f"{tuple(psi.shape[1:])}: the extractor's first layer must have the PDN's grid "
                                "(wide_resnet layer2 at --target-size 512 and --imgsz 256, or keep that 2:1 ratio)")
        return psi, pred


class NormalisedTargetMSE(nn.Module):
    """mean(((Ψ − μ_Ψ) / σ_Ψ − prediction)²); μ_Ψ / σ_Ψ are buffers, so the run saves and resumes them."""

    def __init__(self, channels: int = TEACHER_CHANNELS):
        super().__init__()
        self.register_buffer("target_mean", torch.zeros(channels))
        self.register_buffer("target_std", torch.ones(channels))

    def normalise(self, psi: torch.Tensor) -> torch.Tensor:
        return (psi - self.target_mean.view(1, -1, 1, 1)) / self.target_std.view(1, -1, 1, 1)

    def forward(self, psi: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
        return (self.normalise(psi) - prediction).pow(2).mean()


def build_extractor(name: str, weights: str | None) -> nn.Module:
    """A zoo extractor with ``intermediate()``, its pretrained weights loaded from a local file."""
    if name not in EXTRACTORS:
        raise TrainingError(f"unknown extractor {name!r}: choose {' or '.join(EXTRACTORS)}")
    if not weights:
        raise TrainingError(f"teacher pretraining distils a pretrained extractor: pass --extractor-weights with a "
                            f"local torchvision-format {name} state dict (IMAGENET1K_V1, e.g. "
                            f"{name}-*.pth). Without one, train the detector from a teacher checkpoint "
                            "(`mobilevision train anomaly --teacher PATH`)")
    return mobilevision.create_model(name, weights=weights)


def _held_out(paths: list[Path], seed: int = 42) -> tuple[list[Path], list[Path]]:
    if len(paths) < 2:
        raise TrainingError(f"teacher pretraining needs at least 2 images in --data (got {len(paths)}); the paper "
                            "uses the 1.28M ImageNet training images")
    k = min(VAL_MAX, max(1, int(len(paths) * VAL_FRACTION)))
    perm = torch.randperm(len(paths), generator=torch.Generator().manual_seed(seed)).tolist()
    val = sorted(perm[:k])
    keep = sorted(perm[k:])
    return [paths[i] for i in keep], [paths[i] for i in val]


class TeacherPretrainTask:
    """Distil ``options.extractor`` into a padded PDN teacher (the engine's TrainTask).

    ``batch_size``: the run's global batch (the epoch length is ``steps_per_epoch`` batches of it; the
    normalisation pass uses it too). ``extractor`` (tests, other backbones): a ready module with
    ``intermediate(x, layers)``; default: ``build_extractor(options.extractor, options.extractor_weights)``.
    """

    name = "anomaly_teacher"
    length_option = "--steps"   # the run's length, named in the long-run estimate
    main_metric = "distill_mse"     # normalised-target MSE on held-out images: lower is better
    higher_is_better = False
    in_memory = False

    def __init__(self, options: TeacherOptions, batch_size: int = 16, extractor: nn.Module | None = None):
        self.opts, self.batch_size = options, batch_size
        self.train_paths, self.val_paths = _held_out(image_files(
            options.data, "--data", "point it at a folder of generic photos (the paper: ImageNet train)"))
        ext = extractor if extractor is not None else build_extractor(options.extractor, options.extractor_weights)
        if not callable(getattr(ext, "intermediate", None)):
            raise TrainingError(f"extractor {type(ext).__name__} has no intermediate(x, layers) method")
        ext.requires_grad_(False)
        self.target = PatchDescriptorTarget(ext, options.layers)
        self.steps_per_epoch = math.ceil(options.steps / math.ceil(options.steps / STEPS_PER_EPOCH))
        self.seed = 0
        self._criterion: NormalisedTargetMSE | None = None

    def options(self) -> dict[str, Any]:
        return asdict(self.opts)

    def build_model(self) -> nn.Module:
        return mobilevision.create_model(self.opts.model, padding=True).train()

    def training_module(self, model: nn.Module) -> nn.Module:
        self.target.to(next(model.parameters()).device)
        return TeacherDistillationGraph(model, self.target)

    def criterion(self) -> nn.Module:
        self._criterion = NormalisedTargetMSE()
        return self._criterion

    def _workers(self) -> int:
        return self.opts.workers if self.opts.workers is not None else min(4, os.cpu_count() or 1)

    def datasets(self, seed: int) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset]:
        self.seed = seed
        o = self.opts
        return (DistillationImages(self.train_paths, o.imgsz, o.target_size, self.steps_per_epoch * self.batch_size,
                                   seed),
                DistillationImages(self.val_paths, o.imgsz, o.target_size, len(self.val_paths), seed,
                                   grayscale_p=0.0, shuffle=False))

    @torch.no_grad()
    def on_fit_start(self, model: nn.Module, device: torch.device) -> None:
        """μ_Ψ / σ_Ψ over ``norm_images`` random training images (grayscale p = 0.1), two passes (spec §2)."""
        if self._criterion is None:
            raise TrainingError("the engine must build the criterion before on_fit_start")
        o = self.opts
        images = DistillationImages(self.train_paths, o.imgsz, o.target_size, o.norm_images, self.seed)
        images.set_epoch(NORM_EPOCH)
        loader = torch.utils.data.DataLoader(images, batch_size=min(self.batch_size, o.norm_images),
                                             num_workers=self._workers())
        self.target.eval()
        mean, std = fit_channel_normalisation(lambda b: self.target(_normalize(b["target_image"].to(device))), loader)
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all()) or bool((std <= 0).any()):
            raise TrainingError("the extractor's target features have zero or non-finite spread on these images: "
                                "check --extractor-weights and --data")
        self._criterion.target_mean.copy_(mean)
        self._criterion.target_std.copy_(std)

    def training_step(self, module: nn.Module, criterion: nn.Module, batch: dict[str, torch.Tensor],
                      device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
        psi, pred = module(batch["target_image"].to(device, non_blocking=True),
                           batch["image"].to(device, non_blocking=True))
        loss = criterion(psi, pred)
        return loss, {"distill": float(loss.detach())}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: torch.utils.data.DataLoader, device: torch.device,
                 criterion: nn.Module) -> dict[str, float]:
        """Mean normalised-target MSE of the PDN on the held-out images (image-weighted)."""
        total, n = 0.0, 0
        graph = TeacherDistillationGraph(model, self.target)
        for batch in loader:
            psi, pred = graph(batch["target_image"].to(device), batch["image"].to(device))
            total += float(criterion(psi, pred)) * psi.shape[0]
            n += psi.shape[0]
        return {"distill_mse": total / max(n, 1)}

    def run_card(self) -> RunCard:
        card = mobilevision.get_model_card(self.opts.model)
        return RunCard(task=self.name, model=self.opts.model, input_size=(3, self.opts.imgsz, self.opts.imgsz),
                       mean=card.mean, std=card.std, interpolation=card.interpolation, crop_pct=card.crop_pct,
                       data=str(self.opts.data),
                       extras={"padding_when_trained": True, "extractor": self.opts.extractor,
                               "extractor_weights": self.opts.extractor_weights, "layers": list(self.opts.layers),
                               "target_size": self.opts.target_size, "train_images": len(self.train_paths),
                               "val_images": len(self.val_paths)})

