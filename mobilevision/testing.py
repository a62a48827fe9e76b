"""Helpers for parity tests and benchmarks that have no trained weights to hand."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


@torch.no_grad()
def calibrate_random_weights(model: nn.Module, seed: int = 0, batches: int = 4, batch_size: int = 8) -> nn.Module:
    """Give a randomly initialised classifier a trained network's activation scale (logits O(1)), in place.

    Some official inits (SkipNet's, for one) give logits of ~1e-8, where a parity check's absolute
    tolerance would pass anything. Linear layers get N(0, 1/fan_in) weights, batch norms a random
    affine and statistics gathered from ``batches`` random batches at the model card's input size.
    Returns the model in eval mode.
    """
    g = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in model.modules():
        if isinstance(m, nn.Linear):
            m.weight.normal_(0.0, m.in_features ** -0.5, generator=g)
            if m.bias is not None:
                m.bias.normal_(0.0, 0.1, generator=g)
    for m in norms:
        m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g))
        m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
        m.train()
    for _ in range(batches):
        model(torch.randn(batch_size, *model.model_card.input_size, generator=g))
    for m in norms:
        m.momentum = 0.1
    return model.eval()


@torch.no_grad()
def randomise_batchnorm(model: nn.Module, seed: int = 0, linear_std: float | None = None) -> nn.Module:
    """Random BN affine and running statistics (and, with ``linear_std``, Linear weights N(0, std²) and
    biases N(0, 0.01)), so that wrong wiring or wrong weight loading shows in the outputs. Eval mode."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = 1 + 0.2 * torch.randn(m.weight.shape, generator=g)
            m.bias.data = 0.2 * torch.randn(m.bias.shape, generator=g)
            m.running_mean = 0.2 * torch.randn(m.running_mean.shape, generator=g)
            m.running_var = 0.5 + torch.rand(m.running_var.shape, generator=g)
        elif linear_std is not None and isinstance(m, nn.Linear):
            m.weight.data = linear_std * torch.randn(m.weight.shape, generator=g)
            m.bias.data = 0.1 * torch.randn(m.bias.shape, generator=g)
    return model.eval()


@torch.no_grad()
def calibrated_efficientad(name: str = "efficientad_s") -> nn.Module:
    """Random networks with statistics that put the maps of noise images at a trained detector's
    scale: teacher channels standardised, q_a = 0 and q_b = the median raw map value, so maps are
    O(0.1) and positive (an all-border score of exactly 0 would make the score's parity vacuous)."""
    import mobilevision

    torch.manual_seed(0)
    d = mobilevision.create_model(name).eval()
    images = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    t = d.teacher(d.normalize_image(images))
    d.teacher_mean.copy_(t.mean(dim=(0, 2, 3), keepdim=True))
    d.teacher_std.copy_(t.std(dim=(0, 2, 3), keepdim=True))
    for buf, raw in zip((d.quantiles_st, d.quantiles_ae), d.raw_maps(images)):
        buf.copy_(torch.stack([torch.tensor(0.0), raw.median()]))
    return d


def trained_efficientad_weights(folder: Path, name: str = "efficientad_s") -> Path:
    """``calibrated_efficientad`` saved as a training run would: ``folder/best.safetensors`` and its run card,
    with the F1-optimal thresholds on a ``write_tiny_mvtec`` test split (as training's validation records
    them), so exports of it carry thresholds. Returns the weights path."""
    import mobilevision
    from mobilevision.data.anomaly import read_mvtec
    from mobilevision.run_card import RunCard
    from mobilevision.tasks.anomaly import test_split_thresholds
    from mobilevision.train.checkpoint import save_weights

    model = calibrated_efficientad(name)
    data = read_mvtec(write_tiny_mvtec(Path(folder) / "tiny_mvtec"))
    thresholds, _ = test_split_thresholds(model, data, 256, "cpu")
    card = mobilevision.get_model_card(name)
    run = RunCard(task="anomaly", model=name, input_size=(3, 256, 256), mean=card.mean, std=card.std,
                  data=data.name, extras={"thresholds": thresholds})
    path = Path(folder) / "best.safetensors"
    save_weights(path, model.state_dict(), run)
    return path


def write_tiny_mvtec(root: Path, n_train: int = 10, size: int = 256) -> Path:
    """A tiny MVTec AD-style folder under ``root``: smooth-noise normals (train/good, test/good) and a
    bright square as the one defect (test/square + ground_truth/square/*_mask.png). Returns ``root``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)

    def normal() -> np.ndarray:
        base = rng.normal(128, 20, (size // 8, size // 8, 3)).clip(0, 255).astype(np.uint8)
        return np.asarray(Image.fromarray(base).resize((size, size), Image.Resampling.BILINEAR))

    for i in range(n_train):
        (root / "train" / "good").mkdir(parents=True, exist_ok=True)
        Image.fromarray(normal()).save(root / "train" / "good" / f"{i:03d}.png")
    for i in range(2):
        (root / "test" / "good").mkdir(parents=True, exist_ok=True)
        Image.fromarray(normal()).save(root / "test" / "good" / f"{i:03d}.png")
        img, mask = normal().copy(), np.zeros((size, size), np.uint8)
        img[100:140, 60:100], mask[100:140, 60:100] = 255, 255
        for d in ("test/square", "ground_truth/square"):
            (root / d).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / "test" / "square" / f"{i:03d}.png")
        Image.fromarray(mask).save(root / "ground_truth" / "square" / f"{i:03d}_mask.png")
    return root


def write_dng(path: Path, mosaic, pattern: str = "RGGB", black_level: int = 64, white_level: int = 1023) -> Path:
    """A minimal uncompressed Bayer DNG (16-bit samples) written with pidng, for RAW-reading tests; an
    (H, W, 3) array gives a LinearRaw (already demosaiced) DNG instead, which an ISP must refuse."""
    import numpy as np
    from pidng.core import RAW2DNG, DNGTags, Tag
    from pidng.defs import CalibrationIlluminant, CFAPattern, DNGVersion, Orientation, PhotometricInterpretation

    m = np.ascontiguousarray(mosaic, dtype=np.uint16)
    h, w = m.shape[:2]
    linear = m.ndim == 3
    layout = ((Tag.PhotometricInterpretation, PhotometricInterpretation.Linear_Raw), (Tag.SamplesPerPixel, 3),
              (Tag.BitsPerSample, [16, 16, 16])) if linear else (
        (Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array), (Tag.SamplesPerPixel, 1),
        (Tag.BitsPerSample, 16), (Tag.CFARepeatPatternDim, [2, 2]), (Tag.CFAPattern, getattr(CFAPattern, pattern)))
    t = DNGTags()
    for tag, value in ((Tag.ImageWidth, w), (Tag.ImageLength, h), (Tag.TileWidth, w), (Tag.TileLength, h),
                       (Tag.Orientation, Orientation.Horizontal), *layout, (Tag.BlackLevel, black_level),
                       (Tag.WhiteLevel, white_level),
                       (Tag.ColorMatrix1, [[1, 1], [0, 1], [0, 1], [0, 1], [1, 1], [0, 1], [0, 1], [0, 1], [1, 1]]),
                       (Tag.CalibrationIlluminant1, CalibrationIlluminant.D65),
                       (Tag.AsShotNeutral, [[1, 1], [1, 1], [1, 1]]), (Tag.Make, "mobilevision"),
                       (Tag.Model, "synthetic"), (Tag.DNGVersion, DNGVersion.V1_4),
                       (Tag.DNGBackwardVersion, DNGVersion.V1_2)):
        t.set(tag, value)
    writer = RAW2DNG()
    writer.options(t, path="", compress=False)
    path = Path(path)
    stem = path.with_suffix("")
    writer.convert(m, filename=str(stem))
    written = stem.with_suffix(".dng")
    if written != path:
        written.replace(path)
    return path


@torch.no_grad()
def spread_out_isp(name: str = "efficientisp", seed: int = 0) -> nn.Module:
    """An ISP zoo model with random weights whose outputs spread over [0, 1] (a fresh init gives values near 0,
    where the output clamp would hide channel-order mistakes such as DCR vs CRD pixel shuffles)."""
    import mobilevision

    torch.manual_seed(seed)
    model = mobilevision.create_model(name)
    gen = model.generator
    last = gen.conv3 if hasattr(gen, "conv3") else gen.output_module[0]
    last.weight.mul_(8.0)
    last.bias.add_(0.4 if hasattr(gen, "conv3") else 0.0)
    y = model(torch.rand(1, 4, 32, 32))
    if not (0.1 < float(y.std()) and 0.05 < float((y > 0).float().mean()) and float((y < 1).float().mean()) > 0.5):
        raise RuntimeError(f"{name}: the scaled init did not spread the outputs over [0, 1]")
    return model


class LayerNormAttention(nn.Module):
    """conv stem -> LayerNorm over channels -> single-head self-attention over the pixels -> GELU -> fc (10 logits):
    the op types (batch matmul, LayerNorm's rsqrt, GELU) that LiteRT's XNNPACK runs only in float."""

    def __init__(self, c: int = 16):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, 4, 1)
        self.norm = nn.LayerNorm(c)
        self.qk = nn.Linear(c, 2 * c)
        self.proj = nn.Linear(c, c)
        self.fc = nn.Linear(c, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.norm(self.stem(x).flatten(2).transpose(1, 2))           # B, L, C
        q, k = self.qk(t).chunk(2, dim=-1)
        attn = torch.softmax(q @ k.transpose(1, 2) * t.shape[-1] ** -0.5, dim=-1)
        return self.fc(torch.nn.functional.gelu(self.proj(attn @ t)).mean(1))


class ConvAttention(nn.Module):
    """Conv stem, one softmax attention over every position (qkv from a 1x1 conv), linear head (10 logits): the op
    mix of the zoo's EMO models."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1), nn.BatchNorm2d(16), nn.ReLU())
        self.qkv = nn.Conv2d(16, 48, 1)
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        q, k, v = self.qkv(x).flatten(2).chunk(3, dim=1)                      # (B, 16, H*W) each
        attn = torch.softmax(q.transpose(1, 2) @ k * 0.1, dim=-1)             # (B, H*W, H*W)
        return self.head((v @ attn.transpose(1, 2)).mean(2))
