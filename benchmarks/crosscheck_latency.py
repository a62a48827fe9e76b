"""Cross-check the benchmark runner against litert-benchmark and benchmark_app on zoo and foreign models:
``mobilevision.runtime.crosscheck`` (the CLI's ``mobilevision crosscheck``) on artifacts made here, results
under ``benchmarks/results/<host>/crosscheck.{json,md}``.

Zoo: each model of ``--models`` exported by ``mobilevision export`` to TFLite and OpenVINO IR (fp32).
Foreign: the same architecture converted by hand, without our exporter and without our metadata
(``litert_torch.convert`` of the eager model; ``torch.onnx.export`` then ``openvino.convert_model``), as a user's
own file would be; ``--foreign`` adds them. Exit codes as the CLI: 1 a pair out of band, 2 a measurement failed.

    python benchmarks/crosscheck_latency.py [--models emo_1m skipnet_m] [--foreign] [--threads 2] [--rounds 7]
    python benchmarks/crosscheck_latency.py --artifacts a.tflite b.xml
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

from mobilevision.runtime.crosscheck import crosscheck, markdown
from mobilevision.runtime.profile import DEFAULT_BLOCK


def zoo(models: list[str], folder: Path) -> list[Path]:
    from mobilevision.export import export

    return [export(name, target, out_dir=folder).path for name in models for target in ("tflite", "openvino")]


def foreign(models: list[str], folder: Path) -> list[Path]:
    """The models converted the way a user does by hand: no mobilevision exporter, no metadata."""
    import litert_torch
    import openvino as ov
    import torch

    from mobilevision import create_model, get_model_card

    paths = []
    for name in models:
        model = create_model(name)
        h, w = get_model_card(name).input_size[-2:]
        x = (torch.randn(1, 3, h, w),)
        tflite = folder / f"foreign_{name}.tflite"
        litert_torch.convert(model, x).export(str(tflite))
        onnx = folder / f"foreign_{name}.onnx"
        torch.onnx.export(model, x, str(onnx), dynamo=False)
        xml = folder / f"foreign_{name}.xml"
        ov.save_model(ov.convert_model(str(onnx)), str(xml))
        paths += [tflite, xml]
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["emo_1m"])
    ap.add_argument("--foreign", action="store_true", help="also the hand-converted models, without metadata")
    ap.add_argument("--artifacts", nargs="+", type=Path, help="existing .tflite / .xml files instead")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--rewarm", type=int, default=0)
    ap.add_argument("--block", type=int, default=DEFAULT_BLOCK, help="our runner's timed runs per turn")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / platform.node())
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mv_crosscheck_art_") as tmp:
        artifacts = args.artifacts or zoo(args.models, Path(tmp)) + (foreign(args.models, Path(tmp)) if args.foreign
                                                                      else [])
        report, code = crosscheck(artifacts, args.out, threads=args.threads, runs=args.runs, warmup=args.warmup,
                                  rounds=args.rounds, rewarm=args.rewarm, block=args.block,
                                  on_progress=lambda m: print(m, flush=True))
    print(markdown(report))
    print(f"wrote {args.out}/crosscheck.{{json,md}}")
    return code


if __name__ == "__main__":
    sys.exit(main())
