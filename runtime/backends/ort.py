"""ONNX Runtime backend: the CPU execution provider, or a GPU/NPU one (``device="gpu"|"npu"``)."""
from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from mobilevision.errors import ArtifactError
from mobilevision.export.metadata import METADATA_KEY, TensorSpec

from .base import (AcceleratorUnavailable, ArtifactClosed, Availability, Delegation, OpProfile, missing, numpy_dtype,
                   op_profile, require)

CPU_EP = "CPUExecutionProvider"
# Set on accelerator sessions so ONNX Runtime records which provider got which node
# (``InferenceSession.get_provider_graph_assignment_info``; onnxruntime 1.32 has it, and an onnxruntime
# without it ignores the key).
RECORD_ASSIGNMENT = "session.record_ep_graph_assignment_info"


def _qnn_htp_library(system: str) -> str:
    """The QNN HTP (Hexagon NPU) backend library the QNN execution provider loads."""
    return "QnnHtp.dll" if system == "Windows" else "libQnnHtp.so"


def accelerator_providers(device: str, system: str | None = None) -> list[tuple[str, dict[str, str]]]:
    """(execution provider, provider options) that run ``device``, in order of preference.

    Names and options as ONNX Runtime documents them: CUDA / ROCm / DirectML take no options;
    Core ML takes ``MLComputeUnits`` (CPUAndGPU, CPUAndNeuralEngine); QNN the HTP ``backend_path``;
    the OpenVINO provider (onnxruntime-openvino) ``device_type``.
    """
    system = system or platform.system()
    if device == "gpu":
        return [("CUDAExecutionProvider", {}), ("ROCMExecutionProvider", {}), ("DmlExecutionProvider", {}),
                ("CoreMLExecutionProvider", {"MLComputeUnits": "CPUAndGPU"})]
    if device == "npu":
        return [("QNNExecutionProvider", {"backend_path": _qnn_htp_library(system)}),
                ("OpenVINOExecutionProvider", {"device_type": "NPU"}),
                ("CoreMLExecutionProvider", {"MLComputeUnits": "CPUAndNeuralEngine"})]
    raise ValueError(f"no accelerator providers for device {device!r}")


def choose_provider(device: str, available: list[str], system: str | None = None) -> tuple[str, dict[str, str]] | None:
    """The first provider for ``device`` that this onnxruntime build offers, or None."""
    return next(((name, opts) for name, opts in accelerator_providers(device, system) if name in available), None)


def unavailable_reason(device: str, version: str, available: list[str]) -> str:
    """Why ONNX Runtime cannot run ``device`` here and what would make it."""
    have = f"onnxruntime {version} here offers only {', '.join(available)}"
    if device == "gpu":
        return (f"{have}; a GPU run needs CUDAExecutionProvider (pip install onnxruntime-gpu in place of onnxruntime, "
                f"with CUDA, cuDNN and an NVIDIA driver), ROCMExecutionProvider (onnxruntime-rocm, AMD GPUs), "
                f"DmlExecutionProvider (onnxruntime-directml, Windows) or CoreMLExecutionProvider "
                f"(onnxruntime on macOS)")
    return (f"{have}; an NPU run needs QNNExecutionProvider (onnxruntime-qnn on a Snapdragon PC, Hexagon NPU), "
            f"OpenVINOExecutionProvider (onnxruntime-openvino on an Intel Core Ultra PC, device_type NPU) or "
            f"CoreMLExecutionProvider (onnxruntime on macOS, Apple Neural Engine)")


def placement(device: str, provider: str, providers: list[str],
              subgraphs: list[tuple[str, list[tuple[str, str]]]]) -> Delegation:
    """Delegation from ONNX Runtime's node assignment: [(provider, [(op_type, node name), ...]), ...]."""
    on_accelerator = [n for ep, nodes in subgraphs if ep == provider for n in nodes]
    fallback = [f"{op} ({name})" if name else op for ep, nodes in subgraphs if ep != provider for op, name in nodes]
    if not subgraphs:
        return Delegation(device, provider, providers, None, note="onnxruntime recorded no node assignment")
    elsewhere = sorted({ep for ep, nodes in subgraphs if ep != provider and nodes})
    return Delegation(device, provider, providers, accelerated=not fallback, fallback_ops=fallback,
                      offloaded=bool(on_accelerator),
                      note=None if on_accelerator else f"onnxruntime placed all {len(fallback)} nodes on "
                                                       f"{', '.join(elsewhere)}")


def _spec(arg) -> TensorSpec:
    shape = [d if isinstance(d, int) else -1 for d in arg.shape]
    return TensorSpec(arg.name, shape, str(numpy_dtype(arg.type)))


def _options(ort, threads: int | None):
    """Session options: ``threads`` intra-op threads and one inter-op thread (None: ONNX Runtime's defaults), quiet."""
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return opts


