"""Core ML target: coremltools converts a TorchScript trace to an ML Program (.mlpackage).

Conversion runs anywhere; prediction needs macOS. On other systems the exporter validates
the written program (inputs, outputs, shapes, op types) and says that numeric parity
needs a Mac; on macOS parity runs numerically like every other target.
"""
from __future__ import annotations

import copy

import platform
from pathlib import Path
from typing import Any

import torch

from mobilevision.errors import ExportError
from mobilevision.export.metadata import METADATA_KEY

from .base import ExportOptions, op_histogram, quiet_converters

NUMERIC_PARITY_NEEDS_MACOS = ("Core ML numeric parity needs macOS (Core ML prediction is not available on "
                              f"{platform.system()}); the program was validated structurally instead")


class CoreMLTarget:
    name = "coreml"
    suffix = ".mlpackage"
    runtime = "coreml"
    precisions = ("fp32", "fp16")

    def convert(self, module: torch.nn.Module, example: torch.Tensor, options: ExportOptions):
        import coremltools as ct

        precision = ct.precision.FLOAT16 if options.precision == "fp16" else ct.precision.FLOAT32
        # coremltools 9's reduce_transposes pass mis-infers q @ k^T shapes in attention; it only
        # reorders transposes, so dropping it keeps the program's semantics.
        pipeline = ct.PassPipeline.DEFAULT
        pipeline.remove_passes(["common::reduce_transposes"])
        try:
            with quiet_converters(), torch.no_grad():
                # A trace shares the module's tensors, and coremltools' passes edit constants in
                # place (it shifted EfficientAD's teacher_mean buffer): convert a copy.
                traced = torch.jit.trace(copy.deepcopy(module), example)
                return ct.convert(
                    traced, convert_to="mlprogram", compute_precision=precision,
                    minimum_deployment_target=ct.target.iOS16, pass_pipeline=pipeline,
                    inputs=[ct.TensorType(name=options.input_names[0], shape=tuple(example.shape))],
                    outputs=[ct.TensorType(name=n) for n in options.output_names])
        except Exception as e:  # coremltools raises bare Exceptions and ValueErrors
            raise ExportError(f"coremltools could not convert {type(module).__name__}: "
                              f"{str(e).strip().splitlines()[0][:200]}") from e

    def save(self, handle: Any, path: Path, metadata_json: str) -> list[Path]:
        handle.user_defined_metadata[METADATA_KEY] = metadata_json
        with quiet_converters():
            handle.save(str(path))
        return [path]

    def validate(self, path: Path) -> dict[str, Any]:
        """Read the saved package back and describe its interface and program."""
        import coremltools as ct

        with quiet_converters():
            spec = ct.utils.load_spec(str(path))

        def features(fs):
            return [{"name": f.name, "shape": [int(d) for d in f.type.multiArrayType.shape],
                     "dtype": ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(
                         f.type.multiArrayType.dataType)} for f in fs]

        ops = []
        for function in spec.mlProgram.functions.values():
            for block in function.block_specializations.values():
                ops += [op.type for op in block.operations]
        return {"spec_version": spec.specificationVersion, "inputs": features(spec.description.input),
                "outputs": features(spec.description.output), "ops": op_histogram(ops)}

    def numeric_parity_unavailable(self) -> str | None:
        return None if platform.system() == "Darwin" else NUMERIC_PARITY_NEEDS_MACOS
