"""OpenVINO target: reads the ONNX export, writes IR ``.xml``/``.bin``; metadata in ``rt_info``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mobilevision.errors import ExportError
from mobilevision.export.metadata import METADATA_KEY

from .base import ExportOptions, op_histogram
from .onnx import torch_to_onnx


class OpenVINOTarget:
    name = "openvino"
    suffix = ".xml"
    runtime = "openvino"
    precisions = ("fp32", "fp16")

    def convert(self, module: torch.nn.Module, example: torch.Tensor, options: ExportOptions):
        import onnx
        import openvino as ov

        proto = torch_to_onnx(module, example, options)
        tmp = Path(options.workdir) / "_openvino_src.onnx"
        onnx.save(proto, str(tmp))
        try:
            model = ov.Core().read_model(str(tmp))  # read_model, unlike convert_model, sends no telemetry
        except Exception as e:  # OpenVINO raises its own exception types
            raise ExportError(f"OpenVINO could not read the ONNX export: {str(e).splitlines()[0][:200]}") from e
        finally:
            tmp.unlink(missing_ok=True)
        # fp16: weights stored as fp16 in the .bin (OpenVINO's FP16 IR); the CPU plugin computes in fp32
        return model, options.precision == "fp16"

    def save(self, handle: Any, path: Path, metadata_json: str) -> list[Path]:
        import openvino as ov

        model, compress = handle
        model.set_rt_info(metadata_json, [METADATA_KEY])
        ov.save_model(model, str(path), compress_to_fp16=compress)
        return [path, path.with_suffix(".bin")]

    def validate(self, path: Path) -> dict[str, Any]:
        import openvino as ov

        model = ov.Core().read_model(str(path))
        return {"ops": op_histogram(op.get_type_name() for op in model.get_ordered_ops())}

    def numeric_parity_unavailable(self) -> str | None:
        return None
