"""TFLite (LiteRT) target: litert-torch converts PyTorch directly; metadata in a flatbuffer buffer.

Image inputs are NHWC float32 (``[1, H, W, 3]``, the format's convention; MediaPipe Tasks and LiteRT's GPU
delegate take it), the transpose to the model's NCHW inside the graph; ``--layout NCHW`` keeps the older
layout. Classifiers end in a softmax (MediaPipe reports the output as scores). Next to our own JSON entry the
file carries the standard TFLite Metadata (``tflite_metadata.py``), so MediaPipe Tasks loads it unmodified.

int8 is static post-training quantisation by ai-edge-quantizer: int8 weights (per channel) and
int8 activations (per tensor, ranges from the calibration inputs), float32 model inputs and
outputs (the graph quantises and dequantises inside), so apps keep feeding float arrays. Op types that
LiteRT's CPU delegate (XNNPACK) cannot run in int8 stay float (``quantize_int8``).
"""
from __future__ import annotations

import importlib.metadata
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mobilevision.errors import ExportError
from mobilevision.export.metadata import METADATA_KEY, ModelMetadata

from .base import (ArtifactModule, ExportOptions, artifact_module, as_args, batch_dims, batched_args, needs_packages,
                   op_histogram, quiet_converters)
from .module_scopes import check_keep_float, matches, module_call_stacks


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


def _check_calibration(example: torch.Tensor, calibration: list[Any]) -> list[np.ndarray]:
    """The calibration inputs as float32 arrays shaped like ``example``, or ExportError."""
    if not calibration:
        raise ExportError("TFLite int8 needs calibration inputs to set activation ranges: pass a few "
                          "preprocessed sample images (ExportOptions.calibration), or use --precision fp16")
    arrays = []
    for i, a in enumerate(calibration):
        a = np.asarray(a.numpy() if isinstance(a, torch.Tensor) else a, dtype=np.float32)
        if a.shape != tuple(example.shape):
            raise ExportError(f"calibration input {i} has shape {list(a.shape)}, the model takes "
                              f"{list(example.shape)}: preprocess calibration images like the model input")
        arrays.append(a)
    return arrays


def _class_name(cls: type) -> str:
    """A class as litert-torch writes it into tensor names (module.qualname; bare for builtins)."""
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def litert_locations(module: torch.nn.Module, example: torch.Tensor, inner: str = "") -> dict[str, set[str]]:
    """``{location: module paths}`` for the locations litert-torch writes into tensor names; ``inner``: the path
    of the model inside an interface wrapper (``base.ArtifactModule``), dropped from the paths.

    A location is the call stack, each module ``<class>_<last path component>`` (the root bare),
    joined by '/': ``stages.0`` of a Sequential -> ``pkg.Net/torch.nn.modules.container.Sequential_stages/
    pkg.Block_0``; of a ModuleList -> ``pkg.Net/pkg.Block_0``.
    """
    classes = {name: _class_name(type(m)) for name, m in module.named_modules()}
    found: dict[str, set[str]] = {}
    for path, stacks in module_call_stacks(module, example).items():
        for stack in stacks:
            loc = "/".join(classes[p] + (f"_{p.rsplit('.', 1)[-1]}" if p else "") for p in stack)
            if inner:
                path = "" if path == inner else path.removeprefix(f"{inner}.")
            found.setdefault(loc, set()).add(path)
    return found


def _locations(name: str, root: str) -> list[str]:
    """Module locations in a tensor name: fused ops join them with ';;', a ';<n>' suffix numbers them."""
    return [s for s in name.split(";") if s == root or s.startswith(root + "/")]


def _op_location(op, tensors, buffers, root: str) -> str | None:
    """The module location of an op: its output's first location, else its weights' (a final
    layer's output is named after the signature output, its weights still carry the module)."""
    for i in op.outputs:
        locs = _locations((tensors[i].name or b"").decode(), root)
        if locs:
            return locs[0]
    for i in op.inputs:
        buf = buffers[tensors[i].buffer] if i >= 0 else None
        if buf is not None and (buf.data is not None or (buf.offset or 0) > 1):  # constants only
            locs = _locations((tensors[i].name or b"").decode(), root)
            if locs:
                return locs[0]
    return None


XNNPACK_ROUNDS = 4   # int8 quantisations tried, each keeping float the op types XNNPACK left out of the last


