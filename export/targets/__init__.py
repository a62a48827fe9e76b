"""Export targets: name -> implementing class, imported only when used.

A new format is one file in this folder plus one line here.
"""
from __future__ import annotations

import importlib

from mobilevision.errors import UnknownTarget

TARGETS: dict[str, str] = {
    "onnx": "mobilevision.export.targets.onnx:OnnxTarget",
    "tflite": "mobilevision.export.targets.tflite:TFLiteTarget",
    "coreml": "mobilevision.export.targets.coreml:CoreMLTarget",
    "openvino": "mobilevision.export.targets.openvino:OpenVINOTarget",
    "executorch": "mobilevision.export.targets.executorch:ExecuTorchTarget",
    # ExecuTorch's other delegates: asked for by name, not in --target all (in_all = False)
    "executorch-coreml": "mobilevision.export.targets.executorch:ExecuTorchCoreMLTarget",
    "executorch-vulkan": "mobilevision.export.targets.executorch:ExecuTorchVulkanTarget",
    "executorch-qnn": "mobilevision.export.targets.executorch:ExecuTorchQNNTarget",
}
DEFAULT_TARGET = "onnx"   # export() without a target


def get_target(name: str):
    if name not in TARGETS:
        raise UnknownTarget(f"unknown target {name!r}: choose one of {', '.join(TARGETS)} or 'all'")
    module, cls = TARGETS[name].split(":")
    try:
        return getattr(importlib.import_module(module), cls)()
    except ImportError as e:
        raise UnknownTarget(f"target {name!r} needs a package that is not installed ({e.name}): "
                            "pip install 'mobilevision[export]'") from e
