"""Export pipeline: artifacts, embedded metadata, parity verdicts, atomic writes, errors."""
from __future__ import annotations

import json

import pytest
import torch

from mobilevision.errors import ExportError, ExportParityError, UnknownTarget
from mobilevision.export import export, export_all
from mobilevision.export import api as export_api
from mobilevision.export import stages
from mobilevision.export.metadata import ModelMetadata, sidecar_path
from mobilevision.runtime import load
from mobilevision.runtime.backends.litert import read_tflite_metadata
from mobilevision.export.api import resolve_targets
from mobilevision.export.targets import TARGETS

NUMERIC = ("onnx", "tflite", "openvino")


def test_every_target_written_with_sidecar(toy_exports):
    assert set(toy_exports) == set(resolve_targets("all"))
    for target, r in toy_exports.items():
        assert r.path.exists() and r.sidecar == sidecar_path(r.path) and r.sidecar.is_file()
        side = ModelMetadata.from_json(r.sidecar.read_text())
        assert side.target == target and side.precision == "fp32" and side.task == "classify"
        assert side.parity["passed"] is True
    assert toy_exports["openvino"].path.with_suffix(".bin").is_file()
    assert toy_exports["coreml"].path.is_dir()


@pytest.mark.parametrize("target", NUMERIC)
def test_numeric_parity_report(toy_exports, target):
    r = toy_exports[target]
    rep = r.parity
    assert rep.numeric and rep.passed and rep.samples == 4 and rep.runtime in ("ort", "litert", "openvino")
    (o,) = rep.outputs
    # TFLite classifiers end in a softmax: compared as centred log-probabilities, i.e. as logits
    assert o.name == ("probabilities" if target == "tflite" else "logits")
    assert o.max_abs < 1e-4 and o.cosine > 0.9999 and o.reference_max_abs > 0
    assert rep.top1_agreement == 1.0


def test_coreml_validated_structurally_off_macos(toy_exports):
    rep = toy_exports["coreml"].parity
    assert not rep.numeric and "macOS" in rep.note
    assert rep.structure["inputs"] == [{"name": "image", "shape": [1, 3, 64, 64], "dtype": "UINT8", "type": "image",
                                        "width": 64, "height": 64, "color_space": "RGB"}]
    assert rep.structure["outputs"][0]["name"] == "probabilities"
    assert {"conv", "softmax", "layer_norm", "classify"} <= set(rep.structure["ops"])


@pytest.mark.parametrize("target", NUMERIC)
def test_embedded_metadata_equals_sidecar(toy_exports, target):
    r = toy_exports[target]
    with load(r.path) as m:
        embedded = m.backend.embedded_metadata()
    assert embedded is not None
    sidecar = json.loads(r.sidecar.read_text())
    assert set(sidecar.pop("files")) == {f.name for f in r.files}   # the sidecar adds the files' SHA-256
    assert json.loads(embedded) == sidecar


def test_coreml_metadata_embedded(toy_exports):
    import coremltools as ct

    spec = ct.utils.load_spec(str(toy_exports["coreml"].path))
    md = ModelMetadata.from_json(spec.description.metadata.userDefined["mobilevision"])
    assert md.target == "coreml" and md.model == "toy_test_classifier"


def test_metadata_fields(toy_exports, toy_name):
    from mobilevision import create_model

    md = toy_exports["onnx"].metadata
    assert md.inputs[0].name == "image" and md.inputs[0].shape == [1, 3, 64, 64]
    assert md.inputs[0].layout == "NCHW" and md.inputs[0].dtype == "float32"
    assert md.outputs[0].shape == [1, 10]
    assert md.labels == [f"class_{i}" for i in range(10)]
    assert md.preprocessing.mean == pytest.approx([0.485, 0.456, 0.406])
    assert md.preprocessing.crop == [64, 64] and md.preprocessing.resize == int(64 / 0.875)
    assert md.macs > 0 and md.params == sum(p.numel() for p in create_model(toy_name).parameters())
    assert {"torch", "onnx", "onnxruntime", "mobilevision"} <= set(md.tools)
    assert md.weights is None and md.weights_sha256 is None


@pytest.mark.slow
def test_fp16_exports_pass_parity_and_are_smaller(tmp_path, toy_name, toy_exports):
    results = export_all(toy_name, ["onnx", "tflite", "openvino"], precisions=("fp16",), out_dir=tmp_path)
    for r in results:
        assert r.parity.passed and r.parity.numeric, r
        assert r.path.name.endswith("_fp16" + r.path.suffix)
        assert r.metadata.precision == "fp16"
    sizes = {r.target: r.path.stat().st_size for r in results}
    assert sizes["onnx"] < toy_exports["onnx"].path.stat().st_size
    bins = tmp_path / "toy_test_classifier_fp16.bin"
    assert bins.stat().st_size < toy_exports["openvino"].path.with_suffix(".bin").stat().st_size


