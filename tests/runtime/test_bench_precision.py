"""bench says what each runtime computed in, asks OpenVINO for a chosen precision, drops no requested
backend, and times dynamic inputs only at a shape the user gave."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mobilevision.cli import main
from mobilevision.runtime.backends import open_backend
from mobilevision.runtime.backends.base import computed_precision
from mobilevision.runtime.backends.openvino import precision_name
from mobilevision.runtime.profile import benchmark, input_arrays

FAST = ["--runs", "1", "--warmup", "0", "--rewarm", "0"]


def _ov_read_back(path: Path, config: dict) -> str:
    """What a plain OpenVINO compile of ``path`` with ``config`` reports as its inference precision."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"PERFORMANCE_HINT": "LATENCY", **config})
    return precision_name(compiled.get_property("INFERENCE_PRECISION_HINT"))


@pytest.fixture(scope="module")
def toy_rows(toy_exports):
    """One run: ort on the .onnx, litert on the .tflite, openvino on the IR at f32 and at its default."""
    pairs = [(toy_exports["onnx"].path, "ort"), (toy_exports["tflite"].path, "litert"),
             (toy_exports["openvino"].path, "openvino")]
    rows = benchmark([], pairs=pairs, runs=1, warmup=0, rewarm=0, ov_precisions=["f32", "default"])
    assert all(r.error is None for r in rows), [r.error for r in rows]
    return {(r.backend, r.ov_precision): r for r in rows}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["ort", "litert"], ids=["ort-fp32-onnx", "litert-fp32-tflite"])
def test_fp32_artifacts_report_fp32(toy_rows, backend):
    row = toy_rows[(backend, None)]
    shape = [1, 64, 64, 3] if backend == "litert" else [1, 3, 64, 64]   # TFLite takes NHWC images
    assert row.precision == "fp32" and row.input_shapes == {row_input(row): shape}


def row_input(row) -> str:
    (name,) = row.input_shapes
    return name


def test_openvino_f32_reports_f32(toy_rows, toy_exports):
    assert toy_rows[("openvino", "f32")].precision == "fp32" == _ov_read_back(toy_exports["openvino"].path,
                                                                             {"INFERENCE_PRECISION_HINT": "f32"})


def test_openvino_default_reports_what_the_plugin_chose(toy_rows, toy_exports):
    # no hint: the plugin's choice on this CPU (bf16 where it has bf16/AMX, fp32 elsewhere)
    assert toy_rows[("openvino", "default")].precision == _ov_read_back(toy_exports["openvino"].path, {})


@pytest.mark.parametrize("stored,backend,expected", [
    ("fp16", "litert", "fp32 (fp16 weights)"),
    ("fp16", "ort", "fp16 (some ops cast to fp32)"),
    ("int8", "litert", "int8"),
    ("int8", "ort", "int8"),
    ("fp16", "torch", "fp32"),
    (None, "ort", "unknown"),
], ids=["litert-fp16", "ort-fp16", "litert-int8", "ort-int8", "torch-rebuilds-fp32", "no-metadata"])
def test_precision_from_metadata(stored, backend, expected):
    """Each backend class says what it computes a stored precision in (its own file, not a central table)."""
    import importlib

    from mobilevision.runtime.backends import BACKENDS

    module, cls = BACKENDS[backend].impl.split(":")
    assert computed_precision(getattr(importlib.import_module(module), cls), stored) == expected
    assert computed_precision(SimpleNamespace(name=backend), stored) == (stored or "unknown")   # no declaration


def test_table_and_json_carry_precision_and_shape(toy_exports, tmp_path, capsys):
    report = tmp_path / "bench.json"
    assert main(["bench", str(toy_exports["openvino"].path), "--ov-precision", "default", "--json", str(report),
                 *FAST]) == 0
    out = capsys.readouterr().out
    assert "precision" in out and "(default)" in out and "1x3x64x64" in out
    (row,) = json.loads(report.read_text())
    assert row["ov_precision"] == "default" and row["precision"] == _ov_read_back(toy_exports["openvino"].path, {})


