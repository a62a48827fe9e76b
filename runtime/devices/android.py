"""Latency of a ``.tflite`` on an Android phone: adb + LiteRT's ``benchmark_model``.

Flow: pick the phone (``adb devices -l``), find ``benchmark_model`` on it (or push the one given
with ``binary`` and make it executable), push the model to ``/data/local/tmp/mobilevision/``, run
the tool there (under ``taskset`` when asked, to pin it to the big cores) and parse its log into
the same rows as local runs (``profile.BenchResult``). Needs only ``adb`` on this machine.

Every ``benchmark_model`` flag used here is documented by the tool itself (none is invented):

- TFLite ``benchmark_model`` (tensorflow/lite/tools/benchmark/README.md, "TFLite delegate
  parameters"; google-ai-edge/LiteRT tflite/tools/benchmark/benchmark_model.cc
  ``BenchmarkModel::GetFlags``): ``--graph``, ``--num_threads``, ``--num_runs``, ``--min_secs``,
  ``--warmup_runs``, ``--warmup_min_secs``, ``--use_gpu``, ``--use_nnapi``,
  ``--nnapi_accelerator_name`` (Android 10+). Other delegates go through ``extra_args``:
  ``--use_hexagon=true --hexagon_lib_path=DIR``, ``--external_delegate_path=LIB
  --external_delegate_options=...``, ``--use_xnnpack=false``.
- LiteRT CompiledModel ``benchmark_model`` (google-ai-edge/LiteRT litert/tools/
  benchmark_litert_model.h): ``--use_gpu``, ``--use_npu``, ``--dispatch_library_path``; also
  ``--compiler_plugin_library_path`` and ``--require_full_delegation`` through ``extra_args``.
  ``--use_nnapi`` belongs to the TFLite tool and ``--use_npu`` to the LiteRT one: give the
  binary that has the flag (the tool refuses flags it does not know, and that message is shown).
- ``taskset MASK benchmark_model ...``: the README's "Reducing variance between runs on Android".

Prebuilt binaries: https://ai.google.dev/edge/litert/next/benchmark (android_aarch64).
"""
from __future__ import annotations

import dataclasses
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mobilevision.errors import ArtifactError, BackendUnavailable, MobileVisionError
from mobilevision.export.metadata import read_sidecar

from ..profile import BenchResult

DEVICE_DIR = "/data/local/tmp/mobilevision"         # pushed models (and a pushed benchmark_model)
BINARY_CANDIDATES = ("/data/local/tmp/benchmark_model", f"{DEVICE_DIR}/benchmark_model")
ACCELERATORS = ("cpu", "gpu", "nnapi", "npu")
PREBUILT_URL = "https://ai.google.dev/edge/litert/next/benchmark"
PLATFORM_TOOLS_URL = "https://developer.android.com/tools/releases/platform-tools"
ADB_TIMEOUT_S = 120.0                                # devices / push / small shell commands


# ---------------------------------------------------------------- errors

class AdbNotFound(BackendUnavailable):
    """No ``adb`` executable on this machine."""


class AndroidDeviceError(BackendUnavailable):
    """No usable phone: none connected, unauthorized, offline, several without a serial, or adb failing."""


class AndroidPushError(MobileVisionError):
    """The phone refused a file (read-only, permission denied, no space)."""


class BenchmarkBinaryNotFound(BackendUnavailable):
    """No ``benchmark_model`` on the phone and none given."""


class BenchmarkFailed(MobileVisionError):
    """``benchmark_model`` ran and failed (non-zero exit, or a run that did not finish)."""


class BenchmarkOutputError(MobileVisionError):
    """``benchmark_model`` printed no timings (it failed without saying so in its exit code)."""


# ---------------------------------------------------------------- options and rows

