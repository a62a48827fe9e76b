"""Model registry: name -> builder + model card.

A model card holds everything a later stage (export, runtime, benchmark) needs to know
about a model without importing its class. Model files register builders with
``@register_model(ModelCard(...))``, timm style.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any, Callable

from .errors import IncompatibleWeights, MobileVisionError, ModelNotFound

if TYPE_CHECKING:
    from .run_card import RunCard

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_LABEL_SET = "imagenet-1k"


def same_classes(labels, label_set: str | None, classes: list[str]) -> bool:
    """Whether a model's ``labels`` name a dataset's ``classes`` folders, in order. ImageNet-1k folders are
    synset ids (``n01440764`` ...), which sort in class order: 1000 folders match the ImageNet names."""
    if label_set == IMAGENET_LABEL_SET and len(classes) == 1000 and len(labels) == 1000:
        return True
    return list(labels) == list(classes)


@functools.cache
def imagenet1k_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in class-index order, read from the package (no download)."""
    text = resources.files(__package__).joinpath("data/imagenet1k_labels.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line and not line.startswith("#"))


@dataclass(frozen=True)
class ModelCard:
    """What a model is, for stages that must not import its class."""

    name: str
    task: str                                  # "classify", "anomaly", "isp", "landmarks"
    input_size: tuple[int, int, int]           # (C, H, W) default input
    family: str = ""
    paper: str = ""
    mean: tuple[float, ...] = IMAGENET_MEAN    # applied after scaling pixels to [0, 1]
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bicubic"
    crop_pct: float = 0.875                    # resize shorter side to size / crop_pct, centre-crop
    resize_mode: str = "shorter_side"          # or "stretch": straight to the input size, aspect not kept
    layout: str = "NCHW"
    num_classes: int = 1000
    labels: tuple[str, ...] | None = None      # None: class indices; filled in for 1000-class imagenet-1k
    label_set: str | None = IMAGENET_LABEL_SET
    input_names: tuple[str, ...] = ("image",)
    output_names: tuple[str, ...] = ("logits",)
    classifier_prefixes: tuple[str, ...] = ("head.",)   # dropped when num_classes changes
    description: str = ""
    # RAW-input models (task "isp"): per packed channel (B, G_R, R, G_B), x -> (x - black) / (white - black),
    # then clipped at 0 when raw_clip; the levels the zoo weights were trained with.
    raw_black_level: tuple[float, ...] | None = None
    raw_white_level: float | None = None
    raw_clip: bool = False
    # int8 exports keep these module paths in float by default ("." = the model's own top-level
    # operations, e.g. a fused post-processing tail that subtracts near-equal features)
    int8_keep_float: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.labels is None and self.label_set == IMAGENET_LABEL_SET and self.num_classes == 1000:
            object.__setattr__(self, "labels", imagenet1k_labels())   # frozen: set once, at construction

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class _Entry:
    card: ModelCard
    builder: Callable[..., Any]
    checkpoint_extractor: Callable[[Any], dict] | None = field(default=None)


_REGISTRY: dict[str, _Entry] = {}
_MODEL_MODULES = ("mobilevision.models.emo", "mobilevision.models.skipnet", "mobilevision.models.efficientad",
                  "mobilevision.models.wide_resnet", "mobilevision.models.isp", "mobilevision.models.landmarks")
_loaded = False


def register_model(card: ModelCard, checkpoint_extractor: Callable[[Any], dict] | None = None):
    """Decorator: register ``builder(num_classes=..., **kwargs) -> nn.Module`` under card.name.

    ``checkpoint_extractor(obj, **kwargs)`` turns a loaded checkpoint container into a
    state dict (e.g. picks 'net' or 'net_E' for EMO); default: the object itself.
    """

    def wrap(builder: Callable[..., Any]) -> Callable[..., Any]:
        if card.name in _REGISTRY:
            raise ValueError(f"model {card.name!r} registered twice")
        _REGISTRY[card.name] = _Entry(card, builder, checkpoint_extractor)
        return builder

    return wrap


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        for module in _MODEL_MODULES:
            importlib.import_module(module)
        _loaded = True


def _entry(name: str) -> _Entry:
    _ensure_loaded()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ModelNotFound(f"unknown model {name!r}: {hint}run `mobilevision list` to see the zoo")
    return _REGISTRY[name]


def list_models(task: str | None = None) -> list[str]:
    _ensure_loaded()
    return sorted(n for n, e in _REGISTRY.items() if task is None or e.card.task == task)


def get_model_card(name: str) -> ModelCard:
    return _entry(name).card


def card_of_trained(card: ModelCard, run: RunCard) -> ModelCard:
    """The zoo card updated with what a training run recorded (classes or points, input size, preprocessing);
    what the run did not record (None) stays the zoo's. ``ModelCard.num_classes`` is the builder's head size:
    a classifier's classes, a landmark model's points."""
    head = run.num_classes if run.num_classes is not None else run.points
    labels = run.labels or None

    def recorded(value: Any, zoo: Any) -> Any:
        return zoo if value is None else value

    return dataclasses.replace(
        card, num_classes=recorded(head, card.num_classes), labels=labels,
        label_set=run.label_set if labels else None, input_size=run.input_size,
        mean=recorded(run.mean, card.mean), std=recorded(run.std, card.std),
        interpolation=recorded(run.interpolation, card.interpolation), crop_pct=recorded(run.crop_pct, card.crop_pct),
        raw_black_level=recorded(run.raw_black_level, card.raw_black_level),
        raw_white_level=recorded(run.raw_white_level, card.raw_white_level),
        raw_clip=recorded(run.raw_clip, card.raw_clip))


def create_model(name: str, weights: str | None = None, num_classes: int | None = None,
                 checkpoint_key: str | None = None, **kwargs: Any):
    """Build ``name`` in eval mode; load ``weights`` (a local file) strictly if given.

    ``checkpoint_key`` picks an entry of a checkpoint container (EMO: 'net' or 'net_E').
    A checkpoint with another class count loads everything but the classifier. Weights written
    by ``mobilevision train`` bring their run card: class names, input size and normalisation
    replace the zoo's in ``model.model_card`` (and so travel into exported artifacts).
    """
    entry = _entry(name)
    card = entry.card
    trained = None
    if weights is not None:
        from .checkpoints import read_run_card

        trained = read_run_card(weights)
    if trained is not None:  # written by `mobilevision train`: its classes, input size and normalisation
        if trained.model != name:
            raise IncompatibleWeights(f"{weights} was trained as {trained.model!r}, not {name!r}: "
                                      f"use the model name {trained.model!r}")
        card = card_of_trained(card, trained)
    if num_classes is not None and num_classes != card.num_classes and (
            isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1):
        raise MobileVisionError(f"num_classes must be a whole number >= 1 (got {num_classes!r})")
    n_cls = card.num_classes if num_classes is None else int(num_classes)
    model = entry.builder(num_classes=n_cls, **kwargs)
    if weights is not None:
        from .checkpoints import load_into

        load_into(model, weights, extractor=entry.checkpoint_extractor, key=checkpoint_key,
                  drop_prefixes=card.classifier_prefixes)
    if n_cls != card.num_classes:  # a fine-tuned head: the zoo's label names no longer apply
        card = dataclasses.replace(card, num_classes=n_cls, labels=None, label_set=None)
    model.model_card = card
    model.eval()
    return model
