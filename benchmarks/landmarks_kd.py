"""Facial landmarks on the built-in faces: the two teachers, the student alone vs the student with KD-Loss,
and inference latency per backend.

Trains the Tough and the Tolerant teacher (seed 0) and, per seed, the MobileNetV2 student with MSE and with
KD-Loss from those teachers, all with the same step budget (a run folder with the same options is reused),
then NME / FR@0.1 / AUC@0.1 (inter-ocular) on the built-in test faces. Latency: the student and the teacher
exported at 224 to ONNX, TFLite and OpenVINO (parity checked) and timed by the benchmark runner.
Writes ``benchmarks/results/<host>/landmarks_kd.{json,md,png}``. The built-in faces are drawn, not 300W:
a sanity benchmark. Report what comes out, including when KD does not help.

    python benchmarks/landmarks_kd.py [--steps 300] [--batch-size 32] [--imgsz 128] [--seeds 0 1 2]
        [--skip-training] [--skip-latency]

A skipped part keeps the rows the last run with the same steps / batch / size / seeds wrote.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from mobilevision.atomic_io import atomic_save_figure, atomic_write_text
from mobilevision.checkpoints import read_run_card
from mobilevision.export import export_all
from mobilevision.runtime.profile import benchmark
from mobilevision.tasks.landmarks import LandmarkOptions, LandmarkTask, evaluate_landmarks, landmark_recipe
from mobilevision.train import fit
from mobilevision.train.checkpoint import has_state


def train(role: str, model: str, seed: int, args: argparse.Namespace, kd_from: list[str] | None = None,
          tag: str = "") -> tuple[Path, float | None, int]:
    opts = LandmarkOptions(role=role, model=model, kd_from=kd_from, size=args.imgsz,
                           augmentation_factor=args.augmentation_factor)
    run = args.work / f"{role}{tag}_{model}_s{args.steps}_b{args.batch_size}_{args.imgsz}px_seed{seed}"
    weights = run / "best.safetensors"
    task = LandmarkTask(opts)
    steps_per_epoch = len(task.train_samples) * args.augmentation_factor // args.batch_size
    epochs = max(1, math.ceil(args.steps / steps_per_epoch))
    last = read_run_card(run / "last.safetensors") if (run / "last.safetensors").is_file() else None
    same = (last is not None and last.task_options == task.options()
            and (last.train_config or {}).get("seed") == seed)
    if same and last.epoch == epochs:
        return weights, None, epochs * steps_per_epoch
    t0 = time.perf_counter()       # an interrupted run with the same options continues from its last epoch
    recipe = landmark_recipe(epochs, batch_size=args.batch_size, seed=seed, device=args.device, workers=args.workers)
    fit(task, recipe, run, resume=same and has_state(run),
        show_progress=False)
    return weights, time.perf_counter() - t0, epochs * steps_per_epoch


def quality(args: argparse.Namespace) -> list[dict]:
    rows = []
    teachers = {}
    for role in ("teacher-tough", "teacher-tolerant"):
        weights, seconds, steps = train(role, args.teacher_model, 0, args)
        teachers[role] = weights
        rows.append({"kind": role, "seed": 0, "weights": weights, "train_s": seconds, "steps": steps})
        print(f"{role}: trained ({steps} steps)", flush=True)
    kd = [str(teachers["teacher-tough"]), str(teachers["teacher-tolerant"])]
    for seed in args.seeds:
        for kind, kd_from in (("student", None), ("student+KD", kd)):
            weights, seconds, steps = train("student", args.student_model, seed, args, kd_from,
                                            tag="_kd" if kd_from else "")
            rows.append({"kind": kind, "seed": seed, "weights": weights, "train_s": seconds, "steps": steps})
            print(f"{kind} seed {seed}: trained ({steps} steps)", flush=True)
    reports, _, _, _ = evaluate_landmarks([str(r["weights"]) for r in rows], out_dir=str(args.work / "eval"),
                                          overlays=6, device="cuda" if args.device.startswith("cuda") else "cpu")
    for row, report in zip(rows, reports):
        row.update(report.to_dict())
        row["weights"] = str(row["weights"])
        print(f"{row['kind']} seed {row['seed']}: NME {report.nme:.2f} % FR {report.failure_rate:.1f} % "
              f"AUC {report.auc:.4f}", flush=True)
    return rows


def latency(args: argparse.Namespace) -> list[dict]:
    rows = []
    for model in (args.student_model, args.teacher_model):
        exports = [r for r in export_all(model, ["onnx", "tflite", "openvino"], out_dir=args.work / "exports",
                                         imgsz=224) if hasattr(r, "path")]
        rows += [{"model": model, **vars(b)} for b in benchmark([r.path for r in exports], threads=args.threads,
                                                                  runs=args.runs)]
    return rows


def device_name(device: str) -> str:
    """What trained the networks: the GPU's name, or the CPU."""
    if device != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({torch.get_num_threads()} threads)"


