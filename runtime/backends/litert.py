"""LiteRT (TFLite) backend: ai_edge_litert's Interpreter with its default XNNPACK CPU delegate, or
(``device="gpu"|"npu"``) its CompiledModel API with the GPU or NPU accelerator."""
from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from mobilevision.errors import DEBUG_ENV, ArtifactError, MobileVisionError
from mobilevision.export.metadata import MAX_JSON_BYTES, METADATA_KEY, TensorSpec

from .base import (AcceleratorFallback, AcceleratorUnavailable, ArtifactClosed, Availability, Delegation, PerThread,
                   missing, require)

NOT_ACCELERATED = "Some ops are not accelerated"  # LiteRT's words when the accelerator cannot take the whole graph
# What LiteRT's C++ side prints on every load ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU."): kept off
# the user's terminal unless MOBILEVISION_DEBUG is set (the CLI's --debug sets it)
CHATTER = re.compile(r"^INFO: (Created TensorFlow Lite \S+ delegate|Initialized TensorFlow Lite runtime)")
_FD2 = threading.RLock()   # file descriptor 2 is the process's: one redirection at a time


def _read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ArtifactError(f"cannot read {path}: {e.strerror}") from None


def read_tflite_metadata(path: Path, key: str = METADATA_KEY, data: bytes | None = None) -> str | None:
    """The text of the flatbuffer metadata entry ``key`` (UTF-8, at most MAX_JSON_BYTES), or None; from
    ``data`` (the file's bytes, already read) when given."""
    schema = require("ai_edge_litert.schema_py_generated", "ai-edge-litert", "Reading .tflite metadata")
    buf = data if data is not None else _read_bytes(path)
    try:
        model = schema.Model.GetRootAs(buf, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() is not None and entry.Name().decode("utf-8", "replace") == key:
                data = model.Buffers(entry.Buffer())
                outside = data.Offset() > 1   # large models keep buffers outside the flatbuffer
                if (data.Size() if outside else data.DataLength()) > MAX_JSON_BYTES:
                    raise ArtifactError(f"{path}: its {key} metadata entry is over {MAX_JSON_BYTES >> 20} MiB; "
                                        f"re-export the artifact")
                raw = buf[data.Offset():data.Offset() + data.Size()] if outside else data.DataAsNumpy().tobytes()
                try:
                    return raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise ArtifactError(f"{path}: its {key} metadata entry is not UTF-8 text; re-export the "
                                        f"artifact") from None
    except ArtifactError:
        raise
    except Exception as e:  # a corrupt flatbuffer raises arbitrary errors from the generated code
        raise ArtifactError(f"{path} is not a valid .tflite flatbuffer ({type(e).__name__})") from e
    return None


@contextmanager
def native_stderr() -> Iterator[list[str]]:
    """Collect what native code writes to file descriptor 2 meanwhile; the lines are there on exit.

    LiteRT says why an accelerator failed in its log (which library did not load, which GPU API
    did not start), while its exception only names a source line.
    """
    lines: list[str] = []
    with _FD2, tempfile.TemporaryFile() as log:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)
            lines.extend(log.read().decode("utf-8", "replace").splitlines())


@contextmanager
def quiet_native() -> Iterator[None]:
    """LiteRT's routine load messages (``CHATTER``) are dropped; anything else native code (or another thread)
    wrote meanwhile reaches stderr afterwards, as does everything when ``MOBILEVISION_DEBUG`` is set."""
    with native_stderr() as log:
        yield
    keep = log if os.environ.get(DEBUG_ENV) else [line for line in log if not CHATTER.match(line)]
    if keep:
        sys.stderr.write("".join(f"{line}\n" for line in keep))
        sys.stderr.flush()


def xnnpack_outside(content: bytes) -> tuple[int, dict[str, int]]:
    """(XNNPACK partitions, op type -> count of the ops LiteRT runs outside XNNPACK) for a .tflite on this CPU.

    LiteRT's default CPU path hands XNNPACK every op it has a kernel for (at that op's types: an int8 GELU or
    batch matmul it may lack) and runs the rest on TFLite's own kernels, splitting the graph into partitions.
    The interpreter lists its delegate nodes next to the original ops: an op whose output enters a partition
    (or is a model output) without coming out of one ran outside. Ops between two such ops are found once
    those are gone, so callers iterate."""
    from ai_edge_litert.interpreter import Interpreter

    with quiet_native():
        interpreter = Interpreter(model_content=content, num_threads=1)
        interpreter.allocate_tensors()
    ops = interpreter._get_ops_details()
    delegates = [o for o in ops if o["op_name"] == "DELEGATE"]
    into = {int(t) for o in delegates for t in o["inputs"]}
    out_of = {int(t) for o in delegates for t in o["outputs"]}
    model_outputs = {int(d["index"]) for d in interpreter.get_output_details()}
    outside: dict[str, int] = {}
    for op in ops:
        if op["op_name"] != "DELEGATE" and any(int(t) not in out_of and (int(t) in into or int(t) in model_outputs)
                                              for t in op["outputs"]):
            outside[op["op_name"]] = outside.get(op["op_name"], 0) + 1
    return len(delegates), outside


