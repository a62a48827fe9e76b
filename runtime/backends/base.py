"""The one small protocol every runtime backend implements.

The benchmark runner and the task wrappers only see this: ``inputs``/``outputs``
(TensorSpecs as the runtime reports them), ``run(arrays) -> arrays`` in declared
order, ``embedded_metadata()`` (the JSON string stored in the artifact, or None) and
``close()``. Backends import their runtime lazily and raise BackendUnavailable with the
pip command when it is missing.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from mobilevision.errors import BackendUnavailable
from mobilevision.export.metadata import TensorSpec


@runtime_checkable
class Backend(Protocol):
    name: str
    path: Path
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]: ...

    def embedded_metadata(self) -> str | None: ...

    def close(self) -> None: ...


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
