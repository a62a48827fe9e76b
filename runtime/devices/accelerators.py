"""GPU and NPU runs on this machine, and ahead-of-time NPU compilation for phones.

    from mobilevision.runtime.devices.accelerators import benchmark_accelerated, compile_for_npu, parse_npu_soc
    run = benchmark_accelerated(["m.onnx", "m.tflite"], "gpu")   # rows + the backends with no GPU here
    done = compile_for_npu("m.tflite", parse_npu_soc("qualcomm:SM8650"))   # -> m_Qualcomm_SM8650.tflite

Which runtime drives which accelerator (probed here without loading a model; the backend then
opens the model on it and reports where the graph went, see ``backends.base.Delegation``):

- ``ort``: an execution provider that onnxruntime's build offers (``get_available_providers``):
  GPU: CUDA, ROCm, DirectML, Core ML (CPUAndGPU); NPU: QNN (HTP), OpenVINO (NPU), Core ML
  (CPUAndNeuralEngine).
- ``openvino``: ``GPU`` / ``NPU`` in ``Core().available_devices``.
- ``litert``: ai_edge_litert's CompiledModel with ``HardwareAccelerator.GPU`` (WebGPU: Vulkan on
  Linux, Metal on macOS) or ``.NPU`` (a vendor dispatch library; the wheel ships Intel OpenVINO's).
- ``coreml``: ``compute_units`` CPU_AND_GPU / CPU_AND_NE; Core ML exists only on Apple systems.

Phone NPUs (Qualcomm, MediaTek, Google Tensor) take a model compiled ahead of time for their SoC
with ``ai_edge_litert.aot`` and the vendor's SDK package (``ai-edge-litert-sdk-*``, which downloads
the vendor toolchain from the vendor's site while it installs); the compiled ``.tflite`` then runs
on the phone (``devices/android.py``, ``--use-npu``).
"""
from __future__ import annotations

import ctypes
import glob
import importlib
import importlib.util
import os
import platform
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mobilevision.errors import ArtifactError, BackendUnavailable, MobileVisionError

from ..backends import (ACCELERATOR_BACKENDS, ACCELERATOR_DEVICES, BACKENDS, AcceleratorFallback,
                        AcceleratorUnavailable, Delegation, backends_for)
from ..profile import BenchResult, benchmark

# Where the Vulkan loader looks for drivers (ICD manifests) when VK_DRIVER_FILES / VK_ICD_FILENAMES are unset.
VULKAN_ICD_DIRS = ("/etc/vulkan/icd.d", "/usr/share/vulkan/icd.d", "/usr/local/share/vulkan/icd.d",
                   "/etc/xdg/vulkan/icd.d")
SOFTWARE_VULKAN = ("lvp", "swiftshader")  # Mesa lavapipe and SwiftShader run Vulkan on the CPU


# ---------------------------------------------------------------- availability

@dataclass(frozen=True)
class Availability:
    """Whether ``backend`` can run on ``device`` here: what would run it, or why not and what it needs."""

    backend: str
    device: str
    available: bool
    detail: str

    def line(self) -> str:
        """The one line the CLI prints for a backend that cannot run here."""
        return f"{self.backend} {self.device}: not available on this machine: {self.detail}"


def _missing(backend: str, device: str, package: str) -> Availability:
    return Availability(backend, device, False, f"needs the '{package}' package, which is not installed: "
                                                f"pip install {package}")


def probe_ort(device: str) -> Availability:
    """An execution provider for ``device`` in this onnxruntime build (its ``get_available_providers``)."""
    from ..backends.ort import choose_provider, unavailable_reason

    try:
        ort = importlib.import_module("onnxruntime")
    except ImportError:
        return _missing("ort", device, "onnxruntime")
    available = list(ort.get_available_providers())
    chosen = choose_provider(device, available)
    if chosen is None:
        return Availability("ort", device, False, unavailable_reason(device, ort.__version__, available))
    return Availability("ort", device, True, chosen[0])


def probe_openvino(device: str) -> Availability:
    """``GPU`` / ``NPU`` in OpenVINO's ``Core().available_devices``."""
    from ..backends.openvino import device_present, keep_signal_stack, unavailable_reason

    try:
        ov = importlib.import_module("openvino")
    except ImportError:
        return _missing("openvino", device, "openvino")
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


