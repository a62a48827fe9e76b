"""ExecuTorch target: .pte with the XNNPACK delegate, metadata in a constant method, parity in ExecuTorch's own
runtime, the delegation read back from the written file; the other delegates' targets are asked for by name."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mobilevision.errors import ExportError
from mobilevision.export import api as export_api
from mobilevision.export.metadata import ModelMetadata
from mobilevision.export.targets import TARGETS, get_target
from mobilevision.runtime import load
from mobilevision.runtime.backends import SUFFIX_BACKENDS

pytestmark = pytest.mark.slow   # real zoo models end to end (the quick set skips them)

EXTRA = ("executorch-coreml", "executorch-vulkan", "executorch-qnn")


@pytest.fixture(autouse=True)
def _needs_executorch(require_target):
    require_target("executorch")


@pytest.fixture(scope="module")
def fp32(toy_name, tmp_path_factory):
    return export_api.export(toy_name, "executorch", out_dir=tmp_path_factory.mktemp("et_fp32"))


@pytest.fixture(scope="module")
def int8(toy_name, tmp_path_factory):
    q = export_api.QuantizeOptions(calib_n=8, eval_n=8)
    return export_api.export(toy_name, "executorch", precision="int8", out_dir=tmp_path_factory.mktemp("et_int8"),
                             quantize=q)


def test_registered_as_a_target_and_a_runtime():
    t = get_target("executorch")
    assert (t.name, t.suffix, t.runtime) == ("executorch", ".pte", "executorch")
    assert SUFFIX_BACKENDS[".pte"] == ("executorch",)
    assert "executorch" in export_api.resolve_targets("all")
    for name in EXTRA:   # other delegates: by name only, each with its own reason where it cannot run here
        assert name in TARGETS and name not in export_api.resolve_targets("all")
        extra = get_target(name)
        assert extra.in_all is False and extra.suffix == ".pte" and extra.runtime == "executorch"
        why = extra.numeric_parity_unavailable()
        assert isinstance(why, str) and "\n" not in why and "runtime" in why


def test_fp32_parity_in_executorch_and_metadata_readable(fp32, toy_name):
    rep = fp32.parity
    assert fp32.path.suffix == ".pte" and rep.numeric and rep.passed and rep.runtime == "executorch"
    (o,) = rep.outputs
    assert o.name == "logits" and o.max_abs < 1e-5 and o.reference_max_abs > 0
    with load(fp32.path) as m:
        assert m.backend.name == "executorch"
        assert m.metadata.model == toy_name and m.metadata.target == "executorch"
        assert m.metadata.parity["passed"] is True       # the second save's metadata is the one inside
        embedded = json.loads(m.backend.embedded_metadata())
    sidecar = json.loads(fp32.sidecar.read_text())
    sidecar.pop("files")
    assert embedded == sidecar


def test_delegation_report_read_from_the_file(fp32):
    s = fp32.parity.structure
    assert s["inputs"] == [{"name": "image", "shape": [1, 3, 64, 64], "dtype": "float32"}]
    assert s["outputs"] == [{"name": "logits", "shape": [1, 10], "dtype": "float32"}]
    assert s["methods"] == ["forward", "mobilevision_metadata"]
    d = s["delegation"]
    assert d["partitions"]["XnnpackBackend"] >= 1 and s["ops"]["XnnpackBackend"] == d["partitions"]["XnnpackBackend"]
    assert d["portable_ops"] == sum(d["portable"].values())
    assert "aten::native_layer_norm.out" in d["portable"]   # XNNPACK takes no LayerNorm in executorch 1.5
    assert {"Conv2d", "FullyConnected", "Softmax"} <= set(d["xnnpack_ops"])   # decoded from the XNNPACK payloads
    assert d["xnnpack_quantized_tensors"] == 0
    side = ModelMetadata.from_json(fp32.sidecar.read_text())
    assert side.parity["structure"]["delegation"] == d      # what `mobilevision info` shows


def test_metadata_rewrite_keeps_the_program_bytes(fp32):
    """``save`` swaps the constant method's string in the emitted program; nothing else moves."""
    from mobilevision.export.targets.executorch import with_metadata

    data = fp32.path.read_bytes()
    with load(fp32.path) as m:
        text = m.backend.embedded_metadata()
    other = with_metadata(data, '{"x": 1}')
    assert other != data and with_metadata(other, text) == data


def test_int8_calibrated_by_the_pipeline_delegates_quantized_ops(int8):
    rep = int8.parity
    assert rep.numeric and rep.passed and rep.outputs[0].cosine > 0.99
    quant = int8.metadata.quantization
    assert quant["tool"].startswith("torchao") and "XNNPACKQuantizer" in quant["tool"]
    assert quant["calibration"]["inputs"] == 8 and quant["calibration_samples"] == 8
    d = rep.structure["delegation"]
    assert d["xnnpack_quantized_tensors"] > 0 and d["xnnpack_ops"].get("Convert", 0) > 0   # int8 inside XNNPACK
    assert not any("quantize" in op for op in d["portable"])   # no (de)quantise left to the portable kernels


def test_int8_keep_float_leaves_the_head_float(int8, toy_name, tmp_path):
    q = export_api.QuantizeOptions(calib_n=4, eval_n=4, keep_float=("head",), accuracy=False)
    r = export_api.export(toy_name, "executorch", precision="int8", out_dir=tmp_path, quantize=q)
    assert r.metadata.quantization["kept_float"] == ["head"]
    kept, full = r.parity.structure["delegation"], int8.parity.structure["delegation"]
    assert 0 < kept["xnnpack_quantized_tensors"] < full["xnnpack_quantized_tensors"]


def test_int8_keep_float_naming_no_module_is_one_error(toy_name, tmp_path):
    q = export_api.QuantizeOptions(calib_n=2, keep_float=("heads",), accuracy=False)
    with pytest.raises(ExportError, match="keep-float 'heads'"):
        export_api.export(toy_name, "executorch", precision="int8", out_dir=tmp_path, quantize=q)
    assert not list(tmp_path.glob("*.pte"))


def test_fp16_computes_in_half_with_float32_io(toy_name, tmp_path, fp32):
    r = export_api.export(toy_name, "executorch", precision="fp16", out_dir=tmp_path,
                          quantize=export_api.QuantizeOptions(accuracy=False))
    assert r.parity.passed and r.metadata.quantization["scheme"].startswith("fp16")
    assert r.parity.structure["inputs"][0]["dtype"] == "float32" and r.parity.structure["outputs"][0]["dtype"] == "float32"
    assert r.parity.outputs[0].max_abs > 10 * fp32.parity.outputs[0].max_abs   # really fp16, not fp32 again


def test_nhwc_layout(toy_name, tmp_path):
    r = export_api.export(toy_name, "executorch", out_dir=tmp_path, layout="NHWC")
    assert r.parity.passed and r.parity.structure["inputs"][0]["shape"] == [1, 64, 64, 3]
    with load(r.path) as m:
        assert m.inputs[0].layout == "NHWC" and m.predict(np.zeros((1, 64, 64, 3), np.float32))["logits"].shape == (1, 10)


def test_int8_dynamic_batch_refused_before_converting(toy_name, tmp_path):
    """A dynamic batch is a bounded fp32/fp16 program (tests/export/test_own_model.py); int8 is calibrated at
    batch 1: refused in one line, nothing written."""
    with pytest.raises(ExportError, match="calibrated and checked at batch 1"):
        export_api.export(toy_name, "executorch", precision="int8", out_dir=tmp_path, dynamic_batch=True)
    assert not list(tmp_path.glob("*.pte"))
