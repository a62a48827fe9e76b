"""ExecuTorch backend: a .pte run by ExecuTorch's own runtime (``executorch.runtime``), on the delegates it was
exported with (XNNPACK on the CPU; ops no delegate took run on ExecuTorch's portable kernels).

ExecuTorch's Python bindings import torch: a .pte needs ``torch`` and ``executorch`` installed, and both load
only when a .pte is opened (this module imports neither). Their import noise (torchao's missing CUDA kernels, a
pytree warning, cpuinfo's log) is kept off the user's terminal.

Threads: the pybinding holds the GIL while a method runs (measured: two threads on two programs run no faster
than one after the other), so per-thread programs would only cost memory; calls take turns on one lock, and
XNNPACK's own threadpool parallelises inside each call. That pool is process-wide: ``threads`` sets its size
for this model's calls (``_unsafe_reset_threadpool``, only while no call runs); None keeps ExecuTorch's default.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import tempfile
import threading
import warnings
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from mobilevision.errors import ArtifactError, BackendUnavailable, InputMismatch
from mobilevision.export.metadata import MAX_JSON_BYTES, TensorSpec

from .base import ArtifactClosed, Availability, Delegation, missing

METADATA_METHOD = "mobilevision_metadata"   # the constant method holding the metadata JSON (export/targets/executorch.py)
FORWARD = "forward"
XNNPACK = "XnnpackBackend"

# ExecuTorch's ScalarType codes (TensorInfo.dtype(), schema.ScalarType) as numpy dtype names
SCALAR_TYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 7: "float64",
                11: "bool"}

# One ExecuTorch call at a time in this process: the pybinding holds the GIL while it runs anyway, and the XNNPACK
# threadpool it resizes is shared by every program.
_RUN = threading.Lock()
_IMPORT = threading.Lock()
_state: dict[str, Any] = {}   # "runtime", "lib", "torch", "default_threads", "threads"


@contextmanager
def native_log(stdout: bool = False) -> Iterator[list[str]]:
    """Keep what native code and Python write to stderr (and ``stdout``: also to stdout) meanwhile off the
    terminal; the lines are there on exit (ExecuTorch logs why a program did not load, while its exception only
    gives an error code)."""
    import contextlib
    import io

    lines: list[str] = []
    fds = (1, 2) if stdout else (2,)
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            stream.flush()
    saved = [os.dup(fd) for fd in fds]
    buffer = io.StringIO()
    with tempfile.TemporaryFile() as log:
        for fd in fds:
            os.dup2(log.fileno(), fd)
        try:
            with contextlib.ExitStack() as stack:
                stack.enter_context(contextlib.redirect_stderr(buffer))
                if stdout:
                    stack.enter_context(contextlib.redirect_stdout(buffer))
                stack.enter_context(warnings.catch_warnings())
                warnings.simplefilter("ignore")
                yield lines
        finally:
            for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
                if stream is not None:   # logging handlers made before the redirect write through the real stream
                    stream.flush()
            for fd, copy in zip(fds, saved):
                os.dup2(copy, fd)
                os.close(copy)
            log.seek(0)
            lines.extend(buffer.getvalue().splitlines())
            lines.extend(log.read().decode("utf-8", "replace").splitlines())


def _runtime() -> dict[str, Any]:
    """ExecuTorch's runtime and pybindings, imported once (quietly)."""
    with _IMPORT:
        if "runtime" in _state:
            return _state
        try:
            with native_log():
                torch = importlib.import_module("torch")
                runtime = importlib.import_module("executorch.runtime")
                lib = importlib.import_module("executorch.extension.pybindings.portable_lib")
                rt = runtime.Runtime.get()
                default = int(lib._threadpool_get_thread_count())   # starts the pool (cpuinfo logs here)
        except ImportError as e:
            if e.name and e.name.split(".")[0] == "torch":
                raise BackendUnavailable("the ExecuTorch backend needs torch (ExecuTorch's Python runtime imports "
                                         "it): pip install torch executorch") from e
            raise BackendUnavailable("the ExecuTorch backend needs the 'executorch' package, which is not "
                                     "installed: pip install executorch") from e
        _state.update(runtime=rt, lib=lib, torch=torch, default_threads=default, threads=default)
        return _state


def _pool(threads: int | None) -> None:
    """Size XNNPACK's process-wide threadpool for the next call (under ``_RUN``); None: ExecuTorch's default."""
    want = int(threads) if threads else _state["default_threads"]
    if want != _state["threads"]:
        with native_log():   # "Resetting threadpool to N threads."
            _state["lib"]._unsafe_reset_threadpool(want)
        _state["threads"] = want


def _read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ArtifactError(f"cannot read {path}: {e.strerror}") from None