def quantize_int8(float_model: bytes, module: torch.nn.Module, example: torch.Tensor, options: ExportOptions,
                  calibration: list[np.ndarray]) -> bytes:
    """Static int8 (weights and activations) of a float .tflite by ai-edge-quantizer, float I/O.

    Ops under ``options.keep_float`` stay float (quantise/dequantise around them); fills
    ``options.quantization``.
    """
    from ai_edge_quantizer import qtyping, quantizer, recipe
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fb_utils

    model = fb_utils.read_model(bytearray(float_model))
    signature = model.signatureDefs[0]
    sig_key, input_name = signature.signatureKey.decode(), signature.inputs[0].name.decode()
    graph = model.subgraphs[0]
    root = _class_name(type(module))
    kept: list[str] = []
    inner = "model" if isinstance(module, ArtifactModule) else ""
    locations = litert_locations(module, example, inner) if options.keep_float else {}
    op_modules = [(op, locations.get(_op_location(op, graph.tensors, model.buffers, root) or "", set()))
                  for op in graph.operators]
    for prefix in options.keep_float:
        scopes = [fb_utils.get_op_scope(op, graph.tensors) for op, paths in op_modules
                  if any(matches(p, prefix) for p in paths)]
        if not scopes:
            raise ExportError(f"--keep-float {prefix!r}: no TFLite op carries that module's name (litert-torch "
                              "fused or folded it away): name its parent module instead")
        kept += [s for s in scopes if s not in kept]

    from mobilevision.runtime.backends.litert import xnnpack_outside

    ops = qtyping.TFLOperationName

    def quantizer_for(float_types: list[str]):
        q = quantizer.Quantizer(bytearray(float_model))
        q.load_quantization_recipe(recipe.static_wi8_ai8())
        # float32 model inputs and outputs; a classifier's softmax stays float (256 int8 levels would tie the
        # small probabilities that top-k ranks); op types XNNPACK has no int8 kernel for stay float
        for op_name in (ops.INPUT, ops.OUTPUT, ops.SOFTMAX, *(getattr(ops, t) for t in float_types)):
            q.update_quantization_recipe(".*", op_name, algorithm_key="no_quantize")
        for scope in kept:  # exact op scopes (output tensor names), later entries win
            q.update_quantization_recipe(f"^{re.escape(scope)}$", ops.ALL_SUPPORTED, algorithm_key="no_quantize")
        return q

    samples = [{input_name: a} for a in calibration]
    result = quantizer_for([]).calibrate({sig_key: samples}, num_threads=os.cpu_count() or 1)
    # An int8 op LiteRT's CPU delegate (XNNPACK) has no kernel for runs on TFLite's reference kernels and splits
    # the graph: EMO-1M fully int8 ran 1.7x slower than fp32, its int8 GELU / batch matmul / LayerNorm pieces in
    # 66 partitions. Those op types stay float (one round finds the next ones they hid) until XNNPACK takes
    # the whole graph: EMO-1M int8 then ran at 0.68x fp32.
    float_types: list[str] = []
    quantized = bytes(quantizer_for(float_types).quantize(result, enable_progress_report=False).quantized_model)
    try:
        float_partitions, float_outside = xnnpack_outside(float_model)   # what stays out of XNNPACK even in fp32
        for _ in range(XNNPACK_ROUNDS):
            partitions, outside = xnnpack_outside(quantized)
            new = sorted(t for t, n in outside.items()
                         if n > float_outside.get(t, 0) and t not in float_types and hasattr(ops, t))
            if not new:
                break
            float_types += new
            quantized = bytes(quantizer_for(float_types).quantize(result, enable_progress_report=False)
                              .quantized_model)
        else:
            partitions, outside = xnnpack_outside(quantized)
        coverage = {"partitions": partitions, "outside": outside, "fp32_partitions": float_partitions,
                    "fp32_outside": float_outside}
    except (AttributeError, RuntimeError, ValueError) as e:   # LiteRT could not say: the fully int8 graph
        float_types = []
        quantized = bytes(quantizer_for([]).quantize(result, enable_progress_report=False).quantized_model)
        coverage = {"error": f"LiteRT did not report XNNPACK's coverage ({type(e).__name__}: "
                             f"{str(e).strip().splitlines()[0][:160] if str(e).strip() else ''}); every op type "
                             "quantised"}
    options.quantization = {
        "tool": f"ai-edge-quantizer {importlib.metadata.version('ai-edge-quantizer')}",
        "scheme": "static int8: int8 per-channel symmetric weights, int8 per-tensor asymmetric activations "
                  "calibrated by min/max; float32 inputs and outputs"
                  + (f"; float where XNNPACK has no int8 kernel: {', '.join(float_types)}" if float_types else ""),
        "calibration_samples": len(samples),
        "kept_float": [s.removesuffix(";") for s in kept],
        "kept_float_modules": list(options.keep_float),
        "float_op_types": float_types,
        "xnnpack": coverage,
    }
    return quantized


