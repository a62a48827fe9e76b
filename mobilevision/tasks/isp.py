"""ISP inference on camera RAW files (torch path; apps use ``mobilevision.runtime``'s ``process_raw``).

A RAW file is read with rawpy (:mod:`mobilevision.data.raw`), packed in (B, G_R, R, G_B) order,
normalised with the file's own black/white levels (spec §2.2, "real camera RAW"), and run in tiles of
``tile`` packed pixels, so memory stays bounded for a 12-megapixel photo. EfficientISP / RobustISP
tiles carry a 3-pixel halo: exact. RMFA-Net's channel attention pools over the whole input, so its
tiles (halo 16, or a quarter of a smaller tile) approximate a full-image pass (spec P15); ``tile=0`` runs the image in one piece.
The rendered picture is turned upright with the RAW's orientation (LibRaw's flip).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import mobilevision
from mobilevision.data.isp import (IspData, load_mosaic, load_srgb, pack_mosaic, read_mosaic, reference_demosaic,
                                   reference_rendering, resolve_isp_data)
from mobilevision.data.raw import ISP_MODELS, RawMosaic, check_isp_request, check_tile, read_raw
from mobilevision.data.seeded import SeededDraws
from mobilevision.devices import resolve_torch_device
from mobilevision.errors import DataError, MobileVisionError, TrainingError
from mobilevision.run_card import RunCard
from mobilevision.train.config import TrainConfig
from mobilevision.runtime.tasks.isp import HALO, apply_flip, normalize_raw, pack_bayer, run_tiled, to_uint8

MODELS = ISP_MODELS
RMFA_HALO = 16


@dataclass
class IspResult:
    rgb: np.ndarray          # (H, W, 3) uint8, upright (the RAW's orientation applied)
    pattern: str
    black_level: list[float]
    white_level: float
    tiles: int


def _is_local(model: torch.nn.Module) -> bool:
    from mobilevision.models.isp import ThreeConvISP

    return isinstance(getattr(model, "generator", None), ThreeConvISP)


@torch.no_grad()
def render_mosaic(model: torch.nn.Module, raw: RawMosaic, tile: int = 512, clip: bool = False,
                  device: str = "cpu") -> IspResult:
    """Upright RGB of a mosaic through a RawToRGB model, in ``tile`` x ``tile`` packed tiles (0: one piece)."""
    check_tile(tile)
    mosaic = raw.mosaic
    local = _is_local(model)
    if not local:  # RMFA-Net's pyramid needs full-resolution sides divisible by 4
        mosaic = mosaic[: mosaic.shape[0] // 4 * 4, : mosaic.shape[1] // 4 * 4]
    x = normalize_raw(pack_bayer(mosaic, raw.pattern), raw.black_level, raw.white_level, clip)
    model = model.eval().to(device)
    count = 0

    def run(t: np.ndarray) -> np.ndarray:
        nonlocal count
        count += 1
        return model(torch.from_numpy(np.ascontiguousarray(t[None])).to(device))[0].cpu().numpy()

    size = tile or max(x.shape[1:])
    rgb = run_tiled(x, run, size, halo=HALO if local else min(RMFA_HALO, size // 4))
    return IspResult(apply_flip(to_uint8(rgb), raw.flip), raw.pattern, raw.black_level, raw.white_level, count)


def process_raw_file(path: str | Path | RawMosaic, out: str | Path, model: str = "efficientisp",
                     weights: str | None = None, tile: int = 512, clip: bool = False,
                     device: str = "auto") -> IspResult:
    """Read a camera RAW file (or take ``read_raw``'s mosaic), render it upright with ``model`` (+ local
    ``weights``), write an 8-bit PNG/JPEG/TIFF atomically; arguments and RAW data are checked first."""
    import io

    from PIL import Image

    from mobilevision.atomic_io import atomic_write_bytes

    fmt = check_isp_request(path.path if isinstance(path, RawMosaic) else path, out, model, tile, weights, device)
    raw = path if isinstance(path, RawMosaic) else read_raw(path)
    device = resolve_torch_device(device)
    net = mobilevision.create_model(model, weights=weights)
    result = render_mosaic(net, raw, tile=tile, clip=clip, device=device)
    buf = io.BytesIO()
    Image.fromarray(result.rgb).save(buf, format=fmt)
    atomic_write_bytes(out, buf.getvalue())
    return result


# ---------------------------------------------------------------- training (paired baseline)

MODES = ("paired", "unpaired")
STEPS_PER_EPOCH = 100
VAL_FRACTION = 0.05


@dataclass
class IspOptions:
    model: str = "efficientisp"
    mode: str = "paired"
    data: str | None = None          # ZRR or built-in-style folder; None: the built-in set
    steps: int = 2000
    seed_data: int = 0               # which built-in set
    # unpaired: local weights of the frozen feature networks (None: random init, reported in the run card)
    vgg19_weights: str | None = None
    alexnet_weights: str | None = None
    vit_weights: str | None = None

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise TrainingError(f"unknown ISP model {self.model!r}: choose one of {', '.join(MODELS)}")
        if self.mode not in MODES:
            raise TrainingError(f"--mode {self.mode!r}: choose paired or unpaired")
        if self.steps < 1:
            raise TrainingError("--steps must be >= 1")
        for flag, path in (("--vgg19-weights", self.vgg19_weights), ("--alexnet-weights", self.alexnet_weights),
                           ("--vit-weights", self.vit_weights)):
            if path is not None and not Path(path).is_file():
                raise TrainingError(f"{flag} file not found: {path}")


def isp_recipe(steps: int, batch_size: int = 32, **overrides: Any) -> TrainConfig:
    """Spec §6/§7: Adam 5e-4, betas (0.5, 0.9), no weight decay, no schedule, batch 32."""
    cfg = dict(epochs=max(1, -(-steps // STEPS_PER_EPOCH)), batch_size=batch_size, optimizer="adam", lr=5e-4,
               weight_decay=0.0, betas=(0.5, 0.9), schedule="constant", warmup_epochs=0.0)
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**cfg)


class PairedIspSet(SeededDraws):
    """Random aligned (packed RAW, sRGB target) pairs: ``length`` per epoch, from (seed, epoch, index)."""

    def __init__(self, raw: list[Path], rgb: list[Path], black: float, white: float, length: int, seed: int,
                 shuffle: bool = True):
        super().__init__(length, seed)
        self.raw, self.rgb, self.black, self.white, self.shuffle = raw, rgb, black, white, shuffle

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        i = int(self.rng(index).integers(len(self.raw))) if self.shuffle else index
        x = load_mosaic(self.raw[i], self.black, self.white)
        return {"raw": x, "rgb": load_srgb(self.rgb[i], (2 * x.shape[1], 2 * x.shape[2]))}


def ssim(pred: torch.Tensor, target: torch.Tensor, reduce: bool = True) -> torch.Tensor:
    """SSIM with TF's settings (Gaussian window 11, σ 1.5, K1 0.01, K2 0.03, data range 1, valid-window
    filtering, mean over channels) from pytorch-msssim: per image, or their mean with ``reduce``."""
    from pytorch_msssim import ssim as _ssim

    return _ssim(pred, target, data_range=1.0, size_average=reduce, win_size=11, win_sigma=1.5, K=(0.01, 0.03))


def ms_ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image MS-SSIM, TF's 5 scales and weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333); sides > 160 px."""
    from pytorch_msssim import ms_ssim as _ms_ssim

    if min(pred.shape[-2:]) <= 160:
        raise DataError(f"MS-SSIM with 5 scales needs images larger than 160 px, got {tuple(pred.shape[-2:])}")
    return _ms_ssim(pred, target, data_range=1.0, size_average=False, win_size=11, win_sigma=1.5, K=(0.01, 0.03))


