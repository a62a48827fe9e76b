"""Android benchmarking: the benchmark_model parser on real logs, command construction, and adb
failures simulated by a fake ``adb`` (a shell script first on PATH) -- no phone needed.

The fixtures in ``data/benchmark_model_*.txt`` are real tool output copied from public pages; the
first line of each names its source.
"""
from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path

import pytest

from mobilevision.cli import main
from mobilevision.errors import ArtifactError, BackendUnavailable, MobileVisionError
from mobilevision.runtime.devices import DeviceSpec, parse_device
from mobilevision.runtime.devices.android import (
    DEVICE_DIR, Adb, AdbNotFound, AndroidBenchOptions, AndroidBenchResult, AndroidDeviceError, AndroidPushError,
    BenchmarkBinaryNotFound, BenchmarkOutputError, accelerator_args, benchmark_android, benchmark_argv,
    benchmark_command, binary_lookup_command, parse_adb_devices, parse_benchmark_model)
from mobilevision.runtime.profile import BenchResult

DATA = Path(__file__).parent / "data"
SERIAL = "R58M12345AB"
ONE_PHONE = f"{SERIAL}\tdevice usb:1-1 product:beyond1lteeea model:SM_G973F device:beyond1 transport_id:1"


def fixture(name: str) -> str:
    return (DATA / f"benchmark_model_{name}.txt").read_text()


# ---------------------------------------------------------------- parser on real logs

def test_parse_tflite_cpu_older_memory_line():
    r = parse_benchmark_model(fixture("cpu"))
    assert r["init_ms"] == pytest.approx(0.855) and r["first_ms"] == pytest.approx(49.060)
    assert r["warmup_avg_ms"] == pytest.approx(34.8251) and r["warmup_runs"] == 15
    assert r["runs"] == 50 and r["mean_ms"] == pytest.approx(33.2094)
    assert (r["std_ms"], r["min_ms"], r["max_ms"]) == pytest.approx((0.450, 32.641, 34.005))
    assert r["median_ms"] is None and r["p95_ms"] is None  # this build prints no percentiles
    assert (r["mem_init_mb"], r["mem_overall_mb"], r["mem_peak_mb"]) == (0.0, 12.8672, None)
    assert r["delegations"] == [] and r["delegate"] is None and r["fully_delegated"] is None


def test_parse_tflite_gpu_fully_delegated():
    r = parse_benchmark_model(fixture("gpu"))
    assert (r["init_ms"], r["first_ms"], r["warmup_avg_ms"]) == pytest.approx((870.557, 130.565, 122.373))
    assert r["runs"] == 50 and r["warmup_runs"] == 4
    assert (r["mean_ms"], r["std_ms"], r["min_ms"], r["max_ms"]) == pytest.approx((119.375, 1.948, 113.737, 124.776))
    assert r["mem_overall_mb"] is None  # the quoted log stops before the memory lines
    assert r["delegate"] == "GPU" and r["delegate_coverage"] == "full" and r["fully_delegated"] is True


def test_parse_nnapi_silent_cpu_fallback():
    r = parse_benchmark_model(fixture("nnapi_fallback"))
    assert (r["init_ms"], r["first_ms"], r["mean_ms"]) == pytest.approx((34.939, 130.492, 112.533))
    assert (r["std_ms"], r["min_ms"], r["max_ms"], r["runs"]) == pytest.approx((0.778, 110.425, 114.213, 50))
    assert (r["mem_init_mb"], r["mem_overall_mb"]) == (6.70312, 63.4023)
    assert r["delegate"] == "NNAPI" and r["delegate_coverage"] == "none"
    assert r["delegated_nodes"] == 0 and r["fully_delegated"] is False


def test_parse_logcat_prefixed_partial_delegation():
    r = parse_benchmark_model(fixture("nnapi_partial_logcat"))
    assert (r["init_ms"], r["first_ms"], r["warmup_avg_ms"]) == pytest.approx((126.059, 32.942, 12.5819))
    assert (r["runs"], r["warmup_runs"]) == (75, 40)
    assert (r["mean_ms"], r["std_ms"], r["min_ms"], r["max_ms"]) == pytest.approx((12.1676, 0.325, 11.787, 13.649))
    assert r["delegate_coverage"] == "partial" and r["delegate_kernels"] == 44 and r["fully_delegated"] is False


