"""Backend registry: one line per runtime (its class, imported only when used, and what it opens).

A new runtime is one file in this folder plus one line here. ``torch`` lives in the
main package (it needs torch); the runtime never imports it unless asked for it.
"""
from __future__ import annotations

import importlib
import numbers
from dataclasses import dataclass, field
from pathlib import Path

from mobilevision.errors import ArtifactError, BackendUnavailable, MobileVisionError

from mobilevision.export.integrity import verify_artifact

from .base import ACCELERATOR_DEVICES, AcceleratorFallback, AcceleratorUnavailable, Availability, Backend, Delegation

@dataclass(frozen=True)
class Registered:
    """What the registry knows of a backend without importing it."""

    impl: str                                   # "module:Class"
    suffixes: tuple[str, ...]                   # the formats it is the runtime of (their default backend)
    reads: tuple[str, ...] = ()                 # other formats it can open
    accelerators: bool = False                  # takes device="gpu"|"npu"
    companions: dict[str, tuple[str, ...]] = field(default_factory=dict)   # entry suffix -> files beside it
    folders: tuple[str, ...] = ()               # suffixes whose artifact is a folder


BACKENDS: dict[str, Registered] = {
    "ort": Registered("mobilevision.runtime.backends.ort:OrtBackend", (".onnx",), accelerators=True),
    "litert": Registered("mobilevision.runtime.backends.litert:LiteRTBackend", (".tflite",), accelerators=True),
    # OpenVINO also reads ONNX and TFLite (float models, not our fp16 ones); its IR keeps the weights in a .bin
    "openvino": Registered("mobilevision.runtime.backends.openvino:OpenVINOBackend", (".xml",), (".onnx", ".tflite"),
                           accelerators=True, companions={".xml": (".bin",)}),
    "coreml": Registered("mobilevision.runtime.backends.coreml:CoreMLBackend", (".mlpackage", ".mlmodel"),
                         accelerators=True, folders=(".mlpackage",)),
    "executorch": Registered("mobilevision.runtime.backends.executorch:ExecuTorchBackend", (".pte",)),
    "torch": Registered("mobilevision.torch_backend:TorchBackend", (),
                        (".onnx", ".tflite", ".xml", ".mlpackage", ".mlmodel")),
}


def _by_suffix() -> dict[str, tuple[str, ...]]:
    """suffix -> the backends that open it: the format's own runtime first, then the others in registry order."""
    table: dict[str, list[str]] = {}
    for name, reg in BACKENDS.items():
        for suffix in reg.suffixes:
            table.setdefault(suffix, []).insert(0, name)
    for name, reg in BACKENDS.items():
        for suffix in reg.reads:
            table.setdefault(suffix, []).append(name)
    return {s: tuple(names) for s, names in table.items()}


# Which backends can open which artifact suffix; the first is the default.
SUFFIX_BACKENDS: dict[str, tuple[str, ...]] = _by_suffix()


def companion_suffixes(suffix: str) -> tuple[str, ...]:
    """Files an artifact with this entry suffix needs beside it (OpenVINO's .bin)."""
    return tuple(c for reg in BACKENDS.values() for c in reg.companions.get(suffix.lower(), ()))


def is_folder_format(suffix: str) -> bool:
    """Whether an artifact with this suffix is a folder (Core ML's .mlpackage)."""
    return any(suffix.lower() in reg.folders for reg in BACKENDS.values())


