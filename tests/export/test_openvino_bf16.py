"""OpenVINO bf16 exports: an fp32 IR checked, recorded and run in bf16; other targets refuse bf16."""
from __future__ import annotations

import pytest

from mobilevision import runtime
from mobilevision.cli import main
from mobilevision.export import export
from mobilevision.export.api import QuantizeOptions
from mobilevision.export.parity import TOLERANCES
from mobilevision.export.targets import TARGETS, get_target

NO_BF16 = [t for t in TARGETS if "bf16" not in get_target(t).precisions]


def _cpu_computes_bf16() -> bool:
    try:
        import openvino as ov
    except ImportError:
        return False
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


# a bf16 artifact computes in bf16 only on CPUs with bf16 units (AVX512-BF16, AMX); elsewhere OpenVINO runs it in
# f32, and the export, the runtime and the parity report say so instead of claiming bf16
COMPUTED = "bf16" if _cpu_computes_bf16() else "fp32"


@pytest.fixture(scope="module")
def bf16_export(tmp_path_factory, toy_name):
    """The toy exported to OpenVINO at bf16, with the task metric before/after on a few held-out inputs."""
    out = tmp_path_factory.mktemp("ov_bf16")
    return export(toy_name, "openvino", precision="bf16", out_dir=out, quantize=QuantizeOptions(eval_n=8))


def test_bf16_tolerance_sits_between_fp16_and_int8():
    bf16, fp16, int8 = TOLERANCES["bf16"], TOLERANCES["fp16"], TOLERANCES["int8"]
    assert fp16.rtol < bf16.rtol < int8.rtol        # 8 mantissa bits: looser than fp16's 11
    assert int8.min_cosine < bf16.min_cosine < 1.0


def test_only_openvino_offers_bf16():
    assert "bf16" in get_target("openvino").precisions
    assert NO_BF16, "every target offers bf16: the refusal test below tests nothing"


@pytest.mark.slow
def test_bf16_export_is_an_fp32_ir_marked_bf16(bf16_export):
    r = bf16_export
    assert r.path.name.endswith("_bf16.xml") and r.metadata.precision == "bf16"
    runtime_md = runtime.load(r.path).metadata
    assert runtime_md.precision == "bf16"
    import openvino as ov

    weights = {op.get_output_element_type(0).get_type_name() for op in ov.Core().read_model(str(r.path)).get_ordered_ops()
               if op.get_type_name() == "Constant" and op.get_output_element_type(0).is_real()}
    assert weights == {"f32"}, weights   # weights stay f32 in the .bin; only the compute is bf16


def test_bf16_parity_is_checked_in_bf16(bf16_export):
    p = bf16_export.parity
    assert p.numeric and p.passed and p.precision == "bf16"
    assert p.computed_precision == COMPUTED
    assert p.tolerance == vars(TOLERANCES["bf16"])
    fp32_allowed = TOLERANCES["fp32"].atol + TOLERANCES["fp32"].rtol * p.outputs[0].reference_max_abs
    if COMPUTED == "bf16":
        assert p.outputs[0].max_abs > fp32_allowed   # really computed in bf16: past what fp32 arithmetic would differ
    else:
        assert p.outputs[0].max_abs <= fp32_allowed
        assert any("no bf16 support here" in w for w in bf16_export.warnings), bf16_export.warnings
    assert bf16_export.metadata.parity["computed_precision"] == COMPUTED


def test_bf16_export_reports_the_task_metric(bf16_export):
    acc = bf16_export.accuracy
    assert acc is not None and acc.precision == "bf16" and acc.samples == 8
    assert 0.99 < acc.agreement["cosine"] < 1.0   # measured against fp32 PyTorch on held-out data, in bf16
    assert bf16_export.metadata.quantization["accuracy"]["precision"] == "bf16"
    assert "bf16" in bf16_export.metadata.quantization["scheme"]


def test_fp32_openvino_export_records_fp32_computed(toy_exports):
    p = toy_exports["openvino"].parity
    assert p.computed_precision == "fp32"
    assert toy_exports["openvino"].metadata.parity["computed_precision"] == "fp32"


def test_runtime_runs_a_bf16_artifact_in_bf16_and_fp32_in_fp32(bf16_export, toy_exports):
    with runtime.load(bf16_export.path) as m:
        assert m.backend.precision() == COMPUTED
    with runtime.load(bf16_export.path, backend="openvino", threads=1) as m:
        assert m.backend.precision() == COMPUTED
    with runtime.load(toy_exports["openvino"].path) as m:
        assert m.backend.precision() == "fp32"


def test_bf16_artifact_runs_in_bf16_without_its_sidecar(bf16_export, tmp_path):
    import shutil

    for f in bf16_export.files:   # the .xml / .bin alone: the embedded metadata says bf16
        shutil.copy(f, tmp_path / f.name)
    with runtime.load(tmp_path / bf16_export.path.name) as m:
        assert m.metadata.precision == "bf16" and m.backend.precision() == COMPUTED


@pytest.mark.parametrize("target", NO_BF16)
def test_bf16_is_refused_in_one_line_by_other_targets(target, toy_name, tmp_path, one_line_error):
    rc = main(["export", toy_name, "-t", target, "-p", "bf16", "--out", str(tmp_path)])
    one_line_error(rc, target, "does not support bf16", "fp32")
    assert not list(tmp_path.iterdir())


def test_bf16_is_offered_by_the_cli_help(capsys):
    assert main(["export", "--help"]) == 0
    assert "bf16" in capsys.readouterr().out