@dataclass
class AndroidBenchOptions:
    """How to run ``benchmark_model`` on the phone.

    ``runs`` timed runs after the first inference and ``warmup`` more untimed ones, exactly:
    the tool gets ``--num_runs=runs --warmup_runs=warmup+1`` (its warm-up includes the first
    inference) and ``--min_secs=0 --warmup_min_secs=0`` so it does not stretch either phase to
    its default minimum duration. ``binary``: a file on this machine (pushed to
    ``DEVICE_DIR`` and made executable) or an absolute path on the phone; None looks in
    ``BINARY_CANDIDATES`` and then the phone's PATH. ``taskset``: a hex CPU mask (``f0`` = cores
    4-7, the big cores of many phones). ``extra_args`` go to the tool verbatim.
    """

    serial: str | None = None
    binary: str | None = None
    accelerator: str = "cpu"
    threads: int | None = None
    runs: int = 50
    warmup: int = 5
    taskset: str | None = None
    nnapi_accelerator: str | None = None
    npu_dispatch_library: str | None = None
    extra_args: tuple[str, ...] = ()
    adb: str | None = None
    timeout_s: float = 900.0

    def validate(self) -> None:
        """Raise MobileVisionError naming the first bad option."""
        if self.accelerator not in ACCELERATORS:
            raise MobileVisionError(f"unknown accelerator {self.accelerator!r}: choose one of {', '.join(ACCELERATORS)}")
        if self.runs < 1 or self.warmup < 0 or (self.threads is not None and self.threads < 1):
            raise MobileVisionError(f"runs must be >= 1, warmup >= 0 and threads >= 1 "
                                    f"(got runs={self.runs}, warmup={self.warmup}, threads={self.threads})")
        if self.taskset is not None and not re.fullmatch(r"(0x)?[0-9a-fA-F]+", self.taskset):
            raise MobileVisionError(f"taskset mask {self.taskset!r} is not a hex CPU mask (e.g. f0 = cores 4-7)")
        if self.nnapi_accelerator and self.accelerator != "nnapi":
            raise MobileVisionError("an NNAPI accelerator name needs the NNAPI delegate (--use-nnapi)")
        if self.npu_dispatch_library and self.accelerator != "npu":
            raise MobileVisionError("an NPU dispatch library needs the NPU accelerator (--use-npu)")


@dataclass
class AndroidBenchResult(BenchResult):
    """A ``BenchResult`` measured on a phone by ``benchmark_model``, plus what its log says.

    Filled from the tool's output: ``load_ms`` = its Init (model load + delegate preparation),
    ``first_ms`` = its first inference, ``mean/std/min/max_ms`` = its timed runs. ``median_ms``
    comes from the tool's ``median=`` (newer builds print it; None with older ones) and
    ``p90_ms`` is always None (the tool prints p5/p95, kept in ``p5_ms``/``p95_ms``). Memory
    (MB = 2**20 bytes, as the tool divides kB by 1024): ``mem_init_mb``/``mem_overall_mb`` are the
    tool's footprint *deltas* from its own start, ``mem_peak_mb`` the periodic peak it prints with
    ``--report_peak_memory_footprint=true``; ``peak_rss_mb`` is that peak when printed, else the
    overall delta (None when the tool printed no memory). ``gmacs_per_s`` uses the median when
    known, else the mean. Delegation describes the accelerator delegate (XNNPACK on the CPU is
    not one): ``delegated_nodes`` of ``total_nodes`` from its "Replacing N out of M node(s)"
    lines, ``fully_delegated`` from those or the tool's "completely / partially / not executed
    by the delegate" line; a GPU/NNAPI/NPU run whose delegate took nothing is an error row.
    """

    serial: str | None = None
    device_model: str | None = None
    accelerator: str = "cpu"
    warmup_avg_ms: float | None = None
    p5_ms: float | None = None
    p95_ms: float | None = None
    mem_init_mb: float | None = None
    mem_overall_mb: float | None = None
    mem_peak_mb: float | None = None
    delegate: str | None = None
    delegated_nodes: int | None = None
    total_nodes: int | None = None
    fully_delegated: bool | None = None
    delegations: list[dict] = field(default_factory=list)
    warning: str | None = None
    command: str | None = None


# ---------------------------------------------------------------- adb

@dataclass(frozen=True)
class AdbDevice:
    """One line of ``adb devices -l``: serial, state (device, unauthorized, offline, ...) and key:value details."""

    serial: str
    state: str
    details: dict[str, str] = field(default_factory=dict)

    @property
    def model(self) -> str | None:
        return self.details.get("model")