def _reason(device: str, log: list[str]) -> str | None:
    """The log line that says why: for the GPU the API that did not start, for the NPU the plugin that did not load."""
    patterns = ([r"(Failed to (?:initialize|create|get).*)"] if device == "gpu" else
                [r"Could not load shared library \S*?([^/\s]+): (.*?)\.?$", r"(No compiler plugin found.*)"])
    for pattern in patterns:
        for line in log:
            m = re.search(pattern, line)
            if m:
                return ": ".join(g.strip() for g in m.groups())[:240]
    return None


def compile_failure(device: str, message: str, log: list[str], path: Path) -> MobileVisionError:
    """The error for a CompiledModel that did not compile for ``device``, from LiteRT's exception and log."""
    name = device.upper()
    reason = _reason(device, log)
    text = "\n".join([message, *log])
    if device == "npu" and "No compiler plugin found" in text:
        return AcceleratorUnavailable(f"LiteRT's NPU accelerator has no compiler plugin that loads here"
                                      f"{f' ({reason})' if reason else ''}")
    if NOT_ACCELERATED in text:
        return AcceleratorFallback(
            f"LiteRT's {name} accelerator cannot run the whole graph (LiteRT: '{NOT_ACCELERATED}'; it does not "
            f"name them); with the CPU allowed as fallback part would run there, so there is no {name} number",
            Delegation(device, f"LiteRT {name}", [], accelerated=False, offloaded=False, note=reason))
    if device == "gpu" and "WebGPU" in text:
        return AcceleratorUnavailable(f"LiteRT's GPU accelerator (WebGPU) did not start"
                                      f"{f': {reason}' if reason else ''}")
    first = next((l for l in message.splitlines() if l.strip()), "")
    return ArtifactError(f"LiteRT cannot compile {path} for the {name}: {reason or first[:200]}")


class LiteRTCompiledModel:
    """A .tflite compiled by LiteRT's CompiledModel API for one accelerator alone (GPU or NPU).

    The accelerator set holds no CPU: LiteRT then refuses a graph the accelerator cannot run whole
    ("Some ops are not accelerated"), so a model that opens here runs entirely on the accelerator.
    """

    def __init__(self, path: Path, device: str):
        cm = require("ai_edge_litert.compiled_model", "ai-edge-litert", f"LiteRT on the {device.upper()}")
        accelerator = getattr(cm.HardwareAccelerator, device.upper(), None)
        if accelerator is None:
            raise AcceleratorUnavailable(f"this ai-edge-litert has no {device.upper()} hardware accelerator")
        self.path, self.device = Path(path), device
        error: Exception | None = None
        with native_stderr() as log:
            try:
                self.model = cm.CompiledModel.from_file(str(self.path), hardware_accel=accelerator)
            except (RuntimeError, ValueError) as e:
                error = e
        if error is not None:
            raise compile_failure(device, str(error), log, self.path) from error
        signatures = self.model.get_signature_list()
        key = next(iter(signatures))
        self._signature = self.model.get_signature_index(key)
        ins = self.model.get_input_tensor_details(key)
        outs = self.model.get_output_tensor_details(key)
        self.inputs = [self._spec(ins[n]) for n in signatures[key]["inputs"]]
        self.outputs = [self._spec(outs[n]) for n in signatures[key]["outputs"]]
        self._in = self.model.create_input_buffers(self._signature)
        self._out = self.model.create_output_buffers(self._signature)
        self._lock = threading.Lock()

    @staticmethod
    def _spec(d: dict) -> TensorSpec:
        return TensorSpec(d["name"], [int(s) for s in d["shape"]], np.dtype(d["dtype"]).name)

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        with self._lock:   # one set of buffers on one accelerator: calls from several threads take turns
            if self.model is None:
                raise ArtifactClosed(f"LiteRT model {self.path} is closed: load it again")
            for buffer, a in zip(self._in, arrays):
                buffer.write(a)
            self.model.run_by_index(self._signature, self._in, self._out)
            return [b.read(int(np.prod(s.shape)), np.dtype(s.dtype)).reshape(s.shape)
                    for b, s in zip(self._out, self.outputs)]

    def delegation(self) -> Delegation:
        """LiteRT's own fully-accelerated flag for a model compiled with the accelerator alone."""
        flag = getattr(self.model, "is_fully_accelerated", None)
        name = self.device.upper()
        return Delegation(self.device, f"LiteRT {name}", [name], accelerated=bool(flag()) if flag else None,
                          fallback_ops=None, note=f"compiled for the {name} alone (no CPU fallback allowed)")

    def close(self) -> None:
        with self._lock:
            self._in = self._out = self.model = None