def vulkan_icds(env: dict[str, str] | None = None) -> list[str]:
    """The Vulkan driver manifests the loader would read (the env overrides first, then the standard folders)."""
    env = os.environ if env is None else env
    listed = env.get("VK_DRIVER_FILES") or env.get("VK_ICD_FILENAMES")
    if listed:
        return [p for p in listed.split(os.pathsep) if p]
    return sorted(f for d in VULKAN_ICD_DIRS for f in glob.glob(os.path.join(d, "*.json")))


def litert_gpu_support(system: str, vulkan_loader: str | None, icds: list[str]) -> tuple[bool, str]:
    """Whether LiteRT's GPU accelerator (WebGPU) has a GPU API here: (ok, detail).

    On Linux WebGPU runs on Vulkan (the accelerator library loads libvulkan.so.1), which needs a
    loader and a hardware driver; a software driver (lavapipe, SwiftShader) would run on the CPU.
    """
    if system == "Darwin":
        return True, "WebGPU on Metal"
    if system == "Windows":
        return True, "WebGPU on Direct3D 12 / Vulkan"
    if system != "Linux":
        return False, f"ai-edge-litert's GPU accelerator does not run on {system}"
    needs = "it needs a GPU with a Vulkan driver (e.g. NVIDIA's driver with its Vulkan ICD, or Mesa's RADV / ANV)"
    if not vulkan_loader:
        return False, f"LiteRT's GPU accelerator is WebGPU, which on Linux runs on Vulkan: no Vulkan loader " \
                      f"(libvulkan.so.1) here; {needs}"
    if not icds:
        return False, f"LiteRT's GPU accelerator (WebGPU on Vulkan) finds a Vulkan loader but no Vulkan driver " \
                      f"(no ICD manifest in {', '.join(VULKAN_ICD_DIRS)}); {needs}"
    hardware = [f for f in icds if not any(s in Path(f).name.lower() for s in SOFTWARE_VULKAN)]
    if not hardware:
        return False, f"only software Vulkan drivers here ({', '.join(Path(f).name for f in icds)}), which run " \
                      f"on the CPU; {needs}"
    return True, f"WebGPU on Vulkan ({', '.join(Path(f).name for f in hardware)})"


def vulkan_loader() -> str | None:
    """The Vulkan loader, opened the way WebGPU opens it (dlopen of libvulkan.so.1), or None."""
    try:
        ctypes.CDLL("libvulkan.so.1")
    except OSError:
        return None
    return "libvulkan.so.1"


def _litert_dir() -> Path | None:
    spec = importlib.util.find_spec("ai_edge_litert")
    return Path(spec.origin).parent if spec and spec.origin else None


def dispatch_vendors(litert_dir: Path) -> list[str]:
    """Vendors whose NPU dispatch library this ai_edge_litert ships (``vendors/<vendor>/dispatch``)."""
    found = glob.glob(str(litert_dir / "vendors" / "*" / "dispatch" / "*LiteRtDispatch*"))
    return sorted({Path(f).parent.parent.name for f in found})


def intel_npu_present() -> bool:
    """An Intel NPU with its driver: Linux's intel_vpu accel device, elsewhere OpenVINO's device list."""
    if platform.system() == "Linux":
        return any(Path(d).resolve().name == "intel_vpu" for d in glob.glob("/sys/class/accel/accel*/device/driver"))
    try:
        ov = importlib.import_module("openvino")
    except ImportError:
        return False
    return any(d.startswith("NPU") for d in ov.Core().available_devices)


PHONE_NPU_HINT = ("phone NPUs (Qualcomm, MediaTek, Google Tensor): compile ahead of time with --npu-soc VENDOR:SOC, "
                  "then run the compiled model with --device android --use-npu")


