"""Trained zoo models x {fp32, fp16, int8} x targets: the task metric on held-out data next to latency and size.

Every artifact goes through the real export (parity, calibration, the accuracy report), then all artifacts of
one model are timed together by the benchmark runner (interleaved runs). Per task: one table and one Pareto
chart (median latency vs the metric after export; the frontier marked). Core ML converts here but predicts
only on macOS: its rows carry size and structure, no metric and no latency.

    python benchmarks/quantization_zoo.py [--models emo_1m=runs/quant/emo_1m_digits/best.safetensors@64 ...]
        [--targets onnx tflite openvino coreml] [--calib-n 300] [--eval-n 200] [--runs 50] [--threads 2]

A model is NAME=WEIGHTS@IMGSZ; weights come from `mobilevision train ...` runs (the defaults below are the
runs this repository's benchmarks produce; see benchmarks/README.md). Writes
``benchmarks/results/<host>/quantization_zoo.{json,md}`` and ``quantization_zoo_<task>.png``.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from mobilevision.atomic_io import atomic_save_figure, atomic_write_text
from mobilevision.export.api import QuantizeOptions, export_prepared, prepare
from mobilevision.export.quantize import THRESHOLDS
from mobilevision.errors import MobileVisionError
from mobilevision.runtime.profile import benchmark

DEFAULT_MODELS = [
    "emo_1m=runs/quant/emo_1m_digits/best.safetensors@64",
    "skipnet_m=runs/quant/skipnet_m_digits/best.safetensors@64",
    "efficientad_s=runs/bench_efficientad/brick_s200_seed0/best.safetensors@256",
    "efficientisp=runs/bench_isp/efficientisp_paired_s100_b4_seed0/best.safetensors@128",
    "landmarks_mnv2=runs/bench_landmarks/student_kd_landmarks_mnv2_s356_b32_128px_seed0/best.safetensors@128",
]
PRECISIONS = ("fp32", "fp16", "int8")


def parse_model(spec: str) -> tuple[str, str, int | None]:
    name, _, rest = spec.partition("=")
    weights, _, size = rest.partition("@")
    if not name or not weights:
        raise SystemExit(f"--models {spec!r}: give NAME=WEIGHTS[@IMGSZ]")
    return name, weights, int(size) if size else None


def run_model(name: str, weights: str, imgsz: int | None, args: argparse.Namespace) -> list[dict]:
    prep = prepare(name, weights=weights, imgsz=imgsz)
    q = QuantizeOptions(calib_n=args.calib_n, eval_n=args.eval_n, fp32_accuracy=True)
    rows, paths = [], []
    for precision in PRECISIONS:
        for target in args.targets:
            t0 = time.perf_counter()
            try:
                r = export_prepared(prep, target, precision, args.work / name, quantize=q)
            except MobileVisionError as e:
                rows.append({"model": name, "task": prep.card.task, "target": target, "precision": precision,
                             "error": str(e)})
                print(f"{name} {target} {precision}: FAILED {e}", flush=True)
                continue
            acc = r.accuracy
            row = {"model": name, "task": prep.card.task, "target": target, "precision": precision,
                   "artifact": str(r.path), "size_mb": r.size_bytes / 1e6, "export_s": time.perf_counter() - t0,
                   "metric": acc.metric if acc else None, "before": acc.before if acc else None,
                   "after": acc.after if acc else None, "loss": acc.loss if acc else None,
                   "exceeded": acc.exceeded if acc else None,
                   "cosine": acc.agreement.get("cosine") if acc else None,
                   "eval_inputs": acc.samples if acc else None, "eval_data": acc.data if acc else None,
                   "note": acc.note if acc else None, "warnings": r.warnings,
                   "scheme": (r.metadata.quantization or {}).get("scheme"),
                   "sensitive_layers": acc.sensitive_layers if acc else []}
            rows.append(row)
            if r.parity.numeric:
                paths.append(str(r.path))
            print(f"{name} {target} {precision}: {acc.summary() if acc else ''}", flush=True)
    by_path = {row.get("artifact"): row for row in rows}
    for b in benchmark(paths, threads=args.threads, runs=args.runs):
        row = by_path[b.artifact] if b.artifact in by_path else by_path[str(b.artifact)]
        if b.error:
            row.setdefault("latency", {})[b.backend] = {"error": b.error}
        else:
            row.setdefault("latency", {})[b.backend] = {"median_ms": b.median_ms, "p90_ms": b.p90_ms}
        print(f"{name} {Path(b.artifact).name} {b.backend}: {b.median_ms} ms", flush=True)
    return rows


def _median(row: dict) -> float | None:
    lat = [v["median_ms"] for v in (row.get("latency") or {}).values() if "median_ms" in v]
    return lat[0] if lat else None


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    thresholds = ", ".join(f"{m.label} {'-' if m.higher_is_better else '+'}{m.threshold:g}"
                           f"{'' if m.unit in ('', '%') else ' '}{m.unit}" for m in THRESHOLDS.values())
    lines = [f"# Quantisation across the zoo ({args.label})", "",
             f"Trained weights, held-out data of each task (up to {args.eval_n} inputs), calibration on up to "
             f"{args.calib_n} training inputs. Metric 'before' is the fp32 PyTorch model; 'after' is the artifact "
             f"in its runtime. Latency: {args.threads} threads, {args.runs} interleaved timed runs per artifact "
             f"(one run, medians). Thresholds: {thresholds}; 'WARN' marks a loss past it.", ""]
    for task in dict.fromkeys(r["task"] for r in rows):
        metric = next((r["metric"] for r in rows if r["task"] == task and r.get("metric")), "metric")
        lines += [f"## {task}", "", f"| model | target | precision | MB | {metric} before | {metric} after | "
                  f"cos vs fp32 | median ms | |", "|---|---|---|---|---|---|---|---|---|"]
        for r in [r for r in rows if r["task"] == task]:
            if r.get("error"):
                lines.append(f"| {r['model']} | {r['target']} | {r['precision']} | - | - | - | - | - | "
                             f"FAILED: {r['error'][:120]} |")
                continue
            fmt = (lambda v: "-" if v is None else (f"{v:.4f}" if task == "anomaly" else f"{v:.2f}"))
            med = _median(r)
            flag = "WARN" if r.get("exceeded") else ""
            if r["after"] is None and r.get("note") and "macOS" in r["note"]:
                flag = "needs macOS"
            cos = "-" if r["cosine"] is None else f"{r['cosine']:.4f}"
            lines.append(f"| {r['model']} | {r['target']} | {r['precision']} | {r['size_mb']:.2f} | "
                         f"{fmt(r['before'])} | {fmt(r['after'])} | {cos} | {'-' if med is None else f'{med:.2f}'} | "
                         f"{flag} |")
        lines += ["", f"![{task}](quantization_zoo_{task}.png)", ""]
    return "\n".join(lines) + "\n"


def pareto(points: list[tuple[float, float]], higher_is_better: bool) -> list[int]:
    """Indices of the points no other point beats on both latency (lower) and metric."""
    best = []
    for i, (lat, m) in enumerate(points):
        dominated = any((l2 <= lat and (m2 >= m if higher_is_better else m2 <= m)) and (l2, m2) != (lat, m)
                        for l2, m2 in points)
        if not dominated:
            best.append(i)
    return best


def chart(rows: list[dict], task: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    pts = [(r, _median(r)) for r in rows if r["task"] == task and not r.get("error") and r.get("after") is not None]
    pts = [(r, m) for r, m in pts if m is not None]
    if not pts:
        return
    hib = THRESHOLDS[task].higher_is_better
    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = {"fp32": "o", "fp16": "s", "int8": "^"}
    colors = {"onnx": "tab:blue", "tflite": "tab:orange", "openvino": "tab:green"}
    for r, med in pts:
        ax.scatter(med, r["after"], marker=markers[r["precision"]], color=colors.get(r["target"], "gray"), s=50)
        ax.annotate(f"{r['model']} {r['precision']}", (med, r["after"]), fontsize=6, xytext=(3, 3),
                    textcoords="offset points")
    front = pareto([(m, r["after"]) for r, m in pts], hib)
    fr = sorted((pts[i][1], pts[i][0]["after"]) for i in front)
    ax.plot([p[0] for p in fr], [p[1] for p in fr], "k--", lw=1, label="Pareto frontier")
    for t, c in colors.items():
        ax.scatter([], [], color=c, label=t)
    for p, mk in markers.items():
        ax.scatter([], [], marker=mk, color="gray", label=p)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("median latency, ms (log)")
    metric = pts[0][0]["metric"]
    ax.set_ylabel(f"{metric} after export" + (" (lower is better)" if not hib else ""))
    ax.set_title(f"{task}: latency vs {metric}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_save_figure(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    ap.add_argument("--targets", nargs="+", default=["onnx", "tflite", "openvino", "coreml"])
    ap.add_argument("--calib-n", type=int, default=300)
    ap.add_argument("--eval-n", type=int, default=200)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("runs") / "bench_quant")
    ap.add_argument("--merge", action="store_true", help="keep the rows of models not given from the last run")
    ap.add_argument("--label", default=platform.node())
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / platform.node())
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    previous = args.out / "quantization_zoo.json"
    if args.merge and previous.is_file():   # keep the other models' rows of the last run
        names = {parse_model(m)[0] for m in args.models}
        rows = [r for r in json.loads(previous.read_text())["rows"] if r["model"] not in names]
    for spec in args.models:
        name, weights, imgsz = parse_model(spec)
        if not Path(weights).is_file():
            print(f"skipping {name}: {weights} not found (train it first, see benchmarks/README.md)", flush=True)
            continue
        rows += run_model(name, weights, imgsz, args)
    atomic_write_text(args.out / "quantization_zoo.json", json.dumps(
        {"host": platform.node(), "label": args.label, "torch": torch.__version__, "calib_n": args.calib_n,
         "eval_n": args.eval_n, "runs": args.runs, "threads": args.threads, "models": args.models, "rows": rows},
        indent=2, default=str) + "\n")
    md = markdown(rows, args)
    atomic_write_text(args.out / "quantization_zoo.md", md)
    for task in dict.fromkeys(r["task"] for r in rows):
        chart(rows, task, args.out / f"quantization_zoo_{task}.png")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