class UnpairedIspSet(SeededDraws):
    """Unpaired items: a random RAW patch and, drawn independently, a random RGB target (spec P7: not the
    reference's one fixed permutation)."""

    def __init__(self, raw: list[Path], targets: list[Path], black: float, white: float, length: int, seed: int):
        super().__init__(length, seed)
        self.raw, self.targets, self.black, self.white = raw, targets, black, white
        self.demosaic = reference_demosaic()

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = self.rng(index)
        mosaic = read_mosaic(self.raw[int(rng.integers(len(self.raw)))])
        x = pack_mosaic(mosaic, self.black, self.white)
        y = load_srgb(self.targets[int(rng.integers(len(self.targets)))], (2 * x.shape[1], 2 * x.shape[2]))
        return {"raw": x, "target": y, "reference": reference_rendering(mosaic, self.demosaic)}


class L1SSIMLoss(nn.Module):
    """mean|Ŷ − Y| + (1 − SSIM(Ŷ, Y)) (spec §7, the paired baseline)."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (pred - target).abs().mean() + (1.0 - ssim(pred, target))


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per image 20·log10(1 / RMSE) over all pixels and channels, images in [0, 1] (spec §8)."""
    mse = (pred - target).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-12))


class IspTask:
    """Train an ISP generator on RAW -> RGB data (the engine's TrainTask). Paired: L1 + SSIM on aligned pairs."""

    name = "isp"
    length_option = "--steps"   # the run's length, named in the long-run estimate
    main_metric = "psnr"
    higher_is_better = True
    in_memory = False

    def __init__(self, options: IspOptions, batch_size: int = 32, data: IspData | None = None):
        self.opts, self.batch_size = options, batch_size
        self.data = data if data is not None else resolve_isp_data(options.data, options.seed_data)
        if not self.data.train_aligned:
            raise DataError(f"{self.data.root} has no RGB aligned with its training RAW files (train/raw_gt or ZRR's "
                            "train/canon): paired training learns from them, and both modes pick their best "
                            "checkpoint by PSNR on held-out pairs, as the reference does")
        n = len(self.data.train_raw)
        if n < 2:
            raise DataError(f"{self.data.root} has {n} training pair(s): paired training needs at least 2")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(42)).tolist()
        n_val = min(max(1, int(n * VAL_FRACTION)), 200)
        self.val_idx, self.train_idx = sorted(perm[:n_val]), sorted(perm[n_val:])
        epochs = -(-options.steps // STEPS_PER_EPOCH)
        self.steps_per_epoch = -(-options.steps // epochs)

    def options(self) -> dict[str, Any]:
        return asdict(self.opts)

    def build_model(self) -> nn.Module:
        return mobilevision.create_model(self.opts.model).train()

    def training_module(self, model: nn.Module) -> nn.Module:
        return model.generator  # train the unclamped generator (the clamp would stop gradients)

    def criterion(self) -> nn.Module:
        if self.opts.mode == "paired":
            return L1SSIMLoss()
        from mobilevision.losses.isp_unpaired import UnpairedISPObjective

        x = load_mosaic(self.data.train_raw[0], self.data.black_level, self.data.white_level)
        o = self.opts
        self.objective = UnpairedISPObjective((2 * x.shape[1], 2 * x.shape[2]), {
            "vgg19": o.vgg19_weights, "alexnet": o.alexnet_weights, "vit_b_16": o.vit_weights})
        return self.objective

    def datasets(self, seed: int) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset]:
        d = self.data
        pick = lambda files, idx: [files[i] for i in idx]  # noqa: E731
        length = self.steps_per_epoch * self.batch_size
        if self.opts.mode == "unpaired":
            train = UnpairedIspSet(pick(d.train_raw, self.train_idx), d.train_targets, d.black_level, d.white_level,
                                   length, seed)
        else:
            train = PairedIspSet(pick(d.train_raw, self.train_idx), pick(d.train_aligned, self.train_idx),
                                 d.black_level, d.white_level, length, seed)
        val = PairedIspSet(pick(d.train_raw, self.val_idx), pick(d.train_aligned, self.val_idx), d.black_level,
                           d.white_level, len(self.val_idx), seed, shuffle=False)
        return train, val

    def training_step(self, module: nn.Module, criterion: nn.Module, batch: dict[str, torch.Tensor],
                      device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
        raw = batch["raw"].to(device)
        pred = module(raw)
        if self.opts.mode == "paired":
            rgb = batch["rgb"].to(device)
            loss = criterion(pred, rgb)
            return loss, {"psnr": float(psnr(pred.detach().clamp(0, 1), rgb).mean())}
        from mobilevision.losses.isp_unpaired import balanced_total

        terms = criterion.generator_terms(pred, batch["reference"].to(device), batch["target"].to(device))
        total, norms = balanced_total(terms, [p for p in module.parameters() if p.requires_grad])
        return total, {**{k: float(v.detach()) for k, v in terms.items()},
                       **{f"gnorm_{k}": v for k, v in norms.items()}}

    def after_optimizer_step(self, criterion: nn.Module, global_step: int) -> None:
        """Unpaired: each discriminator steps once every 10 generator steps (steps 0, 10, ...; spec §6)."""
        from mobilevision.losses.isp_unpaired import DISC_EVERY

        if self.opts.mode == "unpaired" and global_step % DISC_EVERY == 0:
            criterion.discriminator_step()

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: torch.utils.data.DataLoader, device: torch.device,
                 criterion: nn.Module) -> dict[str, float]:
        """Mean per-image PSNR (float, clamped output) on the held-out training pairs (spec §6 selection; for
        unpaired runs this lets paired ground truth pick the checkpoint, as the reference does: P10)."""
        values, losses = [], []
        for batch in loader:
            raw, rgb = batch["raw"].to(device), batch["rgb"].to(device)
            pred = model(raw)
            values.append(psnr(pred, rgb).cpu())
            if self.opts.mode == "paired":
                losses.append(float(criterion(pred, rgb)) * raw.shape[0])
        v = torch.cat(values)
        return {"psnr": float(v.mean()), **({"loss": sum(losses) / len(v)} if losses else {})}

    def run_card(self) -> RunCard:
        raw = self.data
        return RunCard(task=self.name, model=self.opts.model,
                       input_size=mobilevision.get_model_card(self.opts.model).input_size, data=str(raw.root),
                       raw_black_level=(raw.black_level,) * 4, raw_white_level=raw.white_level, raw_clip=False,
                       extras={"mode": self.opts.mode,
                               "feature_networks_pretrained": getattr(getattr(self, "objective", None), "pretrained",
                                                                      None),
                               "reference_demosaic": reference_demosaic() if self.opts.mode == "unpaired" else None,
                               "train_pairs": len(self.train_idx), "val_pairs": len(self.val_idx)})


# ---------------------------------------------------------------- evaluation


@dataclass
class IspReport:
    name: str                        # "naive demosaic" or the weights' file / model
    psnr: float
    ssim: float
    ms_ssim: float | None            # None when the test images are too small (<= 160 px)
    n_images: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def quantise_8bit(x: torch.Tensor) -> torch.Tensor:
    """As the reference scores saved PNGs: clamp, round to 8 bits, back to [0, 1]."""
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0


def _report(name: str, preds: list[torch.Tensor], targets: list[torch.Tensor]) -> IspReport:
    p, t = torch.cat(preds), torch.cat(targets)
    ms = float(ms_ssim(p, t).mean()) if min(p.shape[-2:]) > 160 else None
    return IspReport(name, float(psnr(p, t).mean()), float(ssim(p, t, reduce=False).mean()), ms, p.shape[0])


@torch.no_grad()
def evaluate_isp(weights: list[str], data: str | None = None, out_dir: str | None = None, grid_rows: int = 4,
                 device: str = "auto") -> tuple[list[IspReport], Path, Path | None]:
    """PSNR / SSIM / MS-SSIM (8-bit outputs, per-image means) of the reference rendering X̂ and of each
    trained ``weights`` on a test set, a summary JSON and a grid PNG (naive | models ... | ground truth)."""
    import json

    from mobilevision.atomic_io import atomic_write_text
    from mobilevision.checkpoints import read_run_card

    if not weights:
        raise MobileVisionError("give at least one --weights file to evaluate")
    device = resolve_torch_device(device)
    models, names, cards = [], [], []
    for w in weights:
        card = read_run_card(w)
        if card is None or card.task != "isp":
            raise MobileVisionError(f"{w} has no ISP run card beside it: evaluate a `mobilevision train isp` run's "
                                    "best.safetensors / last.safetensors")
        models.append(mobilevision.create_model(card.model, weights=w).eval().to(device))
        names.append(f"{card.model} {card.extras.get('mode') or ''}".strip())
        cards.append(card)
    if data is None:  # the data the first run trained on (None there: the built-in set)
        opts = cards[0].task_options
        dataset = resolve_isp_data(opts.get("data"), opts.get("seed_data", 0))
    else:
        dataset = resolve_isp_data(data)
    if not dataset.test_raw:
        raise DataError(f"{dataset.root} has no test RAW files to evaluate on")
    preds: list[list[torch.Tensor]] = [[] for _ in range(len(models) + 1)]
    targets = []
    for raw_path, rgb_path in zip(dataset.test_raw, dataset.test_rgb):
        mosaic = read_mosaic(raw_path)
        x = pack_mosaic(mosaic, dataset.black_level, dataset.white_level)[None].to(device)
        y = load_srgb(rgb_path, (2 * x.shape[2], 2 * x.shape[3]))[None]
        targets.append(y)
        preds[0].append(quantise_8bit(reference_rendering(mosaic)[None]))
        for k, m in enumerate(models):
            preds[k + 1].append(quantise_8bit(m(x)).cpu())
    reports = [_report(n, p, targets) for n, p in zip(["naive demosaic", *names], preds)]
    out = Path(out_dir) if out_dir else Path(weights[0]).with_name(f"{Path(weights[0]).stem}_eval")
    summary = out / "summary.json"
    atomic_write_text(summary, json.dumps({"data": str(dataset.root), "test_images": len(targets),
                                           "metrics_on": "8-bit quantised outputs; SSIM/MS-SSIM from pytorch-msssim "
                                                         "(valid-window, TF settings)",
                                           "reports": [r.to_dict() for r in reports]}, indent=2) + "\n")
    grid = None
    if grid_rows:
        grid = out / "grid.png"
        _save_grid(grid, [[p[i] for p in preds] + [targets[i]] for i in spread(len(targets), grid_rows)],
                   ["naive demosaic", *names, "ground truth"])
    return reports, summary, grid


def spread(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (first and last included): test sets list the crops of one
    photo together, so the grid's rows show different photos rather than neighbouring crops of the first."""
    if k >= n:
        return list(range(n))
    if k <= 1:
        return [0][:k]
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def _save_grid(path: Path, rows: list[list[torch.Tensor]], titles: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mobilevision.atomic_io import atomic_save_figure

    fig, axes = plt.subplots(len(rows), len(titles), figsize=(2.2 * len(titles), 2.2 * len(rows)), dpi=110,
                             squeeze=False)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            ax = axes[r][c]
            ax.imshow(img[0].permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
    fig.tight_layout()
    atomic_save_figure(fig, path)


# ---------------------------------------------------------------- the export contract (mobilevision.tasks.TASKS)

def export_samples(md, data: str | None, split: str, n: int, seed: int, category: str | None = None):
    """Packed RAW patches laid into the artifact's input size (a grid of patches when they are smaller);
    held-out targets are the matching sRGB patches laid the same way."""
    import math

    from mobilevision.data.isp import resolve_isp_data
    from mobilevision.export import quantize as q

    ds = resolve_isp_data(data)
    h, w = q.input_hw(md)
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
        inputs.append(q.tile_grid(packed, h, w)[None])
        if split != "train":
            rgb = [load_srgb(ds.test_rgb[i], (2 * p.shape[1], 2 * p.shape[2])).numpy() for i, p in zip(g, packed)]
            targets.append(q.tile_grid(rgb, 2 * h, 2 * w))
    what = "train RAW" if split == "train" else "test RAW/sRGB pairs"
    return q.TaskSamples(f"{ds.name} {what}, {per} patch(es) per input", inputs,
                       targets if split != "train" else None,
                       "training RAW has no paired target here" if split == "train" else None, len(groups) * per)


def score_outputs(md, outputs, targets) -> float:
    """PSNR in dB of the ``rgb`` output quantised to 8 bits (as the ISP evaluation scores saved PNGs)."""
    import math

    from mobilevision.export.quantize import named_output

    values = []
    for o, t in zip(outputs, targets):
        pred = np.round(np.clip(named_output(md, o, "rgb").reshape(t.shape), 0.0, 1.0) * 255.0) / 255.0
        mse = float(np.mean((pred.astype(np.float64) - t) ** 2))
        values.append(10.0 * math.log10(1.0 / max(mse, 1e-12)))
    return float(np.mean(values))