def litert_npu_support(vendors: list[str], intel_npu: bool, intel_sdk: bool) -> tuple[bool, str]:
    """Whether LiteRT's NPU accelerator can run here: (ok, detail)."""
    if "intel_openvino" not in vendors:
        shipped = ", ".join(vendors) or "none"
        return False, f"this ai-edge-litert ships no NPU dispatch library for this machine (found: {shipped}); " \
                      f"{PHONE_NPU_HINT}"
    sdk = ("pip install ai-edge-litert-sdk-intel (it pins the openvino release LiteRT's Intel plugin links "
           "against and downloads the NPU compiler from storage.openvinotoolkit.org while installing)")
    if not intel_npu:
        return False, f"LiteRT runs an NPU on a PC through Intel OpenVINO's dispatch library, and this machine has " \
                      f"no Intel NPU (no intel_vpu device); it needs an Intel Core Ultra NPU (LiteRT targets " \
                      f"Lunar Lake and Panther Lake) with Intel's NPU driver, and {sdk}; {PHONE_NPU_HINT}"
    if not intel_sdk:
        return False, f"an Intel NPU is here, but LiteRT's Intel plugin needs its SDK package: {sdk}"
    return True, "Intel OpenVINO dispatch"


def probe_litert(device: str) -> Availability:
    """LiteRT's CompiledModel API with a GPU API (GPU) or a dispatch library + hardware (NPU) behind it."""
    litert_dir = _litert_dir()
    if litert_dir is None or importlib.util.find_spec("ai_edge_litert.compiled_model") is None:
        return _missing("litert", device, "ai-edge-litert")
    if device == "gpu":
        system = platform.system()
        ok, detail = litert_gpu_support(system, vulkan_loader() if system == "Linux" else None, vulkan_icds())
    else:
        ok, detail = litert_npu_support(dispatch_vendors(litert_dir), intel_npu_present(),
                                        importlib.util.find_spec("ai_edge_litert_sdk_intel") is not None)
    return Availability("litert", device, ok, detail)


def probe_coreml(device: str, system: str | None = None) -> Availability:
    """Core ML's GPU (CPU_AND_GPU) or Neural Engine (CPU_AND_NE): Apple systems only."""
    from ..backends.coreml import DEVICE_COMPUTE_UNITS, needs_macos

    system = system or platform.system()
    if system != "Darwin":
        return Availability("coreml", device, False, needs_macos(device, system))
    if importlib.util.find_spec("coremltools") is None:
        return _missing("coreml", device, "coremltools")
    return Availability("coreml", device, True, f"compute_units={DEVICE_COMPUTE_UNITS[device]}")


PROBES: dict[str, Callable[[str], Availability]] = {"ort": probe_ort, "openvino": probe_openvino,
                                                    "litert": probe_litert, "coreml": probe_coreml}


def probe(backend: str, device: str) -> Availability:
    """Whether ``backend`` can run on ``device`` on this machine (no model is loaded)."""
    if device not in ACCELERATOR_DEVICES:
        raise MobileVisionError(f"unknown accelerator {device!r}: choose {' or '.join(ACCELERATOR_DEVICES)}")
    return PROBES[backend](device)


# ---------------------------------------------------------------- benchmarking

@dataclass
class AcceleratedRun:
    """The rows measured on the accelerator, and the backends that could not run on it here."""

    device: str
    rows: list[BenchResult]
    unavailable: list[Availability]


def plan_accelerated(artifacts: list[str | Path], device: str, backends: list[str] | None = None,
                     prober: Callable[[str, str], Availability] = probe
                     ) -> tuple[list[tuple[str, str]], list[Availability]]:
    """The (artifact, backend) pairs that can run on ``device`` here, and one Availability per backend that cannot.

    Candidates are every accelerator-capable backend that opens the artifact (``backends``
    narrows them); each backend is probed once.
    """
    if device not in ACCELERATOR_DEVICES:
        raise MobileVisionError(f"unknown accelerator {device!r}: choose {' or '.join(ACCELERATOR_DEVICES)}")
    unknown = [b for b in backends or [] if b not in BACKENDS]
    if unknown:
        raise BackendUnavailable(f"unknown backend {unknown[0]!r}: choose one of {', '.join(BACKENDS)}")
    cpu_only = [b for b in backends or [] if b not in ACCELERATOR_BACKENDS]
    if cpu_only:
        raise BackendUnavailable(f"{', '.join(cpu_only)} runs on the CPU only: for --device {device} use "
                                 f"{', '.join(ACCELERATOR_BACKENDS)}")
    if not artifacts:
        raise ArtifactError("no artifacts to benchmark")
    for a in artifacts:
        backends_for(a)  # ArtifactError for an unknown format
        if not Path(a).exists():
            raise ArtifactError(f"artifact not found: {a}")
    probed: dict[str, Availability] = {}
    pairs: list[tuple[str, str]] = []
    for a in artifacts:
        candidates = [b for b in backends_for(a) if b in ACCELERATOR_BACKENDS and (not backends or b in backends)]
        for b in candidates:
            if b not in probed:
                probed[b] = prober(b, device)
            if probed[b].available:
                pairs.append((str(a), b))
    if not probed:
        raise BackendUnavailable(f"none of the backends {', '.join(backends or [])} can open these artifacts")
    return list(dict.fromkeys(pairs)), [av for av in probed.values() if not av.available]


