"""Classification datasets: an image-folder tree, the CIFAR python-pickle layout, and the built-in
digits set (scikit-learn's 1,797 real 8x8 handwritten-digit scans; nothing is downloaded).

Every source yields ``(PIL RGB image, class index)``; ``open_classification_data`` picks the
reader from what is on disk and returns the train/val splits with the class names.
"""
from __future__ import annotations

import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from mobilevision.errors import DataError
from mobilevision.imaging import IMAGE_SUFFIXES, open_image

log = logging.getLogger("mobilevision.data")

VAL_FRACTION = 0.2      # held out when a folder has no val/ split (stratified, fixed seed)
SPLIT_SEED = 0


class CorruptImage(Exception):
    """An image file that cannot be decoded, or is over Pillow's decompression-bomb limit (the dataset
    logs it and substitutes another)."""


class ImageSource:
    """Indexable ``(image, label)`` pairs; subclasses say where the pixels come from."""

    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, index: int) -> Image.Image:
        raise NotImplementedError

    def describe(self, index: int) -> str:
        return f"sample {index}"

    def location(self) -> str:
        """Where the samples live, for messages."""
        return type(self).__name__


class FileSource(ImageSource):
    """Image files on disk, decoded on access by :func:`mobilevision.imaging.open_image` (upright by EXIF,
    16-bit scaled)."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int]):
        self.paths = [Path(p) for p in paths]
        self.labels = np.asarray(labels, dtype=np.int64)

    def image(self, index: int) -> Image.Image:
        return open_image(self.paths[index], CorruptImage)

    def describe(self, index: int) -> str:
        return str(self.paths[index])

    def location(self) -> str:
        return os.path.commonpath(self.paths) if self.paths else "an empty file list"


class ArraySource(ImageSource):
    """uint8 images held in memory, N x H x W x 3."""

    def __init__(self, images: np.ndarray, labels: Sequence[int]):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise DataError(f"expected uint8 N x H x W x 3 images, got {images.dtype} {images.shape}")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)

    def image(self, index: int) -> Image.Image:
        return Image.fromarray(self.images[index])


@dataclass
class ClassificationData:
    """Train/val sources and what a trained model must remember about them."""

    name: str                       # what it is, for logs and the run card
    classes: list[str]
    train: ImageSource
    val: ImageSource
    default_imgsz: int | None = None   # None: the model's own input size
    crop_pct: float | None = None      # None: the model card's (1.0 when images are already framed)
    flip_ok: bool = True               # horizontal flips keep the class (not for digits)
    in_memory: bool = False            # cheap to read: no loader workers needed


def open_classification_data(path: str | Path | None) -> ClassificationData:
    """The dataset at ``path``; ``None`` gives the built-in digits.

    ``path`` may be an image-folder tree (``train/<class>/*``, optional ``val/<class>/*``, or
    just ``<class>/*``) or a CIFAR-10/100 python folder (``data_batch_1..5`` + ``test_batch``, or
    ``train`` + ``test`` + ``meta``).
    """
    if path is None:
        return builtin_digits()
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root} (pass a folder with train/<class>/ images, "
                        "a CIFAR python folder, or omit --data for the built-in digits)")
    cifar = _find_cifar(root)
    if cifar is not None:
        return read_cifar(cifar)
    return read_image_folder(root)


# ---------------------------------------------------------------- built-in digits

def builtin_digits() -> ClassificationData:
    """scikit-learn's bundled digits: 1,797 real 8x8 scans (values 0..16) as grey RGB uint8.

    Fixed stratified split: 1,437 train / 360 val (20 %, seed 0).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    grey = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    idx = np.arange(len(rgb))
    tr, va = train_test_split(idx, test_size=VAL_FRACTION, stratify=digits.target, random_state=SPLIT_SEED)
    tr, va = np.sort(tr), np.sort(va)
    return ClassificationData(
        name="digits (built-in, scikit-learn)", classes=[str(int(c)) for c in digits.target_names],
        train=ArraySource(rgb[tr], digits.target[tr]), val=ArraySource(rgb[va], digits.target[va]),
        default_imgsz=64, crop_pct=1.0, flip_ok=False, in_memory=True)


# ---------------------------------------------------------------- image folders

def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _class_folders(split: Path) -> dict[str, list[Path]]:
    folders = sorted(d for d in split.iterdir() if d.is_dir() and not d.name.startswith("."))
    found = {d.name: _images_in(d) for d in folders}
    empty = [name for name, files in found.items() if not files]
    if empty:
        raise DataError(f"class folder {split / empty[0]} has no images ({', '.join(IMAGE_SUFFIXES[:5])}, ...): "
                        "add images or remove the folder")
    return found


def read_image_folder(root: Path) -> ClassificationData:
    """``root/train/<class>/*`` (+ ``root/val/<class>/*``), or ``root/<class>/*`` split 80/20."""
    train_dir = root / "train"
    base = train_dir if train_dir.is_dir() else root
    train = _class_folders(base)
    if not train:
        raise DataError(f"no class folders in {base}: expected {base}/<class name>/<images>")
    if len(train) < 2:
        raise DataError(f"{base} has one class ({next(iter(train))}): classification needs at least 2 class folders")
    classes = sorted(train)
    index = {c: i for i, c in enumerate(classes)}
    paths = [p for c in classes for p in train[c]]
    labels = [index[c] for c in classes for _ in train[c]]
    val_dir = next((root / n for n in ("val", "valid", "validation") if (root / n).is_dir()), None)
    if val_dir is not None and base is train_dir:
        val = _class_folders(val_dir)
        unknown = sorted(set(val) - set(classes))
        if unknown:
            raise DataError(f"{val_dir} has classes not in {train_dir}: {', '.join(unknown[:4])}")
        vpaths = [p for c in classes for p in val.get(c, [])]
        vlabels = [index[c] for c in classes for _ in val.get(c, [])]
        if not vpaths:
            raise DataError(f"{val_dir} holds no images: fill it or remove it (20 % of train is then held out)")
        return ClassificationData(f"image folder {root}", classes, FileSource(paths, labels), FileSource(vpaths, vlabels))
    tr, va = _stratified_split(np.asarray(labels))
    log.info("no val/ folder in %s: holding out %d of %d images for validation", root, len(va), len(labels))
    return ClassificationData(f"image folder {root} (80/20 split)", classes,
                              FileSource([paths[i] for i in tr], [labels[i] for i in tr]),
                              FileSource([paths[i] for i in va], [labels[i] for i in va]))


def _stratified_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per class, a fixed-seed VAL_FRACTION (at least one image) goes to val; single-image
    classes stay in train."""
    rng = np.random.default_rng(SPLIT_SEED)
    train, val = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        n_val = max(1, round(len(members) * VAL_FRACTION)) if len(members) > 1 else 0
        val += members[:n_val].tolist()
        train += members[n_val:].tolist()
    return np.sort(train), np.sort(val)


# ---------------------------------------------------------------- CIFAR python pickles

class _ArraysOnly(pickle.Unpickler):
    """Unpickles CIFAR batches (dicts of bytes, lists and numpy arrays) and nothing else."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def _read_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _ArraysOnly(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise DataError(f"cannot read CIFAR batch {path}: {e} (expected the python-pickle release)") from e
    if not isinstance(obj, dict):
        raise DataError(f"{path} is not a CIFAR batch (got {type(obj).__name__})")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _find_cifar(root: Path) -> Path | None:
    for d in (root, root / "cifar-10-batches-py", root / "cifar-100-python"):
        if (d / "data_batch_1").is_file() or ((d / "train").is_file() and (d / "meta").is_file()):
            return d
    return None


def _cifar_images(batch: dict, path: Path) -> np.ndarray:
    data = np.asarray(batch.get("data"))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: 'data' must be uint8 N x 3072 (32x32x3), got {data.dtype} {data.shape}")
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def read_cifar(folder: Path) -> ClassificationData:
    """CIFAR-10 (``data_batch_*``, ``test_batch``, ``batches.meta``) or CIFAR-100 (``train``, ``test``, ``meta``)."""
    if (folder / "data_batch_1").is_file():
        train_files = sorted(folder.glob("data_batch_*"))
        test_file, meta_file, label_key, names_key = folder / "test_batch", folder / "batches.meta", "labels", "label_names"
    else:
        train_files = [folder / "train"]
        test_file, meta_file, label_key, names_key = folder / "test", folder / "meta", "fine_labels", "fine_label_names"
    if not test_file.is_file():
        raise DataError(f"CIFAR folder {folder} has no {test_file.name}: copy the complete release")
    batches = [(_read_batch(p), p) for p in train_files]
    test = _read_batch(test_file)
    images = np.concatenate([_cifar_images(b, p) for b, p in batches])
    labels = np.concatenate([np.asarray(b[label_key], np.int64) for b, _ in batches])
    n_cls = int(labels.max()) + 1
    classes = [str(i) for i in range(n_cls)]
    if meta_file.is_file():
        names = _read_batch(meta_file).get(names_key)
        if names:
            classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return ClassificationData(f"CIFAR {folder}", classes, ArraySource(images, labels),
                              ArraySource(_cifar_images(test, test_file), np.asarray(test[label_key], np.int64)),
                              default_imgsz=32, crop_pct=1.0, in_memory=True)
