"""The Backend seam: one registry line says what a backend opens; the suffix table, the accelerator list,
companion files and folder formats all derive from it."""
from __future__ import annotations

import pytest

from mobilevision.export.integrity import companions
from mobilevision.export.targets import TARGETS, get_target
from mobilevision.runtime import backends as registry
from mobilevision.runtime.backends import BACKENDS, SUFFIX_BACKENDS, Registered, backends_for, is_folder_format


def test_every_format_opens_first_in_its_own_runtime():
    for name, reg in BACKENDS.items():
        for suffix in reg.suffixes:
            assert backends_for(f"x{suffix}")[0] == name
        for suffix in reg.reads:
            assert name in backends_for(f"x{suffix}")[1:]
    for name in TARGETS:   # every target's artifact opens in the runtime that checks its parity
        t = get_target(name)
        assert backends_for(f"x{t.suffix}")[0] == t.runtime
        assert getattr(t, "directory", False) == is_folder_format(t.suffix)


def test_companions_and_folders_come_from_the_registry(monkeypatch, tmp_path):
    assert [p.name for p in companions(tmp_path / "m.xml")] == ["m.bin"]
    assert companions(tmp_path / "m.onnx") == []
    monkeypatch.setitem(BACKENDS, "fake", Registered("x:Y", (".xyz",), companions={".xyz": (".dat", ".idx")},
                                                    folders=(".xyz",)))
    assert [p.name for p in companions(tmp_path / "m.xyz")] == ["m.dat", "m.idx"]
    assert is_folder_format(".XYZ")
    assert registry._by_suffix()[".xyz"] == ("fake",)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in BACKENDS if n != "torch"])
def test_registered_backends_import_without_their_runtime_or_torch(name):
    """A registry line is cheap: the backend's module imports without torch (runtimes load on open)."""
    import subprocess
    import sys

    module, cls = BACKENDS[name].impl.split(":")
    code = (f"import sys, importlib; m = importlib.import_module({module!r}); getattr(m, {cls!r}); "
            "assert 'torch' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr[-1500:]


def test_suffix_table_is_the_documented_one():
    assert SUFFIX_BACKENDS == {".onnx": ("ort", "openvino", "torch"), ".tflite": ("litert", "openvino", "torch"),
                               ".xml": ("openvino", "torch"), ".mlpackage": ("coreml", "torch"),
                               ".mlmodel": ("coreml", "torch"), ".pte": ("executorch",)}


@pytest.mark.parametrize("name", list(BACKENDS))
def test_every_backend_file_probes_its_own_availability(name):
    """Availability is the backend's own ``probe(device)``: the registry asks the module, no central table."""
    import importlib

    module = importlib.import_module(BACKENDS[name].impl.split(":")[0])
    assert callable(getattr(module, "probe", None)), f"{name}: its module has no probe(device)"
    for device in ("cpu", "gpu", "npu"):
        av = registry.probe(name, device)
        assert isinstance(av, registry.Availability) and (av.backend, av.device) == (name, device)
        assert av.detail and (av.available or len(av.detail) > 20), av   # a reason that says something
    if name not in registry.ACCELERATOR_BACKENDS:
        assert not registry.probe(name, "gpu").available


def test_probe_reports_a_missing_runtime_package(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)   # import fails
    av = registry.probe("ort", "cpu")
    assert not av.available and "pip install onnxruntime" in av.detail
    with pytest.raises(Exception, match="unknown backend"):
        registry.probe("tensorrt", "cpu")


def test_the_device_layer_names_no_backend():
    """runtime/devices/accelerators.py plans and benchmarks; what a backend can do is the backend's to say."""
    from pathlib import Path

    import mobilevision.runtime.devices.accelerators as acc

    text = Path(acc.__file__).read_text()
    assert "def probe_" not in text and "PROBES" not in text
    for name in BACKENDS:
        assert f'"{name}"' not in text, f"accelerators.py names the {name} backend"
