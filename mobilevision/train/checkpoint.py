"""A run folder: weights, run cards, the resumable state and the metrics table, all written atomically.

    RUN_DIR/last.safetensors + last.json   weights after the latest epoch (EMA weights when EMA is on)
    RUN_DIR/best.safetensors + best.json   weights of the best validation epoch
    RUN_DIR/last.state.pt                  everything --resume needs, self-contained
    RUN_DIR/metrics.csv                    one row per finished epoch

The ``.safetensors`` files hold exactly the model's state dict, so
``mobilevision.create_model(name, weights=RUN_DIR/best.safetensors)`` (and ``mobilevision
export``) load them; the JSON beside each (the run card) carries the class names, input size
and normalisation. ``last.state.pt`` holds tensors and plain Python values only and is read
back with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import csv
import io
import json
import pickle
from pathlib import Path
from typing import Any

import torch

from mobilevision.atomic_io import atomic_write_bytes, atomic_write_text
from mobilevision.checkpoints import RUN_CARD_FORMAT
from mobilevision.errors import TrainingError

STATE_FILE = "last.state.pt"
STATE_VERSION = 1


def _tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies (safetensors refuses shared storage)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


def save_weights(path: Path, state: dict[str, torch.Tensor], card: dict[str, Any]) -> None:
    """``path`` (.safetensors) then its run card; each write is atomic."""
    from safetensors.torch import save

    atomic_write_bytes(path, save(_tensors(state), metadata={"format": RUN_CARD_FORMAT}))
    atomic_write_text(path.with_suffix(".json"), json.dumps({"format": RUN_CARD_FORMAT, "version": 1, **card},
                                                            indent=2))


def save_state(run_dir: Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save({"version": STATE_VERSION, **state}, buf)
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
    atomic_write_text(Path(run_dir) / "metrics.csv", buf.getvalue())
