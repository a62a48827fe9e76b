"""Does int8 pay? The int8 artifact and the fp32 program it was quantised from, timed in the same runtime.

A user asks for int8 to go faster. Whether it does depends on the runtime's int8 kernels for the model's ops
on this CPU: quantise/dequantise pairs around ops without an int8 kernel, or layout transposes on int8
tensors, can make an int8 graph slower than its float original. ``measure`` times both in one process,
alternating blocks of runs so a busy minute on a shared machine hits both alike, and, where the runtime has a
per-op profiler (ONNX Runtime, OpenVINO), names the int8 graph's slowest op types. The export records the
result in the artifact's ``quantization.speed`` and warns when int8 is not faster (``NOT_FASTER``).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BUDGET_S = 3.0          # timed seconds per precision (the runs adapt to the model's latency)
MIN_RUNS, MAX_RUNS = 5, 40
BLOCK = 5               # runs of one precision before the other's turn
PROFILE_RUNS = 3
NOT_FASTER = 1.0        # int8 / fp32 median at or above this: the export warns
TOP_TYPES = 3


@dataclass
class SpeedReport:
    """Median latency of the int8 artifact and of its fp32 original in ``runtime`` on this machine."""

    runtime: str
    fp32_ms: float
    int8_ms: float
    runs: int                       # timed runs of each precision
    threads: str = "runtime default"
    slow_ops: list[dict[str, Any]] = field(default_factory=list)   # int8's slowest op types (the profiler's)
    profiler: str | None = None     # why there are no slow_ops, where there are none
    int8_dot: str | None = None     # this CPU's int8 dot-product instructions (a cpuinfo flag), None: none found

    @property
    def ratio(self) -> float:
        return self.int8_ms / self.fp32_ms

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": round(self.ratio, 3)}

    def summary(self) -> str:
        return (f"int8 {self.int8_ms:.3g} ms vs fp32 {self.fp32_ms:.3g} ms in {self.runtime} "
                f"(x{self.ratio:.2f}, median of {self.runs} runs each)")

    def warning(self) -> str | None:
        """The loud line when int8 is not faster than fp32 here, with the op types where the time goes."""
        if self.ratio < NOT_FASTER:
            return None
        ops = ", ".join(f"{o['op_type']} {o['ms']:.3g} ms ({o['share']:.0%}, {o['count']} ops)" for o in self.slow_ops)
        where = f"; its slowest op types: {ops}" if ops else (f"; {self.profiler}" if self.profiler else "")
        return (f"int8: not faster than fp32 in {self.runtime} on this CPU ({self.int8_ms:.3g} ms vs "
                f"{self.fp32_ms:.3g} ms, x{self.ratio:.2f}, median of {self.runs} runs each){where}: for speed on "
                f"this runtime keep fp32 or fp16 (the int8 artifact was written; "
                + (f"this CPU has int8 dot-product instructions ({self.int8_dot}), so the int8 graph, not the CPU, "
                   "is what is slow)" if self.int8_dot else
                   "int8 may still pay on CPUs with int8 dot-product instructions, e.g. AVX512-VNNI or Arm dotprod)"))

INT8_DOT_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni", "asimddp")   # x86 AMX / VNNI, Arm dotprod (cpuinfo)


def int8_dot_product(cpuinfo: str | None = None) -> str | None:
    """The first of ``INT8_DOT_FLAGS`` this CPU has (Linux /proc/cpuinfo), or None (none, or not Linux)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return None
    flags = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return next((f for f in INT8_DOT_FLAGS if f in flags), None)


def _timed(backend, arrays: list[np.ndarray]) -> float:
    t0 = time.perf_counter_ns()
    backend.run(arrays)
    return (time.perf_counter_ns() - t0) / 1e6


def measure(float_path: Path, int8_path: Path, runtime: str, arrays: list[np.ndarray],
            budget_s: float = BUDGET_S, profile_folder: Path | None = None) -> SpeedReport:
    """Median of the fp32 program and the int8 artifact on ``arrays`` (artifact-side inputs), alternating blocks
    of ``BLOCK`` runs; the number of runs fits ``budget_s`` per precision (``MIN_RUNS`` .. ``MAX_RUNS``)."""
    from mobilevision.runtime.backends import open_backend

    backends = {"fp32": open_backend(float_path, backend=runtime), "int8": open_backend(int8_path, backend=runtime)}
    try:
        first = {}
        for p, b in backends.items():   # one untimed run each (allocations, lazy kernels), then one timed
            b.run(arrays)
            first[p] = _timed(b, arrays)
        runs = int(min(MAX_RUNS, max(MIN_RUNS, budget_s * 1e3 // max(first.values()))))
        times: dict[str, list[float]] = {"fp32": [], "int8": []}
        while len(times["int8"]) < runs:
            for p, b in backends.items():
                times[p] += [_timed(b, arrays) for _ in range(min(BLOCK, runs - len(times[p])))]
        report = SpeedReport(runtime, statistics.median(times["fp32"]), statistics.median(times["int8"]), runs,
                             int8_dot=int8_dot_product())
        int8 = backends["int8"]
        if not hasattr(int8, "profile_ops"):
            report.profiler = f"{runtime} has no per-op profiler here"
            if runtime == "litert":   # what LiteRT itself says instead: the ops its XNNPACK delegate left out
                from mobilevision.runtime.backends.litert import xnnpack_outside

                try:
                    partitions, outside = xnnpack_outside(Path(int8_path).read_bytes())
                except (AttributeError, RuntimeError, ValueError) as e:   # the timings above still stand
                    report.profiler += f"; LiteRT did not report XNNPACK's coverage ({type(e).__name__})"
                else:
                    report.profiler += ("; XNNPACK runs the whole int8 graph" if not outside else
                                        f"; XNNPACK leaves ops to TFLite's own kernels ({partitions} partitions): "
                                        + ", ".join(f"{t} x{n}" for t, n in
                                                    sorted(outside.items(), key=lambda kv: -kv[1])))
        elif profile_folder is not None:
            prof = int8.profile_ops(arrays, PROFILE_RUNS, profile_folder)
            total = prof.total_ms or 1.0
            report.slow_ops = [{"op_type": t, "ms": round(ms, 4), "share": round(ms / total, 3), "count": n}
                               for t, ms, n in prof.by_type()[:TOP_TYPES]]
        return report
    finally:
        for b in backends.values():
            b.close()
