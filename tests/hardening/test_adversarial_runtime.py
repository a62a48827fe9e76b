"""Adversarial checks of four guarantees: one Model shared by many threads, SHA-256 integrity of every
artifact file, atomic export (scratch folders, concurrent exports), and checked ``predict`` inputs.

Every case is a regression test: each turns a misbehaviour into an AssertionError (the ones a first
adversarial pass found were fixed: per-thread objects freed with their thread, bytes read once and handed to
the runtime, damaged sidecars refused, export renames serialised, scratch owners identified by pid and start
time, masked inputs refused).
"""
from __future__ import annotations

import dataclasses
import gc
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import weakref
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from mobilevision.errors import ArtifactError, InputMismatch, MobileVisionError

TESTS = str(Path(__file__).parents[1])
BACKENDS = {"ort": "onnx", "openvino": "openvino", "litert": "tflite"}   # backend -> toy_exports target


def _outcome(fn) -> BaseException | None:
    """The exception ``fn()`` raises, or None: lets an xfail test fail with an AssertionError only."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the type is what the test asserts on
        return e
    return None


def _copy(result, dest: Path, stem: str | None = None) -> Path:
    """The artifact's files and sidecar copied into ``dest`` (renamed to ``stem``, sidecar names rewritten)."""
    dest.mkdir(parents=True, exist_ok=True)
    old = result.path.stem
    new = stem or old
    for f in result.files:
        target = dest / f.name.replace(old, new, 1)
        (shutil.copytree if f.is_dir() else shutil.copy2)(f, target)
    side = json.loads(result.sidecar.read_text())
    side["files"] = {k.replace(old, new, 1): v for k, v in side["files"].items()}
    entry = dest / result.path.name.replace(old, new, 1)
    _sidecar(entry).write_text(json.dumps(side))
    return entry


def _sidecar(entry: Path) -> Path:
    return entry.with_name(entry.name + ".json")


def _scaled_weight(entry: Path) -> tuple[Path, bytes]:
    """(file holding the weights, its bytes with the largest float32 weight of the largest tensor scaled):
    the same graph computing something else, as a swapped-in export of other weights would."""
    if entry.suffix == ".xml":
        victim = entry.with_suffix(".bin")
        consts = [(int(d.get("offset")), int(d.get("size"))) for d in ET.parse(entry).iter("data")
                  if d.get("element_type") == "f32" and d.get("offset") is not None]
        start, size = max(consts, key=lambda c: c[1])
    elif entry.suffix == ".onnx":
        import onnx

        victim = entry
        blob = max((t.raw_data for t in onnx.load(str(entry)).graph.initializer
                    if t.data_type == onnx.TensorProto.FLOAT), key=len)
        start, size = entry.read_bytes().find(blob), len(blob)
    else:
        from ai_edge_litert import schema_py_generated as schema

        victim = entry
        buf = entry.read_bytes()
        model = schema.Model.GetRootAs(buf, 0)
        graph = model.Subgraphs(0)
        weights = {graph.Tensors(i).Buffer() for i in range(graph.TensorsLength())
                   if graph.Tensors(i).Type() == schema.TensorType.FLOAT32}   # not the metadata buffers
        blob = max((model.Buffers(i).DataAsNumpy().tobytes() for i in weights
                    if model.Buffers(i).DataLength()), key=len)
        start, size = buf.find(blob), len(blob)
    data = bytearray(victim.read_bytes())
    w = np.frombuffer(bytes(data[start:start + size]), np.float32).copy()
    k = int(np.argmax(np.abs(w)))
    w[k] = w[k] * 4 + 1
    data[start + 4 * k:start + 4 * k + 4] = w[k:k + 1].tobytes()
    return victim, bytes(data)


