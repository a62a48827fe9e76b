"""What the training engine needs from a task (classification, anomaly detection, ISP, landmarks).

The engine owns the loop, the optimizer, schedule, EMA, mixed precision, DDP, checkpoints and
resume; a task only says what to build, how one batch becomes a loss, and how to evaluate.
"""
from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

from mobilevision.run_card import RunCard


class TrainTask(Protocol):
    name: str                 # "classify", ...
    main_metric: str          # key of evaluate()'s dict that picks the best checkpoint
    higher_is_better: bool

    def options(self) -> dict[str, Any]:
        """The task's own arguments (model, data, loss, ...) as plain values: saved in the run so
        ``--resume`` rebuilds the identical task."""

    def build_model(self) -> nn.Module:
        """The network whose state dict is saved (and exported), in train mode."""

    def training_module(self, model: nn.Module) -> nn.Module:
        """What the engine runs (and DDP wraps): ``model`` or a wrapper returning what the loss needs."""

    def criterion(self) -> nn.Module:
        """The loss; its buffers (e.g. Bias Loss's running minimum) are saved with the run."""

    def datasets(self, seed: int) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset]:
        """(train, val). A train set with ``set_epoch(epoch)`` gets it called every epoch."""

    def training_step(self, module: nn.Module, criterion: nn.Module, batch: Any,
                      device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of one batch, plus per-batch statistics to average over the epoch (e.g. accuracy)."""

    def evaluate(self, model: nn.Module, loader: torch.utils.data.DataLoader, device: torch.device,
                 criterion: nn.Module) -> dict[str, float]:
        """Validation metrics of ``model`` (in eval mode) over ``loader``."""

    def run_card(self) -> RunCard:
        """What loading the weights later needs: model name, task, classes or points, input size,
        normalisation, plus the task's own facts in ``extras`` (the engine adds epoch, metrics, recipe)."""

    # Optional hooks (looked up with hasattr / getattr):
    #   on_fit_start(model, device): before the first step of a new run (not on resume);
    #   after_optimizer_step(criterion, global_step): after each model update, global_step from 0;
    #   after_fit(last_row, val_size) -> str | None: a warning about the finished run (e.g. accuracy at chance);
    #   length_option: the option that sets the run's length, named in the long-run estimate (default --epochs).

    @property
    def in_memory(self) -> bool:
        """True when the data is cheap to read, so loader worker processes would only cost."""
