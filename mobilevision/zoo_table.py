"""The zoo table that ``mobilevision list`` prints, declared in ``data/zoo.json``.

Parameters and MACs are facts of a model card: counting them means building all 25 models and
tracing each under torch's flop counter, which took 14 s on a quiet 2-core machine. So they are
counted once, written to ``data/zoo.json`` with ``python -m mobilevision.zoo_table``, and a test
recounts them and fails when a model changed and the file did not. Reading the table imports
neither torch nor the model code. A size other than the card's (``list --imgsz``) is counted live.
"""
from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

FILE = "data/zoo.json"
FIELDS = ("name", "task", "input", "params", "macs")


def declared() -> list[dict[str, Any]]:
    """The declared rows, in name order: name, task, input [C, H, W], params, macs (no torch)."""
    text = resources.files("mobilevision").joinpath(FILE).read_text(encoding="utf-8")
    return json.loads(text)["models"]


def count(name: str, size: tuple[int, ...]) -> tuple[int, int]:
    """Params and MACs of zoo model ``name`` at input ``size`` (C, H, W), counted on the meta device where
    the model builds there (shapes only: same numbers, no weights), otherwise on the CPU."""
    import torch

    import mobilevision
    from mobilevision.complexity import count_macs, count_params

    try:
        with torch.device("meta"):
            model = mobilevision.create_model(name)
            return count_params(model), count_macs(model, size)
    except (NotImplementedError, RuntimeError):  # a builder that reads tensor values (e.g. EMO's drop-path rates)
        model = mobilevision.create_model(name)
        return count_params(model), count_macs(model, size)


def counted() -> list[dict[str, Any]]:
    """The rows as the code gives them now (imports torch and every model)."""
    from mobilevision.registry import _MODEL_MODULES, _REGISTRY, _ensure_loaded

    _ensure_loaded()
    rows = []
    for name in sorted(_REGISTRY):
        entry = _REGISTRY[name]
        if entry.builder.__module__ not in _MODEL_MODULES:   # registered by a test or a script, not the zoo
            continue
        params, macs = count(name, entry.card.input_size)
        rows.append({"name": name, "task": entry.card.task, "input": list(entry.card.input_size),
                     "params": params, "macs": macs})
    return rows


def main() -> int:
    """Recount the zoo and rewrite ``data/zoo.json`` beside this module."""
    from mobilevision.atomic_io import atomic_write_text

    path = Path(__file__).parent / FILE
    about = ("mobilevision list: params and MACs (fvcore convention) at each card's input size; "
             "regenerate with python -m mobilevision.zoo_table")
    rows = ",\n".join("  " + json.dumps(row) for row in counted())   # one model per line: readable diffs
    text = f'{{"about": {json.dumps(about)},\n "models": [\n{rows}\n]}}\n'
    atomic_write_text(path, text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
