"""Image classification as a training task: data, model, loss (cross-entropy or Bias Loss), metrics.

The exported graph is the model itself (image -> logits); the runtime's ``classify`` applies
the preprocessing recorded in the metadata and the softmax.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

import mobilevision
from mobilevision.data.classification import ClassificationData, open_classification_data
from mobilevision.data.transforms import ClassificationDataset, TrainAugment
from mobilevision.registry import same_classes
from mobilevision.devices import resolve_torch_device
from mobilevision.errors import DataError, TrainingError
from mobilevision.export.metadata import Preprocessing
from mobilevision.run_card import RunCard

LOSSES = ("ce", "bias")


@dataclass
class ClassifyOptions:
    """What to train on what. ``data`` None: the built-in digits. ``imgsz`` None: the dataset's
    suggestion (digits 64, CIFAR 32), else the model's default. ``weights``: a local checkpoint to
    start from (the classifier is replaced when the class count differs)."""

    model: str
    data: str | None = None
    loss: str = "ce"
    imgsz: int | None = None
    label_smoothing: float = 0.0
    bias_alpha: float = 0.3
    bias_beta: float = 0.3
    bias_normalisation: str = "global"
    augment: bool = True
    min_scale: float = 0.35
    weights: str | None = None

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise TrainingError(f"unknown loss {self.loss!r}: choose ce (cross-entropy) or bias (Bias Loss)")
        if not 0 <= self.label_smoothing < 1:
            raise TrainingError("--label-smoothing must be in [0, 1)")
        if self.loss == "bias" and self.label_smoothing:
            raise TrainingError("--label-smoothing applies to --loss ce: Bias Loss weights plain cross-entropy, "
                                "as published")
        if self.loss == "bias":
            from mobilevision.losses.bias import check_options

            try:
                check_options(self.bias_alpha, self.bias_beta, self.bias_normalisation)
            except ValueError as e:  # checked here so a bad option fails before any data or model is built
                raise TrainingError(f"{e} (--bias-alpha / --bias-beta / --bias-norm)") from None
        if self.imgsz is not None and not 16 <= self.imgsz <= 2048:
            raise TrainingError(f"--imgsz {self.imgsz} is out of range: use 16..2048 pixels")
        if not 0 < self.min_scale <= 1:
            raise TrainingError("--min-scale must be in (0, 1]")


class LogitsAndFeatures(nn.Module):
    """Training view of a classifier: (logits, last feature map). The feature map is what Bias Loss
    weighs samples by; the exported model keeps returning logits only."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model.forward_features(x)
        return self.model.forward_head(features), features


