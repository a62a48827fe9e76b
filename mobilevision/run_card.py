"""The run card: what a training run recorded beside its weights, as one typed, versioned dataclass.

``mobilevision train`` writes it as JSON next to each checkpoint (``best.json`` / ``last.json``, format
``mobilevision-checkpoint``) and as the run folder's ``run.json`` (format ``mobilevision-run``); the
registry, the evaluators and export read it back with :meth:`RunCard.from_dict`. The JSON is flat: the
typed fields under their own names (the recipe under ``train``) and the task's own facts (``extras``)
beside them, so tools that read the JSON directly keep working.

Version 1 (before this class) stored a landmark model's point count as ``num_classes`` and 0 classes for
anomaly / ISP models; version 2 keeps ``num_classes`` for classifiers only and the point count in
``points``. Version 1 files are migrated on read; newer versions are refused. A card is untrusted on read:
types and bounds are checked, and a bad field is one WeightsError line naming the file and the field.

Torch-free: only the standard library and ``mobilevision.errors``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import reprlib
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NoReturn

from mobilevision.errors import WeightsError

VERSION = 2                                   # 2: num_classes for classifiers only, landmark ``points``
CHECKPOINT_FORMAT = "mobilevision-checkpoint"  # best.json / last.json beside the weights
RUN_FORMAT = "mobilevision-run"               # RUN_DIR/run.json
FORMATS = (CHECKPOINT_FORMAT, RUN_FORMAT)
RUN_STATES = ("running", "finished")

# Bounds on read (a run card is untrusted input)
MAX_JSON_BYTES = 16 * 1024 * 1024    # 100,000 labels fit many times over
MAX_STR = 1024                       # a model / task / label / interpolation name
MAX_TEXT = 8192                      # a data path or description
MAX_LABELS = 100_000                 # as the artifact metadata's limit
MAX_POINTS = 10_000                  # landmarks
MAX_CHANNELS = 64
MAX_SIDE = 16_384                    # pixels
MAX_EPOCHS = 10_000_000
MAX_WORLD = 1_000_000
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxlong, _REPR.maxother = 2, 4, 2, 40, 24, 40

# attribute -> JSON key, where they differ (the JSON keys are those of version 1)
_JSON_KEY = {"train_config": "train"}


@dataclass
class RunCard:
    """What loading, evaluating or exporting trained weights needs without importing the task, plus what the
    run was (recipe, epoch, metrics). Tasks fill the identity fields; the engine adds the bookkeeping ones."""

    task: str                                       # "classify", "anomaly", "isp", "landmarks", ...
    model: str                                      # registry name the weights belong to
    input_size: tuple[int, int, int]                # (C, H, W) trained at
    num_classes: int | None = None                  # classifiers only: the class count
    points: int | None = None                       # landmark models only: the point count
    labels: tuple[str, ...] | None = None           # class names in index order (classifiers)
    label_set: str | None = None                    # where the names come from ("custom", "imagenet-1k")
    mean: tuple[float, ...] | None = None           # per channel, after scaling pixels to [0, 1]; None: the zoo's
    std: tuple[float, ...] | None = None
    interpolation: str | None = None                # resize filter; None: the zoo's
    crop_pct: float | None = None                   # centre-crop fraction; None: the zoo's
    raw_black_level: tuple[float, ...] | None = None  # RAW-input models: per packed channel (B, G_R, R, G_B)
    raw_white_level: float | None = None
    raw_clip: bool | None = None
    role: str | None = None                         # what the run trains the model as ("teacher-tough", "student")
    data: str | None = None                         # the data trained on (a name or a path)
    task_options: dict[str, Any] = field(default_factory=dict)   # the task's arguments: --resume rebuilds from them
    # written by the engine
    epoch: int | None = None                        # epochs done when these weights were saved (checkpoint cards)
    metrics: dict[str, float | int | None] = field(default_factory=dict)  # that epoch's row of metrics.csv
    ema: bool | None = None                         # the weights are the EMA of the model's
    world_size: int | None = None                   # training processes (DDP)
    train_config: dict[str, Any] | None = None      # the recipe (TrainConfig.to_dict()); JSON key "train"
    state: str | None = None                        # run.json: "running" / "finished"
    epochs_done: int | None = None                  # run.json
    updated: str | None = None                      # run.json: ISO 8601 UTC time of the last write
    extras: dict[str, Any] = field(default_factory=dict)  # the task's own facts (train_images, mode, kd_from, ...)

    def __post_init__(self) -> None:
        for name in ("input_size", "labels", "mean", "std", "raw_black_level"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                setattr(self, name, tuple(value))
        clash = sorted(set(self.extras) & _RESERVED)
        if clash:
            raise ValueError(f"RunCard extras {clash} shadow fields of the card: set the fields instead")

    def to_dict(self, format: str = CHECKPOINT_FORMAT) -> dict[str, Any]:
        """The JSON object (plain lists and dicts): format, version, every field, then the extras beside them."""
        if format not in FORMATS:
            raise ValueError(f"run card format {format!r}: one of {FORMATS}")
        out: dict[str, Any] = {"format": format, "version": VERSION}
        for f in dataclasses.fields(self):
            if f.name != "extras":
                value = getattr(self, f.name)
                out[_JSON_KEY.get(f.name, f.name)] = list(value) if isinstance(value, tuple) else value
        out.update(self.extras)
        return out

    def to_json(self, format: str = CHECKPOINT_FORMAT) -> str:
        return json.dumps(self.to_dict(format), indent=2)

    @classmethod
    def from_dict(cls, d: Any, source: str | os.PathLike = "run card") -> "RunCard":
        """A card from a version 1 or 2 JSON object; WeightsError naming ``source`` and the field otherwise."""
        return _Reader(str(source)).card(d)


_FIELDS = tuple(f.name for f in dataclasses.fields(RunCard) if f.name != "extras")
_RESERVED = frozenset({"format", "version", *(_JSON_KEY.get(n, n) for n in _FIELDS)})


def is_classifier(task: str) -> bool:
    """Whether ``task`` is registered as a classifier (its cards carry ``num_classes``)."""
    from mobilevision.tasks import TASKS   # light: the registry of tasks, no torch

    entry = TASKS.get(task)
    return bool(entry is not None and entry.classifier)


def read_run_card_file(path: str | os.PathLike, formats: tuple[str, ...] = FORMATS) -> RunCard | None:
    """The card in the JSON file ``path``, or None when the file is not a run card of one of ``formats``.
    Bounded read: a file over MAX_JSON_BYTES, not JSON, or with a bad field is one WeightsError line."""
    p = Path(path)
    try:
        info = p.stat()
        if not stat.S_ISREG(info.st_mode):
            raise WeightsError(f"run card {p} is not a regular file: remove it or restore the card")
        size = info.st_size
        if size > MAX_JSON_BYTES:
            raise WeightsError(f"run card {p} is {size / 2**20:.1f} MiB, over the {MAX_JSON_BYTES >> 20} MiB "
                               "limit: it is not a card `mobilevision train` wrote")
        with open(p, "rb") as f:
            text = f.read(MAX_JSON_BYTES + 1)
        data = json.loads(text)
    except RecursionError as e:
        raise WeightsError(f"cannot read the run card {p}: it nests too deeply to be a run card") from e
    except (OSError, ValueError) as e:
        raise WeightsError(f"cannot read the run card {p}: {str(e).splitlines()[0][:160] if str(e) else e!r}") from e
    if not isinstance(data, dict) or data.get("format") not in formats:
        return None
    return RunCard.from_dict(data, p)


class _Reader:
    """Checks one JSON object field by field; every failure is one WeightsError line naming the field."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, name: str, problem: str) -> NoReturn:
        raise WeightsError(f"run card {self.source}: {name + ' ' if name else ''}{problem} (the file was edited "
                           "or damaged: restore it, or re-train)")

    # ------------------------------------------------------------ value checks
    def integer(self, v: Any, name: str, lo: int, hi: int) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(name, f"is {_REPR.repr(v)}, not an integer")
        if not lo <= v <= hi:
            self.fail(name, f"is {v}, outside {lo}..{hi}")
        return v

    def number(self, v: Any, name: str, lo: float = -math.inf, above: float | None = None) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not _finite(v):
            self.fail(name, f"is {_REPR.repr(v)}, not a finite number")
        if v < lo or (above is not None and not v > above):
            self.fail(name, f"is {v}, expected {f'> {above:g}' if above is not None else f'>= {lo:g}'}")
        return float(v)

    def text(self, v: Any, name: str, limit: int = MAX_STR, choices: tuple[str, ...] = ()) -> str:
        if not isinstance(v, str):
            self.fail(name, f"is {_REPR.repr(v)}, not a string")
        if len(v) > limit:
            self.fail(name, f"is {len(v)} characters long, over {limit}")
        if _CONTROL.search(v):
            self.fail(name, f"is {_REPR.repr(v)}, with control characters")
        if choices and v not in choices:
            self.fail(name, f"is {_REPR.repr(v)}: expected one of {', '.join(map(repr, choices))}")
        return v

    def flag(self, v: Any, name: str) -> bool:
        if not isinstance(v, bool):
            self.fail(name, f"is {_REPR.repr(v)}, not true or false")
        return v

    def items(self, v: Any, name: str, lo: int, hi: int) -> list:
        if not isinstance(v, list):
            self.fail(name, f"is {_REPR.repr(v)}, not a list")
        if not lo <= len(v) <= hi:
            self.fail(name, f"has {len(v)} items, expected {lo if lo == hi else f'{lo}..{hi}'}")
        return v

    def obj(self, v: Any, name: str) -> dict[str, Any]:
        if not isinstance(v, dict):
            self.fail(name, f"is {_REPR.repr(v)}, not an object")
        return v

    def optional(self, d: dict[str, Any], key: str, check: Callable[[Any, str], Any]) -> Any:
        v = d.get(key)
        return None if v is None else check(v, key)

    # ------------------------------------------------------------ the card
    def card(self, d: Any) -> RunCard:
        if not isinstance(d, dict):
            self.fail("", f"is {type(d).__name__}, not a JSON object")
        version = d.get("version")
        if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
            raise WeightsError(f"run card {self.source} is version {version}, written by a newer mobilevision: "
                               f"upgrade (this one reads versions 1..{VERSION})")
        if "version" not in d:
            self.fail("version", "is missing")
        self.integer(version, "version", 1, VERSION)
        self.text(d.get("format"), "format", choices=FORMATS)
        required = ("model", "task", "input_size") + (("num_classes",) if version == 1 else ())
        missing = [k for k in required if k not in d]
        if missing:
            raise WeightsError(f"run card {self.source} lacks {', '.join(missing)}: it was edited or truncated")
        task = self.text(d["task"], "task")
        model = self.text(d["model"], "model")
        c, h, w = self.items(d["input_size"], "input_size", 3, 3)
        input_size = (self.integer(c, "input_size[0]", 1, MAX_CHANNELS), self.integer(h, "input_size[1]", 1, MAX_SIDE),
                      self.integer(w, "input_size[2]", 1, MAX_SIDE))
        num_classes, points = (self.counts_v1 if version == 1 else self.counts_v2)(d, task)
        labels = self.optional(d, "labels", self.labels)
        if labels is not None and num_classes is not None and len(labels) > num_classes:
            self.fail("labels", f"has {len(labels)} names for num_classes {num_classes}")
        channels = (1, MAX_CHANNELS)
        mean = self.optional(d, "mean", lambda v, n: tuple(
            self.number(x, f"{n}[{i}]") for i, x in enumerate(self.items(v, n, *channels))))
        std = self.optional(d, "std", lambda v, n: tuple(
            self.number(x, f"{n}[{i}]", above=0.0) for i, x in enumerate(self.items(v, n, *channels))))
        black = self.optional(d, "raw_black_level", lambda v, n: tuple(
            self.number(x, f"{n}[{i}]", lo=0.0) for i, x in enumerate(self.items(v, n, 1, 4))))
        white = self.optional(d, "raw_white_level", lambda v, n: self.number(v, n, above=max(black or (0.0,))))
        metrics = self.obj(_or_empty(d.get("metrics")), "metrics")
        for k, v in metrics.items():
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                self.fail(f"metrics[{_REPR.repr(k)}]", f"is {_REPR.repr(v)}, not a number")
        return RunCard(
            task=task, model=model, input_size=input_size, num_classes=num_classes, points=points, labels=labels,
            label_set=self.optional(d, "label_set", self.text), mean=mean, std=std,
            interpolation=self.optional(d, "interpolation", self.text),
            crop_pct=self.optional(d, "crop_pct", lambda v, n: self.number(v, n, above=0.0)),
            raw_black_level=black, raw_white_level=white, raw_clip=self.optional(d, "raw_clip", self.flag),
            role=self.optional(d, "role", self.text),
            data=self.optional(d, "data", lambda v, n: self.text(v, n, MAX_TEXT)),
            task_options=self.obj(_or_empty(d.get("task_options")), "task_options"),
            epoch=self.optional(d, "epoch", lambda v, n: self.integer(v, n, 0, MAX_EPOCHS)),
            metrics=metrics, ema=self.optional(d, "ema", self.flag),
            world_size=self.optional(d, "world_size", lambda v, n: self.integer(v, n, 1, MAX_WORLD)),
            train_config=self.optional(d, "train", self.obj),
            state=self.optional(d, "state", lambda v, n: self.text(v, n, choices=RUN_STATES)),
            epochs_done=self.optional(d, "epochs_done", lambda v, n: self.integer(v, n, 0, MAX_EPOCHS)),
            updated=self.optional(d, "updated", self.text),
            extras={k: v for k, v in d.items() if k not in _RESERVED})

    def labels(self, v: Any, name: str) -> tuple[str, ...]:
        return tuple(self.text(x, f"{name}[{i}]") for i, x in enumerate(self.items(v, name, 0, MAX_LABELS)))

    def counts_v2(self, d: dict[str, Any], task: str) -> tuple[int | None, int | None]:
        num_classes = self.optional(d, "num_classes", lambda v, n: self.integer(v, n, 1, MAX_LABELS))
        points = self.optional(d, "points", lambda v, n: self.integer(v, n, 1, MAX_POINTS))
        classifier = is_classifier(task)
        if classifier and num_classes is None:
            self.fail("num_classes", f"is missing: a {task} card gives its class count")
        if not classifier and num_classes is not None:
            self.fail("num_classes", f"is {num_classes}: only classifier cards have classes (a {task} card has "
                      "null)")
        return num_classes, points

    def counts_v1(self, d: dict[str, Any], task: str) -> tuple[int | None, int | None]:
        """Version 1 kept every head size in ``num_classes``: the class count of a classifier, a landmark
        model's point count (``points``, when present, said the same), 0 for anomaly and ISP models."""
        if is_classifier(task):
            return self.integer(d["num_classes"], "num_classes", 1, MAX_LABELS), None
        count = self.integer(d["num_classes"], "num_classes", 0, MAX_POINTS)
        points = self.optional(d, "points", lambda v, n: self.integer(v, n, 1, MAX_POINTS))
        if points is not None and count not in (0, points):
            self.fail("points", f"is {points} but num_classes (the version 1 point count) is {count}")
        return None, points if points is not None else (count or None)


def _or_empty(value: Any) -> Any:
    """A missing (null) object read as {}; anything else is checked as it is."""
    return {} if value is None else value


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:     # an int beyond float range
        return False
