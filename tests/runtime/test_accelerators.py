"""GPU / NPU benchmarking: option building per backend, availability probes, delegation truth, and
LiteRT's ahead-of-time NPU compilation -- on this machine's real runtimes (which have no GPU or NPU
here) and on stand-in runtimes that report an accelerator.

The stand-ins are small ``onnxruntime`` / ``openvino`` packages written to a temporary folder and
put first on ``sys.path``; the benchmark's spawned workers inherit that path, so the whole worker
protocol runs against them.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest

from mobilevision.cli import main
from mobilevision.errors import ArtifactError, BackendUnavailable, MobileVisionError
from mobilevision.runtime.backends import AcceleratorFallback, AcceleratorUnavailable, Delegation, open_backend
from mobilevision.runtime.backends import coreml as coreml_backend
from mobilevision.runtime.backends import litert as litert_backend
from mobilevision.runtime.backends import openvino as ov_backend
from mobilevision.runtime.backends import ort as ort_backend
from mobilevision.runtime.devices import DeviceSpec, parse_device
from mobilevision.runtime.devices import accelerators as acc
from mobilevision.export import npu
from mobilevision.runtime.backends import litert_devices
from mobilevision.runtime.profile import BenchResult, benchmark, write_json

RUNS = 3


def _tiny_onnx(path: Path) -> Path:
    """1x3x16x16 -> conv 3x3 (8 ch) -> relu -> global average pool -> 1x8 (onnx.helper, no exporter)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(8, np.float32), "b")
    nodes = [helper.make_node("Conv", ["image", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["logits"], name="flatten")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 8])], [w, b])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path)
    return path


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    return _tiny_onnx(tmp_path_factory.mktemp("acc") / "tiny.onnx")


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory) -> Path:
    """A real .tflite (litert_torch), for LiteRT's CompiledModel API."""
    import litert_torch
    import torch

    module = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                 torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    path = tmp_path_factory.mktemp("acc_tflite") / "tiny.tflite"
    litert_torch.convert(module.eval(), (torch.randn(1, 3, 16, 16),)).export(str(path))
    return path


def _unavailable_here(backend: str, device: str) -> bool:
    return not acc.probe(backend, device).available


# ---------------------------------------------------------------- option building (pure)

def test_parse_device_accelerators():
    assert parse_device("gpu") == DeviceSpec("gpu") and parse_device("NPU") == DeviceSpec("npu")
    for bad in ("gpu:0", "npu:1", "tpu"):
        with pytest.raises(MobileVisionError):
            parse_device(bad)


def test_ort_providers_per_device():
    gpu = ort_backend.accelerator_providers("gpu", "Linux")
    assert [name for name, _ in gpu] == ["CUDAExecutionProvider", "ROCMExecutionProvider", "DmlExecutionProvider",
                                         "CoreMLExecutionProvider"]
    assert dict(gpu)["CoreMLExecutionProvider"] == {"MLComputeUnits": "CPUAndGPU"}
    npu = dict(ort_backend.accelerator_providers("npu", "Windows"))
    assert npu["QNNExecutionProvider"] == {"backend_path": "QnnHtp.dll"}
    assert dict(ort_backend.accelerator_providers("npu", "Linux"))["QNNExecutionProvider"] == {"backend_path": "libQnnHtp.so"}
    assert npu["OpenVINOExecutionProvider"] == {"device_type": "NPU"}
    assert npu["CoreMLExecutionProvider"] == {"MLComputeUnits": "CPUAndNeuralEngine"}
    # onnxruntime-gpu lists TensorRT first; CUDA is the one asked for
    cuda = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert ort_backend.choose_provider("gpu", cuda) == ("CUDAExecutionProvider", {})
    assert ort_backend.choose_provider("npu", cuda) is None
    assert ort_backend.choose_provider("npu", ["CoreMLExecutionProvider", "CPUExecutionProvider"], "Darwin") == \
        ("CoreMLExecutionProvider", {"MLComputeUnits": "CPUAndNeuralEngine"})


