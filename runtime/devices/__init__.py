"""Where a benchmark runs: this machine's CPU (``profile.benchmark``), its GPU or NPU, or a phone.

    from mobilevision.runtime.devices import parse_device
    parse_device("android:R58M12345AB")   # -> DeviceSpec(kind="android", serial="R58M12345AB")

``gpu`` / ``npu`` (``devices/accelerators.py``) run the local runtimes on an accelerator where one is
present, and compile ahead of time for phone NPUs. ``android`` (``devices/android.py``) pushes a
``.tflite`` to a phone over adb and runs LiteRT's ``benchmark_model`` there. Importing this package
runs nothing and needs no adb.
"""
from __future__ import annotations

from dataclasses import dataclass

from mobilevision.errors import MobileVisionError

DEVICE_KINDS = ("cpu", "gpu", "npu", "android")


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed ``--device`` value: its kind and, for a phone, the adb serial (None = the only one)."""

    kind: str
    serial: str | None = None


def parse_device(spec: str) -> DeviceSpec:
    """``cpu`` | ``gpu`` | ``npu`` | ``android`` | ``android:SERIAL`` -> DeviceSpec.

    Only the first ':' splits, so a wireless-adb serial such as ``192.168.1.5:5555`` survives.
    """
    kind, sep, serial = spec.strip().partition(":")
    kind = kind.lower()
    if kind not in DEVICE_KINDS or (kind != "android" and sep):
        raise MobileVisionError(f"unknown device {spec!r}: use cpu, gpu, npu or android[:SERIAL]")
    if sep and not serial:
        raise MobileVisionError(f"device {spec!r} names no serial: use android or android:SERIAL "
                                f"(serials are listed by `adb devices`)")
    return DeviceSpec(kind, serial or None)


__all__ = ["DEVICE_KINDS", "DeviceSpec", "parse_device"]
