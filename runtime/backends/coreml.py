"""Core ML backend: runs .mlpackage files with coremltools; prediction needs macOS."""
from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from mobilevision.errors import ArtifactError, BackendUnavailable
from mobilevision.export.metadata import METADATA_KEY, TensorSpec

from .base import require

MACOS_ONLY = ("Core ML prediction needs macOS (coremltools can convert on Linux but ships no Core ML "
              "framework); run this .mlpackage on a Mac or an iPhone, or use the .onnx/.tflite/.xml artifact here")


def _shape(feature) -> list[int]:
    arr = feature.type.multiArrayType
    return [int(d) for d in arr.shape]


class CoreMLBackend:
    name = "coreml"

    def __init__(self, path: Path, threads: int | None = None, compute_units: str = "CPU_ONLY"):
        self.path = Path(path)
        if platform.system() != "Darwin":  # checked first: importing coremltools imports torch
            raise BackendUnavailable(MACOS_ONLY)
        ct = require("coremltools", "coremltools", "Core ML backend")
        try:
            self.model = ct.models.MLModel(str(self.path), compute_units=getattr(ct.ComputeUnit, compute_units))
        except Exception as e:  # coremltools raises bare Exceptions for unreadable packages
            raise ArtifactError(f"Core ML cannot load {self.path}: {str(e).splitlines()[0][:200]}") from e
        spec = self.model.get_spec()
        self.inputs = [TensorSpec(f.name, _shape(f), "float32") for f in spec.description.input]
        self.outputs = [TensorSpec(f.name, _shape(f), "float32") for f in spec.description.output]

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        result = self.model.predict({s.name: a for s, a in zip(self.inputs, arrays)})
        return [np.asarray(result[s.name]) for s in self.outputs]

    def embedded_metadata(self) -> str | None:
        return self.model.user_defined_metadata.get(METADATA_KEY)

    def close(self) -> None:
        self.model = None