def test_parse_litert_compiled_model_tool():
    """The LiteRT tool prints no 'Inference timings in us' line: its count= lines and results block are read;
    the op profiler's 'Timings (microseconds): count=3166 ...' after the block is not a run statistic."""
    r = parse_benchmark_model(fixture("litert_cpu"))
    assert r["init_ms"] == pytest.approx(4.478) and r["first_ms"] == pytest.approx(1.033)
    assert (r["warmup_runs"], r["runs"]) == (1055, 2112) and r["warmup_avg_ms"] == pytest.approx(0.465319)
    assert (r["mean_ms"], r["std_ms"], r["min_ms"], r["max_ms"]) == pytest.approx((0.464545, 0.013, 0.442, 0.979))
    assert (r["median_ms"], r["p5_ms"], r["p95_ms"]) == pytest.approx((0.462, 0.460, 0.478))
    assert (r["mem_init_mb"], r["mem_overall_mb"], r["mem_peak_mb"]) == (8.94, 11.51, None)
    assert r["delegations"] == [{"delegate": "TfLiteXNNPackDelegate", "replaced": 1, "total": 1, "partitions": 1,
                                 "scope": "subgraph 0"}]
    assert r["delegate"] is None  # XNNPACK on the CPU is not an accelerator delegate


def test_parse_failed_run_names_the_error():
    with pytest.raises(BenchmarkOutputError, match="Benchmarking failed.*ANEURALNETWORKS_BAD_DATA"):
        parse_benchmark_model(fixture("nnapi_failed"))


def test_parse_tf1_summary_line():
    # TF 1.x wording, quoted in https://github.com/mozilla/DeepSpeech/issues/2270
    r = parse_benchmark_model("Average inference timings in us: Warmup: 27917.4, Init: 21528106, no stats: 23313.5")
    assert (r["init_ms"], r["warmup_avg_ms"], r["mean_ms"]) == pytest.approx((21528.106, 27.9174, 23.3135))


def test_parse_scientific_notation_periodic_peak_and_partial_replacing():
    # Line formats from the tool's sources: benchmark_model.cc streams doubles with 6 significant
    # digits (hence 2.95034e+06) and logs the periodic peak; subgraph.cc logs
    # "Replacing %d out of %d node(s) with delegate (%s) node, yielding %zu partitions for %s.".
    text = "\n".join([
        "VERBOSE: Replacing 130 out of 244 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 2 partitions "
        "for subgraph 0.",
        "VERBOSE: Replacing 114 out of 114 node(s) with delegate (TfLiteXNNPackDelegate) node, yielding 1 partitions "
        "for subgraph 0.",
        "INFO: count=1 curr=3512391",
        "INFO: count=50 first=2990275 curr=2913402 min=2727568 max=3189954 avg=2.95034e+06 std=109798",
        "INFO: Inference timings in us: Init: 17187, First inference: 3512391, Warmup (avg): 3.51239e+06, "
        "Inference (avg): 2.95034e+06",
        "INFO: Memory footprint delta from the start of the tool (MB): init=4.21094 overall=46.0859",
        "INFO: Overall peak memory footprint (MB) via periodic monitoring: 93.2383",
    ])
    r = parse_benchmark_model(text)
    assert (r["mean_ms"], r["warmup_avg_ms"], r["first_ms"]) == pytest.approx((2950.34, 3512.391, 3512.391))
    assert r["warmup_runs"] == 1 and r["mem_peak_mb"] == 93.2383 and r["mem_overall_mb"] == 46.0859
    assert (r["delegate"], r["delegated_nodes"], r["total_nodes"], r["fully_delegated"]) == \
        ("TfLiteGpuDelegateV2", 130, 244, False)


# ---------------------------------------------------------------- commands (pure)

def test_benchmark_command_cpu_threads_exact_counts():
    argv = benchmark_argv("/data/local/tmp/benchmark_model", f"{DEVICE_DIR}/m.tflite",
                          AndroidBenchOptions(threads=4, runs=30, warmup=2))
    assert argv == ["/data/local/tmp/benchmark_model", f"--graph={DEVICE_DIR}/m.tflite", "--num_threads=4",
                    "--num_runs=30", "--min_secs=0", "--warmup_runs=3", "--warmup_min_secs=0"]


def test_benchmark_command_taskset_gpu_and_extra_args():
    opts = AndroidBenchOptions(taskset="f0", accelerator="gpu", extra_args=("--gpu_backend=cl",))
    argv = benchmark_argv("/bin/bm", "/d/m.tflite", opts)
    assert argv[:3] == ["taskset", "f0", "/bin/bm"] and argv[-2:] == ["--use_gpu=true", "--gpu_backend=cl"]
    assert "--num_threads" not in " ".join(argv)  # the tool's default unless asked
    assert benchmark_command("/bin/bm", "/d/my model.tflite", opts).startswith("taskset f0 /bin/bm '--graph=/d/my model")


