"""Adversarial checks of the artifact interface the consumers take (export/interface.py): TFLite's NHWC input,
the softmax in classifier graphs, the standard TFLite Metadata MediaPipe reads, Core ML's class labels, and the
metadata fields (schema 6) that describe them.

Tests headed "Was a bug, fixed" failed on the first version of the interface (each reproduced a defect); the
others guard behaviour that was right from the start. Everything uses the test toy classifier (or a copy of it with another
card) and EfficientISP at 32 px, so the file runs in about a minute.
"""
from __future__ import annotations

import builtins
import io
import json
import shutil
import threading
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mobilevision.cli import main
from mobilevision.errors import ArtifactError, ExportError, MobileVisionError

IMG = np.random.default_rng(0).integers(0, 256, (50, 60, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------------------------- helpers

def _toy_class(toy_name):
    from mobilevision import create_model

    return type(create_model(toy_name))   # conftest's ToyClassifier


def _module(toy_name, n: int, labels, size=(3, 32, 32), name="adv_toy", cls=None, outputs: int | None = None,
            **card):
    """A toy classifier with ``outputs`` (default ``n``) classes and a card of its own (``num_classes`` n)."""
    from mobilevision.registry import ModelCard

    torch.manual_seed(0)
    m = (cls or _toy_class(toy_name))(outputs or n)
    m.model_card = ModelCard(name=name, task="classify", input_size=size, num_classes=n,
                             labels=tuple(labels) if labels is not None else None, label_set=None, **card)
    return m


def _label_file(path: Path) -> bytes:
    """The label file MediaPipe's writer packed into the zip it appends to the .tflite."""
    with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".txt")]
        return z.read(name)


def _mediapipe_labels(content: bytes) -> list[str]:
    """The label map MediaPipe builds from a label file (mediapipe/util/label_map_util.cc
    ``BuildLabelMapFromFiles``): split on '\\n', a trailing empty line dropped."""
    labels = content.decode("utf-8").split("\n")
    if labels[-1] == "":
        labels.pop()
    return labels


def _relabel(src: Path, dst: Path, edit) -> Path:
    """A copy of ``src`` (.tflite) whose embedded metadata ``edit`` changed, with a matching sidecar (a hostile
    user who knows the format)."""
    from mobilevision.export.integrity import artifact_digests, sidecar_text
    from mobilevision.export.metadata import METADATA_KEY, ModelMetadata, sidecar_path
    from mobilevision.export.targets.tflite import with_metadata
    from mobilevision.runtime.backends.litert import read_tflite_metadata

    d = json.loads(read_tflite_metadata(src))
    edit(d)
    dst.write_bytes(with_metadata(src.read_bytes(), METADATA_KEY, json.dumps(d).encode()))
    sidecar_path(dst).write_text(sidecar_text(ModelMetadata.from_dict(d), artifact_digests(dst)))
    return dst


def _one_line(e: BaseException) -> str:
    text = str(e)
    assert "\n" not in text.strip(), text
    return text


@pytest.fixture(scope="module")
def toy_tflite(tmp_path_factory, toy_name) -> dict:
    """{"nhwc": ExportResult (the default), "nchw": ExportResult (layout="nchw", lowercase)} of the toy."""
    from mobilevision.export import export

    out = tmp_path_factory.mktemp("consumers")
    return {"nhwc": export(toy_name, "tflite", out_dir=out),
            "nchw": export(toy_name, "tflite", out_dir=out, layout="nchw", name="toy_nchw")}


# ----------------------------------------------------------------------------------- layouts and the CLI

@pytest.mark.slow
def test_default_and_nchw_exports_present_what_their_metadata_says(toy_tflite):
    from mobilevision.runtime import load

    for key, shape in (("nhwc", [1, 64, 64, 3]), ("nchw", [1, 3, 64, 64])):
        r = toy_tflite[key]
        with load(r.path) as m:
            assert m.inputs[0].shape == shape == m.metadata.inputs[0].shape
            assert m.metadata.preprocessing.layout == key.upper() and m.metadata.scores == "probabilities"
            assert m.metadata.preprocessing.mean == [0.0] * 3 and m.metadata.preprocessing.std == [1.0] * 3
            p = m.predict(np.zeros(shape, np.float32))["probabilities"]
            assert abs(float(p.sum()) - 1.0) < 1e-5
    with load(toy_tflite["nhwc"].path) as a, load(toy_tflite["nchw"].path) as b:
        x, y = a.classify(IMG, top_k=10), b.classify(IMG, top_k=10)
        assert [c.index for c in x] == [c.index for c in y]
        np.testing.assert_allclose([c.score for c in x], [c.score for c in y], atol=1e-5)


