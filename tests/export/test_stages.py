"""The export pipeline's stages, each run alone on a record: what it needs from earlier stages, what it adds."""
from __future__ import annotations

import pytest

from mobilevision.errors import ExportError, ExportParityError, UnknownTarget
from mobilevision.export import stages
from mobilevision.export.api import QuantizeOptions, export_prepared, prepare
from mobilevision.export.targets import TARGETS, get_target


@pytest.fixture(scope="module")
def prep(toy_name):
    return prepare(toy_name, imgsz=64)


def _record(prep, tmp_path, target="onnx", precision="fp32", **kw):
    r = stages.plan(prep, target, precision, tmp_path, None, QuantizeOptions(**kw), None)
    stages.scratch(r)
    return r


def test_the_pipeline_is_the_named_stages_in_order():
    assert [s.__name__ for s in stages.STAGES] == ["calibrate", "convert", "save", "validate", "parity", "accuracy",
                                                   "speed", "finalise"]


def test_plan_refuses_before_anything_is_written(prep, tmp_path):
    with pytest.raises(UnknownTarget, match="unknown precision"):
        stages.plan(prep, "onnx", "fp8", tmp_path, None, QuantizeOptions(), None)
    with pytest.raises(ExportError, match="--keep-float applies to --precision int8 only"):
        stages.plan(prep, "onnx", "fp32", tmp_path, None, QuantizeOptions(keep_float=("head",)), None)
    taken = tmp_path / f"{stages.artifact_stem(prep, 'fp32', None)}.onnx"
    taken.mkdir()
    with pytest.raises(ExportError, match="exists and is a folder"):
        stages.plan(prep, "onnx", "fp32", tmp_path, None, QuantizeOptions(), None)
    assert list(tmp_path.iterdir()) == [taken]


def test_plan_asks_the_target_whether_it_can_export_here(prep, tmp_path, monkeypatch):
    cls = type(get_target("onnx"))
    monkeypatch.setattr(cls, "unavailable", lambda self: "needs the 'onnx' package, which is not installed: pip ...")
    with pytest.raises(ExportError, match="target onnx cannot export on this machine: needs the 'onnx' package"):
        stages.plan(prep, "onnx", "fp32", tmp_path, None, QuantizeOptions(), None)


def test_calibrate_reads_only_for_int8(prep, tmp_path):
    r = _record(prep, tmp_path)
    stages.calibrate(r)
    assert r.calibration is None
    r = _record(prep, tmp_path, precision="int8", calib_n=3)
    stages.calibrate(r)
    assert len(r.calibration.inputs) == 3 and r.calibration.inputs[0].shape == (1, 3, 64, 64)
    assert any("only 3 calibration inputs" in w for w in r.warnings)


@pytest.mark.slow
def test_stages_up_to_parity_write_nothing_final(prep, tmp_path):
    r = _record(prep, tmp_path)
    for stage in (stages.calibrate, stages.convert, stages.save, stages.validate, stages.parity):
        stage(r)
    assert r.path.parent == r.work and r.path.exists()
    assert r.structure["ops"] and r.structure["opset"] >= 17
    assert r.report.passed and r.report.numeric and len(r.actual) == len(r.reference) == 4
    assert r.md.parity["passed"] is True
    assert [p.name for p in tmp_path.iterdir()] == [r.work.name]   # only the scratch folder
    stages.accuracy(r)                                             # fp32 without fp32_accuracy: nothing to do
    assert r.accuracy is None
    stages.finalise(r)
    assert r.result.path == tmp_path / f"{r.stem}.onnx" and r.result.path.exists()
    assert r.result.sidecar.exists() and r.result.parity.passed


@pytest.mark.slow
def test_int8_of_a_model_without_signal_is_refused_for_its_weights(prep, tmp_path, monkeypatch):
    """fp32 outputs that carry no signal (an untrained zoo model) are found while calibrating; when int8 then
    disagrees, the refusal names the weights, not the quantiser (no --keep-float hint)."""
    import numpy as np

    monkeypatch.setattr(stages, "torch_outputs", lambda module, xs: [[np.full((1, 10), 3e-7, np.float32)] for _ in xs])
    r = _record(prep, tmp_path, precision="int8", calib_n=3, accuracy=False, speed=False)
    stages.calibrate(r)
    assert "near zero" in r.degenerate and any("int8 needs trained weights" in w for w in r.warnings)
    for stage in (stages.convert, stages.save, stages.validate):
        stage(r)
    real = stages.run_artifact
    monkeypatch.setattr(stages, "run_artifact", lambda *a: ([[-o for o in s] for s in real(*a)[0]], None))
    with pytest.raises(ExportParityError, match=r"cannot be int8: the fp32 model's outputs are all near zero") as e:
        stages.parity(r)
    assert "give --weights" in str(e.value) and "--keep-float" not in str(e.value)


@pytest.mark.slow
def test_parity_raises_on_a_runtime_that_disagrees(prep, tmp_path, monkeypatch):
    r = _record(prep, tmp_path)
    for stage in (stages.convert, stages.save, stages.validate):
        stage(r)
    real = stages.run_artifact
    monkeypatch.setattr(stages, "run_artifact", lambda *a: ([[o * 2 + 1 for o in s] for s in real(*a)[0]], None))
    with pytest.raises(ExportParityError, match="fails parity against PyTorch"):
        stages.parity(r)


@pytest.mark.slow
def test_export_prepared_removes_the_scratch_folder_when_a_stage_fails(prep, tmp_path, monkeypatch):
    def broken(r):
        raise ExportError("boom")
    monkeypatch.setattr(stages, "STAGES", (stages.convert, stages.save, broken))
    with pytest.raises(ExportError, match="boom"):
        export_prepared(prep, "onnx", out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_all_means_the_targets_that_run_on_a_usual_machine(monkeypatch):
    from mobilevision.export.api import resolve_targets

    assert resolve_targets("all") == [n for n in TARGETS if getattr(get_target(n), "in_all", True)]
    cls = type(get_target("coreml"))
    monkeypatch.setattr(cls, "in_all", False, raising=False)
    assert "coreml" not in resolve_targets("all") and resolve_targets("coreml") == ["coreml"]
