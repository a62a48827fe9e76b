"""ONNX target: torch.onnx (dynamo exporter), metadata in ``metadata_props``, run by ONNX Runtime."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mobilevision.errors import ExportError
from mobilevision.export.metadata import METADATA_KEY

from .base import ExportOptions, op_histogram, quiet_converters


def torch_to_onnx(module: torch.nn.Module, example: torch.Tensor, options: ExportOptions):
    """Export ``module`` to an in-memory fp32 ModelProto with static shapes."""
    import onnx

    path = Path(options.workdir) / "_torch_export.onnx"
    try:
        with quiet_converters():
            torch.onnx.export(module, (example,), str(path), input_names=list(options.input_names),
                              output_names=list(options.output_names), opset_version=options.opset,
                              dynamo=True, external_data=False, verbose=False)
        return onnx.load(str(path))
    except Exception as e:  # the exporter raises many unrelated types
        raise ExportError(f"torch.onnx could not export {type(module).__name__}: "
                          f"{str(e).strip().splitlines()[0][:200]}") from e
    finally:
        path.unlink(missing_ok=True)


def _sort_topologically(graph) -> None:
    """Reorder ``graph.node`` so every node comes after the producers of its inputs (Kahn)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ExportError("ONNX graph has a cycle or a dangling input after fp16 conversion")
        ready_ids = {id(n) for n in ready}
        for n in ready:
            available.update(n.output)
        ordered += ready
        pending = [n for n in pending if id(n) not in ready_ids]
    del graph.node[:]
    graph.node.extend(ordered)


class OnnxTarget:
    name = "onnx"
    suffix = ".onnx"
    runtime = "ort"
    precisions = ("fp32", "fp16")

    def convert(self, module: torch.nn.Module, example: torch.Tensor, options: ExportOptions):
        model = torch_to_onnx(module, example, options)
        if options.precision == "fp16":
            # fp16 weights and compute; inputs/outputs stay float32 so apps feed the same arrays
            from onnxruntime.transformers.float16 import convert_float_to_float16

            model = convert_float_to_float16(model, keep_io_types=True)
            _sort_topologically(model.graph)  # the converter appends its input casts at the end
        return model

    def save(self, handle: Any, path: Path, metadata_json: str) -> list[Path]:
        import onnx

        del handle.metadata_props[:]
        entry = handle.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, metadata_json
        onnx.save(handle, str(path))
        return [path]

    def validate(self, path: Path) -> dict[str, Any]:
        import onnx

        model = onnx.load(str(path))
        onnx.checker.check_model(model)
        return {"opset": max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                "ops": op_histogram(n.op_type for n in model.graph.node)}

    def numeric_parity_unavailable(self) -> str | None:
        return None
