"""Does int8 pay: every int8 export is timed against the fp32 program it was quantised from, in its runtime,
recorded in its metadata, and a slower int8 artifact is reported with its slowest op types."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from mobilevision.export import api as export_api
from mobilevision.export import speed as sp

SPEED_TOY = "toy_speed_classifier"


class Tiny(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU())
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.head(self.body(x).mean((2, 3)))


@pytest.fixture(scope="module")
def speed_toy() -> str:
    from mobilevision import registry

    registry._ensure_loaded()
    if SPEED_TOY not in registry._REGISTRY:
        registry.register_model(registry.ModelCard(
            name=SPEED_TOY, task="classify", input_size=(3, 32, 32), num_classes=10,
            labels=tuple(str(i) for i in range(10)), label_set="digits", crop_pct=1.0,
            description="test-only model"))(lambda num_classes=10, **kw: Tiny(num_classes))
    return SPEED_TOY


OPTS = dict(calib_n=8, eval_n=8)


@pytest.mark.parametrize("target, profiled", [("onnx", True), ("openvino", True), ("tflite", False)])
def test_int8_export_is_timed_against_its_fp32_program(speed_toy, tmp_path, require_target, target, profiled):
    require_target(target)
    r = export_api.export(speed_toy, target, precision="int8", out_dir=tmp_path,
                          quantize=export_api.QuantizeOptions(**OPTS))
    s = r.speed
    assert s is not None and s.runtime == {"onnx": "ort", "openvino": "openvino", "tflite": "litert"}[target] and sp.MIN_RUNS <= s.runs <= sp.MAX_RUNS
    assert s.fp32_ms > 0 and s.int8_ms > 0
    recorded = json.loads(r.sidecar.read_text())["quantization"]["speed"]
    assert recorded["ratio"] == pytest.approx(s.int8_ms / s.fp32_ms, abs=1e-3) and recorded["runs"] == s.runs
    if profiled:   # the runtime's own profiler named the int8 graph's op types
        assert s.slow_ops and all(o["ms"] >= 0 and o["count"] >= 1 for o in s.slow_ops) and s.profiler is None
    else:
        # LiteRT: no profiler in its Python package; what its XNNPACK delegate took of the int8 graph instead
        assert s.slow_ops == [] and "no per-op profiler" in s.profiler and "XNNPACK runs the whole int8 graph" in s.profiler
    # the fp32 program and the profiler's trace lived in the scratch folder only
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f.name for f in [*r.files, r.sidecar])
    assert (r.speed.warning() is not None) == (s.ratio >= sp.NOT_FASTER)
    assert (r.speed.warning() in r.warnings) if r.speed.warning() else not any("not faster" in w for w in r.warnings)


def test_no_speed_check_skips_the_timing(speed_toy, tmp_path):
    r = export_api.export(speed_toy, "onnx", precision="int8", out_dir=tmp_path,
                          quantize=export_api.QuantizeOptions(**OPTS, speed=False))
    assert r.speed is None and "speed" not in r.metadata.quantization


def test_fp32_and_fp16_are_not_timed(speed_toy, tmp_path):
    r = export_api.export(speed_toy, "onnx", precision="fp16", out_dir=tmp_path,
                          quantize=export_api.QuantizeOptions(**OPTS, accuracy=False))
    assert r.speed is None and "speed" not in (r.metadata.quantization or {})


def test_slower_int8_warns_with_ratio_and_ops():
    slow = sp.SpeedReport("ort", fp32_ms=2.56, int8_ms=3.67, runs=20,
                          slow_ops=[{"op_type": "QuantizeLinear", "ms": 0.9, "share": 0.31, "count": 12}])
    w = slow.warning()
    assert w.startswith("int8: not faster than fp32 in ort") and "x1.43" in w and "20 runs" in w
    assert "QuantizeLinear 0.9 ms (31%, 12 ops)" in w and "keep fp32 or fp16" in w
    fast = sp.SpeedReport("ort", fp32_ms=2.56, int8_ms=1.2, runs=20)
    assert fast.warning() is None and "x0.47" in fast.summary()
    level = sp.SpeedReport("litert", fp32_ms=2.0, int8_ms=2.0, runs=5, profiler="litert has no per-op profiler here")
    assert "x1.00" in level.warning() and "no per-op profiler" in level.warning()
    assert "may still pay on CPUs with int8 dot-product" in level.warning()


def test_the_warning_knows_whether_this_cpu_has_int8_dot_products():
    """On a CPU with VNNI (this project's CI VM has it) the advice to try a VNNI CPU would be wrong."""
    assert sp.int8_dot_product("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni avx512_bf16\n") == "avx512_vnni"
    assert sp.int8_dot_product("Features\t: fp asimd asimddp\n") == "asimddp"
    assert sp.int8_dot_product("flags\t: fpu sse avx2 fma\n") is None
    vnni = sp.SpeedReport("openvino", fp32_ms=7.95, int8_ms=8.39, runs=40, int8_dot="avx512_vnni")
    assert "this CPU has int8 dot-product instructions (avx512_vnni)" in vnni.warning()
    assert "may still pay" not in vnni.warning() and vnni.to_dict()["int8_dot"] == "avx512_vnni"


def test_a_slow_int8_artifact_is_reported_through_the_cli(speed_toy, tmp_path, monkeypatch, capsys):
    from mobilevision.cli import main

    real = sp.measure

    def slower(*a, **k):   # the runtime made int8 slower: the export must say so, not hand it over silently
        rep = real(*a, **k)
        rep.int8_ms = rep.fp32_ms * 1.5
        return rep
    monkeypatch.setattr(sp, "measure", slower)
    assert main(["export", speed_toy, "-t", "onnx", "-p", "int8", "--calib-n", "8", "--eval-n", "8",
                 "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "onnx int8 speed: int8" in captured.out and "x1.50" in captured.out
    assert "WARNING" in captured.err and "not faster than fp32" in captured.err and "x1.50" in captured.err
    assert (tmp_path / f"{SPEED_TOY}_int8.onnx").is_file()


def test_timing_failure_is_a_warning_not_a_lost_artifact(speed_toy, tmp_path, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("profiler exploded\nsecond line")
    monkeypatch.setattr(sp, "measure", broken)
    r = export_api.export(speed_toy, "onnx", precision="int8", out_dir=tmp_path,
                          quantize=export_api.QuantizeOptions(**OPTS))
    assert r.speed is None and r.path.is_file()
    assert any(w == "int8: could not time it against fp32 (RuntimeError: profiler exploded)" for w in r.warnings)