@pytest.mark.slow
def test_layout_spellings_on_the_command_line(toy_name, tmp_path, one_line_error):
    from mobilevision.runtime import load

    assert main(["export", toy_name, "-t", "tflite", "--layout", "nhwc", "--out", str(tmp_path / "a")]) == 0
    (path,) = (tmp_path / "a").glob("*.tflite")
    with load(path) as m:
        assert m.inputs[0].shape == [1, 64, 64, 3]
    for bad in ("", " NHWC", "NWHC"):
        one_line_error(main(["export", toy_name, "-t", "tflite", "--layout", bad, "--out", str(tmp_path / "b")]),
                       "--layout")
    assert not (tmp_path / "b").exists() or not list((tmp_path / "b").glob("*.tflite"))


@pytest.mark.slow
def test_layout_nhwc_with_all_targets_writes_tflite_nhwc_and_no_traceback(toy_name, tmp_path, capsys):
    """Today the NCHW-only targets each fail with one line naming --layout (the help text says "for targets that
    write both", so skipping them would be fine too); the TFLite artifact is NHWC either way."""
    from mobilevision.runtime import load

    rc = main(["export", toy_name, "-t", "all", "--layout", "NHWC", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert "Traceback" not in err and rc in (0, 2)
    with load(tmp_path / f"{toy_name}.tflite") as m:
        assert m.inputs[0].shape == [1, 64, 64, 3]
    for target, suffix in (("onnx", ".onnx"), ("openvino", ".xml"), ("coreml", ".mlpackage")):
        written = (tmp_path / f"{toy_name}{suffix}").exists()
        failed = [l for l in err.splitlines() if l.startswith(f"error: {target} ")]
        assert written or (len(failed) == 1 and "--layout" in failed[0]), (target, err)


@pytest.mark.slow
def test_layout_with_a_raw_input_isp_model_keeps_nchw(tmp_path, one_line_error):
    from mobilevision.runtime import load

    assert main(["export", "efficientisp", "-t", "tflite", "--imgsz", "32", "--layout", "NHWC",
                 "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("*.tflite")
    with load(path) as m:
        assert m.inputs[0].shape == [1, 4, 32, 32] and m.metadata.preprocessing is None
        rgb = m.process_raw(np.random.default_rng(0).integers(0, 1024, (70, 90)).astype(np.uint16))
        assert rgb.shape == (70, 90, 3) and np.isfinite(rgb).all()
    one_line_error(main(["export", "efficientisp", "-t", "onnx", "--imgsz", "32", "--layout", "NHWC",
                         "--out", str(tmp_path / "onnx")]), "NHWC", "--layout")


# Was a bug, fixed: export/interface.py artifact_metadata formats the layout unquoted ({layout}, not {layout!r}):
# an API layout with a newline makes a two-line error, '' reads 'not : drop --layout'
def test_api_layout_error_quotes_the_value_on_one_line(toy_name, tmp_path):
    from mobilevision.export import export

    with pytest.raises(ExportError) as e:
        export(toy_name, "tflite", out_dir=tmp_path, layout="NHWC\n")
    assert "\n" not in str(e.value) and "'NHWC\\n'" in str(e.value)


# -------------------------------------------------------------------------------- metadata that lies

@pytest.mark.parametrize("lie", ["nchw_file_claims_nhwc", "nhwc_file_claims_nchw", "tflite_claims_model_normalises"])
def test_embedded_metadata_that_lies_about_the_input_is_refused_in_one_line(toy_tflite, tmp_path, lie):
    """A hand-edited embedded entry (with a sidecar that matches it): classify refuses with one line, never runs
    the model on transposed or unnormalised data. (The message blames the input rather than the metadata.)"""
    from mobilevision.runtime import load

    def nhwc(d):
        d["inputs"][0].update(shape=[1, 64, 64, 3], layout="NHWC")
        d["preprocessing"]["layout"] = "NHWC"

    def nchw(d):
        d["inputs"][0].update(shape=[1, 3, 64, 64], layout="NCHW")
        d["preprocessing"]["layout"] = "NCHW"

    src, edit = {"nchw_file_claims_nhwc": ("nchw", nhwc), "nhwc_file_claims_nchw": ("nhwc", nchw),
                 "tflite_claims_model_normalises": (
                     "nhwc", lambda d: d["preprocessing"].__setitem__("normalization", "model"))}[lie]
    if lie == "tflite_claims_model_normalises":   # contradicts itself (float input, model normalises): refused on load
        with pytest.raises(MobileVisionError) as e:
            _relabel(toy_tflite[src].path, tmp_path / "lie.tflite", edit)
        _one_line(e.value)
        return
    path = _relabel(toy_tflite[src].path, tmp_path / "lie.tflite", edit)
    with load(path) as m:
        with pytest.raises(MobileVisionError) as e:
            m.classify(IMG, top_k=2)
    _one_line(e.value)


def test_a_hand_edited_sidecar_does_not_override_the_embedded_interface(toy_tflite, tmp_path):
    from mobilevision.export.integrity import artifact_digests, sidecar_text
    from mobilevision.export.metadata import ModelMetadata
    from mobilevision.runtime import load

    path = tmp_path / "s.tflite"
    shutil.copy(toy_tflite["nhwc"].path, path)
    d = json.loads(toy_tflite["nhwc"].metadata.to_json())
    d["inputs"][0].update(shape=[1, 3, 64, 64], layout="NCHW")
    d["preprocessing"].update(layout="NCHW")
    d["scores"] = "logits"
    (tmp_path / "s.tflite.json").write_text(sidecar_text(ModelMetadata.from_dict(d), artifact_digests(path)))
    with load(path) as m, load(toy_tflite["nhwc"].path) as ref:
        assert m.metadata.preprocessing.layout == "NHWC" and m.metadata.scores == "probabilities"
        assert [(c.index, c.score) for c in m.classify(IMG, 3)] == [(c.index, c.score) for c in ref.classify(IMG, 3)]


@pytest.mark.slow
def test_probabilities_claimed_on_a_logits_output_is_one_error_line(toy_name, tmp_path, one_line_error):
    import onnx

    from mobilevision.export import export
    from mobilevision.export.integrity import artifact_digests, sidecar_text
    from mobilevision.export.metadata import METADATA_KEY, ModelMetadata, sidecar_path
    from mobilevision.runtime import load

    r = export(toy_name, "onnx", out_dir=tmp_path)
    assert r.metadata.scores == "logits"
    m = onnx.load(str(r.path))
    (prop,) = [p for p in m.metadata_props if p.key == METADATA_KEY]
    d = json.loads(prop.value)
    d["scores"] = "probabilities"
    prop.value = json.dumps(d)
    lie = tmp_path / "lie.onnx"
    onnx.save(m, str(lie))
    sidecar_path(lie).write_text(sidecar_text(ModelMetadata.from_dict(d), artifact_digests(lie)))
    with load(lie) as model:
        with pytest.raises(ArtifactError, match="says the output holds probabilities"):
            model.classify(IMG)
    from PIL import Image

    Image.fromarray(IMG).save(tmp_path / "img.png")
    one_line_error(main(["classify", str(lie), str(tmp_path / "img.png")]), "probabilities", "re-export")


# ------------------------------------------------------------------------------------------ consumers

@pytest.mark.slow
def test_other_runtimes_and_tools_take_both_layouts(toy_tflite, tmp_path):
    """OpenVINO reading the NHWC .tflite agrees with LiteRT; bench and the golden-vector writer run both."""
    from mobilevision.runtime import load
    from mobilevision.runtime.golden import main as golden

    nhwc, nchw = toy_tflite["nhwc"].path, toy_tflite["nchw"].path
    with load(nhwc) as a, load(nhwc, backend="openvino") as b:
        assert b.inputs[0].shape == [1, 64, 64, 3]
        x, y = a.classify(IMG, 3), b.classify(IMG, 3)
        assert [c.index for c in x] == [c.index for c in y]
        np.testing.assert_allclose([c.score for c in x], [c.score for c in y], atol=1e-5)
    assert main(["bench", str(nhwc), str(nchw), "--runs", "3", "--json", str(tmp_path / "bench.json")]) == 0
    rows = json.loads((tmp_path / "bench.json").read_text())
    assert [r["error"] for r in rows] == [None, None]
    assert [list(r["input_shapes"].values()) for r in rows] == [[[1, 64, 64, 3]], [[1, 3, 64, 64]]]
    assert golden([str(nhwc), str(nchw), "--out", str(tmp_path / "golden")]) == 0
    manifest = json.loads((tmp_path / "golden" / "golden.json").read_text())
    shapes = [m["cases"][0]["tensor"]["shape"] for m in manifest["models"]]
    assert shapes == [[1, 64, 64, 3], [1, 3, 64, 64]]


def test_mediapipe_takes_nhwc_and_refuses_nchw_clearly(toy_tflite):
    pytest.importorskip("mediapipe")
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    def top(path):
        options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)), max_results=3)
        with vision.ImageClassifier.create_from_options(options) as c:
            r = c.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(IMG[:, :50])))
        return r.classifications[0].categories

    cats = top(toy_tflite["nhwc"].path)
    assert len(cats) == 3 and all(c.category_name == f"class_{c.index}" for c in cats)
    assert 0 < sum(c.score for c in cats) <= 1.0 + 1e-5
    with pytest.raises(Exception, match="depth = 3 or 4"):
        top(toy_tflite["nchw"].path)


