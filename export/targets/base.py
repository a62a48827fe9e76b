"""The contract every export target implements (one file per format).

``convert(module, example, options) -> handle`` builds the artifact in memory,
``save(handle, path, metadata_json) -> files`` writes it with the metadata embedded,
``validate(path) -> dict`` describes what was written (inputs, outputs, op types).
``runtime`` names the backend that runs it for parity (None: numeric parity impossible here).
"""
from __future__ import annotations

import contextlib
import io
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch


@dataclass
class ExportOptions:
    precision: str = "fp32"                       # "fp32" | "fp16" | "int8"
    input_names: tuple[str, ...] = ("image",)
    output_names: tuple[str, ...] = ("logits",)
    opset: int = 18
    workdir: Path = field(default_factory=Path.cwd)  # scratch space inside the output folder
    # int8 only: calibration inputs, each an array shaped like the model input (1, C, H, W) float32,
    # already preprocessed exactly as the artifact's metadata says an app feeds it.
    calibration: list[Any] = field(default_factory=list)
    # int8 only: PyTorch module paths (prefixes, e.g. "head" or "stages.3.0") whose layers stay float.
    keep_float: tuple[str, ...] = ()
    # Filled by the target's int8 conversion: which tool and scheme it used, which of its own layers
    # it kept in float, anything the sidecar should record (JSON-serialisable values).
    quantization: dict[str, Any] = field(default_factory=dict)


class Target(Protocol):
    name: str
    suffix: str
    runtime: str | None
    precisions: tuple[str, ...]

    def convert(self, module: torch.nn.Module, example: torch.Tensor, options: ExportOptions) -> Any: ...

    def save(self, handle: Any, path: Path, metadata_json: str) -> list[Path]: ...

    def validate(self, path: Path) -> dict[str, Any]: ...

    def numeric_parity_unavailable(self) -> str | None: ...


def op_histogram(op_types) -> dict[str, int]:
    return dict(sorted(Counter(op_types).items()))


@contextlib.contextmanager
def quiet_converters():
    """Silence converters that print progress to stdout/stderr (torch.onnx, coremltools, MLIR)."""
    buf_out, buf_err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buf_out), contextlib.redirect_stderr(buf_err):
        # native code (MLIR, XNNPACK) writes to fd 1/2 directly; silence those too
        saved = [os.dup(1), os.dup(2)]
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in (*saved, devnull):
                os.close(fd)
