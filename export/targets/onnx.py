"""ONNX target: torch.onnx (dynamo exporter), metadata in ``metadata_props``, run by ONNX Runtime."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mobilevision.errors import ExportError
from mobilevision.export.metadata import METADATA_KEY

from .base import ExportOptions, as_args, batch_dims, batched_args, needs_packages, op_histogram, quiet_converters
from .module_scopes import check_keep_float, keep_float_nodes


def torch_to_onnx(module: torch.nn.Module, example: torch.Tensor, options: ExportOptions):
    """Export ``module`` to an in-memory fp32 ModelProto with static shapes."""
    import onnx

    path = Path(options.workdir) / "_torch_export.onnx"
    try:
        with quiet_converters():
            dynamic = {"dynamic_shapes": batch_dims(example, options.max_batch)} if options.dynamic_batch else {}
            torch.onnx.export(module, batched_args(example) if options.dynamic_batch else as_args(example), str(path),
                              input_names=list(options.input_names), output_names=list(options.output_names),
                              opset_version=options.opset, dynamo=True, external_data=False, verbose=False, **dynamic)
        return onnx.load(str(path))
    except Exception as e:  # the exporter raises many unrelated types
        raise ExportError(f"torch.onnx could not export {type(module).__name__}: "
                          f"{str(e).strip().splitlines()[0][:200]}") from e
    finally:
        path.unlink(missing_ok=True)


def calibration_inputs(options: ExportOptions, example: torch.Tensor) -> list[np.ndarray]:
    """The calibration arrays as float32, checked against the export example's shape."""
    if not options.calibration:
        raise ExportError("int8 needs calibration inputs: set ExportOptions.calibration to a few preprocessed "
                          "(1, C, H, W) float32 arrays, e.g. 100 images from the training data")
    want = tuple(example.shape)
    arrays = [np.ascontiguousarray(np.asarray(x, dtype=np.float32)) for x in options.calibration]
    for i, a in enumerate(arrays):
        if a.shape != want:
            raise ExportError(f"calibration input {i} has shape {list(a.shape)} but the model takes {list(want)}: "
                              "preprocess calibration images at the export size")
    return arrays


_NORMS = ("LayerNormalization", "InstanceNormalization", "BatchNormalization")


def quantize_int8(model, module: torch.nn.Module, arrays: list[np.ndarray], options: ExportOptions):
    """Static int8 QDQ quantisation of an fp32 export with onnxruntime.quantization; fills ``options.quantization``."""
    import onnx
    import onnxruntime
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        """Feeds the calibration arrays to the model's (single) input, one per call."""

        def __init__(self) -> None:
            self.rewind()

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {options.input_names[0]: x}

        def rewind(self) -> None:
            self._it = iter(arrays)

    kept = keep_float_nodes(model, options.keep_float, module) if options.keep_float else []
    # ORT pins a quantised Softmax output to the range [0, 1] (uint8 steps of 1/255), which zeroes attention
    # weights over more than a few dozen tokens; left float, the MatMul after it quantises its calibrated range
    softmax = [n.name for n in model.graph.node if n.op_type == "Softmax" and n.name not in kept]
    work = Path(options.workdir)
    pre, out = work / "_int8_pre.onnx", work / "_int8.onnx"
    try:
        # shape inference only: the exporter already folded constants and BatchNorms, and ORT's optimiser
        # would rename the nodes it fuses, losing the names --keep-float maps to
        quant_pre_process(model, str(pre), skip_optimization=True)
        # uint8 activations with int8 weights (U8S8): quantize_static's own guidance for ORT CPU on x86, with
        # or without VNNI (x86 integer dot products take u8 x s8 operands), and it runs on ARM too; asymmetric
        # uint8 also spends all 256 levels on post-ReLU tensors. reduce_range (7-bit weights) stays off: it
        # only helps AVX2 CPUs without VNNI against rare saturation, and costs accuracy everywhere else.
        quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=False, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=kept + softmax or None, calibrate_method=CalibrationMethod.MinMax,
                        # (MinMax keeps only each tensor's per-sample min and max, so many calibration inputs
                        # cost little memory; CalibMaxIntermediateOutputs is left unset: in onnxruntime 1.32 it
                        # drops the samples collected so far instead of merging their ranges)
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True,
                                       # the 1-D scale of a normalisation has its channels on axis 0; ORT's
                                       # default (1) is out of range, so it logged a warning per node and
                                       # fell back to one scale for the whole tensor
                                       "QDQOpTypePerChannelSupportToAxis": dict.fromkeys(_NORMS, 0)})
        quantized = onnx.load(str(out))
    except Exception as e:  # onnxruntime raises many types from calibration and rewriting
        raise ExportError(f"onnxruntime.quantization could not quantise {type(module).__name__}: "
                          f"{str(e).strip().splitlines()[0][:200]}") from e
    finally:
        pre.unlink(missing_ok=True)
        out.unlink(missing_ok=True)
    options.quantization = {
        "tool": f"onnxruntime.quantization {onnxruntime.__version__}",
        "scheme": "static QDQ, per-channel symmetric int8 weights, per-tensor asymmetric uint8 activations, "
                  "MinMax calibration, Softmax in float",
        "calibration_samples": len(arrays),
        "kept_float": kept,
        "kept_float_modules": list(options.keep_float),
    }
    return quantized


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
    dynamic_batch = True
    suffix = ".onnx"
    runtime = "ort"
    precisions = ("fp32", "fp16", "int8")
    tools = ("onnx", "onnxscript", "onnxruntime")

    def convert(self, module: torch.nn.Module, example: torch.Tensor, options: ExportOptions):
        if options.precision == "int8":  # fail on bad int8 options before the (slow) export
            arrays = calibration_inputs(options, example)
            check_keep_float(options.keep_float, module)
        model = torch_to_onnx(module, example, options)
        if options.precision == "int8":
            import onnx

            options.float_program = Path(options.workdir) / "_fp32_program.onnx"   # what int8 is timed against
            onnx.save(model, str(options.float_program))
            model = quantize_int8(model, module, arrays, options)
        elif options.precision == "fp16":
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

    def unavailable(self) -> str | None:
        return needs_packages(onnx="onnx", onnxscript="onnxscript", onnxruntime="onnxruntime")

    def numeric_parity_unavailable(self) -> str | None:
        return None
