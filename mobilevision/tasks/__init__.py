"""Tasks: what a task trains on, how a batch becomes a loss, how it is evaluated, and what export and the
runtime ask of it (``contract.Task``). A new task is its module here, its runtime module and one line below."""
from __future__ import annotations

from mobilevision.errors import MobileVisionError

from .contract import Task, TaskMetric

TASKS: dict[str, Task] = {
    "classify": Task("classify", "mobilevision.tasks.classify", "mobilevision.runtime.tasks.classify",
                     TaskMetric("top1", "top-1", "%", True, 1.0), classifier=True),
    "anomaly": Task("anomaly", "mobilevision.tasks.anomaly", "mobilevision.runtime.tasks.anomaly",
                    TaskMetric("image_auroc", "image AU-ROC", "", True, 0.01)),
    "isp": Task("isp", "mobilevision.tasks.isp", "mobilevision.runtime.tasks.isp",
                TaskMetric("psnr", "PSNR", "dB", True, 0.5), image_input=False),
    "landmarks": Task("landmarks", "mobilevision.tasks.landmarks", "mobilevision.runtime.tasks.landmarks",
                      TaskMetric("nme", "NME", "%", False, 0.5)),
}


def get_task(name: str) -> Task:
    """The registered task ``name``; MobileVisionError naming the known ones otherwise."""
    task = TASKS.get(name)
    if task is None:
        raise MobileVisionError(f"unknown task {name!r}: one of {', '.join(TASKS)}")
    return task


def classifier_output(name: str) -> bool:
    """Whether a model of task ``name`` ends in class scores (False for a task this version does not know, as
    in metadata from elsewhere)."""
    task = TASKS.get(name)
    return bool(task and task.classifier)


__all__ = ["TASKS", "Task", "TaskMetric", "classifier_output", "get_task"]
