"""SkipNet-M end to end: every target at fp32, parity proven on O(1) logits, runtimes agree,
the skip-block pools become plain 4x4 / 8x8 average pools in every format."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import mobilevision
from mobilevision.export import export_all
from mobilevision.runtime import load
from mobilevision.testing import calibrate_random_weights
from mobilevision.export.api import resolve_targets

pytestmark = pytest.mark.slow   # real zoo models end to end (the quick set skips them)


def _calibrated_skipnet_m() -> nn.Module:
    """Random weights with a trained network's activation scale. The official init alone gives
    logits of ~4e-8, where parity's absolute tolerance would pass anything."""
    torch.manual_seed(0)
    return calibrate_random_weights(mobilevision.create_model("skipnet_m"), seed=0, batches=1)


@pytest.fixture(scope="module")
def skipnet_exports(tmp_path_factory):
    out = tmp_path_factory.mktemp("skipnet")
    return {r.target: r for r in export_all(_calibrated_skipnet_m(), "all", out_dir=out)}


def test_skipnet_m_every_target_passes_parity(skipnet_exports):
    assert set(skipnet_exports) == set(resolve_targets("all"))
    for target, r in skipnet_exports.items():
        assert hasattr(r, "parity"), f"{target}: {getattr(r, 'error', '')}"
        assert r.parity.passed
        if target != "coreml":
            out = r.parity.outputs[0]
            assert out.reference_max_abs > 0.1            # the tolerance is not vacuous
            assert r.parity.numeric and out.max_abs < 1e-4 and out.cosine > 0.99999
            assert r.parity.top1_agreement == 1.0
    md = skipnet_exports["onnx"].metadata
    assert md.model == "skipnet_m" and md.params == 5_532_352 and md.macs == 247_765_824
    assert md.preprocessing.resize == 256 and md.preprocessing.crop == [224, 224]
    assert md.preprocessing.interpolation == "bilinear"
    assert md.label_set == "imagenet-1k" and md.num_classes == 1000 and md.outputs[0].shape == [1, 1000]


def test_skipnet_m_runtimes_agree(skipnet_exports):
    image = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    tops = []
    for target in ("onnx", "tflite", "openvino"):
        with load(skipnet_exports[target].path) as m:
            tops.append([c.index for c in m.classify(image, top_k=3)])
    assert tops[0] == tops[1] == tops[2]


def test_skip_pools_are_plain_average_pools(skipnet_exports):
    import onnx

    graph = onnx.load(str(skipnet_exports["onnx"].path)).graph
    pools = [tuple(a.ints) for n in graph.node if n.op_type == "AveragePool" for a in n.attribute
             if a.name == "kernel_shape"]
    assert sorted(pools) == [(4, 4), (8, 8)]
    assert skipnet_exports["coreml"].parity.structure["ops"].get("avg_pool") == 2
    assert _coreml_pool_kernels(skipnet_exports["coreml"].path) == [(4, 4), (8, 8)]


def _coreml_pool_kernels(path) -> list[tuple[int, ...]]:
    """kernel_sizes of every avg_pool in a Core ML program (read from the spec; no macOS needed)."""
    import coremltools as ct

    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    fn = spec.mlProgram.functions["main"]
    ops = fn.block_specializations[fn.opset].operations
    consts = {op.outputs[0].name: list(op.attributes["val"].immediateValue.tensor.ints.values)
              for op in ops if op.type == "const"}
    return sorted(tuple(consts[op.inputs["kernel_sizes"].arguments[0].name]) for op in ops if op.type == "avg_pool")
