"""Datasets whose items are random draws, reproducible from (seed, epoch, index).

Training steps that sample (a random image, a random augmentation, a random penalty image) get the
same draws on resume and in every data-loader worker: item ``index`` of epoch ``e`` always uses
``numpy.random.default_rng([seed, e, index])``. The engine calls ``set_epoch`` every epoch.
"""
from __future__ import annotations

import numpy as np
import torch


class SeededDraws(torch.utils.data.Dataset):
    """Base for ``length`` items per epoch; subclasses implement ``__getitem__`` with :meth:`rng`."""

    def __init__(self, length: int, seed: int):
        self.length, self.seed, self.epoch = length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])
