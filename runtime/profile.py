"""The benchmark runner: latency of artifacts x backends on this machine, measured fairly.

Each (artifact, backend) pair runs in its own worker process ('spawn'), so its load time and
peak RSS belong to that model alone. The parent drives the timed runs round-robin across the
pairs (pair A one turn, pair B one turn, ...; the starting pair rotates every round), so drift
on a shared, noisy machine spreads over all rows instead of favouring one. A turn is
``rewarm`` untimed runs and ``block`` timed runs back to back (as the vendor tools loop), each
timed inside the worker around ``backend.run`` with ``time.perf_counter_ns`` (the pipe round
trip is not in the number). After its turn a worker
waits until its runtime's threads stop spin-waiting before it answers, so one pair's spinning
never eats into the next pair's run. Torch-free unless the ``torch`` backend is asked for
(and then only inside that worker).
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import platform
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Callable

import numpy as np

from mobilevision.atomic_io import atomic_write_text
from mobilevision.errors import ArtifactError, BackendUnavailable, MobileVisionError

from .backends import BACKENDS, SUFFIX_BACKENDS, AcceleratorFallback, Delegation, backends_for, open_backend
from .backends.base import computed_precision
from .backends.openvino import OV_PRECISIONS

INPUT_SEED = 0            # the random input is the same for every pair and every run
DEFAULT_REWARM = 0        # untimed runs at the start of each turn
DEFAULT_BLOCK = 10        # timed runs per turn, back to back (as the vendor tools loop)
ANSWER_TIMEOUT_S = 600.0  # a worker that does not answer within this is declared dead
QUIET_TIMEOUT_S = 0.2     # longest wait for a worker's thread pool to stop spinning after a run
MAX_SHAPE_DIM = 1 << 16   # --shape: largest dimension
MAX_INPUT_ELEMENTS = 1 << 28   # --shape: largest input (elements; 1 GiB of float32)


class BenchUsageError(MobileVisionError):
    """A bench request that cannot be measured as asked (a dynamic input without --shape, a bad --shape)."""


@dataclass
class BenchResult:
    """One artifact x backend row.

    Times in ms (None when the pair failed before timing). ``median``/``mean``/``p90``/``p95``/``p99``/
    ``min``/``max``/``std`` are over the ``runs`` timed runs only (not the first inference, not the
    warm-up); the percentiles are numpy's linear-interpolated ones, ``std`` the population standard
    deviation (ddof=0); ``fps`` is 1000 / median (one request at a time). The timed runs come in turns of
    ``block`` runs back to back, as the runtimes' own tools time them, each turn after ``rewarm`` untimed
    runs (default 0); ``first_ms`` is the cold first inference.
    ``load_ms`` is opening the backend (session creation / compilation).
    ``peak_rss_mb`` is the worker process's peak resident memory (MB = 2**20 bytes): Python,
    the runtime library, the model and its buffers. ``gmacs_per_s`` is the achieved throughput,
    MACs / median latency, in 1e9 MAC/s (None when the metadata does not give the MACs).
    ``threads`` is what was requested (None = the runtime's default). ``device`` is where it ran
    (``cpu``, or ``gpu`` / ``npu`` for an accelerator run). Accelerator rows also say what the runtime
    reports about delegation: ``executed_on`` (ONNX Runtime's session providers, OpenVINO's
    EXECUTION_DEVICES, LiteRT's accelerator, Core ML's compute units), ``accelerated`` (the whole
    graph on the accelerator; None where the runtime does not say) and ``fallback_ops`` (the ops
    the runtime placed on the CPU, where it names them). A run whose accelerator took none of the
    graph is an error row: those would be CPU numbers.
    ``precision`` is what the runtime computed in, read back from it where it can (OpenVINO's compiled
    INFERENCE_PRECISION_HINT), else the artifact's stored precision as that runtime runs it (see
    ``backends.base.computed_precision``; e.g. ``fp32 (fp16 weights)``). ``ov_precision`` is the precision
    asked of OpenVINO (f32, default, bf16; None for other backends). ``input_shapes``: name -> the shape
    timed (a dynamic dimension is set by ``shapes``). ``runtime_version`` is the installed version of the
    backend's runtime package, ``host`` the machine (CPU model, logical cores, OS, Python, mobilevision).
    """

    artifact: str
    backend: str
    model: str | None
    threads: int | None
    device: str
    load_ms: float | None
    first_ms: float | None
    runs: int
    warmup: int
    median_ms: float | None
    mean_ms: float | None
    p90_ms: float | None
    min_ms: float | None
    max_ms: float | None
    std_ms: float | None
    peak_rss_mb: float
    macs: int | None
    gmacs_per_s: float | None
    error: str | None = None
    rewarm: int = DEFAULT_REWARM    # untimed runs right before each timed run (see ``benchmark``)
    accelerated: bool | None = None
    fallback_ops: list[str] | None = None
    executed_on: list[str] | None = None
    precision: str | None = None
    ov_precision: str | None = None
    input_shapes: dict[str, list[int]] | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    fps: float | None = None
    runtime_version: str | None = None
    host: dict[str, object] | None = None
    streams: int | None = None            # bench --streams N: concurrent requests of the throughput phase
    throughput_fps: float | None = None   # inferences per second with ``streams`` requests in flight
    stream_latency_ms: float | None = None  # median latency of one request during that phase
    throughput_error: str | None = None     # why there is no throughput when it was asked for
    op_profile: dict | None = None     # bench --profile: the runtime's per-op profile (see OpProfile), else None
    profile_error: str | None = None   # why there is no op_profile when one was asked for
    block: int = DEFAULT_BLOCK         # timed runs per turn, back to back (see ``benchmark``)


# the package whose version a backend's rows report
RUNTIME_PACKAGES = {"ort": "onnxruntime", "litert": "ai-edge-litert", "openvino": "openvino",
                    "coreml": "coremltools", "torch": "torch", "executorch": "executorch"}


def runtime_version(backend: str) -> str | None:
    """The installed version of ``backend``'s runtime package, or None when it is not installed."""
    import importlib.metadata

    package = RUNTIME_PACKAGES.get(backend)
    try:
        return f"{package} {importlib.metadata.version(package)}" if package else None
    except importlib.metadata.PackageNotFoundError:
        return None