def _in_thread(fn):
    """Run ``fn`` in a fresh thread; (result, exception)."""
    box: dict = {}

    def run():
        try:
            box["out"] = fn()
        except Exception as e:  # noqa: BLE001
            box["err"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(60)
    return box.get("out"), box.get("err")


def _inputs(model, n: int, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(model.inputs[0].shape).astype(np.float32) for _ in range(n)]


# ---------------------------------------------------------------------------------------------------------
# 1. Threads
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_sixteen_threads_mixed_call_forms_and_bad_calls(toy_exports, backend):
    """16 threads, each calling with an array, a list, a dict or a NaN input in turn: every good call gets
    its own answer, every bad one an InputMismatch, and a failing thread never disturbs the others."""
    from mobilevision.runtime import load

    with load(toy_exports[BACKENDS[backend]].path, backend=backend) as model:
        xs = _inputs(model, 8)
        refs = [model.predict(x)[model.output_names[0]].copy() for x in xs]
        name = model.inputs[0].name
        nan = xs[0].copy()
        nan[0, 0, 0, 0] = np.nan
        problems: list[str] = []
        start = threading.Barrier(16)

        def worker(t: int) -> None:
            start.wait()
            for i in range(6):
                k, form = (3 * t + i) % 8, (t + i) % 4
                call = [xs[k], [xs[k]], {name: xs[k]}, nan][form]
                try:
                    out = model.predict(call)[model.output_names[0]]
                except InputMismatch:
                    if form != 3:
                        problems.append(f"thread {t}: good call refused")
                    continue
                except Exception as e:  # noqa: BLE001
                    problems.append(f"thread {t}: {type(e).__name__}: {e}")
                    return
                if form == 3 or not np.allclose(out, refs[k], rtol=1e-5, atol=1e-5):
                    problems.append(f"thread {t} call {i}: wrong answer (form {form})")

        threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(16)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
    assert not problems, problems[:3]


@pytest.mark.slow
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_close_while_sixteen_threads_are_mid_call(toy_exports, backend):
    """close() (from four threads at once) while 16 threads call in a loop: calls already running finish
    with the right answer, every later call raises ArtifactClosed, nothing crashes or hangs; a thread
    that starts after close() is refused too."""
    from mobilevision.runtime import load
    from mobilevision.runtime.backends.base import ArtifactClosed

    model = load(toy_exports[BACKENDS[backend]].path, backend=backend)
    x = _inputs(model, 1)[0]
    ref = model.predict(x)[model.output_names[0]].copy()
    ended: list[str] = []
    wrong = []
    warmed = threading.Semaphore(0)

    def worker() -> None:
        first = True
        while True:
            try:
                out = model.predict(x)[model.output_names[0]]
            except ArtifactClosed:
                ended.append("closed")
                return
            except Exception as e:  # noqa: BLE001
                ended.append(f"{type(e).__name__}: {e}")
                return
            if not np.allclose(out, ref, rtol=1e-5, atol=1e-5):
                wrong.append(out)
            if first:
                warmed.release()
                first = False

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(16)]
    for th in threads:
        th.start()
    for _ in threads:          # every thread holds its own interpreter / infer request before the close
        assert warmed.acquire(timeout=60)
    closers = [threading.Thread(target=model.close) for _ in range(4)]
    for th in closers:
        th.start()
    for th in closers + threads:
        th.join(60)
    assert not any(th.is_alive() for th in threads + closers), "a thread hung on close()"
    assert ended == ["closed"] * 16 and not wrong, (ended[:3], len(wrong))
    _, err = _in_thread(lambda: model.predict(x))
    assert isinstance(err, ArtifactClosed) and "\n" not in str(err)


TOY_TASKS = {"toy_adv_anomaly": ("efficientad_s", (3, 32, 32)),
             "toy_adv_landmarks": ("landmarks_mnv2_035", (3, 32, 32)),
             "toy_adv_isp": ("efficientisp", (4, 16, 16))}


def _toy_task_module(name: str):
    import torch
    from torch import nn

    class Anomaly(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 1, 3, 1, 1)

        def forward(self, x):
            m = torch.sigmoid(self.conv(x))
            return m, m.amax(dim=(1, 2, 3))

    class Landmarks(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, 2, 1)
            self.head = nn.Linear(8 * 16 * 16, 68 * 2)

        def forward(self, x):
            return self.head(torch.relu(self.conv(x)).flatten(1)).reshape(-1, 68, 2)

    class ISP(nn.Module):   # 3x3 convolution: exact in tiles with the runtime's 3-pixel halo
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 12, 3, 1, 1)

        def forward(self, x):
            return torch.sigmoid(nn.functional.pixel_shuffle(self.conv(x), 2))

    return {"toy_adv_anomaly": Anomaly, "toy_adv_landmarks": Landmarks, "toy_adv_isp": ISP}[name]()


@pytest.fixture(scope="module")
def task_models(tmp_path_factory):
    """{task: .onnx path} of tiny anomaly / landmarks / ISP models registered with the zoo models' cards."""
    from mobilevision import registry
    from mobilevision.export import export

    registry._ensure_loaded()
    out = tmp_path_factory.mktemp("toy_tasks")
    paths = {}
    for name, (like, size) in TOY_TASKS.items():
        card = dataclasses.replace(registry._REGISTRY[like].card, name=name, input_size=size, description="test")
        registry.register_model(card)(lambda num_classes=0, _n=name, **kw: _toy_task_module(_n))
        paths[card.task] = export(name, "onnx", out_dir=out).path
    yield paths
    for name in TOY_TASKS:
        registry._REGISTRY.pop(name, None)


def _helper_calls(toy_exports, task_models):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (40 + 3 * i, 50 + 5 * i, 3), dtype=np.uint8) for i in range(8)]
    mosaics = [rng.integers(0, 1023, (40 + 2 * i, 36 + 4 * i), dtype=np.uint16) for i in range(8)]

    def classify(m, i):
        return np.array([(c.index, c.score) for c in m.classify(images[i], top_k=3)])

    def anomaly(m, i):
        r = m.detect_anomaly(images[i])
        return np.concatenate([[r.score], np.asarray(r.anomaly_map, np.float64).ravel()])

    return {
        "classify-ort": ((toy_exports["onnx"].path, "ort"), classify),
        "classify-openvino": ((toy_exports["openvino"].path, "openvino"), classify),
        "classify-litert": ((toy_exports["tflite"].path, "litert"), classify),
        "detect_anomaly": ((task_models["anomaly"], "ort"), anomaly),
        "detect_landmarks": ((task_models["landmarks"], "ort"),
                             lambda m, i: m.detect_landmarks(images[i], box=(2, 3, 30 + i, 33 + i))),
        "process_raw": ((task_models["isp"], "ort"),
                        lambda m, i: m.process_raw(mosaics[i], black_level=60, white_level=1023)),
    }


