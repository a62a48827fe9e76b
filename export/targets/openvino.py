"""OpenVINO target: reads the ONNX export, writes IR ``.xml``/``.bin``; metadata in ``rt_info``."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mobilevision.errors import ExportError
from mobilevision.export.metadata import METADATA_KEY

from .base import ExportOptions, needs_packages, op_histogram, quiet_converters
from .module_scopes import check_keep_float, keep_float_nodes
from .onnx import calibration_inputs, torch_to_onnx

PLUMBING = ("Parameter", "Result", "Constant")  # not ops NNCF quantises or a scope needs to name
BF16_SCHEME = ("fp32 IR (weights f32 in the .bin), compiled with INFERENCE_PRECISION_HINT=bf16: the CPU plugin "
               "computes in bf16 (8-bit mantissa) on CPUs with bf16 (AVX512-BF16 / AMX), as parity was checked")


def onnx_node_of_ops(model, onnx_nodes: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """OpenVINO op friendly name -> name of the ONNX node it was translated from (plumbing ops left out).

    OpenVINO's ONNX frontend names the op producing an ONNX node's output after the node (``node_conv2d``)
    or, at a graph output, after the output tensor (``logits``), and the helper ops it adds before it
    ``<node>/WithoutBiases`` or ``<Type>_<n>``; those helpers belong to the node their outputs feed.
    ``onnx_nodes`` maps each ONNX node name to its output tensor names.
    """
    by_output = {out: node for node, outs in onnx_nodes.items() for out in outs}
    owner: dict[str, str] = {}
    ops = [op for op in model.get_ordered_ops() if op.get_type_name() not in PLUMBING]
    for op in ops:
        name = op.get_friendly_name()
        parts = name.split("/")
        for i in range(len(parts), 0, -1):  # ONNX node names may contain "/" themselves
            if "/".join(parts[:i]) in onnx_nodes:
                owner[name] = "/".join(parts[:i])
                break
        else:
            tensors = {t for out in op.outputs() for t in out.get_names()}
            hits = {by_output[t] for t in tensors if t in by_output}
            if len(hits) == 1:
                owner[name] = hits.pop()
    changed = True
    while changed:  # helper ops: owned by the single node that all their consumers belong to
        changed = False
        for op in reversed(ops):
            name = op.get_friendly_name()
            if name in owner:
                continue
            users = {owner.get(t.get_node().get_friendly_name()) for out in op.outputs()
                     for t in out.get_target_inputs()}
            if len(users) == 1 and None not in users:
                owner[name] = users.pop()
                changed = True
    return owner


def _import_nncf():
    """Import NNCF with its usage telemetry off.

    NNCF sends events through openvino-telemetry from ``nncf.quantize`` unless ``NNCF_CI`` is set when it is
    first imported (or pytest is loaded); an SDK export must not phone home. Imported earlier by someone else,
    its decorator's sender is swapped for NNCF's own no-op stub.
    """
    if "nncf" in sys.modules:
        import nncf
        from nncf.telemetry import decorator, wrapper

        if not isinstance(decorator.telemetry, wrapper.NNCFTelemetryStub):
            decorator.telemetry = wrapper.NNCFTelemetryStub()
        return nncf
    saved = os.environ.get("NNCF_CI")
    os.environ["NNCF_CI"] = "1"
    try:
        import nncf
    finally:
        if saved is None:
            os.environ.pop("NNCF_CI", None)
        else:
            os.environ["NNCF_CI"] = saved
    return nncf


@contextlib.contextmanager
def _quiet_nncf() -> Iterator[Any]:
    """NNCF, with its INFO log lines and rich progress bars (both on stdout) dropped for the call."""
    nncf = _import_nncf()
    from nncf.common.logging.logger import nncf_logger

    level = nncf_logger.level
    nncf.set_log_level(logging.ERROR)
    try:
        with quiet_converters():
            yield nncf
    finally:
        nncf.set_log_level(level)


# LayerNorm (MVN) or attention (Softmax) in the IR: quantised as a transformer (see quantize_int8)
ATTENTION_OPS = frozenset({"MVN", "Softmax"})


def quantize_int8(model, proto, module: torch.nn.Module, arrays: list[np.ndarray], options: ExportOptions):
    """Static int8 post-training quantisation of the IR with NNCF; fills ``options.quantization``."""
    kept_nodes = keep_float_nodes(proto, options.keep_float, module) if options.keep_float else []
    owners = onnx_node_of_ops(model, {n.name: tuple(n.output) for n in proto.graph.node if n.name})
    wanted = set(kept_nodes)
    # float ops only: the int64 shape arithmetic the frontend adds is never quantised
    kept = [op.get_friendly_name() for op in model.get_ordered_ops() if owners.get(op.get_friendly_name()) in wanted
            and any(o.get_element_type().is_real() for o in op.outputs())]
    if kept_nodes and not kept:
        raise ExportError(f"--keep-float {', '.join(options.keep_float)}: none of its ONNX nodes could be found "
                          "in the OpenVINO model; export without --keep-float, or report the model")
    attention = sorted({op.get_type_name() for op in model.get_ordered_ops()} & ATTENTION_OPS)
    with _quiet_nncf() as nncf:
        try:
            if attention:
                # NNCF's transformer scheme, matrix products float: on EMO-1M at 224 (AVX512-VNNI, 2 threads) int8
                # ran 1.19x fp32 under the CNN scheme, 0.87x so (and kept closer to fp32: cosine 0.985 vs 0.947)
                scope = nncf.IgnoredScope(names=kept, types=["MatMul"], validate=False)
                quantized = nncf.quantize(model, nncf.Dataset(arrays), model_type=nncf.ModelType.TRANSFORMER,
                                          subset_size=len(arrays), ignored_scope=scope)
            else:
                # the preset and device NNCF picks for a CNN anyway, named so the scheme recorded below stays true
                quantized = nncf.quantize(model, nncf.Dataset(arrays), preset=nncf.QuantizationPreset.PERFORMANCE,
                                          target_device=nncf.TargetDevice.ANY, subset_size=len(arrays),
                                          ignored_scope=nncf.IgnoredScope(names=kept) if kept else None)
        except Exception as e:  # NNCF raises its own and OpenVINO's exception types
            raise ExportError(f"NNCF could not quantise {type(module).__name__}: "
                              f"{str(e).strip().splitlines()[0][:200]}") from e
        version = nncf.__version__
    options.quantization = {
        "tool": f"nncf {version}",
        "scheme": (f"NNCF post-training quantisation as a transformer (the graph has {', '.join(attention)}; "
                   "NNCF's defaults for ModelType.TRANSFORMER): int8 convolutions, matrix products (MatMul) left "
                   "float" if attention else
                   "NNCF post-training quantisation, performance preset: per-channel symmetric int8 weights, "
                   "per-tensor symmetric int8/uint8 activations (FakeQuantize), MinMax calibration (activations: "
                   "mean of per-sample min/max), fast bias correction"),
        "calibration_samples": len(arrays),
        "kept_float": kept,
        "kept_float_modules": list(options.keep_float),
    }
    return quantized


class OpenVINOTarget:
    name = "openvino"
    dynamic_batch = True                 # through its ONNX graph
    suffix = ".xml"
    runtime = "openvino"
    precisions = ("fp32", "fp16", "int8", "bf16")
    tools = ("onnx", "openvino")

    def convert(self, module: torch.nn.Module, example: torch.Tensor, options: ExportOptions):
        import onnx
        import openvino as ov

        if options.precision == "int8":  # fail on bad int8 options before the (slow) export
            arrays = calibration_inputs(options, example)
            check_keep_float(options.keep_float, module)
        proto = torch_to_onnx(module, example, options)
        tmp = Path(options.workdir) / "_openvino_src.onnx"
        onnx.save(proto, str(tmp))
        try:
            model = ov.Core().read_model(str(tmp))  # read_model, unlike convert_model, sends no telemetry
        except Exception as e:  # OpenVINO raises its own exception types
            raise ExportError(f"OpenVINO could not read the ONNX export: {str(e).splitlines()[0][:200]}") from e
        finally:
            tmp.unlink(missing_ok=True)
        if options.precision == "int8":
            options.float_program = Path(options.workdir) / "_fp32_program.xml"   # what int8 is timed against
            ov.save_model(model, str(options.float_program), compress_to_fp16=False)
            # weights saved as int8 constants, activations quantised by FakeQuantize ops; nothing compressed to fp16
            return quantize_int8(model, proto, module, arrays, options), False
        if options.precision == "bf16":
            options.quantization = {"tool": f"openvino {ov.__version__.split('-')[0]}", "scheme": BF16_SCHEME}
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

    def unavailable(self) -> str | None:
        return needs_packages(onnx="onnx", openvino="openvino")

    def numeric_parity_unavailable(self) -> str | None:
        return None