def host_info() -> dict[str, object]:
    """This machine, as a benchmark row records it: CPU model, logical cores, OS, Python, mobilevision."""
    import importlib.metadata

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        version = importlib.metadata.version("mobilevision")
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"cpu": cpu, "logical_cores": os.cpu_count(), "os": platform.platform(), "python": platform.python_version(),
            "mobilevision": version}


def parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """``NAME=1x3x224x224`` -> (name, dims); raises BenchUsageError naming what is wrong."""
    name, sep, dims = text.partition("=")
    parts = dims.lower().split("x")
    if not sep or not name.strip() or not all(p.strip().isdigit() for p in parts):
        raise BenchUsageError(f"--shape {text!r}: write INPUT_NAME=DIMS with DIMS like 1x3x224x224")
    shape = tuple(int(p) for p in parts)
    if not all(1 <= d <= MAX_SHAPE_DIM for d in shape) or int(np.prod(shape, dtype=object)) > MAX_INPUT_ELEMENTS:
        raise BenchUsageError(f"--shape {text!r}: each dimension must be 1..{MAX_SHAPE_DIM} and the input at most "
                              f"{MAX_INPUT_ELEMENTS} elements")
    return name.strip(), shape


def parse_shapes(texts: list[str]) -> dict[str, tuple[int, ...]]:
    """Repeated ``--shape NAME=DIMS`` -> {name: dims}; one input named twice is a BenchUsageError."""
    shapes: dict[str, tuple[int, ...]] = {}
    for text in texts:
        name, dims = parse_shape(text)
        if name in shapes:
            raise BenchUsageError(f"--shape names input {name!r} twice: give one shape per input")
        shapes[name] = dims
    return shapes


