"""Zoo x backends latency on this CPU: one interleaved run, JSON + markdown + PNG chart.

Exports each model to every registered target this machine can run (``--targets``; default: those of
``--target all`` whose parity runs here: ONNX, TFLite, OpenVINO IR, ExecuTorch) or takes ``--artifacts DIR``
of exported files, and measures, in one ``benchmark()`` call so all rows share the machine's drift:
every artifact with every runtime that opens it (ONNX with ONNX Runtime and OpenVINO, TFLite
with LiteRT, IR with OpenVINO, .pte with ExecuTorch), and each model once in eager PyTorch. (The torch backend
rebuilds the model from the artifact's metadata whatever the format, so one torch row per
model is the whole information.) Writes ``benchmarks/results/<host>/latency.{json,md,png}``.

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
from mobilevision.runtime.backends import BACKENDS as REGISTERED
from mobilevision.runtime.backends import SUFFIX_BACKENDS
from mobilevision.runtime.profile import BenchResult, benchmark

FORMATS = {".onnx": "ONNX", ".tflite": "TFLite", ".xml": "OpenVINO IR", ".pte": "ExecuTorch"}
BACKENDS = tuple(b for b in ("ort", "litert", "openvino", "executorch", "coreml", "torch") if b in REGISTERED)


def runnable_targets() -> list[str]:
    """The targets of ``--target all`` that export here and whose artifacts run here (Core ML needs macOS)."""
    from mobilevision.export.api import resolve_targets
    from mobilevision.export.targets import get_target

    return [t for t in resolve_targets("all") if get_target(t).unavailable() is None
            and get_target(t).numeric_parity_unavailable() is None]


def export_zoo(models: list[str], folder: Path, targets: list[str]) -> list[Path]:
    """fp32 artifacts of each model for each target (parity-checked by the exporter)."""
    from mobilevision.export import export_all

    paths = []
    for name in models:
        print(f"exporting {name} to {', '.join(targets)} ...", flush=True)
        for r in export_all(name, targets, out_dir=folder):
            if not hasattr(r, "path"):
                raise SystemExit(f"export of {name} to {r.target} failed: {r.error}")
            paths.append(r.path)
    return paths


def pairs_to_measure(paths: list[Path], backends: list[str]) -> list[tuple[Path, str]]:
    """Every artifact x every listed backend that opens it; torch once per model (its ONNX file)."""
    pairs = [(p, b) for p in paths for b in SUFFIX_BACKENDS[p.suffix] if b in backends and b != "torch"]
    if "torch" in backends:
        seen: set[str] = set()
        for p in sorted(paths, key=lambda p: list(FORMATS).index(p.suffix) if p.suffix in FORMATS else len(FORMATS)):
            if p.stem not in seen:
                seen.add(p.stem)
                pairs.append((p, "torch"))
    return pairs


def _label(r: BenchResult) -> str:
    return r.model or Path(r.artifact).stem


def _series(r: BenchResult) -> str:
    return "torch (eager)" if r.backend == "torch" else \
        f"{r.backend} ({FORMATS.get(Path(r.artifact).suffix, Path(r.artifact).suffix)})"


def markdown(rows: list[BenchResult], args: argparse.Namespace) -> str:
    cpu = _cpu_name()
    lines = [f"# Zoo latency on {platform.node()} ({cpu}, {os.cpu_count()} logical cores)", "",
             f"Random-init weights, batch 1, fp32, {args.threads} threads. Per row: {args.warmup} warm-up runs, "
             f"then {args.runs} timed runs, each right after {args.rewarm} untimed re-warm run(s); all rows interleaved "
             "round-robin in one run, each in its own process. Medians and ratios compare within this table "
             "only: the machine is shared and absolute numbers move between runs.", "",
             "| model | backend | format | threads | median ms | p90 ms | GMAC/s | peak RSS MB | load ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fmt = "eager" if r.backend == "torch" else FORMATS.get(Path(r.artifact).suffix, Path(r.artifact).suffix)
        head = f"| {_label(r)} | {r.backend} | {fmt} | {r.threads or 'default'} |"
        if r.error:
            lines.append(f"{head} error: {r.error} | | | | |")
            continue
        gmacs = f"{r.gmacs_per_s:.1f}" if r.gmacs_per_s is not None else "-"
        lines.append(f"{head} {r.median_ms:.2f} | {r.p90_ms:.2f} | {gmacs} | {r.peak_rss_mb:.0f} | {r.load_ms:.0f} |")
    return "\n".join(lines) + "\n"


def chart(rows: list[BenchResult], path: Path, title: str) -> None:
    """Grouped bars: median ms per model (groups) per backend/format (bars); whiskers min..p90."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ok = [r for r in rows if not r.error]
    models = list(dict.fromkeys(_label(r) for r in ok))
    series = list(dict.fromkeys(_series(r) for r in ok))
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(8.0, 2.6 * len(models)), 4.8), dpi=120)
    for k, s in enumerate(series):
        med, lo, hi = [], [], []
        for m in models:
            row = next((r for r in ok if _label(r) == m and _series(r) == s), None)
            med.append(row.median_ms if row else np.nan)
            lo.append(row.median_ms - row.min_ms if row else 0.0)
            hi.append(row.p90_ms - row.median_ms if row else 0.0)
        x = np.arange(len(models)) + (k - (len(series) - 1) / 2) * width
        bars = ax.bar(x, med, width, yerr=[lo, hi], capsize=2, label=s)
        ax.bar_label(bars, labels=[f"{v:.1f}" if v == v else "" for v in med], fontsize=7, padding=2)
    ax.set_xticks(np.arange(len(models)), models)
    ax.set_ylabel("latency per image (ms)\nbar = median, whisker = min..p90")
    ax.set_xlabel("model")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["emo_1m", "emo_2m", "emo_5m", "emo_6m"])
    ap.add_argument("--artifacts", type=Path, help="folder of exported artifacts instead of exporting")
    ap.add_argument("--targets", nargs="+", default=None, help="targets to export (default: all that run here)")
    ap.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rewarm", type=int, default=1, help="untimed runs before each timed run")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / platform.node())
    args = ap.parse_args(argv)
    if args.artifacts:
        paths = sorted(p for p in args.artifacts.iterdir() if p.suffix in FORMATS)
        if not paths:
            raise SystemExit(f"no {'/'.join(FORMATS)} files in {args.artifacts}")
    else:
        folder = Path(tempfile.mkdtemp(prefix="mv_zoo_"))
        paths = export_zoo(args.models, folder, args.targets or runnable_targets())
        print(f"artifacts in {folder} (reuse them with --artifacts {folder})")
    pairs = pairs_to_measure(paths, args.backends)
    rows = benchmark([], threads=args.threads, runs=args.runs, warmup=args.warmup, rewarm=args.rewarm, pairs=pairs,
                     on_progress=lambda m: print(f"{m:<60}", end="\r", flush=True))
    print()
    rows.sort(key=lambda r: (_label(r), list(BACKENDS).index(r.backend), Path(r.artifact).suffix))
    atomic_write_text(args.out / "latency.json", json.dumps([dataclasses.asdict(r) for r in rows], indent=2) + "\n")
    md = markdown(rows, args)
    atomic_write_text(args.out / "latency.md", md)
    chart(rows, args.out / "latency.png", f"mobilevision zoo on {platform.node()}, {args.threads} threads, "
                                          f"median of {args.runs} interleaved runs")
    print(md)
    print(f"wrote {args.out}/latency.{{json,md,png}}")
    return 0 if not any(r.error for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
