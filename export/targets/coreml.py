"""Core ML target: coremltools converts a TorchScript trace to an ML Program (.mlpackage).

Conversion runs anywhere; prediction needs macOS. On other systems the exporter validates
the written program (inputs, outputs, shapes, op types) and says that numeric parity
needs a Mac; on macOS parity runs numerically like every other target.

int8 here is 8-bit weights only: coremltools.optimize stores weights as int8 (linear symmetric,
per output channel) dequantised by constexpr ops at load, and the program computes in fp16.
Core ML activation quantisation calibrates by running predictions, which needs macOS.
"""
from __future__ import annotations

import copy
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mobilevision.errors import ExportError
from mobilevision.export.metadata import METADATA_KEY

from .base import ExportOptions, op_histogram, quiet_converters
from .module_scopes import check_keep_float, matches, module_call_stacks

NUMERIC_PARITY_NEEDS_MACOS = ("Core ML numeric parity needs macOS (Core ML prediction is not available on "
                              f"{platform.system()}); the program was validated structurally instead")


def _program_ops(mlmodel: Any) -> list[Any]:
    """The non-const ops of a converted ML Program (nested blocks included)."""
    def walk(block):
        for op in block.operations:
            if op.op_type != "const":
                yield op
            for b in op.blocks:
                yield from walk(b)

    return [op for f in mlmodel._mil_program.functions.values() for op in walk(f)]


def _reads_float_weights(op: Any) -> bool:
    """Whether ``op`` takes a float const tensor (weights, bias), the inputs weight compression touches."""
    from coremltools.converters.mil.mil import types

    for v in op.inputs.values():
        for var in v if isinstance(v, (list, tuple)) else [v]:
            if (var.op is not None and var.op.op_type == "const" and types.is_float(var.dtype)
                    and getattr(var.val, "size", 1) > 1):
                return True
    return False


class CoreMLTarget:
    int8_calibrates = False   # int8 = 8-bit weights, fp16 compute: no activation ranges to calibrate
    name = "coreml"
    suffix = ".mlpackage"
    runtime = "coreml"
    precisions = ("fp32", "fp16", "int8")

    def convert(self, module: torch.nn.Module, example: torch.Tensor, options: ExportOptions):
        import coremltools as ct

        if options.precision == "int8":
            check_keep_float(options.keep_float, module)  # unknown prefixes fail before converting
        precision = ct.precision.FLOAT32 if options.precision == "fp32" else ct.precision.FLOAT16
        # float32 inputs and outputs at every precision (casts inside), as the metadata promises apps:
        # with fp16 compute coremltools would otherwise make them FLOAT16
        io = {"dtype": np.float32}
        # coremltools 9's reduce_transposes pass mis-infers q @ k^T shapes in attention; it only
        # reorders transposes, so dropping it keeps the program's semantics.
        pipeline = ct.PassPipeline.DEFAULT
        pipeline.remove_passes(["common::reduce_transposes"])
        try:
            with quiet_converters(), torch.no_grad():
                # A trace shares the module's tensors, and coremltools' passes edit constants in
                # place (it shifted EfficientAD's teacher_mean buffer): convert a copy.
                traced = torch.jit.trace(copy.deepcopy(module), example)
                mlmodel = ct.convert(
                    traced, convert_to="mlprogram", compute_precision=precision,
                    minimum_deployment_target=ct.target.iOS16, pass_pipeline=pipeline,
                    inputs=[ct.TensorType(name=options.input_names[0], shape=tuple(example.shape), **io)],
                    outputs=[ct.TensorType(name=n, **io) for n in options.output_names])
        except Exception as e:  # coremltools raises bare Exceptions and ValueErrors
            raise ExportError(f"coremltools could not convert {type(module).__name__}: "
                              f"{str(e).strip().splitlines()[0][:200]}") from e
        if options.precision != "int8":
            return mlmodel
        kept = self._kept_float_ops(mlmodel, module, example, options.keep_float)
        try:
            with quiet_converters():
                return self._quantize_weights(mlmodel, kept, options)
        except Exception as e:
            raise ExportError(f"coremltools could not quantise the weights of {type(module).__name__} to int8: "
                              f"{str(e).strip().splitlines()[0][:200]}") from e

    @staticmethod
    def _kept_float_ops(mlmodel: Any, module: torch.nn.Module, example: torch.Tensor,
                        prefixes: tuple[str, ...]) -> list[str]:
        """Names of the program's ops traced from modules under ``prefixes``.

        The TorchScript frontend gives each op the last path components of the modules being called
        and then its TorchScript value name: ``["stages", "0", "bn", "input.5"]`` for ``stages.0.bn``
        of a Sequential, ``["0", "bn", "50"]`` of a ModuleList (never called itself, so absent).
        """
        from coremltools.converters.mil.mil.scope import ScopeSource

        if not prefixes:
            return []
        owners: dict[tuple[str, ...], set[str]] = {}
        for path, stacks in module_call_stacks(module, example).items():
            for stack in stacks:
                owners.setdefault(tuple(p.rsplit(".", 1)[-1] for p in stack[1:]), set()).add(path)
        names: list[str] = []
        for prefix in prefixes:
            hits = [op.name for op in _program_ops(mlmodel)
                    if any(matches(p, prefix) for p in owners.get(
                        tuple(op.scopes.get(ScopeSource.TORCHSCRIPT_MODULE_NAME, [])[:-1]), ()))]
            if not hits:
                raise ExportError(f"--keep-float {prefix!r}: no Core ML op was traced from that module "
                                  "(coremltools folded it away): name its parent module instead")
            names += [n for n in hits if n not in names]
        return names

    @staticmethod
    def _quantize_weights(mlmodel: Any, kept: list[str], options: ExportOptions) -> Any:
        """8-bit linear symmetric per-channel weights by coremltools.optimize; ``kept`` ops keep theirs.

        Fills ``options.quantization``; its ``kept_float`` lists the kept ops that read float weights.
        """
        import coremltools as ct
        import coremltools.optimize.coreml as cto

        weight_config = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8")
        config = cto.OptimizationConfig(global_config=weight_config, op_name_configs={n: None for n in kept})
        weighted = [op.name for op in _program_ops(mlmodel) if op.name in kept and _reads_float_weights(op)]
        quantized = cto.linear_quantize_weights(mlmodel, config)
        options.quantization = {
            "tool": f"coremltools {ct.__version__}",
            "scheme": "int8 weights only (linear symmetric, per output channel, tensors of more than "
                      f"{weight_config.weight_threshold} elements), fp16 compute and activations",
            "calibration_samples": 0,
            "kept_float": weighted,
            "kept_float_modules": list(options.keep_float),
        }
        return quantized

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