def parse_adb_devices(text: str) -> list[AdbDevice]:
    """Devices listed by ``adb devices -l`` (header and daemon start-up lines skipped)."""
    devices = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("List of devices", "*", "adb server")):
            continue
        parts = line.split(None, 1)
        if len(parts) < 2:
            continue
        serial, rest = parts
        if rest.startswith("no permissions"):  # "no permissions (user in plugdev group; ...)"
            devices.append(AdbDevice(serial, "no permissions"))
            continue
        state, *extra = rest.split()
        details = dict(item.split(":", 1) for item in extra if ":" in item)
        devices.append(AdbDevice(serial, state, details))
    return devices


def _last_line(*texts: str) -> str:
    """The last non-empty line of the first text that has one."""
    for t in texts:
        lines = [l.strip() for l in (t or "").splitlines() if l.strip()]
        if lines:
            return lines[-1]
    return ""


class Adb:
    """``adb`` (found on PATH or given) talking to one device (``-s SERIAL`` once known)."""

    def __init__(self, executable: str | None = None, serial: str | None = None,
                 timeout_s: float = ADB_TIMEOUT_S):
        found = shutil.which(executable or "adb")
        if found is None:
            where = f"{executable!r} is not an executable" if executable else "no adb on PATH"
            raise AdbNotFound(f"{where}: install Android platform-tools ({PLATFORM_TOOLS_URL}, or "
                              f"`apt install adb` / `brew install android-platform-tools`) and put adb on PATH")
        self.executable = found
        self.serial = serial
        self.timeout_s = timeout_s

    def command(self, *args: str) -> list[str]:
        """The argv for ``adb [-s SERIAL] args...``."""
        return [self.executable, *(["-s", self.serial] if self.serial else []), *args]

    def run(self, *args: str, timeout_s: float | None = None) -> subprocess.CompletedProcess[str]:
        """Run adb; its exit status and output are the caller's to judge."""
        argv = self.command(*args)
        timeout = self.timeout_s if timeout_s is None else timeout_s
        try:
            return subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except OSError as e:
            raise AdbNotFound(f"cannot run {self.executable}: {e.strerror or e}; reinstall Android platform-tools "
                              f"({PLATFORM_TOOLS_URL})") from e
        except subprocess.TimeoutExpired as e:
            raise AndroidDeviceError(f"`adb {' '.join(args[:1])}` did not answer within {timeout:.0f} s: "
                                     f"reconnect the phone (or `adb kill-server`) and retry") from e

    def devices(self) -> list[AdbDevice]:
        r = self.run("devices", "-l")
        if r.returncode != 0:
            raise AndroidDeviceError(f"`adb devices` failed: {_last_line(r.stderr, r.stdout) or f'exit {r.returncode}'}")
        return parse_adb_devices(r.stdout)

    def select(self) -> AdbDevice:
        """The one device to use (``self.serial`` if set); raises AndroidDeviceError with the fix."""
        devices = self.devices()
        if not devices:
            raise AndroidDeviceError("no Android device connected: plug in the phone with USB debugging on "
                                     "(Settings > Developer options), accept its prompt, then check `adb devices`")
        if self.serial is None and len(devices) > 1:
            listed = ", ".join(f"{d.serial} ({d.state})" for d in devices)
            raise AndroidDeviceError(f"{len(devices)} Android devices connected ({listed}): pick one with "
                                     f"--device android:SERIAL")
        if self.serial is not None:
            chosen = next((d for d in devices if d.serial == self.serial), None)
            if chosen is None:
                listed = ", ".join(d.serial for d in devices)
                raise AndroidDeviceError(f"device {self.serial} is not connected (adb sees: {listed})")
        else:
            chosen = devices[0]
        fixes = {
            "unauthorized": "unlock the phone and accept the 'Allow USB debugging?' prompt, then retry",
            "offline": "reconnect the cable (or run `adb reconnect`) and retry",
            "no permissions": "this user may not open the USB device: add a udev rule for it (Linux), "
                              "then replug",
        }
        if chosen.state != "device":
            fix = fixes.get(chosen.state, "boot the phone normally (adb must list it as 'device')")
            raise AndroidDeviceError(f"device {chosen.serial} is {chosen.state}: {fix}")
        self.serial = chosen.serial
        return chosen

    def shell(self, command: str, timeout_s: float | None = None) -> subprocess.CompletedProcess[str]:
        """Run one shell command line on the device (adb >= 1.0.36 returns its exit status)."""
        return self.run("shell", command, timeout_s=timeout_s)

    def push(self, local: str | Path, remote: str) -> None:
        """Copy a file to the device; AndroidPushError with adb's own message when it refuses."""
        r = self.run("push", str(local), remote)
        if r.returncode != 0:
            message = _last_line(r.stderr, r.stdout) or f"exit {r.returncode}"
            raise AndroidPushError(f"the device refused {Path(local).name} at {remote}: {message} "
                                   f"({_push_fix(message)})")


