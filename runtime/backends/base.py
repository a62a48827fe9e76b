"""The one small protocol every runtime backend implements.

The benchmark runner and the task wrappers only see this: ``inputs``/``outputs``
(TensorSpecs as the runtime reports them), ``run(arrays) -> arrays`` in declared
order, ``embedded_metadata()`` (the JSON string stored in the artifact, or None) and
``close()``. Backends import their runtime lazily and raise BackendUnavailable with the
pip command when it is missing.

A backend that can read back what it computes in (OpenVINO: the compiled model's inference precision) also
offers ``precision() -> str``; for the others ``computed_precision`` says it from the artifact's metadata and
the backend's class attributes ``computed_as`` ({stored precision: what this runtime computes it in}, where
they differ) or ``computes_in`` (one answer whatever the artifact).

Backends that can run on an accelerator take ``device="gpu"|"npu"`` and then also offer
``delegation() -> Delegation``: what the runtime itself reports about where the graph ran.

A backend whose runtime has a per-op profiler offers ``profile_ops(arrays, runs, folder) -> OpProfile``: the
runtime's own profiler (ONNX Runtime's session profiling, OpenVINO's performance counters) on a separate
session or compiled model, so the timed runs never carry its overhead.

For throughput (``bench --streams N``) a backend may offer ``streams(n) -> Callable[[int, arrays], arrays]``:
a run function for n concurrent callers (caller index first), built the runtime's way (OpenVINO: a
THROUGHPUT-hinted compile with n streams; ONNX Runtime: n sessions sharing the threads). Without it, n threads
call ``run`` on the backend itself (LiteRT: one interpreter per thread).
"""
from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generic, Protocol, TypeVar, runtime_checkable

import numpy as np

from mobilevision.errors import BackendUnavailable, MobileVisionError
from mobilevision.export.integrity import Integrity
from mobilevision.export.metadata import TensorSpec

ACCELERATOR_DEVICES = ("gpu", "npu")


@dataclass(frozen=True)
class Availability:
    """Whether ``backend`` can run on ``device`` here (what a backend module's ``probe(device)`` returns): what
    would run it, or why not and what it needs. No model is loaded to find out."""

    backend: str
    device: str
    available: bool
    detail: str

    def line(self) -> str:
        """The one line the CLI prints for a backend that cannot run here."""
        return f"{self.backend} {self.device}: not available on this machine: {self.detail}"


def missing(backend: str, device: str, package: str) -> Availability:
    """The Availability of a backend whose Python package is not installed."""
    return Availability(backend, device, False, f"needs the '{package}' package, which is not installed: "
                                                f"pip install {package}")


class AcceleratorUnavailable(BackendUnavailable):
    """The asked-for GPU/NPU, or the runtime build or vendor SDK that drives it, is not on this machine."""


@dataclass
class Delegation:
    """Where a runtime says the graph of an accelerator run went.

    ``executed_on``: what the runtime reports (ONNX Runtime's session providers, OpenVINO's
    ``EXECUTION_DEVICES``, LiteRT's accelerator set, Core ML's compute units). ``accelerated``: the
    whole graph runs on the accelerator (None: the runtime does not say). ``fallback_ops``: ops the
    runtime placed on the CPU, when it names them. ``offloaded``: the accelerator runs any of it.
    """

    device: str
    accelerator: str
    executed_on: list[str]
    accelerated: bool | None
    fallback_ops: list[str] | None = None
    offloaded: bool = True
    note: str | None = None

    def check(self) -> None:
        """Raise AcceleratorFallback when the accelerator runs none of the graph (those are CPU numbers)."""
        if not self.offloaded:
            why = self.note or f"the runtime reports {', '.join(self.executed_on) or 'nothing'}"
            raise AcceleratorFallback(f"{self.accelerator} ran none of the graph ({why}): a CPU run, not a "
                                      f"{self.device.upper()} number", self)


@dataclass
class OpTime:
    """One op of a per-op profile: its node name, type, mean time per run (ms) and what ran it (the runtime's
    kernel or implementation name, e.g. OpenVINO's ``jit_avx2_FP32``; ONNX Runtime's provider)."""

    name: str
    op_type: str
    ms: float
    kernel: str | None = None


