"""OpenVINO backend: reads IR (.xml/.bin) or ONNX, compiles for the CPU plugin (or GPU / NPU)."""
from __future__ import annotations

import ctypes
import re
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from mobilevision.errors import ArtifactError, BackendUnavailable, MobileVisionError
from mobilevision.export.metadata import METADATA_KEY, TensorSpec

from .base import (AcceleratorFallback, AcceleratorUnavailable, Availability, Delegation, OpProfile, PerThread, missing,
                   op_profile, require)

NOT_COMPUTE = ("Parameter", "Result", "Constant")  # graph plumbing, not ops a device runs


OV_PRECISIONS = ("f32", "bf16", "default")   # --ov-precision: the INFERENCE_PRECISION_HINT asked for


def compile_config(device: str, threads: int | None = None, precision: str = "f32") -> dict[str, object]:
    """Compile properties for ``device`` (CPU, GPU or NPU).

    ``precision="f32"`` (ours) sets ``INFERENCE_PRECISION_HINT=f32`` on the CPU and GPU: on bf16/AMX CPUs the
    plugin would otherwise compute in bf16, and the GPU plugin in f16, drifting from the exported precision (an
    fp16 IR is also computed in f32). ``"default"`` sets no hint (what ``benchmark_app`` and a plain OpenVINO user
    get); ``"bf16"`` forces bf16. The NPU compiler picks its own precision. ``INFERENCE_NUM_THREADS`` is a CPU
    property.
    """
    if precision not in OV_PRECISIONS:
        raise MobileVisionError(f"OpenVINO precision {precision!r}: choose one of {', '.join(OV_PRECISIONS)}")
    if device == "NPU":
        return {"PERFORMANCE_HINT": "LATENCY"}
    config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY"}
    if precision != "default":
        config["INFERENCE_PRECISION_HINT"] = precision
    if threads and device == "CPU":
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return config


def precision_name(element_type: object) -> str:
    """OpenVINO's element type (``<Type: 'bfloat16'>``, 'f32') as mobilevision names precisions: fp32, bf16, fp16."""
    name = element_type.get_type_name() if hasattr(element_type, "get_type_name") else str(element_type)
    return {"f32": "fp32", "f16": "fp16", "bf16": "bf16", "i8": "int8", "u8": "int8"}.get(name, name)


def computed_precision(compiled) -> str:
    """What a compiled model computes in, read back from it: its ``INFERENCE_PRECISION_HINT`` (fp32 / bf16 /
    fp16), as ``int8 (rest fp32)`` when some ops run in int8 (a quantised model), ``unknown`` when not reported."""
    try:
        hint = precision_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
    except RuntimeError:   # a plugin without the property (the NPU's picks its own)
        hint = "unknown"
    runtime_ops = compiled.get_runtime_model().get_ordered_ops()
    ran = {str(op.get_rt_info()["runtimePrecision"].astype(str)) for op in runtime_ops
           if "runtimePrecision" in op.get_rt_info()}
    return f"int8 (rest {hint})" if ran & {"i8", "u8"} else hint


def device_present(device: str, available: list[str]) -> bool:
    """Whether ``Core().available_devices`` lists ``device`` (``GPU`` matches ``GPU.0``, ``GPU.1``...)."""
    return any(d == device or d.startswith(device + ".") for d in available)


def unavailable_reason(device: str, version: str, available: list[str]) -> str:
    """Why OpenVINO cannot run ``device`` here and what would make it."""
    sees = f"OpenVINO {version} sees {', '.join(available) or 'no device'}"
    if device == "CPU":
        return f"{sees}; its CPU plugin runs on x86-64 and ARM64 processors"
    if device == "GPU":
        return (f"{sees}; its GPU plugin (in the openvino package) needs an Intel GPU (integrated, Arc or Data "
                f"Center) with Intel's GPU compute runtime (OpenCL / Level Zero) installed; NVIDIA and AMD GPUs "
                f"are not OpenVINO GPU devices")
    return (f"{sees}; its NPU plugin needs an Intel Core Ultra processor's NPU with the Intel NPU driver "
            f"(Linux: the intel_vpu kernel driver plus intel/linux-npu-driver; Windows: Intel's NPU driver)")


def unsupported_ops(ops: list[tuple[str, str]], supported: dict[str, str] | set[str]) -> list[str]:
    """``Type (name)`` of the ops (type, friendly name) that ``Core.query_model`` did not place on the device."""
    return [f"{kind} ({name})" for kind, name in ops if kind not in NOT_COMPUTE and name not in supported]


def execution_delegation(device: str, executed_on: list[str]) -> Delegation:
    """Delegation from the compiled model's ``EXECUTION_DEVICES`` (e.g. ['GPU.0'] or ['CPU'])."""
    on_device = [d for d in executed_on if d == device or d.startswith(device + ".")]
    whole = bool(on_device) and len(on_device) == len(executed_on)
    note = None if on_device else f"the compiled model's EXECUTION_DEVICES are {', '.join(executed_on)}"
    return Delegation(device.lower(), f"OpenVINO {device}", list(executed_on), accelerated=whole, fallback_ops=[],
                      offloaded=bool(on_device), note=note)