def _push_fix(message: str) -> str:
    low = message.lower()
    if "read-only" in low:
        return "that location is read-only on the phone; mobilevision writes to /data/local/tmp, which must be writable"
    if "no space" in low:
        return "free space on the phone (`adb shell df /data/local/tmp`)"
    if "permission denied" in low:
        return "the shell user may not write there; check `adb shell ls -ld /data/local/tmp`"
    return "check that /data/local/tmp on the phone is writable and has free space"


# ---------------------------------------------------------------- commands (pure)

def device_model_path(artifact: str | Path) -> str:
    """Where a model goes on the phone: ``DEVICE_DIR/<file name>``."""
    return f"{DEVICE_DIR}/{Path(artifact).name}"


def accelerator_args(options: AndroidBenchOptions) -> list[str]:
    """The ``benchmark_model`` flags that select the accelerator (none for the CPU: XNNPACK is the default)."""
    if options.accelerator == "gpu":
        return ["--use_gpu=true"]
    if options.accelerator == "nnapi":
        return ["--use_nnapi=true"] + ([f"--nnapi_accelerator_name={options.nnapi_accelerator}"]
                                       if options.nnapi_accelerator else [])
    if options.accelerator == "npu":
        return ["--use_npu=true"] + ([f"--dispatch_library_path={options.npu_dispatch_library}"]
                                     if options.npu_dispatch_library else [])
    return []


def benchmark_argv(binary: str, graph: str, options: AndroidBenchOptions) -> list[str]:
    """``[taskset MASK] benchmark_model --graph=... --num_threads=... ...`` as an argv."""
    argv = ["taskset", options.taskset] if options.taskset else []
    argv += [binary, f"--graph={graph}"]
    if options.threads is not None:
        argv.append(f"--num_threads={options.threads}")
    argv += [f"--num_runs={options.runs}", "--min_secs=0",
             f"--warmup_runs={options.warmup + 1}", "--warmup_min_secs=0"]
    return argv + accelerator_args(options) + list(options.extra_args)


def benchmark_command(binary: str, graph: str, options: AndroidBenchOptions) -> str:
    """The device shell line (each word quoted for the phone's sh)."""
    return " ".join(shlex.quote(a) for a in benchmark_argv(binary, graph, options))


def binary_lookup_command(candidates: list[str] | tuple[str, ...], search_path: bool) -> str:
    """Shell line printing the first executable candidate (then, if asked, ``command -v benchmark_model``)."""
    loop = "; ".join(f'if [ -x {shlex.quote(c)} ]; then echo {shlex.quote(c)}; exit 0; fi' for c in candidates)
    return loop + ("; command -v benchmark_model" if search_path else "") + "; exit 0"


# ---------------------------------------------------------------- the parser

_NUM = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_CLASSIC = re.compile(rf"Inference timings in us: Init: ({_NUM}), First inference: ({_NUM}), "
                      rf"Warmup \(avg\): ({_NUM}), Inference \(avg\): ({_NUM})")
_TF1 = re.compile(rf"Average inference timings in us: Warmup: ({_NUM}), Init: ({_NUM}), no stats: ({_NUM})")
_LITERT_BLOCK = re.compile(r"=+ BENCHMARK RESULTS =+")
_SESSION = re.compile(rf"Initialized session in ({_NUM}) ?ms")
_STAT = re.compile(r"(?<![\w(])count=\d+")
_PAIR = re.compile(rf"(\w+)=({_NUM})")
_LITERT_MS = re.compile(rf"(Model initialization|Warmup \(first\)|Warmup \(avg\)|Inference \((?:avg|min|max|std)\)):"
                        rf"\s*({_NUM})")
