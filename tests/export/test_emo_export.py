"""EMO-1M end to end: every target at fp32, parity proven, runtime and torch agree."""
from __future__ import annotations

import numpy as np
import pytest

from mobilevision.export import export_all
from mobilevision.runtime import load
from mobilevision.export.api import resolve_targets
from mobilevision.export.targets import TARGETS

pytestmark = pytest.mark.slow   # real zoo models end to end (the quick set skips them)


@pytest.fixture(scope="module")
def emo_exports(tmp_path_factory):
    out = tmp_path_factory.mktemp("emo")
    return {r.target: r for r in export_all("emo_1m", "all", out_dir=out)}


def test_emo_1m_every_target_passes_parity(emo_exports):
    assert set(emo_exports) == set(resolve_targets("all"))
    for target, r in emo_exports.items():
        assert hasattr(r, "parity"), f"{target}: {getattr(r, 'error', '')}"
        assert r.parity.passed
        if target != "coreml":
            assert r.parity.numeric and r.parity.outputs[0].max_abs < 1e-3 and r.parity.top1_agreement == 1.0
    md = emo_exports["onnx"].metadata
    assert md.model == "emo_1m" and md.params == 1_361_168 and 250e6 < md.macs < 270e6
    assert md.preprocessing.resize == 256 and md.preprocessing.interpolation == "bicubic"
    assert md.label_set == "imagenet-1k" and md.num_classes == 1000


def test_emo_1m_runtimes_agree(emo_exports):
    image = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    tops = []
    for target in ("onnx", "tflite", "openvino"):
        with load(emo_exports[target].path) as m:
            tops.append([c.index for c in m.classify(image, top_k=3)])
    assert tops[0] == tops[1] == tops[2]


def test_coreml_program_contains_attention(emo_exports):
    ops = emo_exports["coreml"].parity.structure["ops"]
    # 9 attention softmaxes + the classifier's (Core ML classifiers end in probabilities)
    assert ops.get("softmax", 0) == 10 and ops.get("matmul", 0) >= 18 and "layer_norm" in ops
