"""A run folder: weights, run cards, the resumable state and the metrics table, all written atomically.

    RUN_DIR/run.json                       the run's card from its start: model, data, recipe, state
                                           ("running" / "finished") and epochs done (a RunCard)
    RUN_DIR/last.safetensors + last.json   weights after the latest epoch (EMA weights when EMA is on)
    RUN_DIR/best.safetensors + best.json   weights of the best validation epoch
    RUN_DIR/last.state.pt                  everything --resume needs, self-contained
    RUN_DIR/metrics.csv                    one row per finished epoch

The ``.safetensors`` files hold exactly the model's state dict, so
``mobilevision.create_model(name, weights=RUN_DIR/best.safetensors)`` (and ``mobilevision
export``) load them; the JSON beside each (the run card) carries the class names, input size
and normalisation. ``last.state.pt`` holds tensors and plain Python values only and is read
back with ``torch.load(weights_only=True)``. A write that fails (a full disk) is a TrainingError
naming the file; the epochs already finished stay resumable.
"""
from __future__ import annotations

import csv
import io
import pickle
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from mobilevision.atomic_io import atomic_write_bytes, atomic_write_text
from mobilevision.errors import TrainingError, os_problem
from mobilevision.run_card import CHECKPOINT_FORMAT, RUN_FORMAT, RunCard

STATE_FILE = "last.state.pt"
STATE_VERSION = 1
RUN_CARD_FILE = "run.json"


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """An OS error while writing ``path`` (a full disk, a file where the run folder should be) becomes one line."""
    try:
        yield
    except OSError as e:
        raise TrainingError(f"cannot write {path}: {os_problem(e)}; finished epochs stay resumable with "
                            "--resume") from e


def _tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies (safetensors refuses shared storage)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


def save_weights(path: Path, state: dict[str, torch.Tensor], card: RunCard) -> None:
    """``path`` (.safetensors) then its run card (``path`` with .json); each write is atomic."""
    from safetensors.torch import save

    with _writing(path):
        atomic_write_bytes(path, save(_tensors(state), metadata={"format": CHECKPOINT_FORMAT}))
    with _writing(path.with_suffix(".json")):
        atomic_write_text(path.with_suffix(".json"), card.to_json(CHECKPOINT_FORMAT))


def write_run_card(run_dir: Path, card: RunCard) -> Path:
    """RUN_DIR/run.json (the folder is created): written when a run starts and after every epoch, so a
    long run's folder says what it is from its first second."""
    path = Path(run_dir) / RUN_CARD_FILE
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, card.to_json(RUN_FORMAT))
    return path


def save_state(run_dir: Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save({"version": STATE_VERSION, **state}, buf)
    with _writing(run_dir / STATE_FILE):
        atomic_write_bytes(run_dir / STATE_FILE, buf.getvalue())


def has_state(run_dir: Path) -> bool:
    return (Path(run_dir) / STATE_FILE).is_file()


def load_state(run_dir: Path) -> dict[str, Any]:
    """The resumable state of ``run_dir``; a clear error when there is none or it is unreadable."""
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        raise TrainingError(f"nothing to resume in {run_dir}: no {STATE_FILE} (start the run without --resume)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise TrainingError(f"cannot resume from {path}: {first[:160]}") from e
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise TrainingError(f"{path} is not a mobilevision training state (version {STATE_VERSION})")
    return state


def write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """metrics.csv from the whole history (rewritten, so a resumed run never repeats a row)."""
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    with _writing(Path(run_dir) / "metrics.csv"):
        atomic_write_text(Path(run_dir) / "metrics.csv", buf.getvalue())
