"""What the app-side steps cost: the Kotlin runtime (on this machine's JVM) next to the Python runtime
(Pillow + numpy), on the same inputs, around the model: camera-frame preprocessing per task, the
anomaly map back to the frame with heatmap and overlay, the landmark crop, RAW packing.

    python benchmarks/kotlin_app_steps.py [--runs 50] [--warmup 20] [--out benchmarks/results/vm]

Writes ``<out>/kotlin_app_steps.{json,md,png}``. The Kotlin numbers are a JVM on an x86 server core, not
a phone: they say how the pure-Kotlin steps compare with Pillow's C code, and that the steps are small
next to the model. Both languages give the same values (tests/runtime/test_android_kotlin.py); here only
time is measured. Single-threaded on both sides; medians of one run each.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mobilevision.atomic_io import atomic_save_figure, atomic_write_text
from mobilevision.export.metadata import Preprocessing
from mobilevision.runtime.golden import synthetic_image
from mobilevision.runtime.profile import latency_stats
from mobilevision.runtime.tasks import anomaly, classify, isp, landmarks

REPO = Path(__file__).resolve().parents[1]
ANDROID = REPO / "runtime" / "android"
TOOLS = REPO / ".tools"

STEPS = ["classify: 640x480 -> 224 (bicubic, shorter side + crop, normalise)",
         "anomaly: 640x480 -> 256 (bilinear stretch, normalise)",
         "anomaly: 256 map -> 640x480 + heatmap + overlay",
         "landmarks: 240x280 face box -> 224 crop, normalise",
         "isp: 1280x960 mosaic -> packed, normalised"]


def inputs(folder: Path) -> dict:
    frame = synthetic_image(640, 480, seed=1)
    amap = np.random.default_rng(2).random((256, 256)).astype(np.float32) * 0.2
    mosaic = np.random.default_rng(3).integers(0, 1024, (960, 1280)).astype(np.uint16)
    frame.tofile(folder / "frame.u8")
    amap.astype("<f4").tofile(folder / "map.f32")
    mosaic.astype("<u2").tofile(folder / "mosaic.u16")
    return {"frame": frame, "map": amap, "mosaic": mosaic}


def python_steps(data: dict) -> dict:
    frame, amap, mosaic = data["frame"], data["map"], data["mosaic"]
    cls = Preprocessing(resize=256, crop=[224, 224], interpolation="bicubic")
    ad = Preprocessing(resize=256, crop=[256, 256], interpolation="bilinear", mean=[0.0] * 3, std=[1.0] * 3,
                       resize_mode="stretch")
    lm = Preprocessing(resize=224, crop=[224, 224], interpolation="bilinear", mean=[0.0] * 3, std=[1.0] * 3,
                       resize_mode="stretch")
    box = (200.0, 100.0, 440.0, 380.0)
    return {
        STEPS[0]: lambda: classify.preprocess(frame, cls),
        STEPS[1]: lambda: classify.preprocess(frame, ad),
        STEPS[2]: lambda: anomaly.overlay(frame, anomaly.heatmap(anomaly.to_image_size(amap, 640, 480))),
        STEPS[3]: lambda: classify.normalize(landmarks.crop_image(frame, box, 224, 224), lm),
        STEPS[4]: lambda: isp.normalize_raw(isp.pack_bayer(mosaic, "RGGB"), 64.0, 1023.0),
    }


def time_python(data: dict, warmup: int, runs: int) -> dict[str, list[float]]:
    out = {}
    for step, fn in python_steps(data).items():
        for _ in range(warmup):
            fn()
        ms = []
        for _ in range(runs):
            t = time.perf_counter_ns()
            fn()
            ms.append((time.perf_counter_ns() - t) / 1e6)
        out[step] = ms
    return out


def time_kotlin(folder: Path, warmup: int, runs: int) -> tuple[dict[str, list[float]], str]:
    subprocess.run(["bash", str(ANDROID / "tools" / "jvm_test.sh"), "--compile-only"], check=True)
    main = ANDROID / "build" / "jvm" / "main"
    bench_out = folder / "classes"
    subprocess.run([str(TOOLS / "kotlinc" / "bin" / "kotlinc"), str(REPO / "benchmarks" / "kotlin" / "AppStepsBench.kt"),
                    "-cp", str(main), "-jvm-target", "17", "-d", str(bench_out)], check=True,
                   env={**os.environ, "JAVA_OPTS": "-Xmx1g -XX:TieredStopAtLevel=1"})
    cp = ":".join([str(bench_out), str(main), str(TOOLS / "kotlinc" / "lib" / "kotlin-stdlib.jar")])
    r = subprocess.run(["java", "-XX:ActiveProcessorCount=1", "-cp", cp, "AppStepsBenchKt", str(folder), str(warmup),
                        str(runs)], check=True, capture_output=True, text=True)
    version = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    return {row["step"]: row["ms"] for row in rows}, version


def markdown(rows: list[dict], meta: dict) -> str:
    lines = ["# App-side steps: Kotlin runtime (JVM) vs Python runtime", "",
             f"{meta['machine']}; {meta['java']}; Python {meta['python']}. One run, {meta['runs']} timed repetitions "
             f"after {meta['warmup']} warm-up; medians in ms, single-threaded. The JVM is not a phone: read the ratio "
             "(pure Kotlin vs Pillow's C code) and the size next to the model, not an on-device latency.", "",
             "| step | Kotlin median (ms) | Python median (ms) | Kotlin / Python |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['step']} | {r['kotlin']['median_ms']:.2f} | {r['python']['median_ms']:.2f} | "
                     f"{r['kotlin']['median_ms'] / r['python']['median_ms']:.2f}x |")
    return "\n".join(lines) + "\n"


def chart(rows: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(rows))
    ax.barh(y - 0.2, [r["kotlin"]["median_ms"] for r in rows], 0.4, label="Kotlin (JVM)")
    ax.barh(y + 0.2, [r["python"]["median_ms"] for r in rows], 0.4, label="Python (Pillow + numpy)")
    ax.set_yticks(y, [r["step"].split(" (")[0] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("median ms (one run)")
    ax.set_ylabel("app-side step")
    ax.legend(fontsize=8)
    ax.set_title("App-side steps around the model", fontsize=10)
    fig.tight_layout()
    atomic_save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "vm")
    args = ap.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        print("error: --runs must be >= 1 and --warmup >= 0", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = inputs(folder)
        kotlin, java = time_kotlin(folder, args.warmup, args.runs)
        python = time_python(data, args.warmup, args.runs)
    rows = [{"step": s, "kotlin": latency_stats(kotlin[s]), "python": latency_stats(python[s])} for s in STEPS]
    meta = {"machine": f"{platform.machine()} {platform.processor() or platform.platform()}", "java": java,
            "python": platform.python_version(), "runs": args.runs, "warmup": args.warmup}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "kotlin_app_steps.json", json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    atomic_write_text(args.out / "kotlin_app_steps.md", markdown(rows, meta))
    chart(rows, args.out / "kotlin_app_steps.png")
    print(markdown(rows, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
