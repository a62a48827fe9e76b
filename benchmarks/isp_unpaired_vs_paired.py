"""Unpaired vs paired training of the same ISP generator on the built-in data, plus latency per backend.

Per mode x seed: ``mobilevision train isp``'s task for ``--steps`` steps of ``--batch-size`` (a run folder
with the same options is reused), then PSNR / SSIM / MS-SSIM on the 32 held-out test pairs (8-bit
outputs), next to the naive demosaic. Latency: the generator exported at 224x224x4 packed to ONNX,
TFLite and OpenVINO (parity checked) and timed by the benchmark runner; and one 12-megapixel mosaic
(4000 x 3000) rendered through each artifact in exact 224-pixel tiles with ``process_raw`` (median of
``--photo-runs``). Writes ``benchmarks/results/<host>/isp_unpaired_vs_paired.{json,md,png}``.
Report what comes out: without local VGG-19 / AlexNet / ViT weights the unpaired objective runs
with random feature networks (recorded), and CPU step budgets are tiny.

    python benchmarks/isp_unpaired_vs_paired.py [--steps 200] [--batch-size 8] [--seeds 0 1 2]
        [--vgg19-weights F --alexnet-weights F --vit-weights F] [--skip-training] [--skip-latency]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mobilevision.atomic_io import atomic_save_figure, atomic_write_text
from mobilevision.checkpoints import read_run_card
from mobilevision.export import export_all
from mobilevision.runtime import load
from mobilevision.runtime.profile import benchmark
from mobilevision.tasks.isp import IspOptions, IspTask, evaluate_isp, isp_recipe
from mobilevision.train import fit


def train(mode: str, seed: int, args: argparse.Namespace) -> tuple[Path, float | None]:
    opts = IspOptions(model=args.model, mode=mode, steps=args.steps, vgg19_weights=args.vgg19_weights,
                      alexnet_weights=args.alexnet_weights, vit_weights=args.vit_weights)
    run = args.work / f"{args.model}_{mode}_s{args.steps}_b{args.batch_size}_seed{seed}"
    weights = run / "best.safetensors"
    card = read_run_card(weights) if weights.is_file() else None
    if card and card.task_options == {**vars(opts)} and (card.train_config or {}).get("seed") == seed:
        return weights, recorded_train_seconds(run)
    t0 = time.perf_counter()
    fit(IspTask(opts, batch_size=args.batch_size), isp_recipe(args.steps, batch_size=args.batch_size, seed=seed),
        run, show_progress=False)
    return weights, time.perf_counter() - t0


def recorded_train_seconds(run: Path) -> float | None:
    """Training time of a reused run folder: the sum of its epochs' ``train_s`` in metrics.csv."""
    import csv

    path = run / "metrics.csv"
    if not path.is_file():
        return None
    with path.open(newline="") as f:
        return sum(float(row["train_s"]) for row in csv.DictReader(f) if row.get("train_s"))


def quality(args: argparse.Namespace) -> tuple[list[dict], dict]:
    rows, naive = [], None
    for mode in ("paired", "unpaired"):
        for seed in args.seeds:
            weights, seconds = train(mode, seed, args)
            reports, _, _ = evaluate_isp([str(weights)], out_dir=str(weights.parent / "eval"), grid_rows=4)
            naive = reports[0].to_dict()
            card = read_run_card(weights)
            rows.append({"mode": mode, "seed": seed, **reports[1].to_dict(), "train_s": seconds,
                         "feature_networks_pretrained": card.extras.get("feature_networks_pretrained")})
            print(f"{mode} seed {seed}: PSNR {reports[1].psnr:.2f} SSIM {reports[1].ssim:.4f}", flush=True)
    return rows, naive