BAD_OV = {
    "no-openvino-row": (["-b", "ort", "--ov-precision", "default"], ["--ov-precision", "openvino"]),
    "unknown-precision": (["-b", "openvino", "--ov-precision", "f8"], ["'f8'", "f32, bf16, default"]),
}


@pytest.mark.parametrize("args,words", BAD_OV.values(), ids=BAD_OV.keys())
def test_bad_ov_precision_is_one_line(toy_exports, args, words, capsys, one_line_error):
    one_line_error(main(["bench", str(toy_exports["onnx"].path), *args, *FAST]), *words)


def test_openvino_runs_a_tflite_like_litert(toy_exports, toy_name):
    path = toy_exports["tflite"].path
    ov, lite = open_backend(path, "openvino"), open_backend(path, "litert")
    try:
        x = input_arrays(lite.inputs)
        np.testing.assert_allclose(ov.run(x)[0], lite.run(x)[0], atol=1e-5)
        assert ov.embedded_metadata() == lite.embedded_metadata() is not None
    finally:
        ov.close()
        lite.close()
    (row,) = benchmark([path], ["openvino"], runs=1, warmup=0, rewarm=0)
    assert row.error is None and row.precision == "fp32" and row.model == toy_name


def test_a_backend_that_cannot_open_a_file_is_an_error_row(toy_exports):
    rows = benchmark([toy_exports["tflite"].path], ["ort", "litert"], runs=1, warmup=0, rewarm=0)
    assert [r.backend for r in rows] == ["ort", "litert"]
    assert "cannot open .tflite" in rows[0].error and rows[0].median_ms is None and rows[1].error is None


@pytest.fixture(scope="module")
def dynamic_onnx(tmp_path_factory) -> Path:
    """image [batch, 3, 8, 8] -> Relu: a foreign ONNX (no sidecar) with a dynamic batch."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["image"], ["out"])], "dyn",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 3, 8, 8])])
    path = tmp_path_factory.mktemp("dynamic") / "dyn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path)
    return path


def test_dynamic_input_without_shape_is_one_line(dynamic_onnx, capsys, one_line_error):
    one_line_error(main(["bench", str(dynamic_onnx), *FAST]), "image", "dynamic", "--shape image=1x3x8x8")


def test_dynamic_input_with_shape_runs_at_that_shape(dynamic_onnx, tmp_path, capsys):
    report = tmp_path / "bench.json"
    assert main(["bench", str(dynamic_onnx), "--shape", "image=2x3x8x8", "--json", str(report), *FAST]) == 0
    assert "2x3x8x8" in capsys.readouterr().out
    (row,) = json.loads(report.read_text())
    assert row["input_shapes"] == {"image": [2, 3, 8, 8]} and row["precision"] == "unknown"


BAD_SHAPES = {
    "no-equals": (["image"], ["'image'", "INPUT_NAME=DIMS"]),
    "empty-dims": (["image="], ["INPUT_NAME=DIMS"]),
    "letter-dim": (["image=2x3xax8"], ["INPUT_NAME=DIMS"]),
    "no-name": (["=1x3x8x8"], ["INPUT_NAME=DIMS"]),
    "zero-dim": (["image=0x3x8x8"], ["1..65536"]),
    "huge": (["image=65536x65536x3x8"], ["elements"]),
    "twice": (["image=1x3x8x8", "image=2x3x8x8"], ["twice"]),
    "wrong-rank": (["image=1x3x8"], ["does not fit", "?x3x8x8"]),
    "changes-static-dim": (["image=1x4x8x8"], ["does not fit", "?x3x8x8"]),
    "no-such-input": (["image=1x3x8x8", "imgae=1x3x8x8"], ["'imgae'", "no such input", "image"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("shapes,words", BAD_SHAPES.values(), ids=BAD_SHAPES.keys())
def test_bad_shape_is_one_line(dynamic_onnx, shapes, words, capsys, one_line_error):
    args = [a for s in shapes for a in ("--shape", s)]
    one_line_error(main(["bench", str(dynamic_onnx), *args, *FAST]), *words)