@pytest.mark.slow
def test_int8_keep_float_head_through_the_nhwc_wrapper(toy_name, tmp_path):
    """--keep-float names the model's own modules (head), not the wrapper's (model.head); the softmax stays
    float and the output is a distribution."""
    from ai_edge_litert import schema_py_generated as schema

    from mobilevision.export import export
    from mobilevision.export.api import QuantizeOptions
    from mobilevision.runtime import load

    q = QuantizeOptions(calib_n=8, accuracy=False, keep_float=("head",))
    r = export(toy_name, "tflite", precision="int8", out_dir=tmp_path, quantize=q)
    assert r.metadata.inputs[0].shape == [1, 64, 64, 3]
    assert r.metadata.quantization["kept_float_modules"] == ["head"]
    model = schema.ModelT.InitFromPackedBuf(bytearray(r.path.read_bytes()), 0)
    graph = model.subgraphs[0]
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    kinds = {}
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        kinds.setdefault(names[max(code.builtinCode, code.deprecatedBuiltinCode)], []).append(
            {graph.tensors[i].type for i in op.inputs if i >= 0})
    assert kinds["FULLY_CONNECTED"] == [{schema.TensorType.FLOAT32}]          # the head kept float
    assert all(t == {schema.TensorType.FLOAT32} for t in kinds["SOFTMAX"])
    assert any(schema.TensorType.INT8 in t for t in kinds["CONV_2D"])         # the rest quantised
    with load(r.path) as m:
        from mobilevision.runtime.tasks.classify import preprocess

        p = m.predict(preprocess(IMG, m.metadata.preprocessing))["probabilities"]
        assert p.dtype == np.float32 and abs(float(p.sum()) - 1.0) < 1e-4
        assert len(m.classify(IMG, 3)) == 3
    for wrong in ("model.head", "model"):
        with pytest.raises(ExportError, match="matches no module"):
            export(toy_name, "tflite", precision="int8", out_dir=tmp_path / "x",
                   quantize=replace(q, keep_float=(wrong,)))


