"""OpenVINO backend: reads IR (.xml/.bin) or ONNX, compiles for the CPU plugin."""
from __future__ import annotations

import ctypes
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from mobilevision.errors import ArtifactError
from mobilevision.export.metadata import METADATA_KEY, TensorSpec

from .base import require


def _spec(port) -> TensorSpec:
    shape = [d.get_length() if d.is_static else -1 for d in port.get_partial_shape()]
    return TensorSpec(port.get_any_name(), shape, np.dtype(port.get_element_type().to_dtype()).name)


class _StackT(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]  # Linux


_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


@contextmanager
def keep_signal_stack() -> Iterator[None]:
    """Leave the calling thread's alternate signal stack as OpenVINO found it.

    OpenVINO's CPU plugin installs its own sigaltstack when it compiles a model and puts back the
    one it saw when the model is released. Released out of order (A, B compiled; A, then B
    released), that is a stack it has already freed; the next Python signal handler on the thread
    (SIGINT, or the SIGCHLD handler a torch DataLoader installs) then segfaults. Measured with
    openvino 2026 on Linux. Python's handlers only need an alternate stack that exists.
    """
    if _libc is None:
        yield
        return
    saved = _StackT()
    _libc.sigaltstack(None, ctypes.byref(saved))
    try:
        yield
    finally:
        _libc.sigaltstack(ctypes.byref(saved), None)


class OpenVINOBackend:
    name = "openvino"

    def __init__(self, path: Path, threads: int | None = None, device: str = "CPU"):
        ov = require("openvino", "openvino", "OpenVINO backend")
        self.path = Path(path)
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        # f32: on bf16/AMX CPUs the plugin would otherwise compute in bf16 and drift from the
        # exported precision (an fp16 IR is also computed in f32 on CPU)
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        with keep_signal_stack():  # also around a failed compile's release of the plugin
            try:
                core = ov.Core()
                self.model = core.read_model(str(self.path))
                self.compiled = core.compile_model(self.model, device, config)
            except RuntimeError as e:
                raise ArtifactError(f"OpenVINO cannot load {self.path}: {str(e).splitlines()[0][:200]}") from e
            finally:
                core = None
        self.request = self.compiled.create_infer_request()
        self.inputs = [_spec(p) for p in self.compiled.inputs]
        self.outputs = [_spec(p) for p in self.compiled.outputs]

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        result = self.request.infer(list(arrays))
        return [np.array(result[p]) for p in self.compiled.outputs]

    def embedded_metadata(self) -> str | None:
        if self.model.has_rt_info([METADATA_KEY]):
            return str(self.model.get_rt_info([METADATA_KEY]).astype(str))
        return None

    def close(self) -> None:
        with keep_signal_stack():  # the release, not only the compile, moves the signal stack
            self.request = self.compiled = self.model = None

    def __del__(self) -> None:  # a backend dropped without close() still releases under the guard
        if getattr(self, "compiled", None) is not None:
            self.close()