@pytest.mark.slow
@pytest.mark.parametrize("helper", ["classify-ort", "classify-openvino", "classify-litert", "detect_anomaly",
                                    "detect_landmarks", "process_raw"])
def test_task_helpers_from_sixteen_threads_match_one_thread(toy_exports, task_models, helper):
    from mobilevision.runtime import load

    (path, backend), call = _helper_calls(toy_exports, task_models)[helper]
    with load(path, backend=backend) as m:
        refs = [call(m, i) for i in range(8)]
        with ThreadPoolExecutor(16) as pool:
            got = list(pool.map(lambda k: (k % 8, call(m, k % 8)), range(48)))
    bad = [k for k, out in got if not np.array_equal(out, refs[k])]
    assert not bad, f"{len(bad)} of {len(got)} concurrent calls differ from the sequential answer"


def _rss() -> int:
    import psutil

    gc.collect()
    return psutil.Process().memory_info().rss


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["openvino", "litert"])
def test_short_lived_threads_do_not_accumulate_runtime_objects(toy_exports, backend):
    from mobilevision.runtime import load

    with load(toy_exports[BACKENDS[backend]].path, backend=backend) as model:
        x = _inputs(model, 1)[0]
        model.predict(x)
        per_thread = model.backend._thread_request if backend == "openvino" else model.backend._interpreters
        made: list[weakref.ref] = []
        make = per_thread._make

        def tracking_make():
            obj = make()
            made.append(weakref.ref(obj))
            return obj

        per_thread._make = tracking_make
        before = _rss()
        errors = [_in_thread(lambda: model.predict(x))[1] for _ in range(24)]
        grown = (_rss() - before) / 2**20
        live = sum(r() is not None for r in made)
    assert not any(errors) and len(made) == 24, "each fresh thread runs with its own runtime object"
    assert live <= 1, f"{live} of 24 runtime objects of dead threads still alive; RSS grew {grown:.0f} MiB"


def test_openvino_close_releases_the_compiled_model(toy_exports):
    from mobilevision.runtime import load

    model = load(toy_exports["openvino"].path, backend="openvino")
    compiled = weakref.ref(model.backend.compiled)
    model.close()
    gc.collect()
    assert compiled() is None, "the compiled model outlives close()"


@pytest.mark.parametrize("threads", [None, 1, 4])
def test_load_passes_a_sane_thread_count(toy_exports, monkeypatch, threads):
    from mobilevision.runtime import load
    from mobilevision.runtime.backends.ort import OrtBackend

    seen = []

    def constructed(self, path, threads=None, **kw):
        seen.append(threads)
        raise RuntimeError("constructed")

    monkeypatch.setattr(OrtBackend, "__init__", constructed)
    err = _outcome(lambda: load(toy_exports["onnx"].path, threads=threads))
    assert str(err) == "constructed" and seen == [threads]


@pytest.mark.parametrize("threads", [0, -1, 100_000, "2", 2.5], ids=["zero", "negative", "100000", "string",
                                                                   "float"])
def test_load_refuses_an_absurd_thread_count(toy_exports, monkeypatch, threads):
    from mobilevision.runtime import load
    from mobilevision.runtime.backends.ort import OrtBackend

    def started(self, *args, **kwargs):   # never start the runtime: 100000 would really hang ONNX Runtime
        raise RuntimeError("the runtime was started")

    monkeypatch.setattr(OrtBackend, "__init__", started)
    err = _outcome(lambda: load(toy_exports["onnx"].path, threads=threads))
    assert isinstance(err, MobileVisionError) and "thread" in str(err), repr(err)


