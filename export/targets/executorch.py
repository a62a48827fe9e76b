"""ExecuTorch target: ``torch.export`` -> Edge dialect -> delegate partitions -> ``.pte``, run by ExecuTorch's
own runtime (``runtime/backends/executorch.py``).

The default target lowers to XNNPACK, ExecuTorch's CPU delegate (Android, iOS, Linux, macOS, Windows); ops it
does not take run on ExecuTorch's portable kernels, and ``validate`` reads from the written file how many
partitions XNNPACK took, the node types inside them, and which ops were left out. The metadata JSON is a
constant method of the program (``mobilevision_metadata``, a string), which ``save`` rewrites in the emitted
program without converting again.

fp16: the module in half precision, cast from and to float32 at the graph's ends so apps feed the same arrays,
computed by XNNPACK's fp16 kernels (executorch 1.5 keeps convolution weights in fp32 in the file, and lowering
computes softmax and layer norm in fp32: the file is hardly smaller; fp16 pays off on ARM CPUs with fp16
arithmetic, on x86 it is several times slower than fp32). int8: PT2E static quantisation with ExecuTorch's XNNPACK quantizer (torchao's
``prepare_pt2e`` / ``convert_pt2e``), calibrated on the task's images: int8 per-channel symmetric weights,
per-tensor affine int8 activations (histogram observer) for the ops XNNPACK computes in int8 (conv, linear,
add, mul, cat, pooling); the rest stays float32.

Further targets in this file lower to other delegates (Core ML, Vulkan, Qualcomm QNN). They are not part of
``--target all``: their runtimes need a Mac, a GPU runtime or a vendor SDK this Python runtime lacks.
"""
from __future__ import annotations

import copy
import importlib.metadata
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mobilevision.errors import ExportError
from mobilevision.runtime.backends.executorch import METADATA_METHOD, SCALAR_TYPES

from .base import (ArtifactModule, ExportOptions, artifact_module, as_args, batch_dims, batched_args, needs_packages,
                   quiet_converters)
from .module_scopes import ROOT, check_keep_float, matches