def test_openvino_compile_config():
    # the CPU config is what the backend always used
    assert ov_backend.compile_config("CPU", 2) == {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                                                   "INFERENCE_NUM_THREADS": 2}
    assert ov_backend.compile_config("GPU", 2) == {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    assert ov_backend.compile_config("NPU", 2) == {"PERFORMANCE_HINT": "LATENCY"}
    assert ov_backend.device_present("GPU", ["CPU", "GPU.0", "GPU.1"])
    assert not ov_backend.device_present("GPU", ["CPU", "NPU"]) and ov_backend.device_present("NPU", ["CPU", "NPU"])


def test_coreml_compute_units_and_plan():
    assert coreml_backend.DEVICE_COMPUTE_UNITS == {"cpu": "CPU_ONLY", "gpu": "CPU_AND_GPU", "npu": "CPU_AND_NE"}
    line = coreml_backend.needs_macos("npu", "Linux")
    assert "compute_units=CPU_AND_NE" in line and "needs macOS" in line and "Linux" in line
    d = coreml_backend.plan_delegation("npu", [("const", None), ("conv", "MLNeuralEngineComputeDevice"),
                                               ("softmax", "MLCPUComputeDevice"), ("relu", None)])
    assert d.accelerated is False and d.fallback_ops == ["softmax"] and d.offloaded
    assert d.executed_on == ["CPU", "NeuralEngine"]
    none = coreml_backend.plan_delegation("gpu", [("conv", "MLCPUComputeDevice")])
    assert not none.offloaded
    with pytest.raises(AcceleratorFallback, match="not a GPU number"):
        none.check()


def test_coreml_off_macos_says_so(tmp_path):
    if sys.platform == "darwin":
        pytest.skip("Core ML runs here")
    package = tmp_path / "m.mlpackage"
    package.mkdir()
    with pytest.raises(AcceleratorUnavailable, match="needs macOS"):
        open_backend(package, "coreml", device="npu")
    with pytest.raises(BackendUnavailable, match="runs on the CPU only"):
        open_backend(package, "torch", device="gpu")


# ---------------------------------------------------------------- delegation facts

def test_ort_placement_from_a_real_session(tiny_onnx):
    """The node assignment onnxruntime records, read as the accelerated backend reads it."""
    ort = pytest.importorskip("onnxruntime")
    opts = ort.SessionOptions()
    opts.add_session_config_entry(ort_backend.RECORD_ASSIGNMENT, "1")
    session = ort.InferenceSession(str(tiny_onnx), opts, providers=["CPUExecutionProvider"])
    if not hasattr(session, "get_provider_graph_assignment_info"):
        pytest.skip("this onnxruntime does not record node placement")
    subgraphs = [(sg.ep_name, [(n.op_type, n.name) for n in sg.get_nodes()])
                 for sg in session.get_provider_graph_assignment_info()]
    providers = session.get_providers()
    assert ort_backend.placement("gpu", "CPUExecutionProvider", providers, subgraphs).accelerated is True
    # the same graph seen from a GPU run: everything fell back
    d = ort_backend.placement("gpu", "CUDAExecutionProvider", providers, subgraphs)
    assert d.accelerated is False and not d.offloaded
    assert sorted(d.fallback_ops) == sorted(["Conv (conv)", "Relu (relu)", "GlobalAveragePool (pool)",
                                             "Flatten (flatten)"])
    with pytest.raises(AcceleratorFallback, match="CUDAExecutionProvider ran none of the graph"):
        d.check()


def test_ort_placement_partial():
    d = ort_backend.placement("gpu", "CUDAExecutionProvider", ["CUDAExecutionProvider", "CPUExecutionProvider"],
                              [("CUDAExecutionProvider", [("Conv", "c")]), ("CPUExecutionProvider", [("Shape", "")])])
    assert d.offloaded and d.accelerated is False and d.fallback_ops == ["Shape"]
    d.check()  # partial is reported, not refused


def test_openvino_execution_devices_of_a_real_cpu_compile(tiny_onnx):
    b = open_backend(tiny_onnx, "openvino")
    try:
        devices = list(b.compiled.get_property("EXECUTION_DEVICES"))
    finally:
        b.close()
    assert devices == ["CPU"]
    assert ov_backend.execution_delegation("CPU", devices).accelerated is True
    d = ov_backend.execution_delegation("GPU", devices)
    assert not d.offloaded and d.executed_on == ["CPU"]
    with pytest.raises(AcceleratorFallback, match="OpenVINO GPU ran none of the graph"):
        d.check()
    assert ov_backend.execution_delegation("GPU", ["GPU.0"]).accelerated is True
    assert ov_backend.unsupported_ops([("Parameter", "x"), ("Convolution", "c"), ("Erf", "e")], {"c": "GPU"}) == \
        ["Erf (e)"]


# Lines LiteRT 2.3.0 wrote to stderr on this machine (no GPU, no NPU plugin that loads).
GPU_LOG = ["E0000 00:00:1795648541.586562 21985 delegate_webgpu.cc:736] Failed to get or create delegate WebGPU "
           "environment: INTERNAL: Failed to initialize WebGPU environment"]
NPU_LOG = ["WARNING: [compiler_plugin.cc:312] Failed to load plugin at: /x/ai_edge_litert/vendors/intel_openvino/"
           "compiler/libLiteRtCompilerPlugin_IntelOpenvino.so with error: ERROR: [litert/compiler/plugin/"
           "compiler_plugin.cc:259]",
           "\u2514 Could not load shared library /x/ai_edge_litert/vendors/intel_openvino/compiler/"
           "libLiteRtCompilerPlugin_IntelOpenvino.so: libopenvino.so.2631: cannot open shared object file: No such "
           "file or directory.",
           "WARNING: [compiled_model.cc:1393] Failed to apply compiler plugins: No compiler plugin found"]
NOT_ACCELERATED = ("ERROR: [./litert/cc/litert_compiled_model.h:1961]\n\u2514 Some ops are not accelerated. Add "
                   "kLiteRtHwAcceleratorCpu to the compilation accelerator set to allow using the CPU to run those.")


def test_litert_compile_failures_are_explained():
    p = Path("m.tflite")
    gpu = litert_backend.compile_failure("gpu", "ERROR: [./litert/cc/litert_compiled_model.h:1961]", GPU_LOG, p)
    assert isinstance(gpu, AcceleratorUnavailable) and "Failed to initialize WebGPU environment" in str(gpu)
    npu = litert_backend.compile_failure("npu", NOT_ACCELERATED, NPU_LOG, p)
    assert isinstance(npu, AcceleratorUnavailable)
    assert "libLiteRtCompilerPlugin_IntelOpenvino.so: libopenvino.so.2631: cannot open shared object file" in str(npu)
    partial = litert_backend.compile_failure("gpu", NOT_ACCELERATED, [], p)
    assert isinstance(partial, AcceleratorFallback) and partial.delegation.accelerated is False
    other = litert_backend.compile_failure("gpu", "ERROR: something else", [], p)
    assert isinstance(other, ArtifactError) and "something else" in str(other)


@pytest.mark.slow
def test_litert_compiled_model_runs_like_the_interpreter(tiny_tflite):
    """The CompiledModel path (buffers, signatures, shapes) on LiteRT's CPU accelerator, against the Interpreter."""
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    reference = open_backend(tiny_tflite, "litert")
    compiled = litert_backend.LiteRTCompiledModel(tiny_tflite, "cpu")
    try:
        assert [s.shape for s in compiled.inputs] == [[1, 3, 16, 16]] and [s.shape for s in compiled.outputs] == [[1, 8]]
        np.testing.assert_allclose(compiled.run([x])[0], reference.run([x])[0], rtol=1e-5, atol=1e-6)
        d = compiled.delegation()
        assert d.accelerated is True and d.executed_on == ["CPU"]
    finally:
        compiled.close()
        reference.close()


# ---------------------------------------------------------------- availability probes

def test_litert_gpu_support_rules():
    ok, why = litert_devices.litert_gpu_support("Linux", None, [])
    assert not ok and "no Vulkan loader (libvulkan.so.1)" in why
    ok, why = litert_devices.litert_gpu_support("Linux", "libvulkan.so.1", [])
    assert not ok and "no Vulkan driver" in why
    ok, why = litert_devices.litert_gpu_support("Linux", "libvulkan.so.1", ["/usr/share/vulkan/icd.d/lvp_icd.x86_64.json"])
    assert not ok and "run on the CPU" in why
    ok, why = litert_devices.litert_gpu_support("Linux", "libvulkan.so.1", ["/usr/share/vulkan/icd.d/lvp_icd.x86_64.json",
                                                                 "/etc/vulkan/icd.d/nvidia_icd.json"])
    assert ok and "nvidia_icd.json" in why and "lvp" not in why
    assert litert_devices.litert_gpu_support("Darwin", None, [])[0]
    assert litert_devices.vulkan_icds({"VK_DRIVER_FILES": "/a.json:/b.json"}) == ["/a.json", "/b.json"]


def test_litert_npu_support_rules():
    ok, why = litert_devices.litert_npu_support(["intel_openvino"], intel_npu=False, intel_sdk=False)
    assert not ok and "no Intel NPU" in why and "ai-edge-litert-sdk-intel" in why and "--npu-soc" in why
    ok, why = litert_devices.litert_npu_support(["intel_openvino"], intel_npu=True, intel_sdk=False)
    assert not ok and "pip install ai-edge-litert-sdk-intel" in why
    assert litert_devices.litert_npu_support(["intel_openvino"], intel_npu=True, intel_sdk=True)[0]
    assert not litert_devices.litert_npu_support([], intel_npu=True, intel_sdk=True)[0]


def test_installed_litert_ships_intel_dispatch():
    """What this ai-edge-litert wheel really carries: the dispatch library the NPU probe relies on."""
    root = litert_devices.litert_dir()
    if root is None:
        pytest.skip("ai-edge-litert not installed")
    assert "intel_openvino" in litert_devices.dispatch_vendors(root)


def _fake_module(name: str, **attrs) -> types.ModuleType:
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    return m


def test_probe_ort_with_cuda_listed(monkeypatch):
    fake = _fake_module("onnxruntime", __version__="9.9.9",
                        get_available_providers=lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                                         "CPUExecutionProvider"])
    monkeypatch.setitem(sys.modules, "onnxruntime", fake)
    assert acc.probe("ort", "gpu") == acc.Availability("ort", "gpu", True, "CUDAExecutionProvider")
    npu = acc.probe("ort", "npu")
    assert not npu.available and "onnxruntime 9.9.9 here offers only TensorrtExecutionProvider" in npu.detail


