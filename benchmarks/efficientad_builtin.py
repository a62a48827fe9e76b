"""EfficientAD-S on the built-in anomaly categories: train, evaluate, export the fused detector, time it.

Per category: ``mobilevision train anomaly``'s task for ``--steps`` steps (a run folder under
``--work`` with the same options is reused), image AU-ROC / pixel AU-ROC / AU-PRO on the
category's test set, then the trained detector exported to ONNX, TFLite and OpenVINO (parity
checked) and timed with the benchmark runner (one interleaved run, medians). Writes
``benchmarks/results/<host>/efficientad_builtin.{json,md,png}``. Report what comes out: the
built-in defects are synthetic and the CPU step budget is far below the paper's 70,000 steps
with a pretrained teacher, so these numbers are not comparable with MVTec AD.

    python benchmarks/efficientad_builtin.py [--categories brick grass ...] [--steps 200] [--threads 2]
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
from mobilevision.checkpoints import read_run_card
from mobilevision.data.anomaly import BUILTIN_CATEGORIES
from mobilevision.export import export_all
from mobilevision.runtime.profile import benchmark
from mobilevision.tasks.anomaly import AnomalyOptions, AnomalyTask, evaluate_detector, recipe
from mobilevision.train import fit

PAPER = {"EfficientAD-S": {"latency_ms": 2.2, "mvtec_image_auroc": 98.8, "hardware": "NVIDIA RTX A6000"},
         "EfficientAD-M": {"latency_ms": 4.5, "mvtec_image_auroc": 99.1, "hardware": "NVIDIA RTX A6000"}}


def train(category: str, steps: int, seed: int, work: Path) -> tuple[Path, float | None]:
    """The run's last.safetensors (trained now, or reused when a finished run with these options exists)."""
    run = work / f"{category}_s{steps}_seed{seed}"
    weights = run / "last.safetensors"
    card = read_run_card(weights) if weights.is_file() else None
    opts = AnomalyOptions(model="efficientad_s", category=category, steps=steps)
    if card and card.task_options == {**vars(opts)} and (card.train_config or {}).get("seed") == seed:
        return weights, None
    t0 = time.perf_counter()
    fit(AnomalyTask(opts), recipe(steps, seed=seed), run, show_progress=False)
    return weights, time.perf_counter() - t0


def markdown(rows: list[dict], latency: list[dict], args: argparse.Namespace) -> str:
    lines = [f"# EfficientAD-S on the built-in categories ({platform.node()})", "",
             f"{args.steps} training steps per category (batch 1, Adam 1e-4, x0.1 for the last 5 %), seed "
             f"{args.seed}, **random teacher** (no pretrained teacher offline), no penalty images; 256 px; "
             f"{torch.get_num_threads()} CPU threads. Synthetic defects on scikit-image textures: not MVTec AD.", "",
             "| category | image AU-ROC % | pixel AU-ROC % | AU-PRO (30 % FPR) % | test good / anomalous | train s/step |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        per_step = f"{r['train_s'] / args.steps:.2f}" if r["train_s"] else "reused run"
        lines.append(f"| {r['category']} | {r['image_auroc'] * 100:.2f} | {r['pixel_auroc'] * 100:.2f} | "
                     f"{r['au_pro'] * 100:.2f} | {r['n_good']} / {r['n_anomalous']} | {per_step} |")
    if latency:
        lines += ["", f"Fused detector latency ({latency[0]['model']}, {args.threads} threads, {args.runs} interleaved "
                  f"runs, one run; MACs {latency[0]['macs'] / 1e9:.1f} G):", "",
                  "| artifact | backend | median ms | p90 ms | GMAC/s |", "|---|---|---|---|---|"]
    for b in latency:
        lines.append(f"| {Path(b['artifact']).name} | {b['backend']} | {b['median_ms']:.1f} | {b['p90_ms']:.1f} | "
                     f"{b['gmacs_per_s']:.1f} |" if not b["error"] else f"| {Path(b['artifact']).name} | "
                     f"{b['backend']} | error: {b['error']} | | |")
    lines += ["", "Paper reference points (different hardware and data): EfficientAD-S 2.2 ms, EfficientAD-M 4.5 ms "
              "per image on an NVIDIA RTX A6000; 98.8 / 99.1 mean image AU-ROC on MVTec AD."]
    return "\n".join(lines) + "\n"


def chart(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4), dpi=120)
    width = 0.27
    for i, (key, label) in enumerate((("image_auroc", "image AU-ROC"), ("pixel_auroc", "pixel AU-ROC"),
                                      ("au_pro", "AU-PRO 30 %"))):
        ax.bar([j + (i - 1) * width for j in range(len(rows))], [r[key] * 100 for r in rows], width, label=label)
    ax.set_xticks(range(len(rows)), [r["category"] for r in rows])
    ax.set_ylim(max(0, min(min(r[k] for k in ("image_auroc", "pixel_auroc", "au_pro")) for r in rows) * 100 - 5), 100)
    ax.set_ylabel("metric (%)")
    ax.set_xlabel("built-in category")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--categories", nargs="+", default=list(BUILTIN_CATEGORIES))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--work", type=Path, default=Path("runs") / "bench_efficientad")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / platform.node())
    ap.add_argument("--name", default="efficientad_builtin", help="Stem of the result files.")
    ap.add_argument("--no-latency", action="store_true", help="Skip exporting and timing the detector.")
    args = ap.parse_args(argv)
    rows = []
    for category in args.categories:
        weights, train_s = train(category, args.steps, args.seed, args.work)
        ev = evaluate_detector(str(weights), out_dir=str(args.work / f"{category}_s{args.steps}_seed{args.seed}_eval"), overlays=False)
        rows.append({"category": category, "train_s": train_s, **ev.report.to_dict()})
        print(f"{category}: image AU-ROC {ev.report.image_auroc:.4f} pixel {ev.report.pixel_auroc:.4f} "
              f"AU-PRO {ev.report.au_pro:.4f}", flush=True)
    exports = [] if args.no_latency else [
        r for r in export_all("efficientad_s", ["onnx", "tflite", "openvino"], weights=str(weights),
                              out_dir=args.work / "exports") if hasattr(r, "path")]
    latency = [vars(b) for b in benchmark([r.path for r in exports], threads=args.threads, runs=args.runs)] \
        if exports else []
    md = markdown(rows, latency, args)
    atomic_write_text(args.out / f"{args.name}.json", json.dumps(
        {"host": platform.node(), "torch": torch.__version__, "steps": args.steps, "seed": args.seed,
         "teacher": "random", "penalty": None, "categories": rows, "latency": latency,
         "parity": {r.target: r.parity.summary() for r in exports}, "paper": PAPER}, indent=2, default=str) + "\n")
    atomic_write_text(args.out / f"{args.name}.md", md)
    chart(rows, args.out / f"{args.name}.png",
          f"EfficientAD-S, built-in categories, {args.steps} steps, random teacher ({platform.node()})")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
