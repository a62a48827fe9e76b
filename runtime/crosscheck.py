"""Trust check for the benchmark runner: its medians against the runtimes' own tools.

Same artifact, same thread count, same machine, in rounds; within a round, for each artifact, our
runner (that artifact alone) and the tool run straight after each other, who goes first alternating:
- a ``.tflite`` with ``litert-benchmark`` (ai-edge-litert's CompiledModel API, CPU accelerator
  = XNNPACK, like the Interpreter default our ``litert`` backend uses);
- an OpenVINO IR ``.xml`` with ``benchmark_app`` (sync API, 1 infer request, loaded with the
  compile config of our ``openvino`` backend: LATENCY hint, INFERENCE_NUM_THREADS), twice: both at
  f32 (``-infer_precision f32`` / ``--ov-precision f32``, our runtime's own choice) and both at the
  plugin's default precision (no hint: bf16 on CPUs with AVX512-BF16 / AMX, what a plain OpenVINO user
  gets). Each side's computed precision is read back (ours: the compiled model's
  INFERENCE_PRECISION_HINT; benchmark_app: the same property in its step 8) and recorded; a pair whose
  sides computed differently is an error.
Both tools report a median, so medians are compared (means are recorded too): the ratio is the median of
the per-round ratios ours / tool, each from two adjacent measurements, so a slow spell on a shared machine
hits both sides of a ratio alike. With the runner's defaults (turns of ``block`` = 10 back-to-back timed
runs, ``rewarm=0``, as the tools loop) it must be within ±10 %.
``crosscheck`` writes ``OUT/crosscheck.{json,md}``; the CLI is ``mobilevision crosscheck ARTIFACTS``
(exit 1 when a pair is out of band, 2 when a measurement failed), and ``benchmarks/crosscheck_latency.py``
runs it on exported zoo models.
"""
from __future__ import annotations

import importlib.metadata
import json
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mobilevision.atomic_io import atomic_write_text
from mobilevision.errors import MobileVisionError

from .profile import DEFAULT_BLOCK, DEFAULT_REWARM, benchmark, host_info

BAND = 0.10
TOOLS = {".tflite": "litert-benchmark", ".xml": "benchmark_app"}
OV_PRECISIONS = ("f32", "default")   # asked of OpenVINO on both sides: ours, and the plugin's own choice
Case = tuple[Path, "str | None"]     # (artifact, OpenVINO precision asked; None for .tflite)


class CrosscheckError(MobileVisionError):
    """The cross-check cannot run as asked (a tool missing, an artifact it cannot measure)."""


@dataclass
class ToolLatency:
    """What an external tool reported for one invocation (ms)."""

    median_ms: float
    mean_ms: float | None = None
    precision: str | None = None     # what the tool's compiled model computed in (benchmark_app), as fp32 / bf16


# ---------------------------------------------------------------- litert-benchmark

def litert_benchmark_cmd(tflite: Path, threads: int, runs: int, warmup: int) -> list[str]:
    """CPU accelerator only (its default), ``threads`` XNNPACK threads, ``warmup`` untimed runs."""
    return [_tool("litert-benchmark"), "--model", str(tflite), "--num_threads", str(threads),
            "--num_runs", str(runs), "--warmup_runs", str(warmup)]


def parse_litert_benchmark(text: str) -> ToolLatency:
    """Median and avg (ms) from litert-benchmark's stdout block::

        Inference (avg):       22.53 ms (20 runs)
        Inference (median):    22.79 ms
    """
    median = re.search(r"^\s*Inference \(median\):\s*([0-9]+(?:\.[0-9]+)?)\s*ms", text, re.M)
    if not median:
        raise ValueError("no 'Inference (median): X ms' line in litert-benchmark output")
    mean = re.search(r"^\s*Inference \(avg\):\s*([0-9]+(?:\.[0-9]+)?)\s*ms", text, re.M)
    return ToolLatency(float(median.group(1)), float(mean.group(1)) if mean else None)


def parse_litert_accelerated(text: str) -> bool | None:
    """litert-benchmark's 'Fully accelerated: True' line (None when absent)."""
    m = re.search(r"^\s*Fully accelerated:\s*(True|False)", text, re.M)
    return None if m is None else m.group(1) == "True"


# ---------------------------------------------------------------- benchmark_app

def openvino_backend_config(threads: int) -> dict[str, dict[str, str]]:
    """The compile config of ``mobilevision.runtime.backends.openvino`` for benchmark_app -load_config.

    benchmark_app refuses ``-nthreads`` together with ``-hint latency`` (a UI rule of the tool),
    so the hint and the thread count travel in the config file, exactly as our backend sets them.
    The precision is asked on the command line (``benchmark_app_cmd``).
    """
    return {"CPU": {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(threads)}}


