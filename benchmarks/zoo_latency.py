"""Zoo x backends latency on this CPU: one interleaved run, JSON + markdown + PNG chart.

Exports each model to ONNX, TFLite and OpenVINO (or takes --artifacts DIR of exported
files) and measures every artifact with every backend that opens it (ort, litert,
openvino, torch) in one ``benchmark()`` call, so all rows share the machine's drift.
Writes ``benchmarks/results/<host>/latency.{json,md,png}``.

    python benchmarks/zoo_latency.py [--models emo_1m emo_2m] [--threads 2] [--runs 50]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

from mobilevision.atomic_io import atomic_write_text
from mobilevision.runtime.profile import benchmark

FORMATS = {".onnx": "ONNX", ".tflite": "TFLite", ".xml": "OpenVINO IR"}


def _export(models: list[str], folder: Path) -> list[Path]:
    from mobilevision.export import export_all

    paths = []
    for name in models:
        for r in export_all(name, ["onnx", "tflite", "openvino"], out_dir=folder):
            if not hasattr(r, "path"):
                raise SystemExit(f"export of {name} to {r.target} failed: {r.error}")
            paths.append(r.path)
    return paths


def _chart(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    models = list(dict.fromkeys(r["model"] for r in rows))
    series = list(dict.fromkeys(f"{r['backend']} ({FORMATS[Path(r['artifact']).suffix]})" for r in rows))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(7, 2.2 * len(models)), 4.5), dpi=120)
    for k, s in enumerate(series):
        med, lo, hi = [], [], []
        for m in models:
            row = next((r for r in rows if r["model"] == m and
                        f"{r['backend']} ({FORMATS[Path(r['artifact']).suffix]})" == s), None)
            med.append(row["median_ms"] if row else np.nan)
            lo.append(row["median_ms"] - row["min_ms"] if row else 0)
            hi.append(row["p90_ms"] - row["median_ms"] if row else 0)
        x = np.arange(len(models)) + (k - (len(series) - 1) / 2) * width
        ax.bar(x, med, width, yerr=[lo, hi], capsize=2, label=s)
    ax.set_xticks(np.arange(len(models)), models)
    ax.set_ylabel("latency per image (ms), bar = median, whiskers = min..p90")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, ncol=2)
    ax.grid(axis="y", alpha=0.3, which="both")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    os.replace(tmp, path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["emo_1m", "emo_2m", "emo_5m", "emo_6m"])
    ap.add_argument("--artifacts", type=Path, help="folder of exported artifacts instead of exporting")
    ap.add_argument("--backends", nargs="+", default=["ort", "litert", "openvino", "torch"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    if args.artifacts:
        paths = sorted(p for p in args.artifacts.iterdir() if p.suffix in FORMATS)
    else:
        paths = _export(args.models, Path(tempfile.mkdtemp(prefix="mv_zoo_")))
    # every runtime on its own format, and torch once per model (on the ONNX artifact's metadata)
    own = {".onnx": "ort", ".tflite": "litert", ".xml": "openvino"}
    pairs = [(p, own[p.suffix]) for p in paths if own[p.suffix] in args.backends]
    if "torch" in args.backends:
        pairs += [(p, "torch") for p in paths if p.suffix == ".onnx"]
    rows = benchmark([], threads=args.threads, runs=args.runs, warmup=args.warmup, pairs=pairs,
                     on_progress=lambda m: print(m, end="\r", flush=True))
    print()
    data = [dataclasses.asdict(r) for r in rows]
    folder = Path(__file__).parent / "results" / platform.node()
    atomic_write_text(folder / "latency.json", json.dumps(data, indent=2))
    cpu = platform.processor() or platform.machine()
    lines = [f"# Zoo latency on {platform.node()} ({cpu}, {os.cpu_count()} cores, {args.threads} threads)", "",
             f"Random-init weights, batch 1, {args.runs} timed runs after {args.warmup} warm-up, all rows "
             "interleaved in one run. Medians and ratios only compare within this table.", "",
             "| model | backend | format | median ms | p90 ms | min ms | GMAC/s | peak RSS MB | load ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in data:
        if r["error"]:
            lines.append(f"| {r['model']} | {r['backend']} | {FORMATS[Path(r['artifact']).suffix]} | "
                         f"error: {r['error']} | | | | | |")
            continue
        lines.append(f"| {r['model']} | {r['backend']} | {FORMATS[Path(r['artifact']).suffix]} | "
                     f"{r['median_ms']:.2f} | {r['p90_ms']:.2f} | {r['min_ms']:.2f} | {r['gmacs_per_s']:.1f} | "
                     f"{r['peak_rss_mb']:.0f} | {r['load_ms']:.0f} |")
    atomic_write_text(folder / "latency.md", "\n".join(lines) + "\n")
    ok = [r for r in data if not r["error"]]
    _chart(ok, folder / "latency.png", f"mobilevision zoo on {platform.node()}, {args.threads} threads "
                                       f"(median of {args.runs}, interleaved)")
    print("\n".join(lines))
    print(f"wrote {folder}/latency.{{json,md,png}}")
    return 0 if len(ok) == len(data) else 1


if __name__ == "__main__":
    sys.exit(main())
