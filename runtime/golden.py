"""Golden vectors for the Kotlin and web runtimes: what the Python runtime does, step by step, on fixed inputs.

For each exported artifact the writer feeds deterministic synthetic inputs through the Python
runtime and records every step an app-side runtime has to reproduce: the input (image, Bayer mosaic,
face box) -> the resized uint8 image -> the float32 model input -> every model call (inputs and
outputs, as the artifact's runtime computed them) -> the task result (top-k, anomaly map at image
size + heatmap + overlay, RGB, landmarks in image pixels). It also records Pillow resizes for every
filter and the benchmark statistics of fixed samples. The Kotlin tests (runtime/android) and the
browser tests (runtime/web) replay the recorded model outputs and must match within ``TOLERANCE``
(bit-exact for uint8 steps); the browser also runs each copied ``.onnx`` in onnxruntime-web and each
``.tflite`` in LiteRT.js and compares its outputs with the recorded ones within ``MODEL_TOLERANCE``.

Layout: ``DIR/golden.json`` (the manifest) plus one raw little-endian file per array, described in the
manifest as ``{"file", "dtype", "shape"}``. Usage::

    python -m mobilevision.runtime.golden model.tflite [more artifacts] --out golden/

Torch-free, like the rest of the runtime.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from mobilevision.atomic_io import atomic_write_text
from mobilevision.errors import MobileVisionError

from .api import Model, load
from .profile import latency_stats
from .tasks import anomaly as anomaly_task
from .tasks import classify as classify_task
from .tasks import isp as isp_task
from .tasks import landmarks as landmarks_task

FORMAT = 1
TOLERANCE = 1e-5
RESAMPLE_FILTERS = ("bicubic", "bilinear", "lanczos", "box", "hamming")
# artifacts copied beside the manifest for the runtimes that open them (manifest key per suffix)
COPIED = {".tflite": "tflite", ".onnx": "onnx"}
# the web test runs the copied artifacts in WASM (onnxruntime-web, LiteRT.js): their kernels are not the native ones
MODEL_TOLERANCE = 1e-4


class _Arrays:
    """Writes arrays as raw little-endian files and returns their manifest entries."""

    def __init__(self, out: Path):
        self.out, self.count = out, 0

    def __call__(self, array: np.ndarray, dtype: str) -> dict[str, Any]:
        a = np.ascontiguousarray(np.asarray(array).astype(np.dtype(dtype).newbyteorder("<")))
        name = f"a{self.count:04d}.{dtype}"
        self.count += 1
        (self.out / name).write_bytes(a.tobytes())
        return {"file": name, "dtype": dtype, "shape": list(a.shape)}


def synthetic_image(width: int, height: int, seed: int) -> np.ndarray:
    """uint8 (H, W, 3): smooth gradients plus noise and a sharp square, so every filter tap matters."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack([255 * x / max(width - 1, 1), 255 * y / max(height - 1, 1),
                     127.5 + 127.5 * np.sin((x + 2 * y) / 5.0)], axis=-1)
    img = base + rng.normal(0, 25, base.shape)
    img[height // 4: height // 2, width // 3: width // 2] = (250, 10, 128)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _recording(model: Model) -> list[dict[str, Any]]:
    """Make ``model.predict`` record its calls; returns the list it appends to."""
    calls: list[dict[str, Any]] = []
    run = model.predict

    def predict(inputs):
        result = run(inputs)
        arrays = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
        calls.append({"inputs": [np.asarray(a) for a in arrays], "outputs": [np.asarray(v) for v in result.values()]})
        return result

    model.predict = predict  # instance attribute: the task helpers call self.predict
    return calls


def _calls(calls: list[dict[str, Any]], save: _Arrays) -> list[dict[str, Any]]:
    return [{"inputs": [save(a, "float32") for a in c["inputs"]],
             "outputs": [save(a, "float32") for a in c["outputs"]]} for c in calls]


def _classify_cases(model: Model, save: _Arrays) -> list[dict[str, Any]]:
    pre = model.metadata.preprocessing
    cases = []
    for i, (w, h) in enumerate([(97, 61), (45, 120), (20, 30), (150, 120), (80, 260)]):   # up, down, both pass orders
        img = synthetic_image(w, h, seed=10 + i)
        calls = _recording(model)
        top = model.classify(img, top_k=5)
        cases.append({"name": f"classify_{w}x{h}", "image": save(img, "uint8"), "top_k": 5,
                      "resized": save(np.asarray(classify_task.resized(img, pre)), "uint8"),
                      "tensor": save(classify_task.preprocess(img, pre), "float32"), "calls": _calls(calls, save),
                      "result": [{"index": c.index, "label": c.label, "score": c.score} for c in top]})
    return cases


def _anomaly_cases(model: Model, save: _Arrays) -> list[dict[str, Any]]:
    pre = model.metadata.preprocessing
    cases = []
    for i, ((w, h), threshold) in enumerate([((201, 150), 0.1), ((64, 90), None)]):   # None: the artifact's own
        img = synthetic_image(w, h, seed=20 + i)
        calls = _recording(model)
        r = model.detect_anomaly(img, threshold=threshold)
        heat = anomaly_task.heatmap(r.anomaly_map)
        cases.append({"name": f"anomaly_{w}x{h}", "image": save(img, "uint8"), "threshold": threshold,
                      "resized": save(np.asarray(classify_task.resized(img, pre)), "uint8"),
                      "tensor": save(classify_task.preprocess(img, pre), "float32"), "calls": _calls(calls, save),
                      "result": {"score": r.score, "is_anomalous": r.is_anomalous, "threshold": r.threshold,
                                 "pixel_threshold": r.pixel_threshold,
                                 "anomaly_map": save(r.anomaly_map, "float32"),
                                 "heatmap": save(heat, "uint8"),
                                 "overlay": save(anomaly_task.overlay(img, heat), "uint8")}})
    return cases


def _isp_cases(model: Model, save: _Arrays) -> list[dict[str, Any]]:
    th, tw = model.inputs[0].shape[2], model.inputs[0].shape[3]
    raw = model.metadata.raw
    rng = np.random.default_rng(30)
    cases = []
    # a mosaic of about 2.6 x 1.7 tiles with an odd width and height: cropping, packing and interior halos
    for pattern, black, white in [("RGGB", None, None), ("GRBG", [60.0, 64.0, 62.0, 61.0], 1023.0)]:
        h, w = 2 * int(th * 1.7) + 1, 2 * int(tw * 2.6) + 1
        top = white if white is not None else raw.white_level
        mosaic = rng.integers(0, int(top) + 1, size=(h, w)).astype(np.uint16)
        calls = _recording(model)
        rgb = model.process_raw(mosaic, pattern=pattern, black_level=black, white_level=white)
        even, _ = isp_task.crop_even(mosaic, pattern)
        packed = isp_task.normalize_raw(isp_task.pack_bayer(even, pattern),
                                        raw.black_level if black is None else black,
                                        raw.white_level if white is None else white, raw.clip)
        cases.append({"name": f"isp_{pattern}_{w}x{h}", "mosaic": save(mosaic, "uint16"), "pattern": pattern,
                      "black_level": black, "white_level": white, "packed": save(packed, "float32"),
                      "calls": _calls(calls, save),
                      "result": {"rgb": save(rgb, "float32"), "rgb8": save(isp_task.to_uint8(rgb.transpose(2, 0, 1)),
                                                                            "uint8")}})
    return cases


def _landmark_cases(model: Model, save: _Arrays) -> list[dict[str, Any]]:
    pre = model.metadata.preprocessing
    h, w = pre.crop
    cases = []
    for i, (iw, ih, box) in enumerate([(90, 70, (-10.3, 5.2, 60.7, 80.9)), (90, 70, None), (33, 41, (3.0, 4.0, 29.0, 37.0))]):
        img = synthetic_image(iw, ih, seed=40 + i)
        calls = _recording(model)
        pts = model.detect_landmarks(img, box=box)
        b = landmarks_task.full_box(iw, ih) if box is None else box
        crop = landmarks_task.crop_image(img, b, w, h)
        cases.append({"name": f"landmarks_{iw}x{ih}_{i}", "image": save(img, "uint8"),
                      "box": None if box is None else list(box), "crop": save(crop, "uint8"),
                      "tensor": save(classify_task.normalize(crop, pre), "float32"), "calls": _calls(calls, save),
                      "result": save(pts, "float64")})
    return cases


CASES: dict[str, Callable[[Model, _Arrays], list[dict[str, Any]]]] = {
    "classify": _classify_cases, "anomaly": _anomaly_cases, "isp": _isp_cases, "landmarks": _landmark_cases}


def _resample_cases(save: _Arrays) -> list[dict[str, Any]]:
    """Pillow resizes the Kotlin ``Resample`` must reproduce: every filter, up and down, a box, and a
    shape where Pillow runs the vertical pass first; float maps too."""
    img = synthetic_image(53, 300, seed=50)
    fmap = np.random.default_rng(51).random((37, 29)).astype(np.float32)
    cases = []
    for name in RESAMPLE_FILTERS:
        f = classify_task.RESAMPLE[name]
        for size, box in [((31, 17), None), ((120, 410), None), ((50, 38), None), ((20, 280), None),
                          ((24, 24), (3.25, 10.5, 40.75, 200.0))]:
            out = np.asarray(Image.fromarray(img).resize(size, f, box=box))
            cases.append({"name": f"rgb_{name}_{size[0]}x{size[1]}" + ("_box" if box else ""), "filter": name,
                          "image": save(img, "uint8"), "size": list(size), "box": list(box) if box else None,
                          "result": save(out, "uint8")})
        for size in [(64, 80), (11, 7)]:
            out = np.asarray(Image.fromarray(fmap, mode="F").resize(size, f), dtype=np.float32)
            cases.append({"name": f"float_{name}_{size[0]}x{size[1]}", "filter": name, "map": save(fmap, "float32"),
                          "size": list(size), "result": save(out, "float32")})
    return cases


def _stats_cases() -> list[dict[str, Any]]:
    rng = np.random.default_rng(60)
    cases = []
    for n in (1, 2, 37, 100):
        samples = rng.lognormal(1.0, 0.3, n)
        cases.append({"samples_ms": samples.tolist(), "stats": latency_stats(samples)})
    return cases


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def write_golden(artifacts: list[str | Path], out: str | Path) -> Path:
    """Golden vectors of ``artifacts`` (any runtime's format) into ``out``; returns the manifest path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save = _Arrays(out)
    models = []
    for i, artifact in enumerate(artifacts):
        path = Path(artifact)
        with load(path) as model:
            md = model.metadata
            if md is None:
                raise MobileVisionError(f"{path} carries no mobilevision metadata; export it with `mobilevision export`")
            if md.task not in CASES:
                raise MobileVisionError(f"{path}: no golden cases for task {md.task!r} ({', '.join(CASES)})")
            meta_name = f"model{i}.metadata.json"
            (out / meta_name).write_text(md.to_json(indent=1), encoding="utf-8")
            # the app-side runtimes read the embedded metadata from the file itself (Kotlin: .tflite, web: both)
            copied = {suffix: None for suffix in COPIED}
            if path.suffix in COPIED:
                copied[path.suffix] = f"model{i}{path.suffix}"
                _link_or_copy(path, out / copied[path.suffix])
            models.append({"artifact": path.name, "task": md.task, "model": md.model, "metadata": meta_name,
                           **{COPIED[s]: name for s, name in copied.items()}, "cases": CASES[md.task](model, save)})
    manifest = {"format": FORMAT, "tolerance": TOLERANCE, "model_tolerance": MODEL_TOLERANCE, "models": models,
                "resample": _resample_cases(save), "latency_stats": _stats_cases()}
    return atomic_write_text(out / "golden.json", json.dumps(manifest, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mobilevision.runtime.golden",
                                     description="Write golden vectors of exported artifacts for the Kotlin and web runtime tests.")
    parser.add_argument("artifacts", nargs="+", type=Path, help="exported artifacts (.tflite, .onnx, ...)")
    parser.add_argument("--out", type=Path, required=True, help="folder for golden.json and its arrays")
    args = parser.parse_args(argv)
    try:
        path = write_golden(args.artifacts, args.out)
    except MobileVisionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
