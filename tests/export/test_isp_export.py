"""The ISP generators exported to every target: one graph from the packed RAW tensor to RGB in [0, 1],
parity in each runtime, and the RAW normalisation recorded in the metadata (schema 3)."""
from __future__ import annotations

import pytest

import mobilevision
from mobilevision.export import export_all
from mobilevision.export.metadata import SCHEMA_VERSION, ModelMetadata, read_sidecar
from mobilevision.export.api import resolve_targets
from mobilevision.testing import spread_out_isp

pytestmark = pytest.mark.slow   # real zoo models end to end (the quick set skips them)


@pytest.mark.parametrize("name", ["efficientisp", "robustisp", "rmfa_net_tiny"])
def test_isp_exports_with_parity(name, tmp_path, shared_exports):
    results = (shared_exports("efficientisp_32") if name == "efficientisp" else
               {r.target: r for r in export_all(spread_out_isp(name), "all", out_dir=tmp_path, imgsz=32)})
    assert set(results) == set(resolve_targets("all"))
    for target, r in results.items():
        md = read_sidecar(r.path)
        assert md.task == "isp" and md.preprocessing is None and md.schema_version == SCHEMA_VERSION
        assert md.inputs[0].name == "raw" and md.inputs[0].shape == [1, 4, 32, 32]
        assert md.outputs[0].name == "rgb" and md.outputs[0].shape == [1, 3, 64, 64]
        assert md.raw.packing == ["B", "G_R", "R", "G_B"]
        if target == "coreml":
            assert not r.parity.numeric  # prediction needs macOS; structure checked instead
        else:
            assert r.parity.passed and r.parity.outputs[0].max_abs < 1e-5, (target, r.parity.summary())
    card = mobilevision.get_model_card(name)
    raw = read_sidecar(results["onnx"].path).raw
    assert raw.black_level == list(card.raw_black_level) and raw.white_level == card.raw_white_level


def test_raw_metadata_round_trips_and_old_files_read():
    md = ModelMetadata.from_json(ModelMetadata(
        task="isp", model="efficientisp", target="onnx", precision="fp32", inputs=[], outputs=[],
        raw=mobilevision.export.metadata.RawInput(black_level=[62, 60, 58, 61], white_level=1023.0)).to_json())
    assert md.raw.black_level == [62, 60, 58, 61] and md.raw.clip is False
    old = {"task": "classify", "model": "emo_1m", "target": "onnx", "precision": "fp32", "inputs": [],
           "outputs": [], "schema_version": 2}
    assert ModelMetadata.from_dict(old).raw is None
