"""Export every zoo model to every target at fp32 and fp16 and record the parity reports.

Writes benchmarks/results/<host>/export_parity.{json,md} for the EMO models (the default), and
export_parity_<family>.{json,md} for other families (or --results-name). Exits 1 if any export
fails. This is the exhaustive check behind "every EMO (SkipNet) variant exports to all four
targets at both precisions"; the test suite runs EMO-1M and SkipNet-M only.

    python benchmarks/export_parity_matrix.py [--models emo_1m emo_2m] [--out /tmp/exports]
    python benchmarks/export_parity_matrix.py --models skipnet_m skipnet_050 skipnet_075 skipnet_125 --calibrate

--calibrate gives the random model realistic activations before export: BatchNorm affine
parameters random, BatchNorm statistics measured on random images, Linear weights
N(0, 1/fan_in) and biases N(0, 0.1). SkipNet needs it: its official init shrinks the signal
through ~60 layers to logits of ~4e-8, where every absolute tolerance passes whatever the
artifact computes.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import mobilevision
from mobilevision import get_model_card, list_models
from mobilevision.atomic_io import atomic_write_text
from mobilevision.export.api import ExportFailure, export_all
from mobilevision.testing import calibrate_random_weights

DEFAULT_FAMILY = "emo"


def calibrated(name: str, seed: int = 0) -> nn.Module:
    """``name`` with random weights whose activations and logits have a trained network's scale (O(1))."""
    torch.manual_seed(seed)
    return calibrate_random_weights(mobilevision.create_model(name), seed=seed)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=None,
                    help=f"zoo model names (default: every {DEFAULT_FAMILY!r} classifier)")
    ap.add_argument("--precisions", nargs="+", default=["fp32", "fp16"])
    ap.add_argument("--calibrate", action="store_true",
                    help="export random weights with O(1) activations and logits (see the module docstring)")
    ap.add_argument("--results-name", default=None,
                    help="results file stem (default: export_parity for EMO, else export_parity_<family>)")
    ap.add_argument("--out", type=Path, default=None, help="artifact folder (default: a temporary one)")
    args = ap.parse_args()
    models = args.models or [n for n in list_models("classify") if get_model_card(n).family == DEFAULT_FAMILY]
    families = sorted({get_model_card(n).family for n in models})
    stem = args.results_name or ("export_parity" if families == [DEFAULT_FAMILY]
                                 else "export_parity_" + "_".join(f or "other" for f in families))
    out = args.out or Path(tempfile.mkdtemp(prefix="mv_parity_"))
    rows = []
    for name in models:
        t0 = time.perf_counter()
        source = calibrated(name) if args.calibrate else name
        for r in export_all(source, "all", precisions=tuple(args.precisions), out_dir=out / name):
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
    atomic_write_text(folder / f"{stem}.json", json.dumps(rows, indent=2))
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
    weights = ("Random weights (seed 0), calibrated: random BN affine, BN statistics from random images, "
               "Linear N(0, 1/fan_in); logits O(1)" if args.calibrate else "Random-initialised weights (seed 0)")
    atomic_write_text(folder / f"{stem}.md",
                      f"# Export parity matrix ({platform.node()}, {platform.machine()})\n\n"
                      f"{weights}; 4 fixed inputs per artifact.\n\n" + "\n".join(lines) + "\n")
    print(f"wrote {folder}/{stem}.{{json,md}}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
