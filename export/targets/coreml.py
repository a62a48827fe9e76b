"""Core ML target: coremltools converts a TorchScript trace to an ML Program (.mlpackage).

Conversion runs anywhere; prediction needs macOS. On other systems the exporter validates
the written program (inputs, outputs, shapes, op types) and says that numeric parity
needs a Mac; on macOS parity runs numerically like every other target.

An image input (a model whose metadata has ``preprocessing``) is a Core ML ``ImageType`` (RGB, the model's
size), so Xcode and Vision (``VNCoreMLRequest``) treat the model as an image model; the artifact takes the
resized uint8 pixels and normalises them itself (``input_normalization = "model"``). ``ImageType`` computes
``scale * pixel + bias[c]`` with one scale for all channels: a card whose std is equal across channels is
normalised there (scale = card scale / std, bias = -mean / std); otherwise (ImageNet's std) the image type
passes the pixels and the normalisation is in the graph. A classifier ends in a softmax and carries its labels
(``classifier_config``): coremltools then gives a class label string output (``classLabel``) and a
``{label: probability}`` dictionary, renamed to the metadata's ``probabilities``; the labels live in the program's
``classify`` op. The runtime backend turns the dictionary back into ``[1, N]`` probabilities in class order.

int8 here is 8-bit weights only: coremltools.optimize stores weights as int8 (linear symmetric,
per output channel) dequantised by constexpr ops at load, and the program computes in fp16.
Core ML activation quantisation calibrates by running predictions, which needs macOS.
"""
from __future__ import annotations

import copy
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mobilevision.errors import ExportError
from mobilevision.export.metadata import METADATA_KEY, ModelMetadata
from mobilevision.runtime.backends.coreml import class_labels

from .base import (ArtifactModule, ExportOptions, artifact_module, as_args, needs_packages, op_histogram,
                   quiet_converters)
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


EQUAL_STD_RTOL = 1e-6       # channel stds this close are one ImageType scale
LABEL_OUTPUT = "classLabel"   # a classifier's predicted label (coremltools' and Create ML's name)


@dataclass
class ImageInput:
    """How a Core ML ``ImageType`` input presents the card's preprocessing: ``scale * pixel + bias[c]``, and
    whether the graph normalises after it (channel stds differ: one scale cannot)."""

    scale: float
    bias: list[float]
    normalization_in_graph: bool

    @classmethod
    def for_metadata(cls, md: ModelMetadata | None) -> "ImageInput | None":
        """The image input of an artifact whose metadata says it takes pixels (None: a tensor input)."""
        pre = md.preprocessing if md is not None else None
        if pre is None or pre.normalization != "model":
            return None
        std = np.asarray(pre.std, np.float64)
        if np.allclose(std, std[0], rtol=EQUAL_STD_RTOL, atol=0.0):
            return cls(float(pre.scale / std[0]), [float(-m / std[0]) for m in pre.mean], False)
        return cls(1.0, [0.0, 0.0, 0.0], True)


def _labels(md: ModelMetadata | None) -> list[str] | None:
    """The Core ML class labels of a classifier whose graph ends in a softmax (None: not a classifier): the
    metadata's labels, class indices where it has none; a repeated name gets its index (Core ML returns the
    probabilities keyed by label)."""
    if md is None or md.scores != "probabilities" or not md.outputs:
        return None
    n = int(np.prod(md.outputs[0].shape[1:]))
    names = [str(x) for x in (md.labels or [])][:n]
    names += [str(i) for i in range(len(names), n)]
    original, seen, unique = set(names), set(), []
    for i, name in enumerate(names):   # later repeats renamed, never onto a name given or still to come
        new, k = name, 0
        while new in seen or (new != name and new in original):
            k += 1
            new = f"{name} ({i})" if k == 1 else f"{name} ({i}.{k})"
        seen.add(new)
        unique.append(new)
    return unique


