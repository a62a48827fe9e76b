"""Metadata and sidecars are untrusted input; model files must be regular files.

Every crafted metadata is refused by ``ModelMetadata.from_json`` with one ``ArtifactError`` naming the
field and the fix, and end to end by ``mobilevision info`` / ``classify`` with one ``error:`` line
naming the sidecar. Non-regular files (devices, FIFOs, directories) run in a child process with a
timeout, so a regression fails instead of hanging the test run.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from mobilevision.errors import ArtifactError
from mobilevision.export.metadata import (INTERPOLATIONS, SCHEMA_VERSION, LandmarkOutput, ModelMetadata,
                                          read_sidecar, sidecar_path)
from mobilevision.export.api import resolve_targets

DROP = object()  # _with(...) value: delete the key
CHILD_TIMEOUT_S = 60


def _base() -> dict[str, Any]:
    """A well-formed schema-5 classifier metadata, shaped like the toy export's sidecar."""
    return {
        "task": "classify", "model": "toy_test_classifier", "target": "onnx", "precision": "fp32",
        "inputs": [{"name": "image", "shape": [1, 3, 64, 64], "dtype": "float32", "layout": "NCHW"}],
        "outputs": [{"name": "logits", "shape": [1, 10], "dtype": "float32", "layout": ""}],
        "preprocessing": {"resize": 73, "crop": [64, 64], "interpolation": "bicubic", "scale": 1 / 255,
                          "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "color": "RGB",
                          "layout": "NCHW", "resize_mode": "shorter_side"},
        "labels": [f"class_{i}" for i in range(10)], "label_set": "toy", "num_classes": 10,
        "params": 650, "macs": 34095264, "weights": None, "weights_sha256": None,
        "tools": {"mobilevision": "0.1.0", "onnx": "1.17.0"}, "parity": {"passed": True, "max_abs": 1e-8},
        "raw": None, "landmarks": None, "quantization": None, "created": "2026-01-01T00:00:00+00:00",
        "schema_version": SCHEMA_VERSION,
    }