_MEM_DELTA = re.compile(rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): "
                        rf"init=({_NUM}) overall=({_NUM})")
_MEM_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({_NUM})")
_LITERT_MEM = re.compile(rf"(Init footprint|Overall footprint|Peak memory):\s*({_NUM}) MB")
_REPLACING = re.compile(r"Replacing (\d+)(?: out of (\d+))? node\(s\) with delegate \(([^)]+)\) node, "
                        r"yielding (\d+) partitions?(?: for (the whole graph|subgraph \d+))?")
_FULL = re.compile(r"Explicitly applied (\S+) delegate, and the model graph will be completely executed")
_PARTIAL = re.compile(r"Explicitly applied (\S+) delegate, and the model graph will be partially executed "
                      r"by the delegate w/ (\d+) delegate kernels")
_NONE = re.compile(r"Though (\S+) delegate is explicitly applied, the model graph will not be executed")


def _ms(us: float | None) -> float | None:
    return None if us is None else us / 1000.0


def _stat_line(line: str) -> dict[str, float] | None:
    """``count=50 first=... min=... avg=... std=... [p5= median= p95=]`` -> {key: value} (us)."""
    if "Timings (microseconds)" in line or "Memory (bytes)" in line:  # op-profiling summaries
        return None
    m = _STAT.search(line)
    return {k: float(v) for k, v in _PAIR.findall(line[m.start():])} if m else None


def _telling_line(text: str) -> str:
    """The line that best says why a run failed: the first ERROR line, else the last line."""
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    first_error = next((l for l in lines if "ERROR" in l), None)
    last = lines[-1] if lines else "(no output)"
    return last if first_error in (None, last) else f"{last} (first error: {first_error})"


def parse_benchmark_model(text: str) -> dict[str, Any]:
    """Parse a ``benchmark_model`` log (TFLite or LiteRT CompiledModel build, any log prefix).

    Times in ms (the tool prints us; LiteRT's summary block prints ms), memory in MB. Returns
    ``init_ms, first_ms, warmup_avg_ms, warmup_runs, runs, mean_ms, std_ms, min_ms, max_ms,
    median_ms, p5_ms, p95_ms, mem_init_mb, mem_overall_mb, mem_peak_mb`` (None when not printed),
    ``delegations`` (every "Replacing N out of M node(s) with delegate (D)" line) and, for the
    accelerator delegate (not XNNPACK): ``delegate, delegated_nodes, total_nodes,
    delegate_coverage`` ("full" | "partial" | "none" | None), ``delegate_kernels`` and
    ``fully_delegated``. The timed-run statistics are the last ``count=`` line before the summary,
    the warm-up ones the line before it. Raises BenchmarkOutputError when there are no timings.
    """
    lines = text.splitlines()
    end = next((i for i, l in enumerate(lines) if _CLASSIC.search(l) or _TF1.search(l) or _LITERT_BLOCK.search(l)),
               len(lines))
    stats = [s for s in (_stat_line(l) for l in lines[:end]) if s]
    regular = stats[-1] if stats else {}
    warm = stats[-2] if len(stats) > 1 else {}
    classic = _CLASSIC.search(text)
    tf1 = _TF1.search(text)
    litert = {k: float(v) for k, v in _LITERT_MS.findall(text)} if _LITERT_BLOCK.search(text) else {}
    session = _SESSION.search(text)

    mean_ms = _ms(regular.get("avg"))
    if mean_ms is None:
        mean_ms = (_ms(float(classic.group(4))) if classic else _ms(float(tf1.group(3))) if tf1
                   else litert.get("Inference (avg)"))
    if mean_ms is None:
        raise BenchmarkOutputError(f"benchmark_model printed no timings: {_telling_line(text)}")

    if classic:
        init_ms = _ms(float(classic.group(1)))
    elif tf1:
        init_ms = _ms(float(tf1.group(2)))
    else:
        init_ms = float(session.group(1)) if session else litert.get("Model initialization")
    if classic:
        first_ms = _ms(float(classic.group(2)))
    else:
        first_ms = _ms(warm.get("first", warm.get("curr") if warm.get("count") == 1 else None))
        first_ms = first_ms if first_ms is not None else litert.get("Warmup (first)")
    warmup_avg_ms = _ms(warm.get("avg", warm.get("curr") if warm.get("count") == 1 else None))
    if warmup_avg_ms is None:
        warmup_avg_ms = (_ms(float(classic.group(3))) if classic else _ms(float(tf1.group(1))) if tf1
                         else litert.get("Warmup (avg)"))

    def stat_ms(key: str, litert_key: str | None = None) -> float | None:
        value = _ms(regular.get(key))
        return litert.get(litert_key) if value is None and litert_key else value

    mem_delta = _MEM_DELTA.search(text)
    mem_litert = {k: float(v) for k, v in _LITERT_MEM.findall(text)}
    mem_peak = _MEM_PEAK.search(text)
    result: dict[str, Any] = {
        "init_ms": init_ms, "first_ms": first_ms,
        "warmup_avg_ms": warmup_avg_ms, "warmup_runs": int(warm["count"]) if "count" in warm else None,
        "runs": int(regular["count"]) if "count" in regular else None,
        "mean_ms": mean_ms, "std_ms": stat_ms("std", "Inference (std)"),
        "min_ms": stat_ms("min", "Inference (min)"), "max_ms": stat_ms("max", "Inference (max)"),
        "median_ms": stat_ms("median"), "p5_ms": stat_ms("p5"), "p95_ms": stat_ms("p95"),
        "mem_init_mb": float(mem_delta.group(1)) if mem_delta else mem_litert.get("Init footprint"),
        "mem_overall_mb": float(mem_delta.group(2)) if mem_delta else mem_litert.get("Overall footprint"),
        "mem_peak_mb": float(mem_peak.group(1)) if mem_peak else mem_litert.get("Peak memory"),
    }
    result.update(_parse_delegation(text))
    return result