@pytest.mark.slow
def test_weights_checksum_recorded(tmp_path, toy_name):
    from mobilevision import create_model
    from mobilevision.checkpoints import sha256_of

    ckpt = tmp_path / "toy.pth"
    torch.save(create_model(toy_name).state_dict(), ckpt)
    r = export(toy_name, "onnx", weights=str(ckpt), out_dir=tmp_path / "out")
    assert r.metadata.weights == "toy.pth" and r.metadata.weights_sha256 == sha256_of(ckpt)


@pytest.mark.slow
def test_imgsz_changes_shape_and_name(tmp_path, toy_name):
    r = export(toy_name, "onnx", imgsz=96, out_dir=tmp_path)
    assert r.path.name == "toy_test_classifier_96.onnx"
    assert r.metadata.inputs[0].shape == [1, 3, 96, 96] and r.metadata.preprocessing.crop == [96, 96]


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.slow
def test_parity_failure_leaves_nothing(tmp_path, toy_name, monkeypatch):
    real = stages.run_artifact

    def drifting(path, runtime, samples, precision):
        outputs, computed = real(path, runtime, samples, precision)
        return [[o + 0.5 for o in outs] for outs in outputs], computed

    monkeypatch.setattr(stages, "run_artifact", drifting)
    with pytest.raises(ExportParityError, match="fails parity.*max abs 0.5"):
        export(toy_name, "onnx", out_dir=tmp_path)
    assert _leftovers(tmp_path) == []


@pytest.mark.slow
def test_interrupted_export_leaves_no_artifact(tmp_path, toy_name, monkeypatch):
    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(stages, "move_into_place", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export(toy_name, "tflite", out_dir=tmp_path)
    assert _leftovers(tmp_path) == []


@pytest.mark.slow
def test_reexport_replaces_previous_artifact(tmp_path, toy_name):
    first = export(toy_name, "coreml", out_dir=tmp_path)
    second = export(toy_name, "coreml", out_dir=tmp_path)
    assert first.path == second.path and second.path.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy_test_classifier.mlpackage",
                                                          "toy_test_classifier.mlpackage.json"]


@pytest.mark.slow
def test_export_all_records_failures_and_continues(tmp_path, toy_name, monkeypatch):
    from mobilevision.export.targets.tflite import TFLiteTarget

    def broken(self, *a, **k):
        raise ExportError("converter exploded")

    monkeypatch.setattr(TFLiteTarget, "convert", broken)
    results = export_all(toy_name, ["tflite", "onnx"], out_dir=tmp_path)
    assert results[0].error == "converter exploded" and results[1].parity.passed


@pytest.mark.parametrize("kwargs, error", [
    ({"target": "caffe"}, "unknown target 'caffe'"),
    ({"target": "onnx", "precision": "int3"}, "unknown precision 'int3'"),
    ({"target": "all"}, "export_all"),
])
def test_bad_arguments(tmp_path, toy_name, kwargs, error):
    with pytest.raises(UnknownTarget, match=error):
        export(toy_name, out_dir=tmp_path, **kwargs)


def test_module_without_card_is_refused(tmp_path):
    with pytest.raises(ExportError, match="no model card"):
        export(torch.nn.Conv2d(3, 3, 1), "onnx", out_dir=tmp_path)


def test_tflite_metadata_entry_is_replaced_not_duplicated(toy_exports):
    from ai_edge_litert import schema_py_generated as schema

    from mobilevision.export.targets.tflite import with_metadata

    data = toy_exports["tflite"].path.read_bytes()
    twice = with_metadata(with_metadata(data, "mobilevision", b'{"a": 1}'), "mobilevision", b'{"b": 2}')
    model = schema.Model.GetRootAs(twice, 0)
    names = [model.Metadata(i).Name().decode() for i in range(model.MetadataLength())]
    assert names.count("mobilevision") == 1
    path = toy_exports["tflite"].path.with_name("rewritten.tflite")
    path.write_bytes(twice)
    assert read_tflite_metadata(path) == '{"b": 2}'
    path.unlink()


@pytest.mark.slow
def test_fp16_onnx_graph_is_valid(tmp_path, toy_name):
    import onnx

    r = export(toy_name, "onnx", precision="fp16", out_dir=tmp_path)
    model = onnx.load(str(r.path))
    onnx.checker.check_model(model)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
