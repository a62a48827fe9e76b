"""RAW -> RGB training data: the Zurich RAW-to-RGB layout, and a built-in set unprocessed from photos.

**Zurich RAW-to-RGB (ZRR)** (spec §2.3): ``train/huawei_raw/{i}.png`` (one-channel 16-bit PNG holding
10-bit RGGB values) and ``train/canon/{i}.jpg`` (its DSLR photo, not pixel-aligned), ``test/`` alike.
Normalisation x / 1020, no black level (PyNET's convention).

**Built-in** (no download): the real colour photographs shipped inside scikit-image, unprocessed into
RAW with Brooks et al.'s inverse ISP (:mod:`mobilevision.data.unprocess`) and stored as ZRR-style
16-bit mosaics (DN = round(x·1020)). The photos are split three ways: RAW patches come from one
group (``train/raw``, with their aligned sRGB in ``train/raw_gt`` for the *paired* baseline only),
the unpaired RGB targets from a second group (``train/rgb``), and the held-out group gives paired
RAW + ground truth for evaluation only (``test/raw``, ``test/rgb``). Generated deterministically from
a seed into ``~/.cache/mobilevision/isp/`` (atomic: a finished folder is moved into place).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mobilevision.data.cache import cache_root
from mobilevision.data.classification import IMAGE_SUFFIXES
from mobilevision.errors import DataError
from mobilevision.imaging import open_image, opened
from mobilevision.runtime.tasks.isp import normalize_raw, pack_bayer

BUILTIN_VERSION = 1
ZRR_WHITE = 1020.0   # PyNET: x / (4 · 255)
# photo groups (scikit-image names): RAW source, unpaired RGB targets, held-out evaluation
RAW_PHOTOS = ("astronaut", "hubble_deep_field", "retina")
TARGET_PHOTOS = ("rocket", "coffee")
TEST_PHOTOS = ("chelsea", "immunohistochemistry")
TRAIN_PATCH = 128          # sRGB / mosaic side of a training patch (packed 64)
TEST_PATCH = 256
PATCHES_PER_PHOTO = {"raw": 160, "rgb": 240, "test": 16}


@dataclass
class IspData:
    """File lists of one RAW -> RGB dataset (all mosaics RGGB, normalised (x - black) / (white - black))."""

    name: str
    root: Path
    train_raw: list[Path]
    train_aligned: list[Path] | None      # sRGB aligned with train_raw (paired training); None if absent
    train_targets: list[Path]             # the RGB pool unpaired training draws from
    test_raw: list[Path]
    test_rgb: list[Path]
    black_level: float = 0.0
    white_level: float = ZRR_WHITE
    pattern: str = "RGGB"


def builtin_root(seed: int = 0) -> Path:
    base = cache_root()
    return base / "isp" / f"builtin-v{BUILTIN_VERSION}-seed{seed}"


def _photo(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    return np.asarray(img[..., :3], dtype=np.uint8)


def _crops(img: np.ndarray, size: int, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    h, w = img.shape[:2]
    out = []
    for _ in range(n):
        y, x = int(rng.integers(0, h - size + 1)) // 2 * 2, int(rng.integers(0, w - size + 1)) // 2 * 2
        out.append(img[y:y + size, x:x + size])
    return out


def _save_mosaic(path: Path, srgb: np.ndarray, rng: np.random.Generator) -> None:
    from .unprocess import to_sensor_values, unprocess

    mosaic, _ = unprocess(srgb, rng, noise=True)
    Image.fromarray(to_sensor_values(mosaic, 0.0, ZRR_WHITE).astype(np.uint16)).save(path)


def build_builtin(seed: int = 0, root: Path | None = None) -> Path:
    """Generate the built-in set (about 1,200 small PNGs, a few seconds) unless it exists; returns its root."""
    root = root or builtin_root(seed)
    if (root / "info.json").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=root.parent))
    try:
        rng = np.random.default_rng([seed, BUILTIN_VERSION])
        for d in ("train/raw", "train/raw_gt", "train/rgb", "test/raw", "test/rgb"):
            (tmp / d).mkdir(parents=True)
        # (photos, patch side, patches per photo, RAW folder or None, sRGB folder)
        groups = ((RAW_PHOTOS, TRAIN_PATCH, PATCHES_PER_PHOTO["raw"], "train/raw", "train/raw_gt"),
                  (TARGET_PHOTOS, TRAIN_PATCH, PATCHES_PER_PHOTO["rgb"], None, "train/rgb"),
                  (TEST_PHOTOS, TEST_PATCH, PATCHES_PER_PHOTO["test"], "test/raw", "test/rgb"))
        for photos, size, n, raw_dir, rgb_dir in groups:
            i = 0
            for name in photos:
                for crop in _crops(_photo(name), size, n, rng):
                    if raw_dir:
                        _save_mosaic(tmp / raw_dir / f"{i:05d}.png", crop, rng)
                    Image.fromarray(crop).save(tmp / rgb_dir / f"{i:05d}.png")
                    i += 1
        (tmp / "info.json").write_text(json.dumps({
            "version": BUILTIN_VERSION, "seed": seed, "raw_photos": RAW_PHOTOS, "target_photos": TARGET_PHOTOS,
            "test_photos": TEST_PHOTOS, "normalisation": "x / 1020 (ZRR)", "pattern": "RGGB",
            "unprocessing": "Brooks et al. 2019 with shot/read noise"}, indent=2))
        try:
            tmp.rename(root)
        except OSError:  # another process finished first
            if not (root / "info.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []


def _by_stem(raw: list[Path], rgb_folder: Path, what: str) -> list[Path]:
    rgb = {p.stem: p for p in _images(rgb_folder)}
    missing = [p.name for p in raw if p.stem not in rgb]
    if missing:
        raise DataError(f"{len(missing)} RAW file(s) have no {what} in {rgb_folder} (first: {missing[0]}); "
                        "RAW and RGB files pair by name")
    return [rgb[p.stem] for p in raw]


def read_isp_folder(root: str | Path) -> IspData:
    """A ZRR folder (``huawei_raw`` / ``canon``) or a built-in-style one (``raw`` / ``raw_gt`` / ``rgb``)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"ISP data folder not found: {root}")
    if (root / "train" / "huawei_raw").is_dir():  # Zurich RAW-to-RGB
        train_raw = _images(root / "train" / "huawei_raw")
        aligned = _by_stem(train_raw, root / "train" / "canon", "Canon photo")
        test_raw = _images(root / "test" / "huawei_raw")
        test_rgb = _by_stem(test_raw, root / "test" / "canon", "Canon photo")
        data = IspData("zurich_raw2rgb", root, train_raw, aligned, aligned, test_raw, test_rgb)
    elif (root / "train" / "raw").is_dir():
        train_raw = _images(root / "train" / "raw")
        aligned = _by_stem(train_raw, root / "train" / "raw_gt", "aligned sRGB") \
            if (root / "train" / "raw_gt").is_dir() else None
        targets = _images(root / "train" / "rgb") or (aligned or [])
        test_raw = _images(root / "test" / "raw")
        test_rgb = _by_stem(test_raw, root / "test" / "rgb", "ground truth") if test_raw else []
        data = IspData(root.name, root, train_raw, aligned, targets, test_raw, test_rgb)
    else:
        raise DataError(f"{root} is neither a Zurich RAW-to-RGB folder (train/huawei_raw + train/canon) nor a "
                        "built-in-style one (train/raw + train/rgb)")
    if not data.train_raw:
        raise DataError(f"{root} has no training RAW files")
    return data