def _parse_delegation(text: str) -> dict[str, Any]:
    """Delegation facts from the log; the summary fields describe the accelerator delegate only."""
    delegations = [{"delegate": m.group(3), "replaced": int(m.group(1)),
                    "total": int(m.group(2)) if m.group(2) else None, "partitions": int(m.group(4)),
                    "scope": m.group(5)} for m in _REPLACING.finditer(text)]
    accel = [d for d in delegations if "xnnpack" not in d["delegate"].lower()]
    full, partial, none = _FULL.search(text), _PARTIAL.search(text), _NONE.search(text)
    coverage_match = none or partial or full
    coverage = "none" if none else "partial" if partial else "full" if full else None
    delegated = sum(d["replaced"] for d in accel) if accel else (0 if coverage == "none" else None)
    total = sum(d["total"] for d in accel) if accel and all(d["total"] is not None for d in accel) else None
    if coverage is not None:
        fully = coverage == "full"
    elif delegated is not None and total is not None:
        fully = delegated == total
    else:
        fully = None
    names = list(dict.fromkeys(d["delegate"] for d in accel))
    delegate = ", ".join(names) if names else (coverage_match.group(1) if coverage_match else None)
    return {"delegations": delegations, "delegate": delegate, "delegated_nodes": delegated, "total_nodes": total,
            "delegate_coverage": coverage, "delegate_kernels": int(partial.group(2)) if partial else None,
            "fully_delegated": fully}


# ---------------------------------------------------------------- running

def _check_artifact(artifact: str | Path) -> Path:
    p = Path(artifact)
    if p.suffix.lower() != ".tflite":
        raise ArtifactError(f"{p.name}: only .tflite models run on the phone (LiteRT's benchmark_model); "
                            f"export with --target tflite, or bench {p.suffix or 'it'} with --device cpu")
    if not p.is_file():
        raise ArtifactError(f"artifact not found: {p}")
    return p


