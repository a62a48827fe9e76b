"""One loaded model shared by several caller threads: per-thread runtime objects (what the runtime does:
an OpenVINO infer request / LiteRT interpreter per thread; ONNX Runtime's session is thread-safe as is)
against one lock around every call (the other way to be safe), and one caller alone.

    python benchmarks/threaded_runtime.py [--model emo_1m] [--callers 4] [--calls 40] [--rounds 5]
                                          [--out benchmarks/results/vm]

Writes ``<out>/threaded_runtime.{json,md,png}``: throughput (calls/s, all callers together) and the
median latency of one call, per backend x runtime threads x mode, rounds interleaved so the machine's
noise falls on every row alike. Every backend computes in fp32 (OpenVINO's precision hint is f32).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from mobilevision.atomic_io import atomic_save_figure, atomic_write_text

BACKENDS = {"ort": "onnx", "openvino": "openvino", "litert": "tflite"}
MODES = ("alone", "lock", "per-thread")


def export_artifacts(model: str, folder: Path) -> dict[str, Path]:
    from mobilevision.export import export_all

    results = export_all(model, sorted(set(BACKENDS.values())), out_dir=folder)
    failed = [r for r in results if not hasattr(r, "path")]
    if failed:
        raise SystemExit(f"export failed: {failed}")
    return {r.target: r.path for r in results}


def run_mode(model, mode: str, callers: int, calls: int, x: np.ndarray) -> tuple[float, list[float]]:
    """(calls per second over all callers, per-call latencies in ms)."""
    lock = threading.Lock()
    latencies: list[float] = []
    n_threads = 1 if mode == "alone" else callers
    per = calls * callers // n_threads
    start = threading.Barrier(n_threads + 1)

    def worker() -> None:
        mine = []
        start.wait()
        for _ in range(per):
            t0 = time.perf_counter()
            if mode == "lock":
                with lock:
                    model.predict(x)
            else:
                model.predict(x)
            mine.append((time.perf_counter() - t0) * 1e3)
        latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(n_threads)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return per * n_threads / (time.perf_counter() - t0), latencies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="emo_1m")
    ap.add_argument("--callers", type=int, default=4)
    ap.add_argument("--calls", type=int, default=40, help="calls per caller per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="runtime threads per instance")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/vm"))
    args = ap.parse_args()

    from mobilevision.runtime import load

    with tempfile.TemporaryDirectory() as tmp:
        paths = export_artifacts(args.model, Path(tmp))
        models = {(b, th): load(paths[t], backend=b, threads=th) for b, t in BACKENDS.items() for th in args.threads}
        x = np.random.default_rng(0).standard_normal(models[("ort", args.threads[0])].inputs[0].shape) \
            .astype(np.float32)
        for m in models.values():            # warm every per-thread object and cache
            run_mode(m, "per-thread", args.callers, 3, x)
        samples: dict[tuple, dict] = {}
        for _ in range(args.rounds):
            for key, m in models.items():
                for mode in MODES:
                    rate, lat = run_mode(m, mode, args.callers, args.calls, x)
                    s = samples.setdefault((*key, mode), {"rates": [], "lat": []})
                    s["rates"].append(rate)
                    s["lat"].extend(lat)
        for m in models.values():
            m.close()
    rows = [{"backend": b, "threads": th, "mode": mode, "callers": 1 if mode == "alone" else args.callers,
             "calls_per_s": float(np.median(s["rates"])), "latency_median_ms": float(np.median(s["lat"])),
             "latency_p90_ms": float(np.percentile(s["lat"], 90))} for (b, th, mode), s in samples.items()]
    for r in rows:
        lock = next(o for o in rows if (o["backend"], o["threads"], o["mode"]) == (r["backend"], r["threads"], "lock"))
        r["vs_lock"] = r["calls_per_s"] / lock["calls_per_s"]
    meta = {"model": args.model, "callers": args.callers, "calls_per_caller": args.calls, "rounds": args.rounds,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "precision": "fp32 in every runtime"}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "threaded_runtime.json", json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [f"# One {args.model} model shared by {args.callers} threads", "",
             f"{meta['machine']}; {args.rounds} interleaved rounds of {args.calls} calls per caller; "
             f"medians over rounds; fp32 everywhere.", "",
             "| backend | runtime threads | mode | calls/s | x lock | median ms/call | p90 ms |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['backend']} | {r['threads']} | {r['mode']} | {r['calls_per_s']:.1f} | {r['vs_lock']:.2f} | "
              f"{r['latency_median_ms']:.2f} | {r['latency_p90_ms']:.2f} |" for r in rows]
    atomic_write_text(args.out / "threaded_runtime.md", "\n".join(lines) + "\n")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    labels = [f"{b}\nt={th}" for b in BACKENDS for th in args.threads]
    for i, mode in enumerate(MODES):
        vals = [next(r["calls_per_s"] for r in rows if (r["backend"], r["threads"], r["mode"]) == (b, th, mode))
                for b in BACKENDS for th in args.threads]
        ax.bar(np.arange(len(labels)) + (i - 1) * 0.27, vals, 0.27, label=mode)
    ax.set_xticks(np.arange(len(labels)), labels)
    ax.set_ylabel("calls / s (all callers)")
    ax.set_xlabel("runtime, threads per call")
    ax.set_title(f"{args.model}: {args.callers} threads sharing one model")
    ax.legend()
    atomic_save_figure(fig, args.out / "threaded_runtime.png", dpi=120, bbox_inches="tight")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
