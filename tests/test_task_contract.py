"""The Task seam: each task says what export and the runtime need from it; nothing outside compares task names."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from mobilevision.tasks import TASKS, get_task

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_names_its_modules_and_metric(name):
    task = get_task(name)
    assert task.name == name and task.metric.threshold > 0
    module = importlib.import_module(task.module)
    assert callable(module.export_samples) and callable(module.score_outputs)
    importlib.import_module(task.runtime)


def test_unknown_task_is_one_clear_error():
    with pytest.raises(Exception, match="unknown task 'detect': one of classify, anomaly, isp, landmarks"):
        get_task("detect")


def test_nothing_outside_a_task_compares_task_names():
    """export/, the runtime's api and the quantisation report ask the task (``get_task``) instead."""
    pattern = re.compile(r"""\btask\s*(==|!=)\s*["']|\btask\s+(not\s+)?in\s+\(["']""")
    offenders = []
    for folder in ("export", "runtime"):
        for path in (ROOT / folder).rglob("*.py"):
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert offenders == []


def test_a_card_whose_head_disagrees_is_refused_by_the_task(toy_name):
    import torch

    from mobilevision.errors import ExportError
    from mobilevision.registry import get_model_card

    card = get_model_card(toy_name)
    with pytest.raises(ExportError, match="the card says 10 classes but the model's first output is \\[1, 7\\]"):
        get_task("classify").describe(card, [torch.zeros(1, 7)])
    assert get_task("classify").describe(card, [torch.zeros(1, 10)]) == {"num_classes": 10}
    assert get_task("anomaly").describe(card, [torch.zeros(1)]) == {}
    points = get_task("landmarks").describe(card, [torch.zeros(1, 68, 2)])["landmarks"]
    assert points.points == 68 and points.eye_corners is not None