def latency(args: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    exports = [r for r in export_all(args.model, ["onnx", "tflite", "openvino"], out_dir=args.work / "exports",
                                     imgsz=224) if hasattr(r, "path")]
    rows = [vars(b) for b in benchmark([r.path for r in exports], threads=args.threads, runs=args.runs)]
    rng = np.random.default_rng(0)
    mosaic = rng.integers(0, 1024, (3000, 4000), dtype=np.uint16)
    photo = []
    for r in exports:
        with load(r.path, threads=args.threads) as m:
            times = []
            for _ in range(args.photo_runs):
                t0 = time.perf_counter()
                rgb = m.process_raw(mosaic, "RGGB")
                times.append(time.perf_counter() - t0)
            photo.append({"artifact": Path(r.path).name, "backend": m.backend.name, "median_s": statistics.median(times),
                          "runs": args.photo_runs, "output": list(rgb.shape)})
    return rows, photo


def mean_std(values: list[float], digits: int = 2) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def markdown(rows: list[dict], naive: dict | None, lat: list[dict], photo: list[dict], args: argparse.Namespace) -> str:
    lines = [f"# ISP: unpaired vs paired training ({platform.node()})", ""]
    if rows:
        pre = rows[-1]["feature_networks_pretrained"] or {}
        lines += [f"{args.model}, built-in data (unprocessed scikit-image photos), {args.steps} steps x batch "
                  f"{args.batch_size}, seeds {args.seeds}; feature networks "
                  f"{'pretrained' if pre and all(pre.values()) else 'RANDOM (no local weights)'}; "
                  "32 held-out test pairs, metrics on 8-bit outputs.", "",
                  "| pipeline | PSNR dB | SSIM | MS-SSIM | train s/step |", "|---|---|---|---|---|"]
        if naive:
            lines.append(f"| naive demosaic | {naive['psnr']:.2f} | {naive['ssim']:.4f} | {naive['ms_ssim']:.4f} | - |")
        for mode in ("paired", "unpaired"):
            rs = [r for r in rows if r["mode"] == mode]
            if rs:
                per_step = [r["train_s"] / args.steps for r in rs if r["train_s"]]
                lines.append(f"| {mode} | {mean_std([r['psnr'] for r in rs])} | "
                             f"{mean_std([r['ssim'] for r in rs], 4)} | {mean_std([r['ms_ssim'] for r in rs], 4)} | "
                             f"{mean_std(per_step) if per_step else '-'} |")
        lines += ["", "train s/step: wall time of the training loop per step (incl. validation), as recorded in each "
                  "run's metrics.csv; seeds ran while other jobs shared the 2 cores, so it varies."]
    if lat:
        lines += ["", f"Latency, {args.model} at 224x224x4 packed (448x448 RGB out), {args.threads} threads, "
                  f"{args.runs} interleaved runs (one run):", "", "| artifact | backend | median ms | p90 ms |",
                  "|---|---|---|---|"]
        lines += [f"| {Path(b['artifact']).name} | {b['backend']} | {b['median_ms']:.2f} | {b['p90_ms']:.2f} |"
                  for b in lat if not b["error"]]
    if photo:
        lines += ["", "12-megapixel mosaic (4000x3000) through the 224-tile artifact, exact 3-pixel-halo tiles:", "",
                  "| artifact | backend | median s |", "|---|---|---|"]
        lines += [f"| {p['artifact']} | {p['backend']} | {p['median_s']:.2f} |" for p in photo]
    return "\n".join(lines) + "\n"


def chart(rows: list[dict], naive: dict | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    labels, means, stds = [], [], []
    if naive:
        labels.append("naive")
        means.append(naive["psnr"])
        stds.append(0.0)
    for mode in ("paired", "unpaired"):
        v = [r["psnr"] for r in rows if r["mode"] == mode]
        if v:
            labels.append(mode)
            means.append(statistics.mean(v))
            stds.append(statistics.stdev(v) if len(v) > 1 else 0.0)
    ax.bar(labels, means, yerr=stds, capsize=4, color=["#999", "#4a7", "#47a"][:len(labels)])
    ax.set_ylabel("PSNR dB (held-out test)")
    ax.set_xlabel("rendering")
    ax.set_title(f"ISP on the built-in data ({platform.node()})", fontsize=9)
    fig.tight_layout()
    atomic_save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientisp")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--vgg19-weights")
    ap.add_argument("--alexnet-weights")
    ap.add_argument("--vit-weights")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--photo-runs", type=int, default=3)
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--work", type=Path, default=Path("runs") / "bench_isp")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / platform.node())
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows, naive = ([], None) if args.skip_training else quality(args)
    lat, photo = ([], []) if args.skip_latency else latency(args)
    md = markdown(rows, naive, lat, photo, args)
    atomic_write_text(args.out / "isp_unpaired_vs_paired.json", json.dumps(
        {"host": platform.node(), "torch": torch.__version__, "model": args.model, "steps": args.steps,
         "batch_size": args.batch_size, "seeds": args.seeds, "naive": naive, "runs": rows, "latency": lat,
         "photo_12mp": photo}, indent=2, default=str) + "\n")
    atomic_write_text(args.out / "isp_unpaired_vs_paired.md", md)
    if rows:
        chart(rows, naive, args.out / "isp_unpaired_vs_paired.png")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
