"""Our exports against the hand path: what a user gets by pushing the reference model through the same converters
by hand, timed with our exports in one interleaved run of the benchmark runner.

Hand path, per model: the network in the official code's op order (EMO's NCHW window attention as in
zhangzjn/EMO; EfficientAD's fused detector as nelson1425/EfficientAD's ``predict``, layer for layer as our
port of each), converted the way a user does without this SDK: ``litert_torch.convert`` of the eager model,
``torch.onnx.export`` run in ONNX Runtime, and that ONNX file through ``openvino.convert_model`` run in OpenVINO
both at f32 and at the plugin's default precision (bf16 on CPUs with AVX-512 bf16). Ours: ``mobilevision export``
to the same three targets at each ``--precisions``. Both from the same weights (``--weights NAME=PATH``, else
random weights with a trained network's activation scale: latency does not depend on the values).

The official repositories themselves do not import here: zhangzjn/EMO needs timm, and timm needs torchvision,
which has no build for the CPU-only torch 2.13 this project pins; nelson1425/EfficientAD's common.py imports
torchvision too. Our ports load the official checkpoints and reproduce the official outputs (tests/models), so
the op order below is the official code's.

Per model the summary gives the best hand-path row and the best of ours at fp32 (the fp32 goal) and at any
precision the runtime computed (int8, or OpenVINO's default bf16), with their ratio. Writes
``benchmarks/results/<host>/hand_path.{json,md,png}``.

    python benchmarks/hand_path.py [--models emo_1m efficientad_s] [--precisions fp32 int8] [--runs 50]
        [--weights efficientad_s=runs/bench_efficientad/brick_s200_seed0/best.safetensors]
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

SIZES = {"emo_1m": 224, "emo_2m": 224, "emo_5m": 224, "emo_6m": 224, "efficientad_s": 256, "efficientad_m": 256}


def official_order(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` computing in the official code's op order (EMO: NCHW window attention)."""
    model = copy.deepcopy(model)
    for m in model.modules():
        if hasattr(m, "channels_last"):
            m.channels_last = False
    return model.eval()


def load(name: str, weights: str | None) -> torch.nn.Module:
    import mobilevision
    from mobilevision.testing import calibrate_random_weights, calibrated_efficientad

    if weights:
        return mobilevision.create_model(name, weights=weights).eval()
    if name.startswith("efficientad"):
        return calibrated_efficientad(name)
    return calibrate_random_weights(mobilevision.create_model(name))


def hand(name: str, model: torch.nn.Module, size: int, folder: Path) -> list[tuple[Path, str]]:
    """The three files a user converts by hand, with the runtime each runs in."""
    import litert_torch
    import openvino as ov

    x = (torch.randn(1, 3, size, size),)
    tflite, onnx, xml = (folder / f"hand_{name}{ext}" for ext in (".tflite", ".onnx", ".xml"))
    litert_torch.convert(model, x).export(str(tflite))
    torch.onnx.export(model, x, str(onnx), dynamo=False)
    ov.save_model(ov.convert_model(str(onnx)), str(xml))
    return [(tflite, "litert"), (onnx, "ort"), (xml, "openvino")]


def ours(name: str, model: torch.nn.Module, size: int, folder: Path, precisions: list[str],
         log: list[dict], calib_n: int, eval_n: int) -> list[tuple[Path, str]]:
    from mobilevision.errors import MobileVisionError
    from mobilevision.export.api import QuantizeOptions, export_prepared, prepare

    prep = prepare(model, imgsz=size)
    runtime = {"tflite": "litert", "onnx": "ort", "openvino": "openvino"}
    pairs = []
    for precision in precisions:
        for target in ("tflite", "onnx", "openvino"):
            t0 = time.perf_counter()
            try:
                r = export_prepared(prep, target, precision, folder, quantize=QuantizeOptions(calib_n=calib_n, eval_n=eval_n))
            except MobileVisionError as e:
                log.append({"model": name, "target": target, "precision": precision, "error": str(e)})
                continue
            q = r.metadata.quantization or {}
            log.append({"model": name, "target": target, "precision": precision, "path": r.path.name,
                        "export_s": round(time.perf_counter() - t0, 1), "accuracy": q.get("accuracy"),
                        "speed": q.get("speed")})
            pairs.append((r.path, runtime[target]))
    return pairs