def mean_std(values: list[float], digits: int = 2) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


KINDS = ("teacher-tough", "teacher-tolerant", "student", "student+KD")


def markdown(rows: list[dict], lat: list[dict], args: argparse.Namespace) -> str:
    lines = [f"# Facial landmarks: KD-Loss on the built-in faces ({platform.node()})", ""]
    if rows:
        test = rows[0]["images"]
        lines += [f"Built-in procedural faces (drawn, not 300W), {test} test faces, GT-extent crops; teachers "
                  f"{args.teacher_model}, student {args.student_model}; {args.imgsz} px input, "
                  f"{rows[0]['steps']} steps x batch {args.batch_size} for every network, from random init; "
                  f"students seeds {args.seeds}, teachers seed 0; trained on {device_name(args.device)}. "
                  f"Inter-ocular NME (%), FR@0.1 (%), AUC@0.1; train s/step over the whole run (data loading, "
                  f"per-epoch validation and checkpoints included; '-' when the run folder was reused).", "",
                  "| model | NME % | FR@0.1 % | AUC@0.1 | train s/step |", "|---|---|---|---|---|"]
        for kind in KINDS:
            rs = [r for r in rows if r["kind"] == kind]
            timed = [r["train_s"] / r["steps"] for r in rs if r.get("train_s")]
            if rs:
                lines.append(f"| {kind} | {mean_std([r['nme'] for r in rs])} | "
                             f"{mean_std([r['failure_rate'] for r in rs], 1)} | {mean_std([r['auc'] for r in rs], 4)} | "
                             f"{mean_std(timed, 3) if timed else '-'} |")
    if lat:
        lines += ["", f"Latency at 224x224, {args.threads} threads, {args.runs} interleaved runs (one run):", "",
                  "| model | artifact | backend | median ms | p90 ms |", "|---|---|---|---|---|"]
        lines += [f"| {b['model']} | {Path(b['artifact']).name} | {b['backend']} | {b['median_ms']:.2f} | "
                  f"{b['p90_ms']:.2f} |" for b in lat if not b["error"]]
    return "\n".join(lines) + "\n"


def chart(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.2), dpi=120)
    kinds = [k for k in KINDS if any(r["kind"] == k for r in rows)]
    values = [[r["nme"] for r in rows if r["kind"] == k] for k in kinds]
    ax.bar(kinds, [statistics.mean(v) for v in values],
           yerr=[statistics.stdev(v) if len(v) > 1 else 0.0 for v in values], capsize=4,
           color=["#a55", "#c85", "#47a", "#4a7"][:len(kinds)])
    ax.set_ylabel("NME % (inter-ocular, lower is better)")
    ax.set_xlabel("model (how it was trained)")
    ax.set_title(f"landmarks on the built-in faces ({platform.node()})", fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    atomic_save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--imgsz", type=int, default=128)
    ap.add_argument("--augmentation-factor", type=int, default=4)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--teacher-model", default="landmarks_effb3")
    ap.add_argument("--student-model", default="landmarks_mnv2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto", help="training device: auto, cpu, cuda")
    ap.add_argument("--workers", type=int, default=None, help="data-loading processes (default: the engine's)")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--work", type=Path, default=Path("runs") / "bench_landmarks")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / platform.node())
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    previous = args.out / "landmarks_kd.json"
    kept = json.loads(previous.read_text()) if previous.is_file() else {}
    same = all(kept.get(k) == v for k, v in (("steps", args.steps), ("batch_size", args.batch_size),
                                              ("imgsz", args.imgsz), ("seeds", args.seeds)))
    # a part that is skipped keeps what the last run with the same settings measured
    rows = (kept.get("runs", []) if same else []) if args.skip_training else quality(args)
    lat = (kept.get("latency", []) if same else []) if args.skip_latency else latency(args)
    md = markdown(rows, lat, args)
    atomic_write_text(args.out / "landmarks_kd.json", json.dumps(
        {"host": platform.node(), "torch": torch.__version__, "device": device_name(args.device),
         "steps": args.steps, "batch_size": args.batch_size,
         "imgsz": args.imgsz, "seeds": args.seeds, "teacher": args.teacher_model, "student": args.student_model,
         "runs": rows, "latency": lat}, indent=2, default=str) + "\n")
    atomic_write_text(args.out / "landmarks_kd.md", md)
    if rows:
        chart(rows, args.out / "landmarks_kd.png")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
