"""Image -> tensor transforms for training (Pillow + numpy; no torchvision).

Validation uses the runtime's own ``preprocess`` with the preprocessing that export writes
into the artifact, so a model is evaluated on exactly what an app will feed it. Training adds
the usual random-resized crop and (where the class allows) a horizontal flip; randomness comes
from a generator the dataset seeds per (seed, epoch, sample), so runs are reproducible, resume
bit-exactly, and give the same batches with one process or several.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from mobilevision.errors import DataError
from mobilevision.export.metadata import Preprocessing
from mobilevision.runtime.tasks.classify import RESAMPLE, preprocess

from .classification import CorruptImage, ImageSource

log = logging.getLogger("mobilevision.data")


@dataclass(frozen=True)
class TrainAugment:
    """Random-resized crop to ``size`` (area scale, aspect ratio), optional horizontal flip."""

    size: int
    scale: tuple[float, float] = (0.35, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: bool = True

    def crop_box(self, width: int, height: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the random crop; falls back to the centred full square."""
        area = width * height
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                left = int(rng.integers(0, width - w + 1))
                top = int(rng.integers(0, height - h + 1))
                return left, top, left + w, top + h
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        return left, top, left + side, top + side


def to_tensor(im: Image.Image, pre: Preprocessing) -> torch.Tensor:
    """RGB image of the final size -> normalised C x H x W float32, as ``preprocess`` does."""
    x = np.asarray(im, dtype=np.float32) * np.float32(pre.scale)
    x = (x - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


class ClassificationDataset(torch.utils.data.Dataset):
    """An ImageSource as (C x H x W float32, label) pairs, with training augmentation or eval preprocessing.

    A sample that cannot be decoded (or is a decompression bomb) is logged once and replaced by the next
    readable one, so one bad file never ends a run mid-epoch; a source with no readable image at all is a
    DataError here, in the process that builds the dataset (one decode in the usual case).
    """

    def __init__(self, source: ImageSource, pre: Preprocessing, augment: TrainAugment | None = None,
                 seed: int = 0):
        self.source, self.pre, self.augment, self.seed = source, pre, augment, seed
        self.epoch = 0
        self._reported: set[int] = set()
        if len(source):
            self._image(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.source)

    def _image(self, index: int) -> tuple[Image.Image, int]:
        n = len(self.source)
        for step in range(n):
            i = (index + step) % n
            try:
                return self.source.image(i), int(self.source.labels[i])
            except CorruptImage as e:
                if i not in self._reported:
                    self._reported.add(i)
                    log.warning("skipped unreadable image: %s", e)
        raise DataError(f"no readable image among the {n} in {self.source.location()}: every file failed to "
                        "decode (see the warnings above); replace them with PNG or JPEG images")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        im, label = self._image(index)
        if self.augment is None:
            return torch.from_numpy(preprocess(im, self.pre)[0]), label
        rng = np.random.default_rng((self.seed, self.epoch, index))
        box = self.augment.crop_box(*im.size, rng)
        size = self.augment.size
        im = im.resize((size, size), RESAMPLE.get(self.pre.interpolation, Image.Resampling.BICUBIC), box=box)
        if self.augment.hflip and rng.random() < 0.5:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return to_tensor(im, self.pre), label