@dataclass
class OpProfile:
    """A runtime's per-op profile of ``runs`` runs: every op, slowest first; ``total_ms`` is the sum of their
    mean times (less than the latency: the runtime's own overhead is not in any op); ``file`` the runtime's
    raw profile where it writes one (ONNX Runtime's trace JSON, loadable in chrome://tracing)."""

    runtime: str
    runs: int
    ops: list[OpTime]
    file: str | None = None

    @property
    def total_ms(self) -> float:
        return sum(o.ms for o in self.ops)

    def by_type(self) -> list[tuple[str, float, int]]:
        """(op type, mean ms per run, op count), slowest type first."""
        types: dict[str, list[float]] = {}
        for o in self.ops:
            types.setdefault(o.op_type, []).append(o.ms)
        return sorted(((t, sum(v), len(v)) for t, v in types.items()), key=lambda x: -x[1])


def op_profile(runtime: str, runs: int, times: dict[tuple[str, str, str | None], float],
               file: str | None = None) -> OpProfile:
    """An OpProfile from {(name, type, kernel): total ms over ``runs`` runs}."""
    ops = [OpTime(n, t, total / runs, k) for (n, t, k), total in times.items()]
    return OpProfile(runtime, runs, sorted(ops, key=lambda o: -o.ms), file)


class AcceleratorFallback(MobileVisionError):
    """An accelerator run whose graph the runtime put (entirely or partly, as stated) on the CPU."""

    def __init__(self, message: str, delegation: Delegation):
        super().__init__(message)
        self.delegation = delegation


@runtime_checkable
class Backend(Protocol):
    name: str
    path: Path
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    integrity: "Integrity"   # set by open_backend: the files' SHA-256 it checked against the sidecar

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]: ...

    def embedded_metadata(self) -> str | None: ...

    def close(self) -> None: ...


def computed_precision(backend: Backend, stored: str | None) -> str:
    """What ``backend`` computes in: its own ``precision()`` where it reads that back from the runtime, else
    the artifact's stored precision (metadata: fp32, fp16, int8) as that runtime runs it; 'unknown' without either."""
    own = getattr(backend, "precision", None)
    if callable(own):
        return own()
    always = getattr(backend, "computes_in", None)
    if always:
        return always
    return getattr(backend, "computed_as", {}).get(stored, stored or "unknown")


T = TypeVar("T")


class ArtifactClosed(MobileVisionError):
    """A model used after ``close()``."""


class PerThread(Generic[T]):
    """One ``make()`` per calling thread (an OpenVINO infer request, a LiteRT interpreter): a runtime
    object that must not serve two threads at once is never shared, and threads run in parallel.

    ``get()`` returns the calling thread's own object, made on first use; it lives in a ``threading.local``,
    so it is freed when its thread ends (a pool that keeps making fresh threads does not grow memory).
    ``close()`` drops them all and the factory; then ``get()`` raises ArtifactClosed (a call already
    running keeps its object until it returns)."""

    def __init__(self, make: Callable[[], T], what: str):
        self._make: Callable[[], T] | None = make
        self._what = what
        self._local = threading.local()

    def get(self) -> T:
        local, make = self._local, self._make
        if make is None:
            raise ArtifactClosed(f"{self._what} is closed: load it again")
        obj = getattr(local, "obj", None)
        if obj is None:
            obj = local.obj = make()
        return obj

    def close(self) -> None:
        self._make = None
        self._local = threading.local()


def require(module: str, package: str, purpose: str):
    """Import ``module`` or raise BackendUnavailable naming the pip package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise BackendUnavailable(
            f"{purpose} needs the '{package}' package, which is not installed: "
            f"pip install {package}  (or pip install 'mobilevision[runtime]')") from e


def numpy_dtype(name: str) -> np.dtype:
    """'float32' / 'tensor(float)' / 'f32' style names -> numpy dtype."""
    aliases = {"tensor(float)": "float32", "tensor(float16)": "float16", "f32": "float32",
               "f16": "float16", "tensor(int64)": "int64", "tensor(int32)": "int32",
               "tensor(uint8)": "uint8", "tensor(int8)": "int8", "i64": "int64", "i32": "int32",
               "u8": "uint8", "i8": "int8", "boolean": "bool"}
    return np.dtype(aliases.get(name, name))