def summarise(rows: list[dict], names: list[str]) -> list[dict]:
    out = []
    for name in names:
        mine = [r for r in rows if r["model"] == name and r["side"] == "ours" and r.get("median_ms")]
        hands = [r for r in rows if r["model"] == name and r["side"] == "hand" and r.get("median_ms")]
        if not mine or not hands:
            continue

        def best(rs, fp32_only):
            rs = [r for r in rs if not fp32_only or r["precision"] == "fp32"]
            return min(rs, key=lambda r: r["median_ms"]) if rs else None

        entry = {"model": name}
        for key, fp32_only in (("fp32", True), ("any", False)):
            m, h = best(mine, fp32_only), best(hands, fp32_only)
            if m and h:
                entry[key] = {"ours": m["label"], "ours_ms": m["median_ms"], "ours_precision": m["precision"],
                              "hand": h["label"], "hand_ms": h["median_ms"], "hand_precision": h["precision"],
                              "ratio": round(m["median_ms"] / h["median_ms"], 3)}
        out.append(entry)
    return out


def markdown(report: dict) -> str:
    lines = [f"# Our exports vs the hand path ({report['host']}, {report['threads']} threads)", "",
             f"CPU: {report['cpu']}. {report['runs']} timed runs per row, all rows of all models interleaved "
             "round-robin in one run (medians; ms). Hand path: the official op order converted by hand "
             "(litert_torch.convert, torch.onnx.export, openvino.convert_model); OpenVINO rows at f32 and at the "
             "plugin's default. 'precision' is what the runtime computed.", "",
             "| model | best of ours | ms | precision | best hand path | ms | precision | ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for s in report["summary"]:
        for key, what in (("fp32", "fp32 only"), ("any", "any precision")):
            e = s.get(key)
            if e:
                lines.append(f"| {s['model']} ({what}) | {e['ours']} | {e['ours_ms']:.2f} | {e['ours_precision']} | "
                             f"{e['hand']} | {e['hand_ms']:.2f} | {e['hand_precision']} | {e['ratio']:.2f} |")
    lines += ["", "## Every row", "", "| model | side | row | precision | median | p90 | min |", "|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        if r.get("median_ms"):
            lines.append(f"| {r['model']} | {r['side']} | {r['label']} | {r['precision']} | {r['median_ms']:.2f} | "
                         f"{r['p90_ms']:.2f} | {r['min_ms']:.2f} |")
        else:
            lines.append(f"| {r['model']} | {r['side']} | {r['label']} | - | error: {r.get('error')} | | |")
    errors = [e for e in report["exports"] if e.get("error")]
    acc = [e for e in report["exports"] if e.get("accuracy")]
    if acc:
        lines += ["", "## Quantised exports: accuracy and int8 speed as the export measured them", ""]
        for e in acc:
            a, sp = e["accuracy"], e.get("speed") or {}
            before, after = a.get("before"), a.get("after")
            metric = (f"{a['metric']} {before:.4g} -> {after:.4g}" if before is not None and after is not None
                      else "no labelled data for this model's metric")
            cos = (a.get("agreement") or {}).get("cosine")
            lines.append(f"- {e['model']} {e['target']} {e['precision']}: {metric}"
                         + (f", cosine vs fp32 {cos:.4f}" if cos is not None else "")
                         + (f"; int8/fp32 x{sp['ratio']:.2f} in {sp['runtime']}" if sp.get("ratio") else "")
                         + f" ({a.get('samples')} held-out inputs of {a.get('data')})")
    if errors:
        lines += ["", "## Exports that failed", ""] + [f"- {e['model']} {e['target']} {e['precision']}: {e['error']}"
                                                      for e in errors]
    return "\n".join(lines) + "\n"


def draw(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from mobilevision.atomic_io import atomic_save_figure

    models = [s["model"] for s in report["summary"]]
    fig = Figure(figsize=(10, 1.5 + 0.4 * len(report["rows"])), dpi=110)
    axes = fig.subplots(len(models), 1, squeeze=False)[:, 0]
    for ax, name in zip(axes, models):
        rows = [r for r in report["rows"] if r["model"] == name and r.get("median_ms")]
        y = list(range(len(rows)))[::-1]
        ax.barh(y, [r["median_ms"] for r in rows], color=["#1f77b4" if r["side"] == "ours" else "#aaaaaa" for r in rows])
        for yi, r in zip(y, rows):
            ax.text(r["median_ms"], yi, f"  {r['median_ms']:.1f} ms", va="center", fontsize=7)
        ax.set_yticks(y, [f"{r['side']}: {r['label']} ({r['precision']})" for r in rows], fontsize=7)
        ax.set_xlabel("median latency per inference (ms)")
        ax.set_ylabel("row (side: artifact · runtime)")
        ax.set_title(f"{name}: ours (blue) vs the hand path (grey), one interleaved run", fontsize=9)
        ax.set_xlim(0, max(r["median_ms"] for r in rows) * 1.25)
    fig.tight_layout()
    atomic_save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["emo_1m", "efficientad_s"], choices=sorted(SIZES))
    ap.add_argument("--precisions", nargs="+", default=["fp32", "int8"], choices=["fp32", "fp16", "int8"])
    ap.add_argument("--weights", nargs="*", default=[], help="NAME=PATH: trained weights of a model (default: random)")
    ap.add_argument("--calib-n", type=int, default=100, help="int8 calibration inputs (the task's training data)")
    ap.add_argument("--eval-n", type=int, default=60, help="held-out inputs of the int8 accuracy report")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / platform.node())
    args = ap.parse_args(argv)
    weights = dict(w.split("=", 1) for w in args.weights)

    from mobilevision.atomic_io import atomic_write_text
    from mobilevision.runtime.profile import benchmark

    exports: list[dict] = []
    side: dict[str, tuple[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="mv_hand_path_") as tmp:
        pairs = []
        for name in args.models:
            model = load(name, weights.get(name))
            folder = Path(tmp) / name
            folder.mkdir()
            for path, backend in hand(name, official_order(model), SIZES[name], folder):
                pairs.append((path, backend))
                side[str(path)] = (name, "hand")
            for path, backend in ours(name, model, SIZES[name], folder, args.precisions, exports,
                                      args.calib_n, args.eval_n):
                pairs.append((path, backend))
                side[str(path)] = (name, "ours")
        results = benchmark([], threads=args.threads, runs=args.runs, warmup=args.warmup, pairs=pairs,
                            ov_precisions=["f32", "default"], on_progress=lambda m: print(m, flush=True))
    from mobilevision.runtime.compare import row_label

    rows = []
    for r in results:
        name, who = side[str(r.artifact)]
        precision = r.precision
        if who == "hand" and precision in (None, "unknown"):
            # no metadata to read it from: an unquantised fp32 graph, which ONNX Runtime's CPU provider and
            # LiteRT's XNNPACK compute in fp32 (OpenVINO reports its own)
            precision = "fp32"
        rows.append({"model": name, "side": who, "label": row_label(r), "precision": precision,
                     "median_ms": r.median_ms, "p90_ms": r.p90_ms, "min_ms": r.min_ms, "mean_ms": r.mean_ms,
                     "ov_precision": r.ov_precision, "error": r.error})
    from mobilevision.runtime.profile import host_info

    machine = host_info()
    report = {"host": platform.node(), "cpu": f"{machine['cpu']} ({machine['logical_cores']} logical cores)",
              "threads": args.threads, "runs": args.runs, "mobilevision": machine["mobilevision"], "models": args.models, "precisions": args.precisions,
              "weights": weights or "random (a trained network's activation scale)", "exports": exports,
              "rows": rows, "summary": summarise(rows, args.models)}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "hand_path.json", json.dumps(report, indent=2, default=str))
    atomic_write_text(args.out / "hand_path.md", markdown(report))
    draw(report, args.out / "hand_path.png")
    print(markdown(report))
    print(f"wrote {args.out}/hand_path.{{json,md,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