def _descriptions(md: ModelMetadata, image: ImageInput | None, labels: list[str] | None) -> dict[str, object]:
    """The strings Xcode shows: the model's short description and one line per input and output."""
    version = md.tools.get("mobilevision", "")
    kind = "image classifier" if labels is not None else f"{md.task} model"
    inputs = {spec.name: f"{spec.dtype} tensor {list(spec.shape)}" for spec in md.inputs}
    pre = md.preprocessing
    if image is not None and pre is not None:
        h, w = pre.crop
        fit = (f"the shorter side resized to {pre.resize} pixels ({pre.interpolation}), centre-cropped"
               if pre.resize_mode == "shorter_side" else f"resized to it ({pre.interpolation}, stretched)")
        inputs[md.inputs[0].name] = f"RGB image, {w}x{h} pixels: {fit}; the model normalises the pixels itself"
    outputs = {spec.name: f"{spec.dtype} tensor {list(spec.shape)}" for spec in md.outputs}
    if labels is not None:
        outputs[md.outputs[0].name] = f"probability of each of the {len(labels)} classes, by class label"
        outputs[LABEL_OUTPUT] = "the most probable class label"
    return {"model": f"{md.model} {kind}, exported by mobilevision {version}".rstrip(),
            "inputs": inputs, "outputs": outputs}


def _embedded(spec: Any) -> ModelMetadata | None:
    """The mobilevision metadata embedded in a Core ML spec (None: absent or unreadable)."""
    text = spec.description.metadata.userDefined.get(METADATA_KEY)
    try:
        return ModelMetadata.from_json(text) if text else None
    except Exception:   # the artifact's own metadata is checked elsewhere; this only describes the image input
        return None


def _const_floats(block: Any, op_name: str) -> list[float] | None:
    """The float values of the ``y`` operand of the op named ``op_name`` in a saved program block."""
    consts = {o.name: op for op in block.operations if op.type == "const" for o in op.outputs}
    for op in block.operations:
        if any(o.name == op_name for o in op.outputs) and "y" in op.inputs:
            (arg,) = op.inputs["y"].arguments
            value = arg.value if arg.WhichOneof("binding") == "value" else consts[arg.name].attributes["val"]
            tensor = value.immediateValue.tensor
            return [float(v) for v in (tensor.floats.values or tensor.doubles.values)]
    return None


def _image_arithmetic(block: Any, name: str, md: ModelMetadata | None) -> dict[str, Any]:
    """The scale and bias an image input's ``ImageType`` applies (coremltools inserts them as the ops
    ``<input>__scaled__`` / ``<input>__biased__``), and whether the graph normalises after them: what the
    metadata's mean / std needs beyond them (None without metadata)."""
    scale = _const_floats(block, f"{name}__scaled__") or [1.0]
    bias = _const_floats(block, f"{name}__biased__") or [0.0, 0.0, 0.0]
    in_graph = None
    pre = md.preprocessing if md is not None else None
    if pre is not None:
        std = np.asarray(pre.std, np.float64)
        in_graph = not (np.allclose(scale[0] * std, pre.scale, rtol=1e-5, atol=0.0)
                        and np.allclose(np.asarray(bias) * std, -np.asarray(pre.mean), rtol=1e-5, atol=1e-6))
    return {"name": name, "scale": scale[0], "bias": bias, "normalization_in_graph": in_graph}