def test_accelerator_flags():
    assert accelerator_args(AndroidBenchOptions()) == []
    assert accelerator_args(AndroidBenchOptions(accelerator="nnapi")) == ["--use_nnapi=true"]
    assert accelerator_args(AndroidBenchOptions(accelerator="nnapi", nnapi_accelerator="qti-htp")) == \
        ["--use_nnapi=true", "--nnapi_accelerator_name=qti-htp"]
    assert accelerator_args(AndroidBenchOptions(accelerator="npu", npu_dispatch_library="/data/local/tmp/npu")) == \
        ["--use_npu=true", "--dispatch_library_path=/data/local/tmp/npu"]


@pytest.mark.parametrize("bad, words", [
    (dict(taskset="f0; rm -rf /"), "hex CPU mask"), (dict(accelerator="tpu"), "unknown accelerator"),
    (dict(nnapi_accelerator="qti-htp"), "--use-nnapi"), (dict(runs=0), "runs must be >= 1")])
def test_bad_options(bad, words):
    with pytest.raises(MobileVisionError, match=words):
        AndroidBenchOptions(**bad).validate()


def test_adb_argv_carries_the_serial(tmp_path):
    adb = _fake_adb_file(tmp_path)
    assert Adb(str(adb), serial="emulator-5554").command("shell", "ls") == [str(adb), "-s", "emulator-5554", "shell", "ls"]
    assert Adb(str(adb)).command("devices", "-l") == [str(adb), "devices", "-l"]


def test_binary_lookup_command():
    cmd = binary_lookup_command(["/data/local/tmp/benchmark_model"], search_path=True)
    assert cmd == ("if [ -x /data/local/tmp/benchmark_model ]; then echo /data/local/tmp/benchmark_model; exit 0; fi"
                   "; command -v benchmark_model; exit 0")


def test_parse_adb_devices_states():
    text = ("* daemon not running; starting now at tcp:5037\n* daemon started successfully\nList of devices attached\n"
            f"{ONE_PHONE}\nemulator-5554          unauthorized transport_id:2\n"
            "0123456789ABCDEF       no permissions (user in plugdev group; are your udev rules wrong?); "
            "see [http://developer.android.com/tools/device.html]\n\n")
    devices = parse_adb_devices(text)
    assert [(d.serial, d.state) for d in devices] == [(SERIAL, "device"), ("emulator-5554", "unauthorized"),
                                                      ("0123456789ABCDEF", "no permissions")]
    assert devices[0].model == "SM_G973F"


def test_parse_device():
    assert parse_device("cpu") == DeviceSpec("cpu")
    assert parse_device("android") == DeviceSpec("android")
    assert parse_device("android:192.168.1.5:5555") == DeviceSpec("android", "192.168.1.5:5555")
    for bad in ("tpu", "gpu:0", "android:", "cpu:0"):
        with pytest.raises(MobileVisionError):
            parse_device(bad)


# ---------------------------------------------------------------- a fake adb on PATH

FAKE_ADB = r"""#!/bin/sh
# Stand-in for adb: answers from FAKE_ADB_* variables and logs every call, one per line.
printf '%s\n' "$*" >> "$FAKE_ADB_LOG"
if [ "$1" = "-s" ]; then shift 2; fi
case "$1" in
  devices)
    echo "List of devices attached"
    if [ -n "$FAKE_ADB_DEVICES" ]; then printf '%b\n' "$FAKE_ADB_DEVICES"; fi
    echo ;;
  push)
    if [ -n "$FAKE_ADB_PUSH_ERROR" ]; then
      echo "adb: error: failed to copy '$2' to '$3': remote couldn't create file: $FAKE_ADB_PUSH_ERROR" >&2
      exit 1
    fi
    echo "$2: 1 file pushed, 0 skipped." ;;
  shell)
    shift
    case "$*" in
      *"[ -x"*) if [ -n "$FAKE_ADB_BINARY" ]; then echo "$FAKE_ADB_BINARY"; fi ;;
      *--graph=*) cat "$FAKE_ADB_OUTPUT" >&2; exit "${FAKE_ADB_EXIT:-0}" ;;
    esac ;;
  *) echo "fake adb: unexpected $*" >&2; exit 1 ;;
esac
"""


