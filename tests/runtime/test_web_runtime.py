"""The web runtime (runtime/web) gives the Python runtime's answers in a real headless Chromium: golden vectors
of one exported .onnx per task (and two .tflite), written by the Python runtime, replayed by the package in the
browser (bit-exact uint8 steps, float steps within 1e-5), and every artifact run in onnxruntime-web or LiteRT.js
against the recorded outputs.
A corrupted golden value fails it; bad input gives one-line errors; the demo page renders a real result.

Needs `bash runtime/web/tools/setup.sh` (npm packages + Debian's chromium), which the README's test command runs.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mobilevision.runtime.golden import write_golden
from mobilevision.runtime.web_server import ORT_DIST, WEB, WebServer, default_mounts, package_mounts

pytestmark = pytest.mark.slow   # real zoo models end to end (the quick set skips them)

BROWSER = WEB / "tools" / "browser.mjs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def web_tools() -> None:
    missing = [str(p) for p in (WEB / "node_modules" / "playwright-core", ORT_DIST, Path(CHROMIUM)) if not p.exists()]
    if missing or shutil.which("node") is None:
        pytest.fail(f"the web test tools are missing ({', '.join(missing) or 'node'}): run "
                    "`bash runtime/web/tools/setup.sh`")


def browse(url: str, screenshot: Path | None = None, timeout_s: int = 600) -> dict:
    """Open ``url`` in headless Chromium until the page sets window.__mvResult; {result, console, errors}."""
    cmd = ["node", str(BROWSER), url, "--timeout", str(timeout_s * 1000)]
    if screenshot is not None:
        cmd += ["--screenshot", str(screenshot)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s + 60, cwd=WEB)
    assert p.stdout.strip(), f"the browser driver printed nothing (exit {p.returncode}): {p.stderr[-2000:]}"
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert p.returncode == 0, f"the page did not finish: {out['errors']} {out['console'][-10:]}"
    return out


def _path(results) -> Path:
    (r,) = results
    assert hasattr(r, "path"), r
    return r.path


@pytest.fixture(scope="module")
def artifacts(toy_exports, shared_exports) -> dict[str, Path]:
    """One .onnx per task: the toy classifier, a calibrated EfficientAD-S (maps O(0.1)),
    EfficientISP with 32-pixel tiles (a mosaic takes several) and a 64 px landmark model; and the toy classifier
    and the landmark model as .tflite, for LiteRT.js."""
    return {"classify": toy_exports["onnx"].path, "classify_tflite": toy_exports["tflite"].path,
            "landmarks_tflite": _path([shared_exports("landmarks_64")["tflite"]]),
            "anomaly": _path([shared_exports("efficientad")["onnx"]]),
            "isp": _path([shared_exports("efficientisp_32")["onnx"]]),
            "landmarks": _path([shared_exports("landmarks_64")["onnx"]])}


@pytest.fixture(scope="module")
def golden(tmp_path_factory, artifacts) -> Path:
    out = tmp_path_factory.mktemp("web_golden")
    write_golden(list(artifacts.values()), out)
    return out


def _run_golden(folder: Path) -> dict:
    with WebServer(package_mounts(golden=folder)) as server:
        out = browse(f"{server.url}/test/golden.html?dir=/golden/")
    assert out["crossOriginIsolated"] is True   # COOP/COEP: onnxruntime-web may use its WASM threads
    return out["result"]


def test_golden_manifest_carries_the_model_files(golden):
    m = json.loads((golden / "golden.json").read_text())
    assert {x["task"] for x in m["models"]} == {"classify", "anomaly", "isp", "landmarks"}
    for x in m["models"]:
        (copied,) = [x[k] for k in ("onnx", "tflite") if x[k]]
        assert (golden / copied).is_file()
    assert sorted(x["task"] for x in m["models"] if x["tflite"]) == ["classify", "landmarks"]
    assert m["model_tolerance"] > m["tolerance"]


def test_web_runtime_matches_python_runtime_in_chromium(web_tools, golden):
    result = _run_golden(golden)
    assert result["failures"] == [], "\n".join(result["failures"][:20])
    m = json.loads((golden / "golden.json").read_text())
    cases = sum(len(x["cases"]) for x in m["models"])
    assert result["ran"] == {"onnxruntime-web": 4, "LiteRT.js": 2}
    # every step of every case, every resample and statistics case, and every artifact in its runtime
    assert result["checks"] >= 4 * cases + len(m["resample"]) + len(m["latency_stats"]) + len(m["models"])


def test_a_corrupted_golden_fails_in_chromium(web_tools, golden, tmp_path):
    bad = tmp_path / "golden"
    shutil.copytree(golden, bad)
    m = json.loads((bad / "golden.json").read_text())
    lm = next(x for x in m["models"] if x["task"] == "landmarks")["cases"][0]
    pts = np.fromfile(bad / lm["result"]["file"], "<f8")
    pts[3] += 0.01                                   # one landmark coordinate, 100x the tolerance
    pts.astype("<f8").tofile(bad / lm["result"]["file"])
    cl = next(x for x in m["models"] if x["task"] == "classify")["cases"][1]
    resized = np.fromfile(bad / cl["resized"]["file"], np.uint8)
    resized[7] ^= 1                                  # one pixel of one resized image, one grey level
    resized.tofile(bad / cl["resized"]["file"])
    failures = _run_golden(bad)["failures"]
    assert any(lm["name"] in f for f in failures), failures
    assert any(cl["name"] in f for f in failures), failures
    assert all("\n" not in f for f in failures)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, artifacts) -> Path:
    import onnx

    folder = tmp_path_factory.mktemp("web_bad")
    model = onnx.load(str(artifacts["classify"]))
    del model.metadata_props[:]
    onnx.save(model, str(folder / "nometa.onnx"))
    Image.new("RGB", (4, 4)).save(folder / "photo.onnx", format="PNG")   # an image named like a model
    shutil.copyfile(artifacts["anomaly"], folder / "anomaly.onnx")
    return folder


def test_bad_input_gives_one_line_errors_in_chromium(web_tools, bad_files):
    mounts = package_mounts(models=bad_files)
    with WebServer(mounts) as server, WebServer(mounts) as other_origin:
        q = (f"nometa=/models/nometa.onnx&notonnx=/models/photo.onnx&missing=/models/missing.onnx"
             f"&anomaly=/models/anomaly.onnx&cross={other_origin.url}/models/anomaly.onnx")
        results = {r["name"]: r for r in browse(f"{server.url}/test/errors.html?{q}")["result"]}
    expected = {"no_metadata": ("ArtifactError", "carries no mobilevision metadata"),
                "not_onnx": ("ArtifactError", "not an ONNX model"),
                "missing": ("ArtifactError", "404"),
                "file_url": ("ArtifactError", "refused"),
                "cross_origin": ("ArtifactError", "refused"),
                "empty_buffer": ("ArtifactError", "not an ONNX model"),
                "wrong_task": ("InputError", "anomaly"),
                "not_an_image": ("InputError", "not an image"),
                "closed": ("MobileVisionError", "closed"),
                "bad_sidecar": ("ArtifactError", "task")}
    for name, (kind, needle) in expected.items():
        r = results[name]
        assert r["error"] is not None and r["mobilevision"], r
        if kind != "MobileVisionError":
            assert r["error"] == kind, r
        assert needle in r["message"] and "\n" not in r["message"], r


def _sample_photo(path: Path) -> None:
    import skimage.data   # a real photograph shipped inside scikit-image

    Image.fromarray(skimage.data.chelsea()).save(path)


def test_demo_page_runs_a_model_and_shows_it(web_tools, artifacts, tmp_path):
    models = tmp_path / "exports"
    models.mkdir()
    shutil.copyfile(artifacts["anomaly"], models / "efficientad.onnx")
    shutil.copyfile(artifacts["classify"], models / "toy.onnx")
    shutil.copyfile(artifacts["classify_tflite"], models / "toy.tflite")
    _sample_photo(models / "photo.png")
    shot = tmp_path / "demo.png"
    with WebServer(default_mounts(models)) as server:
        index = json.load(urllib.request.urlopen(f"{server.url}/models/index.json"))
        assert {x["name"] for x in index} == {"efficientad.onnx", "toy.onnx", "toy.tflite"}
        out = browse(f"{server.url}/demo/?model=/models/efficientad.onnx&image=/models/photo.png&autorun=1&bench=3",
                     screenshot=shot)
        lite = browse(f"{server.url}/demo/?model=/models/toy.tflite&image=/models/photo.png&autorun=1&bench=2")["result"]
    assert "error" not in lite, lite
    assert lite["task"] == "classify" and lite["executionProvider"] == "litert-wasm" and lite["bench"]["median_ms"] > 0
    r = out["result"]
    assert "error" not in r, r
    assert r["task"] == "anomaly" and r["executionProvider"] == "wasm" and r["crossOriginIsolated"]
    assert 0 < r["result"]["score"] < 10 and r["bench"]["median_ms"] > 0
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[1] >= 1000 and img.std() > 20   # a rendered page with pictures, not a blank one
    keep = os.environ.get("MOBILEVISION_SCREENSHOTS")
    if keep:
        shutil.copyfile(shot, Path(keep) / "web_demo.png")


def test_demo_page_shows_errors_in_the_page(web_tools, tmp_path):
    with WebServer(default_mounts(tmp_path)) as server:
        out = browse(f"{server.url}/demo/?model=/models/missing.onnx&image=/models/none.png&autorun=1")
    assert "404" in out["result"]["error"] and "\n" not in out["result"]["error"]


def test_serve_demo_cli_refuses_bad_folders(tmp_path, one_line_error):
    from mobilevision.cli import main

    one_line_error(main(["serve-demo", str(tmp_path / "missing")]), "is not a folder")
    (tmp_path / "file.onnx").write_bytes(b"x")
    one_line_error(main(["serve-demo", str(tmp_path / "file.onnx")]), "is not a folder")


def test_server_serves_only_its_folders(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"x")
    with WebServer(default_mounts(tmp_path)) as server:
        def status(path: str) -> int:
            try:
                return urllib.request.urlopen(server.url + path).status
            except urllib.error.HTTPError as e:
                return e.code
        assert status("/models/m.onnx") == 200
        for bad in ("/models/../../etc/passwd", "/models/%2e%2e/%2e%2e/etc/passwd", "/etc/passwd", "/src/../tests"):
            assert status(bad) == 404, bad
        head = urllib.request.urlopen(server.url + "/ort/ort.all.min.mjs").headers
        assert head["Cross-Origin-Embedder-Policy"] == "require-corp" and "javascript" in head["Content-Type"]


def test_package_unit_tests_and_types(web_tools):
    """The package's own Node tests (bad metadata, truncated ONNX, wrong task, closed model) and its types."""
    unit = subprocess.run(["node", "--test", "test/unit.mjs"], cwd=WEB, capture_output=True, text=True, timeout=300)
    assert unit.returncode == 0, unit.stdout[-3000:] + unit.stderr[-2000:]
    tsc = subprocess.run([str(WEB / "node_modules" / ".bin" / "tsc"), "-p", "."], cwd=WEB, capture_output=True,
                         text=True, timeout=300)
    assert tsc.returncode == 0, tsc.stdout[-3000:]