class ClassifyTask:
    name = "classify"
    main_metric = "top1"
    higher_is_better = True

    def __init__(self, options: ClassifyOptions, data: ClassificationData | None = None):
        self.opts = options
        self.card = mobilevision.get_model_card(options.model)  # unknown model names fail here
        if self.card.task != "classify":
            raise TrainingError(f"{options.model} is a {self.card.task} model, not a classifier")
        self.data = data or open_classification_data(options.data)
        size = options.imgsz or self.data.default_imgsz or self.card.input_size[1]
        crop_pct = self.data.crop_pct if self.data.crop_pct is not None else self.card.crop_pct
        self.card = dataclasses.replace(self.card, num_classes=len(self.data.classes), labels=tuple(self.data.classes),
                                        label_set="custom", input_size=(3, size, size), crop_pct=crop_pct)
        self.pre = Preprocessing.for_card(self.card, size, size)

    @property
    def in_memory(self) -> bool:
        return self.data.in_memory

    def options(self) -> dict[str, Any]:
        return dataclasses.asdict(self.opts)

    def build_model(self) -> nn.Module:
        model = mobilevision.create_model(self.opts.model, weights=self.opts.weights,
                                          num_classes=len(self.data.classes))
        if self.opts.loss == "bias" and not hasattr(model, "forward_features"):
            raise TrainingError(f"{self.opts.model} does not expose forward_features: Bias Loss needs the last "
                                "feature map (use --loss ce)")
        return model.train()

    def training_module(self, model: nn.Module) -> nn.Module:
        return LogitsAndFeatures(model) if self.opts.loss == "bias" else model

    def criterion(self) -> nn.Module:
        if self.opts.loss == "bias":
            from mobilevision.losses import BiasLoss

            return BiasLoss(alpha=self.opts.bias_alpha, beta=self.opts.bias_beta,
                            normalisation=self.opts.bias_normalisation)
        return nn.CrossEntropyLoss(label_smoothing=self.opts.label_smoothing)

    def datasets(self, seed: int) -> tuple[ClassificationDataset, ClassificationDataset]:
        augment = None
        if self.opts.augment:
            augment = TrainAugment(self.card.input_size[1], scale=(self.opts.min_scale, 1.0), hflip=self.data.flip_ok)
        return (ClassificationDataset(self.data.train, self.pre, augment, seed=seed),
                ClassificationDataset(self.data.val, self.pre))

    def training_step(self, module: nn.Module, criterion: nn.Module, batch: Any,
                      device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = (t.to(device, non_blocking=True) for t in batch)
        if self.opts.loss == "bias":
            logits, features = module(x)
            loss = criterion(logits.float(), y, features.float())
        else:
            logits = module(x)
            loss = criterion(logits.float(), y)
        return loss, {"acc": (logits.argmax(1) == y).float().mean().item()}

    def evaluate(self, model: nn.Module, loader: torch.utils.data.DataLoader, device: torch.device,
                 criterion: nn.Module) -> dict[str, float]:
        """top-1, top-5 and mean cross-entropy (plain CE, whatever the training
        loss: Bias Loss's running minimum must not see validation batches)."""
        logits, labels = predict(model, loader, device)
        return classification_metrics(logits, labels, len(self.data.classes))

    def after_fit(self, last: dict[str, Any], val_size: int) -> str | None:
        """A warning when the final validation top-1 is within two standard errors of guessing (1 / classes)."""
        top1, k = last.get("val_top1"), len(self.data.classes)
        if top1 is None or k < 2 or val_size < 1:
            return None
        chance = 1.0 / k
        if top1 > chance + 2 * math.sqrt(chance * (1 - chance) / val_size):
            return None
        return (f"validation top-1 {100 * top1:.1f} % is at chance for {k} classes ({100 * chance:.1f} %, "
                f"{val_size} images): the model has not learned the task; train longer (--epochs), check that the "
                "class folders hold what they say, or try another --lr")

    def run_card(self) -> RunCard:
        c = self.card
        return RunCard(task=self.name, model=self.opts.model, num_classes=c.num_classes, labels=tuple(c.labels),
                       label_set="custom", input_size=c.input_size, mean=c.mean, std=c.std,
                       interpolation=c.interpolation, crop_pct=c.crop_pct, data=self.data.name)


def predict(model: nn.Module, loader: torch.utils.data.DataLoader, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """(N x classes float32 logits, N int labels) over a loader, in order."""
    outs, labels = [], []
    with torch.no_grad():
        for x, y in loader:
            outs.append(model(x.to(device)).float().cpu())
            labels.append(y)
    return torch.cat(outs).numpy(), torch.cat(labels).numpy()


def classification_metrics(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, float]:
    """scikit-learn's top-1 accuracy, top-5 (more than 5 classes) and log-loss (mean cross-entropy)."""
    from sklearn.metrics import accuracy_score, log_loss, top_k_accuracy_score

    classes = np.arange(num_classes)
    z = logits.astype(np.float64) - logits.max(1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    metrics = {"loss": float(log_loss(labels, probs, labels=classes)),
               "top1": float(accuracy_score(labels, logits.argmax(1)))}
    if num_classes > 5:
        metrics["top5"] = float(top_k_accuracy_score(labels, logits, k=5, labels=classes))
    return metrics


@dataclass
class EvalReport:
    """A checkpoint evaluated on a dataset's validation split."""

    model: str
    weights: str
    data: str
    classes: list[str]
    metrics: dict[str, float]
    confusion: np.ndarray           # rows: true class, columns: predicted class (counts)


def evaluate_checkpoint(weights: str, data: str | None = None, model: str | None = None, batch_size: int = 64,
                        device: str = "auto", use_run_data: bool = True) -> EvalReport:
    """Evaluate trained weights on the validation split of ``data`` (default: the data the run was
    trained on, from its run card; the built-in digits when that was it).

    A checkpoint without a run card needs ``model`` (and is evaluated at the model's input size).
    """
    from sklearn.metrics import confusion_matrix

    from mobilevision.checkpoints import read_run_card

    run = read_run_card(weights)
    if run is None and model is None:
        raise TrainingError(f"{weights} has no run card ({weights} -> .json): pass --model NAME")
    if run is not None and run.task != "classify":
        raise TrainingError(f"{weights} is a {run.task} checkpoint, not a classifier")
    name = model or run.model
    if data is None and run is not None and use_run_data:
        data = run.task_options.get("data")
    dataset = open_classification_data(data)
    net = mobilevision.create_model(name, weights=weights,
                                    num_classes=None if run is not None else len(dataset.classes))
    card = net.model_card
    if card.num_classes != len(dataset.classes):
        raise TrainingError(f"{weights} predicts {card.num_classes} classes but {dataset.name} has "
                            f"{len(dataset.classes)}: evaluate on the data it was trained for")
    if card.labels and not same_classes(card.labels, card.label_set, dataset.classes):
        raise TrainingError(f"{dataset.name} has classes {dataset.classes[:4]}..., the checkpoint was trained on "
                            f"{list(card.labels)[:4]}...: evaluate on the data it was trained for")
    pre = Preprocessing.for_card(card, card.input_size[1], card.input_size[2])
    loader = torch.utils.data.DataLoader(ClassificationDataset(dataset.val, pre), batch_size=batch_size)
    dev = resolve_torch_device(device)
    logits, labels = predict(net.to(dev).eval(), loader, dev)
    metrics = classification_metrics(logits, labels, len(dataset.classes))
    confusion = confusion_matrix(labels, logits.argmax(1), labels=np.arange(len(dataset.classes)))
    return EvalReport(name, str(weights), dataset.name, dataset.classes, metrics, confusion)


def save_confusion_png(report: EvalReport, path: str) -> None:
    """The confusion matrix as a PNG (scikit-learn's display, matplotlib's Agg backend), written atomically."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    from mobilevision.atomic_io import atomic_save_figure

    n = len(report.classes)
    fig, ax = plt.subplots(figsize=(min(4 + 0.45 * n, 20), min(3.5 + 0.45 * n, 20)), dpi=100)
    ConfusionMatrixDisplay(report.confusion, display_labels=report.classes).plot(
        ax=ax, cmap="Blues", colorbar=False, include_values=n <= 30, xticks_rotation="vertical" if n > 10 else "horizontal")
    ax.set_title(f"{report.model}: top-1 {report.metrics['top1'] * 100:.2f} % on {report.data}", fontsize=9)
    fig.tight_layout()
    atomic_save_figure(fig, path)


# ---------------------------------------------------------------- the export contract (mobilevision.tasks.TASKS)

def export_samples(md, data: str | None, split: str, n: int, seed: int, category: str | None = None):
    """Calibration ("train") or held-out ("validation") images of ``data`` (None: the built-in digits), with labels
    when the model's classes are the dataset's."""
    from mobilevision.export import quantize as q

    from mobilevision.data.classification import open_classification_data

    ds = open_classification_data(data)
    src = ds.train if split == "train" else ds.val
    if len(src) == 0:
        raise DataError(f"{ds.name} has no {'training' if split == 'train' else 'validation'} images")
    idx = q.pick(len(src), n, seed)
    inputs = [q.preprocess_input(np.asarray(src.image(i)), md) for i in idx]
    labels = [int(src.labels[i]) for i in idx]
    same = same_classes(md.labels, md.label_set, ds.classes) if md.labels else md.num_classes == len(ds.classes)
    note = None if same else (f"the model's {md.num_classes} classes are not the {len(ds.classes)} classes of "
                              f"{ds.name}: top-1 needs a model trained on that data")
    return q.TaskSamples(f"{ds.name}, {'train' if split == 'train' else 'validation'} split", inputs,
                       labels if same else None, note, len(idx))


def score_outputs(md, outputs, targets) -> float:
    """Top-1 accuracy in % (the first output's arg-max against the label)."""
    return 100.0 * float(np.mean([int(np.argmax(o[0])) == t for o, t in zip(outputs, targets)]))


def describe_outputs(card, outputs) -> dict[str, Any]:
    """The class count, checked against the head: a card that disagrees with its model cannot be exported."""
    n = card.num_classes
    if n and int(np.prod(outputs[0].shape[1:])) != n:
        from mobilevision.errors import ExportError

        raise ExportError(f"{card.name}: the card says {n} classes but the model's first output is "
                          f"{list(outputs[0].shape)}: give num_classes (--num-classes) that matches the head")
    return {"num_classes": n}