def benchmark_app_cmd(xml: Path, config_json: Path, runs: int, precision: str = "f32") -> list[str]:
    """``precision``: ``f32`` (``-infer_precision f32``, as our backend compiles) or ``default`` (no hint)."""
    return [_tool("benchmark_app"), "-m", str(xml), "-d", "CPU", "-load_config", str(config_json),
            "-api", "sync", "-nireq", "1", "-niter", str(runs),
            *(["-infer_precision", precision] if precision != "default" else [])]


def parse_benchmark_app(text: str) -> ToolLatency:
    """Median and Average (ms) from benchmark_app's final 'Latency:' block::

        [ INFO ] Latency:
        [ INFO ]    Median:        21.97 ms
        [ INFO ]    Average:       30.46 ms

    benchmark_app prints microseconds ('8.73 us') when the average is below 1 ms.
    """
    blocks = re.split(r"^.*\bLatency:\s*$", text, flags=re.M)
    if len(blocks) < 2:
        raise ValueError("no 'Latency:' block in benchmark_app output")
    block = blocks[-1]
    median = _value_ms(r"\bMedian:", block)
    if median is None:
        raise ValueError("no 'Median: X ms' line in benchmark_app's latency block")
    return ToolLatency(median, _value_ms(r"\bAverage:", block))


_UNIT_MS = {"s": 1e3, "ms": 1.0, "us": 1e-3, "\u00b5s": 1e-3}


def _value_ms(label: str, text: str) -> float | None:
    m = re.search(label + r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|us|\u00b5s|s)\b", text)
    return None if m is None else float(m.group(1)) * _UNIT_MS[m.group(2)]


def parse_benchmark_app_config(text: str) -> dict[str, str]:
    """The compiled model's properties that benchmark_app prints in step 8 ('[ INFO ]   KEY: value')."""
    step = re.search(r"Querying optimal runtime parameters(.*?)\[Step 9/", text, re.S)
    found = re.findall(r"^\[ INFO \]\s{3,}([A-Z_]+):\s*(.*?)\s*$", step.group(1) if step else "", re.M)
    return dict(found)


_OV_TYPES = {"float32": "fp32", "f32": "fp32", "bfloat16": "bf16", "bf16": "bf16", "float16": "fp16", "f16": "fp16"}


def benchmark_app_precision(props: dict[str, str]) -> str:
    """What benchmark_app's compiled model computes in, from its ``INFERENCE_PRECISION_HINT: <Type: 'bfloat16'>``
    line, named as our runner names it (fp32, bf16, fp16; 'unknown' when not printed)."""
    m = re.search(r"'([a-z0-9_]+)'|^([a-z0-9_]+)$", props.get("INFERENCE_PRECISION_HINT", "").strip())
    name = (m.group(1) or m.group(2)) if m else ""
    return _OV_TYPES.get(name, name or "unknown")


def check_benchmark_app_config(props: dict[str, str], threads: int) -> None:
    """Raise if benchmark_app did not compile the model the way our backend does."""
    want = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(threads), "NUM_STREAMS": "1"}
    wrong = {k: props.get(k) for k, v in want.items() if props.get(k) != v}
    if wrong:
        raise RuntimeError(f"benchmark_app compiled with {wrong}, expected {want}")


# ---------------------------------------------------------------- driver

def _tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).with_name(name))
    if not Path(found).exists():
        raise CrosscheckError(f"{name} not found: pip install 'mobilevision[runtime]'")
    return found


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-800:]
        raise RuntimeError(f"{Path(cmd[0]).name} failed (exit {proc.returncode}): {tail}")
    return proc.stdout + "\n" + proc.stderr