def input_shape(spec, given: tuple[int, ...] | None, artifact: str = "") -> list[int]:
    """The shape to time for one input: the runtime's, with its dynamic dimensions (< 1) from ``given``.

    Raises BenchUsageError for a dynamic input without ``given`` (it would time a guessed shape), or a ``given``
    of another rank or that changes a static dimension."""
    dims = list(spec.shape)
    where = f"{Path(artifact).name} input {spec.name!r}" if artifact else f"input {spec.name!r}"
    shown = "x".join(str(d) if d > 0 else "?" for d in dims)
    if given is None:
        dynamic = [i for i, d in enumerate(dims) if d < 1]
        if dynamic:
            raise BenchUsageError(f"{where} has dynamic dimension(s) {', '.join(map(str, dynamic))} ({shown}): give "
                                  f"the shape to time, e.g. --shape {spec.name}="
                                  f"{'x'.join(str(d) if d > 0 else '1' for d in dims)}")
        return dims
    if len(given) != len(dims) or any(d > 0 and d != g for d, g in zip(dims, given)):
        raise BenchUsageError(f"--shape {spec.name}={'x'.join(map(str, given))} does not fit {where} ({shown}; "
                              f"? = dynamic)")
    return list(given)


def input_arrays(specs, seed: int = INPUT_SEED, shapes: dict[str, tuple[int, ...]] | None = None,
                 artifact: str = "") -> list[np.ndarray]:
    """Random inputs matching the runtime's input specs, fixed seed; dynamic dimensions from ``shapes``
    (name -> dims), a dynamic input without one is a BenchUsageError (see ``input_shape``)."""
    rng = np.random.default_rng(seed)
    arrays = []
    for s in specs:
        shape = input_shape(s, (shapes or {}).get(s.name), artifact)
        dtype = np.dtype(s.dtype)
        if dtype.kind == "f":
            arrays.append(rng.standard_normal(shape).astype(dtype))
        elif dtype.kind == "b":
            arrays.append(rng.integers(0, 2, shape).astype(dtype))
        else:
            arrays.append(rng.integers(0, 127, shape).astype(dtype))
    return arrays


def _peak_rss_mb() -> float:
    """This process's peak resident memory (MB).

    Linux: VmHWM of the process's own address space. ru_maxrss would be wrong here: Linux
    carries it over fork+exec, so a spawned worker would report its parent's peak.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if platform.system() == "Darwin" else peak / 2**10  # bytes on macOS, KiB elsewhere


def _busy_threads() -> int | None:
    """How many of this process's other threads are running now (Linux; None elsewhere)."""
    me = threading.get_native_id()
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return None
    busy = 0
    for tid in tids:
        if int(tid) == me:
            continue
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # the thread ended meanwhile
        busy += state == "R"
    return busy


def _wait_until_idle(timeout_s: float = QUIET_TIMEOUT_S) -> None:
    """Return once the runtime's thread pool has stopped spinning (two idle polls in a row).

    Pools spin-wait after a run (ONNX Runtime for ~20 ms), which would steal the cores from
    whichever pair the parent runs next; so no worker hands the CPU on before it is quiet.
    """
    deadline = time.perf_counter() + timeout_s
    idle_polls = 0
    while idle_polls < 2 and time.perf_counter() < deadline:
        busy = _busy_threads()
        if busy is None:
            return
        idle_polls = idle_polls + 1 if busy == 0 else 0
        time.sleep(0.0005)


def _delegation_info(delegation: Delegation) -> dict:
    """The BenchResult fields of a backend's delegation report."""
    return {"accelerated": delegation.accelerated, "fallback_ops": delegation.fallback_ops,
            "executed_on": delegation.executed_on}