def _with(d: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``d`` with the dotted ``path`` (list indices as numbers) set to ``value`` (DROP: deleted)."""
    d = copy.deepcopy(d)
    *parents, last = path.split(".")
    node: Any = d
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    key = int(last) if isinstance(node, list) else last
    if value is DROP:
        del node[key]
    else:
        node[key] = value
    return d


RAW = {"black_level": [64.0, 64.0, 64.0, 64.0], "white_level": 1023.0, "clip": False,
       "packing": ["B", "G_R", "R", "G_B"]}
LANDMARKS = {"points": 68, "coordinates": "input_pixels", "flip_pairs": [[0, 16], [1, 15]], "eye_corners": [36, 45]}
TEN = [f"c{i}" for i in range(9)]
ANOMALY = {"image": 0.12, "pixel": 0.3, "image_f1": 0.9, "pixel_f1": 0.5, "source": "F1-optimal on x test split"}

# id: (dotted path, crafted value, words the one-line message must hold)
FIELD_CASES: dict[str, tuple[str, Any, tuple[str, ...]]] = {
    "schema_version-string": ("schema_version", "5", ("schema_version",)),
    "schema_version-bool": ("schema_version", True, ("schema_version",)),
    "schema_version-negative": ("schema_version", -1, ("schema_version",)),
    "schema_version-float": ("schema_version", 5.0, ("schema_version",)),
    "task-not-string": ("task", 7, ("task",)),
    "task-control-characters": ("task", "classify\n\x1b[31m", ("task",)),
    "model-missing": ("model", DROP, ("model",)),
    "model-too-long": ("model", "m" * 5000, ("model",)),
    "inputs-not-list": ("inputs", {"name": "image"}, ("inputs",)),
    "inputs-too-many": ("inputs", [{"name": "x", "shape": [1]}] * 1000, ("inputs",)),
    "input-not-object": ("inputs", ["image"], ("inputs[0]",)),
    "input-unknown-field": ("inputs.0.strides", [1], ("inputs[0]", "strides")),
    "input-name-missing": ("inputs.0.name", DROP, ("inputs[0]", "name")),
    "input-name-not-string": ("inputs.0.name", 5, ("inputs[0].name",)),
    "input-shape-negative": ("inputs.0.shape", [1, 3, -64, 64], ("inputs[0].shape[2]",)),
    "input-shape-huge-dim": ("inputs.0.shape", [1, 3, 10**7, 64], ("inputs[0].shape[2]",)),
    "input-shape-too-many-elements": ("inputs.0.shape", [1, 3, 100000, 100000], ("inputs[0].shape",)),
    "input-shape-float": ("inputs.0.shape", [1, 3, 64.0, 64], ("inputs[0].shape[2]",)),
    "input-shape-bool": ("inputs.0.shape", [True, 3, 64, 64], ("inputs[0].shape[0]",)),
    "input-shape-string": ("inputs.0.shape", "1x3x64x64", ("inputs[0].shape",)),
    "input-shape-rank-9": ("inputs.0.shape", [1] * 9, ("inputs[0].shape",)),
    "input-dtype-unknown": ("inputs.0.dtype", "float33", ("inputs[0].dtype", "float32")),
    "input-dtype-object": ("inputs.0.dtype", "object", ("inputs[0].dtype",)),
    "input-dtype-not-string": ("inputs.0.dtype", 32, ("inputs[0].dtype",)),
    "input-layout-unknown": ("inputs.0.layout", "CHWN", ("inputs[0].layout", "NCHW")),
    "output-shape-negative": ("outputs.0.shape", [1, -10], ("outputs[0].shape[1]",)),
    "preprocessing-not-object": ("preprocessing", "bicubic", ("preprocessing",)),
    "preprocessing-unknown-field": ("preprocessing.gamma", 2.2, ("preprocessing", "gamma")),
    "preprocessing-missing-crop": ("preprocessing.crop", DROP, ("preprocessing", "crop")),
    "resize-string": ("preprocessing.resize", "abc", ("preprocessing.resize",)),
    "resize-huge": ("preprocessing.resize", 10**9, ("preprocessing.resize",)),
    "resize-zero": ("preprocessing.resize", 0, ("preprocessing.resize",)),
    "resize-bool": ("preprocessing.resize", True, ("preprocessing.resize",)),
    "resize-fraction": ("preprocessing.resize", 73.5, ("preprocessing.resize",)),
    "crop-huge": ("preprocessing.crop", [99999, 99999], ("preprocessing.crop[0]",)),
    "crop-negative": ("preprocessing.crop", [-64, 64], ("preprocessing.crop[0]",)),
    "crop-one-value": ("preprocessing.crop", [64], ("preprocessing.crop",)),
    "crop-not-list": ("preprocessing.crop", 64, ("preprocessing.crop",)),
    "std-zero": ("preprocessing.std", [0.229, 0, 0.225], ("preprocessing.std[1]",)),
    "std-negative": ("preprocessing.std", [0.229, 0.224, -0.225], ("preprocessing.std[2]",)),
    "std-string": ("preprocessing.std", "0.2", ("preprocessing.std",)),
    "mean-two-values": ("preprocessing.mean", [0.5, 0.5], ("preprocessing.mean",)),
    "mean-four-values": ("preprocessing.mean", [0.5] * 4, ("preprocessing.mean",)),
    "mean-not-number": ("preprocessing.mean", ["a", 0, 0], ("preprocessing.mean[0]",)),
    "scale-zero": ("preprocessing.scale", 0, ("preprocessing.scale",)),
    "scale-bool": ("preprocessing.scale", True, ("preprocessing.scale",)),
    "interpolation-unknown": ("preprocessing.interpolation", "cubic", ("preprocessing.interpolation", "bicubic",
                                                                       "bilinear", "nearest")),
    "interpolation-not-string": ("preprocessing.interpolation", 3, ("preprocessing.interpolation",)),
    "layout-unknown": ("preprocessing.layout", "CHW", ("preprocessing.layout", "NCHW")),
    # the image input and its preprocessing contradict each other (schema 6 artifacts can be NHWC / uint8)
    "layout-disagrees": ("preprocessing.layout", "NHWC", ("preprocessing.layout", "inputs[0]")),
    "channels-not-where-the-layout-says": ("inputs.0.shape", [1, 64, 64, 3], ("inputs[0].shape", "NCHW")),
    "pixels-without-model-normalisation": ("inputs.0.dtype", "uint8", ("inputs[0].dtype", "normalization")),
    "normalization-unknown": ("preprocessing.normalization", "none", ("preprocessing.normalization",)),
    "scores-unknown": ("scores", "softmax", ("scores", "probabilities")),
    "color-bgr": ("preprocessing.color", "BGR", ("preprocessing.color", "RGB")),
    "resize_mode-unknown": ("preprocessing.resize_mode", "zoom", ("preprocessing.resize_mode", "stretch")),
    "labels-not-list": ("labels", "cat dog", ("labels",)),
    "labels-not-strings": ("labels", list(range(10)), ("labels[0]",)),
    "labels-more-than-classes": ("labels", [f"c{i}" for i in range(11)], ("labels", "11", "10")),
    "labels-too-many": ("labels", ["x"] * 100_001, ("labels",)),
    "label-too-long": ("labels", ["x" * 1025, *TEN], ("labels[0]",)),
    "label-control-character": ("labels", ["cat\r\nerror: forged", *TEN], ("labels[0]",)),
    "num_classes-negative": ("num_classes", -1, ("num_classes",)),
    "num_classes-bool": ("num_classes", True, ("num_classes",)),
    "num_classes-string": ("num_classes", "10", ("num_classes",)),
    "params-negative": ("params", -650, ("params",)),
    "macs-string": ("macs", "34M", ("macs",)),
    "macs-fraction": ("macs", 1.5, ("macs",)),
    "tools-not-object": ("tools", ["torch"], ("tools",)),
    "tools-version-not-string": ("tools.onnx", 17, ("tools",)),
    "parity-not-object": ("parity", "passed", ("parity",)),
    "quantization-not-object": ("quantization", [1], ("quantization",)),
    "created-not-string": ("created", 0, ("created",)),
    "weights-not-string": ("weights", 1, ("weights",)),
    "label_set-not-string": ("label_set", ["toy"], ("label_set",)),
    "raw-not-object": ("raw", [64, 1023], ("raw",)),
    "raw-white-below-black": ("raw", {**RAW, "white_level": 60.0}, ("raw.white_level",)),
    "raw-white-equal-black": ("raw", {**RAW, "white_level": 64.0}, ("raw.white_level",)),
    "raw-black-three-values": ("raw", {**RAW, "black_level": [1, 2, 3]}, ("raw.black_level",)),
    "raw-black-negative": ("raw", {**RAW, "black_level": [-1, 0, 0, 0]}, ("raw.black_level[0]",)),
    "raw-white-string": ("raw", {**RAW, "white_level": "1023"}, ("raw.white_level",)),
    "raw-packing-duplicate": ("raw", {**RAW, "packing": ["B", "B", "R", "G_B"]}, ("raw.packing", "G_R")),
    "raw-packing-unknown": ("raw", {**RAW, "packing": ["B", "G", "R", "G_B"]}, ("raw.packing",)),
    "raw-packing-three": ("raw", {**RAW, "packing": ["B", "R", "G_B"]}, ("raw.packing",)),
    "raw-clip-string": ("raw", {**RAW, "clip": "yes"}, ("raw.clip",)),
    "raw-clip-int": ("raw", {**RAW, "clip": 1}, ("raw.clip",)),
    "raw-missing-white": ("raw", {"black_level": [64]}, ("raw", "white_level")),
    "landmarks-points-zero": ("landmarks", {**LANDMARKS, "points": 0}, ("landmarks.points",)),
    "landmarks-points-negative": ("landmarks", {**LANDMARKS, "points": -68}, ("landmarks.points",)),
    "landmarks-points-huge": ("landmarks", {**LANDMARKS, "points": 10**9}, ("landmarks.points",)),
    "landmarks-points-bool": ("landmarks", {**LANDMARKS, "points": True}, ("landmarks.points",)),
    "landmarks-flip-out-of-range": ("landmarks", {**LANDMARKS, "flip_pairs": [[0, 68]]},
                                    ("landmarks.flip_pairs[0][1]",)),
    "landmarks-flip-not-pair": ("landmarks", {**LANDMARKS, "flip_pairs": [[0]]}, ("landmarks.flip_pairs[0]",)),
    "landmarks-eye-out-of-range": ("landmarks", {**LANDMARKS, "eye_corners": [36, 99]},
                                   ("landmarks.eye_corners[1]",)),
    "landmarks-coordinates-unknown": ("landmarks", {**LANDMARKS, "coordinates": "normalized"},
                                      ("landmarks.coordinates", "input_pixels")),
    "anomaly-not-object": ("anomaly", 0.1, ("anomaly",)),
    "anomaly-image-null": ("anomaly", {**ANOMALY, "image": None}, ("anomaly.image",)),
    "anomaly-image-string": ("anomaly", {**ANOMALY, "image": "0.1"}, ("anomaly.image",)),
    "anomaly-image-missing": ("anomaly", {"pixel": 0.2}, ("anomaly", "image")),
    "anomaly-pixel-bool": ("anomaly", {**ANOMALY, "pixel": True}, ("anomaly.pixel",)),
    "anomaly-source-too-long": ("anomaly", {**ANOMALY, "source": "s" * 5000}, ("anomaly.source",)),
    "anomaly-unknown-field": ("anomaly", {**ANOMALY, "mask_threshold": 0.3}, ("anomaly", "mask_threshold")),
}

MIB = 1024 * 1024


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def _in_parity(text: str, value: str) -> str:
    """The JSON text with ``"x": value`` first in the free-form parity report."""
    assert '"parity": {' in text
    return text.replace('"parity": {', f'"parity": {{"x": {value}, ', 1)


# id: (valid JSON text -> crafted text or bytes, words the one-line message must hold)
TEXT_CASES: dict[str, tuple[Callable[[str], str | bytes], tuple[str, ...]]] = {
    "json-too-large": (lambda t: t[:-1] + " " * (16 * MIB) + "}", ("MiB",)),
    "json-deep-nesting": (lambda t: _in_parity(t, _deep(100_000)), ("nest",)),
    "json-nesting-100": (lambda t: _in_parity(t, _deep(100)), ("nest",)),
    "json-5000-digit-int": (lambda t: t.replace('"num_classes": 10', '"num_classes": 1' + "0" * 5000), ("digits",)),
    "json-not-utf8": (lambda t: t.replace("class_3", "class_\udcff3").encode("utf-8", "surrogateescape"),
                      ("UTF-8",)),
    "json-nan": (lambda t: _in_parity(t, "NaN"), ("NaN",)),
    "json-infinity": (lambda t: _in_parity(t, "Infinity"), ("Infinity",)),
    "json-minus-infinity": (lambda t: _in_parity(t, "-Infinity"), ("Infinity",)),
    "json-float-overflow": (lambda t: _in_parity(t, "1e999"), ("1e999",)),
    "json-duplicate-key": (lambda t: t.replace('"task": "classify"', '"task": "classify", "task": "anomaly"'),
                           ("duplicate", "task")),
    "json-array": (lambda t: f"[{t}]", ("object",)),
    "json-empty": (lambda t: "", ("JSON",)),
    "json-truncated": (lambda t: t[: len(t) // 2], ("JSON",)),
}


def _crafted(case: str, base: dict[str, Any]) -> str | bytes:
    if case in FIELD_CASES:
        path, value, _ = FIELD_CASES[case]
        return json.dumps(_with(base, path, value))
    return TEXT_CASES[case][0](json.dumps(base))


def _words(case: str) -> tuple[str, ...]:
    return FIELD_CASES[case][2] if case in FIELD_CASES else TEXT_CASES[case][1]


ALL_CASES = [*FIELD_CASES, *TEXT_CASES]


def _assert_one_line(message: str, *words: str) -> None:
    assert "\n" not in message and len(message) < 400, message
    assert "re-export" in message, message
    assert all(w in message for w in words), (words, message)


@pytest.mark.parametrize("case", ALL_CASES)
def test_crafted_metadata_is_refused_in_one_line(case):
    with pytest.raises(ArtifactError) as info:
        ModelMetadata.from_json(_crafted(case, _base()))
    _assert_one_line(str(info.value), *_words(case))


def test_the_base_case_is_valid():
    md = ModelMetadata.from_json(json.dumps(_base()))
    assert md.preprocessing.crop == [64, 64] and md.labels[3] == "class_3"


def test_source_names_the_file_in_the_message():
    with pytest.raises(ArtifactError, match=r"^model\.onnx\.json: metadata preprocessing\.std\[1\]"):
        ModelMetadata.from_json(_crafted("std-zero", _base()), source="model.onnx.json")


# ---- well-formed metadata of every schema version (and odd-but-valid values) still loads

_MINIMAL = {"task": "classify", "model": "m", "target": "onnx", "precision": "fp32", "inputs": [], "outputs": []}
VALID: dict[str, dict[str, Any]] = {
    "schema-0-no-version": dict(_MINIMAL),
    "schema-1-no-resize_mode": {**_MINIMAL, "schema_version": 1, "preprocessing": {"resize": 36, "crop": [32, 32]}},
    "schema-2-stretch": {**_MINIMAL, "schema_version": 2,
                         "preprocessing": {"resize": 32, "crop": [32, 48], "resize_mode": "stretch"}},
    "schema-3-raw": {**_MINIMAL, "task": "isp", "schema_version": 3,
                     "raw": {"black_level": [62, 60, 58, 61], "white_level": 1023.0}},
    "schema-3-raw-one-black-level": {**_MINIMAL, "task": "isp", "schema_version": 3,
                                     "raw": {"black_level": [0], "white_level": 1, "clip": True,
                                             "packing": ["R", "G_R", "G_B", "B"]}},
    "schema-4-landmarks": {**_MINIMAL, "task": "landmarks", "schema_version": 4, "landmarks": LANDMARKS},
    "schema-5-quantization": {**_base(), "precision": "int8",
                              "quantization": {"tool": "x", "accuracy": {"before": 0.5, "after": None}}},
    "labels-fewer-than-classes": {**_base(), "labels": ["cat", "dog"]},
    "labels-unicode": {**_base(), "labels": ["chat noir, été", "犬", "🐱", *["x"] * 7]},
    "labels-none": {**_base(), "labels": None, "num_classes": None},
    "dynamic-batch": _with(_base(), "inputs.0.shape", [-1, 3, 64, 64]),
    "nhwc": _with(_with(_with(_base(), "preprocessing.layout", "NHWC"), "inputs.0.layout", "NHWC"),
                  "inputs.0.shape", [1, 64, 64, 3]),
    "uint8-input": _with(_with(_base(), "inputs.0.dtype", "uint8"), "preprocessing.normalization", "model"),
    "schema-6-probabilities": {**_base(), "schema_version": 6, "scores": "probabilities"},
    "schema-7-anomaly-thresholds": {**_MINIMAL, "task": "anomaly", "schema_version": 7, "anomaly": ANOMALY},
    "anomaly-image-threshold-only": {**_MINIMAL, "task": "anomaly", "schema_version": 7, "anomaly": {"image": 1}},
    "extra-top-level-field": {**_base(), "future_field": {"a": 1}},
    **{f"interpolation-{name}": _with(_base(), "preprocessing.interpolation", name) for name in INTERPOLATIONS},
}


@pytest.mark.parametrize("case", list(VALID))
def test_well_formed_metadata_loads(case):
    d = VALID[case]
    md = ModelMetadata.from_json(json.dumps(d))
    assert md.task == d["task"] and md.schema_version == d.get("schema_version", 0)
    assert ModelMetadata.from_json(md.to_json()) == md


def test_bytes_with_a_bom_load():
    assert ModelMetadata.from_json(b"\xef\xbb\xbf" + json.dumps(_base()).encode()).model == "toy_test_classifier"


def test_interpolations_are_the_runtime_resample_filters():
    from mobilevision.runtime.tasks.classify import RESAMPLE

    assert set(INTERPOLATIONS) == set(RESAMPLE)


def test_non_finite_report_numbers_are_written_as_null_and_read_back():
    md = ModelMetadata.from_dict(_base())
    md.parity = {"max_abs": float("nan"), "cosine": float("inf")}
    md.landmarks = LandmarkOutput(points=5)
    back = ModelMetadata.from_json(md.to_json())
    assert back.parity == {"max_abs": None, "cosine": None} and back.landmarks.points == 5


@pytest.mark.parametrize("target", resolve_targets("all"))
def test_exported_sidecars_load(toy_exports, target):
    md = read_sidecar(toy_exports[target].path)
    assert md == toy_exports[target].metadata


# ---- end to end: a crafted sidecar beside an ONNX file without embedded metadata

@pytest.fixture(scope="module")
def bare_onnx(toy_exports, tmp_path_factory) -> tuple[Path, dict[str, Any], Path]:
    """(toy .onnx without embedded metadata, its real sidecar as a dict, an image file)."""
    import onnx
    from PIL import Image

    root = tmp_path_factory.mktemp("bare")
    proto = onnx.load(str(toy_exports["onnx"].path))
    del proto.metadata_props[:]
    bare = root / "bare.onnx"
    onnx.save(proto, str(bare))
    image = root / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(image)
    sidecar = json.loads(toy_exports["onnx"].sidecar.read_text())
    sidecar.pop("files", None)   # the SHA-256 of the original .onnx: this one differs
    return bare, sidecar, image


def _artifact_with_sidecar(bare_onnx, tmp_path: Path, content: str | bytes) -> tuple[Path, Path]:
    bare, _, image = bare_onnx
    artifact = tmp_path / bare.name
    shutil.copyfile(bare, artifact)
    side = sidecar_path(artifact)
    side.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return artifact, image


def test_the_real_sidecar_classifies(bare_onnx, tmp_path, capsys):
    from mobilevision.cli import main

    artifact, image = _artifact_with_sidecar(bare_onnx, tmp_path, json.dumps(bare_onnx[1]))
    assert main(["classify", str(artifact), str(image), "--top-k", "2"]) == 0
    assert "class_" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("command", ["info", "classify"])
@pytest.mark.parametrize("case", ALL_CASES)
def test_crafted_sidecar_fails_the_cli_in_one_line(bare_onnx, tmp_path, one_line_error, case, command):
    from mobilevision.cli import main

    artifact, image = _artifact_with_sidecar(bare_onnx, tmp_path, _crafted(case, bare_onnx[1]))
    argv = ["info", str(artifact)] if command == "info" else ["classify", str(artifact), str(image)]
    line = one_line_error(main(argv), "bare.onnx.json", "re-export", *_words(case))
    assert len(line) < 400, line


EMBEDDED_CASES = ["std-zero", "crop-huge", "interpolation-unknown", "labels-more-than-classes", "json-nan",
                  "json-deep-nesting", "json-5000-digit-int", "json-too-large"]


@pytest.mark.parametrize("case", EMBEDDED_CASES)
def test_crafted_embedded_metadata_fails_the_cli_in_one_line(bare_onnx, tmp_path, one_line_error, case):
    """The metadata inside the .onnx is as untrusted as the sidecar."""
    import onnx

    from mobilevision.cli import main

    proto = onnx.load(str(bare_onnx[0]))
    onnx.helper.set_model_props(proto, {"mobilevision": _crafted(case, bare_onnx[1])})
    artifact = tmp_path / "embedded.onnx"
    onnx.save(proto, str(artifact))
    one_line_error(main(["classify", str(artifact), str(bare_onnx[2])]), "re-export", *_words(case))


# ---- non-regular model files and sidecars: refused at once, never read

def _child_cli(*argv: str) -> subprocess.CompletedProcess:
    code = "import sys\nfrom mobilevision.cli import main\nsys.exit(main(sys.argv[1:]))"
    try:
        return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                              timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"mobilevision {' '.join(argv)} still ran after {CHILD_TIMEOUT_S} s")


def _onnx_dev_zero(root: Path, ref: dict[str, Path]) -> Path:
    (root / "m.onnx").symlink_to("/dev/zero")
    return root / "m.onnx"


def _onnx_fifo(root: Path, ref: dict[str, Path]) -> Path:
    os.mkfifo(root / "m.onnx")
    return root / "m.onnx"


def _onnx_directory(root: Path, ref: dict[str, Path]) -> Path:
    (root / "m.onnx").mkdir()
    return root / "m.onnx"


def _xml_dev_zero(root: Path, ref: dict[str, Path]) -> Path:
    (root / "m.xml").symlink_to("/dev/zero")
    return root / "m.xml"


def _xml_fifo(root: Path, ref: dict[str, Path]) -> Path:
    os.mkfifo(root / "m.xml")
    return root / "m.xml"


def _bin_dev_zero(root: Path, ref: dict[str, Path]) -> Path:
    shutil.copyfile(ref["openvino"], root / "m.xml")
    (root / "m.bin").symlink_to("/dev/zero")
    return root / "m.xml"


def _bin_fifo(root: Path, ref: dict[str, Path]) -> Path:
    shutil.copyfile(ref["openvino"], root / "m.xml")
    os.mkfifo(root / "m.bin")
    return root / "m.xml"


def _mlpackage_file(root: Path, ref: dict[str, Path]) -> Path:
    (root / "m.mlpackage").write_bytes(b"not a package")
    return root / "m.mlpackage"


def _with_sidecar(make_sidecar: Callable[[Path], None]) -> Callable[[Path, dict[str, Path]], Path]:
    def build(root: Path, ref: dict[str, Path]) -> Path:
        shutil.copyfile(ref["bare"], root / "m.onnx")
        make_sidecar(sidecar_path(root / "m.onnx"))
        return root / "m.onnx"
    return build


def _sparse_gigabyte(p: Path) -> None:
    with open(p, "wb") as f:
        f.truncate(1 << 30)


# id: (build the artifact under a folder, words of the error line)
NON_REGULAR: dict[str, tuple[Callable[[Path, dict[str, Path]], Path], tuple[str, ...]]] = {
    "onnx-symlink-to-dev-zero": (_onnx_dev_zero, ("m.onnx", "not a regular file")),
    "onnx-fifo": (_onnx_fifo, ("m.onnx", "not a regular file")),
    "onnx-directory": (_onnx_directory, ("m.onnx", "not a regular file")),
    "xml-symlink-to-dev-zero": (_xml_dev_zero, ("m.xml", "not a regular file")),
    "xml-fifo": (_xml_fifo, ("m.xml", "not a regular file")),
    "bin-symlink-to-dev-zero": (_bin_dev_zero, ("m.bin", "not a regular file")),
    "bin-fifo": (_bin_fifo, ("m.bin", "not a regular file")),
    "mlpackage-regular-file": (_mlpackage_file, ("m.mlpackage", "not a directory")),
    "sidecar-fifo": (_with_sidecar(os.mkfifo), ("m.onnx.json", "not a regular file")),
    "sidecar-symlink-to-dev-zero": (_with_sidecar(lambda p: p.symlink_to("/dev/zero")),
                                    ("m.onnx.json", "not a regular file")),
    "sidecar-directory": (_with_sidecar(lambda p: p.mkdir()), ("m.onnx.json", "not a regular file")),
    "sidecar-1-GiB": (_with_sidecar(_sparse_gigabyte), ("m.onnx.json", "MiB")),
}


@pytest.fixture(scope="module")
def reference_files(bare_onnx, toy_exports) -> dict[str, Path]:
    return {"bare": bare_onnx[0], "openvino": toy_exports["openvino"].path}


@pytest.mark.slow
@pytest.mark.parametrize("command", ["info", "classify"])
@pytest.mark.parametrize("case", list(NON_REGULAR))
def test_non_regular_files_are_refused_without_hanging(reference_files, bare_onnx, tmp_path, case, command):
    build, words = NON_REGULAR[case]
    artifact = str(build(tmp_path, reference_files))
    proc = _child_cli(*(["info", artifact] if command == "info" else ["classify", artifact, str(bare_onnx[2])]))
    lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert all(w in lines[0] for w in words), lines[0]


def test_symlinks_to_regular_files_stay_allowed(bare_onnx, tmp_path):
    bare, sidecar, image = bare_onnx
    target = tmp_path / "real"
    target.mkdir()
    shutil.copyfile(bare, target / "m.onnx")
    sidecar_path(target / "m.onnx").write_text(json.dumps(sidecar))
    (tmp_path / "link.onnx").symlink_to(target / "m.onnx")
    (tmp_path / "link.onnx.json").symlink_to(sidecar_path(target / "m.onnx"))
    proc = _child_cli("classify", str(tmp_path / "link.onnx"), str(image), "--top-k", "1")
    assert proc.returncode == 0 and "class_" in proc.stdout, proc.stderr[-2000:]


def test_a_missing_sidecar_is_still_none(tmp_path):
    assert read_sidecar(tmp_path / "m.onnx") is None
    (tmp_path / "m.onnx.json").symlink_to(tmp_path / "dangling")
    assert read_sidecar(tmp_path / "m.onnx") is None
