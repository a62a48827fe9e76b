"""The Task contract: what the export pipeline, the quantisation report and the runtime ask a task.

One ``Task`` per task, registered in ``mobilevision.tasks.TASKS`` (one line each), torch-free: its behaviour
lives in two modules it names and which are imported only when asked for:

- ``module`` (``mobilevision/tasks/<task>.py``, the training task): ``export_samples(md, data, split, n, seed,
  category)`` -> ``TaskSamples`` (calibration "train" / metric "heldout" inputs, prepared as an app feeds the
  artifact), ``score_outputs(md, outputs, targets)`` -> the metric, and optionally ``describe_outputs(card,
  outputs)`` -> the metadata fields the task adds (a classifier's class count, a landmark model's points),
  raising when the model's outputs contradict its card; optionally ``describe_run(run_card)`` -> the metadata
  fields the training run recorded (an anomaly detector's thresholds).
- ``runtime`` (``mobilevision/runtime/tasks/<task>.py``): pre- and post-processing driven by the metadata.

Nothing outside a task compares ``task == "..."``: callers ask ``get_task(name)``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TaskMetric:
    """The metric a task is judged by, and how much of it a quantised export may lose before a warning."""

    key: str
    label: str
    unit: str
    higher_is_better: bool
    threshold: float

    def format(self, value: float | None) -> str:
        if value is None:
            return "n/a"
        digits = 4 if self.key == "image_auroc" else 2
        return f"{value:.{digits}f}{(' ' + self.unit) if self.unit and self.unit != '%' else self.unit}"


@dataclass(frozen=True)
class Task:
    """One task: its name, metric, the kind of output it ends in, and where its behaviour lives."""

    name: str
    module: str                  # the training / export side (needs torch)
    runtime: str                 # the runtime side (torch-free)
    metric: TaskMetric
    classifier: bool = False     # the first output holds class scores (labels, softmax, top-1 agreement)
    image_input: bool = True     # its input is one RGB image (calibration may come from a flat image folder)

    def _module(self):
        return importlib.import_module(self.module)

    def samples(self, md, data: str | None, split: str, n: int, seed: int, category: str | None = None):
        """``n`` calibration ("train") or held-out ("heldout") inputs of this task's data (``TaskSamples``)."""
        return self._module().export_samples(md, data, split, n, seed, category)

    def score(self, md, outputs: list[list[Any]], targets: list[Any]) -> float:
        """The task metric of per-input outputs against the targets of ``samples``."""
        return float(self._module().score_outputs(md, outputs, targets))

    def describe(self, card, outputs: list[Any]) -> dict[str, Any]:
        """Metadata fields this task adds for a model with ``card`` whose example outputs are ``outputs``."""
        describe = getattr(self._module(), "describe_outputs", None)
        return describe(card, outputs) if describe is not None else {}

    def describe_run(self, run) -> dict[str, Any]:
        """Metadata fields this task takes from the run card of the weights (an anomaly detector's thresholds)."""
        describe = getattr(self._module(), "describe_run", None)
        return describe(run) if describe is not None else {}