class _FakeCore:
    available_devices = ["CPU", "GPU.0"]

    def get_property(self, device, name):
        assert (device, name) == ("GPU.0", "FULL_DEVICE_NAME")
        return "Intel(R) Arc(TM) A770 Graphics (dGPU)"


def test_probe_openvino_with_a_gpu_listed(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", _fake_module("openvino", __version__="2099.1.0-1-x", Core=_FakeCore))
    assert acc.probe("openvino", "gpu") == acc.Availability("openvino", "gpu", True,
                                                            "GPU.0 (Intel(R) Arc(TM) A770 Graphics (dGPU))")
    npu = acc.probe("openvino", "npu")
    assert not npu.available and npu.detail.startswith("OpenVINO 2099.1.0 sees CPU, GPU.0; its NPU plugin needs")


def test_plan_accelerated(tmp_path, tiny_onnx):
    xml = tmp_path / "m.xml"
    xml.write_text("<net/>")
    seen = []

    def prober(backend, device):
        seen.append(backend)
        return acc.Availability(backend, device, backend == "openvino", "why")

    pairs, unavailable = acc.plan_accelerated([tiny_onnx, xml], "gpu", prober=prober)
    assert pairs == [(str(tiny_onnx), "openvino"), (str(xml), "openvino")]
    assert [a.backend for a in unavailable] == ["ort"] and seen == ["ort", "openvino"]  # probed once each
    with pytest.raises(BackendUnavailable, match="torch runs on the CPU only"):
        acc.plan_accelerated([tiny_onnx], "gpu", ["torch"], prober=prober)
    with pytest.raises(BackendUnavailable, match="unknown backend 'tflite'"):
        acc.plan_accelerated([tiny_onnx], "gpu", ["tflite"], prober=prober)
    with pytest.raises(ArtifactError, match="not found"):
        acc.plan_accelerated([tmp_path / "missing.onnx"], "gpu", prober=prober)
    with pytest.raises(BackendUnavailable, match="can open"):
        acc.plan_accelerated([xml], "gpu", ["ort"], prober=prober)


# ---------------------------------------------------------------- stand-in runtimes through the worker protocol

FAKE_ORT = '''
"""Stand-in onnxruntime with CUDA: providers and node placement as onnxruntime 1.32 reports them."""
import os

import numpy as np

__version__ = "1.99.0-standin"


def get_available_providers():
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


class SessionOptions:
    def __init__(self):
        self.config = {}

    def add_session_config_entry(self, key, value):
        self.config[key] = value


class _Arg:
    def __init__(self, name, shape):
        self.name, self.shape, self.type = name, shape, "tensor(float)"


class _Node:
    def __init__(self, op_type, name):
        self.op_type, self.name, self.domain = op_type, name, ""


class _Subgraph:
    def __init__(self, ep_name, nodes):
        self.ep_name, self._nodes = ep_name, nodes

    def get_nodes(self):
        return self._nodes


class _Meta:
    custom_metadata_map = {}


class InferenceSession:
    def __init__(self, path, options, providers):
        asked = [p[0] if isinstance(p, tuple) else p for p in providers]
        # STANDIN_CUDA_FAILS: CUDA did not start and onnxruntime silently kept the CPU provider only
        self._providers = asked[1:] if os.environ.get("STANDIN_CUDA_FAILS") else asked
        self._record = options.config.get("session.record_ep_graph_assignment_info") == "1"

    def get_providers(self):
        return self._providers

    def get_provider_graph_assignment_info(self):
        if not self._record:
            raise RuntimeError("node assignment was not recorded")
        return [_Subgraph("CUDAExecutionProvider", [_Node("Conv", "conv"), _Node("Relu", "relu")]),
                _Subgraph("CPUExecutionProvider", [_Node("Shape", "shape")])]

    def get_inputs(self):
        return [_Arg("image", [1, 3, 16, 16])]

    def get_outputs(self):
        return [_Arg("logits", [1, 8])]

    def get_modelmeta(self):
        return _Meta()

    def run(self, names, feed):
        return [np.zeros((1, 8), np.float32)]
'''

FAKE_OPENVINO = '''
"""Stand-in openvino that lists a GPU but whose compiled model runs on the CPU (EXECUTION_DEVICES = CPU)."""
__version__ = "2099.0.0-standin"


class _Op:
    def __init__(self, kind, name):
        self.kind, self.name = kind, name

    def get_type_name(self):
        return self.kind

    def get_friendly_name(self):
        return self.name


class _Model:
    def get_ordered_ops(self):
        return [_Op("Parameter", "image"), _Op("Convolution", "conv"), _Op("Result", "out")]

    def has_rt_info(self, key):
        return False


class _Compiled:
    inputs = []
    outputs = []

    def get_property(self, name):
        return {"EXECUTION_DEVICES": ["CPU"], "INFERENCE_PRECISION_HINT": "f32"}.get(name)

    def get_runtime_model(self):
        return _Model()

    def create_infer_request(self):
        return None


class Core:
    available_devices = ["CPU", "GPU.0"]

    def get_property(self, device, name):
        return "Stand-in GPU"

    def read_model(self, path=None, model=None, weights=None):
        return _Model()

    def query_model(self, model, device):
        return {"image": device, "conv": device, "out": device}

    def compile_model(self, model, device, config):
        return _Compiled()
'''


@pytest.fixture
def standin(tmp_path, monkeypatch):
    """``standin("onnxruntime")``: put that stand-in package first on sys.path (also for spawned workers)."""
    root = tmp_path / "standins"
    sources = {"onnxruntime": FAKE_ORT, "openvino": FAKE_OPENVINO}

    def install(name: str) -> None:
        (root / name).mkdir(parents=True)
        (root / name / "__init__.py").write_text(textwrap.dedent(sources[name]))
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            monkeypatch.delitem(sys.modules, key)
        monkeypatch.syspath_prepend(str(root))
        importlib.invalidate_caches()
    return install


def test_openvino_gpu_that_ran_on_the_cpu_is_an_error_row(standin, tiny_onnx):
    standin("openvino")
    rows = benchmark([], pairs=[(tiny_onnx, "openvino")], runs=RUNS, warmup=0, device="gpu")
    (row,) = rows
    assert row.device == "gpu" and row.median_ms is None and row.runs == 0
    assert "OpenVINO GPU ran none of the graph" in row.error and "not a GPU number" in row.error
    assert row.executed_on == ["CPU"] and row.accelerated is False


def test_ort_cuda_partial_placement_is_a_row_with_its_fallback_ops(standin, tiny_onnx, tmp_path):
    standin("onnxruntime")
    (row,) = benchmark([], pairs=[(tiny_onnx, "ort")], runs=RUNS, warmup=0, device="gpu")
    assert row.error is None and row.runs == RUNS and row.device == "gpu"
    assert row.executed_on == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert row.accelerated is False and row.fallback_ops == ["Shape (shape)"]
    out = json.loads(write_json([row], tmp_path / "rows.json").read_text())[0]
    assert (out["device"], out["accelerated"], out["fallback_ops"]) == ("gpu", False, ["Shape (shape)"])


def test_ort_cuda_that_did_not_start_is_an_error_row(standin, tiny_onnx, monkeypatch):
    standin("onnxruntime")
    monkeypatch.setenv("STANDIN_CUDA_FAILS", "1")
    (row,) = benchmark([], pairs=[(tiny_onnx, "ort")], runs=RUNS, warmup=0, device="gpu")
    assert row.runs == 0 and "did not start CUDAExecutionProvider and fell back to the CPU" in row.error
    assert row.executed_on == ["CPUExecutionProvider"]


def test_benchmark_accelerated_api(standin, tiny_onnx):
    standin("onnxruntime")
    run = acc.benchmark_accelerated([tiny_onnx], "gpu", ["ort"], runs=RUNS, warmup=0)
    assert run.device == "gpu" and run.unavailable == [] and [r.backend for r in run.rows] == ["ort"]
    assert run.rows[0].error is None and run.rows[0].runs == RUNS


def test_cli_gpu_with_a_cuda_onnxruntime(standin, tiny_onnx, tmp_path, capsys):
    standin("onnxruntime")
    rc = main(["bench", str(tiny_onnx), "--device", "gpu", "--backend", "ort", "--runs", str(RUNS), "--warmup", "0",
               "--json", str(tmp_path / "gpu.json")])
    captured = capsys.readouterr()
    assert rc == 0, captured
    assert "latency on the GPU" in captured.out and "CUDAExecutionProvider" in captured.out
    assert "part of the graph ran on the CPU (Shape (shape))" in captured.err
    assert json.loads((tmp_path / "gpu.json").read_text())[0]["executed_on"][0] == "CUDAExecutionProvider"


# ---------------------------------------------------------------- this machine, as it is

@pytest.mark.parametrize("device", ["gpu", "npu"])
def test_cli_no_accelerator_here(device, tiny_onnx, tmp_path, capsys):
    tflite = tmp_path / "m.tflite"
    tflite.write_bytes(b"not opened: the probes load no model")
    backends = ["ort", "openvino", "litert"]
    if not all(_unavailable_here(b, device) for b in backends):
        pytest.skip(f"this machine has a {device}")
    rc = main(["bench", str(tiny_onnx), str(tflite), "--device", device])
    captured = capsys.readouterr()
    lines = [l for l in captured.err.splitlines() if "not available on this machine" in l]
    assert rc == 2 and "Traceback" not in captured.err, captured.err
    assert [l.split(":")[0] for l in lines] == [f"{b} {device}" for b in backends]
    errors = [l for l in captured.err.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "nothing ran" in errors[0]


def test_cli_coreml_npu_off_macos(tmp_path, capsys):
    if sys.platform == "darwin":
        pytest.skip("Core ML runs here")
    package = tmp_path / "m.mlpackage"
    package.mkdir()
    rc = main(["bench", str(package), "--device", "npu"])
    captured = capsys.readouterr()
    assert rc == 2 and "coreml npu: not available on this machine: Core ML on the Apple Neural Engine " \
                       "(compute_units=CPU_AND_NE) needs macOS" in captured.err


def test_backends_refuse_an_absent_accelerator(tiny_onnx, tiny_tflite):
    if _unavailable_here("ort", "gpu"):
        with pytest.raises(AcceleratorUnavailable, match="onnxruntime-gpu"):
            open_backend(tiny_onnx, "ort", device="gpu")
    if _unavailable_here("openvino", "npu"):
        with pytest.raises(AcceleratorUnavailable, match="NPU plugin needs"):
            open_backend(tiny_onnx, "openvino", device="npu")
    if _unavailable_here("litert", "gpu"):  # no GPU: LiteRT's WebGPU accelerator does not start
        with pytest.raises(AcceleratorUnavailable, match="WebGPU"):
            open_backend(tiny_tflite, "litert", device="gpu")


def test_cli_device_options_are_checked(tiny_onnx, one_line_error):
    one_line_error(main(["bench", str(tiny_onnx), "--device", "gpu", "--use-gpu"]), "--use-gpu", "android only")
    one_line_error(main(["bench", str(tiny_onnx), "--device", "gpu", "--npu-soc", "qualcomm:SM8650"]),
                   "--npu-soc", "--device npu only")
    one_line_error(main(["bench", str(tiny_onnx), "--device", "gpu", "--backend", "torch"]), "CPU only")


# ---------------------------------------------------------------- NPU ahead of time

def test_parse_npu_soc():
    t = npu.parse_npu_soc("Qualcomm:sm8650")
    assert (t.vendor.key, t.soc, t.target_id) == ("qualcomm", "SM8650", "Qualcomm_SM8650")
    assert npu.parse_npu_soc("google:tensor_g4").target_id == "Google_Tensor_G4"
    assert npu.parse_npu_soc("mtk:MT6989").target_id == "MediaTek_MT6989"
    with pytest.raises(MobileVisionError, match="SM8650"):  # the installed LiteRT's own list
        npu.parse_npu_soc("qualcomm:SM0000")
    for bad in ("SM8650", "apple:A17", "qualcomm:"):
        with pytest.raises(MobileVisionError, match="VENDOR:SOC"):
            npu.parse_npu_soc(bad)


def test_aot_without_the_vendor_sdk_says_what_to_install():
    t = npu.parse_npu_soc("qualcomm:SM8650")
    with pytest.raises(AcceleratorUnavailable) as e:
        npu.vendor_sdk_libs(t, find_spec=lambda name: None, model="emo_1m")
    text = str(e.value)
    for words in ("pip install ai-edge-litert-sdk-qualcomm", "Qualcomm AI Runtime (QAIRT) SDK",
                  "downloads the SDK from softwarecenter.qualcomm.com", "Snapdragon phones",
                  "mobilevision bench emo_1m_Qualcomm_SM8650.tflite --device android --use-npu"):
        assert words in text


def test_aot_sdk_installed_without_its_download(monkeypatch, tmp_path):
    requested = []

    def path_to_sdk_libs(version="v8"):
        requested.append(version)
        return None  # what the SDK packages return when the install-time download failed

    monkeypatch.setitem(sys.modules, "ai_edge_litert_sdk_mediatek",
                        _fake_module("ai_edge_litert_sdk_mediatek", path_to_sdk_libs=path_to_sdk_libs))
    with pytest.raises(AcceleratorUnavailable, match="download from MediaTek's NeuroPilot bucket"):
        npu.vendor_sdk_libs(npu.parse_npu_soc("mediatek:MT6993"), find_spec=lambda name: object())
    libs = tmp_path / "libs"
    libs.mkdir()
    monkeypatch.setitem(sys.modules, "ai_edge_litert_sdk_mediatek",
                        _fake_module("ai_edge_litert_sdk_mediatek", path_to_sdk_libs=lambda version: requested.append(
                            version) or libs))
    assert npu.vendor_sdk_libs(npu.parse_npu_soc("mediatek:MT6989"), find_spec=lambda name: object()) == str(libs)
    assert requested == ["v9", "v8"]  # NeuroPilot version per SoC, as LiteRT's MediaTek backend picks it


def test_cli_npu_soc_here(tmp_path, capsys):
    if importlib.util.find_spec("ai_edge_litert_sdk_qualcomm") is not None:
        pytest.skip("the Qualcomm SDK package is installed here")
    model = tmp_path / "emo_1m.tflite"
    model.write_bytes(b"\0")
    rc = main(["bench", str(model), "--device", "npu", "--npu-soc", "qualcomm:SM8650"])
    captured = capsys.readouterr()
    errors = [l for l in captured.err.splitlines() if l.startswith("error:")]
    assert rc == 2 and len(errors) == 1 and "Traceback" not in captured.err
    assert "pip install ai-edge-litert-sdk-qualcomm" in errors[0] and "emo_1m_Qualcomm_SM8650.tflite" in errors[0]


def _compilation(tmp_path: Path, offloaded: int, total: int, failure: str | None = None):
    """A real ai_edge_litert.aot CompilationResult, as aot_compile returns it."""
    from ai_edge_litert.aot.core import aot_types
    from ai_edge_litert.aot.vendors.qualcomm import qualcomm_backend

    backend = qualcomm_backend.QualcommBackend.create({"backend_id": "qualcomm", "soc_model": "SM8650"})
    result = aot_types.CompilationResult()
    if failure:
        result.failed_backends.append((backend, failure))
        return result
    compiled = tmp_path / "aot" / "tiny_Qualcomm_SM8650_apply_plugin.tflite"
    compiled.parent.mkdir(parents=True, exist_ok=True)
    compiled.write_bytes(b"compiled-bytes")
    model = aot_types.Model.create_from_path(compiled)
    model.partition_stats = aot_types.PartitionStats([aot_types.SubgraphPartitionStats(0, offloaded, total, 1)])
    result.models_with_backend.append((backend, model))
    return result


def test_parse_compilation(tmp_path):
    report = npu.parse_compilation(_compilation(tmp_path, 5, 7))
    (done,) = report.compiled
    assert (done.target, done.ops_offloaded, done.ops_total, done.partitions) == ("Qualcomm_SM8650", 5, 7, 1)
    assert not done.fully_offloaded and report.failures == []
    log = tmp_path / "tmpabc.error"
    log.write_text("[LITERT_TOOLS:APPLY] Loading plugins\n" + NPU_LOG[1].replace(
        "intel_openvino/compiler/libLiteRtCompilerPlugin_IntelOpenvino.so: libopenvino.so.2631",
        "qualcomm/compiler/libLiteRtCompilerPlugin_Qualcomm.so: libQnnHtp.so") + "\n")
    failed = npu.parse_compilation(_compilation(tmp_path, 0, 0, f"apply_plugin failed to apply plugin. See {log} for "
                                                                f"details."))
    assert failed.compiled == []
    assert failed.failures == [("Qualcomm_SM8650", "libLiteRtCompilerPlugin_Qualcomm.so: libQnnHtp.so: cannot open "
                                                   f"shared object file: No such file or directory (log: {log})")]


def test_compile_for_npu_writes_the_compiled_model(tmp_path, monkeypatch):
    from ai_edge_litert.aot import aot_compile as aot

    model = tmp_path / "tiny.tflite"
    model.write_bytes(b"\0")
    target = npu.parse_npu_soc("qualcomm:SM8650")
    monkeypatch.setattr(npu, "vendor_sdk_libs", lambda t, model="MODEL": "/sdk")
    calls = []

    def fake_aot_compile(path, output_dir, target, keep_going):
        calls.append((path, str(target), keep_going))
        return _compilation(Path(output_dir), 7, 7)
    monkeypatch.setattr(aot, "aot_compile", fake_aot_compile)
    done = npu.compile_for_npu(model, target)
    assert calls == [(str(model), "Qualcomm_SM8650", True)]
    assert done.fully_offloaded and done.path == str(tmp_path / "tiny_Qualcomm_SM8650.tflite")
    assert Path(done.path).read_bytes() == b"compiled-bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.tflite", "tiny_Qualcomm_SM8650.tflite"]

    monkeypatch.setattr(aot, "aot_compile", lambda path, output_dir, target, keep_going:
                        _compilation(Path(output_dir), 0, 7))
    Path(done.path).unlink()
    with pytest.raises(AcceleratorFallback, match="took none of tiny.tflite's 7 ops"):
        npu.compile_for_npu(model, target)
    assert not Path(done.path).exists()


# ---------------------------------------------------------------- rows stay compatible

def test_bench_result_new_fields_are_optional():
    row = BenchResult("a.onnx", "ort", None, 1, "cpu", 1.0, 1.0, 1, 0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 10.0, None, None)
    assert (row.accelerated, row.fallback_ops, row.executed_on, row.rewarm) == (None, None, None, 0)
    assert (row.p95_ms, row.p99_ms, row.fps, row.runtime_version, row.host) == (None,) * 5
    assert {"accelerated", "fallback_ops", "executed_on"} <= set(dataclasses.asdict(row))
    assert isinstance(Delegation("gpu", "x", [], None), Delegation)


def test_an_artifact_no_runtime_runs_on_the_gpu_gets_its_runtimes_reason(tmp_path):
    """A .pte (ExecuTorch: the delegate is fixed at export) on --device gpu: the format's own runtime says why."""
    pte = tmp_path / "m.pte"
    pte.write_bytes(b"not opened: the probes load no model")
    with pytest.raises(BackendUnavailable, match="no runtime here runs these artifacts on the GPU: executorch gpu: "
                                                 "not available on this machine: .*chosen at export"):
        acc.plan_accelerated([pte], "gpu")
