"""OpenVINO backend: reads IR (.xml/.bin) or ONNX, compiles for the CPU plugin."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mobilevision.errors import ArtifactError
from mobilevision.export.metadata import METADATA_KEY, TensorSpec

from .base import require


def _spec(port) -> TensorSpec:
    shape = [d.get_length() if d.is_static else -1 for d in port.get_partial_shape()]
    return TensorSpec(port.get_any_name(), shape, np.dtype(port.get_element_type().to_dtype()).name)


class OpenVINOBackend:
    name = "openvino"

    def __init__(self, path: Path, threads: int | None = None, device: str = "CPU"):
        ov = require("openvino", "openvino", "OpenVINO backend")
        self.path = Path(path)
        core = ov.Core()
        try:
            self.model = core.read_model(str(self.path))
            # f32: on bf16/AMX CPUs the plugin would otherwise compute in bf16 and drift from the
            # exported precision (an fp16 IR is also computed in f32 on CPU)
            config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
            if threads:
                config["INFERENCE_NUM_THREADS"] = int(threads)
            self.compiled = core.compile_model(self.model, device, config)
        except RuntimeError as e:
            raise ArtifactError(f"OpenVINO cannot load {self.path}: {str(e).splitlines()[0][:200]}") from e
        self.request = self.compiled.create_infer_request()
        self.inputs = [_spec(p) for p in self.compiled.inputs]
        self.outputs = [_spec(p) for p in self.compiled.outputs]

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        result = self.request.infer(list(arrays))
        return [np.array(result[p]) for p in self.compiled.outputs]

    def embedded_metadata(self) -> str | None:
        if self.model.has_rt_info([METADATA_KEY]):
            return str(self.model.get_rt_info([METADATA_KEY]).astype(str))
        return None

    def close(self) -> None:
        self.request = self.compiled = self.model = None
