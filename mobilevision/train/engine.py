"""The one training loop: every task trains through ``fit``.

What it does for any ``TrainTask``: seeding, data loading (DistributedSampler, also in a single
process, so one process and N processes see the same global batches), AdamW/SGD with weight
decay on weights only, per-step warm-up + cosine/step schedule, optional EMA of the weights
(torch.optim.swa_utils), gradient clipping, autocast, DDP under ``torchrun``, progress (a bar on a
terminal; plain lines every ``MOBILEVISION_PROGRESS_S`` seconds, default 30, in a log or pipe),
per-epoch validation, atomic checkpoints and exact resume. The run folder and its ``run.json``
exist from the start of training.

Resume is exact because nothing random depends on history: every epoch reseeds torch from
(seed, epoch, rank), the sampler shuffles from (seed, epoch) and augmentation draws from
(seed, epoch, sample). A run killed at any point and resumed from its last finished epoch ends
with the same weights as an uninterrupted run (CPU; same seed and thread count).
"""
from __future__ import annotations

import datetime
import math
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, DistributedSampler

from mobilevision.errors import MobileVisionError, TrainingError

from . import checkpoint
from .config import TrainConfig
from .distributed import World, init_world, pick_device, shutdown
from .task import TrainTask


@dataclass(frozen=True)
class StepInfo:
    epoch: int            # 0-based
    step: int             # 0-based within the epoch
    global_step: int      # optimizer steps so far, including this one
    loss: float


class Callback:
    """Hooks into the loop (e.g. logging, early stopping, tests that kill a run mid-epoch)."""

    def on_step_end(self, info: StepInfo) -> None: ...

    def on_epoch_end(self, row: dict[str, Any]) -> None: ...


@dataclass
class TrainResult:
    run_dir: Path
    history: list[dict[str, Any]]
    best_epoch: int | None
    best_metric: float | None
    best: Path = field(init=False)
    last: Path = field(init=False)

    def __post_init__(self) -> None:
        self.best = self.run_dir / "best.safetensors"
        self.last = self.run_dir / "last.safetensors"


class WarmupSchedule:
    """LR multiplier per optimizer step: linear warm-up, then cosine / step decay / flat.

    A class rather than a lambda so LambdaLR's state (this object's fields) is saved and resumed.
    """

    def __init__(self, kind: str, total_steps: int, warmup_steps: int, min_ratio: float,
                 milestones: tuple[float, ...] = (0.5, 0.75), inverse_time_rate: float = 1e-4):
        self.kind, self.total, self.warmup, self.min_ratio = kind, total_steps, warmup_steps, min_ratio
        self.milestones, self.inverse_time_rate = tuple(milestones), inverse_time_rate

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        progress = (step - self.warmup) / max(1, self.total - self.warmup)
        if self.kind == "cosine":
            return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        if self.kind == "step":
            return 0.1 ** sum(progress >= m for m in getattr(self, "milestones", (0.5, 0.75)))
        if self.kind == "inverse_time":
            return 1.0 / (1.0 + self.inverse_time_rate * (step - self.warmup))
        return 1.0


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Weight decay on weight matrices/kernels only: biases and norm scales (1-D) are not decayed."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.base_lr, momentum=cfg.momentum)
    betas = {"betas": tuple(cfg.betas)} if cfg.betas is not None else {}
    if cfg.optimizer == "adam":  # coupled L2 on every trainable parameter, as EfficientAD's references
        return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.base_lr,
                                weight_decay=cfg.decay, **betas)
    return torch.optim.AdamW(groups, lr=cfg.base_lr, **betas)


PROGRESS_ENV = "MOBILEVISION_PROGRESS_S"
ESTIMATE_AFTER = 5        # steps timed (after the first, which warms up) before a run estimates its length
LONG_RUN_S = 600.0        # a run estimated longer than this says so, and how to shorten it


