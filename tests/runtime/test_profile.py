"""Benchmark runner: rows, statistics, interleaving, errors; parsers of the external tools."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from mobilevision.errors import ArtifactError, BackendUnavailable
from mobilevision.runtime.profile import BenchResult, benchmark, plan, write_json

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rows(toy_exports):
    order: list[tuple[str, str]] = []
    paths = [toy_exports[t].path for t in ("onnx", "tflite")]
    result = benchmark(paths, backends=["ort", "litert", "openvino"], threads=1, runs=6, warmup=1, order_log=order)
    return result, order, paths


def test_one_row_per_compatible_pair(rows):
    result, _, paths = rows
    assert [(Path(r.artifact).suffix, r.backend) for r in result] == [(".onnx", "ort"), (".onnx", "openvino"),
                                                                      (".tflite", "litert")]


def test_statistics_are_consistent(rows):
    for r in rows[0]:
        assert r.error is None and r.runs == 6 and r.warmup == 1 and r.threads == 1 and r.device == "cpu"
        assert 0 < r.min_ms <= r.median_ms <= r.p90_ms <= r.max_ms and r.min_ms <= r.mean_ms <= r.max_ms
        assert r.std_ms >= 0 and r.load_ms > 0 and r.first_ms > 0 and 10 < r.peak_rss_mb < 1000
        assert r.model == "toy_test_classifier" and r.macs > 0
        assert r.gmacs_per_s == pytest.approx(r.macs / (r.median_ms / 1e3) / 1e9)


def test_timed_runs_are_interleaved_round_robin(rows):
    result, order, _ = rows
    pairs = [(r.artifact, r.backend) for r in result]
    assert len(order) == 6 * len(pairs)
    for k in range(6):  # every round runs each pair once, the starting pair rotates
        round_ = order[k * len(pairs):(k + 1) * len(pairs)]
        assert sorted(round_) == sorted(pairs) and round_[0] == pairs[k % len(pairs)]


def test_peak_rss_is_the_workers_own(toy_exports):
    """A parent that once held a lot of memory must not leak its peak into the workers' rows."""
    ballast = bytearray(1_500_000_000)  # 1.5 GB touched in the parent
    ballast[::4096] = b"x" * len(ballast[::4096])
    (row,) = benchmark([toy_exports["onnx"].path], runs=1, warmup=0)
    del ballast
    assert 10 < row.peak_rss_mb < 1000, row.peak_rss_mb


def test_load_failure_becomes_error_row(toy_exports, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not onnx")
    result = benchmark([junk, toy_exports["onnx"].path], runs=2, warmup=0)
    assert "cannot load" in result[0].error and result[0].median_ms is None
    assert result[1].error is None and result[1].runs == 2


def test_coreml_off_macos_is_an_error_row(toy_exports):
    (row,) = benchmark([toy_exports["coreml"].path], runs=1, warmup=0)
    assert row.error and "macOS" in row.error


def test_bad_requests_raise(toy_exports, tmp_path):
    with pytest.raises(ArtifactError, match="not found"):
        plan([tmp_path / "none.onnx"])
    with pytest.raises(BackendUnavailable, match="unknown backend"):
        plan([toy_exports["onnx"].path], ["tensorrt"])
    with pytest.raises(BackendUnavailable, match="can open"):
        plan([toy_exports["tflite"].path], ["ort"])
    with pytest.raises(BackendUnavailable, match="can open"):
        benchmark([], pairs=[(toy_exports["tflite"].path, "openvino")])


def test_json_round_trip(rows, tmp_path):
    path = write_json(rows[0], tmp_path / "sub" / "rows.json")
    data = json.loads(path.read_text())
    assert [BenchResult(**d) for d in data] == rows[0]
    assert not list((tmp_path / "sub").glob(".*tmp"))


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LITERT_OUTPUT = """========================================
 BENCHMARK RESULTS
========================================
Model initialization:  12.40 ms
Warmup (first):        30.11 ms
Warmup (avg):          22.91 ms (5 runs)
Inference (avg):       22.53 ms (20 runs)
Inference (min):       15.24 ms
Inference (max):       33.04 ms
Inference (median):    22.79 ms
Inference (std):       4.21 ms
"""

BENCHMARK_APP_OUTPUT = """[ INFO ] First inference took 34.43 ms
[Step 11/11] Dumping statistics report
[ INFO ] Execution Devices:['CPU']
[ INFO ] Count:            20 iterations
[ INFO ] Duration:         612.07 ms
[ INFO ] Latency:
[ INFO ]    Median:        21.97 ms
[ INFO ]    Average:       30.46 ms
[ INFO ]    Min:           11.63 ms
"""


def test_external_tool_parsers():
    cc = _script("crosscheck_latency")
    assert cc.parse_litert_benchmark(LITERT_OUTPUT) == 22.79
    assert cc.parse_benchmark_app(BENCHMARK_APP_OUTPUT) == 21.97
    with pytest.raises(ValueError):
        cc.parse_litert_benchmark("Inference (avg): 3 ms")
    with pytest.raises(ValueError):
        cc.parse_benchmark_app("[ INFO ] Median: 3 ms")  # a median outside the latency block


def test_external_tool_commands_match_our_settings():
    cc = _script("crosscheck_latency")
    lite = cc.litert_benchmark_cmd(Path("m.tflite"), 2, 100, 10)
    assert lite[1:] == ["--model", "m.tflite", "--num_threads", "2", "--num_runs", "100", "--warmup_runs", "10"]
    app = cc.benchmark_app_cmd(Path("m.xml"), 2, 100)
    for flag, value in (("-hint", "none"), ("-nstreams", "1"), ("-api", "sync"), ("-nireq", "1"),
                        ("-nthreads", "2"), ("-infer_precision", "f32"), ("-niter", "100")):
        assert app[app.index(flag) + 1] == value