def _worker(conn: Connection, artifact: str, backend: str, threads: int | None, warmup: int,
            rewarm: int, device: str = "cpu", ov_precision: str | None = None,
            shapes: dict[str, tuple[int, ...]] | None = None, profile_runs: int = 0,
            profile_dir: str | None = None, streams: int = 1, runs: int = 0) -> None:
    """Load, run once (first inference), warm up, then per "run" message: ``rewarm`` untimed
    runs and one timed run. On a GPU/NPU, first ask the runtime where the graph went
    (``backend.delegation()``) and refuse a run whose accelerator took none of it. After the timed runs
    (and the peak RSS), ``streams`` > 1 measures throughput (``_throughput``) and ``profile_runs`` > 0 runs the
    runtime's per-op profiler (``profile_ops``).

    Protocol (worker -> parent): ("ready", info) | ("time", ns) ... | ("done", {"rss", "profile", ...}), or
    ("error", message) | ("usage", message) | ("fallback", info with "message") at any point, after which
    the worker exits ("usage": the request itself cannot be measured; the parent stops the whole run).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it kills us
    devnull = os.open(os.devnull, os.O_WRONLY)    # runtimes log to fd 1/2 ("Created XNNPACK delegate")
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    b = None
    try:
        t0 = time.perf_counter_ns()
        b = open_backend(artifact, backend=backend, threads=threads, device=device, ov_precision=ov_precision)
        load_ms = (time.perf_counter_ns() - t0) / 1e6
        from .api import read_metadata

        delegation = {}
        if device != "cpu":
            facts = b.delegation()
            delegation = _delegation_info(facts)
            facts.check()  # raises AcceleratorFallback when the accelerator runs none of the graph
        md = read_metadata(b)
        arrays = input_arrays(b.inputs, shapes=shapes, artifact=artifact)
        precision = computed_precision(b, md.precision if md else None)
        shapes_run = {spec.name: list(a.shape) for spec, a in zip(b.inputs, arrays)}
        t0 = time.perf_counter_ns()
        b.run(arrays)
        first_ms = (time.perf_counter_ns() - t0) / 1e6
        for _ in range(warmup):
            b.run(arrays)
        _wait_until_idle()
        conn.send(("ready", {"load_ms": load_ms, "first_ms": first_ms,
                             "model": md.model if md else None, "macs": md.macs if md else None,
                             "precision": precision, "input_shapes": shapes_run, **delegation}))
        while (message := conn.recv()) != "stop":
            n = message[1] if isinstance(message, tuple) else 1   # ("run", n): n timed runs back to back
            for _ in range(rewarm):
                b.run(arrays)
            elapsed = []
            for _ in range(n):
                t0 = time.perf_counter_ns()
                b.run(arrays)
                elapsed.append(time.perf_counter_ns() - t0)
            _wait_until_idle()
            conn.send(("times", elapsed))
        done = {"rss": _peak_rss_mb()}
        if streams > 1:
            done |= _throughput(b, backend, arrays, streams, max(runs, 4 * streams))
        if profile_runs > 0:
            done |= _op_profile(b, backend, arrays, profile_runs, profile_dir)
        conn.send(("done", done))
    except AcceleratorFallback as e:
        conn.send(("fallback", {"message": str(e), **_delegation_info(e.delegation)}))
    except BenchUsageError as e:
        conn.send(("usage", str(e)))
    except MobileVisionError as e:
        conn.send(("error", str(e)))
    except (EOFError, BrokenPipeError):
        pass  # the parent went away; nothing left to report to
    except Exception as e:  # a runtime crashing on one artifact must not take the others down
        first_line = str(e).splitlines()[0] if str(e) else ""
        conn.send(("error", f"{type(e).__name__}: {first_line}"[:300]))
    finally:
        if b is not None:
            b.close()
        conn.close()


def _throughput(b, backend: str, arrays: list[np.ndarray], streams: int, requests: int) -> dict:
    """``requests`` inferences by ``streams`` threads, each keeping one request in flight (after one warm-up
    each): {"throughput_fps", "stream_latency_ms"}, or {"throughput_error": why not}. The runtime's own
    streams where the backend offers them (see backends.base), else threads on the backend itself."""
    try:
        maker = getattr(b, "streams", None)
        run = maker(streams) if maker is not None else (lambda caller, xs: b.run(xs))
        for i in range(streams):
            run(i, arrays)
        left, lock = [requests], threading.Lock()
        latencies: list[float] = []
        failures: list[BaseException] = []
        start = threading.Barrier(streams + 1)

        def caller(i: int) -> None:
            start.wait()
            while True:
                with lock:
                    if left[0] <= 0 or failures:
                        return
                    left[0] -= 1
                t0 = time.perf_counter_ns()
                try:
                    run(i, arrays)
                except BaseException as e:   # reported below, once
                    failures.append(e)
                    return
                with lock:
                    latencies.append((time.perf_counter_ns() - t0) / 1e6)

        workers = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(streams)]
        for w in workers:
            w.start()
        start.wait()
        t0 = time.perf_counter_ns()
        for w in workers:
            w.join()
        wall_s = (time.perf_counter_ns() - t0) / 1e9
        if failures:
            raise failures[0]
    except Exception as e:
        return {"throughput_error": f"{backend} with {streams} streams failed: {type(e).__name__}: "
                                   f"{(str(e).splitlines() or [''])[0][:200]}"}
    return {"throughput_fps": len(latencies) / wall_s, "stream_latency_ms": float(np.median(latencies))}


def _op_profile(b, backend: str, arrays: list[np.ndarray], runs: int, folder: str | None) -> dict:
    """{"profile": the OpProfile as a dict} from the runtime's own profiler, or {"profile_error": why not}."""
    profile = getattr(b, "profile_ops", None)
    if profile is None:
        return {"profile_error": NO_OP_PROFILER.get(backend, f"{backend} has no per-op profiler here")}
    try:
        with _tempdir(folder) as where:
            found = profile(arrays, runs, Path(where))
    except Exception as e:   # the profiled session is extra: its failure costs the profile, not the row
        return {"profile_error": f"{backend}'s profiler failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
                if str(e) else f"{backend}'s profiler failed: {type(e).__name__}"}
    out = dataclasses.asdict(found)
    out["total_ms"] = found.total_ms
    out["by_type"] = [{"op_type": t, "ms": ms, "count": n} for t, ms, n in found.by_type()]
    return {"profile": out}


