"""Cross-entropy vs Bias Loss on the built-in digits: same models, recipe and seeds, only the loss differs.

For each model x loss x seed it trains from scratch with the project's engine and records the
best and final validation top-1 and the training throughput (median images/s over epochs).
Writes ``benchmarks/results/<host>/ce_vs_bias.{json,md,png}``. Report what comes out: the digits
set is small (1,437 train / 360 val at 64 px) and a few epochs on a CPU; it shows whether
the loss trains as well as CE here, not the paper's ImageNet/CIFAR-100 claims.

    python benchmarks/ce_vs_bias.py [--models skipnet_m emo_1m] [--seeds 0 1 2] [--epochs 12]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from mobilevision.atomic_io import atomic_save_figure, atomic_write_text
from mobilevision.tasks.classify import ClassifyOptions, ClassifyTask
from mobilevision.train import TrainConfig, fit


def run_one(model: str, loss: str, seed: int, cfg: TrainConfig, imgsz: int, folder: Path) -> dict:
    task = ClassifyTask(ClassifyOptions(model=model, loss=loss, imgsz=imgsz))
    t0 = time.perf_counter()
    result = fit(task, dataclasses.replace(cfg, seed=seed), folder / f"{model}_{loss}_{seed}", show_progress=False)
    return {"model": model, "loss": loss, "seed": seed, "best_top1": result.best_metric,
            "best_epoch": result.best_epoch, "final_top1": result.history[-1]["val_top1"],
            "images_per_s": statistics.median(r["images_per_s"] for r in result.history),
            "wall_s": time.perf_counter() - t0}


def summarise(runs: list[dict]) -> list[dict]:
    rows = []
    for key in dict.fromkeys((r["model"], r["loss"]) for r in runs):
        group = [r for r in runs if (r["model"], r["loss"]) == key]
        best = [r["best_top1"] * 100 for r in group]
        final = [r["final_top1"] * 100 for r in group]
        rows.append({"model": key[0], "loss": key[1], "seeds": len(group),
                     "best_top1_mean": statistics.mean(best), "best_top1_std": statistics.pstdev(best),
                     "final_top1_mean": statistics.mean(final), "final_top1_std": statistics.pstdev(final),
                     "images_per_s_median": statistics.median(r["images_per_s"] for r in group)})
    return rows


def markdown(rows: list[dict], runs: list[dict], args, cfg: TrainConfig) -> str:
    lines = [f"# Cross-entropy vs Bias Loss on the built-in digits ({platform.node()})", "",
             f"{args.epochs} epochs, {args.imgsz} px, batch {cfg.batch_size}, {cfg.optimizer} lr {cfg.base_lr} "
             f"(cosine, {cfg.warmup_epochs:g} warm-up epoch), seeds {', '.join(map(str, args.seeds))}, "
             f"{torch.get_num_threads()} CPU threads. Bias Loss: alpha 0.3, beta 0.3, global normalisation. "
             "Validation: the fixed 360-image split. Mean +- population std over seeds.", "",
             "| model | loss | best top-1 % | final top-1 % | train images/s (median) |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['loss']} | {r['best_top1_mean']:.2f} +- {r['best_top1_std']:.2f} | "
                     f"{r['final_top1_mean']:.2f} +- {r['final_top1_std']:.2f} | {r['images_per_s_median']:.0f} |")
    lines += ["", "Per run (best / final top-1 %):", ""]
    lines += [f"- {r['model']} {r['loss']} seed {r['seed']}: {r['best_top1'] * 100:.2f} / {r['final_top1'] * 100:.2f}"
              for r in runs]
    return "\n".join(lines) + "\n"


def chart(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    width = 0.38
    for i, loss in enumerate(("ce", "bias")):
        sel = [next((r for r in rows if r["model"] == m and r["loss"] == loss), None) for m in models]
        xs = [j + (i - 0.5) * width for j in range(len(models))]
        ax.bar(xs, [r["best_top1_mean"] if r else 0 for r in sel], width, yerr=[r["best_top1_std"] if r else 0 for r in sel],
               capsize=4, label={"ce": "cross-entropy", "bias": "Bias Loss"}[loss])
    ax.set_xticks(range(len(models)), models)
    ax.set_ylabel("best val top-1 (%)")
    ax.set_xlabel("model")
    low = min(r["best_top1_mean"] - r["best_top1_std"] for r in rows)
    ax.set_ylim(max(0.0, low - 5), 100)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["skipnet_m", "emo_1m"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--imgsz", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / platform.node())
    args = ap.parse_args(argv)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size)
    runs = []
    with tempfile.TemporaryDirectory(prefix="mv_ce_vs_bias_") as tmp:
        for model in args.models:
            for seed in args.seeds:
                for loss in ("ce", "bias"):  # interleaved, so machine drift does not favour one loss
                    runs.append(run_one(model, loss, seed, cfg, args.imgsz, Path(tmp)))
                    r = runs[-1]
                    print(f"{model} {loss} seed {seed}: best {r['best_top1'] * 100:.2f} % final "
                          f"{r['final_top1'] * 100:.2f} % {r['images_per_s']:.0f} img/s", flush=True)
    rows = summarise(runs)
    md = markdown(rows, runs, args, cfg)
    atomic_write_text(args.out / "ce_vs_bias.json", json.dumps(
        {"host": platform.node(), "torch": torch.__version__, "threads": torch.get_num_threads(),
         "config": cfg.to_dict(), "imgsz": args.imgsz, "summary": rows, "runs": runs}, indent=2) + "\n")
    atomic_write_text(args.out / "ce_vs_bias.md", md)
    chart(rows, args.out / "ce_vs_bias.png", f"CE vs Bias Loss, digits {args.imgsz} px, {args.epochs} epochs, "
                                             f"{len(args.seeds)} seeds ({platform.node()})")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
