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
    # (the shared fixture also asserts that no converter edited the detector: coremltools' passes once
    # shifted teacher_mean in place)
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