def benchmark_accelerated(artifacts: list[str | Path], device: str, backends: list[str] | None = None,
                          threads: int | None = None, runs: int = 50, warmup: int = 5, rewarm: int = 1,
                          on_progress: Callable[[str], None] | None = None) -> AcceleratedRun:
    """Benchmark every artifact with every backend that can run it on ``device`` here (``profile.benchmark``).

    Backends with no such accelerator here are returned in ``unavailable``, not measured. Each
    measured row reports its delegation; a row whose accelerator took none of the graph is an error row.
    """
    pairs, unavailable = plan_accelerated(artifacts, device, backends)
    rows = benchmark([], threads=threads, runs=runs, warmup=warmup, on_progress=on_progress, pairs=pairs,
                     rewarm=rewarm, device=device) if pairs else []
    return AcceleratedRun(device, rows, unavailable)


# ---------------------------------------------------------------- NPU ahead of time (ai_edge_litert.aot)

@dataclass(frozen=True)
class NpuVendor:
    """A phone NPU vendor as LiteRT's AOT compiler knows it, and the SDK package its compiler plugin needs."""

    key: str            # ai_edge_litert.aot.vendors.<key>
    name: str
    package: str        # pip package with the vendor toolchain
    module: str         # its import name
    toolkit: str        # what the package downloads
    source: str         # where from
    hardware: str       # what runs the compiled model


NPU_VENDORS: dict[str, NpuVendor] = {
    "qualcomm": NpuVendor("qualcomm", "Qualcomm", "ai-edge-litert-sdk-qualcomm", "ai_edge_litert_sdk_qualcomm",
                          "Qualcomm AI Runtime (QAIRT) SDK", "softwarecenter.qualcomm.com",
                          "Snapdragon phones with that SoC (Hexagon NPU)"),
    "mediatek": NpuVendor("mediatek", "MediaTek", "ai-edge-litert-sdk-mediatek", "ai_edge_litert_sdk_mediatek",
                          "MediaTek NeuroPilot SDK", "MediaTek's NeuroPilot bucket on Amazon S3",
                          "Dimensity phones with that SoC (MediaTek APU)"),
    "google_tensor": NpuVendor("google_tensor", "Google", "ai-edge-litert-sdk-google-tensor",
                               "ai_edge_litert_sdk_google_tensor", "Google Tensor ML SDK",
                               "Google's download server (redirector.gvt1.com)",
                               "Pixel phones with that Tensor SoC (Tensor TPU)"),
}
VENDOR_ALIASES = {"qualcomm": "qualcomm", "qnn": "qualcomm", "mediatek": "mediatek", "mtk": "mediatek",
                  "google_tensor": "google_tensor", "google": "google_tensor", "tensor": "google_tensor"}


@dataclass(frozen=True)
class NpuTarget:
    """A phone SoC to compile for: vendor and SoC model as LiteRT's AOT target enums spell it."""

    vendor: NpuVendor
    soc: str

    @property
    def target_id(self) -> str:
        """LiteRT's name for the target, also the suffix of the compiled file: ``Qualcomm_SM8650``."""
        return str(self.aot_target())

    def target_module(self):
        return _aot_module(f"ai_edge_litert.aot.vendors.{self.vendor.key}.target")

    def aot_target(self):
        """The ``ai_edge_litert.aot`` Target object for this SoC."""
        mod = self.target_module()
        return mod.Target(mod.SocModel(self.soc))


