"""The benchmark runner: latency of artifacts x backends on this machine, measured fairly.

Each (artifact, backend) pair runs in its own worker process, so its load time and peak RSS
belong to that model alone. The parent drives the timed runs round-robin across the pairs
(the starting pair rotates every round), so drift on a shared, noisy machine spreads over
all rows instead of favouring one. Each run is timed inside its worker around
``backend.run`` with ``time.perf_counter_ns``. Torch-free unless the ``torch`` backend is
asked for (and then only inside that worker).
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mobilevision.atomic_io import atomic_write_text
from mobilevision.errors import ArtifactError, BackendUnavailable, MobileVisionError

from .backends import BACKENDS, backends_for, open_backend


@dataclass
class BenchResult:
    """One artifact x backend. Times in ms (None when it failed); std is the population std
    (ddof 0); p90 is numpy's linear percentile."""

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
    gmacs_per_s: float | None        # achieved: MACs / median time
    error: str | None = None


def _input_arrays(specs, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = []
    for s in specs:
        shape = [d if d > 0 else 1 for d in s.shape]
        dtype = np.dtype(s.dtype)
        if dtype.kind == "f":
            arrays.append(rng.standard_normal(shape).astype(dtype))
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


def _worker(conn, artifact: str, backend: str, threads: int | None, warmup: int) -> None:
    """Load, run once (first inference), warm up, then time one run per 'run' message."""
    devnull = os.open(os.devnull, os.O_WRONLY)  # runtimes log to fd 1/2 ("Created XNNPACK delegate")
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        t0 = time.perf_counter_ns()
        b = open_backend(artifact, backend=backend, threads=threads)
        load_ms = (time.perf_counter_ns() - t0) / 1e6
        from .api import read_metadata

        md = read_metadata(b)
        arrays = _input_arrays(b.inputs)
        t0 = time.perf_counter_ns()
        b.run(arrays)
        first_ms = (time.perf_counter_ns() - t0) / 1e6
        for _ in range(warmup):
            b.run(arrays)
        conn.send(("ready", {"load_ms": load_ms, "first_ms": first_ms,
                             "model": md.model if md else None, "macs": md.macs if md else None}))
        while True:
            cmd = conn.recv()
            if cmd != "run":
                break
            t0 = time.perf_counter_ns()
            b.run(arrays)
            conn.send(("time", time.perf_counter_ns() - t0))
        conn.send(("done", _peak_rss_mb()))
    except MobileVisionError as e:
        conn.send(("error", str(e)))
    except Exception as e:  # a runtime crashing on one artifact must not take the others down
        conn.send(("error", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]))
    finally:
        conn.close()


@dataclass
class _Pair:
    artifact: str
    backend: str
    process: mp.Process | None = None
    conn: object = None
    info: dict | None = None
    times_ns: list[int] = dataclasses.field(default_factory=list)
    peak_rss_mb: float = 0.0
    error: str | None = None


def plan(artifacts: list[str | Path], backends: list[str] | None = None) -> list[tuple[str, str]]:
    """The (artifact, backend) pairs to measure; raises for missing files and impossible backends."""
    for name in backends or []:
        if name not in BACKENDS:
            raise BackendUnavailable(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    pairs = []
    for a in artifacts:
        if not Path(a).exists():
            raise ArtifactError(f"artifact not found: {a}")
        allowed = backends_for(a)
        chosen = [allowed[0]] if not backends else [b for b in backends if b in allowed]
        pairs += [(str(a), b) for b in chosen]
    if not pairs:
        raise BackendUnavailable(f"none of the backends {', '.join(backends or [])} can open these artifacts")
    return pairs


def _stop(p: _Pair) -> None:
    if p.process is not None and p.process.is_alive():
        p.process.kill()
    if p.process is not None:
        p.process.join(timeout=5)


def benchmark(artifacts: list[str | Path], backends: list[str] | None = None, threads: int | None = None,
              runs: int = 50, warmup: int = 5, on_progress: Callable[[str], None] | None = None,
              order_log: list[tuple[str, str]] | None = None,
              pairs: list[tuple[str | Path, str]] | None = None) -> list[BenchResult]:
    """Measure every artifact x backend pair; pairs that fail to load become rows with ``error`` set.

    ``pairs`` (optional) lists exact (artifact, backend) pairs instead of artifacts x backends.
    ``order_log`` (optional) receives the (artifact, backend) of every timed run in the order run.
    """
    say = on_progress or (lambda msg: None)
    if pairs is not None:
        for a, b in pairs:
            plan([a], [b])  # same checks as for artifacts x backends
        measured = [_Pair(str(a), b) for a, b in pairs]
    else:
        measured = [_Pair(a, b) for a, b in plan(artifacts, backends)]
    ctx = mp.get_context("spawn")
    try:
        for p in measured:  # load one at a time, so loads do not compete for the CPU
            say(f"loading {Path(p.artifact).name} in {p.backend}")
            parent, child = ctx.Pipe()
            p.process = ctx.Process(target=_worker, args=(child, p.artifact, p.backend, threads, warmup), daemon=True)
            p.process.start()
            child.close()
            p.conn = parent
            kind, payload = _receive(p)
            if kind == "ready":
                p.info = payload
            else:
                p.error = payload
                _stop(p)
        live = [p for p in measured if p.error is None]
        for r in range(runs):
            say(f"timed run {r + 1}/{runs}")
            for k in range(len(live)):
                p = live[(r + k) % len(live)]  # rotate who goes first each round
                if p.error is not None:
                    continue
                p.conn.send("run")
                kind, payload = _receive(p)
                if kind == "time":
                    p.times_ns.append(payload)
                    if order_log is not None:
                        order_log.append((p.artifact, p.backend))
                else:
                    p.error = payload
                    _stop(p)
        for p in live:
            if p.error is None:
                p.conn.send("stop")
                kind, payload = _receive(p)
                p.peak_rss_mb = payload if kind == "done" else 0.0
    finally:
        for p in measured:
            _stop(p)
    return [_result(p, threads, runs, warmup) for p in measured]


def _receive(p: _Pair, timeout_s: float = 600.0):
    if not p.conn.poll(timeout_s):
        return "error", f"no answer from the {p.backend} worker within {timeout_s:.0f} s"
    try:
        return p.conn.recv()
    except EOFError:
        return "error", f"the {p.backend} worker died (exit code {p.process.exitcode})"


def _result(p: _Pair, threads: int | None, runs: int, warmup: int) -> BenchResult:
    device = "cpu"
    if p.error is not None or not p.times_ns:
        info = p.info or {}
        return BenchResult(p.artifact, p.backend, info.get("model"), threads, device, info.get("load_ms"),
                           info.get("first_ms"), 0, warmup, None, None, None, None, None, None, 0.0,
                           info.get("macs"), None, p.error or "no timed runs")
    t = np.asarray(p.times_ns, dtype=np.float64) / 1e6
    median = float(np.median(t))
    macs = p.info["macs"]
    return BenchResult(p.artifact, p.backend, p.info["model"], threads, device, p.info["load_ms"],
                       p.info["first_ms"], len(t), warmup, median, float(t.mean()), float(np.percentile(t, 90)),
                       float(t.min()), float(t.max()), float(t.std()), p.peak_rss_mb, macs,
                       macs / (median / 1e3) / 1e9 if macs else None)


def write_json(results: list[BenchResult], path: str | Path) -> Path:
    """Write the rows as a JSON list (atomic)."""
    return atomic_write_text(path, json.dumps([dataclasses.asdict(r) for r in results], indent=2))
