"""Accelerator backends against the CPU on one machine: the same artifacts benchmarked with ``--device gpu``
(or npu) and ``--device cpu``, with delegation truth (a graph that does not run whole on the accelerator
is an error row, not a number).

    python benchmarks/device_backends.py ARTIFACT... [--device gpu] [--threads 4] [--runs 100] [--out DIR]
    python benchmarks/device_backends.py --from-json ACCEL.json CPU.json --label H200 [--out DIR]

The first form runs both benchmarks here; the second renders the JSON rows that ``mobilevision bench
--json`` wrote on another machine (the lent GPU machine, a phone host). Writes
``<out>/device_backends.{json,md,png}``: per artifact and backend, the accelerator's median next to the
CPU's, the speed-up, and where the graph ran (or why it could not).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

from mobilevision.atomic_io import atomic_save_figure, atomic_write_text


def _rows(path: Path) -> list[dict]:
    data = json.loads(path.read_text())
    return data if isinstance(data, list) else data.get("rows", [])


def measure(artifacts: list[str], device: str, threads: int | None, runs: int) -> tuple[list[dict], list[dict], list]:
    from mobilevision.runtime.devices.accelerators import benchmark_accelerated
    from mobilevision.runtime.profile import benchmark

    accel = benchmark_accelerated(artifacts, device, runs=runs)
    cpu = benchmark(artifacts, threads=threads, runs=runs)
    return ([vars(r) for r in accel.rows], [vars(r) for r in cpu],
            [{"backend": a.backend, "device": a.device, "detail": a.detail} for a in accel.unavailable])


def pair(accel: list[dict], cpu: list[dict]) -> list[dict]:
    """One row per (artifact, backend) measured on the accelerator, with the CPU median of the same pair."""
    by_key = {(Path(r["artifact"]).name, r["backend"]): r for r in cpu}
    out = []
    for r in accel:
        name = Path(r["artifact"]).name
        c = by_key.get((name, r["backend"]), {})
        ok = not r.get("error") and r.get("median_ms")
        out.append({"artifact": name, "backend": r["backend"], "device": r.get("device"),
                    "accel_median_ms": r.get("median_ms") if ok else None,
                    "cpu_median_ms": c.get("median_ms"), "cpu_threads": c.get("threads"),
                    "speedup": (c["median_ms"] / r["median_ms"]) if ok and c.get("median_ms") else None,
                    "ran_on": r.get("executed_on"), "whole_graph": r.get("accelerated"),
                    "error": r.get("error")})
    return out


def markdown(rows: list[dict], unavailable: list[dict], label: str, device: str) -> str:
    lines = [f"# {device.upper()} backends vs CPU ({label})", "",
             "Same artifacts, same machine; medians of interleaved timed runs (one run each). A row with no "
             f"{device.upper()} number did not run whole on the accelerator: that is reported instead of a "
             "partial number.", "",
             f"| artifact | backend | {device.upper()} median ms | CPU median ms (threads) | speed-up | ran on |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        cpu = f"{r['cpu_median_ms']:.2f} ({r['cpu_threads']})" if r["cpu_median_ms"] else "-"
        if r["accel_median_ms"] is None:
            lines.append(f"| {r['artifact']} | {r['backend']} | - | {cpu} | - | not whole graph: "
                         f"{(r['error'] or '').split(' (')[0]} |")
        else:
            lines.append(f"| {r['artifact']} | {r['backend']} | {r['accel_median_ms']:.2f} | {cpu} | "
                         f"{r['speedup']:.1f}x | {', '.join(r['ran_on'] or [])} (whole graph) |"
                         if r["speedup"] else
                         f"| {r['artifact']} | {r['backend']} | {r['accel_median_ms']:.2f} | {cpu} | - | "
                         f"{', '.join(r['ran_on'] or [])} |")
    if unavailable:
        lines += ["", f"Backends with no {device.upper()} on that machine (one line each, as the CLI prints them):", ""]
        lines += [f"- {u['backend']}: {u['detail']}" for u in unavailable]
    return "\n".join(lines) + "\n"


def chart(rows: list[dict], path: Path, label: str, device: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["accel_median_ms"] is not None and r["cpu_median_ms"]]
    fig, ax = plt.subplots(figsize=(7, 0.6 * max(len(done), 1) + 1.5))
    names = [f"{r['artifact']} ({r['backend']})" for r in done]
    y = range(len(done))
    ax.barh([i + 0.2 for i in y], [r["cpu_median_ms"] for r in done], height=0.4, label="CPU")
    ax.barh([i - 0.2 for i in y], [r["accel_median_ms"] for r in done], height=0.4, label=device.upper())
    ax.set_yticks(list(y), names)
    ax.set_xscale("log")
    ax.set_xlabel("median latency, ms (log)")
    ax.set_ylabel("artifact")
    ax.set_title(f"{device.upper()} vs CPU, {label}")
    ax.legend()
    fig.tight_layout()
    atomic_save_figure(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifacts", nargs="*")
    ap.add_argument("--device", default="gpu", choices=["gpu", "npu"])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--from-json", nargs=2, type=Path, metavar=("ACCEL_JSON", "CPU_JSON"))
    ap.add_argument("--unavailable", nargs="*", default=[], help="with --from-json: 'backend: why' lines")
    ap.add_argument("--label", default=platform.node())
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / platform.node())
    args = ap.parse_args(argv)
    if args.from_json:
        accel, cpu = _rows(args.from_json[0]), _rows(args.from_json[1])
        unavailable = [{"backend": u.split(":", 1)[0].strip(), "device": args.device,
                        "detail": u.split(":", 1)[1].strip()} for u in args.unavailable]
    elif args.artifacts:
        accel, cpu, unavailable = measure(args.artifacts, args.device, args.threads, args.runs)
    else:
        ap.error("give artifacts to benchmark, or --from-json ACCEL_JSON CPU_JSON")
    rows = pair(accel, cpu)
    atomic_write_text(args.out / "device_backends.json", json.dumps(
        {"label": args.label, "device": args.device, "rows": rows, "unavailable": unavailable,
         "accelerator_runs": accel, "cpu_runs": cpu}, indent=2, default=str) + "\n")
    md = markdown(rows, unavailable, args.label, args.device)
    atomic_write_text(args.out / "device_backends.md", md)
    chart(rows, args.out / "device_backends.png", args.label, args.device)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