def _aot_module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise AcceleratorUnavailable(f"this ai-edge-litert has no ahead-of-time compiler ({name}: {e}); "
                                     f"pip install -U ai-edge-litert") from e


def known_socs(vendor: NpuVendor) -> list[str]:
    """The SoC models the installed LiteRT compiles for (its target enum, without ALL)."""
    mod = _aot_module(f"ai_edge_litert.aot.vendors.{vendor.key}.target")
    return [m.value for m in mod.SocModel if m.value != "ALL"]


def parse_npu_soc(spec: str) -> NpuTarget:
    """``VENDOR:SOC`` (``qualcomm:SM8650``, ``mediatek:MT6989``, ``google:Tensor_G4``) -> NpuTarget.

    The SoC is checked against the installed LiteRT's target list (case-insensitive).
    """
    vendor_name, sep, soc = spec.strip().partition(":")
    key = VENDOR_ALIASES.get(vendor_name.strip().lower())
    if key is None or not sep or not soc.strip():
        raise MobileVisionError(f"--npu-soc {spec!r}: give VENDOR:SOC with VENDOR one of qualcomm, mediatek, "
                                f"google_tensor (e.g. qualcomm:SM8650)")
    vendor = NPU_VENDORS[key]
    socs = known_socs(vendor)
    match = next((s for s in socs if s.lower() == soc.strip().lower()), None)
    if match is None:
        raise MobileVisionError(f"--npu-soc {spec!r}: LiteRT compiles for these {vendor.name} SoCs: {', '.join(socs)}")
    return NpuTarget(vendor, match)


def sdk_missing_message(target: NpuTarget, model: str = "MODEL") -> str:
    """What to install for ``target`` and what that install does (``model``: the artifact's file stem)."""
    v = target.vendor
    return (f"LiteRT's ahead-of-time compiler for {v.name} {target.soc} needs the {v.toolkit}, and its package "
            f"{v.package} is not installed: pip install {v.package} (Linux x86-64 only; while installing it downloads "
            f"the SDK from {v.source}, so that site must be reachable). The compiled model runs on {v.hardware}: "
            f"mobilevision bench {model}_{target.target_id}.tflite --device android --use-npu")


def vendor_sdk_libs(target: NpuTarget, find_spec: Callable[[str], Any] = importlib.util.find_spec,
                    model: str = "MODEL") -> str:
    """The folder of the vendor SDK libraries the compiler plugin loads; AcceleratorUnavailable when absent."""
    v = target.vendor
    if v.key == "google_tensor" and find_spec(v.module) is None and os.environ.get("GOOGLE_TENSOR_COMPILER_LIB"):
        return os.environ["GOOGLE_TENSOR_COMPILER_LIB"]  # LiteRT's own alternative to the SDK package
    if find_spec(v.module) is None:
        raise AcceleratorUnavailable(sdk_missing_message(target, model))
    sdk = importlib.import_module(v.module)
    try:
        if v.key == "mediatek":  # NeuroPilot v8 or v9 libraries, per SoC, as LiteRT's MediaTek backend asks
            libs = sdk.path_to_sdk_libs(target.target_module().map_soc_to_np_version(target.aot_target().soc_model))
        else:
            libs = sdk.path_to_sdk_libs()
    except NotImplementedError as e:  # the SDK packages only support Linux x86-64
        raise AcceleratorUnavailable(f"{v.package}: {e}") from e
    if not libs or not Path(libs).is_dir():
        raise AcceleratorUnavailable(f"{v.package} is installed but holds no {v.toolkit} (its download from "
                                     f"{v.source} did not complete while installing): reinstall it where that site "
                                     f"is reachable: pip install --force-reinstall --no-cache-dir {v.package}")
    return str(libs)


@dataclass
class AotCompiled:
    """One model LiteRT compiled for an NPU target, with its partition statistics (per subgraph)."""

    target: str
    ops_offloaded: int
    ops_total: int
    partitions: int
    subgraphs: list[dict] = field(default_factory=list)
    path: str | None = None

    @property
    def fully_offloaded(self) -> bool:
        return self.ops_total > 0 and self.ops_offloaded == self.ops_total


@dataclass
class AotReport:
    """What ``aot_compile`` produced: compiled models, and the targets that failed with the reason."""

    compiled: list[AotCompiled]
    failures: list[tuple[str, str]]