def measure_tool(artifact: Path, threads: int, runs: int, warmup: int, scratch: Path,
                 precision: str | None = "f32") -> ToolLatency:
    """One invocation of the artifact's own benchmark tool; ``precision``: the OpenVINO precision asked
    (f32 or default) for an ``.xml``."""
    if artifact.suffix == ".tflite":
        out = _run(litert_benchmark_cmd(artifact, threads, runs, warmup))
        if parse_litert_accelerated(out) is False:
            raise RuntimeError(f"litert-benchmark did not run {artifact.name} fully on XNNPACK")
        return parse_litert_benchmark(out)
    config = scratch / f"openvino_{threads}t.json"
    config.write_text(json.dumps(openvino_backend_config(threads)))
    out = _run(benchmark_app_cmd(artifact, config, runs, precision or "f32"))
    props = parse_benchmark_app_config(out)
    check_benchmark_app_config(props, threads)
    latency = parse_benchmark_app(out)
    latency.precision = benchmark_app_precision(props)
    return latency


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("ai-edge-litert", "openvino", "mobilevision"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "?"
    return out


def markdown(report: dict) -> str:
    lines = [f"# Benchmark runner cross-check ({report['host']}, {report['threads']} threads)", "",
             f"CPU: {report['cpu']} ({report['cpu_count']} logical cores). Tools: "
             + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + ".", "",
             f"Each round, for each artifact: our runner ({report['runs']} timed runs after {report['warmup']} "
             f"warm-up, in turns of {report.get('block', 1)} back-to-back timed runs, each turn after "
             f"{report['rewarm']} untimed run(s)) and the tool ({report['runs']} runs) straight after each other, "
             f"who goes first alternating between rounds; {report['rounds']} rounds. Medians below are the "
             f"median of the per-round medians; the ratio is the median of the per-round ratios (each from two "
             f"adjacent measurements, so the machine's drift hits both sides alike). Band: ours/tool within "
             f"±{BAND:.0%}. OpenVINO rows are measured twice on both sides: asked for "
             f"f32 (`--ov-precision f32` / `benchmark_app -infer_precision f32`) and for the plugin's default "
             f"(no hint); 'computed' is what each side's compiled model reports (ours / tool).", "",
             f"| artifact | tool | asked | computed | ours (ms) | tool (ms) | ratio | within ±{BAND:.0%} | ours mean "
             "| tool mean |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["pairs"]:
        asked = r.get("ov_precision") or "-"
        computed = f"{r.get('ours_precision') or '-'} / {r.get('tool_precision') or '-'}"
        if r.get("error"):
            lines.append(f"| {r['artifact']} | {r['tool']} | {asked} | {computed} | error: {r['error']} | | | NO "
                         f"| | |")
            continue
        lines.append(f"| {r['artifact']} | {r['tool']} | {asked} | {computed} | {r['ours_median_ms']:.2f} | "
                     f"{r['tool_median_ms']:.2f} | {r['ratio']:.2f} | {'yes' if r['within_band'] else 'NO'} | "
                     f"{r['ours_mean_ms']:.2f} | {_fmt(r['tool_mean_ms'])} |")
    lines += ["", "Per-round medians (ms), ours / tool (ratio):", ""]
    for r in report["pairs"]:
        rounds = ", ".join(f"{a:.2f} / {b:.2f} ({a / b:.2f})" for a, b in zip(r["ours_per_round"],
                                                                            r["tool_per_round"]) if b > 0)
        asked = f", {r['ov_precision']}" if r.get("ov_precision") else ""
        lines.append(f"- {r['artifact']} ({r['tool']}{asked}): {rounds or '-'}")
    return "\n".join(lines) + "\n"


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _cases(artifacts: list[Path]) -> list[Case]:
    """Each .xml once per OpenVINO precision asked (OV_PRECISIONS), each .tflite once."""
    return [(a, p) for a in artifacts for p in (OV_PRECISIONS if a.suffix == ".xml" else (None,))]


def _name(case: Case) -> str:
    return case[0].name + (f" ({case[1]})" if case[1] else "")


def check_artifacts(artifacts: list[Path]) -> list[Path]:
    """The artifacts as Paths; CrosscheckError for none, a missing file or one no tool measures."""
    paths = [Path(a) for a in artifacts]
    if not paths:
        raise CrosscheckError("give at least one .tflite or OpenVINO .xml to cross-check")
    for a in paths:
        if a.suffix not in TOOLS:
            raise CrosscheckError(f"{a.name}: only .tflite (litert-benchmark) and OpenVINO .xml (benchmark_app) "
                                  "files can be cross-checked")
        if not a.is_file():
            raise CrosscheckError(f"{a} not found")
    return paths


def crosscheck(artifacts: list[Path], out: Path, threads: int = 2, runs: int = 100, warmup: int = 10,
               rounds: int = 3, rewarm: int = DEFAULT_REWARM, block: int = DEFAULT_BLOCK,
               on_progress: Callable[[str], None] | None = None) -> tuple[dict, int]:
    """Interleaved rounds of our runner vs the tools; writes ``out/crosscheck.{json,md}``; returns the
    report and the exit code (0 all within band, 1 a pair out of band, 2 a measurement failed)."""
    artifacts = check_artifacts(artifacts)
    if threads < 1 or runs < 1 or warmup < 0 or rounds < 1 or rewarm < 0 or block < 1:
        raise CrosscheckError(f"threads, runs, rounds and block must be >= 1, warmup and rewarm >= 0 (got "
                              f"threads={threads}, runs={runs}, warmup={warmup}, rounds={rounds}, rewarm={rewarm}, "
                              f"block={block})")
    for suffix in dict.fromkeys(a.suffix for a in artifacts):
        _tool(TOOLS[suffix])   # a missing tool stops the run before anything is measured
    say = on_progress or (lambda msg: None)
    with tempfile.TemporaryDirectory(prefix="mv_crosscheck_") as tmp:   # the tools' config files
        return _crosscheck(artifacts, Path(out), threads, runs, warmup, rounds, rewarm, block, say, Path(tmp))


def _crosscheck(artifacts, out: Path, threads, runs, warmup, rounds, rewarm, block, say,
                scratch: Path) -> tuple[dict, int]:
    cases = _cases(artifacts)
    ours: dict[Case, list[tuple[float, float]]] = {c: [] for c in cases}
    ours_precision: dict[Case, str | None] = {}
    theirs: dict[Case, list[ToolLatency]] = {c: [] for c in cases}
    errors: dict[Case, str] = {}
    for r in range(rounds):
        for case in cases if r % 2 == 0 else cases[::-1]:
            # ours and the tool on the same case back to back (who goes first alternates between rounds), so
            # the machine's slow drift hits both sides of a round's ratio alike
            for step in ("ours", "tool") if r % 2 == 0 else ("tool", "ours"):
                if case in errors:
                    break
                if step == "ours":
                    say(f"round {r + 1}/{rounds}: our runner on {_name(case)}")
                    (row,) = benchmark([case[0]], threads=threads, runs=runs, warmup=warmup, rewarm=rewarm,
                                       ov_precisions=[case[1]] if case[1] else None, block=block)
                    ours_precision[case] = row.precision
                    if row.error:
                        errors[case] = f"our runner: {row.error}"
                    else:
                        ours[case].append((row.median_ms, row.mean_ms))
                else:
                    say(f"round {r + 1}/{rounds}: {TOOLS[case[0].suffix]} on {_name(case)}")
                    try:
                        theirs[case].append(measure_tool(case[0], threads, runs, warmup, scratch, case[1]))
                    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
                        errors[case] = f"{TOOLS[case[0].suffix]}: {e}"

    pairs = []
    for c in cases:
        a = c[0]
        tool_precisions = sorted({t.precision for t in theirs[c] if t.precision})
        row = {"artifact": a.name, "path": str(a), "tool": TOOLS[a.suffix], "statistic": "median",
               "ov_precision": c[1], "ours_precision": ours_precision.get(c),
               "tool_precision": ", ".join(tool_precisions) or None,
               "ours_per_round": [m for m, _ in ours[c]], "tool_per_round": [t.median_ms for t in theirs[c]],
               "tool_mean_per_round": [t.mean_ms for t in theirs[c]]}
        if c not in errors and theirs[c] and min(row["tool_per_round"]) <= 0:
            errors[c] = f"{TOOLS[a.suffix]} reported 0 ms: the model is below the tool's resolution"
        if c not in errors and row["tool_precision"] and row["tool_precision"] != row["ours_precision"]:
            errors[c] = (f"ours computed {row['ours_precision']}, {TOOLS[a.suffix]} {row['tool_precision']}: "
                         f"the latencies are not comparable")
        if c in errors or not ours[c] or not theirs[c]:
            row |= {"error": errors.get(c, "no measurement"), "within_band": False}
        else:
            mine, tool = statistics.median(row["ours_per_round"]), statistics.median(row["tool_per_round"])
            means = [t.mean_ms for t in theirs[c] if t.mean_ms is not None]
            ratios = [a / b for a, b in zip(row["ours_per_round"], row["tool_per_round"])]
            ratio = statistics.median(ratios)   # each round's ratio from adjacent measurements
            row |= {"ours_median_ms": mine, "tool_median_ms": tool, "ratio": ratio, "ratio_per_round": ratios,
                    "within_band": abs(ratio - 1) <= BAND,
                    "ours_mean_ms": statistics.median(m for _, m in ours[c]),
                    "tool_mean_ms": statistics.median(means) if means else None, "error": None}
        pairs.append(row)
    machine = host_info()
    report = {"host": platform.node(), "cpu": machine["cpu"], "cpu_count": machine["logical_cores"],
              "threads": threads, "runs": runs, "warmup": warmup, "rewarm": rewarm, "block": block, "rounds": rounds,
              "band": BAND,
              "versions": _versions(),
              "commands": {"litert-benchmark": "litert-benchmark --model M --num_threads T --num_runs R "
                                               "--warmup_runs W",
                           "benchmark_app": "benchmark_app -m M -d CPU -load_config C -api sync -nireq 1 -niter R "
                                            "[-infer_precision f32]",
                           "benchmark_app config": openvino_backend_config(threads),
                           "ours (openvino)": f"--ov-precision {' / '.join(OV_PRECISIONS)}"},
              "pairs": pairs}
    atomic_write_text(out / "crosscheck.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "crosscheck.md", markdown(report))
    if any(r["error"] for r in pairs):
        return report, 2
    return report, 0 if all(r["within_band"] for r in pairs) else 1
