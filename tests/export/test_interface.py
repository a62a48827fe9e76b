"""The artifact interface (export/interface.py): what a target's artifact takes and gives versus the model, the
conversions parity relies on, the graph wrapper that implements them, and the metadata fields that record them."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from mobilevision.errors import ArtifactError, ExportError
from mobilevision.export.interface import artifact_metadata, to_artifact_inputs, to_artifact_outputs
from mobilevision.export.metadata import ModelMetadata, Preprocessing, TensorSpec
from mobilevision.export.parity import parity_inputs
from mobilevision.export.targets.base import artifact_module
from mobilevision.runtime.tasks.classify import normalize, top_k

IMAGENET = Preprocessing(resize=37, crop=[32, 32], interpolation="bilinear")


def _md(task="classify", pre=IMAGENET) -> ModelMetadata:
    return ModelMetadata(task=task, model="m", target="", precision="fp32",
                         inputs=[TensorSpec("image", [1, 3, 32, 32], "float32", "NCHW")],
                         outputs=[TensorSpec("logits", [1, 5])], preprocessing=pre, labels=list("abcde"))


class Target:
    name = "t"


class Like(Target):
    def __init__(self, **kw):
        self.__dict__.update(kw)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 5)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


def test_a_target_without_declarations_presents_the_model_as_it_is():
    md = _md()
    out = artifact_metadata(md, Target())
    assert out.inputs == md.inputs and out.preprocessing == md.preprocessing and out.scores == "logits"
    s = parity_inputs(md, n=1)[0]
    assert to_artifact_inputs(s, md, out)[0] is s[0] or np.array_equal(to_artifact_inputs(s, md, out)[0], s[0])


@pytest.mark.parametrize("kind", ["uniform_nhwc", "model_nchw"])
def test_artifact_inputs_and_the_wrapped_module_compute_what_the_model_computes(kind):
    """For every interface: wrapper(artifact input) == softmax(model(model input)), on preprocessed images."""
    torch.manual_seed(0)
    net = Net().eval()
    md = _md()
    target = Like(layouts=("NHWC", "NCHW"), input_normalization="uniform", classifier_scores="probabilities") \
        if kind == "uniform_nhwc" else Like(input_normalization="model", classifier_scores="probabilities")
    art = artifact_metadata(md, target)
    wrapped, example = artifact_module(net, torch.zeros(1, 3, 32, 32), art, model_pre=md.preprocessing)
    assert list(example.shape) == art.inputs[0].shape
    for s in parity_inputs(md, n=3):
        x = to_artifact_inputs(s, md, art)[0]
        assert list(x.shape) == art.inputs[0].shape and x.dtype == np.dtype(art.inputs[0].dtype)
        with torch.no_grad():
            ref = to_artifact_outputs([net(torch.from_numpy(s[0])).numpy()], md, art)[0]
            got = wrapped(torch.from_numpy(x).float() if x.dtype == np.uint8 else torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, ref, atol=1e-6)
        assert np.isclose(got.sum(), 1.0, atol=1e-5)


def test_uniform_normalisation_moves_imagenets_per_channel_part_into_the_graph():
    art = artifact_metadata(_md(), Like(layouts=("NHWC", "NCHW"), input_normalization="uniform"))
    assert art.preprocessing.mean == [0.0] * 3 and art.preprocessing.std == [1.0] * 3
    assert art.inputs[0].shape == [1, 32, 32, 3] and art.preprocessing.layout == "NHWC"
    same = replace(IMAGENET, mean=[0.5] * 3, std=[0.5] * 3)   # already uniform: kept for the app
    assert artifact_metadata(_md(pre=same), Like(input_normalization="uniform")).preprocessing.mean == [0.5] * 3


def test_the_runtime_feeds_what_the_artifact_metadata_says():
    """runtime normalize() of an image == to_artifact_inputs(model-side normalize()) for every interface."""
    img = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    md = _md()
    for target in (Like(layouts=("NHWC", "NCHW"), input_normalization="uniform"), Like(input_normalization="model"),
                   Like(layouts=("NHWC", "NCHW"))):
        art = artifact_metadata(md, target)
        want = to_artifact_inputs([normalize(img, md.preprocessing)], md, art)[0]
        got = normalize(img, art.preprocessing)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), atol=1e-5)


def test_pixel_artifacts_refuse_inputs_that_are_not_images():
    md = _md()
    art = artifact_metadata(md, Like(input_normalization="model"))
    with pytest.raises(ExportError, match="takes image pixels"):
        to_artifact_inputs([np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)], md, art)


def test_a_layout_the_target_cannot_write_is_refused():
    with pytest.raises(ExportError, match="writes image inputs as NCHW, not 'NHWC'"):
        artifact_metadata(_md(), Target(), layout="NHWC")
    assert artifact_metadata(_md(), Like(layouts=("NHWC", "NCHW")), layout="NCHW").inputs[0].shape == [1, 3, 32, 32]


def test_non_image_inputs_and_other_tasks_keep_their_interface():
    raw = replace(_md(task="isp", pre=None), outputs=[TensorSpec("rgb", [1, 3, 64, 64])], labels=None)
    art = artifact_metadata(raw, Like(layouts=("NHWC", "NCHW"), input_normalization="uniform",
                                      classifier_scores="probabilities"))
    assert art.inputs == raw.inputs and art.outputs == raw.outputs and art.scores is None


def test_top_k_of_probabilities_is_not_softmaxed_again():
    p = np.array([[0.1, 0.6, 0.3]], np.float32)
    assert [round(c.score, 6) for c in top_k(p, 2, None, "probabilities")] == [0.6, 0.3]
    assert top_k(p, 1, None)[0].score < 0.6        # logits (old artifacts, no field): softmax applied
    for lie in ([[2.0, 5.0, -1.0]], [[0.5, 0.5, 0.5]], [[np.nan, 0.5, 0.5]]):   # metadata that lies about its output
        with pytest.raises(ArtifactError, match="says the output holds probabilities"):
            top_k(np.array(lie, np.float32), 2, None, "probabilities")


def test_metadata_fields_are_validated_and_old_files_mean_logits():
    md = replace(_md(), scores="probabilities")
    back = ModelMetadata.from_json(md.to_json())
    assert back.scores == "probabilities" and back.preprocessing.normalization == "app"
    d = json.loads(md.to_json())
    for path, value in ((("scores",), "softmax"), (("preprocessing", "normalization"), "none")):
        bad = json.loads(json.dumps(d))
        target = bad
        for k in path[:-1]:
            target = target[k]
        target[path[-1]] = value
        with pytest.raises(ArtifactError, match=path[-1]):
            ModelMetadata.from_json(json.dumps(bad))
    old = json.loads(md.to_json())
    del old["scores"], old["preprocessing"]["normalization"]
    old["schema_version"] = 5
    md5 = ModelMetadata.from_json(json.dumps(old))
    assert md5.scores is None and md5.preprocessing.normalization == "app"


@pytest.mark.slow
def test_tflite_export_without_mediapipe_warns_and_still_loads(toy_name, tmp_path, monkeypatch):
    """No mediapipe (a platform without its wheel): our JSON entry only, and a warning naming what is missing."""
    from mobilevision.export import export
    from mobilevision.export.targets import tflite_metadata
    from mobilevision.runtime import load

    def no_mediapipe():
        raise ImportError("No module named 'mediapipe'", name="mediapipe")

    monkeypatch.setattr(tflite_metadata, "writers", no_mediapipe)
    r = export(toy_name, "tflite", out_dir=tmp_path)
    assert any("MediaPipe Tasks will not load" in w and "mediapipe" in w for w in r.warnings), r.warnings
    with load(r.path) as m:
        assert len(m.classify(np.zeros((40, 50, 3), np.uint8), top_k=2)) == 2


@pytest.mark.slow
def test_layout_applies_to_the_targets_that_write_it(toy_name, tmp_path, capsys):
    """-t tflite -t onnx --layout NHWC: TFLite takes NHWC, ONNX keeps NCHW, and the CLI says so once."""
    from mobilevision.cli import main

    assert main(["export", toy_name, "-t", "tflite", "-t", "onnx", "--layout", "NHWC", "--out", str(tmp_path),
                 "--no-accuracy"]) == 0
    assert "onnx keep their own layout" in capsys.readouterr().err
    shapes = {p.suffix: ModelMetadata.from_json((p.parent / f"{p.name}.json").read_text()).inputs[0].shape
              for p in tmp_path.iterdir() if p.suffix in (".tflite", ".onnx")}
    assert shapes == {".tflite": [1, 64, 64, 3], ".onnx": [1, 3, 64, 64]}


def test_parity_of_an_output_that_is_zero_within_tolerance_ignores_its_cosine():
    """A random-init classifier's probabilities are uniform to 1e-7: centred, its log-probabilities are rounding
    noise, whose direction (cosine 0.2 seen on SkipNet-M's TFLite) means nothing; a real disagreement still fails."""
    from mobilevision.export.parity import compare

    rng = np.random.default_rng(0)
    n = 100
    uniform = [[np.full((1, n), 1.0 / n) * (1 + 1e-7 * rng.standard_normal((1, n)))] for _ in range(4)]
    other = [[np.full((1, n), 1.0 / n) * (1 + 1e-7 * rng.standard_normal((1, n)))] for _ in range(4)]
    outputs, _, passed = compare(uniform, other, ["probabilities"], "fp32", "classify", probabilities=True)
    assert passed and outputs[0].cosine < 0.9 and outputs[0].reference_max_abs < 1e-4
    logits = [[rng.standard_normal((1, n))] for _ in range(4)]
    shuffled = [[np.roll(s[0], 1, axis=1)] for s in logits]
    p = [[np.exp(s[0]) / np.exp(s[0]).sum()] for s in logits]
    q = [[np.exp(s[0]) / np.exp(s[0]).sum()] for s in shuffled]
    assert not compare(p, q, ["probabilities"], "fp32", "classify", probabilities=True)[2]
