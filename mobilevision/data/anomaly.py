"""Anomaly-detection data: the MVTec AD folder layout, a held-out validation split of the training
good images, image/mask loading, and a built-in benchmark made from texture photographs shipped
inside scikit-image (nothing is downloaded).

Layout (MVTec AD; the usual VisA conversion is the same)::

    root/train/good/*.png               normal images only
    root/test/good/*.png                normal test images            (test/ is optional)
    root/test/<defect>/*.png            anomalous test images
    root/ground_truth/<defect>/<stem>_mask.png   pixel masks, nonzero = anomalous
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from mobilevision.atomic_io import atomic_write_text, move_into_place
from mobilevision.errors import DataError
from mobilevision.imaging import image_size, open_image, opened, upright

from .cache import cache_root
from .classification import IMAGE_SUFFIXES

log = logging.getLogger("mobilevision.data")

GOOD = "good"
VAL_FRACTION = 0.1      # [NEL]: a random 10 % of train/good, torch random_split with seed 42
VAL_SEED = 42


@dataclass(frozen=True)
class AnomalySample:
    """One test image: label 0 good / 1 anomalous, its defect folder name, and its mask (None when good)."""

    path: Path
    label: int
    defect: str
    mask: Path | None = None


@dataclass
class AnomalyData:
    """One MVTec-style category: the normal training images and the labelled test images."""

    name: str
    root: Path
    train: list[Path]
    test: list[AnomalySample] = field(default_factory=list)

    @property
    def defects(self) -> list[str]:
        """The anomalous test folders, sorted (``good`` excluded)."""
        return sorted({s.defect for s in self.test if s.label == 1})


# ---------------------------------------------------------------- reading the layout

def _images_in(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (flat, like MVTec), sorted, hidden files skipped."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def _subfolders(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _find_mask(gt: Path, stem: str) -> Path | None:
    """``<stem>_mask.<ext>`` (MVTec AD) or ``<stem>.<ext>`` (VisA conversions), PNG first."""
    for name in (f"{stem}_mask", stem):
        for suffix in (".png",) + tuple(s for s in IMAGE_SUFFIXES if s != ".png"):
            p = gt / f"{name}{suffix}"
            if p.is_file():
                return p
    return None


def _header_size(path: Path) -> tuple[int, int]:
    """(width, height) of the upright picture from the file header only; an unreadable file (or a
    decompression bomb) is a DataError naming it."""
    return image_size(path, DataError)


def read_mvtec(root: str | Path) -> AnomalyData:
    """The MVTec AD layout at ``root``; every image header and image/mask size pair is checked
    up front so a bad file fails here, not hours into training."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"anomaly dataset folder not found: {root} (pass a folder with train/good/*.png, "
                        "or omit --data for the built-in textures)")
    train_dir = root / "train" / GOOD
    if not train_dir.is_dir():
        cats = [d.name for d in _subfolders(root) if (d / "train" / GOOD).is_dir()]
        if cats:
            raise DataError(f"{root} holds several categories ({', '.join(cats[:6])}"
                            f"{', ...' if len(cats) > 6 else ''}): pass one of them, e.g. {root / cats[0]}")
        raise DataError(f"no train/good folder in {root}: expected the MVTec AD layout train/good/*.png, "
                        "test/<defect>/*.png, ground_truth/<defect>/<name>_mask.png")
    train = _images_in(train_dir)
    if not train:
        raise DataError(f"{train_dir} has no images ({', '.join(IMAGE_SUFFIXES[:5])}, ...): "
                        "add the normal training images")
    for p in train:
        _header_size(p)

    test: list[AnomalySample] = []
    test_dir = root / "test"
    if test_dir.is_dir():
        for folder in _subfolders(test_dir):
            for p in _images_in(folder):
                if folder.name == GOOD:
                    _header_size(p)
                    test.append(AnomalySample(p, 0, GOOD, None))
                    continue
                gt = root / "ground_truth" / folder.name
                mask = _find_mask(gt, p.stem)
                if mask is None:
                    raise DataError(f"no mask for anomalous test image {p}: expected {gt / (p.stem + '_mask.png')} "
                                    "(nonzero = defect); add it or move the image out of test/")
                isize, msize = _header_size(p), _header_size(mask)
                if isize != msize:
                    raise DataError(f"mask {mask} is {msize[0]}x{msize[1]} px but its image {p} is "
                                    f"{isize[0]}x{isize[1]}: masks must match their image pixel for pixel")
                test.append(AnomalySample(p, 1, folder.name, mask))
        if not test:
            log.warning("%s has no test images: training only, no evaluation", test_dir)
    return AnomalyData(root.name, root, train, test)


def split_validation(paths: Sequence[Path], fraction: float = VAL_FRACTION,
                     seed: int = VAL_SEED) -> tuple[list[Path], list[Path]]:
    """Hold out ``fraction`` of the training good images (never test images) for quantile fitting.

    Same membership as [NEL]'s ``random_split(train, [int(0.9 n), n - int(0.9 n)], Generator().manual_seed(42))``;
    both parts keep the input order. At least one image goes to each side.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    paths = list(paths)
    n = len(paths)
    if n < 2:
        raise DataError(f"{n} training image(s): holding out a validation image needs at least 2 in train/good")
    n_train = min(max(int((1.0 - fraction) * n), 1), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    tr, va = sorted(perm[:n_train]), sorted(perm[n_train:])
    return [paths[i] for i in tr], [paths[i] for i in va]


# ---------------------------------------------------------------- pixels

def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def load_rgb(path: str | Path, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """uint8 H x W x 3 by :func:`mobilevision.imaging.open_image` (upright by EXIF, 16-bit / 257, alpha
    dropped, palette colours, grey replicated); resized to ``size`` (height, width) by antialiased bilinear,
    aspect ratio not kept (both EfficientAD references stretch)."""
    arr = np.asarray(open_image(path, DataError))
    return arr if size is None else resize_rgb(arr, size, path)


def grayscale_rgb(arr: np.ndarray) -> np.ndarray:
    """uint8 H x W x 3 -> its PIL "L" luma (ITU-R 601-2, torchvision's Grayscale) repeated to 3 channels."""
    return np.repeat(np.asarray(Image.fromarray(arr).convert("L"))[..., None], 3, axis=2)


def resize_rgb(arr: np.ndarray, size: int | tuple[int, int], path: str | Path = "image") -> np.ndarray:
    """uint8 H x W x C resized to ``size`` (height, width) by PIL's antialiased bilinear (torchvision's
    Resize on PIL images); refuses to upsample more than 4x (``path`` names the file in the error)."""
    h, w = _hw(size)
    ih, iw = arr.shape[:2]
    if iw < w / 4 or ih < h / 4:
        factor = max(w / iw, h / ih)
        raise DataError(f"{path} is {iw}x{ih} px, far smaller than the {w}x{h} input; upsampling it "
                        f"{factor:.0f}x would invent detail: use larger images or a smaller --imgsz")
    if (ih, iw) != (h, w):
        arr = np.asarray(Image.fromarray(arr).resize((w, h), Image.Resampling.BILINEAR))
    return arr


def load_mask(path: str | Path, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """bool H x W, True where any colour channel is nonzero (alpha ignored), upright by EXIF like its image;
    resized with NEAREST."""
    with opened(path, DataError) as im:
        im = upright(im)
        if im.mode in ("1", "L", "F", "I") or im.mode.startswith("I;16"):
            m = np.asarray(im) != 0
        else:
            m = np.asarray(im.convert("RGBA"))[..., :3].any(axis=-1)
    if size is not None and m.shape != _hw(size):
        h, w = _hw(size)
        m = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((w, h), Image.Resampling.NEAREST)) > 0
    return m


class AnomalyImages(torch.utils.data.Dataset):
    """Images as float32 (3, H, W) in [0, 1], not mean/std-normalised (the model does that).

    Items are dicts: ``image`` always; ``label`` (int) when labels are given; ``mask`` (1, H, W float
    0/1, zeros where the entry is None) when masks are given. ``augment`` maps the image tensor to
    a tensor and is photometric only: it is not applied to the mask.
    """

    def __init__(self, paths: Sequence[str | Path], size: int | tuple[int, int],
                 masks: Sequence[str | Path | None] | None = None, labels: Sequence[int] | None = None,
                 augment: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.paths = [Path(p) for p in paths]
        self.size = _hw(size)
        for name, seq in (("masks", masks), ("labels", labels)):
            if seq is not None and len(seq) != len(self.paths):
                raise ValueError(f"{len(seq)} {name} for {len(self.paths)} images")
        self.masks = None if masks is None else [None if m is None else Path(m) for m in masks]
        self.labels = None if labels is None else [int(v) for v in labels]
        self.augment = augment

    @classmethod
    def from_samples(cls, samples: Sequence[AnomalySample], size: int | tuple[int, int]) -> "AnomalyImages":
        """Test samples with their labels and masks."""
        return cls([s.path for s in samples], size, masks=[s.mask for s in samples],
                   labels=[s.label for s in samples])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        arr = load_rgb(self.paths[index], self.size)
        image = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float().div_(255.0)
        if self.augment is not None:
            image = self.augment(image)
        item: dict = {"image": image}
        if self.labels is not None:
            item["label"] = self.labels[index]
        if self.masks is not None:
            m = self.masks[index]
            mask = np.zeros(self.size, bool) if m is None else load_mask(m, self.size)
            item["mask"] = torch.from_numpy(mask[None].astype(np.float32))
        return item


# ---------------------------------------------------------------- built-in benchmark

BUILTIN_VERSION = 1
CROP = 256
N_TRAIN, N_TEST_GOOD, N_PER_DEFECT = 60, 20, 8
DEFECT_KINDS = ("scratch", "stain", "hole", "cut_paste", "color_shift")


@dataclass(frozen=True)
class _Texture:
    loader: str         # skimage.data function; every one is shipped inside the wheel
    rotate: bool        # 90-degree rotations keep it normal (isotropic); flips always do


_TEXTURES = {
    "brick": _Texture("brick", rotate=False),    # 512x512 grey, oriented courses
    "grass": _Texture("grass", rotate=True),     # 512x512 grey
    "gravel": _Texture("gravel", rotate=True),   # 512x512 grey
    "tissue": _Texture("immunohistochemistry", rotate=True),  # 512x512 colour IHC stain
    "stars": _Texture("hubble_deep_field", rotate=True),      # 872x1000 colour galaxy field
}
BUILTIN_CATEGORIES: tuple[str, ...] = tuple(_TEXTURES)


def _cache_home() -> Path:
    return cache_root() / "anomaly"


def builtin_root(category: str, seed: int = 0) -> Path:
    """Where ``build_builtin`` puts a category by default (under :func:`~mobilevision.data.cache.cache_root`)."""
    return _cache_home() / f"{category}-v{BUILTIN_VERSION}-seed{seed}"


@lru_cache(maxsize=None)
def _texture(category: str) -> np.ndarray:
    """The category's photograph as uint8 H x W x 3 (grey replicated)."""
    import skimage.data

    img = getattr(skimage.data, _TEXTURES[category].loader)()
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    img = np.ascontiguousarray(img[..., :3], dtype=np.uint8)
    img.flags.writeable = False
    return img


def _is_grey(category: str) -> bool:
    img = _texture(category)
    return bool(np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2]))


def _regions(width: int) -> dict[str, tuple[int, int]]:
    """Disjoint column ranges: test = the rightmost max(CROP, width/4) columns, train = the rest."""
    test_w = max(CROP, width // 4)
    if width - test_w < CROP:
        raise DataError(f"texture is {width} px wide: need {2 * CROP} for disjoint train and test crops")
    return {"train": (0, width - test_w), "test": (width - test_w, width)}


def _crop(category: str, region: str, rng: np.random.Generator) -> np.ndarray:
    """A random CROP x CROP crop of the region, randomly flipped (and rotated for isotropic textures)."""
    img = _texture(category)
    x0, x1 = _regions(img.shape[1])[region]
    x = int(rng.integers(x0, x1 - CROP + 1))
    y = int(rng.integers(0, img.shape[0] - CROP + 1))
    out = img[y:y + CROP, x:x + CROP]
    if _TEXTURES[category].rotate:
        out = np.rot90(out, int(rng.integers(4)))
    if rng.random() < 0.5:
        out = out[:, ::-1]
    if rng.random() < 0.5:
        out = out[::-1]
    return np.ascontiguousarray(out)


def _smooth_noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    n = gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return n / (n.std() + 1e-12)


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return yy * yy + xx * xx <= radius * radius


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    from scipy.ndimage import binary_dilation

    return binary_dilation(mask, structure=_disk(radius))


def _largest_component(mask: np.ndarray) -> np.ndarray:
    from scipy.ndimage import label

    lab, n = label(mask, structure=np.ones((3, 3), bool))
    if n <= 1:
        return mask
    return lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)


def _blob(shape: tuple[int, int], rng: np.random.Generator, radius: tuple[float, float],
          roughness: float, edge: float) -> np.ndarray:
    """Alpha in [0, 1] of an irregular ellipse fully inside the image; soft over ``edge`` px at the
    border, and exactly 0 below 0.15 so every changed pixel is inside the mask (alpha > 0)."""
    h, w = shape
    r = rng.uniform(*radius)
    aspect = rng.uniform(0.6, 1.0)
    rx, ry = r, r * aspect
    cy = rng.uniform(r + 4, h - r - 4)
    cx = rng.uniform(r + 4, w - r - 4)
    t = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    dx, dy = xx - cx, yy - cy
    u = (dx * np.cos(t) + dy * np.sin(t)) / rx
    v = (-dx * np.sin(t) + dy * np.cos(t)) / ry
    f = np.sqrt(u * u + v * v) + roughness * _smooth_noise(shape, r / 3, rng)
    alpha = np.clip((1.0 - f) * r / edge, 0.0, 1.0)
    alpha[alpha < 0.15] = 0.0
    return alpha * _largest_component(alpha > 0)


def _curve(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """bool mask of a thin wandering stroke (a scratch), 3 or 5 px wide, 70-160 px long."""
    from skimage.draw import line

    h, w = shape
    m = np.zeros(shape, bool)
    p = np.array([rng.uniform(0.2 * h, 0.8 * h), rng.uniform(0.2 * w, 0.8 * w)])
    heading = rng.uniform(0, 2 * np.pi)
    bend = rng.uniform(0.03, 0.15)
    for _ in range(int(rng.uniform(70, 160) / 4)):
        heading += rng.normal(0, bend)
        q = p + 4 * np.array([np.sin(heading), np.cos(heading)])
        if not (3 <= q[0] < h - 3 and 3 <= q[1] < w - 3):
            heading += np.pi
            continue
        rr, cc = line(int(p[0]), int(p[1]), int(q[0]), int(q[1]))
        m[rr, cc] = True
        p = q
    return _dilate(m, int(rng.integers(1, 3)))


def _away(mean: float, rng: np.random.Generator) -> float:
    """+1 (brighten) or -1 (darken): whichever contrasts with a region of this mean (0..255)."""
    if mean < 90:
        return 1.0
    if mean > 165:
        return -1.0
    return 1.0 if rng.random() < 0.5 else -1.0


def _mean_under(lum: np.ndarray, alpha: np.ndarray) -> float:
    sel = lum[alpha > 0]
    return float(sel.mean()) if sel.size else float(lum.mean())


def _hue_rotate(rgb: np.ndarray, turn: float, value_shift: float) -> np.ndarray:
    from skimage.color import hsv2rgb, rgb2hsv

    hsv = rgb2hsv(rgb / 255.0)
    hsv[..., 0] = (hsv[..., 0] + turn) % 1.0
    hsv[..., 1] = np.clip(hsv[..., 1] * 1.3 + 0.15, 0, 1)
    hsv[..., 2] = np.clip(hsv[..., 2] + value_shift, 0, 1)
    return hsv2rgb(hsv) * 255.0


def add_defect(img: np.ndarray, kind: str, rng: np.random.Generator,
               donor: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic defect of ``kind`` on a uint8 H x W x 3 image -> (defective image, bool mask).

    Pixels outside the mask are left exactly as they were; grey images stay grey.
    ``cut_paste`` needs ``donor``, an image of another texture at least as large as ``img``.
    """
    if kind not in DEFECT_KINDS:
        raise ValueError(f"unknown defect kind {kind!r}: one of {', '.join(DEFECT_KINDS)}")
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected a uint8 H x W x 3 image, got {img.dtype} {img.shape}")
    shape = img.shape[:2]
    grey = bool(np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2]))
    clean = img.astype(np.float64)
    area = shape[0] * shape[1]
    for _ in range(20):     # redraw the rare shape that ends up too small or too large
        alpha, new = _defect_layer(clean, kind, rng, grey, donor)
        mask = alpha > 0
        if 0.003 * area <= mask.sum() <= 0.15 * area:
            break
    if grey:
        new = np.repeat(new.mean(axis=-1, keepdims=True), 3, axis=-1)
    out = clean * (1 - alpha[..., None]) + new * alpha[..., None]
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    out[~mask] = img[~mask]
    return out, mask


def _defect_layer(clean: np.ndarray, kind: str, rng: np.random.Generator, grey: bool,
                  donor: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(alpha H x W, fully-defective image H x W x 3) for one draw of the defect's shape and look."""
    shape = clean.shape[:2]
    lum = clean.mean(axis=-1)
    if kind == "scratch":
        alpha = _curve(shape, rng).astype(np.float64)
        if _away(_mean_under(lum, alpha), rng) > 0:
            new = 205.0 + 0.2 * clean
        else:
            new = 8.0 + 0.2 * clean
        return alpha, new
    if kind == "stain":
        alpha = _blob(shape, rng, (18, 38), roughness=0.4, edge=7) * rng.uniform(0.8, 1.0)
        sign = _away(_mean_under(lum, alpha), rng)
        tone = np.array([235.0, 235.0, 235.0]) if sign > 0 else np.array([30.0, 30.0, 30.0])
        if not grey:
            tone = tone + rng.uniform(-60, 60, 3) * np.array([1.0, 0.6, 0.2])
        return alpha, 0.45 * clean + 0.55 * np.clip(tone, 0, 255)   # translucent: texture shows through
    if kind == "hole":
        inner = _blob(shape, rng, (9, 20), roughness=0.08, edge=1.5)
        hole = inner > 0
        rim = _dilate(hole, int(rng.integers(2, 4))) & ~hole
        yy, xx = np.nonzero(hole)
        cy, cx = yy.mean(), xx.mean()
        light = rng.uniform(0, 2 * np.pi)
        ry, rx = np.mgrid[0:shape[0], 0:shape[1]]
        shade = np.cos(np.arctan2(ry - cy, rx - cx) - light)[..., None]
        # dark on a normal surface; on a dark one (a night sky) it is back-lit, else it would not show
        inside = 10.0 + 0.12 * clean if _mean_under(lum, inner) >= 60 else 215.0 + 0.15 * clean
        new = np.where(hole[..., None], inside, np.clip(clean + 90.0 * shade, 0, 255))
        alpha = np.maximum(inner, rim.astype(np.float64))
        return alpha, new
    if kind == "cut_paste":
        if donor is None:
            raise ValueError("cut_paste needs a donor image of another texture")
        dh, dw = donor.shape[:2]
        y = int(rng.integers(0, dh - shape[0] + 1))
        x = int(rng.integers(0, dw - shape[1] + 1))
        patch = donor[y:y + shape[0], x:x + shape[1], :3].astype(np.float64)
        alpha = _blob(shape, rng, (20, 40), roughness=0.35, edge=2)
        return alpha, patch
    # color_shift: a sharp-edged region with a hue turn (colour) or a brightness/contrast change (grey)
    alpha = _blob(shape, rng, (22, 42), roughness=0.15, edge=2)
    sign = _away(_mean_under(lum, alpha), rng)
    if grey:
        m = _mean_under(lum, alpha)
        new = (clean - m) * rng.uniform(0.6, 1.2) + m + sign * rng.uniform(45, 70)
    else:
        new = _hue_rotate(clean, rng.uniform(0.25, 0.75), sign * rng.uniform(0.15, 0.3))
    return alpha, np.clip(new, 0, 255)


def _save_png(path: Path, arr: np.ndarray) -> None:
    """Level 1: on noisy texture, level 6 is 5x slower and no smaller."""
    Image.fromarray(arr).save(path, format="PNG", compress_level=1)


def _expected_counts() -> dict[str, int]:
    counts = {f"train/{GOOD}": N_TRAIN, f"test/{GOOD}": N_TEST_GOOD}
    counts.update({f"test/{k}": N_PER_DEFECT for k in DEFECT_KINDS})
    counts.update({f"ground_truth/{k}": N_PER_DEFECT for k in DEFECT_KINDS})
    return counts


def _is_complete(root: Path, category: str, seed: int) -> bool:
    """A finished build of this category, seed and version (builtin.json is written last)."""
    try:
        meta = json.loads((root / "builtin.json").read_text())
    except (OSError, ValueError):
        return False
    if (meta.get("category"), meta.get("seed"), meta.get("version")) != (category, seed, BUILTIN_VERSION):
        return False
    counts = meta.get("counts", {})
    if counts != _expected_counts():
        return False
    return all((root / rel).is_dir() and len(list((root / rel).glob("*.png"))) == n for rel, n in counts.items())


def _generate(out: Path, category: str, seed: int) -> None:
    rng = np.random.default_rng([seed, zlib.crc32(category.encode())])
    grey = _is_grey(category)
    donors = [c for c in BUILTIN_CATEGORIES if c != category and (_is_grey(c) or not grey)]
    for rel in (f"train/{GOOD}", f"test/{GOOD}", *(f"test/{k}" for k in DEFECT_KINDS),
                *(f"ground_truth/{k}" for k in DEFECT_KINDS)):
        (out / rel).mkdir(parents=True)
    for i in range(N_TRAIN):
        _save_png(out / "train" / GOOD / f"{i:03d}.png", _crop(category, "train", rng))
    for i in range(N_TEST_GOOD):
        _save_png(out / "test" / GOOD / f"{i:03d}.png", _crop(category, "test", rng))
    for k, kind in enumerate(DEFECT_KINDS):
        for i in range(N_PER_DEFECT):
            base = _crop(category, "test", rng)
            donor = _crop(donors[(k + i) % len(donors)], "train", rng) if kind == "cut_paste" else None
            img, mask = add_defect(base, kind, rng, donor)
            _save_png(out / "test" / kind / f"{i:03d}.png", img)
            _save_png(out / "ground_truth" / kind / f"{i:03d}_mask.png", mask.astype(np.uint8) * 255)
    meta = {"category": category, "seed": seed, "version": BUILTIN_VERSION,
            "source": f"skimage.data.{_TEXTURES[category].loader}", "size": CROP,
            "counts": _expected_counts()}
    atomic_write_text(out / "builtin.json", json.dumps(meta, indent=2) + "\n")


def build_builtin(category: str, root: str | Path | None = None, seed: int = 0) -> Path:
    """An MVTec-style folder for a built-in texture category, generated once and reused.

    Train and test crops come from disjoint parts of the photograph; the defects are synthetic with
    exact masks. Built in a temporary folder beside ``root`` and renamed into place, so an
    interrupted build never leaves a half folder; the same seed gives byte-identical PNGs.
    """
    if category not in _TEXTURES:
        raise DataError(f"unknown built-in anomaly category {category!r}: available {', '.join(BUILTIN_CATEGORIES)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"built-in dataset seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    root = Path(root) if root is not None else builtin_root(category, seed)
    if _is_complete(root, category, seed):
        return root
    if root.exists() and not (root / "builtin.json").is_file() and (not root.is_dir() or any(root.iterdir())):
        raise DataError(f"{root} exists and is not a built-in anomaly dataset (no builtin.json): "
                        "remove it or choose another folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    log.info("building the built-in anomaly dataset %r (seed %d) in %s", category, seed, root)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".tmp", dir=root.parent))
    try:
        _generate(tmp, category, seed)
        if root.exists():
            move_into_place(tmp, root)      # a stale or other-seed build of ours: replaced
        else:
            try:
                os.replace(tmp, root)
            except OSError:
                if not _is_complete(root, category, seed):   # not a concurrent build of the same data
                    raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def resolve_anomaly_data(data: str | Path | None, category: str | None = None) -> AnomalyData:
    """``data`` an MVTec-style folder (or a folder of categories, with ``category`` picking one);
    ``None``: the built-in texture ``category`` (default brick), built on first use."""
    if data is None:
        return read_mvtec(build_builtin(category or "brick"))
    root = Path(data)
    if category and not (root / "train" / GOOD).is_dir():
        if not (root / category).is_dir():
            found = [d.name for d in _subfolders(root) if (d / "train" / GOOD).is_dir()] if root.is_dir() else []
            raise DataError(f"no category {category!r} in {root}"
                            + (f": found {', '.join(found)}" if found else f": expected {root}/<category>/train/good"))
        root = root / category
    return read_mvtec(root)