@pytest.mark.slow
@pytest.mark.parametrize("n", [1, 2])
def test_one_and_two_class_classifiers(toy_name, tmp_path, n):
    from mobilevision.export import export
    from mobilevision.runtime import load

    labels = ["only"] if n == 1 else ["no", "yes"]
    r = export(_module(toy_name, n, labels, name=f"adv_{n}class"), "tflite", out_dir=tmp_path)
    assert r.parity.passed and r.parity.numeric
    assert _mediapipe_labels(_label_file(r.path)) == labels
    with load(r.path) as m:
        top = m.classify(IMG, top_k=5)
    assert len(top) == n and abs(sum(c.score for c in top) - 1.0) < 1e-5
    assert {c.label for c in top} == set(labels)


@pytest.mark.slow
def test_duplicate_unicode_and_spaced_labels_reach_mediapipes_label_file(toy_name, tmp_path):
    from mobilevision.export import export
    from mobilevision.runtime import load

    labels = ["x", "x", "café 猫 🐱", " padded ", "a\u2028b"]
    r = export(_module(toy_name, 5, labels, name="adv_labels"), "tflite", out_dir=tmp_path)
    assert _mediapipe_labels(_label_file(r.path)) == labels
    with load(r.path) as m:
        assert m.metadata.labels == labels
        assert {c.label for c in m.classify(IMG, top_k=5)} == set(labels)