@pytest.mark.parametrize("change", ["replaced", "deleted"])
def test_litert_new_thread_computes_the_loaded_model_after_the_file_changes(toy_exports, tmp_path, change):
    from mobilevision.runtime import load

    entry = _copy(toy_exports["tflite"], tmp_path)
    with load(entry, backend="litert") as model:
        x = _inputs(model, 1)[0]
        ref = model.predict(x)[model.output_names[0]].copy()
        if change == "replaced":     # as an export does: write beside, rename over
            _, data = _scaled_weight(entry)
            tmp = entry.with_name(".swap.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, entry)
        else:
            entry.unlink()
        out, err = _in_thread(lambda: model.predict(x)[model.output_names[0]])
    assert err is None, f"a new thread fails: {err}"
    assert np.array_equal(out, ref), "a new thread computes another model than the one loaded"


TRUNCATE = textwrap.dedent("""
    import json, shutil, sys
    import numpy as np
    from pathlib import Path
    from mobilevision.runtime import load
    src, backend, work = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    for mode in ("halved", "emptied"):       # halved first: emptied may kill the process
        d = work / mode
        d.mkdir()
        for f in src.parent.glob(src.stem + ".*"):
            if f.is_file():
                shutil.copy2(f, d / f.name)
        entry = d / src.name
        m = load(entry, backend=backend)
        x = np.random.default_rng(0).standard_normal(m.inputs[0].shape).astype(np.float32)
        ref = m.predict(x)[m.output_names[0]].copy()
        victim = entry.with_suffix(".bin") if entry.suffix == ".xml" else entry
        with open(victim, "r+b") as f:       # `cp smaller.bin model.bin` truncates the same inode
            f.truncate(victim.stat().st_size // 2 if mode == "halved" else 0)
        print(json.dumps({mode: bool(np.array_equal(m.predict(x)[m.output_names[0]], ref))}), flush=True)
""")


@pytest.fixture(scope="module")
def truncated_under_load(toy_exports, tmp_path_factory):
    """{backend: (returncode, {mode: same answer})}: a loaded model whose file is truncated in place."""
    results = {}

    def run(backend: str):
        if backend not in results:
            work = tmp_path_factory.mktemp(f"trunc_{backend}")
            proc = subprocess.run([sys.executable, "-c", TRUNCATE, str(toy_exports[BACKENDS[backend]].path),
                                   backend, str(work)], capture_output=True, text=True, timeout=120)
            seen = {}
            for line in proc.stdout.splitlines():
                if line.startswith("{"):
                    seen.update(json.loads(line))
            results[backend] = (proc.returncode, seen)
        return results[backend]
    return run


@pytest.mark.slow
@pytest.mark.parametrize("backend,mode", [
    ("ort", "halved"), ("ort", "emptied"), ("litert", "halved"),
    pytest.param("litert", "emptied"),
    pytest.param("openvino", "halved"),
    pytest.param("openvino", "emptied")])
def test_loaded_model_survives_its_file_truncated_in_place(truncated_under_load, backend, mode):
    rc, seen = truncated_under_load(backend)
    assert mode in seen, f"the process died (returncode {rc}) before answering"
    assert seen[mode], "the loaded model computes something else"


# ---------------------------------------------------------------------------------------------------------
# 2. Integrity
# ---------------------------------------------------------------------------------------------------------

def _files(d: dict) -> dict:
    return d["files"]


def _entry_digest(d: dict) -> str:
    return next(v for k, v in d["files"].items() if k.endswith(".onnx"))


Z = "0" * 64
REFUSED_SIDECARS = {
    "absolute-name": lambda d: _files(d).__setitem__("/etc/passwd", Z),
    "dotdot-name": lambda d: _files(d).__setitem__("a/../../x", Z),
    "backslash-name": lambda d: _files(d).__setitem__("..\\..\\etc\\passwd", Z),
    "nul-name": lambda d: _files(d).__setitem__("a\x00b", Z),
    "ansi-escape-name": lambda d: _files(d).__setitem__("\x1b[2J\x1b[31mred", Z),
    "unicode-name": lambda d: _files(d).__setitem__("модель.onnx", Z),
    "lone-surrogate-name": lambda d: _files(d).__setitem__("\ud800x", Z),
    "case-duplicate-name": lambda d: _files(d).__setitem__("TOY_TEST_CLASSIFIER.ONNX", _entry_digest(d)),
    "dot-name": lambda d: _files(d).__setitem__(".", Z),
    "empty-name": lambda d: _files(d).__setitem__("", Z),
    "dot-slash-name": lambda d: _files(d).__setitem__("./", Z),
    "names-the-sidecar": lambda d: _files(d).__setitem__("toy_test_classifier.onnx.json", Z),
    "names-a-directory": lambda d: _files(d).__setitem__("sub", Z),
    "files-empty-dict": lambda d: d.__setitem__("files", {}),
    "files-list": lambda d: d.__setitem__("files", ["toy_test_classifier.onnx"]),
    "files-string": lambda d: d.__setitem__("files", "toy_test_classifier.onnx"),
    "digest-int": lambda d: _files(d).update({k: 5 for k in _files(d)}),
    "digest-not-hex": lambda d: _files(d).update({k: "z" * 64 for k in _files(d)}),
    "digest-short": lambda d: _files(d).update({k: v[:63] for k, v in _files(d).items()}),
    "too-many-files": lambda d: _files(d).update({f"f{i}": Z for i in range(10_001)}),
}


@pytest.mark.parametrize("case", list(REFUSED_SIDECARS))
def test_hostile_sidecar_files_are_refused_in_one_line(toy_exports, tmp_path, case):
    from mobilevision.runtime import load

    entry = _copy(toy_exports["onnx"], tmp_path)
    (tmp_path / "sub").mkdir()
    if case == "case-duplicate-name" and (tmp_path / entry.name.upper()).exists():
        pytest.skip("case-insensitive file system: the name is the artifact's own")
    d = json.loads(_sidecar(entry).read_text())
    REFUSED_SIDECARS[case](d)
    _sidecar(entry).write_text(json.dumps(d))
    with pytest.raises(ArtifactError) as e:
        load(entry, backend="ort")
    assert "\n" not in str(e.value) and "re-export" in str(e.value), str(e.value)


LOADS_VERIFIED = {
    "dot-slash-alias": lambda d, entry: _files(d).__setitem__("./" + entry.name, _entry_digest(d)),
    "uppercase-digest": lambda d, entry: _files(d).update({k: v.upper() for k, v in _files(d).items()}),
}


@pytest.mark.parametrize("case", list(LOADS_VERIFIED))
def test_harmless_sidecar_variants_load_verified(toy_exports, tmp_path, case):
    from mobilevision.runtime import load

    entry = _copy(toy_exports["onnx"], tmp_path)
    d = json.loads(_sidecar(entry).read_text())
    LOADS_VERIFIED[case](d, entry)
    _sidecar(entry).write_text(json.dumps(d))
    with load(entry, backend="ort") as m:
        assert entry.name in m.integrity.verified and m.integrity.note is None


def test_sidecar_without_files_key_loads_unverified_and_says_so(toy_exports, tmp_path):
    """An export older than the hashes: nothing to check, and the note says why."""
    from mobilevision.runtime import load

    entry = _copy(toy_exports["onnx"], tmp_path)
    d = json.loads(_sidecar(entry).read_text())
    del d["files"]
    _sidecar(entry).write_text(json.dumps(d))
    with load(entry, backend="ort") as m:
        assert not m.integrity.verified and "records no SHA-256" in m.integrity.note


@pytest.mark.parametrize("case", ["newline-name", "name-over-path-max", "component-over-name-max"])
def test_unstattable_sidecar_names_are_refused_in_one_line(toy_exports, tmp_path, case):
    from mobilevision.runtime import load

    entry = _copy(toy_exports["onnx"], tmp_path)
    d = json.loads(_sidecar(entry).read_text())
    name = {"newline-name": "a\nb", "name-over-path-max": "a/" * 2500 + "b", "component-over-name-max": "a" * 300}
    _files(d)[name[case]] = Z
    _sidecar(entry).write_text(json.dumps(d))
    err = _outcome(lambda: load(entry, backend="ort"))
    assert isinstance(err, ArtifactError), repr(err)[:200]
    assert "\n" not in str(err), str(err)


def _corrupt_sidecar(entry: Path, case: str) -> None:
    side = _sidecar(entry)
    text = side.read_text()
    if case == "files-null":
        d = json.loads(text)
        d["files"] = None
        side.write_text(json.dumps(d))
    elif case == "truncated-json":
        side.write_text(text[:len(text) // 2])
    elif case == "not-utf8":
        side.write_bytes(b"\xff\xfe" + text.encode())
    elif case == "json-list":
        side.write_text("[]")
    elif case == "empty-file":
        side.write_text("")
    elif case == "a-directory":
        side.unlink()
        side.mkdir()
    elif case == "a-fifo":
        side.unlink()
        os.mkfifo(side)
    elif case == "symlink-loop":
        side.unlink()
        side.symlink_to(side.name)


@pytest.mark.parametrize("case", ["files-null", "truncated-json", "not-utf8", "json-list", "empty-file",
                                  "a-directory", "a-fifo", "symlink-loop"])
def test_damaged_sidecar_is_refused_not_skipped(toy_exports, tmp_path, case):
    from mobilevision.runtime import load

    entry = _copy(toy_exports["onnx"], tmp_path)
    _corrupt_sidecar(entry, case)
    err = _outcome(lambda: load(entry, backend="ort").close())
    assert isinstance(err, ArtifactError), f"loaded unverified or crashed: {err!r}"
    assert "\n" not in str(err)


@pytest.mark.parametrize("case", ["sidecar-symlink", "entry-symlink", "companion-symlink-same-bytes"])
def test_symlinked_files_with_the_recorded_bytes_load_verified(toy_exports, tmp_path, case):
    from mobilevision.runtime import load

    target = "openvino" if case.startswith("companion") else "onnx"
    entry = _copy(toy_exports[target], tmp_path / "a")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    moved = {"sidecar-symlink": _sidecar(entry), "entry-symlink": entry,
             "companion-symlink-same-bytes": entry.with_suffix(".bin")}[case]
    shutil.move(moved, elsewhere / moved.name)
    moved.symlink_to(elsewhere / moved.name)
    with load(entry) as m:
        assert entry.name in m.integrity.verified and m.integrity.note is None


@pytest.mark.parametrize("case", ["to-other-bytes", "to-dev-zero", "dangling", "to-a-directory"])
def test_companion_symlinked_elsewhere_is_refused(toy_exports, tmp_path, case):
    from mobilevision.runtime import load

    entry = _copy(toy_exports["openvino"], tmp_path)
    weights = entry.with_suffix(".bin")
    weights.unlink()
    weights.symlink_to({"to-other-bytes": str(toy_exports["onnx"].path), "to-dev-zero": "/dev/zero",
                        "dangling": "nowhere.bin", "to-a-directory": str(tmp_path)}[case])
    with pytest.raises(ArtifactError) as e:
        load(entry, backend="openvino")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("case", ["extra-file", "extra-symlink", "missing-file", "flipped-byte"])
def test_changed_mlpackage_is_refused(toy_exports, tmp_path, case):
    from mobilevision.export.integrity import verify_artifact

    pkg = _copy(toy_exports["coreml"], tmp_path)
    victim = max((f for f in pkg.rglob("*") if f.is_file()), key=lambda f: f.stat().st_size)
    if case == "extra-file":
        (pkg / "Data" / "notes.txt").write_text("added later")
    elif case == "extra-symlink":
        (pkg / "link").symlink_to(victim)
    elif case == "missing-file":
        victim.unlink()
    else:
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 1
        victim.write_bytes(bytes(data))
    with pytest.raises(ArtifactError) as e:
        verify_artifact(pkg)
    assert "\n" not in str(e.value) and "re-export" in str(e.value)


def test_mlpackage_with_an_empty_extra_folder_verifies(toy_exports, tmp_path):
    from mobilevision.export.integrity import verify_artifact

    pkg = _copy(toy_exports["coreml"], tmp_path)
    (pkg / "Data" / "empty").mkdir()
    assert verify_artifact(pkg).verified


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_file_swapped_between_verification_and_load(toy_exports, tmp_path, monkeypatch, backend):
    import mobilevision.runtime.backends as backends_mod
    from mobilevision.runtime import load

    entry = _copy(toy_exports[BACKENDS[backend]], tmp_path)
    with load(entry, backend=backend) as m:
        x = _inputs(m, 1)[0]
        ref = m.predict(x)[m.output_names[0]].copy()
    victim, data = _scaled_weight(entry)
    verify = backends_mod.verify_artifact

    def verify_then_swap(path):
        checked = verify(path)
        victim.write_bytes(data)
        return checked

    monkeypatch.setattr(backends_mod, "verify_artifact", verify_then_swap)
    with load(entry, backend=backend) as m:
        assert m.integrity.verified
        assert np.array_equal(m.predict(x)[m.output_names[0]], ref), "computes unverified bytes, reported as verified"


# ---------------------------------------------------------------------------------------------------------
# 3. Atomic export: scratch folders, concurrent exports
# ---------------------------------------------------------------------------------------------------------

def _forge_scratch(folder: Path, owner: str) -> Path:
    from mobilevision.atomic_io import SCRATCH_OWNER, make_scratch_dir

    d = make_scratch_dir(folder, ".m.onnx.")
    (d / SCRATCH_OWNER).write_text(owner)
    return d


def test_scratch_of_a_live_unrelated_process_is_kept(tmp_path):
    """A forged owner naming pid 1 (alive): the folder could be a running export's, so it is left alone."""
    from mobilevision.atomic_io import remove_stale_scratch

    d = _forge_scratch(tmp_path, "1")
    assert remove_stale_scratch(tmp_path) == [] and d.is_dir()


@pytest.mark.parametrize("owner", ["abc", "", "1e3", "-1", "0", " \n", "pid=12"],
                         ids=["letters", "empty", "float", "negative", "zero", "blank", "prefixed"])
def test_garbage_owner_file_is_left_alone_without_error(tmp_path, owner):
    from mobilevision.atomic_io import remove_stale_scratch

    d = _forge_scratch(tmp_path, owner)
    assert remove_stale_scratch(tmp_path) == [] and d.is_dir()


def test_owner_file_that_is_a_directory_is_left_alone(tmp_path):
    from mobilevision.atomic_io import SCRATCH_OWNER, make_scratch_dir, remove_stale_scratch

    d = make_scratch_dir(tmp_path, ".m.onnx.")
    (d / SCRATCH_OWNER).unlink()
    (d / SCRATCH_OWNER).mkdir()
    assert remove_stale_scratch(tmp_path) == [] and d.is_dir()


@pytest.mark.parametrize("owner", [str(2**31), "9" * 20], ids=["2**31", "20-digits"])
def test_owner_pid_out_of_range_does_not_break_cleanup(tmp_path, owner):
    from mobilevision.atomic_io import remove_stale_scratch

    _forge_scratch(tmp_path, owner)
    err = _outcome(lambda: remove_stale_scratch(tmp_path))
    assert err is None, repr(err)


@pytest.mark.slow
def test_cli_export_into_folder_with_out_of_range_owner(tmp_path, toy_name, capsys):
    from mobilevision.cli import main

    _forge_scratch(tmp_path, str(2**63))
    codes = []
    err = _outcome(lambda: codes.append(main(["export", toy_name, "-t", "onnx", "--out", str(tmp_path)])))
    assert err is None, f"{type(err).__name__} escaped the CLI: {err}"
    assert codes == [0], capsys.readouterr().err


def test_owner_file_that_is_a_fifo_does_not_hang_cleanup(tmp_path):
    from mobilevision.atomic_io import SCRATCH_OWNER, make_scratch_dir, remove_stale_scratch

    d = make_scratch_dir(tmp_path, ".m.onnx.")
    fifo = d / SCRATCH_OWNER
    fifo.unlink()
    os.mkfifo(fifo)
    worker = threading.Thread(target=remove_stale_scratch, args=(tmp_path,), daemon=True)
    worker.start()
    worker.join(3)
    hung = worker.is_alive()
    if hung:    # release the reader: a writer that opens and closes gives it end-of-file
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(10)
    assert not hung, "remove_stale_scratch blocked on the FIFO"


MAKE_SCRATCH_AND_DIE = ("import sys; from mobilevision.atomic_io import make_scratch_dir; "
                        "make_scratch_dir(sys.argv[1], '.m.onnx.')")


@pytest.mark.parametrize("reused_by", ["pid-1", "this-process"])
def test_scratch_of_a_dead_export_whose_pid_was_reused_is_removed(tmp_path, reused_by):
    import re

    from mobilevision.atomic_io import SCRATCH_OWNER, remove_stale_scratch

    subprocess.run([sys.executable, "-c", MAKE_SCRATCH_AND_DIE, str(tmp_path)], check=True, timeout=60)
    (d,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    owner = d / SCRATCH_OWNER
    pid = "1" if reused_by == "pid-1" else str(os.getpid())
    owner.write_text(re.sub(r"\d+", pid, owner.read_text(), count=1))   # the pid, now someone else's
    remove_stale_scratch(tmp_path)
    assert not d.exists(), "the dead export's scratch folder is kept"


def test_export_onto_a_directory_named_like_the_artifact(tmp_path, toy_name):
    from mobilevision.export import export

    (tmp_path / "m.onnx").mkdir()
    (tmp_path / "m.onnx" / "keep.txt").write_text("user data")
    err = _outcome(lambda: export(toy_name, "onnx", out_dir=tmp_path, name="m"))
    assert (tmp_path / "m.onnx" / "keep.txt").read_text() == "user data"
    assert isinstance(err, MobileVisionError) and "\n" not in str(err), repr(err)


PAUSED_EXPORT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from conftest import _register_toy, TOY
    from mobilevision.export import api, stages
    _register_toy()
    flags = Path({flags!r})
    renames = []
    def pause_after_first_rename(path):
        renames.append(path)
        if len(renames) == 1:      # the .bin is in place, the .xml and the sidecar are not
            (flags / "a_paused").touch()
            deadline = time.time() + 15   # a fix that locks the renames makes B wait for this
            while not (flags / "b_done").exists() and time.time() < deadline:
                time.sleep(0.05)
    stages.after_rename = pause_after_first_rename
    api.export(TOY, "openvino", imgsz=64, out_dir={out!r}, name="m")
    print("A done")
""")


@pytest.fixture(scope="module")
def concurrent_exports(toy_exports, toy_name, tmp_path_factory):
    """Process A exports m.xml (64 px) and pauses after its first rename; meanwhile this process (B) exports
    m.xml (96 px) into the same folder while holding the previous m.xml loaded; then A finishes."""
    from mobilevision.export import export
    from mobilevision.runtime import load

    root = tmp_path_factory.mktemp("concurrent")
    out, flags = root / "out", root / "flags"
    flags.mkdir()
    held = load(_copy(toy_exports["openvino"], out, stem="m"), backend="openvino")
    x = _inputs(held, 1)[0]
    held_before = held.predict(x)[held.output_names[0]].copy()
    log = open(root / "a.log", "w")
    a = subprocess.Popen([sys.executable, "-c", PAUSED_EXPORT.format(tests=TESTS, flags=str(flags), out=str(out))],
                         stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        while not (flags / "a_paused").exists():
            assert a.poll() is None and time.time() < deadline, (root / "a.log").read_text()[-2000:]
            time.sleep(0.1)
        b = export(toy_name, "openvino", imgsz=96, out_dir=out, name="m")
        (flags / "b_done").touch()
        a_rc = a.wait(300)
    finally:
        if a.poll() is None:
            a.kill()
        log.close()
    held_after, held_new_thread = held.predict(x)[held.output_names[0]].copy(), _in_thread(lambda: held.predict(x)[held.output_names[0]])
    held.close()
    return dict(out=out, a_rc=a_rc, a_log=(root / "a.log").read_text()[-2000:], b=b, held_before=held_before,
                held_after=held_after, held_new_thread=held_new_thread)


@pytest.mark.slow
def test_concurrent_exports_both_finish_and_leave_no_scratch(concurrent_exports):
    """B's stale-scratch cleanup leaves the running A's scratch folder alone; both clean up after themselves."""
    c = concurrent_exports
    assert c["a_rc"] == 0, c["a_log"]
    assert c["b"].path == c["out"] / "m.xml"
    assert not [p for p in c["out"].iterdir() if p.is_dir()], "a scratch folder was left behind"


def test_model_held_during_two_exports_keeps_its_answers(concurrent_exports):
    """The files under a loaded OpenVINO model are renamed over twice: it keeps computing what it loaded,
    in old and new threads."""
    c = concurrent_exports
    out, err = c["held_new_thread"]
    assert err is None and np.array_equal(c["held_after"], c["held_before"])
    assert np.array_equal(out, c["held_before"])


def test_concurrent_exports_leave_one_whole_artifact(concurrent_exports):
    from mobilevision.runtime import load

    c = concurrent_exports
    err = _outcome(lambda: load(c["out"] / "m.xml").close())
    assert err is None, str(err)
    with load(c["out"] / "m.xml") as m:
        assert m.inputs[0].shape[-1] in (64, 96) and m.integrity.verified


# ---------------------------------------------------------------------------------------------------------
# 4. predict inputs
# ---------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def loaded(toy_exports):
    from mobilevision.runtime import load

    models = {b: load(toy_exports[t].path, backend=b) for b, t in BACKENDS.items()}
    yield models
    for m in models.values():
        m.close()


class _Sub(np.ndarray):
    pass


def _unaligned(x: np.ndarray) -> np.ndarray:
    buf = bytearray(x.nbytes + 1)
    a = np.ndarray(x.shape, np.float32, buffer=memoryview(buf)[1:])
    a[...] = x
    assert not a.flags.aligned
    return a


def _memmap(x: np.ndarray, mode: str, folder: Path) -> np.ndarray:
    f = folder / f"x_{mode}.f32"
    x.tofile(f)
    return np.memmap(f, np.float32, mode, shape=x.shape)


def _readonly(x: np.ndarray) -> np.ndarray:
    y = x.copy()
    y.flags.writeable = False
    return y


def _strided(x: np.ndarray) -> np.ndarray:
    big = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), np.float32)
    big[..., ::2] = x
    return big[..., ::2]


SAME_ANSWER = {
    "ndarray-subclass": lambda x, tmp: x.view(_Sub),
    "non-contiguous": lambda x, tmp: _strided(x),
    "fortran-order": lambda x, tmp: np.asfortranarray(x),
    "negative-strides": lambda x, tmp: x[..., ::-1].copy()[..., ::-1],
    "read-only": lambda x, tmp: _readonly(x),
    "unaligned": lambda x, tmp: _unaligned(x),
    "memmap-read-only": lambda x, tmp: _memmap(x, "r", tmp),
    "memmap-copy-on-write": lambda x, tmp: _memmap(x, "c", tmp),
    "masked-nothing-masked": lambda x, tmp: np.ma.masked_array(x, mask=False),
    "list-of-one-array": lambda x, tmp: [x],
    "tuple-of-one-array": lambda x, tmp: (x,),
}


@pytest.mark.parametrize("case", list(SAME_ANSWER))
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_unusual_but_valid_arrays_give_the_plain_answer(loaded, tmp_path, backend, case):
    m = loaded[backend]
    x = _inputs(m, 1, seed=7)[0]
    ref = m.predict(x)[m.output_names[0]].copy()
    given = SAME_ANSWER[case](x, tmp_path)
    snapshot = np.array(given[0] if isinstance(given, (list, tuple)) else given)
    out = m.predict(given)[m.output_names[0]]
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(np.asarray(given[0] if isinstance(given, (list, tuple)) else given), snapshot)


def test_outputs_are_not_reused_between_calls(loaded):
    """Keeping a result and calling again must not change the kept result (no shared output buffer)."""
    for m in loaded.values():
        a, b = _inputs(m, 2, seed=3)
        first = m.predict(a)[m.output_names[0]]
        kept = first.copy()
        m.predict(b)
        np.testing.assert_array_equal(first, kept)


REFUSED_INPUTS = {
    "big-endian-float32": (lambda x: x.astype(">f4"), "dtype"),
    "nested-lists": (lambda x: x.tolist(), "rank"),
    "dict-of-nested-lists": (lambda x: {"image": x.tolist()}, "dtype"),
    "float16": (lambda x: x.astype(np.float16), "dtype"),
    "object-array": (lambda x: x.astype(object), "dtype"),
    "complex64": (lambda x: x.astype(np.complex64), "dtype"),
    "generator": (lambda x: (a for a in [x]), "generator"),
    "bytes": (lambda x: x.tobytes(), "bytes"),
    "2-d-matrix-in-list": (lambda x: [np.asmatrix(x[0, 0])], "rank"),
    "zero-size": (lambda x: np.zeros(x.shape[:-1] + (0,), np.float32), "shape"),
    "batch-of-two": (lambda x: np.concatenate([x, x]), "shape"),
}


@pytest.mark.parametrize("case", list(REFUSED_INPUTS))
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_careless_inputs_are_refused_in_one_line(loaded, backend, case):
    m = loaded[backend]
    make, word = REFUSED_INPUTS[case]
    with pytest.raises(InputMismatch) as e:
        m.predict(make(_inputs(m, 1)[0]))
    assert word in str(e.value) and "\n" not in str(e.value), str(e.value)


def _masked(x: np.ndarray, hidden: float) -> np.ma.MaskedArray:
    a = np.ma.masked_array(x.copy(), mask=np.zeros(x.shape, bool))
    a.data[0, 0, 0, 0] = hidden
    a.mask[0, 0, 0, 0] = True
    return a


@pytest.mark.parametrize("hidden", [np.nan, 1e30], ids=["nan-under-the-mask", "value-under-the-mask"])
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_masked_array_with_masked_cells_is_refused(loaded, backend, hidden):
    m = loaded[backend]
    x = _masked(_inputs(m, 1)[0], hidden)
    err = _outcome(lambda: m.predict(x))
    assert isinstance(err, InputMismatch), "a masked array was silently run on its hidden values"