class OrtBackend:
    name = "ort"
    # the CPU provider inserts Casts to fp32 around ops without an fp16 kernel (checked on x86)
    computed_as = {"fp16": "fp16 (some ops cast to fp32)"}

    def __init__(self, path: Path, threads: int | None = None, device: str = "cpu",
                 data: dict[str, bytes] | None = None):
        ort = require("onnxruntime", "onnxruntime", "ONNX Runtime backend")
        opts = _options(ort, int(threads) if threads else None)
        self.path = Path(path)
        self.device = device
        self.version = ort.__version__
        self.provider = CPU_EP
        providers: list = [CPU_EP]
        if device != "cpu":
            available = list(ort.get_available_providers())
            chosen = choose_provider(device, available)
            if chosen is None:
                raise AcceleratorUnavailable(unavailable_reason(device, self.version, available))
            self.provider = chosen[0]
            providers = [chosen, CPU_EP]  # ONNX Runtime places what the provider cannot run on the CPU
            opts.add_session_config_entry(RECORD_ASSIGNMENT, "1")
        model = (data or {}).get(self.path.name) or str(self.path)   # the verified bytes, when given
        self._open = lambda options: ort.InferenceSession(model, options, providers=providers)
        self._options = opts
        try:
            self.session = self._open(opts)
        except Exception as e:  # ORT raises its own exception classes for every load failure
            raise ArtifactError(f"ONNX Runtime cannot load {self.path}: {str(e).splitlines()[0][:200]}") from e
        self.inputs = [_spec(a) for a in self.session.get_inputs()]
        self.outputs = [_spec(a) for a in self.session.get_outputs()]

    def delegation(self) -> Delegation:
        """The session's providers and, where this onnxruntime records it, which provider got each node."""
        providers = list(self.session.get_providers())
        if self.provider not in providers:  # the provider failed to start and ORT fell back to the CPU
            return Delegation(self.device, self.provider, providers, False, offloaded=False,
                              note=f"onnxruntime did not start {self.provider} and fell back to the CPU")
        info = getattr(self.session, "get_provider_graph_assignment_info", None)
        if info is None:
            return Delegation(self.device, self.provider, providers, None,
                              note=f"onnxruntime {self.version} does not report node placement")
        subgraphs = [(sg.ep_name, [(n.op_type, n.name) for n in sg.get_nodes()]) for sg in info()]
        return placement(self.device, self.provider, providers, subgraphs)

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        session = self.session   # InferenceSession.run is thread-safe: one session serves every thread
        if session is None:
            raise ArtifactClosed(f"ONNX Runtime model {self.path} is closed: load it again")
        feed = {spec.name: a for spec, a in zip(self.inputs, arrays)}
        return session.run(None, feed)

    def streams(self, n: int):
        """``n`` parallel sessions, each with an equal share of the threads (at least one), one per caller."""
        import os

        import onnxruntime as ort

        total = self._options.intra_op_num_threads or os.cpu_count() or 1
        sessions = []
        for _ in range(n):
            sessions.append(self._open(_options(ort, max(1, total // n))))

        def run(caller: int, arrays: list[np.ndarray]) -> list[np.ndarray]:
            return sessions[caller].run(None, {spec.name: a for spec, a in zip(self.inputs, arrays)})
        return run

    def profile_ops(self, arrays: list[np.ndarray], runs: int, folder: Path) -> OpProfile:
        """ONNX Runtime's own profiler on a second session with the same options: ``runs`` runs after one
        warm-up; its trace (``folder/<prefix>_<date>.json``) is kept."""
        import json

        import onnxruntime as ort

        opts = _options(ort, self._options.intra_op_num_threads or None)
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(folder) / f"{self.path.stem}_ort")
        session = self._open(opts)
        feed = {spec.name: a for spec, a in zip(self.inputs, arrays)}
        for _ in range(runs + 1):
            session.run(None, feed)
        trace = Path(session.end_profiling())
        events = json.loads(trace.read_text())
        # one "Node" event per op per run (name "<node>_kernel_time"); the first run is a warm-up
        per_node: dict[str, list[tuple[float, str, str | None]]] = {}
        for e in events:
            if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
                args = e.get("args", {})
                per_node.setdefault(e["name"][: -len("_kernel_time")], []).append(
                    (e.get("dur", 0) / 1e3, args.get("op_name", "?"), args.get("provider")))
        times = {}
        for node, samples in per_node.items():
            timed = samples[-runs:]   # the last ``runs`` runs: drops the warm-up
            times[(node, timed[0][1], timed[0][2])] = sum(t for t, _, _ in timed) * runs / len(timed)
        return op_profile("onnxruntime", runs, times, str(trace))

    def embedded_metadata(self) -> str | None:
        return self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)

    def close(self) -> None:
        self.session = None


def probe(device: str) -> Availability:
    """An execution provider for ``device`` in this onnxruntime build (its ``get_available_providers``)."""
    import importlib

    try:
        ort = importlib.import_module("onnxruntime")
    except ImportError:
        return missing("ort", device, "onnxruntime")
    available = list(ort.get_available_providers())
    if device == "cpu":
        return Availability("ort", device, CPU_EP in available, CPU_EP if CPU_EP in available else
                            f"onnxruntime {ort.__version__} here offers no {CPU_EP}")
    chosen = choose_provider(device, available)
    if chosen is None:
        return Availability("ort", device, False, unavailable_reason(device, ort.__version__, available))
    return Availability("ort", device, True, chosen[0])