def _why(lines: list[str]) -> str | None:
    """The last log line ExecuTorch wrote (``[program.cpp:114] File size is too small ...``), without its source tag."""
    for line in reversed(lines):
        text = line.split("] ", 1)[-1].strip() if line.startswith("[") else line.strip()
        if text and not text.startswith(("Reading file", "Failed to open midr", "CPU info")):
            return text[:240].rstrip(".")
    return None


def program_report(data: bytes, nodes: bool = True) -> dict[str, Any]:
    """What the serialized program's ``forward`` says runs where: delegate calls per backend, each XNNPACK
    partition's node types (decoded from its payload; ``nodes`` False: not decoded), and the ops left to
    ExecuTorch's portable kernels.

    Needs executorch's serialization code (imports torch); the export target and ``delegation()`` use it."""
    with native_log(stdout=True):
        from executorch.exir._serialize._program import deserialize_pte_binary

        program = deserialize_pte_binary(data).program
    plan = next((p for p in program.execution_plan if p.name == FORWARD), None)
    if plan is None:
        raise ArtifactError(f"the program has no '{FORWARD}' method")
    calls: list[str] = []
    kernels: list[str] = []
    delegated: list[int] = []
    for chain in plan.chains:
        for instruction in chain.instructions:
            args = instruction.instr_args
            kind = type(args).__name__
            if kind == "DelegateCall":
                delegated.append(args.delegate_index)
                calls.append(plan.delegates[args.delegate_index].id)
            elif kind == "KernelCall":
                op = plan.operators[args.op_index]
                name = f"{op.name}.{op.overload}" if op.overload else op.name
                calls.append(name)
                kernels.append(name)
    partitions = Counter(plan.delegates[i].id for i in delegated)
    xnn_nodes, quantized = _xnnpack_nodes(program, [plan.delegates[i] for i in delegated
                                                    if plan.delegates[i].id == XNNPACK]) if nodes else (None, 0)
    report: dict[str, Any] = {
        "partitions": dict(sorted(partitions.items())),
        "portable_ops": len(kernels),
        "portable": dict(sorted(Counter(kernels).items())),
    }
    if xnn_nodes is not None:
        report["xnnpack_ops"] = dict(sorted(xnn_nodes.items()))
        report["xnnpack_quantized_tensors"] = quantized
    return {"plan": plan, "program": program, "ops": dict(sorted(Counter(calls).items())), "delegation": report}


def _xnnpack_nodes(program, delegates) -> tuple[Counter | None, int]:
    """(node types, quantized tensor values) of the XNNPACK payloads, decoded with the flatc and schema that
    executorch ships; (None, 0) where they cannot be decoded."""
    import json

    if not delegates:
        return None, 0
    try:
        from executorch.exir._serialize._flatbuffer import _flatc_decompile

        schema = Path(list(importlib.import_module("executorch.backends.xnnpack.serialization").__path__)[0],
                      "schema.fbs")
    except ImportError:
        return None, 0
    nodes: Counter = Counter()
    quantized = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, d in enumerate(delegates):
            if d.processed.location != 0 or d.processed.index >= len(program.backend_delegate_data):
                return None, 0   # payload outside the program (a .ptd): not ours to read
            blob = bytes(program.backend_delegate_data[d.processed.index].data)
            if blob[4:8] != b"XH00":
                return None, 0
            offset, size = int.from_bytes(blob[10:14], "little"), int.from_bytes(blob[14:18], "little")
            path = Path(tmp, f"p{i}.bin")
            path.write_bytes(blob[offset:offset + size])
            try:
                with native_log(stdout=True):
                    _flatc_decompile(tmp, str(schema), str(path), ["--raw-binary"])
                graph = json.loads(Path(tmp, f"p{i}.json").read_text())
            except Exception:  # flatc missing or a schema that does not match: no node types, the rest stands
                return None, 0
            nodes.update(str(n.get("xnode_union_type", "?")).removeprefix("XNN") for n in graph.get("xnodes", []))
            quantized += sum(1 for v in graph.get("xvalues", []) if "Quantized" in str(v.get("xvalue_union_type")))
    return nodes, quantized