class CoreMLTarget:
    int8_calibrates = False   # int8 = 8-bit weights, fp16 compute: no activation ranges to calibrate
    name = "coreml"
    suffix = ".mlpackage"
    runtime = "coreml"
    precisions = ("fp32", "fp16", "int8")
    tools = ("coremltools",)
    directory = True                      # a .mlpackage is a folder
    input_normalization = "model"        # image inputs are Core ML ImageTypes (export/interface.py)
    classifier_scores = "probabilities"  # classifiers end in a softmax (classifier_config)

    def convert(self, module: torch.nn.Module, example: torch.Tensor, options: ExportOptions):
        """An ML Program presenting ``options.metadata``'s interface (None: the model's own, tensors in and out)."""
        import coremltools as ct

        if options.precision == "int8":
            check_keep_float(options.keep_float, module)  # unknown prefixes fail before converting
        md = options.metadata
        image = ImageInput.for_metadata(md)
        labels = _labels(md)
        if md is not None:
            wrapped, pixels = artifact_module(module, example, md, pixels=image is None or image.normalization_in_graph)
            # the traced graph takes what follows the image type's scale / bias: normalised floats, or pixels
            module, example = wrapped, (example if image is not None and not image.normalization_in_graph else pixels)
        precision = ct.precision.FLOAT32 if options.precision == "fp32" else ct.precision.FLOAT16
        # float32 inputs and outputs at every precision (casts inside), as the metadata promises apps:
        # with fp16 compute coremltools would otherwise make them FLOAT16
        io = {"dtype": np.float32}
        examples = as_args(example)
        if image is not None:
            inputs = [ct.ImageType(name=options.input_names[0], shape=tuple(examples[0].shape),
                                   color_layout=ct.colorlayout.RGB, scale=image.scale, bias=image.bias)]
        else:
            inputs = [ct.TensorType(name=n, shape=tuple(e.shape), **io) for n, e in zip(options.input_names, examples)]
        outputs = list(options.output_names)
        classifier = None
        if labels is not None:   # the softmax feeds coremltools' classify op; its dictionary takes the name
            outputs[0] = f"{outputs[0]}_tensor"
            classifier = ct.ClassifierConfig(class_labels=labels, predicted_feature_name=LABEL_OUTPUT,
                                             predicted_probabilities_output=outputs[0])
        # coremltools 9's reduce_transposes pass mis-infers q @ k^T shapes in attention; it only
        # reorders transposes, so dropping it keeps the program's semantics.
        pipeline = ct.PassPipeline.DEFAULT
        pipeline.remove_passes(["common::reduce_transposes"])
        try:
            with quiet_converters(), torch.no_grad():
                # A trace shares the module's tensors, and coremltools' passes edit constants in
                # place (it shifted EfficientAD's teacher_mean buffer): convert a copy.
                traced = torch.jit.trace(copy.deepcopy(module), examples)
                mlmodel = ct.convert(
                    traced, convert_to="mlprogram", compute_precision=precision,
                    minimum_deployment_target=ct.target.iOS16, pass_pipeline=pipeline, inputs=inputs,
                    outputs=[ct.TensorType(name=n, **io) for n in outputs], classifier_config=classifier)
        except Exception as e:  # coremltools raises bare Exceptions and ValueErrors
            raise ExportError(f"coremltools could not convert {type(module).__name__}: "
                              f"{str(e).strip().splitlines()[0][:200]}") from e
        if options.precision == "int8":
            kept = self._kept_float_ops(mlmodel, module, example, options.keep_float)
            try:
                with quiet_converters():
                    mlmodel = self._quantize_weights(mlmodel, kept, options)
            except Exception as e:
                raise ExportError(f"coremltools could not quantise the weights of {type(module).__name__} to "
                                  f"int8: {str(e).strip().splitlines()[0][:200]}") from e
        return self._describe(mlmodel, md, image, labels)

    @staticmethod
    def _describe(mlmodel: Any, md: ModelMetadata | None, image: ImageInput | None, labels: list[str] | None) -> Any:
        """Name a classifier's probability dictionary as the metadata does and set the strings Xcode shows."""
        import coremltools as ct

        if md is None:
            return mlmodel
        if labels is not None:
            spec = mlmodel.get_spec()
            ct.utils.rename_feature(spec, spec.description.predictedProbabilitiesName, md.outputs[0].name,
                                    rename_inputs=False)
            with quiet_converters():   # a new package holding a copy of the weights; loading it needs macOS
                mlmodel = ct.models.MLModel(spec, weights_dir=mlmodel.weights_dir, skip_model_load=True)
        text = _descriptions(md, image, labels)
        mlmodel.short_description = text["model"]
        for feature, line in text["inputs"].items():
            mlmodel.input_description[feature] = line
        for feature, line in text["outputs"].items():
            mlmodel.output_description[feature] = line
        return mlmodel

    @staticmethod
    def _kept_float_ops(mlmodel: Any, module: torch.nn.Module, example: torch.Tensor,
                        prefixes: tuple[str, ...]) -> list[str]:
        """Names of the program's ops traced from modules under ``prefixes``.

        The TorchScript frontend gives each op the last path components of the modules being called
        and then its TorchScript value name: ``["stages", "0", "bn", "input.5"]`` for ``stages.0.bn``
        of a Sequential, ``["0", "bn", "50"]`` of a ModuleList (never called itself, so absent).
        ``prefixes`` are paths in the model's own terms, also when ``module`` wraps it (``ArtifactModule``).
        """
        from coremltools.converters.mil.mil.scope import ScopeSource

        if not prefixes:
            return []
        # a model wrapped in its artifact interface (base.ArtifactModule) is its child "model": scopes gain that
        # level, and its paths lose it again (the wrapper's own ops count as the model's root, as on TFLite)
        inner = "model" if isinstance(module, ArtifactModule) else ""
        owners: dict[tuple[str, ...], set[str]] = {}
        for path, stacks in module_call_stacks(module, example).items():
            if inner:
                path = "" if path == inner else path.removeprefix(f"{inner}.")
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
        """Read the saved package back and describe its interface and program.

        ``inputs`` / ``outputs`` are the interface the runtime presents (what the metadata promises): an image
        input as ``[1, 3, H, W]`` pixels (``"type": "image"`` with its size and colour space), a classifier's
        probability dictionary as ``[1, N]`` in class order; ``classifier`` names the label output left out of
        ``outputs`` and counts the labels; ``image_input`` gives the image type's scale and bias and whether
        the graph normalises after them; ``descriptions`` the strings Xcode shows."""
        import coremltools as ct

        with quiet_converters():
            spec = ct.utils.load_spec(str(path))
        labels = class_labels(spec)
        label_output = spec.description.predictedFeatureName if labels is not None else None
        ops = []
        for function in spec.mlProgram.functions.values():
            for block in function.block_specializations.values():
                ops += [op.type for op in block.operations]
        main = spec.mlProgram.functions.get("main")
        block = next(iter(main.block_specializations.values()), None) if main is not None else None
        array_type = ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType

        def feature(f) -> dict[str, Any]:
            kind = f.type.WhichOneof("Type")
            if kind == "imageType":
                img = f.type.imageType
                return {"name": f.name, "shape": [1, 3, int(img.height), int(img.width)], "dtype": "UINT8",
                        "type": "image", "width": int(img.width), "height": int(img.height),
                        "color_space": type(img).ColorSpace.Name(img.colorSpace)}
            if kind == "dictionaryType":   # Core ML gives {label: probability} as doubles
                return {"name": f.name, "shape": [1, len(labels or [])], "dtype": "DOUBLE", "type": "dictionary"}
            if kind != "multiArrayType":
                return {"name": f.name, "shape": [], "dtype": kind, "type": kind}
            return {"name": f.name, "shape": [int(d) for d in f.type.multiArrayType.shape],
                    "dtype": array_type.Name(f.type.multiArrayType.dataType)}

        structure: dict[str, Any] = {
            "spec_version": spec.specificationVersion, "inputs": [feature(f) for f in spec.description.input],
            "outputs": [feature(f) for f in spec.description.output if f.name != label_output],
            "ops": op_histogram(ops)}
        images = [f.name for f in spec.description.input if f.type.WhichOneof("Type") == "imageType"]
        if images and block is not None:
            structure["image_input"] = _image_arithmetic(block, images[0], _embedded(spec))
        if labels is not None:
            structure["classifier"] = {"labels": len(labels), "label_output": label_output,
                                       "probabilities_output": spec.description.predictedProbabilitiesName}
        described = spec.description
        structure["descriptions"] = {
            "model": described.metadata.shortDescription,
            "inputs": {f.name: f.shortDescription for f in described.input if f.shortDescription},
            "outputs": {f.name: f.shortDescription for f in described.output if f.shortDescription}}
        return structure

    def unavailable(self) -> str | None:
        return needs_packages(coremltools="coremltools")

    def numeric_parity_unavailable(self) -> str | None:
        return None if platform.system() == "Darwin" else NUMERIC_PARITY_NEEDS_MACOS
