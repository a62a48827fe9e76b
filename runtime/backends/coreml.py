"""Core ML backend: runs .mlpackage files with coremltools; prediction needs macOS.

``device="gpu"|"npu"`` picks ``compute_units`` CPU_AND_GPU / CPU_AND_NE; ``delegation()`` then reads
Core ML's compute plan (``MLComputePlan``, macOS 14.4+): the device it prefers for each operation.

The backend presents a Core ML model in the runtime's terms (``export/interface.py``): an image input is an
uint8 ``[1, 3, H, W]`` tensor (``[1, H, W, 3]`` is accepted too) handed to Core ML as an RGB ``PIL.Image``; a
classifier's outputs (a class label string and a ``{label: probability}`` dictionary) become the probabilities
``[1, N]`` float32 in class order, under the dictionary's name. The conversions are the pure functions below,
testable without macOS.
"""
from __future__ import annotations

import platform
import threading
from pathlib import Path

import numpy as np

from mobilevision.errors import ArtifactError, BackendUnavailable, InputMismatch
from mobilevision.export.metadata import METADATA_KEY, TensorSpec

from .base import AcceleratorUnavailable, ArtifactClosed, Availability, Delegation, missing, require

DEVICE_COMPUTE_UNITS = {"cpu": "CPU_ONLY", "gpu": "CPU_AND_GPU", "npu": "CPU_AND_NE"}
# coremltools.models.compute_device classes, by the accelerator they stand for
PLAN_DEVICES = {"MLCPUComputeDevice": "CPU", "MLGPUComputeDevice": "GPU", "MLNeuralEngineComputeDevice": "NeuralEngine"}
ACCELERATOR_PLAN_DEVICE = {"gpu": "GPU", "npu": "NeuralEngine"}

MACOS_ONLY = ("Core ML prediction needs macOS (coremltools can convert on Linux but ships no Core ML "
              "framework); run this .mlpackage on a Mac or an iPhone, or use the .onnx/.tflite/.xml artifact here")


def needs_macos(device: str, system: str) -> str:
    """The line for a Core ML run (CPU, GPU or Neural Engine) off macOS."""
    what = {"npu": "the Apple Neural Engine", "gpu": "the GPU"}.get(device, "the CPU")
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


def class_labels(spec) -> list[str | int] | None:
    """A Core ML classifier's class labels in class order (the order of its probabilities), None for other models.

    An ML Program classifier (coremltools' ``classifier_config``) keeps them in its ``classify`` op, as the
    ``classes`` list; a neural network classifier in ``stringClassLabels`` / ``int64ClassLabels``."""
    which = spec.WhichOneof("Type")
    if which == "neuralNetworkClassifier":
        nn = spec.neuralNetworkClassifier
        kind = nn.WhichOneof("ClassLabels")
        return list(getattr(nn, kind).vector) if kind else None
    if which != "mlProgram" or "main" not in spec.mlProgram.functions:
        return None
    for block in spec.mlProgram.functions["main"].block_specializations.values():
        consts = {o.name: op for op in block.operations if op.type == "const" for o in op.outputs}
        for op in block.operations:
            if op.type != "classify" or "classes" not in op.inputs:
                continue
            (arg,) = op.inputs["classes"].arguments
            value = arg.value if arg.WhichOneof("binding") == "value" else consts[arg.name].attributes["val"]
            return [_scalar(v.immediateValue.tensor) for v in value.immediateValue.list.values]
    return None


def _scalar(tensor) -> str | int:
    """The one string or integer of a MIL tensor value (a class label)."""
    for kind in ("strings", "longInts", "ints"):
        values = getattr(tensor, kind).values
        if len(values) == 1:
            return values[0] if kind == "strings" else int(values[0])
    raise ArtifactError("a Core ML classifier's class label is neither a string nor an integer")


