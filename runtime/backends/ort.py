"""ONNX Runtime backend (CPU execution provider)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mobilevision.errors import ArtifactError
from mobilevision.export.metadata import METADATA_KEY, TensorSpec

from .base import numpy_dtype, require


def _spec(arg) -> TensorSpec:
    shape = [d if isinstance(d, int) else -1 for d in arg.shape]
    return TensorSpec(arg.name, shape, str(numpy_dtype(arg.type)))


class OrtBackend:
    name = "ort"

    def __init__(self, path: Path, threads: int | None = None):
        ort = require("onnxruntime", "onnxruntime", "ONNX Runtime backend")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.path = Path(path)
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own exception classes for every load failure
            raise ArtifactError(f"ONNX Runtime cannot load {self.path}: {str(e).splitlines()[0][:200]}") from e
        self.inputs = [_spec(a) for a in self.session.get_inputs()]
        self.outputs = [_spec(a) for a in self.session.get_outputs()]

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        feed = {spec.name: a for spec, a in zip(self.inputs, arrays)}
        return self.session.run(None, feed)

    def embedded_metadata(self) -> str | None:
        return self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)

    def close(self) -> None:
        self.session = None
