"""Export every zoo model to every target at fp32 and fp16 and record the parity reports.

Writes benchmarks/results/<host>/export_parity.{json,md}. Exits 1 if any export fails.
This is the exhaustive check behind "every EMO variant exports to all four targets at both
precisions"; the test suite runs EMO-1M only.

    python benchmarks/export_parity_matrix.py [--models emo_1m emo_2m] [--out /tmp/exports]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

from mobilevision import list_models
from mobilevision.atomic_io import atomic_write_text
from mobilevision.export.api import ExportFailure, export_all


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list_models("classify"))
    ap.add_argument("--precisions", nargs="+", default=["fp32", "fp16"])
    ap.add_argument("--out", type=Path, default=None, help="artifact folder (default: a temporary one)")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="mv_parity_"))
    rows = []
    for name in args.models:
        t0 = time.perf_counter()
        for r in export_all(name, "all", precisions=tuple(args.precisions), out_dir=out / name):
            if isinstance(r, ExportFailure):
                rows.append({"model": name, "target": r.target, "precision": r.precision, "ok": False,
                             "error": r.error})
            else:
                rep = r.parity
                worst = max(rep.outputs, key=lambda o: o.max_abs) if rep.outputs else None
                rows.append({"model": name, "target": r.target, "precision": r.precision, "ok": rep.passed,
                             "numeric": rep.numeric, "runtime": rep.runtime,
                             "max_abs": worst.max_abs if worst else None,
                             "mean_abs": worst.mean_abs if worst else None,
                             "cosine": worst.cosine if worst else None,
                             "reference_max_abs": worst.reference_max_abs if worst else None,
                             "top1_agreement": rep.top1_agreement, "note": rep.note,
                             "bytes": r.size_bytes,
                             "export_s": round(r.seconds, 2)})
            print(json.dumps(rows[-1]), flush=True)
        print(f"{name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    folder = Path(__file__).parent / "results" / platform.node()
    atomic_write_text(folder / "export_parity.json", json.dumps(rows, indent=2))
    lines = ["| model | target | precision | parity | runtime | max abs | cosine | top-1 agree | MB | export s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if not r["ok"]:
            lines.append(f"| {r['model']} | {r['target']} | {r['precision']} | FAILED: {r.get('error', '')} "
                         "| | | | | | |")
            continue
        verdict = "pass" if r["numeric"] else "structure only (needs macOS)"
        num = (lambda v, f: f.format(v) if v is not None else "-")
        lines.append(f"| {r['model']} | {r['target']} | {r['precision']} | {verdict} | {r['runtime']} | "
                     f"{num(r['max_abs'], '{:.2e}')} | {num(r['cosine'], '{:.6f}')} | "
                     f"{num(r['top1_agreement'], '{:.0%}')} | {r['bytes'] / 1e6:.2f} | {r['export_s']} |")
    atomic_write_text(folder / "export_parity.md",
                      f"# Export parity matrix ({platform.node()}, {platform.machine()})\n\n"
                      "Random-initialised weights (seed 0); 4 fixed inputs per artifact.\n\n" + "\n".join(lines) + "\n")
    print(f"wrote {folder}/export_parity.{{json,md}}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