def _why(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


class _HalfPrecision(torch.nn.Module):
    """``model`` computed in float16 between float32 inputs and outputs (the casts are the graph's ends)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = copy.deepcopy(model).half()   # a copy: the caller's module stays float32 for the reference

    def forward(self, *xs: torch.Tensor):
        y = self.model(*(x.half() if x.is_floating_point() else x for x in xs))
        if isinstance(y, (tuple, list)):
            return tuple(t.float() if t.is_floating_point() else t for t in y)
        return y.float() if y.is_floating_point() else y


def _calibration(options: ExportOptions, example: torch.Tensor) -> list[torch.Tensor]:
    """The calibration arrays as float32 tensors shaped like the artifact's input, or ExportError."""
    if not options.calibration:
        raise ExportError("ExecuTorch int8 needs calibration inputs to set activation ranges: pass a few "
                          "preprocessed sample images (ExportOptions.calibration), or use --precision fp16")
    want = tuple(example.shape)
    tensors = []
    for i, a in enumerate(options.calibration):
        a = np.ascontiguousarray(np.asarray(a.numpy() if isinstance(a, torch.Tensor) else a, dtype=np.float32))
        if a.shape != want:
            raise ExportError(f"calibration input {i} has shape {list(a.shape)} but the artifact takes {list(want)}: "
                              "preprocess calibration images like the model input")
        tensors.append(torch.from_numpy(a))
    return tensors


def _module_path(node: torch.fx.Node, inner: str) -> str | None:
    """The path of the deepest module ``node`` was traced in, relative to the model (``inner``: the model's path
    inside an interface wrapper); None for the wrapper's own operations and nodes without a module stack."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return None
    path = list(stack.values())[-1][0]
    path = path[len("L['self']."):] if path.startswith("L['self'].") else path
    path = "" if path in ("L['self']", "L__self__") else path
    if not inner:
        return path
    if path == inner:
        return ""
    return path[len(inner) + 1:] if path.startswith(inner + ".") else None


# the largest batch of a --dynamic-batch program: ExecuTorch plans every buffer for this bound at export (the
# runtime reads the bound from the program's planned sizes: executorch 1.5 planned a bound of 16 as 15)
BATCH_BOUND = 8


def batch_bound(options: ExportOptions) -> int:
    return max(2, min(int(options.max_batch), BATCH_BOUND))


QUANTIZABLE = ("conv", "linear", "add", "mul", "cat", "avg_pool", "adaptive_avg_pool", "mean")


def quantize_int8(graph: torch.fx.GraphModule, module: torch.nn.Module, calibration: list[torch.Tensor],
                  options: ExportOptions) -> torch.fx.GraphModule:
    """PT2E static int8 of an exported graph with the XNNPACK quantizer, layers under ``options.keep_float``
    left float (the quantizer's filter function); fills ``options.quantization``."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                           get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    inner = "model" if isinstance(module, ArtifactModule) else ""
    prefixes = list(options.keep_float)

    def kept(node: torch.fx.Node) -> bool:
        path = _module_path(node, inner)
        return path is not None and any(matches(path, p) for p in prefixes)

    kept_paths: dict[str, None] = {}
    for prefix in prefixes:
        hit = [n for n in graph.graph.nodes if n.op == "call_function" and (p := _module_path(n, inner)) is not None
               and matches(p, prefix)]
        if not hit:
            raise ExportError(f"--keep-float {prefix!r}: no operation of the exported graph comes from that module "
                              f"(folded away or never called): name its parent module instead"
                              + (" or '.'" if prefix != ROOT else ""))
        for n in hit:
            if any(k in str(n.target) for k in QUANTIZABLE):
                kept_paths[_module_path(n, inner) or ROOT] = None
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    if prefixes:
        quantizer.set_filter_function(lambda n: not kept(n))
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for x in calibration:
            prepared(x)
    converted = convert_pt2e(prepared)
    options.quantization = {
        "tool": f"torchao {importlib.metadata.version('torchao')} pt2e with ExecuTorch "
                f"{importlib.metadata.version('executorch')} XNNPACKQuantizer",
        "scheme": "static int8: int8 per-channel symmetric weights, int8 per-tensor affine activations "
                  "(histogram observer) for the ops XNNPACK runs in int8 (conv, linear, add, mul, cat, pooling); "
                  "other ops (softmax, layer norm, matmul, ...) float32; float32 inputs and outputs",
        "calibration_samples": len(calibration),
        "kept_float": list(kept_paths),
        "kept_float_modules": prefixes,
    }
    return converted


def with_metadata(program: bytes, metadata_json: str) -> bytes:
    """The .pte ``program`` with its metadata constant method returning ``metadata_json``: the emitted program
    deserialised, that one string value replaced, serialised again with the defaults ``to_executorch`` used
    (a program with the same text comes back byte for byte; the other methods' bytes are untouched)."""
    from dataclasses import replace

    from executorch.exir._serialize._program import deserialize_pte_binary, serialize_pte_binary
    from executorch.exir.capture._config import ExecutorchBackendConfig
    from executorch.exir.schema import EValue, String

    pte = deserialize_pte_binary(program)
    plans = pte.program.execution_plan
    if sum(p.name == METADATA_METHOD for p in plans) != 1:
        raise ExportError(f"the ExecuTorch program has no '{METADATA_METHOD}' method to hold the metadata")
    pte.program = replace(pte.program, execution_plan=[
        replace(p, values=[EValue(String(metadata_json))]) if p.name == METADATA_METHOD else p for p in plans])
    config = ExecutorchBackendConfig()
    return bytes(serialize_pte_binary(pte, extract_delegate_segments=config.extract_delegate_segments,
                                      segment_alignment=config.segment_alignment,
                                      constant_tensor_alignment=config.constant_tensor_alignment,
                                      delegate_alignment=config.delegate_alignment))


def _tensor(value, name: str) -> dict[str, Any]:
    """A program tensor as the structure reports it."""
    t = value.val
    out = {"name": name, "shape": [int(s) for s in t.sizes],
           "dtype": SCALAR_TYPES.get(int(t.scalar_type), str(t.scalar_type))}
    if int(t.shape_dynamism) and t.sizes:   # a bounded dynamic batch: the planned sizes are the bound
        out["shape"][0] = -1
        out["max_batch"] = int(t.sizes[0])
    return out


class ExecuTorchTarget:
    """ExecuTorch with the XNNPACK delegate (CPU), run for parity by ExecuTorch's Python runtime."""

    name = "executorch"
    suffix = ".pte"
    runtime = "executorch"
    precisions = ("fp32", "fp16", "int8")
    tools = ("executorch", "torchao")
    layouts = ("NCHW", "NHWC")     # image inputs; NHWC transposes inside the graph (XNNPACK takes the transpose)
    # ExecuTorch plans its memory for the bound of a dynamic dimension (a bound of 1024 made the toy test model's
    # program need more than 8 GB at load), so a dynamic batch here is 1..BATCH_BOUND
    dynamic_batch = True
    delegate = "XNNPACK"
    half_module = True             # fp16: the module itself in half precision

    def partitioners(self, options: ExportOptions) -> list[Any]:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        return [XnnpackPartitioner()]

    def convert(self, module: torch.nn.Module, example: torch.Tensor, options: ExportOptions) -> bytes:
        if options.precision == "int8":
            check_keep_float(options.keep_float, module)
        module, example = artifact_module(module, example, options.metadata,
                                          model_pre=getattr(options.model_metadata, "preprocessing", None))
        calibration = _calibration(options, example) if options.precision == "int8" else []
        args = as_args(example)
        traced = _HalfPrecision(module) if options.precision == "fp16" and self.half_module else module
        try:
            with quiet_converters():
                from executorch.exir import to_edge_transform_and_lower

                if options.dynamic_batch:
                    program = torch.export.export(traced.eval(), batched_args(example),
                                                  dynamic_shapes=batch_dims(example, batch_bound(options)))
                else:
                    program = torch.export.export(traced.eval(), args)
                if options.precision == "int8":
                    graph = quantize_int8(program.module(), module, calibration, options)
                    program = torch.export.export(graph, args)
                edge = to_edge_transform_and_lower(program, partitioner=self.partitioners(options),
                                                   constant_methods={METADATA_METHOD: ""})
                content = edge.to_executorch().buffer
        except ExportError:
            raise
        except ImportError:
            raise
        except Exception as e:  # torch.export and the partitioners raise many unrelated types
            raise ExportError(f"ExecuTorch ({self.delegate}) could not convert {type(module).__name__}: "
                              f"{_why(e)}") from e
        if options.precision == "fp16":
            options.quantization = {"tool": f"ExecuTorch {importlib.metadata.version('executorch')} ({self.delegate})",
                                    "scheme": self.fp16_scheme()}
        return content

    def fp16_scheme(self) -> str:
        return ("fp16 activations (the module in half precision, XNNPACK's fp16 kernels; convolution weights stored "
                "fp32, softmax and layer norm computed in fp32), float32 inputs and outputs cast at the graph's ends")

    def save(self, handle: Any, path: Path, metadata_json: str) -> list[Path]:
        try:
            with quiet_converters():
                content = with_metadata(handle, metadata_json)
        except ExportError:
            raise
        except Exception as e:  # deserialisation of our own program: a broken executorch install
            raise ExportError(f"ExecuTorch could not write the metadata into the program: {_why(e)}") from e
        path.write_bytes(content)
        return [path]

    def validate(self, path: Path) -> dict[str, Any]:
        """Inputs, outputs, the calls of ``forward`` (delegates and portable kernels) and the delegation: the
        partitions per delegate, XNNPACK's node types inside them, the ops left to the portable kernels."""
        import json

        from mobilevision.runtime.backends.executorch import program_report

        data = path.read_bytes()
        report = program_report(data)
        plan, program = report["plan"], report["program"]
        md: dict[str, Any] = {}
        meta_plan = next((p for p in program.execution_plan if p.name == METADATA_METHOD), None)
        if meta_plan is not None and meta_plan.values:
            try:
                md = json.loads(meta_plan.values[0].val.string_val)
            except (ValueError, AttributeError):
                md = {}
        names = {kind: [t.get("name") for t in md.get(kind, []) if isinstance(t, dict)] if isinstance(md, dict) else []
                 for kind in ("inputs", "outputs")}

        def tensors(indices: list[int], kind: str) -> list[dict[str, Any]]:
            known = names[kind]
            return [_tensor(plan.values[v], known[i] if i < len(known) and isinstance(known[i], str)
                            else f"{kind[:-1]}_{i}") for i, v in enumerate(indices)]

        delegation = report["delegation"]
        if not delegation["partitions"]:
            raise ExportError(f"the {self.delegate} delegate took none of the graph: every op runs on ExecuTorch's "
                              "portable kernels")
        return {"methods": sorted(p.name for p in program.execution_plan),
                "inputs": tensors(plan.inputs, "inputs"),
                "outputs": tensors(plan.outputs, "outputs"),
                "ops": report["ops"], "delegation": delegation}

    def unavailable(self) -> str | None:
        return needs_packages(executorch="executorch", torchao="torchao")

    def numeric_parity_unavailable(self) -> str | None:
        return None


# ---------------------------------------------------------------- other delegates (asked for by name only)

class ExecuTorchCoreMLTarget(ExecuTorchTarget):
    """ExecuTorch with the Core ML delegate (Apple CPU, GPU and Neural Engine); parity needs a Mac's runtime."""

    name = "executorch-coreml"
    precisions = ("fp32", "fp16")
    tools = ("executorch", "coremltools")
    in_all = False
    delegate = "Core ML"
    half_module = False   # fp16: Core ML's compute_precision, the module stays float32

    def partitioners(self, options: ExportOptions) -> list[Any]:
        import coremltools as ct
        from executorch.backends.apple.coreml.compiler import CoreMLBackend
        from executorch.backends.apple.coreml.partition import CoreMLPartitioner

        precision = ct.precision.FLOAT16 if options.precision == "fp16" else ct.precision.FLOAT32
        specs = CoreMLBackend.generate_compile_specs(compute_precision=precision,
                                                     minimum_deployment_target=ct.target.iOS16)
        return [CoreMLPartitioner(compile_specs=specs)]

    def fp16_scheme(self) -> str:
        return "Core ML compute_precision FLOAT16 (fp16 weights and compute), float32 inputs and outputs"

    def unavailable(self) -> str | None:
        return needs_packages(executorch="executorch", coremltools="coremltools")

    def numeric_parity_unavailable(self) -> str | None:
        return ("an ExecuTorch program with the Core ML delegate runs only in an ExecuTorch runtime with CoreMLBackend "
                f"(macOS / iOS); the executorch wheel's Python runtime on {platform.system()} lacks it, so the program "
                "was validated structurally instead")


class ExecuTorchVulkanTarget(ExecuTorchTarget):
    """ExecuTorch with the Vulkan delegate (Android and desktop GPUs); parity needs a Vulkan-enabled runtime."""

    name = "executorch-vulkan"
    precisions = ("fp32", "fp16")
    in_all = False
    delegate = "Vulkan"
    half_module = False   # fp16: the delegate's force_fp16, the module stays float32

    def partitioners(self, options: ExportOptions) -> list[Any]:
        from executorch.backends.vulkan.partitioner.vulkan_partitioner import VulkanPartitioner

        return [VulkanPartitioner({"force_fp16": options.precision == "fp16"})]

    def fp16_scheme(self) -> str:
        return "Vulkan force_fp16 (fp16 textures and compute), float32 inputs and outputs"

    def unavailable(self) -> str | None:
        return needs_packages(executorch="executorch")

    def numeric_parity_unavailable(self) -> str | None:
        return ("an ExecuTorch program with the Vulkan delegate runs only in an ExecuTorch runtime built with "
                "EXECUTORCH_BUILD_VULKAN on a device with a Vulkan GPU; the executorch wheel's Python runtime lacks "
                "VulkanBackend, so the program was validated structurally instead")


class ExecuTorchQNNTarget(ExecuTorchTarget):
    """ExecuTorch with Qualcomm's QNN delegate (Hexagon NPU, which computes floats in fp16): lowering needs the
    Qualcomm AI Engine Direct SDK."""

    name = "executorch-qnn"
    precisions = ("fp32", "fp16")
    in_all = False
    delegate = "QNN"
    half_module = False   # fp16: the HTP's fp16 compute, the module stays float32

    def partitioners(self, options: ExportOptions) -> list[Any]:
        from executorch.backends.qualcomm.partition.qnn_partitioner import QnnPartitioner
        from executorch.backends.qualcomm.serialization.qc_schema import QcomChipset
        from executorch.backends.qualcomm.utils.utils import (generate_htp_compiler_spec,
                                                              generate_qnn_executorch_compiler_spec)

        backend = generate_htp_compiler_spec(use_fp16=True)
        specs = generate_qnn_executorch_compiler_spec(soc_model=QcomChipset.SM8650, backend_options=backend)
        return [QnnPartitioner(specs)]

    def convert(self, module: torch.nn.Module, example: torch.Tensor, options: ExportOptions) -> bytes:
        if options.precision != "fp16":
            raise ExportError("the Hexagon NPU computes floats in fp16: export executorch-qnn with --precision fp16")
        return super().convert(module, example, options)

    def fp16_scheme(self) -> str:
        return "QNN HTP fp16 (use_fp16, Snapdragon 8 Gen 3 / SM8650), float32 inputs and outputs"

    def unavailable(self) -> str | None:
        import os

        missing = needs_packages(executorch="executorch")
        if missing or os.environ.get("QNN_SDK_ROOT"):
            return missing
        return ("needs Qualcomm's AI Engine Direct (QNN) SDK to lower for the Hexagon NPU (executorch's QnnPartitioner "
                "says 'Failed to set up QNN SDK' without it): install the SDK from Qualcomm and set QNN_SDK_ROOT")

    def numeric_parity_unavailable(self) -> str | None:
        return ("an ExecuTorch program with the QNN delegate runs only on a Snapdragon device (Hexagon NPU) with the "
                "QNN runtime libraries; it was validated structurally instead")