def _tempdir(folder: str | None):
    """``folder`` itself (the runtime's raw profile is kept there), or a temporary one removed afterwards."""
    import contextlib
    import tempfile

    return contextlib.nullcontext(folder) if folder else tempfile.TemporaryDirectory(prefix="mv_profile_")


# runtimes whose Python API has no per-op profiler: what a user can do instead
NO_OP_PROFILER = {
    "litert": "LiteRT's Python API has no per-op profiler: TFLite's benchmark_model --enable_op_profiling=true "
              "has one (not shipped in the ai-edge-litert wheel)",
    "executorch": "ExecuTorch's per-op timings need a runtime built with ETDump (devtools); the pip runtime has none",
    "coreml": "Core ML's per-op timings are in Xcode's Core ML performance report (macOS)",
    "torch": "use torch.profiler on the eager model; bench --profile covers the runtimes' own profilers",
}


@dataclass
class _Pair:
    """Parent-side state of one (artifact, backend) worker."""

    artifact: str
    backend: str
    device: str = "cpu"
    ov_precision: str | None = None
    process: mp.process.BaseProcess | None = None
    conn: Connection | None = None
    info: dict | None = None
    times_ns: list[int] = dataclasses.field(default_factory=list)
    peak_rss_mb: float = 0.0
    error: str | None = None
    finished: bool = False          # the worker answered "stop" and is exiting on its own
    profile: dict | None = None
    profile_error: str | None = None
    throughput: dict | None = None


def cannot_open(artifact: str | Path, backend: str) -> str | None:
    """Why ``backend`` cannot open ``artifact`` (one line), or None when it can."""
    allowed = backends_for(artifact)
    if backend in allowed:
        return None
    return f"the {backend} backend cannot open {Path(artifact).suffix} files: use {', '.join(allowed)}"


