"""The fused EfficientAD-S detector exported to every target: parity on the map and on the score,
and the runtime's detect_anomaly gives the same answer in every runtime."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mobilevision.runtime import load
from mobilevision.testing import calibrated_efficientad
from mobilevision.export.api import resolve_targets

pytestmark = pytest.mark.slow   # real zoo models end to end (the quick set skips them)


@pytest.fixture(scope="module")
def detector_exports(shared_exports):
    # exported from weights saved as a training run saves them (their run card carries thresholds); the
    # parity checks below would catch a converter editing the detector in place (coremltools' passes once
    # shifted teacher_mean)
    return shared_exports("efficientad")


def test_every_target_passes_parity_on_map_and_score(detector_exports):
    assert set(detector_exports) == set(resolve_targets("all"))
    for target, r in detector_exports.items():
        assert hasattr(r, "parity"), f"{target}: {getattr(r, 'error', '')}"
        assert r.parity.passed
        if target != "coreml":
            amap, score = r.parity.outputs
            assert (amap.name, score.name) == ("anomaly_map", "score")
            assert score.reference_max_abs > 0.05 and amap.reference_max_abs > 0.05  # not vacuous
            assert amap.max_abs < 1e-4 and score.max_abs < 1e-4
    md = detector_exports["onnx"].metadata
    assert md.task == "anomaly" and [o.name for o in md.outputs] == ["anomaly_map", "score"]
    assert md.outputs[0].shape == [1, 1, 256, 256] and md.inputs[0].shape == [1, 3, 256, 256]
    pre = md.preprocessing
    assert pre.resize_mode == "stretch" and pre.mean == [0.0, 0.0, 0.0] and pre.std == [1.0, 1.0, 1.0]


def test_detect_anomaly_agrees_across_runtimes_and_with_torch(detector_exports):
    image = np.random.default_rng(0).integers(0, 256, (300, 420, 3), dtype=np.uint8)  # not square
    results = []
    for target in ("onnx", "tflite", "openvino"):
        with load(detector_exports[target].path) as m:
            results.append(m.detect_anomaly(image, threshold=0.05))
    for r in results:
        assert r.anomaly_map.shape == (300, 420) and r.anomaly_map.dtype == np.float32
        assert abs(r.score - results[0].score) < 1e-4 and r.is_anomalous == (r.score > 0.05)
    # the torch detector on the stretched image gives the same score
    from PIL import Image

    x = np.asarray(Image.fromarray(image).resize((256, 256), Image.Resampling.BILINEAR), np.float32) / 255
    with torch.no_grad():
        _, score = calibrated_efficientad()(torch.from_numpy(x.transpose(2, 0, 1))[None])
    assert abs(score.item() - results[0].score) < 1e-4


def test_detect_anomaly_refuses_a_classifier(toy_exports):
    from mobilevision.errors import MobileVisionError

    with load(toy_exports["onnx"].path) as m, pytest.raises(MobileVisionError, match="not 'anomaly'"):
        m.detect_anomaly(np.zeros((32, 32, 3), np.uint8))


def test_every_artifact_carries_the_runs_thresholds_and_the_runtime_uses_them(detector_exports):
    """The weights' run card holds F1-optimal thresholds (as training writes them): every target's metadata
    carries them, and detect_anomaly decides with them unless the caller gives a threshold."""
    import json

    from mobilevision.errors import MobileVisionError

    card = json.loads((detector_exports["onnx"].path.parent / "run" / "best.json").read_text())["thresholds"]
    for target, r in detector_exports.items():
        assert r.metadata.anomaly is not None, target
        assert (r.metadata.anomaly.image, r.metadata.anomaly.pixel) == (card["image"], card["pixel"]), target
    image = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    with load(detector_exports["onnx"].path) as m:
        own = m.detect_anomaly(image)
        given = m.detect_anomaly(image, threshold=own.score + 1.0)
        assert own.threshold == card["image"] and own.is_anomalous == (own.score > card["image"])
        assert own.pixel_threshold == card["pixel"]
        np.testing.assert_array_equal(own.anomalous_pixels, own.anomaly_map > card["pixel"])
        assert given.threshold == own.score + 1.0 and given.is_anomalous is False
        with pytest.raises(MobileVisionError, match="finite"):
            m.detect_anomaly(image, threshold=float("nan"))