def _resolve_binary(adb: Adb, binary: str | None) -> str:
    """benchmark_model's path on the phone: pushed from here, given, or found there."""
    if binary and Path(binary).expanduser().is_file():
        remote = f"{DEVICE_DIR}/benchmark_model"
        adb.push(Path(binary).expanduser(), remote)
        r = adb.shell(f"chmod 755 {shlex.quote(remote)}")
        if r.returncode != 0:
            raise AndroidPushError(f"cannot make {remote} executable on {adb.serial}: "
                                   f"{_last_line(r.stderr, r.stdout) or f'exit {r.returncode}'}")
        return remote
    if binary and not binary.startswith("/"):
        raise BenchmarkBinaryNotFound(f"--android-binary {binary}: no such file on this machine (a path on the "
                                      f"phone must be absolute, e.g. /data/local/tmp/benchmark_model)")
    candidates = [binary] if binary else list(BINARY_CANDIDATES)
    r = adb.shell(binary_lookup_command(candidates, search_path=binary is None))
    found = [l.strip() for l in r.stdout.splitlines() if l.strip().startswith("/")]
    if found:
        return found[0]
    looked = binary or f"{', '.join(BINARY_CANDIDATES)} and the phone's PATH"
    raise BenchmarkBinaryNotFound(f"no executable benchmark_model on {adb.serial} (looked in {looked}): download "
                                  f"LiteRT's prebuilt benchmark_model for android_aarch64 ({PREBUILT_URL}) and "
                                  f"pass it with --android-binary PATH (it is pushed and made executable)")


def _model_info(artifact: Path) -> tuple[str | None, int | None]:
    """(model name, MACs) from the artifact's sidecar metadata, when there is one."""
    try:
        md = read_sidecar(artifact)
    except MobileVisionError:
        return None, None
    return (md.model, md.macs) if md else (None, None)


def _backend_name(options: AndroidBenchOptions) -> str:
    return "android-litert" if options.accelerator == "cpu" else f"android-litert-{options.accelerator}"


def _row(artifact: Path, device: AdbDevice, options: AndroidBenchOptions, command: str,
         parsed: dict[str, Any] | None = None, error: str | None = None) -> AndroidBenchResult:
    """One result row from a parsed log (or an error row when ``parsed`` is None)."""
    model, macs = _model_info(artifact)
    common = dict(artifact=str(artifact), backend=_backend_name(options), model=model, threads=options.threads,
                  device=f"android:{device.serial}", macs=macs, rewarm=0, serial=device.serial,
                  device_model=device.model, accelerator=options.accelerator, command=command)
    if parsed is None:
        return AndroidBenchResult(load_ms=None, first_ms=None, runs=0, warmup=options.warmup, median_ms=None,
                                  mean_ms=None, p90_ms=None, min_ms=None, max_ms=None, std_ms=None,
                                  peak_rss_mb=None, gmacs_per_s=None, error=error, **common)
    delegation = {k: parsed[k] for k in ("delegate", "delegated_nodes", "total_nodes", "fully_delegated",
                                         "delegations")}
    memory = {k: parsed[k] for k in ("mem_init_mb", "mem_overall_mb", "mem_peak_mb")}
    error, warning = _delegation_verdict(options, parsed)
    if error:  # the accelerator took nothing: these are CPU numbers, not GPU/NPU ones
        return dataclasses.replace(_row(artifact, device, options, command, error=error), **delegation, **memory)
    typical = parsed["median_ms"] if parsed["median_ms"] is not None else parsed["mean_ms"]
    peak = parsed["mem_peak_mb"] if parsed["mem_peak_mb"] is not None else parsed["mem_overall_mb"]
    warmup_runs = parsed["warmup_runs"]
    return AndroidBenchResult(
        load_ms=parsed["init_ms"], first_ms=parsed["first_ms"], runs=parsed["runs"] or options.runs,
        warmup=warmup_runs - 1 if warmup_runs else options.warmup, median_ms=parsed["median_ms"],
        mean_ms=parsed["mean_ms"], p90_ms=None, min_ms=parsed["min_ms"], max_ms=parsed["max_ms"],
        std_ms=parsed["std_ms"], peak_rss_mb=peak, gmacs_per_s=macs / (typical / 1e3) / 1e9 if macs and typical else None,
        warmup_avg_ms=parsed["warmup_avg_ms"], p5_ms=parsed["p5_ms"], p95_ms=parsed["p95_ms"], warning=warning,
        **delegation, **memory, **common)