def _signature(detail: dict) -> list[int]:
    """A tensor's shape with -1 where the model leaves it open (a dynamic batch)."""
    sig = detail.get("shape_signature")
    return [int(x) for x in (sig if sig is not None and len(sig) else detail["shape"])]


class LiteRTBackend:
    name = "litert"
    # XNNPACK gives the same outputs as LiteRT's reference fp32 kernels on our fp16 .tflite: fp16 weights,
    # dequantised at load (checked on x86, see docs/benchmarks.md)
    computed_as = {"fp16": "fp32 (fp16 weights)"}

    def __init__(self, path: Path, threads: int | None = None, device: str = "cpu",
                 data: dict[str, bytes] | None = None):
        self.path = Path(path)
        self.device = device
        if device != "cpu":
            self._compiled = LiteRTCompiledModel(self.path, device)
            self.inputs, self.outputs = self._compiled.inputs, self._compiled.outputs
            return
        self._compiled = None
        # The verified bytes, read once: every thread's interpreter is made from them, never from the file
        # again (a re-export or a truncated file after loading cannot reach a model in use).
        self._content = (data or {}).get(self.path.name) or _read_bytes(self.path)
        interp_mod = require("ai_edge_litert.interpreter", "ai-edge-litert", "LiteRT backend")

        def make():
            try:
                with quiet_native():
                    interpreter = interp_mod.Interpreter(model_content=self._content, num_threads=threads)
                    interpreter.allocate_tensors()
            except (ValueError, RuntimeError) as e:
                raise ArtifactError(f"LiteRT cannot load {self.path}: {str(e).splitlines()[0][:200]}") from e
            return interpreter

        # An Interpreter serves one call at a time: each calling thread gets its own (made on its first
        # call), so a shared Model runs threads in parallel and never mixes tensors.
        self._interpreters = PerThread(make, f"LiteRT model {self.path}")
        interpreter = self._interpreters.get()
        self._in = interpreter.get_input_details()
        self._out = interpreter.get_output_details()
        self.inputs = [TensorSpec(d["name"], [int(s) for s in _signature(d)], np.dtype(d["dtype"]).name) for d in self._in]
        self.outputs = [TensorSpec(d["name"], [int(s) for s in _signature(d)], np.dtype(d["dtype"]).name)
                        for d in self._out]

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        if self._compiled is not None:
            return self._compiled.run(arrays)
        interpreter = self._interpreters.get()
        shapes = [tuple(a.shape) for a in arrays]
        if getattr(interpreter, "mv_shapes", None) != shapes and any(-1 in _signature(d) for d in self._in):
            for d, shape in zip(self._in, shapes):   # a dynamic batch: LiteRT sizes its tensors per call shape
                if -1 in _signature(d):
                    interpreter.resize_tensor_input(d["index"], list(shape), strict=True)
            interpreter.allocate_tensors()
        interpreter.mv_shapes = shapes
        for d, a in zip(self._in, arrays):
            interpreter.set_tensor(d["index"], a)
        interpreter.invoke()
        return [interpreter.get_tensor(d["index"]).copy() for d in self._out]

    def delegation(self) -> Delegation:
        if self._compiled is None:
            raise MobileVisionError("delegation() is for GPU/NPU runs; this LiteRT model runs on the CPU")
        return self._compiled.delegation()

    def embedded_metadata(self) -> str | None:
        return read_tflite_metadata(self.path, data=self._content if self._compiled is None else None)

    def close(self) -> None:
        if self._compiled is not None:
            self._compiled.close()
        else:
            self._interpreters.close()


def probe(device: str) -> Availability:
    """CPU: the interpreter is installed. GPU / NPU: LiteRT's CompiledModel API with a GPU API (GPU) or a
    dispatch library + hardware (NPU) behind it (no model is loaded)."""
    import importlib.util
    import platform

    from .litert_devices import (dispatch_vendors, intel_npu_present, litert_dir, litert_gpu_support,
                                 litert_npu_support, vulkan_icds, vulkan_loader)

    root = litert_dir()
    if device == "cpu":
        return (Availability("litert", device, True, "XNNPACK") if root is not None
                else missing("litert", device, "ai-edge-litert"))
    if root is None or importlib.util.find_spec("ai_edge_litert.compiled_model") is None:
        return missing("litert", device, "ai-edge-litert")
    if device == "gpu":
        system = platform.system()
        ok, detail = litert_gpu_support(system, vulkan_loader() if system == "Linux" else None, vulkan_icds())
    else:
        ok, detail = litert_npu_support(dispatch_vendors(root), intel_npu_present(),
                                        importlib.util.find_spec("ai_edge_litert_sdk_intel") is not None)
    return Availability("litert", device, ok, detail)
