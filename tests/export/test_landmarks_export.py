"""The landmark detector exported to every target: crop in, input-pixel landmarks out, parity in each runtime,
the landmark block of the metadata (schema 4), and the runtime's crop / map-back against the torch path."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import mobilevision
from mobilevision.data.faces import FacePose, render_face
from mobilevision.data.landmarks import FLIP_PAIRS, crop_resize, extent_box
from mobilevision.errors import InputMismatch, MobileVisionError
from mobilevision.export.metadata import ModelMetadata, read_sidecar
from mobilevision.runtime import load
from mobilevision.runtime.tasks.landmarks import crop_image, to_image
from mobilevision.export.api import resolve_targets
from mobilevision.export.targets import TARGETS

pytestmark = pytest.mark.slow   # real zoo models end to end (the quick set skips them)

SIZE = 64


@pytest.fixture(scope="module")
def exported(shared_exports):
    results = shared_exports("landmarks_64")   # landmarks_mnv2_035, seed 0, at SIZE
    torch.manual_seed(0)
    return mobilevision.create_model("landmarks_mnv2_035"), results


def test_landmark_exports_with_parity(exported):
    _, results = exported
    assert set(results) == set(resolve_targets("all"))
    for target, r in results.items():
        md = read_sidecar(r.path)
        layout = [1, SIZE, SIZE, 3] if target == "tflite" else [1, 3, SIZE, SIZE]   # TFLite takes NHWC images
        assert md.task == "landmarks" and md.inputs[0].shape == layout
        assert md.outputs[0].name == "landmarks" and md.outputs[0].shape == [1, 68, 2]
        assert md.preprocessing.resize_mode == "stretch" and md.preprocessing.mean == [0.0, 0.0, 0.0]
        assert md.landmarks.points == 68 and md.landmarks.coordinates == "input_pixels"
        assert md.landmarks.eye_corners == [36, 45]
        assert sorted(map(tuple, md.landmarks.flip_pairs)) == sorted(FLIP_PAIRS[68])
        if target == "coreml":
            assert not r.parity.numeric
        else:
            assert r.parity.passed, (target, r.parity.summary())


@pytest.mark.parametrize("target", ["onnx", "tflite", "openvino"])
def test_runtime_detects_landmarks_in_image_pixels(exported, target):
    model, results = exported
    face = render_face(np.random.default_rng(5), 160, FacePose())
    box = extent_box(face.landmarks, 12.0)
    crop, _ = crop_resize(face.image, face.landmarks, box, SIZE)
    with torch.no_grad():
        expected = model(torch.from_numpy(crop.transpose(2, 0, 1)[None].copy()).float() / 255)[0].double().numpy()
    with load(results[target].path) as m:
        got = m.detect_landmarks(face.image, box=box)
        whole = m.detect_landmarks(face.image)
    np.testing.assert_allclose(got, to_image(expected, box, SIZE, SIZE), atol=2e-3)
    assert whole.shape == (68, 2)


def test_crop_and_map_back_are_inverse():
    pts = np.array([[10.0, 20.0], [50.5, 7.25]])
    box = (4.0, -3.0, 84.0, 57.0)
    _, in_crop = crop_resize(np.zeros((40, 60, 3), np.uint8), pts, box, 32)
    np.testing.assert_allclose(to_image(in_crop, box, 32, 32), pts, atol=1e-9)
    img = np.full((10, 10, 3), 200, np.uint8)
    out = crop_image(img, (-10.5, -0.5, 9.5, 9.5), 20, 10)          # left half of the box is outside
    assert (out[:, :9] == 0).all() and (out[:, 11:] == 200).all()


def test_runtime_bad_input(exported):
    _, results = exported
    with load(results["onnx"].path) as m:
        with pytest.raises(InputMismatch, match="no area"):
            m.detect_landmarks(np.zeros((32, 32, 3), np.uint8), box=(10, 10, 5, 20))
        with pytest.raises(InputMismatch, match="4 finite numbers"):
            m.detect_landmarks(np.zeros((32, 32, 3), np.uint8), box=(0, 0, float("nan"), 20))
        with pytest.raises(MobileVisionError, match="not 'isp'"):
            m.process_raw(np.zeros((64, 64), np.uint16))


def test_landmark_metadata_round_trips():
    md = ModelMetadata(task="landmarks", model="landmarks_mnv2", target="onnx", precision="fp32", inputs=[],
                       outputs=[], landmarks=mobilevision.export.metadata.LandmarkOutput(points=98))
    back = ModelMetadata.from_json(md.to_json())
    assert back.landmarks.points == 98 and back.landmarks.coordinates == "input_pixels"


def test_landmarks_command_prints_points_and_writes_an_overlay(exported, tmp_path, capsys, one_line_error):
    from PIL import Image

    from mobilevision.cli import main

    face = render_face(np.random.default_rng(2), 128, FacePose())
    photo = tmp_path / "face.png"
    Image.fromarray(face.image).save(photo)
    onnx = str(exported[1]["onnx"].path)
    assert main(["landmarks", onnx, str(photo), "--box", "10,10,118,118", "-o", str(tmp_path / "o.png")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 68 and all(len(line.split()) == 2 for line in lines)
    assert Image.open(tmp_path / "o.png").size == (128, 128)
    one_line_error(main(["landmarks", onnx, str(photo), "--box", "1,2,3"]), "4 finite numbers")
    one_line_error(main(["landmarks", onnx, str(photo), "--box", "a,b,c,d"]), "--box")
    one_line_error(main(["landmarks", onnx, str(photo), "-o", str(tmp_path / "o.gif")]), ".png or .jpg")
    one_line_error(main(["landmarks", onnx, str(tmp_path / "missing.png")]), "cannot read image")