class ExecuTorchBackend:
    name = "executorch"
    computed_as = {"fp16": "fp16 (softmax, layer norm in fp32)"}   # how executorch 1.5 lowers our fp16 graphs

    def __init__(self, path: Path, threads: int | None = None, data: dict[str, bytes] | None = None):
        self.path = Path(path)
        self.threads = threads
        # The verified bytes, read once: the program is loaded from them and keeps them alive (ExecuTorch's
        # Program holds its buffer), never from the file again.
        self._content = (data or {}).get(self.path.name) or _read_bytes(self.path)
        state = _runtime()
        self._torch = state["torch"]
        self._report: dict[str, Any] | None = None
        error: Exception | None = None
        with _RUN, native_log() as log:
            try:
                self._program = state["runtime"].load_program(self._content)
                names = self._program.method_names
                self._method = self._program.load_method(FORWARD) if FORWARD in names else None
                meta = self._method.metadata if self._method is not None else None
            except RuntimeError as e:
                error = e
        if error is not None:
            self._program = self._method = None
            raise ArtifactError(f"ExecuTorch cannot load {self.path}: "
                                f"{_why(log) or str(error).splitlines()[0][:200]}{self._missing_delegates()}") from error
        if meta is None:
            self._program = None
            raise ArtifactError(f"{self.path} has no '{FORWARD}' method (it has {sorted(names)}): not a model "
                                f"exported by mobilevision")
        dynamic = self._dynamic()
        self.inputs = [self._spec(f"input_{i}", meta.input_tensor_meta(i)) for i in range(meta.num_inputs())]
        self.outputs = [self._spec(f"output_{i}", meta.output_tensor_meta(i), dynamic[1][i])
                        for i in range(meta.num_outputs())]
        # a --dynamic-batch program: its buffers are planned for a batch of up to this bound
        self.max_batch = max((s.shape[0] for s, d in zip(self.inputs, dynamic[0]) if d), default=None)
        if self.max_batch is not None:
            self.inputs = [TensorSpec(s.name, [-1, *s.shape[1:]], s.dtype) if d else s
                           for s, d in zip(self.inputs, dynamic[0])]

    def _dynamic(self) -> tuple[list[bool], list[bool]]:
        """Per input and output of ``forward``: is its shape dynamic (bounded)? mobilevision makes only the
        batch dimension dynamic (``--dynamic-batch``); the planned sizes are then the bound."""
        try:
            plan = program_report(self._content, nodes=False)["plan"]
            flags = [bool(int(v.val.shape_dynamism)) if hasattr(v.val, "shape_dynamism") else False
                     for v in plan.values]
            return [flags[i] for i in plan.inputs], [flags[i] for i in plan.outputs]
        except Exception:  # a program the schema reader cannot parse ran all the same: take it as static
            meta = self._method.metadata
            return [False] * meta.num_inputs(), [False] * meta.num_outputs()

    @staticmethod
    def _spec(name: str, info, dynamic: bool = False) -> TensorSpec:
        code = int(info.dtype())
        shape = [int(s) for s in info.sizes()]
        if dynamic and shape:
            shape[0] = -1
        return TensorSpec(name, shape, SCALAR_TYPES.get(code, f"scalar_type_{code}"))

    def _missing_delegates(self) -> str:
        """'; it needs the CoreMLBackend delegate, which this runtime lacks ...' for a program that did not load."""
        try:
            needed = set(program_report(self._content, nodes=False)["delegation"]["partitions"])
        except Exception:  # not even a program: the load error says enough
            return ""
        have = set(_state["runtime"].backend_registry.registered_backend_names)
        lacking = sorted(needed - have)
        if not lacking:
            return ""
        return (f"; it was exported for the {', '.join(lacking)} delegate, which this executorch runtime lacks (it "
                f"has {', '.join(sorted(have))}): run it with an ExecuTorch runtime built with that delegate")

    def _check(self, arrays: list[np.ndarray]) -> None:
        if len(arrays) != len(self.inputs):
            raise InputMismatch(f"{self.path.name} takes {len(self.inputs)} input(s), received {len(arrays)}")
        for spec, a in zip(self.inputs, arrays):
            a = np.asarray(a)
            same = [e == r or (e == -1 and i == 0) for i, (e, r) in enumerate(zip(spec.shape, a.shape))]
            if a.ndim != len(spec.shape) or not all(same):   # memory planned at export: static but a bounded batch
                raise InputMismatch(f"input '{spec.name}' expects {spec.dtype} {spec.shape}, received "
                                    f"{a.dtype} {list(a.shape)}")
            if spec.shape[0] == -1 and not 1 <= a.shape[0] <= (self.max_batch or 0):
                raise InputMismatch(f"input '{spec.name}' takes a batch of 1 to {self.max_batch} (the bound this .pte "
                                    f"was exported with), received {a.shape[0]}: split the batch")
            if a.dtype != np.dtype(spec.dtype):
                raise InputMismatch(f"input '{spec.name}' expects dtype {spec.dtype}, received {a.dtype} "
                                    f"(convert with .astype(np.{spec.dtype}))")

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        self._check(arrays)
        torch = self._torch
        tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
        with _RUN:   # one call at a time: a Method holds one set of planned buffers (see the module docstring)
            method = self._method
            if method is None:
                raise ArtifactClosed(f"ExecuTorch model {self.path} is closed: load it again")
            _pool(self.threads)
            try:
                outs = method.execute(tensors)
            except RuntimeError as e:
                raise ArtifactError(f"ExecuTorch could not run {self.path.name}: "
                                    f"{str(e).splitlines()[0][:200]}") from e
        return [o.numpy() if hasattr(o, "numpy") else np.asarray(o) for o in outs]

    def embedded_metadata(self) -> str | None:
        """The metadata JSON of the program's constant method (None in a .pte without one)."""
        with _RUN:
            program = self._program
            if program is None:
                raise ArtifactClosed(f"ExecuTorch model {self.path} is closed: load it again")
            if METADATA_METHOD not in program.method_names:
                return None
            try:
                values = program.load_method(METADATA_METHOD).execute([])
            except RuntimeError as e:
                raise ArtifactError(f"{self.path}: its {METADATA_METHOD} method does not run "
                                    f"({str(e).splitlines()[0][:120]}); re-export the artifact") from e
        if len(values) != 1 or not isinstance(values[0], str):
            raise ArtifactError(f"{self.path}: its {METADATA_METHOD} method does not return one string; re-export "
                                f"the artifact")
        if len(values[0]) > MAX_JSON_BYTES:
            raise ArtifactError(f"{self.path}: its metadata is over {MAX_JSON_BYTES >> 20} MiB; re-export the artifact")
        return values[0]

    def report(self) -> dict[str, Any]:
        """The program's delegation (``program_report``), read once from the loaded bytes."""
        if self._report is None:
            self._report = program_report(self._content)["delegation"]
        return self._report

    def delegation(self) -> Delegation:
        """Which delegates the program's ``forward`` calls and what is left to the portable kernels: the
        delegation is fixed at export (XNNPACK is ExecuTorch's CPU delegate), so this holds for CPU runs too."""
        if self._program is None:
            raise ArtifactClosed(f"ExecuTorch model {self.path} is closed: load it again")
        r = self.report()
        partitions, portable = r["partitions"], r["portable"]
        executed = [f"{name} ({n} partition{'s' if n != 1 else ''})" for name, n in partitions.items()]
        if portable:
            executed.append(f"portable kernels ({r['portable_ops']} ops)")
        inside = sum(r.get("xnnpack_ops", {}).values())
        note = (f"{sum(partitions.values())} delegated partition(s)"
                + (f" holding {inside} XNNPACK nodes" if inside else "")
                + f"; {r['portable_ops']} op(s) on ExecuTorch's portable kernels")
        accelerator = "XNNPACK" if set(partitions) <= {XNNPACK} else "+".join(partitions)
        return Delegation("cpu", accelerator, executed, accelerated=not portable and bool(partitions),
                          fallback_ops=[f"{op} x{n}" for op, n in portable.items()], offloaded=bool(partitions),
                          note=note)

    def close(self) -> None:
        with _RUN:
            self._method = self._program = None


