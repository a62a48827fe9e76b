"""Our .tflite in MediaPipe Tasks, unmodified: MediaPipe's own ImageClassifier loads a trained zoo classifier,
classifies real photos (tests/photos, public domain / CC0) with our class names, and its top-k scores agree with
``mobilevision.runtime.load(...).classify``. Also: the standard TFLite Metadata of the other tasks, the NHWC
input with the NCHW layout still loading, and the parser-version helper the MediaPipe wheel lacks."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mobilevision.cli import main

pytestmark = pytest.mark.slow   # real zoo models end to end (the quick set skips them)

try:
    import mediapipe  # noqa: F401
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.components.containers.rect import Rect  # noqa: F401
except ImportError as e:   # MediaPipe publishes wheels for Linux x86-64 / aarch64, macOS arm64 and Windows only
    pytestmark = pytest.mark.skip(reason=f"MediaPipe is not installed here ({e}): its wheels exist for Linux "
                                         "x86-64 / aarch64, macOS arm64 and Windows; pip install 'mobilevision[export]'")

PHOTOS = Path(__file__).resolve().parents[1] / "photos"
CLASSES = ("astronaut", "chelsea", "coffee", "rocket")
# MediaPipe resizes with its own bilinear filter (no antialiasing), Pillow (our runtime, and the Kotlin one)
# with an antialiased one: on these 128 x 96 photos going to 64 px the probabilities of the trained model
# differed by at most 0.03 on one machine and 0.11 on another (the trained weights differ with the CPU's
# arithmetic); allowed 0.2. Given our runtime's own resized pixels, MediaPipe's resize is the identity and the
# scores agree to float rounding: SAME_PIXELS_ATOL.
SCORE_ATOL = 0.2
SAME_PIXELS_ATOL = 1e-4


def _photo(name: str) -> np.ndarray:
    return np.asarray(Image.open(PHOTOS / f"{name}.jpg").convert("RGB"))


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Path:
    """skipnet_050 trained on random crops of the four photos (one class each), exported to .tflite."""
    root = tmp_path_factory.mktemp("mediapipe")
    rng = np.random.default_rng(0)
    for split, n in (("train", 16), ("val", 4)):
        for name in CLASSES:
            photo = _photo(name)
            folder = root / "data" / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                h, w = photo.shape[:2]
                s = int(rng.integers(64, 97))
                y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
                crop = photo[y:y + s, x:x + s]
                Image.fromarray(crop[:, ::-1] if rng.random() < 0.5 else crop).save(folder / f"{i}.png")
    run = root / "run"
    assert main(["train", "classify", "--model", "skipnet_050", "--data", str(root / "data"), "--epochs", "10",
                 "--batch-size", "8", "--imgsz", "64", "--lr", "0.003", "--warmup-epochs", "0",
                 "--out", str(run)]) == 0
    assert main(["export", str(run / "best.safetensors"), "-t", "tflite", "--out", str(root / "exports"),
                 "--no-accuracy"]) == 0
    (path,) = (root / "exports").glob("*.tflite")
    return path


def _mediapipe_top(path: Path, image: np.ndarray, k: int):
    import mediapipe as mp
    from mediapipe.tasks.python.core.base_options import BaseOptions

    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)), max_results=k)
    with vision.ImageClassifier.create_from_options(options) as c:
        result = c.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)))
    return [(x.index, x.category_name, x.score) for x in result.classifications[0].categories]


def test_mediapipe_classifies_real_photos_like_our_runtime(classifier):
    from mobilevision.runtime import load
    from mobilevision.runtime.tasks import classify as classify_task

    with load(classifier) as model:
        md = model.metadata
        assert md.labels == list(CLASSES) and md.scores == "probabilities"
        assert model.inputs[0].shape == [1, 64, 64, 3] and md.preprocessing.layout == "NHWC"
        pre = md.preprocessing
        right = 0
        for name in CLASSES:
            photo = _photo(name)
            # MediaPipe resizes the whole image it is given: give it what our runtime crops (the centre square
            # of the shorter side, crop / resize of it), so both see the same pixels and only the filters differ
            h, w = photo.shape[:2]
            side = round(min(h, w) * pre.crop[0] / pre.resize)
            y, x = (h - side) // 2, (w - side) // 2
            ours = model.classify(photo, top_k=4)
            theirs = _mediapipe_top(classifier, photo[y:y + side, x:x + side], 4)
            assert [c.label for c in ours][:1] == [t[1] for t in theirs][:1], (name, ours, theirs)
            assert {t[1] for t in theirs} <= set(CLASSES)           # our names, through MediaPipe's label file
            by_index = {t[0]: t[2] for t in theirs}
            for c in ours:
                assert abs(by_index[c.index] - c.score) <= SCORE_ATOL, (name, c, theirs)
            # the same pixels in both: only MediaPipe's normalisation (from our TFLite Metadata) and the model remain
            same = {t[0]: t[2] for t in _mediapipe_top(classifier, np.asarray(classify_task.resized(photo, pre)), 4)}
            for c in ours:
                assert abs(same[c.index] - c.score) <= SAME_PIXELS_ATOL, (name, c, same)
            right += ours[0].label == name
        assert right >= 3, "the classifier did not learn the four photos"


def test_the_standard_metadata_describes_the_classifier(classifier):
    from mobilevision.export.targets.tflite_metadata import writers
    from mobilevision.runtime import load

    writers()
    from mediapipe.tasks.python.metadata import metadata

    shown = metadata.MetadataDisplayer.with_model_file(str(classifier))
    md = json.loads(shown.get_metadata_json())
    graph = md["subgraph_metadata"][0]
    image = graph["input_tensor_metadata"][0]
    assert image["content"]["content_properties"]["color_space"] == "RGB"
    norm = image["process_units"][0]["options"]
    assert norm["mean"] == [0.0] and norm["std"] == [255.0]      # ImageNet's per-channel part is in the graph
    out = graph["output_tensor_metadata"][0]
    assert out["associated_files"][0]["type"] == "TENSOR_AXIS_LABELS"
    labels = shown.get_associated_file_buffer(out["associated_files"][0]["name"]).decode().splitlines()
    with load(classifier) as model:
        assert labels == model.metadata.labels
    assert md["min_parser_version"] == "1.0.0"


def test_other_tasks_carry_image_properties_and_normalisation(shared_exports):
    from mobilevision.export.targets.tflite_metadata import writers
    from mobilevision.runtime import load

    writers()
    from mediapipe.tasks.python.metadata import metadata

    r = shared_exports("landmarks_64")["tflite"]
    md = json.loads(metadata.MetadataDisplayer.with_model_file(str(r.path)).get_metadata_json())
    image = md["subgraph_metadata"][0]["input_tensor_metadata"][0]
    assert image["content"]["content_properties"]["color_space"] == "RGB"
    assert image["process_units"][0]["options"] == {"mean": [0.0], "std": [255.0]}
    with load(r.path) as model:       # and our runtime: NHWC, the per-channel normalisation in the graph
        assert model.inputs[0].shape == [1, 64, 64, 3]
        pts = model.detect_landmarks(np.full((80, 70, 3), 120, np.uint8))
        assert pts.shape == (r.metadata.landmarks.points, 2) and np.isfinite(pts).all()


def test_nchw_layout_still_exports_and_loads(classifier, tmp_path):
    """--layout NCHW writes the older layout; our runtime reads the layout from the metadata and answers alike."""
    from mobilevision.runtime import load

    run = classifier.parent.parent / "run"
    assert main(["export", str(run / "best.safetensors"), "-t", "tflite", "--layout", "nchw", "--out",
                 str(tmp_path), "--no-accuracy"]) == 0
    (nchw,) = tmp_path.glob("*.tflite")
    with load(nchw) as a, load(classifier) as b:
        assert a.inputs[0].shape == [1, 3, 64, 64] and a.metadata.preprocessing.layout == "NCHW"
        for name in CLASSES:
            x, y = a.classify(_photo(name), top_k=4), b.classify(_photo(name), top_k=4)
            assert [c.index for c in x] == [c.index for c in y]
            assert np.allclose([c.score for c in x], [c.score for c in y], atol=1e-5)


def test_layout_a_target_cannot_write_is_refused(one_line_error, tmp_path, toy_name):
    one_line_error(main(["export", toy_name, "-t", "tflite", "--layout", "NWHC", "--out", str(tmp_path)]),
                   "--layout", "NHWC or NCHW")
    one_line_error(main(["export", toy_name, "-t", "onnx", "--layout", "NHWC", "--out", str(tmp_path)]),
                   "writes image inputs as 'NHWC'", "drop --layout")
    assert not list(tmp_path.glob("*.onnx"))


def test_minimum_parser_version_follows_mediapipes_rules():
    """The Python stand-in for the helper the wheel lacks: 1.0.0 raised by each newer schema feature."""
    import flatbuffers
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    from mobilevision.export.targets.tflite_metadata import _minimum_parser_version

    def version(**graph_fields) -> str:
        md = fb.ModelMetadataT()
        graph = fb.SubGraphMetadataT()
        tensor = fb.TensorMetadataT()
        graph.inputTensorMetadata = [tensor]
        for k, v in graph_fields.items():
            if k == "tensor_file":
                tensor.associatedFiles = [v]
            else:
                setattr(graph, k, v)
        md.subgraphMetadata = [graph]
        b = flatbuffers.Builder(0)
        b.Finish(md.Pack(b), b"M001")
        return _minimum_parser_version(bytes(b.Output()))

    def file(kind, version=None):
        f = fb.AssociatedFileT()
        f.name, f.type, f.version = "x.txt", kind, version
        return f

    assert version() == "1.0.0"
    assert version(tensor_file=file(fb.AssociatedFileType.TENSOR_AXIS_LABELS)) == "1.0.0"
    assert version(tensor_file=file(fb.AssociatedFileType.VOCABULARY)) == "1.0.1"
    assert version(inputProcessUnits=[]) == "1.1.0"
    assert version(outputTensorGroups=[]) == "1.2.0"
    assert version(tensor_file=file(fb.AssociatedFileType.TENSOR_AXIS_LABELS, "2")) == "1.4.1"
    assert version(customMetadata=[]) == "1.5.0"
