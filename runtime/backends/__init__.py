"""Backend registry: name -> implementing class, imported only when used.

A new runtime is one file in this folder plus one line here. ``torch`` lives in the
main package (it needs torch); the runtime never imports it unless asked for it.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from mobilevision.errors import ArtifactError, BackendUnavailable

from .base import Backend

BACKENDS: dict[str, str] = {
    "ort": "mobilevision.runtime.backends.ort:OrtBackend",
    "litert": "mobilevision.runtime.backends.litert:LiteRTBackend",
    "openvino": "mobilevision.runtime.backends.openvino:OpenVINOBackend",
    "coreml": "mobilevision.runtime.backends.coreml:CoreMLBackend",
    "torch": "mobilevision.torch_backend:TorchBackend",
}

# Which backends can open which artifact suffix; the first is the default.
SUFFIX_BACKENDS: dict[str, tuple[str, ...]] = {
    ".onnx": ("ort", "openvino", "torch"),
    ".tflite": ("litert", "torch"),
    ".xml": ("openvino", "torch"),
    ".mlpackage": ("coreml", "torch"),
    ".mlmodel": ("coreml", "torch"),
}


def artifact_suffix(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIX_BACKENDS:
        known = ", ".join(SUFFIX_BACKENDS)
        raise ArtifactError(f"unknown artifact type {str(path)!r}: expected one of {known}")
    return suffix


def backends_for(path: str | Path) -> tuple[str, ...]:
    return SUFFIX_BACKENDS[artifact_suffix(path)]


def open_backend(path: str | Path, backend: str | None = None, threads: int | None = None) -> Backend:
    """Open ``path`` with ``backend`` (default: the format's own runtime)."""
    p = Path(path)
    allowed = backends_for(p)
    name = backend or allowed[0]
    if name not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    if name not in allowed:
        raise BackendUnavailable(f"backend {name!r} cannot open {p.suffix} files: use one of {', '.join(allowed)}")
    if not p.exists():
        raise ArtifactError(f"artifact not found: {p}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)(p, threads=threads)


__all__ = ["Backend", "BACKENDS", "SUFFIX_BACKENDS", "open_backend", "backends_for", "artifact_suffix"]