def test_a_label_with_a_newline_is_refused_before_converting(toy_name, tmp_path):
    from mobilevision.export import export

    with pytest.raises(ExportError, match="control characters") as e:
        export(_module(toy_name, 2, ["a\nb", "c"], name="adv_newline"), "tflite", out_dir=tmp_path)
    assert "\n" not in str(e.value).replace("'a\\nb'", "")
    assert not list(tmp_path.glob("*.tflite"))


@pytest.mark.slow
def test_non_square_input_through_the_api(toy_name, tmp_path):
    from mobilevision.export import export
    from mobilevision.runtime import load

    r = export(_module(toy_name, 3, "abc", size=(3, 32, 48), name="adv_wide"), "tflite", out_dir=tmp_path)
    assert r.metadata.inputs[0].shape == [1, 32, 48, 3] and r.metadata.preprocessing.crop == [32, 48]
    with load(r.path) as m:
        assert m.inputs[0].shape == [1, 32, 48, 3]
        for shape in ((50, 60, 3), (90, 20, 3)):
            assert len(m.classify(np.full(shape, 100, np.uint8), 3)) == 3


def test_the_parser_version_stand_in_installs_once_under_threads():
    pytest.importorskip("mediapipe")
    import importlib
    import sys

    from mobilevision.export.targets import tflite_metadata as tm

    errors: list[str] = []
    for trial in range(25):
        for k in [k for k in sys.modules if k.startswith("mediapipe.tasks.cc")]:
            if getattr(sys.modules[k], "__file__", None) is None:   # only our stand-ins, never a real module
                del sys.modules[k]
        start = threading.Barrier(4)

        def worker():
            start.wait()
            try:
                tm.writers()
                v = importlib.import_module(tm._VERSION_MODULE)
                assert callable(v.GetMinimumMetadataParserVersion)
            except Exception as e:   # noqa: BLE001
                errors.append(f"{trial}: {type(e).__name__}: {e}")

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors[:3]


# ------------------------------------------------------------------------------------------------- bugs

# Was a bug, fixed: tflite_metadata.with_standard_metadata writes an empty last label as an empty last line;
# MediaPipe drops it, its label map is one short and ImageClassifier.classify fails (RET_CHECK num_classes == label
# map size), then hangs on close
@pytest.mark.slow
def test_an_empty_last_label_keeps_mediapipes_label_map_complete(toy_name, tmp_path):
    from mobilevision.export import export

    r = export(_module(toy_name, 3, ["a", "b", ""], name="adv_empty_last"), "tflite", out_dir=tmp_path)
    assert len(_mediapipe_labels(_label_file(r.path))) == 3


# Was a bug, fixed: a card with more labels than the head has outputs (num_classes 10, head of 5) exports silently;
# the TFLite label file keeps all 10 names (Core ML's _labels truncates to the outputs), so MediaPipe fails (5 vs
# 10)
def test_labels_beyond_the_outputs_are_cut_or_refused(toy_name, tmp_path):
    from mobilevision.export import export

    try:
        r = export(_module(toy_name, 10, "abcdefghij", outputs=5, name="adv_card_lies"), "tflite", out_dir=tmp_path)
    except ExportError as e:
        _one_line(e)
        return
    assert len(_mediapipe_labels(_label_file(r.path))) == r.metadata.outputs[0].shape[-1] == 5


# Was a bug, fixed: export/targets/coreml.py _labels renames a repeated name to '<name> (<i>)' without checking
# that name is free: ['x (2)', 'x', 'x'] gives ['x (2)', 'x', 'x (2)']; Core ML's {label: probability} then holds 2
# keys for 3 classes (the runtime refuses every prediction)
def test_coreml_class_labels_are_unique_whatever_the_names():
    from mobilevision.export.metadata import ModelMetadata, TensorSpec
    from mobilevision.export.targets.coreml import _labels

    for names in (["x (2)", "x", "x"], ["a", "", ""], ["x", "x", "x (1)", "x (1)"]):
        md = ModelMetadata(task="classify", model="m", target="coreml", precision="fp32", inputs=[],
                           outputs=[TensorSpec("probabilities", [1, len(names)])], labels=names,
                           scores="probabilities")
        got = _labels(md)
        assert len(set(got)) == len(names), (names, got)
        assert [g for g, n in zip(got, names) if names.count(n) == 1] == [n for n in names if names.count(n) == 1]


