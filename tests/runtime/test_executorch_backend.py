"""ExecuTorch backend: a .pte opened from the verified bytes, classify, threads, close, damaged files, delegation,
availability, and a quiet terminal."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from mobilevision.errors import ArtifactError, InputMismatch
from mobilevision.export.metadata import sidecar_path
from mobilevision.runtime import backends as registry
from mobilevision.runtime import load
from mobilevision.runtime.backends.base import ArtifactClosed


@pytest.fixture(scope="module")
def pte(toy_name, tmp_path_factory):
    from mobilevision.export.targets import get_target

    why = get_target("executorch").unavailable()
    if why:
        pytest.skip(f"target executorch: {why}")
    from mobilevision.export import export

    return export(toy_name, "executorch", out_dir=tmp_path_factory.mktemp("pte")).path


def _inputs(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.standard_normal((1, 3, 64, 64)).astype(np.float32) for _ in range(n)]


@pytest.mark.slow
def test_load_predict_and_classify(pte, toy_name):
    import torch

    from mobilevision import create_model

    x = _inputs(1)[0]
    torch.manual_seed(0)   # the exporter builds random-init zoo models after seeding 0
    with torch.no_grad():
        want = create_model(toy_name).eval()(torch.from_numpy(x)).numpy()
    with load(pte) as m:
        assert m.backend.name == "executorch" and m.integrity.verified   # opened from the sidecar-checked bytes
        assert m.inputs[0].name == "image" and m.inputs[0].shape == [1, 3, 64, 64] and m.inputs[0].dtype == "float32"
        np.testing.assert_allclose(m.predict(x)["logits"], want, atol=1e-5)
        top = m.classify(np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8), top_k=3)
        assert len(top) == 3 and top[0].label.startswith("class_")


def test_four_threads_get_what_one_gets(pte):
    xs = _inputs(4)
    with load(pte) as m:
        alone = [m.predict(x)["logits"] for x in xs]
        got: dict[int, list[np.ndarray]] = {}

        def work(i: int) -> None:
            got[i] = [m.predict(xs[i])["logits"] for _ in range(10)]

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for i in range(4):
        assert len(got[i]) == 10 and all(np.array_equal(a, alone[i]) for a in got[i])


def test_closed_model_raises(pte):
    m = load(pte)
    backend = m.backend
    m.close()
    with pytest.raises(ArtifactClosed):
        m.predict(_inputs(1)[0])
    with pytest.raises(ArtifactClosed):
        backend.run(_inputs(1))
    with pytest.raises(ArtifactClosed):
        backend.embedded_metadata()


def test_backend_checks_inputs_itself(pte):
    with load(pte) as m:
        with pytest.raises(InputMismatch, match=r"expects float32 \[1, 3, 64, 64\]"):
            m.backend.run([np.zeros((1, 3, 32, 64), np.float32)])
        with pytest.raises(InputMismatch, match="astype"):
            m.backend.run([np.zeros((1, 3, 64, 64), np.float64)])
        with pytest.raises(InputMismatch, match="takes 1 input"):
            m.backend.run([])


def test_threads_set_the_pool_for_that_models_calls(pte):
    from mobilevision.runtime.backends import executorch as et

    with load(pte, threads=1) as m:
        m.predict(_inputs(1)[0])
        assert et._state["threads"] == 1
    with load(pte) as m:   # None: ExecuTorch's default again
        m.predict(_inputs(1)[0])
        assert et._state["threads"] == et._state["default_threads"]


def test_delegation_names_xnnpack_and_the_portable_ops(pte):
    with load(pte) as m:
        d = m.backend.delegation()
    assert d.device == "cpu" and d.accelerator == "XNNPACK" and d.offloaded
    assert d.executed_on[0].startswith("XnnpackBackend (") and d.executed_on[-1].startswith("portable kernels")
    assert any(op.startswith("aten::native_layer_norm.out") for op in d.fallback_ops)
    assert d.accelerated is False and "XNNPACK nodes" in d.note


def test_probe_cpu_and_why_not_gpu_npu():
    assert registry.probe("executorch", "cpu").available
    from mobilevision.runtime.backends.executorch import probe

    for device in ("gpu", "npu"):
        av = probe(device)
        assert not av.available and "export" in av.detail and av.device == device
        assert not registry.probe("executorch", device).available


DAMAGE = textwrap.dedent("""
    import hashlib, json, sys
    from pathlib import Path
    from mobilevision.errors import MobileVisionError
    from mobilevision.runtime import load
    src, work = Path(sys.argv[1]), Path(sys.argv[2])
    data = src.read_bytes()
    side = json.loads(Path(str(src) + ".json").read_text())
    def case(name, content, sidecar):
        p = work / f"{name}.pte"
        p.write_bytes(content)
        if sidecar:   # the sidecar re-hashed: integrity passes, ExecuTorch sees the damage
            side["files"] = {p.name: hashlib.sha256(content).hexdigest()}
            Path(str(p) + ".json").write_text(json.dumps(side))
        try:
            load(p).close()
            print(name, "loaded")
        except MobileVisionError as e:
            print(name, type(e).__name__, str(e).replace(chr(10), " "))
    case("truncated", data[: len(data) // 2], False)
    case("truncated_rehashed", data[: len(data) // 3], True)
    case("garbage", b"ET12" * 100, False)
    for seed in range(6):   # bit flips spread over the program, its weights and the XNNPACK payloads
        d = bytearray(data)
        for k in range(8):
            i = (seed * 7919 + k * 104729) % len(d)
            d[i] ^= 1 << (k % 8)
        case(f"flipped{seed}", bytes(d), True)
    print("done")
""")


@pytest.mark.slow
def test_damaged_pte_is_one_clear_error_not_a_crash(pte, tmp_path):
    proc = subprocess.run([sys.executable, "-c", DAMAGE, str(pte), str(tmp_path)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]   # a native crash would be a signal here
    lines = dict(line.split(" ", 1) for line in proc.stdout.strip().splitlines() if " " in line)
    assert proc.stdout.strip().endswith("done")
    assert lines["truncated"].startswith("ArtifactError ExecuTorch cannot load") and "File size" in lines["truncated"]
    assert lines["truncated_rehashed"].startswith("ArtifactError")
    assert lines["garbage"].startswith("ArtifactError")
    for seed in range(6):
        assert lines[f"flipped{seed}"] == "loaded" or lines[f"flipped{seed}"].startswith("ArtifactError")
    assert proc.stderr == ""   # ExecuTorch's own log lines stay off the terminal


def test_changed_pte_is_refused_by_its_sidecar(pte, tmp_path):
    bad = tmp_path / pte.name
    bad.write_bytes(pte.read_bytes()[:-10])
    sidecar_path(bad).write_text(sidecar_path(pte).read_text())
    with pytest.raises(ArtifactError, match="SHA-256"):
        load(bad)


@pytest.mark.slow
def test_opening_a_pte_keeps_the_terminal_clean(pte):
    code = textwrap.dedent(f"""
        import numpy as np
        from mobilevision.runtime import load
        with load({str(pte)!r}, threads=1) as m:
            m.predict(np.zeros((1, 3, 64, 64), np.float32))
            m.backend.delegation()
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.stdout == "ok\n" and proc.stderr == "", proc.stderr[-2000:]


def test_sidecar_lists_the_pte(pte):
    side = json.loads(sidecar_path(pte).read_text())
    assert side["files"] == {pte.name: hashlib.sha256(pte.read_bytes()).hexdigest()}
