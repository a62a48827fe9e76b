"""Whether LiteRT's accelerators have what they need on this machine: a GPU API for its WebGPU accelerator, a
dispatch library and the hardware for its NPU accelerator. Pure rules plus the few system lookups they take;
``litert.probe`` combines them."""
from __future__ import annotations

import ctypes
import glob
import importlib
import importlib.util
import os
import platform
from pathlib import Path

# Where the Vulkan loader looks for drivers (ICD manifests) when VK_DRIVER_FILES / VK_ICD_FILENAMES are unset.
VULKAN_ICD_DIRS = ("/etc/vulkan/icd.d", "/usr/share/vulkan/icd.d", "/usr/local/share/vulkan/icd.d",
                   "/etc/xdg/vulkan/icd.d")
SOFTWARE_VULKAN = ("lvp", "swiftshader")  # Mesa lavapipe and SwiftShader run Vulkan on the CPU


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


def litert_dir() -> Path | None:
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