def artifact_suffix(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIX_BACKENDS:
        known = ", ".join(SUFFIX_BACKENDS)
        raise ArtifactError(f"unknown artifact type {str(path)!r}: expected one of {known}")
    return suffix


def backends_for(path: str | Path) -> tuple[str, ...]:
    return SUFFIX_BACKENDS[artifact_suffix(path)]


# Backends that take ``device="gpu"|"npu"``.
ACCELERATOR_BACKENDS: tuple[str, ...] = tuple(name for name, reg in BACKENDS.items() if reg.accelerators)


def probe(backend: str, device: str = "cpu") -> Availability:
    """Whether ``backend`` can run on ``device`` (cpu, gpu, npu) on this machine: its module's own
    ``probe(device)``, which loads no model (and, on the CPU, imports no runtime it need not)."""
    if backend not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if device != "cpu" and device not in ACCELERATOR_DEVICES:
        raise MobileVisionError(f"unknown device {device!r}: choose cpu, {' or '.join(ACCELERATOR_DEVICES)}")
    module = BACKENDS[backend].impl.split(":")[0]
    try:
        own = importlib.import_module(module).probe
    except ImportError as e:   # the backend file itself needs a package that is missing
        return Availability(backend, device, False, f"needs '{e.name}', which is not installed")
    return own(device)


MAX_THREADS = 1024


def open_backend(path: str | Path, backend: str | None = None, threads: int | None = None,
                 device: str = "cpu", ov_precision: str | None = None) -> Backend:
    """Open ``path`` with ``backend`` (default: the format's own runtime) on ``device`` (cpu, gpu, npu).

    ``ov_precision``: OpenVINO only, the inference precision to compile for (f32 = ours, default = the plugin's
    own choice, bf16); None keeps f32.

    Symlinks are followed; a device, FIFO or directory (a file, for ``.mlpackage``) is refused unread."""
    import stat

    p = Path(path)
    allowed = backends_for(p)
    name = backend or allowed[0]
    if name not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    if name not in allowed:
        raise BackendUnavailable(f"backend {name!r} cannot open {p.suffix} files: use one of {', '.join(allowed)}")
    if not p.exists():
        raise ArtifactError(f"artifact not found: {p}")
    checks = [(p, is_folder_format(p.suffix))]   # (path, must be a directory)
    for suffix in companion_suffixes(p.suffix):   # OpenVINO's .bin; a missing one is the backend's to report
        if p.with_suffix(suffix).exists():
            checks.append((p.with_suffix(suffix), False))
    for f, want_dir in checks:
        mode = f.stat().st_mode
        if not (stat.S_ISDIR(mode) if want_dir else stat.S_ISREG(mode)):
            kind = {"d": "a directory", "p": "a FIFO", "c": "a device", "b": "a device", "s": "a socket"}.get(
                stat.filemode(mode)[0], "a file")
            raise ArtifactError(f"{f} is not a {'directory' if want_dir else 'regular file'} (it is {kind}): "
                                "give the path of the exported artifact")
    module, cls = BACKENDS[name].impl.split(":")
    if device != "cpu" and device not in ACCELERATOR_DEVICES:
        raise BackendUnavailable(f"unknown device {device!r}: choose cpu, {' or '.join(ACCELERATOR_DEVICES)}")
    if device != "cpu" and name not in ACCELERATOR_BACKENDS:
        raise BackendUnavailable(f"the {name} backend runs on the CPU only: for --device {device} use one of "
                                 f"{', '.join(ACCELERATOR_BACKENDS)}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, numbers.Integral)
                                or not 1 <= threads <= MAX_THREADS):
        raise MobileVisionError(f"threads={threads!r}: give an integer in 1..{MAX_THREADS}, or None for the "
                                f"runtime's default")
    if ov_precision is not None and name != "openvino":
        raise MobileVisionError(f"an OpenVINO precision applies to the openvino backend only, not {name}")
    # Read and hashed once, before any runtime parses a byte; the runtime gets exactly these bytes.
    integrity = verify_artifact(p)
    kwargs = {"threads": None if threads is None else int(threads), "data": integrity.contents}
    if device != "cpu":
        kwargs["device"] = device
    if ov_precision is not None:
        kwargs["precision"] = ov_precision
    b = getattr(importlib.import_module(module), cls)(p, **kwargs)
    b.integrity = integrity
    return b


__all__ = ["ACCELERATOR_BACKENDS", "ACCELERATOR_DEVICES", "AcceleratorFallback", "AcceleratorUnavailable", "Availability",
           "Backend",
           "BACKENDS", "Delegation", "SUFFIX_BACKENDS", "open_backend", "backends_for", "artifact_suffix", "probe"]
