"""Core ML image models: an RGB ``ImageType`` input, classifier labels (``classifier_config``), description
strings, and the runtime backend's conversions. Checked structurally from the saved spec (prediction needs
macOS); the backend's conversions are pure functions, run here with fake Core ML results."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mobilevision.errors import ArtifactError, InputMismatch
from mobilevision.export import export
from mobilevision.export.api import QuantizeOptions
from mobilevision.export.metadata import METADATA_KEY, ModelMetadata, Preprocessing, TensorSpec
from mobilevision.export.targets.coreml import CoreMLTarget, ImageInput, _labels
from mobilevision.runtime.backends import coreml as backend

SIZE = 64
HALF = "toy_test_classifier_half_std"   # the toy classifier with mean = std = 0.5 on every channel


@pytest.fixture(scope="module")
def half_toy(toy_name) -> str:
    from mobilevision import create_model, registry

    toy_class = type(create_model(toy_name))   # conftest's ToyClassifier
    if HALF not in registry._REGISTRY:
        registry.register_model(registry.ModelCard(
            name=HALF, task="classify", input_size=(3, SIZE, SIZE), num_classes=3, labels=None,
            mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), description="test-only model, equal channel std"))(
            lambda num_classes=3, **kw: toy_class(num_classes))
    return HALF


@pytest.fixture(scope="module")
def exported(tmp_path_factory, toy_name, half_toy) -> dict:
    """{name: ExportResult} of Core ML fp32 exports: toy classifiers, SkipNet-M and a landmark model at 64."""
    out = tmp_path_factory.mktemp("coreml_image")
    return {"toy": export(toy_name, "coreml", out_dir=out),
            "half": export(half_toy, "coreml", out_dir=out),
            "skipnet_m": export("skipnet_m", "coreml", imgsz=SIZE, out_dir=out),
            "landmarks": export("landmarks_mnv2_035", "coreml", imgsz=SIZE, out_dir=out)}


def _spec(result):
    import coremltools as ct

    return ct.utils.load_spec(str(result.path))


def _op_names(spec) -> set[str]:
    (function,) = spec.mlProgram.functions.values()
    (block,) = function.block_specializations.values()
    return {o.name for op in block.operations for o in op.outputs}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["toy", "half", "skipnet_m", "landmarks"])
def test_image_input_is_rgb_image_type(exported, name):
    r = exported[name]
    spec = _spec(r)
    (feature,) = spec.description.input
    assert feature.name == "image" and feature.type.WhichOneof("Type") == "imageType"
    img = feature.type.imageType
    assert (img.width, img.height) == (SIZE, SIZE)
    assert type(img).ColorSpace.Name(img.colorSpace) == "RGB"
    embedded = ModelMetadata.from_json(spec.description.metadata.userDefined[METADATA_KEY])
    assert embedded.preprocessing.normalization == "model"
    assert embedded.inputs == [TensorSpec("image", [1, 3, SIZE, SIZE], "uint8", "NCHW")]
    assert r.parity.structure["inputs"] == [{"name": "image", "shape": [1, 3, SIZE, SIZE], "dtype": "UINT8",
                                             "type": "image", "width": SIZE, "height": SIZE, "color_space": "RGB"}]
    # off macOS the program is checked structurally against the metadata's interface
    assert r.parity.passed and not r.parity.numeric and "macOS" in r.parity.note
    assert [(o["name"], o["shape"]) for o in r.parity.structure["outputs"]] == \
        [(o.name, o.shape) for o in r.metadata.outputs]


@pytest.mark.parametrize("name", ["toy", "half", "skipnet_m"])
def test_classifier_carries_labels_and_probabilities(exported, name):
    r = exported[name]
    spec = _spec(r)
    md = ModelMetadata.from_json(spec.description.metadata.userDefined[METADATA_KEY])
    assert md.scores == "probabilities" and [o.name for o in md.outputs] == ["probabilities"]
    labels = md.labels if md.labels is not None else [str(i) for i in range(md.num_classes)]
    assert backend.class_labels(spec) == labels
    assert spec.description.predictedFeatureName == "classLabel"
    assert spec.description.predictedProbabilitiesName == "probabilities"
    kinds = {f.name: f.type.WhichOneof("Type") for f in spec.description.output}
    assert kinds == {"classLabel": "stringType", "probabilities": "dictionaryType"}
    structure = r.parity.structure
    assert structure["classifier"] == {"labels": len(labels), "label_output": "classLabel",
                                       "probabilities_output": "probabilities"}
    assert structure["outputs"] == [{"name": "probabilities", "shape": [1, len(labels)], "dtype": "DOUBLE",
                                     "type": "dictionary"}]
    assert structure["ops"].get("classify") == 1 and structure["ops"].get("softmax", 0) >= 1


def test_skipnet_labels_are_imagenet_names_and_normalised_in_graph(exported):
    from mobilevision.registry import imagenet1k_labels

    spec = _spec(exported["skipnet_m"])
    labels = backend.class_labels(spec)
    assert labels == list(imagenet1k_labels()) and len(labels) == 1000 and labels[0] != "0"
    # ImageNet's std differs per channel: one ImageType scale cannot normalise, the graph does
    assert exported["skipnet_m"].parity.structure["image_input"] == {
        "name": "image", "scale": 1.0, "bias": [0.0, 0.0, 0.0], "normalization_in_graph": True}
    assert not {"image__scaled__", "image__biased__"} & _op_names(spec)


def test_equal_std_normalises_in_the_image_type(exported):
    """mean = std = 0.5: scale = (1/255) / 0.5, bias = -0.5 / 0.5 on every channel, nothing in the graph."""
    image = exported["half"].parity.structure["image_input"]
    assert image["scale"] == pytest.approx(2 / 255, rel=1e-6)
    assert image["bias"] == pytest.approx([-1.0, -1.0, -1.0])
    assert image["normalization_in_graph"] is False
    assert {"image__scaled__", "image__biased__"} <= _op_names(_spec(exported["half"]))
    assert backend.class_labels(_spec(exported["half"])) == ["0", "1", "2"]   # no labels: class indices


def test_landmarks_is_an_image_model_not_a_classifier(exported):
    r = exported["landmarks"]
    spec = _spec(r)
    assert backend.class_labels(spec) is None and not spec.description.predictedFeatureName
    assert r.metadata.scores is None and r.metadata.preprocessing.normalization == "model"
    image = r.parity.structure["image_input"]
    assert image["scale"] == pytest.approx(1 / 255, rel=1e-6) and image["bias"] == [0.0, 0.0, 0.0]
    assert image["normalization_in_graph"] is False
    assert "classifier" not in r.parity.structure
    assert r.parity.structure["outputs"] == [{"name": "landmarks", "shape": [1, 68, 2], "dtype": "FLOAT32"}]


@pytest.mark.parametrize("name", ["toy", "landmarks"])
def test_description_strings(exported, name):
    r = exported[name]
    spec = _spec(r)
    short = spec.description.metadata.shortDescription
    assert short.startswith(f"{r.metadata.model} ") and "exported by mobilevision" in short
    assert ("image classifier" in short) == (name == "toy")
    described = {f.name: f.shortDescription for f in [*spec.description.input, *spec.description.output]}
    assert all(described.values()), described
    assert described["image"].startswith(f"RGB image, {SIZE}x{SIZE} pixels")
    assert r.parity.structure["descriptions"]["model"] == short


# ---------------------------------------------------------------- converter pieces

def _pre(mean, std, scale=1 / 255) -> ModelMetadata:
    md = ModelMetadata(task="classify", model="m", target="coreml", precision="fp32",
                       inputs=[TensorSpec("image", [1, 3, 8, 8], "uint8", "NCHW")],
                       outputs=[TensorSpec("probabilities", [1, 4])], scores="probabilities")
    md.preprocessing = Preprocessing(resize=8, crop=[8, 8], mean=list(mean), std=list(std), scale=scale,
                                     normalization="model")
    return md


def test_image_input_scale_and_bias():
    eq = ImageInput.for_metadata(_pre([0.5, 0.25, 0.0], [0.5, 0.5, 0.5]))
    assert eq.scale == pytest.approx(2 / 255) and eq.bias == pytest.approx([-1.0, -0.5, 0.0])
    assert not eq.normalization_in_graph
    imagenet = ImageInput.for_metadata(_pre([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]))
    assert (imagenet.scale, imagenet.bias, imagenet.normalization_in_graph) == (1.0, [0.0, 0.0, 0.0], True)
    app = _pre([0.0] * 3, [1.0] * 3)
    app.preprocessing.normalization = "app"
    assert ImageInput.for_metadata(app) is None and ImageInput.for_metadata(None) is None


def test_classifier_labels_fill_and_dedupe():
    md = _pre([0.0] * 3, [1.0] * 3)
    assert _labels(md) == ["0", "1", "2", "3"]
    md.labels = ["cat", "dog", "cat"]
    assert _labels(md) == ["cat", "dog", "cat (2)", "3"]
    md.scores = None
    assert _labels(md) is None


@pytest.mark.slow
def test_int8_keep_float_through_the_image_wrapper(tmp_path, toy_name):
    """The exported module is wrapped (ArtifactModule, child "model"): --keep-float still names the model's own
    modules, and the kept ops are found."""
    r = export(toy_name, "coreml", precision="int8", out_dir=tmp_path,
               quantize=QuantizeOptions(keep_float=("head",), accuracy=False))
    q = r.metadata.quantization
    assert q["kept_float_modules"] == ["head"] and len(q["kept_float"]) == 1   # the head's linear
    assert r.parity.passed and r.parity.structure["inputs"][0]["type"] == "image"
    assert backend.class_labels(_spec(r)) == [f"class_{i}" for i in range(10)]


@pytest.mark.slow
def test_cli_export_and_info(tmp_path, toy_name, capsys):
    from mobilevision.cli import main

    assert main(["export", toy_name, "-t", "coreml", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / f"{toy_name}.mlpackage"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["preprocessing"]["normalization"] == "model" and info["scores"] == "probabilities"
    assert info["inputs"][0]["dtype"] == "uint8" and info["parity"]["passed"]


# ---------------------------------------------------------------- runtime backend (pure, no macOS needed)

def test_backend_interface_from_spec(exported):
    inputs, outputs, labels = backend.interface(_spec(exported["toy"]))
    assert inputs == [TensorSpec("image", [1, 3, SIZE, SIZE], "uint8", "NCHW")]
    assert outputs == [TensorSpec("probabilities", [1, 10], "float32")]
    assert labels == [f"class_{i}" for i in range(10)]
    inputs, outputs, labels = backend.interface(_spec(exported["landmarks"]))
    assert outputs == [TensorSpec("landmarks", [1, 68, 2], "float32")] and labels is None


def test_pixels_to_image_both_layouts():
    spec = TensorSpec("image", [1, 3, 4, 5], "uint8", "NCHW")
    hwc = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    for array in (hwc.transpose(2, 0, 1)[None], hwc[None]):
        img = backend.pixels_to_image(array, spec)
        assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (5, 4)
        assert np.array_equal(np.asarray(img), hwc)
    with pytest.raises(InputMismatch, match="uint8"):
        backend.pixels_to_image(hwc.astype(np.float32)[None], spec)
    with pytest.raises(InputMismatch, match=r"\[1, 3, 4, 5\]"):
        backend.pixels_to_image(hwc, spec)


def test_probabilities_in_class_order():
    labels = ["cat", "dog", "bird"]
    fake = {"classLabel": "dog", "probabilities": {"bird": 0.25, "cat": 0.15, "dog": 0.6}}
    (probs,) = backend.from_prediction(fake, [TensorSpec("probabilities", [1, 3])], labels)
    assert probs.dtype == np.float32 and probs.shape == (1, 3)
    assert probs[0].tolist() == pytest.approx([0.15, 0.6, 0.25])
    with pytest.raises(ArtifactError, match="no 'bird'"):
        backend.ordered_probabilities({"cat": 0.5, "dog": 0.5}, labels)
    arrays = backend.from_prediction({"landmarks": np.zeros((1, 68, 2), np.float32)},
                                     [TensorSpec("landmarks", [1, 68, 2])], None)
    assert arrays[0].shape == (1, 68, 2)


def test_to_features_makes_images_of_image_inputs():
    spec = TensorSpec("image", [1, 3, 2, 2], "uint8", "NCHW")
    pixels = np.zeros((1, 3, 2, 2), np.uint8)
    feed = backend.to_features([pixels], [spec], {"image"})
    assert isinstance(feed["image"], Image.Image)
    raw = TensorSpec("raw", [1, 4, 2, 2])
    x = np.zeros((1, 4, 2, 2), np.float32)
    assert backend.to_features([x], [raw], set())["raw"] is x


def test_target_declares_the_image_interface():
    assert CoreMLTarget.input_normalization == "model" and CoreMLTarget.classifier_scores == "probabilities"