# What each device would need: ExecuTorch runs a program on the delegates it was exported with.
NEEDS = {
    "gpu": ("a .pte exported with a GPU delegate (target executorch-vulkan: Vulkan on Android/Linux GPUs; Core ML or "
            "Metal on Apple) and an ExecuTorch runtime with that delegate linked (VulkanBackend / CoreMLBackend), which "
            "the executorch pip wheel's Python runtime does not have"),
    "npu": ("a .pte exported with an NPU delegate (target executorch-qnn: Qualcomm Hexagon, needing the Qualcomm AI "
            "Engine Direct SDK; executorch-coreml: the Apple Neural Engine, on macOS) run on that device's ExecuTorch "
            "runtime; the pip wheel's QnnBackend also needs the QNN SDK's libQnnHtp.so and a Snapdragon device"),
}


def probe(device: str) -> Availability:
    """CPU: ExecuTorch's Python runtime (and torch, which it imports) are installed; its wheel links XNNPACK.
    GPU / NPU: never from here (see ``NEEDS``). Imports nothing."""
    if importlib.util.find_spec("executorch.extension.pybindings._C") is None:
        return missing("executorch", device, "executorch")
    if importlib.util.find_spec("torch") is None:
        return Availability("executorch", device, False, "ExecuTorch's Python runtime imports torch, which is not "
                                                         "installed: pip install torch")
    if device == "cpu":
        from importlib import metadata

        try:
            version = metadata.version("executorch")
        except metadata.PackageNotFoundError:
            version = "?"
        return Availability("executorch", device, True, f"XNNPACK + portable kernels (executorch {version})")
    return Availability("executorch", device, False, f"ExecuTorch's delegate is chosen at export: a {device.upper()} "
                                                     f"run needs {NEEDS[device]}")