def resolve_isp_data(data: str | None, seed: int = 0) -> IspData:
    """``data`` folder, or the built-in set (generated on first use)."""
    if data is None:
        d = read_isp_folder(build_builtin(seed))
        d.name = "builtin"
        return d
    return read_isp_folder(data)


def read_mosaic(path: Path) -> np.ndarray:
    """A one-channel 16-bit RAW PNG -> its (H, W) integer mosaic in stored (sensor) order, cropped to even sides."""
    with opened(path, DataError) as im:
        arr = np.asarray(im)
    if arr.ndim != 2:
        raise DataError(f"{path} is not a one-channel Bayer mosaic (shape {arr.shape})")
    return arr[: arr.shape[0] // 2 * 2, : arr.shape[1] // 2 * 2]


def pack_mosaic(mosaic: np.ndarray, black: float, white: float, pattern: str = "RGGB") -> torch.Tensor:
    """(H, W) sensor values -> packed, normalised (4, H/2, W/2) float32 tensor."""
    return torch.from_numpy(normalize_raw(pack_bayer(mosaic, pattern), black, white))


def load_mosaic(path: Path, black: float, white: float, pattern: str = "RGGB") -> torch.Tensor:
    """A one-channel 16-bit RAW PNG -> packed, normalised (4, h, w) float32 tensor."""
    return pack_mosaic(read_mosaic(path), black, white, pattern)


REFERENCE_WB = (1.6, 1.2, 1.4)   # the reference's fixed white-balance gains (spec §4.1)


def reference_demosaic() -> str:
    """"menon2007" when colour-demosaicing is installed (the reference's choice), else "bilinear"."""
    import importlib.util

    return "menon2007" if importlib.util.find_spec("colour_demosaicing") is not None else "bilinear"


def reference_rendering(mosaic: np.ndarray, demosaic: str | None = None) -> torch.Tensor:
    """X̂ of spec §4.1, the content target: the RGGB integer mosaic (no black level) demosaiced (Menon
    2007 / bilinear), scaled 1/65535, white-balanced (1.6, 1.2, 1.4), clipped, stretched to the
    image's global min-max (skipped when flat), gamma 1/2.2. (3, H, W) float32 in [0, 1]."""
    from .unprocess import demosaic_bilinear_rggb

    demosaic = demosaic or reference_demosaic()
    m = np.asarray(mosaic, dtype=np.float64)
    if demosaic == "menon2007":
        from colour_demosaicing import demosaicing_CFA_Bayer_Menon2007

        rgb = demosaicing_CFA_Bayer_Menon2007(m, "RGGB")
    elif demosaic == "bilinear":
        rgb = demosaic_bilinear_rggb(m)
    else:
        raise ValueError(f"unknown demosaic {demosaic!r}: menon2007 or bilinear")
    rgb = np.clip(rgb / 65535.0 * np.asarray(REFERENCE_WB), 0.0, 1.0)
    lo, hi = rgb.min(), rgb.max()
    if hi > lo:
        rgb = (rgb - lo) / (hi - lo)
    return torch.from_numpy(np.ascontiguousarray((rgb ** (1.0 / 2.2)).transpose(2, 0, 1))).float()


def load_srgb(path: Path, size: tuple[int, int] | None = None) -> torch.Tensor:
    """An RGB target image -> (3, H, W) float32 in [0, 1] (8- or 16-bit, by :mod:`mobilevision.imaging`);
    ``size`` (H, W) must match when given. The EXIF orientation is not applied: targets pair pixel for
    pixel with RAW mosaics, which are read in stored (sensor) order."""
    arr = np.asarray(open_image(path, DataError, exif=False))
    if size is not None and arr.shape[:2] != tuple(size):
        raise DataError(f"{path} is {arr.shape[1]}x{arr.shape[0]} px, but the model outputs "
                        f"{size[1]}x{size[0]} for its RAW input: targets must be twice the packed size")
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float().div_(255.0)