def duration(seconds: float) -> str:
    """3 h 05 min, 12 min 30 s, 45 s."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def long_run_note(per_step: float, steps_left: int, device: torch.device, length_option: str) -> str | None:
    """The line a run prints when the steps left would take over ``LONG_RUN_S`` at ``per_step`` seconds each:
    the estimate, what it is made of, and how to shorten it (``length_option``, e.g. --steps; a GPU on a CPU)."""
    total = per_step * steps_left
    if total <= LONG_RUN_S:
        return None
    where = "on this CPU" if device.type == "cpu" else f"on {device}"
    shorter = f"shorten it with {length_option} N" + (", or train on a GPU (--device gpu)" if device.type == "cpu"
                                                      else "")
    return (f"estimated {duration(total)} for the {steps_left:,} steps left {where} ({per_step:.3g} s a step over "
            f"the first steps; validation not counted): {shorter}; Ctrl-C stops it, finished epochs are kept")


def progress_interval() -> float:
    """Seconds between progress lines when stderr is not a terminal (``MOBILEVISION_PROGRESS_S``, default 30)."""
    raw = os.environ.get(PROGRESS_ENV, "30")
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not (math.isfinite(seconds) and seconds >= 0):
        raise TrainingError(f"{PROGRESS_ENV}={raw!r}: give the seconds between progress lines (a number >= 0)")
    return seconds


class ProgressLines:
    """Progress as plain lines for a log file or pipe (no terminal, so no bar): the first step, then one line
    per ``interval`` seconds with the epoch's mean loss and statistics, images/s and the run's ETA."""

    def __init__(self, console: Console, interval: float, total_steps: int, batch_size: int):
        self.console, self.interval, self.total, self.batch = console, interval, total_steps, batch_size
        self.t0 = time.perf_counter()
        self.last: float | None = None
        self.steps = 0  # steps in this process's session (a resumed run restarts the rate)

    def step(self, epoch: int, epochs: int, step: int, steps: int, means: dict[str, float]) -> None:
        self.steps += 1
        now = time.perf_counter()
        if self.last is not None and now - self.last < self.interval:
            return
        self.last = now
        rate = self.steps / max(now - self.t0, 1e-9)                 # steps per second
        left = self.total - (epoch * steps + step + 1)
        eta = datetime.timedelta(seconds=round(left / rate))
        stats = "  ".join(f"{k} {v:.4f}" for k, v in means.items())
        self.console.print(f"epoch {epoch + 1}/{epochs} step {step + 1}/{steps}  {stats}  "
                           f"{rate * self.batch:.1f} img/s  ETA {eta}", markup=False, highlight=False,
                           soft_wrap=True)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + rank) % (2**63)


def fit(task: TrainTask, cfg: TrainConfig, run_dir: str | os.PathLike, *, resume: bool = False,
        callbacks: Sequence[Callback] = (), show_progress: bool = True,
        console: Console | None = None) -> TrainResult:
    """Train ``task`` with ``cfg`` into ``run_dir`` (created), or continue it with ``resume=True``.

    A folder that already holds a run is never overwritten: continue it with ``resume=True`` or
    pick another folder. Under ``torchrun`` every process calls ``fit``; rank 0 evaluates and writes.
    """
    world = init_world()
    try:
        return _Run(task, cfg, Path(run_dir), world, callbacks, show_progress,
                    console or Console(stderr=True)).run(resume)
    except MobileVisionError as e:
        cause = worker_cause(str(e))
        if cause is None:
            raise
        raise type(e)(cause) from e
    finally:
        shutdown(world)


def worker_cause(message: str) -> str | None:
    """The original one-line message of an error that torch's DataLoader re-raised from a worker process
    (its text is 'Caught X in DataLoader worker process N.' plus the worker's traceback); None otherwise."""
    if not message.startswith("Caught ") or "DataLoader worker" not in message.splitlines()[0]:
        return None
    last = message.rstrip().splitlines()[-1]
    return last.split(": ", 1)[1] if ": " in last else last


class _Run:
    def __init__(self, task: TrainTask, cfg: TrainConfig, run_dir: Path, world: World,
                 callbacks: Sequence[Callback], show_progress: bool, console: Console):
        self.task, self.cfg, self.run_dir, self.world = task, cfg, run_dir, world
        self.callbacks, self.console = list(callbacks), console
        self.show_progress = show_progress and world.is_main
        self.progress_interval = progress_interval()
        self.device = pick_device(cfg.device, world)
        if cfg.batch_size % world.size:
            raise TrainingError(f"--batch-size {cfg.batch_size} is the global batch: it must divide by the "
                                f"{world.size} processes")
        self.amp_dtype = (torch.float16 if self.device.type == "cuda" else torch.bfloat16) if cfg.amp else None

    # ------------------------------------------------------------ setup
    def _build(self) -> None:
        cfg, world = self.cfg, self.world
        torch.manual_seed(cfg.seed)  # model initialisation
        self.model = self.task.build_model().to(self.device)
        self.criterion = self.task.criterion().to(self.device)
        module = self.task.training_module(self.model)
        if world.distributed and cfg.sync_bn:
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)  # replaces the BNs inside self.model too
        self.ddp = (DistributedDataParallel(module, device_ids=[self.device.index] if self.device.type == "cuda"
                                            else None) if world.distributed else module)
        self.train_set, self.val_set = self.task.datasets(cfg.seed)
        per_process = cfg.batch_size // world.size
        workers = cfg.workers if cfg.workers is not None else (0 if self.task.in_memory else min(4, os.cpu_count() or 1))
        self.sampler = DistributedSampler(self.train_set, num_replicas=world.size, rank=world.rank, shuffle=True,
                                          seed=cfg.seed, drop_last=True)
        pin = self.device.type == "cuda"
        self.loader = DataLoader(self.train_set, batch_size=per_process, sampler=self.sampler, drop_last=True,
                                 num_workers=workers, pin_memory=pin)
        if len(self.loader) == 0:
            raise TrainingError(f"the training set has {len(self.train_set)} images, fewer than one batch of "
                                f"{cfg.batch_size}: lower --batch-size")
        self.val_loader = DataLoader(self.val_set, batch_size=per_process, shuffle=False, num_workers=workers,
                                     pin_memory=pin)
        self.optimizer = build_optimizer(self.model, cfg)
        steps = len(self.loader)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, WarmupSchedule(cfg.schedule, cfg.epochs * steps, round(cfg.warmup_epochs * steps),
                                           cfg.min_lr_ratio, cfg.milestones, cfg.inverse_time_rate))
        self.ema = (AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
                    if cfg.ema_decay else None)
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and self.device.type == "cuda")

    def _restore(self, state: dict[str, Any]) -> None:
        saved = state["task"]
        if saved["name"] != self.task.name or saved["options"].get("model") != self.task.options().get("model"):
            raise TrainingError(f"{self.run_dir} holds a {saved['name']} run of {saved['options'].get('model')}: "
                                "resume it with the same task and model, or choose another --out")
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            if state.get("ema") is None:
                raise TrainingError(f"{self.run_dir} was trained without EMA: resume without --ema-decay")
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.criterion.load_state_dict(state["criterion"])
        self.scaler.load_state_dict(state["scaler"])
        self.start_epoch = int(state["epoch"])
        self.history = list(state["history"])
        self.best_epoch, self.best_metric = state["best_epoch"], state["best_metric"]

    # ------------------------------------------------------------ loop
    def run(self, resume: bool) -> TrainResult:
        if resume:
            state = checkpoint.load_state(self.run_dir)
        elif checkpoint.has_state(self.run_dir):
            raise TrainingError(f"{self.run_dir} already holds a run: continue it with --resume, or choose "
                                "another --out")
        self._build()
        self.start_epoch, self.history, self.best_epoch, self.best_metric = 0, [], None, None
        if resume:
            self._restore(state)
            if self.world.is_main:
                checkpoint.write_metrics(self.run_dir, self.history)
                self.console.print(f"resuming {self.run_dir} after epoch {self.start_epoch}/{self.cfg.epochs}",
                                   markup=False, highlight=False)
        if self.world.is_main:  # the folder says what it holds before the (possibly long) first epoch
            self._write_run_card(self.start_epoch)
        if not resume and hasattr(self.task, "on_fit_start"):
            self.task.on_fit_start(self.model, self.device)  # e.g. statistics the model needs before step 1
        self.lines = (ProgressLines(self.console, self.progress_interval, self.cfg.epochs * len(self.loader),
                                    self.cfg.batch_size)
                      if self.show_progress and not self.console.is_terminal else None)
        for epoch in range(self.start_epoch, self.cfg.epochs):
            row = self._train_epoch(epoch)
            if self.world.is_main:
                row.update({f"val_{k}": v for k, v in self._evaluate().items()})
                self._save(epoch, row)
                self.console.print(_epoch_line(row, self.cfg.epochs), markup=False, highlight=False, soft_wrap=True)
            self.world.barrier()
            for cb in self.callbacks:
                cb.on_epoch_end(row)
        if self.world.is_main and hasattr(self.task, "after_fit") and self.history:
            note = self.task.after_fit(self.history[-1], len(self.val_set))
            if note:
                self.console.print(f"WARNING {note}", markup=False, highlight=False, soft_wrap=True)
        return TrainResult(self.run_dir, self.history, self.best_epoch, self.best_metric)

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        cfg, task = self.cfg, self.task
        self.ddp.train()
        self.sampler.set_epoch(epoch)
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)
        torch.manual_seed(epoch_seed(cfg.seed, epoch, self.world.rank))  # dropout, drop-path, loader workers
        sums: dict[str, float] = defaultdict(float)
        steps = len(self.loader)
        t0 = time.perf_counter()
        with _progress(self.show_progress and self.lines is None, self.console) as bar:
            job = bar.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=steps, stats="")
            for step, batch in enumerate(self.loader):
                with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                    enabled=self.amp_dtype is not None):
                    loss, stats = task.training_step(self.ddp, self.criterion, batch, self.device)
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise TrainingError(f"the loss became {value} at epoch {epoch + 1}, step {step + 1}: lower --lr "
                                        f"or set --clip-grad (finished epochs are saved in {self.run_dir})")
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                if cfg.clip_grad:
                    self.scaler.unscale_(self.optimizer)
                    nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                if hasattr(task, "after_optimizer_step"):  # e.g. GAN discriminators, after the model's update
                    task.after_optimizer_step(self.criterion, epoch * steps + step)
                if self.ema is not None:
                    self.ema.update_parameters(self.model)
                sums["loss"] += value
                for k, v in stats.items():
                    sums[k] += float(v)
                bar.update(job, advance=1, stats="  ".join(f"{k} {v / (step + 1):.4f}" for k, v in sums.items()))
                if self.lines is not None:
                    self.lines.step(epoch, cfg.epochs, step, steps, {k: v / (step + 1) for k, v in sums.items()})
                info = StepInfo(epoch, step, epoch * steps + step + 1, value)
                for cb in self.callbacks:
                    cb.on_step_end(info)
                if epoch == self.start_epoch and self.world.is_main:
                    self._estimate(step, steps, epoch)
        seconds = time.perf_counter() - t0
        means = self.world.mean([v / steps for v in sums.values()])
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"]}
        row.update({f"train_{k}": v for k, v in zip(sums, means)})
        row["train_s"] = seconds
        row["images_per_s"] = steps * self.cfg.batch_size / seconds
        return row

    def _estimate(self, step: int, steps: int, epoch: int) -> None:
        """After the first step, start the clock; ``ESTIMATE_AFTER`` steps later (or at the first epoch's end),
        print how long the rest of the run would take when that is long (``long_run_note``)."""
        now = time.perf_counter()
        if step == 0:
            self._clock = now
            return
        if step == min(ESTIMATE_AFTER, steps - 1):
            left = (self.cfg.epochs - epoch) * steps - (step + 1)
            note = long_run_note((now - self._clock) / step, left, self.device,
                                 getattr(self.task, "length_option", "--epochs"))
            if note:
                self.console.print(note, markup=False, highlight=False, soft_wrap=True)

    def _evaluate(self) -> dict[str, float]:
        model = self.ema.module if self.ema is not None else self.model
        model.eval()
        with torch.no_grad(), torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                             enabled=self.amp_dtype is not None):
            return self.task.evaluate(model, self.val_loader, self.device, self.criterion)

    def _save(self, epoch: int, row: dict[str, Any]) -> None:
        """Weights first, the resumable state last: the state file is the commit point of an epoch."""
        self.history.append(row)
        metric = row.get(f"val_{self.task.main_metric}")
        better = metric is not None and (self.best_metric is None or (
            metric > self.best_metric if self.task.higher_is_better else metric < self.best_metric))
        if better:
            self.best_epoch, self.best_metric = epoch + 1, float(metric)
        weights = (self.ema.module if self.ema is not None else self.model).state_dict()
        card = replace(self.task.run_card(), epoch=epoch + 1, metrics=row, ema=self.ema is not None,
                       world_size=self.world.size, train_config=self.cfg.to_dict(),
                       task_options=self.task.options())
        self.run_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.save_weights(self.run_dir / "last.safetensors", weights, card)
        if better:
            checkpoint.save_weights(self.run_dir / "best.safetensors", weights, card)
        checkpoint.save_state(self.run_dir, {
            "task": {"name": self.task.name, "options": self.task.options()}, "config": self.cfg.to_dict(),
            "epoch": epoch + 1, "history": self.history, "best_epoch": self.best_epoch,
            "best_metric": self.best_metric, "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "criterion": self.criterion.state_dict(), "scaler": self.scaler.state_dict()})
        checkpoint.write_metrics(self.run_dir, self.history)
        self._write_run_card(epoch + 1)

    def _write_run_card(self, epochs_done: int) -> None:
        checkpoint.write_run_card(self.run_dir, replace(
            self.task.run_card(), state="finished" if epochs_done >= self.cfg.epochs else "running",
            epochs_done=epochs_done, updated=datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"), world_size=self.world.size, train_config=self.cfg.to_dict(),
            task_options=self.task.options()))


def _progress(enabled: bool, console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[stats]}"), console=console,
                    disable=not enabled, transient=True)


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    shown = [f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch", "train_s", "images_per_s")
             and isinstance(v, float)]
    return (f"epoch {row['epoch']}/{epochs}  " + "  ".join(shown)
            + f"  {row['train_s']:.1f} s  {row['images_per_s']:.0f} img/s")
