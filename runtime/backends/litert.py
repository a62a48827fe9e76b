"""LiteRT (TFLite) backend: ai_edge_litert's Interpreter with its default XNNPACK CPU delegate."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mobilevision.errors import ArtifactError
from mobilevision.export.metadata import METADATA_KEY, TensorSpec

from .base import require


def read_tflite_metadata(path: Path, key: str = METADATA_KEY) -> str | None:
    """The bytes of the flatbuffer metadata entry ``key`` (decoded), or None."""
    schema = require("ai_edge_litert.schema_py_generated", "ai-edge-litert", "Reading .tflite metadata")
    buf = Path(path).read_bytes()
    try:
        model = schema.Model.GetRootAs(buf, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() is not None and entry.Name().decode() == key:
                data = model.Buffers(entry.Buffer())
                if data.Offset() > 1:  # large models keep buffers outside the flatbuffer
                    return buf[data.Offset():data.Offset() + data.Size()].decode("utf-8")
                return data.DataAsNumpy().tobytes().decode("utf-8")
    except Exception as e:  # a corrupt flatbuffer raises arbitrary errors from the generated code
        raise ArtifactError(f"{path} is not a valid .tflite flatbuffer ({type(e).__name__})") from e
    return None


class LiteRTBackend:
    name = "litert"

    def __init__(self, path: Path, threads: int | None = None):
        interp_mod = require("ai_edge_litert.interpreter", "ai-edge-litert", "LiteRT backend")
        self.path = Path(path)
        try:
            self.interpreter = interp_mod.Interpreter(model_path=str(self.path), num_threads=threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ArtifactError(f"LiteRT cannot load {self.path}: {str(e).splitlines()[0][:200]}") from e
        self._in = self.interpreter.get_input_details()
        self._out = self.interpreter.get_output_details()
        self.inputs = [TensorSpec(d["name"], [int(s) for s in d["shape"]], np.dtype(d["dtype"]).name) for d in self._in]
        self.outputs = [TensorSpec(d["name"], [int(s) for s in d["shape"]], np.dtype(d["dtype"]).name) for d in self._out]

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        for d, a in zip(self._in, arrays):
            self.interpreter.set_tensor(d["index"], a)
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(d["index"]).copy() for d in self._out]

    def embedded_metadata(self) -> str | None:
        return read_tflite_metadata(self.path)

    def close(self) -> None:
        self.interpreter = None