def _delegation_verdict(options: AndroidBenchOptions, parsed: dict[str, Any]) -> tuple[str | None, str | None]:
    """(error, warning) about whether the asked-for accelerator really ran the graph."""
    if options.accelerator == "cpu":
        return None, None
    name = options.accelerator.upper()
    delegated, total = parsed["delegated_nodes"], parsed["total_nodes"]
    if parsed["delegate_coverage"] == "none" or delegated == 0:
        return (f"the {name} delegate took none of the graph and the CPU ran it: not a {name} number "
                f"(check the model's ops against the delegate)"), None
    if parsed["fully_delegated"] is False:
        part = (f"{delegated} of {total} nodes" if delegated is not None and total is not None
                else f"{parsed['delegate_kernels']} delegate kernels" if parsed["delegate_kernels"] else "part")
        return None, f"the {name} delegate took {part}; the rest ran on the CPU"
    if parsed["fully_delegated"] is None:
        return None, f"benchmark_model's log does not say whether the {name} delegate took the whole graph"
    return None, None


def benchmark_android(artifacts: list[str | Path], options: AndroidBenchOptions | None = None,
                      on_progress: Callable[[str], None] | None = None) -> list[AndroidBenchResult]:
    """Benchmark each ``.tflite`` on the phone, one after the other; one row per artifact.

    Device-level problems (no adb, no phone, a refused push, no benchmark_model) raise; a model
    whose run fails or prints no timings becomes a row with ``error`` set and the others still run.
    """
    options = options or AndroidBenchOptions()
    options.validate()
    say = on_progress or (lambda msg: None)
    paths = [_check_artifact(a) for a in artifacts]  # before touching the phone
    if not paths:
        raise ArtifactError("no artifacts to benchmark")
    adb = Adb(options.adb, options.serial)
    device = adb.select()
    made = adb.shell(f"mkdir -p {shlex.quote(DEVICE_DIR)}")
    if made.returncode != 0:
        raise AndroidPushError(f"cannot create {DEVICE_DIR} on {device.serial}: "
                               f"{_last_line(made.stderr, made.stdout) or f'exit {made.returncode}'}")
    binary = _resolve_binary(adb, options.binary)
    rows = []
    for p in paths:
        remote = device_model_path(p)
        command = benchmark_command(binary, remote, options)
        say(f"pushing {p.name} to {device.serial}")
        adb.push(p, remote)
        try:
            say(f"running benchmark_model on {device.serial} ({p.name}, {options.accelerator})")
            rows.append(_row(p, device, options, command, parsed=_run_benchmark(adb, command, options)))
        except (BenchmarkFailed, BenchmarkOutputError) as e:
            rows.append(_row(p, device, options, command, error=str(e)))
        finally:
            adb.shell(f"rm -f {shlex.quote(remote)}")
    return rows


def _run_benchmark(adb: Adb, command: str, options: AndroidBenchOptions) -> dict[str, Any]:
    """Run the tool and parse its log (it writes to stderr; stdout is read too)."""
    try:
        r = adb.shell(command, timeout_s=options.timeout_s)
    except AndroidDeviceError as e:
        raise BenchmarkFailed(f"benchmark_model did not finish within {options.timeout_s:.0f} s on {adb.serial}: "
                              f"lower --runs or raise the timeout") from e
    text = r.stdout + ("\n" + r.stderr if r.stderr else "")
    if r.returncode != 0:
        raise BenchmarkFailed(f"benchmark_model failed on {adb.serial} (exit {r.returncode}): {_telling_line(text)}")
    return parse_benchmark_model(text)


__all__ = ["ACCELERATORS", "Adb", "AdbDevice", "AdbNotFound", "AndroidBenchOptions", "AndroidBenchResult",
           "AndroidDeviceError", "AndroidPushError", "BenchmarkBinaryNotFound", "BenchmarkFailed",
           "BenchmarkOutputError", "DEVICE_DIR", "accelerator_args", "benchmark_android", "benchmark_argv",
           "benchmark_command", "binary_lookup_command", "device_model_path", "parse_adb_devices",
           "parse_benchmark_model"]
