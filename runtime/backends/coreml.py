"""Core ML backend: runs .mlpackage files with coremltools; prediction needs macOS.

``device="gpu"|"npu"`` picks ``compute_units`` CPU_AND_GPU / CPU_AND_NE; ``delegation()`` then reads
Core ML's compute plan (``MLComputePlan``, macOS 14.4+): the device it prefers for each operation.
"""
from __future__ import annotations

import platform
import threading
from pathlib import Path

import numpy as np

from mobilevision.errors import ArtifactError, BackendUnavailable
from mobilevision.export.metadata import METADATA_KEY, TensorSpec

from .base import AcceleratorUnavailable, ArtifactClosed, Delegation, require

DEVICE_COMPUTE_UNITS = {"cpu": "CPU_ONLY", "gpu": "CPU_AND_GPU", "npu": "CPU_AND_NE"}
# coremltools.models.compute_device classes, by the accelerator they stand for
PLAN_DEVICES = {"MLCPUComputeDevice": "CPU", "MLGPUComputeDevice": "GPU", "MLNeuralEngineComputeDevice": "NeuralEngine"}
ACCELERATOR_PLAN_DEVICE = {"gpu": "GPU", "npu": "NeuralEngine"}

MACOS_ONLY = ("Core ML prediction needs macOS (coremltools can convert on Linux but ships no Core ML "
              "framework); run this .mlpackage on a Mac or an iPhone, or use the .onnx/.tflite/.xml artifact here")


def needs_macos(device: str, system: str) -> str:
    """The line for a Core ML GPU / Neural Engine run off macOS."""
    what = "the Apple Neural Engine" if device == "npu" else "the GPU"
    return (f"Core ML on {what} (compute_units={DEVICE_COMPUTE_UNITS[device]}) needs macOS on a Mac with Apple "
            f"silicon (this is {system}); coremltools converts anywhere but runs models only there")


def plan_delegation(device: str, ops: list[tuple[str, str | None]]) -> Delegation:
    """Delegation from a compute plan: (operation name, preferred compute device class name or None) per op.

    ``const`` operations and those the plan gives no device for hold no compute and are skipped.
    """
    target = ACCELERATOR_PLAN_DEVICE[device]
    placed = [(op, PLAN_DEVICES.get(kind, kind)) for op, kind in ops if kind is not None and op != "const"]
    fallback = [op for op, where in placed if where != target]
    executed = sorted({where for _, where in placed})
    units = DEVICE_COMPUTE_UNITS[device]
    if not placed:
        return Delegation(device, f"Core ML {units}", [units], None, note="the compute plan placed no operation")
    return Delegation(device, f"Core ML {units}", executed, accelerated=not fallback, fallback_ops=fallback,
                      offloaded=len(fallback) < len(placed),
                      note=None if len(fallback) < len(placed) else f"Core ML places no operation on the {target}")


def _shape(feature) -> list[int]:
    arr = feature.type.multiArrayType
    return [int(d) for d in arr.shape]


class CoreMLBackend:
    name = "coreml"

    def __init__(self, path: Path, threads: int | None = None, compute_units: str = "CPU_ONLY", device: str = "cpu",
                 data: dict[str, bytes] | None = None):   # a .mlpackage is a folder: Core ML opens it by path
        self.path = Path(path)
        self._lock = threading.Lock()
        self.device = device
        if device != "cpu":
            compute_units = DEVICE_COMPUTE_UNITS[device]
        self.compute_units = compute_units
        if platform.system() != "Darwin":  # checked first: importing coremltools imports torch
            if device != "cpu":
                raise AcceleratorUnavailable(needs_macos(device, platform.system()))
            raise BackendUnavailable(MACOS_ONLY)
        ct = require("coremltools", "coremltools", "Core ML backend")
        self._ct = ct
        try:
            self.model = ct.models.MLModel(str(self.path), compute_units=getattr(ct.ComputeUnit, compute_units))
        except Exception as e:  # coremltools raises bare Exceptions for unreadable packages
            raise ArtifactError(f"Core ML cannot load {self.path}: {str(e).splitlines()[0][:200]}") from e
        spec = self.model.get_spec()
        self.inputs = [TensorSpec(f.name, _shape(f), "float32") for f in spec.description.input]
        self.outputs = [TensorSpec(f.name, _shape(f), "float32") for f in spec.description.output]

    def delegation(self) -> Delegation:
        """The compute plan's preferred device per operation (needs macOS 14.4+ and an ML Program)."""
        units = self.compute_units
        try:
            from coremltools.models.compute_plan import MLComputePlan

            plan = MLComputePlan.load_from_path(self.model.get_compiled_model_path(),
                                                compute_units=getattr(self._ct.ComputeUnit, units))
            program = plan.model_structure.program
        except Exception as e:  # older macOS / coremltools: no compute plan
            return Delegation(self.device, f"Core ML {units}", [units], None,
                              note=f"Core ML gave no compute plan (macOS 14.4+): {str(e).splitlines()[0][:120]}")
        if program is None:
            return Delegation(self.device, f"Core ML {units}", [units], None, note="not an ML Program: no plan per op")
        ops = []
        for op in program.functions["main"].block.operations:
            usage = plan.get_compute_device_usage_for_mlprogram_operation(op)
            ops.append((op.operator_name, type(usage.preferred_compute_device).__name__ if usage else None))
        return plan_delegation(self.device, ops)

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        # coremltools does not document MLModel.predict as thread-safe: calls from several threads take turns
        with self._lock:
            if self.model is None:
                raise ArtifactClosed(f"Core ML model {self.path} is closed: load it again")
            result = self.model.predict({s.name: a for s, a in zip(self.inputs, arrays)})
        return [np.asarray(result[s.name]) for s in self.outputs]

    def embedded_metadata(self) -> str | None:
        return self.model.user_defined_metadata.get(METADATA_KEY)

    def close(self) -> None:
        with self._lock:
            self.model = None
