"""Trust check for the benchmark runner: compare its medians with the runtimes' own tools.

Same model, same thread count, same machine, interleaved in rounds:
- a ``.tflite`` with ``litert-benchmark`` (ai-edge-litert; CPU accelerator = XNNPACK), and
- an OpenVINO IR with ``benchmark_app`` (openvino; sync API, 1 stream, 1 request, f32).
Our median must agree with theirs within 25 %. Writes
``benchmarks/results/<host>/crosscheck.{json,md}`` and exits 1 when a pair is out of band.

    python benchmarks/crosscheck_latency.py [--tflite X.tflite] [--xml X.xml] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from mobilevision.atomic_io import atomic_write_text
from mobilevision.runtime.profile import benchmark

BAND = 0.25


def parse_litert_benchmark(text: str) -> float:
    """Median ms from litert-benchmark's report ('Inference (median):    22.79 ms')."""
    m = re.search(r"Inference \(median\):\s*([0-9.]+)\s*ms", text)
    if not m:
        raise ValueError("no 'Inference (median)' line in litert-benchmark output")
    return float(m.group(1))


def parse_benchmark_app(text: str) -> float:
    """Median ms from benchmark_app's latency block ('[ INFO ]    Median:        21.97 ms')."""
    m = re.search(r"Latency:\s*\n(?:.*\n)*?.*Median:\s*([0-9.]+)\s*ms", text)
    if not m:
        raise ValueError("no 'Latency: ... Median:' lines in benchmark_app output")
    return float(m.group(1))


def litert_benchmark_cmd(tflite: Path, threads: int, runs: int, warmup: int) -> list[str]:
    return [_tool("litert-benchmark"), "--model", str(tflite), "--num_threads", str(threads),
            "--num_runs", str(runs), "--warmup_runs", str(warmup)]


def benchmark_app_cmd(xml: Path, threads: int, runs: int) -> list[str]:
    # benchmark_app only takes -nthreads with -hint none; 1 stream + 1 sync request = latency mode
    return [_tool("benchmark_app"), "-m", str(xml), "-d", "CPU", "-hint", "none", "-nstreams", "1",
            "-api", "sync", "-nireq", "1", "-nthreads", str(threads), "-niter", str(runs),
            "-infer_precision", "f32"]


def _tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).with_name(name))
    if not Path(found).exists():
        raise SystemExit(f"{name} not found: pip install 'mobilevision[runtime]'")
    return found


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"{Path(cmd[0]).name} failed ({proc.returncode}): {proc.stderr[-500:]}")
    return proc.stdout + proc.stderr


def _default_artifacts(folder: Path) -> tuple[Path, Path]:
    from mobilevision.export import export_all

    results = export_all("emo_1m", ["tflite", "openvino"], out_dir=folder)
    return results[0].path, results[1].path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tflite", type=Path)
    ap.add_argument("--xml", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tflite, xml = args.tflite, args.xml
    if tflite is None or xml is None:
        tflite, xml = _default_artifacts(Path(tempfile.mkdtemp(prefix="mv_crosscheck_")))
    ours = {"tflite": [], "xml": []}
    theirs = {"tflite": [], "xml": []}
    for r in range(args.rounds):
        rows = benchmark([tflite, xml], threads=args.threads, runs=args.runs, warmup=args.warmup)
        for row in rows:
            if row.error:
                raise SystemExit(f"our runner failed on {row.artifact}: {row.error}")
        ours["tflite"].append(rows[0].median_ms)
        ours["xml"].append(rows[1].median_ms)
        theirs["tflite"].append(parse_litert_benchmark(_run(litert_benchmark_cmd(tflite, args.threads, args.runs,
                                                                                 args.warmup))))
        theirs["xml"].append(parse_benchmark_app(_run(benchmark_app_cmd(xml, args.threads, args.runs))))
        print(f"round {r + 1}: ours tflite {ours['tflite'][-1]:.2f} / litert-benchmark {theirs['tflite'][-1]:.2f} ms; "
              f"ours xml {ours['xml'][-1]:.2f} / benchmark_app {theirs['xml'][-1]:.2f} ms", flush=True)
    report = []
    for key, tool, path in (("tflite", "litert-benchmark", tflite), ("xml", "benchmark_app", xml)):
        a, b = statistics.median(ours[key]), statistics.median(theirs[key])
        ratio = a / b
        report.append({"artifact": path.name, "tool": tool, "threads": args.threads, "runs": args.runs,
                       "rounds": args.rounds, "ours_median_ms": a, "tool_median_ms": b, "ratio": ratio,
                       "within_band": abs(ratio - 1) <= BAND, "ours_per_round": ours[key],
                       "tool_per_round": theirs[key]})
    folder = Path(__file__).parent / "results" / platform.node()
    atomic_write_text(folder / "crosscheck.json", json.dumps(report, indent=2))
    lines = [f"# Benchmark runner cross-check ({platform.node()}, {args.threads} threads)", "",
             f"Median of per-round medians over {args.rounds} interleaved rounds of {args.runs} runs; "
             f"band ±{BAND:.0%}.", "",
             "| artifact | tool | ours (ms) | tool (ms) | ratio | within ±25 % |", "|---|---|---|---|---|---|"]
    for r in report:
        lines.append(f"| {r['artifact']} | {r['tool']} | {r['ours_median_ms']:.2f} | {r['tool_median_ms']:.2f} | "
                     f"{r['ratio']:.2f} | {'yes' if r['within_band'] else 'NO'} |")
    atomic_write_text(folder / "crosscheck.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["within_band"] for r in report) else 1


if __name__ == "__main__":
    sys.exit(main())