class TFLiteTarget:
    name = "tflite"
    dynamic_batch = True
    suffix = ".tflite"
    runtime = "litert"
    precisions = ("fp32", "fp16", "int8")
    tools = ("litert-torch", "ai-edge-litert", "mediapipe")
    layouts = ("NHWC", "NCHW")                 # image inputs; the first is the default (export/interface.py)
    input_normalization = "uniform"            # MediaPipe normalises all channels alike: ImageNet's in the graph
    classifier_scores = "probabilities"

    def convert(self, module: torch.nn.Module, example: torch.Tensor, options: ExportOptions) -> bytes:
        if options.precision == "int8":
            check_keep_float(options.keep_float, module)
        module, example = artifact_module(module, example, options.metadata,
                                          model_pre=getattr(options.model_metadata, "preprocessing", None),
                                          conv_affine=options.dynamic_batch)
        if options.precision == "int8":  # cheap checks before the slow conversion
            calibration = _check_calibration(example, options.calibration)
        try:
            with quiet_converters():
                import litert_torch
                from litert_torch.generative.quantize import quant_recipes

                # fp16: weights stored as fp16, dequantised at load (LiteRT's float16 quantisation)
                quant = quant_recipes.full_fp16_recipe() if options.precision == "fp16" else None
                if options.dynamic_batch:   # a signature with a -1 batch (LiteRT resizes at run time)
                    content = litert_torch.convert(module, batched_args(example), quant_config=quant,
                                                   dynamic_shapes=batch_dims(example, options.max_batch)).model_content()
                else:
                    content = litert_torch.convert(module, as_args(example), quant_config=quant).model_content()
        except Exception as e:  # the converter raises many unrelated types
            why = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            if options.dynamic_batch:
                raise ExportError(f"litert-torch could not convert {type(module).__name__} with a dynamic batch "
                                  f"({why}): its converter lowers only some ops (no LayerNorm, no broadcasts) at an "
                                  "open batch; export TFLite without --dynamic-batch (ONNX and OpenVINO "
                                  "take one)") from e
            raise ExportError(f"litert-torch could not convert {type(module).__name__}: {why}") from e
        if options.precision != "int8":
            return content
        options.float_program = Path(options.workdir) / "_fp32_program.tflite"   # what int8 is timed against
        options.float_program.write_bytes(content)
        try:
            with quiet_converters():
                return quantize_int8(content, module, example, options, calibration)
        except ExportError:
            raise
        except Exception as e:  # the quantizer raises ValueError/RuntimeError/KeyError
            raise ExportError(f"ai-edge-quantizer could not quantise {type(module).__name__} to int8: "
                              f"{str(e).strip().splitlines()[0][:200]}") from e

    def save(self, handle: Any, path: Path, metadata_json: str) -> list[Path]:
        content = with_metadata(handle, METADATA_KEY, metadata_json.encode("utf-8"))
        try:
            from .tflite_metadata import with_standard_metadata

            content = with_standard_metadata(content, ModelMetadata.from_json(metadata_json))
            self._missing = None
        except ImportError as e:
            self._missing = (f"no standard TFLite Metadata written (MediaPipe Tasks will not load this file): "
                             f"'{e.name}' is not installed; pip install 'mobilevision[export]'")
        path.write_bytes(content)
        return [path]

    def warnings(self) -> list[str]:
        """What the last save could not do (the standard metadata needs mediapipe)."""
        return [self._missing] if getattr(self, "_missing", None) else []

    def validate(self, path: Path) -> dict[str, Any]:
        """Op types and tensor element types of the first subgraph."""
        from ai_edge_litert import schema_py_generated as schema

        model = schema.Model.GetRootAs(path.read_bytes(), 0)
        names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
        types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
        codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
        graph = model.Subgraphs(0)
        ops = []
        for i in range(graph.OperatorsLength()):
            code = codes[graph.Operators(i).OpcodeIndex()]
            op = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            ops.append(names.get(op, str(op)))
        tensor_types = [types.get(graph.Tensors(i).Type(), str(graph.Tensors(i).Type()))
                        for i in range(graph.TensorsLength())]
        return {"subgraphs": model.SubgraphsLength(), "ops": op_histogram(ops),
                "tensor_types": op_histogram(tensor_types)}

    def unavailable(self) -> str | None:
        return needs_packages(litert_torch="litert-torch", ai_edge_litert="ai-edge-litert", mediapipe="mediapipe")

    def numeric_parity_unavailable(self) -> str | None:
        return None