def _fake_adb_file(tmp_path: Path) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    adb = bindir / "adb"
    adb.write_text(FAKE_ADB)
    adb.chmod(adb.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return adb


@pytest.fixture
def phone(tmp_path, monkeypatch):
    """A fake adb first on PATH with one authorized phone that has benchmark_model; returns the call log."""
    adb = _fake_adb_file(tmp_path)
    log = tmp_path / "adb.log"
    monkeypatch.setenv("PATH", f"{adb.parent}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    monkeypatch.setenv("FAKE_ADB_DEVICES", ONE_PHONE)
    monkeypatch.setenv("FAKE_ADB_BINARY", "/data/local/tmp/benchmark_model")
    monkeypatch.setenv("FAKE_ADB_OUTPUT", str(DATA / "benchmark_model_litert_cpu.txt"))
    for name in ("FAKE_ADB_PUSH_ERROR", "FAKE_ADB_EXIT"):
        monkeypatch.delenv(name, raising=False)
    return log


@pytest.fixture
def model(tmp_path) -> Path:
    p = tmp_path / "toy.tflite"
    p.write_bytes(b"TFL3 not a real model: the fake phone never reads it")
    return p


def test_adb_missing(tmp_path, monkeypatch, model):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(AdbNotFound, match="platform-tools") as e:
        benchmark_android([model])
    assert isinstance(e.value, BackendUnavailable)


def test_no_device(phone, monkeypatch, model):
    monkeypatch.setenv("FAKE_ADB_DEVICES", "")
    with pytest.raises(AndroidDeviceError, match="no Android device connected.*USB debugging"):
        benchmark_android([model])


def test_unauthorized_device(phone, monkeypatch, model):
    monkeypatch.setenv("FAKE_ADB_DEVICES", "emulator-5554\tunauthorized transport_id:2")
    with pytest.raises(AndroidDeviceError, match="emulator-5554 is unauthorized.*Allow USB debugging"):
        benchmark_android([model])


def test_two_devices_need_a_serial_and_the_serial_is_used(phone, monkeypatch, model):
    monkeypatch.setenv("FAKE_ADB_DEVICES", f"{ONE_PHONE}\\nemulator-5554\tdevice transport_id:2")
    with pytest.raises(AndroidDeviceError, match="2 Android devices.*android:SERIAL"):
        benchmark_android([model])
    rows = benchmark_android([model], AndroidBenchOptions(serial="emulator-5554"))
    assert rows[0].device == "android:emulator-5554" and rows[0].error is None
    assert "-s emulator-5554 shell" in phone.read_text()
    with pytest.raises(AndroidDeviceError, match="nope is not connected"):
        benchmark_android([model], AndroidBenchOptions(serial="nope"))


def test_push_rejected_shows_adbs_message(phone, monkeypatch, model):
    monkeypatch.setenv("FAKE_ADB_PUSH_ERROR", "Read-only file system")
    with pytest.raises(AndroidPushError, match="remote couldn't create file: Read-only file system.*read-only"):
        benchmark_android([model])


def test_binary_missing_on_device(phone, monkeypatch, model):
    monkeypatch.setenv("FAKE_ADB_BINARY", "")
    with pytest.raises(BenchmarkBinaryNotFound, match="android_aarch64.*--android-binary"):
        benchmark_android([model])


def test_binary_from_host_is_pushed_and_made_executable(phone, model, tmp_path):
    tool = tmp_path / "benchmark_model"
    tool.write_bytes(b"\x7fELF")
    rows = benchmark_android([model], AndroidBenchOptions(binary=str(tool)))
    calls = phone.read_text().splitlines()
    assert f"-s {SERIAL} push {tool} {DEVICE_DIR}/benchmark_model" in calls
    assert f"-s {SERIAL} shell chmod 755 {DEVICE_DIR}/benchmark_model" in calls
    assert rows[0].command.startswith(f"{DEVICE_DIR}/benchmark_model --graph={DEVICE_DIR}/toy.tflite")


def test_benchmark_failure_becomes_an_error_row(phone, monkeypatch, model):
    monkeypatch.setenv("FAKE_ADB_OUTPUT", str(DATA / "benchmark_model_nnapi_failed.txt"))
    monkeypatch.setenv("FAKE_ADB_EXIT", "1")
    [row] = benchmark_android([model], AndroidBenchOptions(accelerator="nnapi"))
    assert row.error.startswith(f"benchmark_model failed on {SERIAL} (exit 1): Benchmarking failed.")
    assert "ANEURALNETWORKS_BAD_DATA" in row.error and row.mean_ms is None
    assert f"shell rm -f {DEVICE_DIR}/toy.tflite" in phone.read_text()  # the model is cleaned up


def test_accelerator_that_took_nothing_is_not_reported_as_its_number(phone, monkeypatch, model):
    monkeypatch.setenv("FAKE_ADB_OUTPUT", str(DATA / "benchmark_model_nnapi_fallback.txt"))
    [row] = benchmark_android([model], AndroidBenchOptions(accelerator="nnapi"))
    assert "took none of the graph" in row.error and row.mean_ms is None and row.median_ms is None
    assert row.delegated_nodes == 0 and row.fully_delegated is False and row.mem_overall_mb == 63.4023


def test_partial_delegation_is_a_warning(phone, monkeypatch, model):
    monkeypatch.setenv("FAKE_ADB_OUTPUT", str(DATA / "benchmark_model_nnapi_partial_logcat.txt"))
    [row] = benchmark_android([model], AndroidBenchOptions(accelerator="nnapi", nnapi_accelerator="qti-gpu"))
    assert row.error is None and row.mean_ms == pytest.approx(12.1676)
    assert row.warning == "the NNAPI delegate took 44 delegate kernels; the rest ran on the CPU"
    assert row.backend == "android-litert-nnapi" and "--nnapi_accelerator_name=qti-gpu" in row.command


def test_row_is_a_bench_result(phone, model):
    [row] = benchmark_android([model], AndroidBenchOptions(threads=1, runs=1000, taskset="80"))
    assert isinstance(row, AndroidBenchResult) and isinstance(row, BenchResult)
    assert (row.backend, row.device, row.device_model, row.threads) == ("android-litert", f"android:{SERIAL}",
                                                                       "SM_G973F", 1)
    assert (row.load_ms, row.first_ms, row.median_ms, row.mean_ms) == pytest.approx((4.478, 1.033, 0.462, 0.464545))
    assert (row.runs, row.warmup, row.p90_ms, row.peak_rss_mb) == (2112, 1054, None, 11.51)
    assert row.command.startswith("taskset 80 /data/local/tmp/benchmark_model")
    assert f"-s {SERIAL} push" in phone.read_text()


def test_onnx_is_refused_before_adb(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no adb: the artifact check must come first
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    with pytest.raises(ArtifactError, match="only .tflite models run on the phone"):
        benchmark_android([onnx])


# ---------------------------------------------------------------- the CLI

def test_cli_android_table_and_json(phone, model, tmp_path, capsys):
    out_json = tmp_path / "rows.json"
    rc = main(["bench", str(model), "--device", f"android:{SERIAL}", "--taskset", "f0", "--threads", "2",
               "--json", str(out_json)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "latency on Android" in captured.out and "android-litert" in captured.out and "0.46" in captured.out
    [row] = json.loads(out_json.read_text())
    assert row["backend"] == "android-litert" and row["device"] == f"android:{SERIAL}"
    assert row["mean_ms"] == pytest.approx(0.464545) and row["median_ms"] == pytest.approx(0.462)
    assert row["threads"] == 2 and row["command"].startswith("taskset f0 ") and "--num_threads=2" in row["command"]
    assert set(row) >= {f.name for f in dataclasses.fields(BenchResult)}  # local rows' fields, plus Android ones


def test_cli_gpu_run_without_memory_prints_dashes(phone, monkeypatch, model, capsys):
    monkeypatch.setenv("FAKE_ADB_OUTPUT", str(DATA / "benchmark_model_gpu.txt"))
    assert main(["bench", str(model), "--device", "android", "--use-gpu"]) == 0
    out = capsys.readouterr().out
    assert "android-litert-gpu" in out and "119.38" in out and " - " in out  # no median, no memory: '-'


def test_cli_onnx_on_android_is_one_line_error(tmp_path, one_line_error):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    one_line_error(main(["bench", str(onnx), "--device", "android"]), "only .tflite models run on the phone")


def test_cli_no_device_is_one_line_error(phone, monkeypatch, model, one_line_error):
    monkeypatch.setenv("FAKE_ADB_DEVICES", "")
    one_line_error(main(["bench", str(model), "--device", "android"]), "no Android device connected")


def test_cli_android_options_need_android(model, one_line_error):
    one_line_error(main(["bench", str(model), "--use-gpu"]), "--use-gpu applies to --device android only")
    one_line_error(main(["bench", str(model), "--device", "android", "--use-gpu", "--use-nnapi"]),
                   "choose one of --use-gpu")
    one_line_error(main(["bench", str(model), "--device", "phone"]), "unknown device 'phone'")