# Was a bug, fixed: MediaPipe's writer opens the label file with the locale's encoding (open(path, 'w')): on
# Windows (cp1252) 'café' is written as Latin-1 (MediaPipe reads invalid UTF-8) and '猫' makes the export fail
@pytest.mark.slow
def test_the_label_file_is_utf8_whatever_the_locale(toy_name, tmp_path, monkeypatch):
    pytest.importorskip("mediapipe")
    from mobilevision.export import export
    from mobilevision.export.targets import tflite_metadata

    tflite_metadata.writers()
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer

    def windows_open(file, mode="r", *args, **kwargs):   # Python's default text encoding on Windows
        if "b" not in mode and not args:
            kwargs.setdefault("encoding", "cp1252")
        return builtins.open(file, mode, *args, **kwargs)

    monkeypatch.setattr(metadata_writer, "open", windows_open, raising=False)
    labels = ["café", "b"]
    r = export(_module(toy_name, 2, labels, name="adv_cp1252"), "tflite", out_dir=tmp_path)
    assert _mediapipe_labels(_label_file(r.path)) == labels


# Was a bug, fixed: base.ArtifactModule.forward applies torch.softmax to the model's whole output: a classifier
# with a second output (logits, aux) exported to ONNX before and still does, but TFLite and Core ML fail
# ('softmax(): argument must be Tensor, not tuple')
@pytest.mark.slow
def test_a_classifier_with_two_outputs_exports_to_tflite(toy_name, tmp_path):
    from mobilevision.export import export
    from mobilevision.runtime import load

    class TwoOutputs(_toy_class(toy_name)):
        def forward(self, x):
            y = super().forward(x)
            return y, y * 2.0 + 1.0

    r = export(_module(toy_name, 4, None, cls=TwoOutputs, name="adv_two_outputs", output_names=("logits", "aux")),
               "tflite", out_dir=tmp_path)
    with load(r.path) as m:
        out = m.predict(np.zeros(m.inputs[0].shape, np.float32))
    first, aux = out.values()
    assert abs(float(first.sum()) - 1.0) < 1e-5 and aux.shape == (1, 4)


# Was a bug, fixed: a classifier whose logits are (1, N, 1, 1) (a conv head, no flatten) gets softmax over the last
# axis (size 1): the TFLite artifact outputs all ones, parity passes (the reference is transformed the same way,
# compare() sees zeros), the export succeeds; classify then refuses it and MediaPipe scores every class 1.0
@pytest.mark.slow
def test_a_classifier_with_4d_logits_is_softmaxed_over_its_classes(toy_name, tmp_path):
    from mobilevision.export import export
    from mobilevision.runtime import load

    class ConvHead(_toy_class(toy_name)):
        def forward(self, x):
            return super().forward(x)[:, :, None, None]

    try:
        r = export(_module(toy_name, 4, None, cls=ConvHead, name="adv_4d"), "tflite", out_dir=tmp_path)
    except ExportError as e:   # refusing (one line) is a fix too
        _one_line(e)
        return
    with load(r.path) as m:
        p = m.predict(np.zeros(m.inputs[0].shape, np.float32))["probabilities"]
        assert abs(float(p.sum()) - 1.0) < 1e-5
        assert len(m.classify(IMG, 2)) == 2


# Was a bug, fixed: exports from several threads of one process fail: torch.export (used by litert-torch and
# torch.onnx) keeps global tracing state, so each reports 'could not convert' (ProxyTorchDispatchMode slot already
# occupied / pop empty mode stack); a process-wide lock around the converters would serialise them
@pytest.mark.slow
def test_four_threads_exporting_at_once(toy_name, tmp_path):
    from mobilevision.export import export

    start = threading.Barrier(4)
    errors: list[str] = []

    def worker(i: int):
        start.wait()
        try:
            export(toy_name, "tflite", out_dir=tmp_path / str(i), layout="NHWC" if i % 2 else "NCHW")
        except Exception as e:   # noqa: BLE001
            errors.append(f"{i}: {type(e).__name__}: {str(e)[:160]}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
