"""One model over many images: a folder (every image below it), several files, or any iterable of images.

``Model.predict_each(images, **options)`` is a generator of ``BatchItem`` (the image, the task method's result
or the one-line reason that image failed); the CLI's ``classify`` / ``anomaly`` / ``landmarks`` turn the items
into one CSV or JSON row per image through the task's ``row(result)`` (``mobilevision/runtime/tasks``). An image
that cannot be read or used fails alone: its row holds the error and the run goes on. A problem of the model
itself (an unreadable artifact, a closed model, a wrong task) stops the run. Torch-free.
"""
from __future__ import annotations

import csv
import importlib
import inspect
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

from mobilevision.errors import ArtifactError, BackendUnavailable, MobileVisionError
from mobilevision.imaging import IMAGE_SUFFIXES

from .backends.base import ArtifactClosed

if TYPE_CHECKING:
    from .api import Model

ROW_FORMATS = (".csv", ".json", ".jsonl")


@dataclass(frozen=True)
class BatchItem:
    """One image of a batch: where it came from (a path, or ``#N`` for an in-memory image), and either the
    task method's result or the one-line ``error`` it failed with."""

    source: str
    result: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def expand_images(inputs: Sequence[str | Path]) -> list[tuple[Path, str]]:
    """(path, name) for every image the user named: a file as given (whatever its suffix: the reader decides),
    a folder as every file below it with an image suffix, sorted; ``name`` is the path relative to the folder's
    parent (``photos/a/1.jpg``), so names stay apart across folders. A missing path, or nothing to run on, is a
    one-line error before any inference."""
    found: list[tuple[Path, str]] = []
    for given in inputs:
        p = Path(given)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise MobileVisionError(f"{p} holds no images ({', '.join(IMAGE_SUFFIXES[:5])}, ...)")
            found += [(f, str(Path(p.resolve().name) / f.relative_to(p))) for f in files]
        elif p.exists():
            found.append((p, p.name))
        else:
            raise MobileVisionError(f"{p} not found: give image files or folders of images")
    if not found:
        raise MobileVisionError("no images given")
    seen: dict[str, int] = {}
    for path, name in found:
        seen[name] = seen.get(name, 0) + 1
    # the same name twice (shot.png from two folders): the full path tells the rows (and overlays) apart
    return [(path, name if seen[name] == 1 or path.is_dir() else str(path.resolve()).lstrip("/"))
            for path, name in found]


def task_runtime(model: "Model") -> Any:
    """The runtime module of the model's task (``mobilevision/runtime/tasks/<task>.py``), which names the method
    that takes one image (``IMAGE_METHOD``) and flattens its result into a row (``row``)."""
    from mobilevision.tasks import get_task

    md = model._require_metadata()
    module = importlib.import_module(get_task(md.task).runtime)
    if not hasattr(module, "IMAGE_METHOD"):
        raise MobileVisionError(f"{model.path} is a {md.task!r} model, which takes no images one by one "
                                f"(an ISP model takes RAW files: use `mobilevision isp`)")
    return module


_STOPS = (ArtifactError, ArtifactClosed, BackendUnavailable)   # the model's problems, not one image's


def predict_each(model: "Model", images: Iterable[Any], **options: Any) -> Iterator["BatchItem"]:
    """The task's method (``classify``, ``detect_anomaly``, ``detect_landmarks``) on each image, with
    ``options`` (``top_k``, ``threshold``, ``box``), as ``BatchItem``s in order."""
    runtime = task_runtime(model)
    method = getattr(model, runtime.IMAGE_METHOD)
    try:
        inspect.signature(method).bind(None, **options)
    except TypeError as e:
        raise MobileVisionError(f"{model.path} is a {model.metadata.task!r} model: Model.{method.__name__} {e}") from None
    if hasattr(runtime, "check_options"):   # a bad option fails once, not once per image
        runtime.check_options(**options)
    for i, image in enumerate(images):
        source = str(image) if isinstance(image, (str, Path)) else f"#{i}"
        try:
            yield BatchItem(source, method(image, **options))
        except _STOPS:
            raise
        except (MobileVisionError, OSError) as e:
            yield BatchItem(source, error=" ".join(str(e).splitlines()) or type(e).__name__)


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")   # what a spreadsheet reads as a formula at a cell's start


def _cell(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):   # numpy scalars -> Python
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _inert(value: Any) -> Any:
    """A CSV text cell a spreadsheet will not run: a leading formula character gets a ' before it (OWASP)."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_START) else value


def rows_text(rows: list[dict[str, Any]], fmt: str) -> str:
    """The rows as CSV (columns in first-seen order; blanks where a row lacks one, e.g. a failed image), a JSON
    list, or JSON lines (``fmt``: .csv, .json or .jsonl)."""
    rows = [{k: _cell(v) for k, v in row.items()} for row in rows]
    if fmt == ".json":
        return json.dumps(rows, indent=1, allow_nan=False) + "\n"
    if fmt == ".jsonl":
        return "".join(json.dumps(row, allow_nan=False) + "\n" for row in rows)
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _inert(v) for k, v in row.items()} for row in rows)
    return buf.getvalue()


def row_format(path: Path) -> str:
    """The format of a rows file by its suffix; a one-line error for any other."""
    fmt = path.suffix.lower()
    if fmt not in ROW_FORMATS:
        raise MobileVisionError(f"--out {path}: write rows to a {', '.join(ROW_FORMATS)} file")
    return fmt
