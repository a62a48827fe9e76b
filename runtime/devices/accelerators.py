"""GPU and NPU runs on this machine.

    from mobilevision.runtime.devices.accelerators import benchmark_accelerated
    run = benchmark_accelerated(["m.onnx", "m.tflite"], "gpu")   # rows + the backends with no GPU here

Which runtime drives which accelerator is each backend's own ``probe(device)`` (``runtime/backends/*``, asked
through ``backends.probe``; no model is loaded); the backend then opens the model on it and reports where the
graph went (``backends.base.Delegation``). Compiling a model ahead of time for a phone NPU is an export step
(``mobilevision.export.npu``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mobilevision.errors import ArtifactError, BackendUnavailable, MobileVisionError

from ..backends import ACCELERATOR_BACKENDS, ACCELERATOR_DEVICES, BACKENDS, Availability, backends_for, probe
from ..profile import DEFAULT_REWARM, BenchResult, benchmark


# ---------------------------------------------------------------- benchmarking

@dataclass
class AcceleratedRun:
    """The rows measured on the accelerator, and the backends that could not run on it here."""

    device: str
    rows: list[BenchResult]
    unavailable: list[Availability]


def plan_accelerated(artifacts: list[str | Path], device: str, backends: list[str] | None = None,
                     prober: Callable[[str, str], Availability] = probe
                     ) -> tuple[list[tuple[str, str]], list[Availability]]:
    """The (artifact, backend) pairs that can run on ``device`` here, and one Availability per backend that cannot.

    Candidates are every accelerator-capable backend that opens the artifact (``backends``
    narrows them); each backend is probed once.
    """
    if device not in ACCELERATOR_DEVICES:
        raise MobileVisionError(f"unknown accelerator {device!r}: choose {' or '.join(ACCELERATOR_DEVICES)}")
    unknown = [b for b in backends or [] if b not in BACKENDS]
    if unknown:
        raise BackendUnavailable(f"unknown backend {unknown[0]!r}: choose one of {', '.join(BACKENDS)}")
    cpu_only = [b for b in backends or [] if b not in ACCELERATOR_BACKENDS]
    if cpu_only:
        raise BackendUnavailable(f"{', '.join(cpu_only)} runs on the CPU only: for --device {device} use "
                                 f"{', '.join(ACCELERATOR_BACKENDS)}")
    if not artifacts:
        raise ArtifactError("no artifacts to benchmark")
    for a in artifacts:
        backends_for(a)  # ArtifactError for an unknown format
        if not Path(a).exists():
            raise ArtifactError(f"artifact not found: {a}")
    probed: dict[str, Availability] = {}
    pairs: list[tuple[str, str]] = []
    for a in artifacts:
        candidates = [b for b in backends_for(a) if b in ACCELERATOR_BACKENDS and (not backends or b in backends)]
        for b in candidates:
            if b not in probed:
                probed[b] = prober(b, device)
            if probed[b].available:
                pairs.append((str(a), b))
    if not probed:
        if backends:
            raise BackendUnavailable(f"none of the backends {', '.join(backends)} can open these artifacts")
        own = [probe(backends_for(a)[0], device) for a in artifacts]
        raise BackendUnavailable(f"no runtime here runs these artifacts on the {device.upper()}: "
                                 f"{'; '.join(dict.fromkeys(av.line() for av in own))}")
    return list(dict.fromkeys(pairs)), [av for av in probed.values() if not av.available]


def benchmark_accelerated(artifacts: list[str | Path], device: str, backends: list[str] | None = None,
                          threads: int | None = None, runs: int = 50, warmup: int = 5, rewarm: int = DEFAULT_REWARM,
                          on_progress: Callable[[str], None] | None = None) -> AcceleratedRun:
    """Benchmark every artifact with every backend that can run it on ``device`` here (``profile.benchmark``).

    Backends with no such accelerator here are returned in ``unavailable``, not measured. Each
    measured row reports its delegation; a row whose accelerator took none of the graph is an error row.
    """
    pairs, unavailable = plan_accelerated(artifacts, device, backends)
    rows = benchmark([], threads=threads, runs=runs, warmup=warmup, on_progress=on_progress, pairs=pairs,
                     rewarm=rewarm, device=device) if pairs else []
    return AcceleratedRun(device, rows, unavailable)


__all__ = ["AcceleratedRun", "Availability", "benchmark_accelerated", "plan_accelerated", "probe"]
