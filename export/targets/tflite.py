"""TFLite (LiteRT) target: litert-torch converts PyTorch directly; metadata in a flatbuffer buffer."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mobilevision.errors import ExportError
from mobilevision.export.metadata import METADATA_KEY

from .base import ExportOptions, op_histogram, quiet_converters


def with_metadata(flatbuffer: bytes, key: str, value: bytes) -> bytes:
    """Return the .tflite flatbuffer with metadata entry ``key`` set to ``value`` (replacing any)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    for b in model.buffers or []:
        if b.offset and b.offset > 1:  # constants appended after the flatbuffer: inline them,
            b.data = np.frombuffer(flatbuffer, np.uint8, count=b.size, offset=b.offset)  # offsets move
            b.offset, b.size = 0, 0
    model.metadata = [m for m in (model.metadata or []) if m.name not in (key, key.encode())]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(value, np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = key
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    builder = flatbuffers.Builder(len(flatbuffer) + len(value) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


class TFLiteTarget:
    name = "tflite"
    suffix = ".tflite"
    runtime = "litert"
    precisions = ("fp32", "fp16")

    def convert(self, module: torch.nn.Module, example: torch.Tensor, options: ExportOptions) -> bytes:
        try:
            with quiet_converters():
                import litert_torch
                from litert_torch.generative.quantize import quant_recipes

                # fp16: weights stored as fp16, dequantised at load (LiteRT's float16 quantisation)
                quant = quant_recipes.full_fp16_recipe() if options.precision == "fp16" else None
                edge = litert_torch.convert(module, (example,), quant_config=quant)
            return edge.model_content()
        except Exception as e:  # the converter raises many unrelated types
            raise ExportError(f"litert-torch could not convert {type(module).__name__}: "
                              f"{str(e).strip().splitlines()[0][:200]}") from e

    def save(self, handle: Any, path: Path, metadata_json: str) -> list[Path]:
        path.write_bytes(with_metadata(handle, METADATA_KEY, metadata_json.encode("utf-8")))
        return [path]

    def validate(self, path: Path) -> dict[str, Any]:
        from ai_edge_litert import schema_py_generated as schema

        model = schema.Model.GetRootAs(path.read_bytes(), 0)
        names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
        codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
        graph = model.Subgraphs(0)
        ops = []
        for i in range(graph.OperatorsLength()):
            code = codes[graph.Operators(i).OpcodeIndex()]
            op = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            ops.append(names.get(op, str(op)))
        return {"subgraphs": model.SubgraphsLength(), "ops": op_histogram(ops)}

    def numeric_parity_unavailable(self) -> str | None:
        return None
