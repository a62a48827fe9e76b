"""Training options shared by every task (the recipe, not the model or the data)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from mobilevision.errors import TrainingError

OPTIMIZERS = ("adamw", "sgd", "adam")
SCHEDULES = ("cosine", "step", "constant", "inverse_time")
DEFAULT_LR = {"adamw": 1e-3, "sgd": 0.1, "adam": 1e-4}
DEFAULT_WEIGHT_DECAY = {"adamw": 0.05, "sgd": 1e-4, "adam": 1e-5}


@dataclass
class TrainConfig:
    """One run's recipe. ``batch_size`` is the global batch: with N processes each takes batch_size / N.

    lr / weight_decay ``None`` take the optimizer's default (AdamW 1e-3 / 0.05, SGD 0.1 / 1e-4,
    Adam 1e-4 / 1e-5; Adam's decay is coupled L2 on every parameter, as EfficientAD's references).
    ``schedule``: per-step linear warm-up over ``warmup_epochs`` then cosine to ``min_lr_ratio``
    x lr ("cosine"), x0.1 at each of ``milestones`` (fractions of the steps; "step"), Keras' legacy
    ``decay``: lr / (1 + ``inverse_time_rate`` x step) ("inverse_time"), or flat.
    ``ema_decay``: keep an exponential moving average of the weights (evaluated and saved).
    ``clip_grad``: max global gradient norm. ``amp``: autocast (fp16 + loss scaling on CUDA,
    bf16 on CPU). Epochs drop the last incomplete batch (Bias Loss needs a full batch).
    """

    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float | None = None
    weight_decay: float | None = None
    momentum: float = 0.9
    betas: tuple[float, float] | None = None   # Adam/AdamW (None: torch's (0.9, 0.999))
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    milestones: tuple[float, ...] = (0.5, 0.75)
    inverse_time_rate: float = 1e-4
    ema_decay: float | None = None
    clip_grad: float | None = None
    amp: bool = False
    seed: int = 0
    workers: int | None = None       # None: 0 for in-memory data, else min(4, CPUs)
    device: str = "auto"             # auto | cpu | cuda | cuda:N
    sync_bn: bool = False            # with several processes: BatchNorm statistics over the global batch

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise TrainingError(f"unknown optimizer {self.optimizer!r}: choose {' or '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise TrainingError(f"unknown schedule {self.schedule!r}: choose one of {', '.join(SCHEDULES)}")
        checks = {"--epochs must be >= 1": self.epochs >= 1, "--batch-size must be >= 1": self.batch_size >= 1,
                  "milestones must be fractions in (0, 1)": all(0 < m < 1 for m in self.milestones),
                  "--lr must be > 0": self.lr is None or self.lr > 0,
                  "--weight-decay must be >= 0": self.weight_decay is None or self.weight_decay >= 0,
                  "--warmup-epochs must be >= 0": self.warmup_epochs >= 0,
                  "inverse_time_rate must be >= 0": self.inverse_time_rate >= 0,
                  "--ema-decay must be in (0, 1)": self.ema_decay is None or 0 < self.ema_decay < 1,
                  "--clip-grad must be > 0": self.clip_grad is None or self.clip_grad > 0,
                  "--workers must be >= 0": self.workers is None or self.workers >= 0,
                  "betas must be two numbers in [0, 1)": self.betas is None or (
                      len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas))}
        numbers = {"--lr": self.lr, "--weight-decay": self.weight_decay, "--warmup-epochs": self.warmup_epochs,
                   "min_lr_ratio": self.min_lr_ratio, "inverse_time_rate": self.inverse_time_rate,
                   "momentum": self.momentum, "--ema-decay": self.ema_decay, "--clip-grad": self.clip_grad}
        checks.update({f"{name} must be a finite number (got {value})": value is None or math.isfinite(value)
                       for name, value in numbers.items()})
        for message, ok in checks.items():
            if not ok:
                raise TrainingError(message)

    @property
    def base_lr(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    @property
    def decay(self) -> float:
        return self.weight_decay if self.weight_decay is not None else DEFAULT_WEIGHT_DECAY[self.optimizer]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        if "milestones" in kw:
            kw["milestones"] = tuple(kw["milestones"])
        if kw.get("betas") is not None:
            kw["betas"] = tuple(kw["betas"])
        return cls(**kw)