def _error_log_reason(message: str) -> str:
    """LiteRT's apply-plugin error names a log file ("See /tmp/x.error"); its telling line, else the message."""
    m = re.search(r"See (\S+\.error) for details", message)
    if not m or not Path(m.group(1)).is_file():
        return message
    lines = Path(m.group(1)).read_text(errors="replace").splitlines()
    for pattern in (r"Could not load shared library \S*?([^/\s]+): (.*?)\.?$", r"(Failed to load .*)",
                    r"ERROR: (?:\[[^\]]*\] )?(.+)"):
        for line in lines:
            found = re.search(pattern, line)
            if found:
                return f"{': '.join(g.strip() for g in found.groups())} (log: {m.group(1)})"
    return message


def parse_compilation(result) -> AotReport:
    """An ``aot_types.CompilationResult`` -> AotReport (partition stats per compiled model, reasons per failure)."""
    compiled = []
    for backend, model in result.models_with_backend:
        stats = model.partition_stats.subgraph_stats if model.partition_stats else []
        subgraphs = [{"subgraph": s.subgraph_index, "ops_offloaded": s.num_ops_offloaded, "ops_total": s.num_total_ops,
                      "partitions": s.num_partitions_offloaded} for s in stats]
        compiled.append(AotCompiled(backend.target_id, sum(s["ops_offloaded"] for s in subgraphs),
                                    sum(s["ops_total"] for s in subgraphs), sum(s["partitions"] for s in subgraphs),
                                    subgraphs))
    failures = [(backend.target_id, _error_log_reason(str(error))) for backend, error in result.failed_backends]
    return AotReport(compiled, failures)


def compile_for_npu(artifact: str | Path, target: NpuTarget, out_dir: str | Path | None = None) -> AotCompiled:
    """Compile a ``.tflite`` ahead of time for ``target``'s NPU; writes ``<stem>_<target>.tflite`` to ``out_dir``
    (default: beside the artifact) and returns its partition statistics.

    Raises AcceleratorUnavailable when the vendor SDK is missing (checked first: without it LiteRT's
    compiler plugin cannot load), MobileVisionError when compilation fails, and AcceleratorFallback
    when the NPU compiler took none of the graph.
    """
    path = Path(artifact)
    if path.suffix.lower() != ".tflite":
        raise ArtifactError(f"{path.name}: LiteRT compiles .tflite models for an NPU; export with --target tflite")
    if not path.is_file():
        raise ArtifactError(f"artifact not found: {path}")
    vendor_sdk_libs(target, model=path.stem)
    aot = _aot_module("ai_edge_litert.aot.aot_compile")
    out = Path(out_dir) if out_dir else path.parent
    with tempfile.TemporaryDirectory() as tmp:  # aot_compile's intermediate files stay out of the user's folder
        result = aot.aot_compile(str(path), output_dir=tmp, target=target.aot_target(), keep_going=True)
        report = parse_compilation(result)
        if not report.compiled:
            why = "; ".join(f"{t}: {m}" for t, m in report.failures) or "no model came out"
            raise MobileVisionError(f"LiteRT could not compile {path.name} for {target.target_id}: {why}")
        done = report.compiled[0]
        if done.ops_offloaded == 0:
            raise AcceleratorFallback(
                f"LiteRT's {target.vendor.name} compiler took none of {path.name}'s {done.ops_total} ops for the NPU: "
                f"the model would run on the phone's CPU, so it was not written",
                Delegation("npu", f"LiteRT {target.target_id}", [], accelerated=False, offloaded=False))
        out.mkdir(parents=True, exist_ok=True)
        result.export(out, path.stem)  # LiteRT's own naming: <stem>_<target>.tflite
    done.path = str(out / f"{path.stem}_{done.target}.tflite")
    return done


__all__ = ["AcceleratedRun", "Availability", "AotCompiled", "AotReport", "NPU_VENDORS", "NpuTarget", "NpuVendor",
           "benchmark_accelerated", "compile_for_npu", "dispatch_vendors", "litert_gpu_support", "litert_npu_support",
           "parse_compilation", "parse_npu_soc", "plan_accelerated", "probe", "vendor_sdk_libs", "vulkan_icds"]
