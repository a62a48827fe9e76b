"""The zoo in headless Chromium (onnxruntime-web, WASM, 1 and 2 threads) next to native ONNX Runtime, in one
interleaved run: JSON + markdown + PNG under ``benchmarks/results/<host>/web/``.

Each model is exported once to fp32 ONNX at its real input size (or taken from ``--artifacts DIR``). The same
file is timed with ``model.predict`` in the web runtime (runtime/web, in Debian's Chromium driven by
playwright-core: ``runtime/web/tools/session.mjs``; one page per thread count, since onnxruntime-web reads
``numThreads`` once) and with the Python runtime's ONNX Runtime session at the same thread count. Rounds
interleave every (model, runtime, threads) cell, so all rows share the machine's drift; each cell's figures are
over the timed runs of all rounds, after a warm-up. Needs ``bash runtime/web/tools/setup.sh``.

    python benchmarks/web_latency.py [--models emo_1m skipnet_m] [--rounds 5] [--runs 10]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mobilevision.atomic_io import atomic_write_text
from mobilevision.runtime import load
from mobilevision.runtime.profile import latency_stats
from mobilevision.runtime.web_server import ORT_DIST, WEB, WebServer, package_mounts

DEFAULT_MODELS = ["emo_1m", "emo_2m", "skipnet_m", "landmarks_mnv2", "efficientisp", "efficientad_s"]
SLOW = {"efficientad_s": 0.2}   # fraction of --runs for models that take seconds per run in WASM


class Browser:
    """``session.mjs`` as a subprocess: open pages, call their functions, one JSON line each way."""

    def __init__(self):
        self.proc = subprocess.Popen(["node", str(WEB / "tools" / "session.mjs")], cwd=WEB, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, start_new_session=True)

    def ask(self, **msg) -> dict:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("the browser session ended: is Chromium installed (bash runtime/web/tools/setup.sh)?")
        reply = json.loads(line)
        if reply.get("error"):
            raise SystemExit(f"browser: {reply['error']}")
        return reply

    def close(self) -> None:
        """Ask the session to quit; kill it (and so its Chromium) when it has not within 30 s."""
        try:
            if self.proc.stdin:
                self.proc.stdin.write('{"quit": true}\n')
                self.proc.stdin.flush()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)   # node and the Chromium it started
            self.proc.wait(timeout=30)


def export_models(models: list[str], folder: Path) -> list[Path]:
    from mobilevision.export import export_all

    paths = []
    for name in models:
        print(f"exporting {name} to ONNX ...", flush=True)
        (r,) = export_all(name, "onnx", out_dir=folder)
        if not hasattr(r, "path"):
            raise SystemExit(f"export of {name} failed: {r.error}")
        paths.append(r.path)
    return paths


def _inputs(model) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [(rng.random([max(d, 1) for d in s.shape], dtype=np.float32) - 0.5) for s in model.inputs]


def _native(path: Path, threads: int):
    model = load(path, backend="ort", threads=threads)
    xs = _inputs(model)

    def timed(runs: int) -> list[float]:
        out = []
        for _ in range(runs):
            t = time.perf_counter()
            model.predict(xs)
            out.append((time.perf_counter() - t) * 1e3)
        return out
    return model, timed


def run(paths: list[Path], folder: Path, threads: list[int], rounds: int, runs: int, warmup: int) -> list[dict]:
    cells: dict[tuple[str, str, int], dict] = {}
    natives = {}
    with WebServer(package_mounts(models=folder)) as server:
        browser = Browser()
        try:
            for t in threads:
                ready = browser.ask(open=f"t{t}", url=f"{server.url}/test/bench.html?threads={t}")["ready"]
                if not ready.get("crossOriginIsolated"):
                    raise SystemExit("the bench page is not cross-origin isolated: WASM threads would be off")
            for path in paths:
                n = max(2, round(runs * SLOW.get(path.stem.split("_fp32")[0], 1.0)))
                for t in threads:   # warm-up (the first browser call also loads the model)
                    url = f"/models/{path.relative_to(folder).as_posix()}"
                    first = browser.ask(call=f"t{t}", fn="mvBench", args={"model": url, "runs": 0, "warmup": warmup})
                    model, timed = _native(path, t)
                    timed(warmup)
                    natives[(path, t)] = (model, timed, n, url)
                    cells[(path.name, "web", t)] = {"samples": [], "load_ms": first["value"]["loadMs"],
                                                    "info": {k: v for k, v in first["value"].items()
                                                             if k not in ("samples", "loadMs")}}
                    cells[(path.name, "native", t)] = {"samples": [], "info": {}}
            for r in range(rounds):
                for path in paths:
                    for t in threads:
                        model, timed, n, url = natives[(path, t)]
                        print(f"round {r + 1}/{rounds}: {path.name}, {t} thread(s){' ' * 20}", end="\r", flush=True)
                        cells[(path.name, "native", t)]["samples"] += timed(n)
                        got = browser.ask(call=f"t{t}", fn="mvBench", args={"model": url, "runs": n, "warmup": 0})
                        cells[(path.name, "web", t)]["samples"] += got["value"]["samples"]
            print()
        finally:
            browser.close()
            for model, *_ in natives.values():
                model.close()
    rows = []
    for (name, where, t), c in cells.items():
        rows.append({"artifact": name, "runtime": "onnxruntime-web (WASM, Chromium)" if where == "web"
                     else "ONNX Runtime (native)", "where": where, "threads": t, **latency_stats(c["samples"]),
                     **({"load_ms": c["load_ms"]} if "load_ms" in c else {}), **c["info"]})
    return rows


def markdown(rows: list[dict], args, versions: dict) -> str:
    lines = [f"# The zoo in the browser vs native ONNX Runtime ({platform.node()})", "",
             f"fp32 ONNX, {args.rounds} interleaved rounds of {args.runs} timed runs (efficientad_s: fewer), "
             f"after {args.warmup} warm-up runs. Browser: Chromium {versions.get('chromium', '?')} headless, "
             f"onnxruntime-web {versions.get('ort_web', '?')} WASM (SIMD, cross-origin isolated for threads); "
             f"native: onnxruntime {versions.get('ort', '?')}, CPU execution provider. CPU: {versions.get('cpu')}.",
             "", "| model | threads | native median (ms) | web median (ms) | web p90 (ms) | web / native |",
             "|---|---:|---:|---:|---:|---:|"]
    by = {(r["artifact"], r["where"], r["threads"]): r for r in rows}
    for (name, where, t), r in by.items():
        if where != "web":
            continue
        n = by[(name, "native", t)]
        lines.append(f"| {name} | {t} | {n['median_ms']:.2f} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | "
                     f"{r['median_ms'] / n['median_ms']:.2f} |")
    return "\n".join(lines) + "\n"


def chart(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["artifact"] for r in rows))
    series = list(dict.fromkeys((r["where"], r["threads"]) for r in rows))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(8.0, 1.9 * len(names)), 4.8), dpi=120)
    for k, (where, t) in enumerate(series):
        med = [next(r["median_ms"] for r in rows if r["artifact"] == n and r["where"] == where
                    and r["threads"] == t) for n in names]
        x = np.arange(len(names)) + (k - (len(series) - 1) / 2) * width
        bars = ax.bar(x, med, width, label=f"{'browser WASM' if where == 'web' else 'native ORT'}, {t} thread(s)")
        ax.bar_label(bars, labels=[f"{v:.0f}" if v >= 10 else f"{v:.1f}" for v in med], fontsize=6, padding=1)
    ax.set_xticks(np.arange(len(names)), [n.replace("_fp32.onnx", "").replace(".onnx", "") for n in names],
                  fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("median latency per image (ms, log scale)")
    ax.set_xlabel("model")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3, which="both")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def _versions() -> dict:
    import onnxruntime

    out = {"ort": onnxruntime.__version__, "python": platform.python_version()}
    try:
        out["ort_web"] = json.loads((ORT_DIST.parent / "package.json").read_text())["version"]
        out["chromium"] = subprocess.run(["chromium", "--version"], capture_output=True, text=True,
                                         timeout=30).stdout.split()[1]
    except (OSError, IndexError, ValueError, subprocess.SubprocessError):
        pass
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            out["cpu"] = line.split(":", 1)[1].strip()
            break
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    ap.add_argument("--artifacts", type=Path, help="a folder of exported .onnx files instead of exporting")
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10, help="timed runs per cell and round")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / platform.node() / "web")
    args = ap.parse_args(argv)
    if args.artifacts:
        folder = args.artifacts
        paths = sorted(folder.glob("*.onnx"))
        if not paths:
            raise SystemExit(f"no .onnx files in {folder}")
    else:
        folder = Path(tempfile.mkdtemp(prefix="mv_web_"))
        paths = export_models(args.models, folder)
        print(f"artifacts in {folder} (reuse them with --artifacts {folder})")
    rows = run(paths, folder, args.threads, args.rounds, args.runs, args.warmup)
    versions = _versions()
    atomic_write_text(args.out / "latency.json", json.dumps({"host": versions, "rows": rows}, indent=2) + "\n")
    md = markdown(rows, args, versions)
    atomic_write_text(args.out / "latency.md", md)
    chart(rows, args.out / "latency.png", f"zoo in headless Chromium (onnxruntime-web WASM) vs native ONNX Runtime, "
                                          f"{platform.node()}, fp32")
    print(md)
    print(f"wrote {args.out}/latency.{{json,md,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