def plan(artifacts: list[str | Path], backends: list[str] | None = None) -> list[tuple[str, str]]:
    """The (artifact, backend) pairs to measure, in order, without duplicates.

    ``backends=None``: each artifact's default backend. Otherwise every artifact x every listed
    backend; ``benchmark`` gives a backend that cannot open an artifact an error row saying so (see
    ``cannot_open``), so nothing asked for is dropped. Raises ArtifactError for a missing file or unknown
    format, BackendUnavailable for an unknown backend name or when no listed backend can open any of the
    artifacts.
    """
    for name in backends or []:
        if name not in BACKENDS:
            raise BackendUnavailable(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    if not artifacts:
        raise ArtifactError("no artifacts to benchmark")
    pairs: list[tuple[str, str]] = []
    for a in artifacts:
        allowed = backends_for(a)  # raises ArtifactError for an unknown suffix
        if not Path(a).exists():
            raise ArtifactError(f"artifact not found: {a}")
        pairs += [(str(a), b) for b in ([allowed[0]] if not backends else backends)]
    if all(cannot_open(a, b) for a, b in pairs):
        formats = "; ".join(f"{s} opens with {', '.join(SUFFIX_BACKENDS[s])}"
                            for s in dict.fromkeys(Path(a).suffix.lower() for a in artifacts))
        raise BackendUnavailable(f"none of the backends {', '.join(backends or [])} can open these "
                                 f"artifacts ({formats})")
    return list(dict.fromkeys(pairs))


def _with_ov_precisions(pairs: list[tuple[str, str]], ov_precisions: list[str] | None) -> list[tuple[str, str, str | None]]:
    """Each openvino pair once per asked-for OpenVINO precision (default: f32), the others as they are."""
    if ov_precisions is not None:
        for p in ov_precisions:
            if p not in OV_PRECISIONS:
                raise BenchUsageError(f"--ov-precision {p!r}: choose one of {', '.join(OV_PRECISIONS)}")
        if not any(b == "openvino" and not cannot_open(a, b) for a, b in pairs):
            raise BenchUsageError("--ov-precision applies to openvino rows, and none is benchmarked: add "
                                  "--backend openvino")
    triples = []
    for a, b in pairs:
        precisions = list(dict.fromkeys(ov_precisions or ["f32"])) if b == "openvino" else [None]
        triples += [(a, b, p) for p in precisions]
    return triples


def benchmark(artifacts: list[str | Path], backends: list[str] | None = None, threads: int | None = None,
              runs: int = 50, warmup: int = 5, on_progress: Callable[[str], None] | None = None,
              order_log: list[tuple[str, str]] | None = None,
              pairs: list[tuple[str | Path, str]] | None = None, rewarm: int = DEFAULT_REWARM,
              device: str = "cpu", ov_precisions: list[str] | None = None,
              shapes: dict[str, tuple[int, ...]] | None = None, profile_runs: int = 0,
              profile_dir: str | Path | None = None, streams: int = 1,
              block: int = DEFAULT_BLOCK) -> list[BenchResult]:
    """Measure every artifact x backend pair (see ``plan``); one BenchResult per pair, in plan order.

    Per pair: load, first inference, ``warmup`` untimed runs; then ``runs`` rounds, each giving
    every pair one turn (round-robin, rotating start). A turn is ``rewarm`` untimed runs, then ``block``
    timed runs back to back (fewer in the last round when ``runs`` is not a multiple), as the runtimes'
    own tools (litert-benchmark, benchmark_app; see ``crosscheck``) time their loops. ``block=1`` times
    every run right after the other pairs' turns (caches holding their models, the runtime's threads
    asleep), which no tool does: OpenVINO at bf16 read 1.1-1.4x benchmark_app on a 2-core VM.
    A pair that fails to load or run becomes a row with ``error`` set; the others still run.
    ``pairs`` (optional) lists exact (artifact, backend) pairs instead of artifacts x backends.
    ``order_log`` (optional) receives the (artifact, backend) of every timed run, in the order run.
    ``device``: ``cpu`` (default), or ``gpu`` / ``npu`` to open every pair on that accelerator
    (``devices/accelerators.py`` picks the pairs that can); see BenchResult for what such rows add.
    ``ov_precisions``: one openvino row per precision asked of OpenVINO (f32, default, bf16; default: f32),
    interleaved like any rows. ``shapes``: input name -> dims for inputs with dynamic dimensions. A dynamic
    input without a shape, or a shape no input takes, raises BenchUsageError (after stopping every worker).
    ``profile_runs`` > 0: after its timed runs each row runs the runtime's per-op profiler that many runs on a
    separate session (``op_profile``; ``profile_error`` where the runtime has none); ``profile_dir`` keeps the
    runtimes' raw profiles. ``streams`` > 1: after its timed runs each row also measures throughput with that many
    requests in flight (``throughput_fps``, ``stream_latency_ms``; OpenVINO with the THROUGHPUT hint and that many
    streams, ONNX Runtime with that many sessions sharing the threads, others with that many threads).
    """
    if profile_runs < 0 or not 1 <= streams <= 64:
        raise MobileVisionError(f"profile_runs must be >= 0 and streams 1..64 (got {profile_runs}, {streams})")
    if runs < 1 or block < 1 or warmup < 0 or rewarm < 0 or (threads is not None and threads < 1):
        raise MobileVisionError(f"runs and block must be >= 1, warmup and rewarm >= 0 and threads >= 1 (got "
                                f"runs={runs}, block={block}, warmup={warmup}, rewarm={rewarm}, threads={threads})")
    say = on_progress or (lambda msg: None)
    if pairs is not None:
        if not pairs:
            raise ArtifactError("no artifacts to benchmark")
        for a, b in pairs:
            plan([a], [b])  # the same checks as for artifacts x backends
        chosen = list(dict.fromkeys((str(a), b) for a, b in pairs))
    else:
        chosen = plan(artifacts, backends)
    measured = [_Pair(a, b, device, ov) for a, b, ov in _with_ov_precisions(chosen, ov_precisions)]
    ctx = mp.get_context("spawn")
    try:
        for p in measured:  # load one at a time, so loads do not compete for the CPU
            p.error = cannot_open(p.artifact, p.backend)
            if p.error is None:
                say(f"loading {Path(p.artifact).name} in {p.backend}")
                _start(ctx, p, threads, warmup, rewarm, shapes, profile_runs,
                       str(profile_dir) if profile_dir is not None else None, streams, runs)
        _check_shapes_used(measured, shapes)
        live = [p for p in measured if p.error is None]
        for r, done in enumerate(range(0, runs, block)):
            n = min(block, runs - done)
            say(f"timed runs {done + 1}-{done + n}/{runs}" if n > 1 else f"timed run {done + 1}/{runs}")
            for k in range(len(live)):
                p = live[(r + k) % len(live)]  # rotate who goes first each round
                if p.error is None:
                    _time_turn(p, n, order_log)
        for p in live:
            if p.error is None:
                p.conn.send("stop")
                kind, payload = _receive(p)
                p.finished = kind == "done"
                done = payload if p.finished else {}
                p.peak_rss_mb = done.get("rss", 0.0)
                p.profile, p.profile_error = done.get("profile"), done.get("profile_error")
                p.throughput = {k: done[k] for k in ("throughput_fps", "stream_latency_ms", "throughput_error")
                                if k in done} | {"streams": streams} if streams > 1 else None
    finally:  # also on KeyboardInterrupt: no worker outlives the call
        for p in measured:
            _stop(p)
    return [_result(p, threads, warmup, rewarm, block) for p in measured]


def _check_shapes_used(measured: list[_Pair], shapes: dict[str, tuple[int, ...]] | None) -> None:
    """Raise BenchUsageError for a --shape that names no input of any loaded row (a typo would be ignored)."""
    names = {n for p in measured for n in ((p.info or {}).get("input_shapes") or {})}
    unused = [n for n in shapes or {} if n not in names]
    if unused and names:
        raise BenchUsageError(f"--shape {', '.join(map(repr, unused))}: no such input; the inputs are "
                              f"{', '.join(sorted(names))}")


def _start(ctx, p: _Pair, threads: int | None, warmup: int, rewarm: int,
           shapes: dict[str, tuple[int, ...]] | None = None, profile_runs: int = 0,
           profile_dir: str | None = None, streams: int = 1, runs: int = 0) -> None:
    parent, child = ctx.Pipe()
    p.process = ctx.Process(target=_worker, args=(child, p.artifact, p.backend, threads, warmup, rewarm, p.device,
                                                  p.ov_precision, shapes, profile_runs, profile_dir, streams, runs),
                            name=f"bench-{p.backend}-{Path(p.artifact).name}", daemon=True)
    p.process.start()
    child.close()
    p.conn = parent
    kind, payload = _receive(p)
    if kind == "ready":
        p.info = payload
    elif kind == "usage":   # the request cannot be measured as asked: no row, the whole run stops
        _stop(p)
        raise BenchUsageError(payload)
    elif kind == "fallback":  # the facts go into the error row
        p.info = {k: v for k, v in payload.items() if k != "message"}
        p.error = payload["message"]
        _stop(p)
    else:
        p.error = payload
        _stop(p)


def _time_turn(p: _Pair, n: int, order_log: list[tuple[str, str]] | None) -> None:
    """One turn of ``p``: its ``rewarm`` untimed runs, then ``n`` timed runs back to back."""
    p.conn.send(("run", n))
    kind, payload = _receive(p)
    if kind == "times":
        p.times_ns.extend(payload)
        if order_log is not None:
            order_log.extend([(p.artifact, p.backend)] * len(payload))
    else:
        p.error = payload
        _stop(p)


def _receive(p: _Pair, timeout_s: float = ANSWER_TIMEOUT_S) -> tuple[str, object]:
    try:
        if not p.conn.poll(timeout_s):
            return "error", f"no answer from the {p.backend} worker within {timeout_s:.0f} s"
        return p.conn.recv()
    except (EOFError, ConnectionError):
        p.process.join(timeout=5)
        return "error", f"the {p.backend} worker died (exit code {p.process.exitcode})"


def _stop(p: _Pair) -> None:
    """Let a finished worker exit on its own (briefly), kill it otherwise; close the pipe."""
    if p.process is not None:
        if p.finished or p.error is not None:  # exiting: give it a moment to do so cleanly
            p.process.join(timeout=2)
        if p.process.is_alive():
            p.process.kill()
            p.process.join(timeout=5)
    if p.conn is not None:
        p.conn.close()
        p.conn = None


def _result(p: _Pair, threads: int | None, warmup: int, rewarm: int, block: int = DEFAULT_BLOCK) -> BenchResult:
    info = p.info or {}
    delegation = {k: info.get(k) for k in ("accelerated", "fallback_ops", "executed_on", "precision", "input_shapes")}
    delegation["ov_precision"] = p.ov_precision
    if p.error is not None or not p.times_ns:
        return BenchResult(p.artifact, p.backend, info.get("model"), threads, p.device, info.get("load_ms"),
                           info.get("first_ms"), 0, warmup, None, None, None, None, None, None, p.peak_rss_mb,
                           info.get("macs"), None, p.error or "no timed runs", rewarm, **delegation, block=block,
                           **_facts(p.backend))
    times = np.asarray(p.times_ns, dtype=np.float64) / 1e6
    stats = latency_stats(times)
    macs = info["macs"]
    return BenchResult(
        artifact=p.artifact, backend=p.backend, model=info["model"], threads=threads, device=p.device,
        load_ms=info["load_ms"], first_ms=info["first_ms"], warmup=warmup, **stats,
        peak_rss_mb=p.peak_rss_mb, macs=macs,
        gmacs_per_s=macs / (stats["median_ms"] / 1e3) / 1e9 if macs else None, rewarm=rewarm, block=block,
        **delegation,
        p95_ms=float(np.percentile(times, 95)), p99_ms=float(np.percentile(times, 99)),
        fps=1e3 / stats["median_ms"] if stats["median_ms"] > 0 else None, **_facts(p.backend),
        op_profile=p.profile, profile_error=p.profile_error, **_throughput_fields(p))


def _throughput_fields(p: _Pair) -> dict:
    t = p.throughput
    if t is None:
        return {}
    return {"streams": t.get("streams"), "throughput_fps": t.get("throughput_fps"),
            "stream_latency_ms": t.get("stream_latency_ms"), "throughput_error": t.get("throughput_error")}


def _facts(backend: str) -> dict:
    return {"runtime_version": runtime_version(backend), "host": host_info()}


def latency_stats(times_ms) -> dict:
    """runs, median, mean, p90 (numpy's linear percentile), min, max and std (ddof=0) of timed runs in ms;
    the Kotlin runtime's ``LatencyStats`` computes the same (checked by the golden tests)."""
    t = np.asarray(times_ms, dtype=np.float64)
    if t.size == 0:
        raise ValueError("latency statistics need at least one timed run")
    return {"runs": int(t.size), "median_ms": float(np.median(t)), "mean_ms": float(t.mean()),
            "p90_ms": float(np.percentile(t, 90)), "min_ms": float(t.min()), "max_ms": float(t.max()),
            "std_ms": float(t.std(ddof=0))}


def write_json(results: list[BenchResult], path: str | Path) -> Path:
    """Write the rows as a JSON list, atomically (temp file beside ``path`` + os.replace)."""
    return atomic_write_text(path, json.dumps([dataclasses.asdict(r) for r in results], indent=2) + "\n")
