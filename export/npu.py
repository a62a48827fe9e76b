"""Ahead-of-time compilation of a ``.tflite`` for a phone NPU (Qualcomm, MediaTek, Google Tensor).

    from mobilevision.export.npu import compile_for_npu, parse_npu_soc
    done = compile_for_npu("m.tflite", parse_npu_soc("qualcomm:SM8650"))   # -> m_Qualcomm_SM8650.tflite

LiteRT's ``ai_edge_litert.aot`` compiles with the vendor's SDK package (``ai-edge-litert-sdk-*``, which downloads
the vendor toolchain from the vendor's site while it installs); the compiled ``.tflite`` then runs on the phone
(``runtime/devices/android.py``, ``--use-npu``). Ahead-of-time work belongs to export; the runtime only runs.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mobilevision.errors import ArtifactError, MobileVisionError
from mobilevision.runtime.backends.base import AcceleratorFallback, AcceleratorUnavailable, Delegation


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


__all__ = ["AotCompiled", "AotReport", "NPU_VENDORS", "NpuTarget", "NpuVendor", "compile_for_npu", "parse_compilation",
           "parse_npu_soc", "vendor_sdk_libs"]