def error_cause(e: Exception) -> str:
    """The line of an OpenVINO exception that names the cause: its messages open with
    ``Exception from src/...cpp:NN:`` location lines, and the reason comes after them."""
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    causes = [l for l in lines if not re.match(r"^(Exception from \S+:\d+:?|Check '.*' failed at \S+:\d+:?)$", l)]
    return (causes[0] if causes else (lines[0] if lines else type(e).__name__))[:300]


def _spec(port) -> TensorSpec:
    shape = [d.get_length() if d.is_static else -1 for d in port.get_partial_shape()]
    return TensorSpec(port.get_any_name(), shape, np.dtype(port.get_element_type().to_dtype()).name)



def run_request(request, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """One synchronous inference on ``request``; the outputs are the caller's own copies.

    Inputs whose shape and dtype match the request's input tensors are copied into those tensors' memory and
    the request runs as it is, as ``benchmark_app`` runs it; ``request.infer(arrays)`` wraps the inputs and the
    results in Python objects on every call (1-5 % of SkipNet-M's and EMO-1M's median at 224, bf16 and f32,
    2 threads, in one interleaved A/B). Any other input (a first call with a dynamic shape, another dtype)
    takes ``infer``'s own path, with its checks and conversions."""
    tensors = [request.get_input_tensor(i) for i in range(len(arrays))]
    if all(t.data.shape == a.shape and t.data.dtype == a.dtype for t, a in zip(tensors, arrays)):
        for t, a in zip(tensors, arrays):
            np.copyto(t.data, a)
        request.infer()
        return [np.array(request.get_output_tensor(i).data) for i in range(len(request.model_outputs))]
    return [np.array(v) for v in request.infer(list(arrays)).to_tuple()]

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

    def __init__(self, path: Path, threads: int | None = None, device: str = "CPU",
                 data: dict[str, bytes] | None = None, precision: str = "f32"):
        """``precision``: the inference precision asked of the plugin, one of OV_PRECISIONS (see compile_config)."""
        self.path = Path(path)
        self.device = device.upper()  # cpu / gpu / npu as elsewhere in mobilevision, or OpenVINO's own names
        config = compile_config(self.device, threads, precision)
        self._config = config
        ov = require("openvino", "openvino", "OpenVINO backend")
        self.compiled = self._weights = self._tflite = None
        with keep_signal_stack():  # also around a failed compile's release of the plugin
            try:
                core = ov.Core()
                if self.device != "CPU":
                    available = list(core.available_devices)
                    if not device_present(self.device, available):
                        version = ov.__version__.split("-")[0]
                        raise AcceleratorUnavailable(unavailable_reason(self.device, version, available))
                self.model = self._read(ov, core, data or {})
                if self.device != "CPU":
                    self._check_supported(core)
                self.compiled = core.compile_model(self.model, self.device, config)
            except RuntimeError as e:
                raise ArtifactError(f"OpenVINO cannot load {self.path} on {self.device}: {error_cause(e)}") from e
            finally:
                core = None
        # An infer request serves one call at a time: each calling thread gets its own (the compiled
        # model itself is thread-safe), so a shared Model runs threads in parallel and never mixes outputs.
        self._thread_request = PerThread(self.compiled.create_infer_request, f"OpenVINO model {self.path}")
        self._thread_request.get()
        self.inputs = [_spec(p) for p in self.compiled.inputs]
        self.outputs = [_spec(p) for p in self.compiled.outputs]

    def _read(self, ov, core, data: dict[str, bytes]):
        """The model from the verified bytes when given (never mapped from the file again, so a file
        replaced or truncated after loading cannot change or crash it), else from the path."""
        entry = data.get(self.path.name)
        if entry is None:
            return core.read_model(str(self.path))
        if self.path.suffix.lower() == ".tflite":
            return self._read_tflite(core, entry)
        if self.path.suffix.lower() != ".xml":
            return core.read_model(model=entry)
        weights = data.get(self.path.with_suffix(".bin").name)
        if weights is None:
            return core.read_model(str(self.path))
        self._weights = ov.Tensor(np.frombuffer(weights, np.uint8))   # shares the bytes, kept alive here
        return core.read_model(model=entry, weights=self._weights)

    def _read_tflite(self, core, entry: bytes):
        """OpenVINO's TFLite reader takes a path only: the verified bytes go to a private temporary file,
        removed once read."""
        self._tflite = entry
        with tempfile.TemporaryDirectory(prefix="mobilevision-ov-") as folder:
            copy = Path(folder) / self.path.name
            copy.write_bytes(entry)
            try:
                return core.read_model(str(copy))
            except RuntimeError as e:   # the frontend's message ends with the reason, after a generic line
                lines = [l.strip() for l in str(e).splitlines() if l.strip()]
                raise ArtifactError(f"OpenVINO's TFLite reader cannot read {self.path}: {lines[-1][:200] if lines else e}"
                                    f"; run it with --backend litert") from None

    def _check_supported(self, core) -> None:
        """Raise AcceleratorFallback naming the ops ``query_model`` says the device cannot run."""
        supported = core.query_model(self.model, self.device)
        ops = [(op.get_type_name(), op.get_friendly_name()) for op in self.model.get_ordered_ops()]
        missing = unsupported_ops(ops, supported)
        if missing:
            shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
            raise AcceleratorFallback(
                f"OpenVINO's {self.device} plugin cannot run {len(missing)} op(s) of the graph ({shown}); compiled "
                f"for {self.device} alone nothing falls back to the CPU, so there is no {self.device} number",
                Delegation(self.device.lower(), f"OpenVINO {self.device}", [], accelerated=False,
                           fallback_ops=missing, offloaded=False))

    def precision(self) -> str:
        """What the compiled model computes in, as it reports it (see computed_precision)."""
        return computed_precision(self.compiled)

    def delegation(self) -> Delegation:
        """What the compiled model reports in ``EXECUTION_DEVICES``."""
        return execution_delegation(self.device, list(self.compiled.get_property("EXECUTION_DEVICES")))

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return run_request(self._thread_request.get(), arrays)

    def streams(self, n: int):
        """``n`` OpenVINO streams: a second compile with the THROUGHPUT hint and NUM_STREAMS=n (same precision and
        threads), one infer request per caller."""
        import openvino as ov

        config = {**self._config, "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": int(n)}
        with keep_signal_stack():
            compiled = ov.Core().compile_model(self.model, self.device, config)
        requests = [compiled.create_infer_request() for _ in range(n)]

        def run(caller: int, arrays: list[np.ndarray]) -> list[np.ndarray]:
            return run_request(requests[caller], arrays)
        run.compiled = compiled   # kept alive with the function
        return run

    def profile_ops(self, arrays: list[np.ndarray], runs: int, folder: Path) -> OpProfile:
        """OpenVINO's performance counters (``PERF_COUNT``) on a second compiled model with the same config:
        ``runs`` runs after one warm-up, each run's counters summed. Ops the plugin fused away or did not run
        (status NOT_RUN, e.g. a Reshape folded into its consumer) are left out."""
        import openvino as ov

        with keep_signal_stack():
            compiled = ov.Core().compile_model(self.model, self.device, {**self._config, "PERF_COUNT": True})
            request = compiled.create_infer_request()
            request.infer(list(arrays))
            times: dict[tuple[str, str, str | None], float] = {}
            for _ in range(runs):
                request.infer(list(arrays))
                for info in request.profiling_info:
                    if str(info.status).endswith("NOT_RUN") or info.node_type in NOT_COMPUTE:
                        continue
                    key = (info.node_name, info.node_type, info.exec_type or None)
                    times[key] = times.get(key, 0.0) + info.real_time.total_seconds() * 1e3
            request = compiled = None
        return op_profile("openvino", runs, times)

    def embedded_metadata(self) -> str | None:
        if self.path.suffix.lower() == ".tflite":   # the flatbuffer's own metadata entry (needs ai-edge-litert)
            from .litert import read_tflite_metadata

            try:
                return read_tflite_metadata(self.path, data=self._tflite)
            except BackendUnavailable:
                return None   # the sidecar then
        if self.model.has_rt_info([METADATA_KEY]):
            return str(self.model.get_rt_info([METADATA_KEY]).astype(str))
        return None

    def close(self) -> None:
        with keep_signal_stack():  # the release, not only the compile, moves the signal stack
            if getattr(self, "_thread_request", None) is not None:
                self._thread_request.close()
            self.compiled = self.model = self._weights = None

    def __del__(self) -> None:  # a backend dropped without close() still releases under the guard
        if getattr(self, "compiled", None) is not None:
            self.close()


def probe(device: str) -> Availability:
    """``CPU`` / ``GPU`` / ``NPU`` in OpenVINO's ``Core().available_devices``."""
    import importlib

    try:
        ov = importlib.import_module("openvino")
    except ImportError:
        return missing("openvino", device, "openvino")
    name = device.upper()
    with keep_signal_stack():  # listing devices loads the plugins
        core = ov.Core()
        available = list(core.available_devices)
        found = [d for d in available if d == name or d.startswith(name + ".")]
        full = str(core.get_property(found[0], "FULL_DEVICE_NAME")) if found else ""
        core = None
    if not device_present(name, available):
        version = ov.__version__.split("-")[0]
        return Availability("openvino", device, False, unavailable_reason(name, version, available))
    return Availability("openvino", device, True, f"{found[0]} ({full})" if full else found[0])