def feature_spec(feature, labels: list | None = None) -> TensorSpec:
    """The runtime's view of one Core ML input or output: an image as uint8 NCHW pixels, a multi-array as float32,
    a classifier's probability dictionary as ``[1, len(labels)]`` float32."""
    kind = feature.type.WhichOneof("Type")
    if kind == "imageType":
        img = feature.type.imageType
        space = type(img).ColorSpace.Name(img.colorSpace)
        if space != "RGB":
            raise ArtifactError(f"Core ML image input {feature.name!r} is {space}: this runtime feeds RGB images")
        return TensorSpec(feature.name, [1, 3, int(img.height), int(img.width)], "uint8", "NCHW")
    if kind == "dictionaryType" and labels is not None:
        return TensorSpec(feature.name, [1, len(labels)], "float32")
    if kind == "multiArrayType":
        return TensorSpec(feature.name, [int(d) for d in feature.type.multiArrayType.shape], "float32")
    raise ArtifactError(f"Core ML feature {feature.name!r} is a {kind}, which this runtime does not read")


def interface(spec) -> tuple[list[TensorSpec], list[TensorSpec], list | None]:
    """(inputs, outputs, class labels) as the runtime presents a Core ML model: a classifier's predicted label
    output is left out (its probabilities carry it)."""
    labels = class_labels(spec)
    label_output = spec.description.predictedFeatureName if labels is not None else None
    inputs = [feature_spec(f) for f in spec.description.input]
    outputs = [feature_spec(f, labels) for f in spec.description.output if f.name != label_output]
    return inputs, outputs, labels


def pixels_to_image(array: np.ndarray, spec: TensorSpec):
    """An uint8 ``[1, 3, H, W]`` (or ``[1, H, W, 3]``) array as the RGB ``PIL.Image`` a Core ML image input takes."""
    from PIL import Image

    x = np.asarray(array)
    _, _, h, w = spec.shape
    if x.dtype != np.uint8:
        raise InputMismatch(f"Core ML input {spec.name!r} is an image: pass uint8 pixels, not {x.dtype}")
    if x.shape == (1, 3, h, w):
        x = x[0].transpose(1, 2, 0)
    elif x.shape == (1, h, w, 3):
        x = x[0]
    else:
        raise InputMismatch(f"Core ML input {spec.name!r} is a {w}x{h} RGB image: pass uint8 [1, 3, {h}, {w}] or "
                            f"[1, {h}, {w}, 3], got {list(x.shape)}")
    return Image.fromarray(np.ascontiguousarray(x), "RGB")


def ordered_probabilities(scores: dict, labels: list) -> np.ndarray:
    """A Core ML classifier's ``{label: probability}`` as float32 ``[1, N]`` in class order."""
    missing = [label for label in labels if label not in scores]
    if missing or len(scores) != len(labels):
        raise ArtifactError(f"Core ML returned probabilities for {len(scores)} classes, not the model's "
                            f"{len(labels)} labels" + (f" (no {missing[0]!r})" if missing else ""))
    return np.asarray([[scores[label] for label in labels]], np.float32)


def to_features(arrays: list[np.ndarray], inputs: list[TensorSpec], images: set[str]) -> dict:
    """The runtime's input arrays as Core ML's feature dictionary (``images``: the names of image inputs)."""
    return {s.name: pixels_to_image(a, s) if s.name in images else a for s, a in zip(inputs, arrays)}


def from_prediction(result: dict, outputs: list[TensorSpec], labels: list | None) -> list[np.ndarray]:
    """Core ML's prediction as the runtime's output arrays, in ``outputs`` order (a dictionary: probabilities
    in class order)."""
    return [ordered_probabilities(result[s.name], labels) if isinstance(result[s.name], dict)
            else np.asarray(result[s.name]) for s in outputs]


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
        self.inputs, self.outputs, self._labels = interface(spec)
        self._images = {s.name for s in self.inputs if s.dtype == "uint8"}

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
            result = self.model.predict(to_features(arrays, self.inputs, self._images))
        return from_prediction(result, self.outputs, self._labels)

    def embedded_metadata(self) -> str | None:
        return self.model.user_defined_metadata.get(METADATA_KEY)

    def close(self) -> None:
        with self._lock:
            self.model = None


def probe(device: str, system: str | None = None) -> Availability:
    """Core ML on the CPU, its GPU (CPU_AND_GPU) or Neural Engine (CPU_AND_NE): Apple systems only."""
    import importlib.util

    system = system or platform.system()
    if system != "Darwin":
        return Availability("coreml", device, False, needs_macos(device, system))
    if importlib.util.find_spec("coremltools") is None:
        return missing("coreml", device, "coremltools")
    return Availability("coreml", device, True, f"compute_units={DEVICE_COMPUTE_UNITS[device]}")
