"""Quantised exports: calibration and held-out data per task, the task metric before/after, agreement,
thresholds, layer sensitivity, and the int8 path through the export API and the CLI."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from mobilevision.errors import DataError, ExportError, MobileVisionError
from mobilevision.export import api as export_api
from mobilevision.export import quantize as q
from mobilevision.export.metadata import ModelMetadata

DIGITS_TOY = "toy_digits_classifier"


class TinyDigits(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU())
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.head(self.block(self.stem(x)).mean((2, 3)))


@pytest.fixture(scope="module")
def digits_toy() -> str:
    from mobilevision import registry

    registry._ensure_loaded()
    if DIGITS_TOY not in registry._REGISTRY:
        registry.register_model(registry.ModelCard(
            name=DIGITS_TOY, task="classify", input_size=(3, 32, 32), num_classes=10,
            labels=tuple(str(i) for i in range(10)), label_set="digits", crop_pct=1.0,
            description="test-only model with the built-in digits' classes"))(
            lambda num_classes=10, **kw: TinyDigits(num_classes))
    return DIGITS_TOY


@pytest.fixture(scope="module")
def digits_md(digits_toy) -> ModelMetadata:
    return export_api.prepare(digits_toy).base


# ---------------------------------------------------------------- task data

def test_classify_samples_from_builtin_digits(digits_md):
    calib = q.task_samples(digits_md, None, "train", 12)
    held = q.task_samples(digits_md, None, "heldout", 30)
    assert len(calib.inputs) == 12 and calib.inputs[0].shape == (1, 3, 32, 32) and calib.inputs[0].dtype == np.float32
    assert "train" in calib.source and "validation" in held.source
    assert len(held.targets) == 30 and set(held.targets) <= set(range(10)) and held.note is None
    again = q.task_samples(digits_md, None, "heldout", 30)   # a fixed subset: reproducible
    assert all(np.array_equal(a, b) for a, b in zip(held.inputs, again.inputs))


def test_classify_samples_without_matching_classes_have_no_targets(digits_md):
    from dataclasses import replace

    md = replace(digits_md, labels=[f"class_{i}" for i in range(10)])
    held = q.task_samples(md, None, "heldout", 5)
    assert held.targets is None and "classes" in held.note


def _image_folder(root, n=6, size=(40, 48)):
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / f"{i}.png")
    return root


def test_flat_folder_calibrates_but_cannot_measure(digits_md, tmp_path):
    folder = _image_folder(tmp_path / "calib")
    calib = q.task_samples(digits_md, folder, "train", 300)
    assert len(calib.inputs) == 6 and calib.targets is None and "no labels" in calib.source
    with pytest.raises(DataError, match="without labels"):
        q.task_samples(digits_md, folder, "heldout", 10)


def test_bad_data_arguments(digits_md, tmp_path):
    with pytest.raises(DataError, match="not found"):
        q.task_samples(digits_md, tmp_path / "missing", "train", 10)
    with pytest.raises(MobileVisionError, match=">= 1"):
        q.task_samples(digits_md, None, "train", 0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError):
        q.task_samples(digits_md, tmp_path / "empty", "train", 10)


def test_landmark_samples_are_eval_crops_with_points(tmp_path):
    from mobilevision.data.faces import write_builtin_faces

    faces = write_builtin_faces(tmp_path / "faces", 6, 4, seed=1, size=96)
    md = export_api.prepare("landmarks_mnv2_035", imgsz=64).base
    held = q.task_samples(md, faces, "heldout", 10)
    assert len(held.inputs) == 4 and held.inputs[0].shape == (1, 3, 64, 64)
    assert 0.0 <= held.inputs[0].min() and held.inputs[0].max() <= 1.0   # pixels / 255, no mean/std
    assert held.targets[0].shape == (68, 2) and (held.targets[0] >= -1).all() and (held.targets[0] <= 65).all()
    # the ground truth scores 0 NME, a shifted copy scores the shift over the inter-ocular distance
    from mobilevision.tasks.landmark_metrics import normaliser_distance

    outputs = [[t[None].astype(np.float32)] for t in held.targets]
    assert q.task_metric(md, outputs, held.targets) == pytest.approx(0.0, abs=1e-4)
    shifted = [[(t + [1.0, 0.0])[None]] for t in held.targets]
    d = normaliser_distance(np.stack(held.targets), "inter_ocular")
    assert q.task_metric(md, shifted, held.targets) == pytest.approx(100 * np.mean(1 / d))


@pytest.mark.slow
def test_isp_samples_tile_patches_into_the_input_size(tmp_path):
    from mobilevision.data.isp import build_builtin

    root = build_builtin(0, tmp_path / "isp")
    md = export_api.prepare("efficientisp", imgsz=192).base        # 192 packed > the 128 packed test patches
    held = q.task_samples(md, root, "heldout", 2)
    assert held.inputs[0].shape == (1, 4, 192, 192) and held.targets[0].shape == (3, 384, 384)
    assert "4 patch(es) per input" in held.source and held.images == 8
    calib = q.task_samples(md, root, "train", 3)
    assert len(calib.inputs) == 3 and calib.targets is None


def test_tile_grid_lays_patches_row_by_row():
    patches = [np.full((1, 2, 3), k, np.float32) for k in range(4)]
    grid = q.tile_grid(patches, 3, 5)
    assert grid.shape == (1, 3, 5)
    assert grid[0, 0].tolist() == [0, 0, 0, 1, 1] and grid[0, 2].tolist() == [2, 2, 2, 3, 3]
    with pytest.raises(ValueError, match="cannot cover"):
        q.tile_grid(patches[:3], 3, 5)


# ---------------------------------------------------------------- metrics and the report

def _md(task, outputs=("out",)):
    from mobilevision.export.metadata import TensorSpec

    return ModelMetadata(task=task, model="m", target="onnx", precision="int8",
                         inputs=[TensorSpec("x", [1, 3, 4, 4])], outputs=[TensorSpec(o, [1]) for o in outputs])


def test_task_metrics_on_hand_worked_cases():
    logits = [[np.array([[0.1, 2.0, 0.3]])], [np.array([[3.0, 0.0, 0.0]])], [np.array([[0.0, 0.0, 1.0]])]]
    assert q.task_metric(_md("classify"), logits, [1, 0, 0]) == pytest.approx(200 / 3)
    scores = [[np.zeros((1, 1, 2, 2)), np.array([s])] for s in (0.1, 0.9, 0.4, 0.2)]
    assert q.task_metric(_md("anomaly", ("anomaly_map", "score")), scores, [0, 1, 1, 0]) == 1.0
    target = np.full((3, 2, 2), 128 / 255)
    pred = [[np.full((1, 3, 2, 2), 138.2 / 255)]]   # 10 levels off everywhere once rounded to 8 bits
    assert q.task_metric(_md("isp", ("rgb",)), pred, [target]) == pytest.approx(20 * math.log10(25.5))


def test_report_loss_threshold_and_warning():
    r = q.AccuracyReport("int8", "top-1", "%", True, 1.0, "digits", 100, before=90.0, after=88.5,
                         agreement={"cosine": 0.999, "max_abs": 0.2, "mean_abs": 0.01}, size_bytes=2_000_000,
                         sensitive_layers=[{"module": "stem.0", "cosine": 0.97}, {"module": "head", "cosine": 0.99}])
    assert r.loss == pytest.approx(1.5) and r.exceeded
    w = r.warning()
    assert "fell by 1.5 point(s), past the 1 point(s) threshold" in w and "--keep-float stem.0 head" in w
    assert "top-1 90.00% -> 88.50% (-1.5)" in r.summary() and "2.00 MB" in r.summary()
    nme = q.AccuracyReport("int8", "NME", "%", False, 0.5, "faces", 10, before=5.0, after=5.2,
                           agreement={"cosine": 0.9999, "max_abs": 1.0, "mean_abs": 0.1})
    assert nme.loss == pytest.approx(0.2) and not nme.exceeded and nme.warning() is None
    drift = q.AccuracyReport("int8", "top-1", "%", True, 1.0, "digits", 10,
                             agreement={"cosine": 0.95, "max_abs": 3.0, "mean_abs": 1.0})
    assert drift.loss is None and drift.exceeded and "cosine 0.9500" in drift.warning()
    blameless = q.keep_float_hint([{"module": "a", "cosine": 0.9996}, {"module": "b", "cosine": 0.9999}])
    assert "--keep-float ." in blameless and "arithmetic between them" in blameless
    d = r.to_dict()
    assert d["loss"] == pytest.approx(1.5) and d["exceeded"] is True and json.dumps(d)


def test_layer_sensitivity_finds_the_fragile_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 4, 1))
    with torch.no_grad():   # channel 0 into layer 2 spans ~1000 but feeds nothing: a uint8 grid over that
        model[0].bias[0] = 1000.0   # range rounds the useful channels away
        model[2].weight[:, 0] = 0.0
    xs = [np.random.default_rng(i).standard_normal((1, 3, 8, 8)).astype(np.float32) for i in range(3)]
    before = [p.clone() for p in model.parameters()]
    ranked = q.layer_sensitivity(model, xs, top=3)
    assert [r["module"] for r in ranked][0] == "2" and len(ranked) == 3
    assert ranked[0]["cosine"] < ranked[-1]["cosine"] <= 1.0 + 1e-9
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))   # weights restored


# ---------------------------------------------------------------- through the export API and the CLI

@pytest.mark.slow
def test_int8_onnx_export_reports_accuracy_in_the_sidecar(digits_toy, tmp_path):
    opts = export_api.QuantizeOptions(calib_n=16, eval_n=40)
    r = export_api.export(digits_toy, "onnx", precision="int8", out_dir=tmp_path, quantize=opts)
    assert r.path.name == f"{digits_toy}_int8.onnx" and r.metadata.precision == "int8"
    side = json.loads(r.sidecar.read_text())
    quant = side["quantization"]
    assert quant["tool"].startswith("onnxruntime") and quant["calibration"]["inputs"] == 16
    acc = quant["accuracy"]
    assert acc["metric"] == "top-1" and acc["samples"] == 40 and acc["before"] is not None
    assert acc["after"] is not None and 0.9 < acc["agreement"]["cosine"] <= 1.0 + 1e-9
    assert 0 <= r.size_bytes - acc["size_bytes"] < 8192   # measured before the report itself was embedded
    assert r.accuracy.before == pytest.approx(acc["before"])
    assert any("calibration inputs" in w and "100" in w for w in r.warnings)   # 16 < 100


def test_keep_float_needs_int8(digits_toy, tmp_path):
    with pytest.raises(ExportError, match="int8 only"):
        export_api.export(digits_toy, "onnx", precision="fp16", out_dir=tmp_path,
                          quantize=export_api.QuantizeOptions(keep_float=("head",)))


@pytest.mark.slow
def test_coreml_int8_reads_no_calibration(digits_toy, tmp_path, monkeypatch):
    calls = []
    real = q.task_samples
    monkeypatch.setattr(q, "task_samples", lambda md, data, split, *a, **k: calls.append(split) or real(
        md, data, split, *a, **k))
    r = export_api.export(digits_toy, "coreml", precision="int8", out_dir=tmp_path,
                          quantize=export_api.QuantizeOptions(eval_n=8))
    assert calls == ["heldout"] and "calibration" not in r.metadata.quantization
    assert r.accuracy.after is None and "macOS" in r.accuracy.note


def _cli(args, capsys):
    from mobilevision.cli import main

    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.slow
def test_cli_int8_prints_accuracy_and_fails_on_drop(digits_toy, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(q.THRESHOLDS, "classify", q.TaskMetric("top1", "top-1", "%", True, -1.0))
    code, output = _cli(["export", digits_toy, "-t", "onnx", "-p", "int8", "--calib-n", "8", "--eval-n", "12",
                         "--out", str(tmp_path), "--fail-on-drop"], capsys)
    assert code == 3, output
    assert "onnx int8 accuracy" in output and "top-1" in output
    assert "WARNING" in output and "--keep-float" in output                   # sensitivity hint
    assert (tmp_path / f"{digits_toy}_int8.onnx").is_file()                   # written all the same


def test_cli_rejects_bad_quantisation_arguments(digits_toy, tmp_path, capsys):
    code, output = _cli(["export", digits_toy, "-t", "onnx", "--keep-float", "head", "--out", str(tmp_path)], capsys)
    assert code == 2 and "add -p int8" in output
    code, output = _cli(["export", digits_toy, "-t", "onnx", "-p", "int8", "--calib-n", "0", "--out", str(tmp_path)],
                        capsys)
    assert code == 2 and "--calib-n must be >= 1" in output
    code, output = _cli(["export", digits_toy, "-t", "onnx", "-p", "int8", "--keep-float", "nope", "--calib-n", "8",
                         "--eval-n", "8", "--out", str(tmp_path)], capsys)
    assert code == 2 and "'nope'" in output and "Traceback" not in output
    code, output = _cli(["export", digits_toy, "-t", "onnx", "-p", "int8", "--calib-data", str(tmp_path / "none"),
                         "--out", str(tmp_path)], capsys)
    assert code == 2 and "not found" in output


@pytest.mark.slow
def test_broken_int8_is_refused_with_the_layers_to_keep_float(digits_toy, tmp_path):
    from mobilevision.errors import ExportParityError

    torch.manual_seed(0)
    model = TinyDigits()
    model.model_card = export_api.prepare(digits_toy).card
    with torch.no_grad():   # channel 0 after the stem spans ~1000 and feeds nothing: per-tensor int8
        model.stem[0].bias[0] = 1000.0   # activations there round every useful channel to zero
        model.block[0].weight[:, 0] = 0.0
        model.block[0].bias.zero_()      # no biases to carry the logits: what is left is the signal
        model.head.bias.zero_()
    with pytest.raises(ExportParityError, match=r"broken by int8.*--keep-float block") as e:
        export_api.export(model, "onnx", precision="int8", out_dir=tmp_path,
                          quantize=export_api.QuantizeOptions(calib_n=16, eval_n=8))
    assert "nothing was written" in str(e.value)
    assert not list(tmp_path.glob("*.onnx"))


class TwoBranch(nn.Module):
    """Two conv branches and a squared difference at the top level (EfficientAD's map arithmetic in small)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, 1, 1)
        self.b = nn.Conv2d(3, 8, 3, 1, 1)

    def forward(self, x):
        return ((self.a(x) - self.b(x)) ** 2).mean(1, keepdim=True)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["onnx", "tflite"])
def test_keep_float_root_keeps_the_top_level_arithmetic_float(target, tmp_path):
    from mobilevision.export.targets import get_target
    from mobilevision.export.targets.base import ExportOptions

    torch.manual_seed(0)
    model = TwoBranch().eval()
    example = torch.randn(1, 3, 16, 16)
    calib = [np.random.default_rng(i).standard_normal((1, 3, 16, 16)).astype(np.float32) for i in range(8)]
    tgt = get_target(target)
    kept = {}
    for keep in ((), (".",)):
        opts = ExportOptions(precision="int8", input_names=("image",), output_names=("map",), workdir=tmp_path,
                             calibration=calib, keep_float=keep)
        tgt.convert(model, example, opts)
        kept[keep] = opts.quantization["kept_float"]
    assert kept[()] == [] and kept[(".",)]                       # "." names the root's own ops
    if target == "onnx":
        assert all(not n.startswith("node_conv2d") for n in kept[(".",)])   # the branches still quantise
        assert any("sub" in n.lower() for n in kept[(".",)])


def test_efficientad_cards_keep_their_map_arithmetic_float():
    import mobilevision

    assert mobilevision.get_model_card("efficientad_s").int8_keep_float == (".",)
    assert mobilevision.get_model_card("emo_1m").int8_keep_float == ()


@pytest.mark.slow
def test_coreml_fp16_keeps_its_interface(digits_toy, tmp_path):
    """fp16 compute changes no input or output type: an image in, a classifier's {label: double} out; a
    model with tensor outputs keeps them float32 (casts inside)."""
    r = export_api.export(digits_toy, "coreml", precision="fp16", out_dir=tmp_path,
                          quantize=export_api.QuantizeOptions(accuracy=False))
    structure = r.parity.structure
    assert [(f.get("type"), f["dtype"]) for f in structure["inputs"] + structure["outputs"]] == \
        [("image", "UINT8"), ("dictionary", "DOUBLE")]
    assert r.metadata.inputs[0].dtype == "uint8"
    r = export_api.export("landmarks_mnv2_035", "coreml", precision="fp16", imgsz=64, out_dir=tmp_path,
                          quantize=export_api.QuantizeOptions(accuracy=False))
    assert [f["dtype"] for f in r.parity.structure["outputs"]] == ["FLOAT32"]


@pytest.mark.parametrize("outputs,words", [
    ([[np.full((1, 10), 7e-7, np.float32)], [np.full((1, 10), -3e-7, np.float32)]], "near zero (largest |output| 7e-07)"),
    ([[np.arange(10, dtype=np.float32)[None]], [np.arange(10, dtype=np.float32)[None]]], "hardly depend on the input (they vary by at most 0"),
])
def test_degenerate_fp32_outputs_are_named(outputs, words):
    assert words in q.degenerate_outputs(outputs)


@pytest.mark.parametrize("outputs", [
    [[np.arange(10, dtype=np.float32)[None]], [np.arange(10, dtype=np.float32)[None] * 1.02]],   # input matters
    [[np.full((1, 10), 0.3, np.float32)]],                 # one sample: spread unknown, large enough
    [[np.zeros((0, 10), np.float32)]], [], [[np.full((1, 3), np.nan, np.float32)]],
])
def test_outputs_with_a_signal_are_not_degenerate(outputs):
    assert q.degenerate_outputs(outputs) is None


@pytest.mark.slow
def test_int8_of_a_model_without_signal_warns_that_it_needs_trained_weights(digits_toy, tmp_path):
    torch.manual_seed(0)
    model = TinyDigits()
    model.model_card = export_api.prepare(digits_toy).card
    with torch.no_grad():   # logits of at most 2e-7, as an untrained SkipNet's
        model.head.weight.mul_(1e-6)
        model.head.bias.zero_()
    result = export_api.export(model, "onnx", precision="int8", out_dir=tmp_path,
                               quantize=export_api.QuantizeOptions(calib_n=8, accuracy=False, speed=False))
    assert any("outputs are all near zero" in w and "int8 needs trained weights (give --weights)" in w
               for w in result.warnings), result.warnings


def test_a_long_accuracy_report_says_how_long_and_how_to_skip_it(digits_toy, digits_md, monkeypatch):
    """The first inputs are timed (PyTorch and the runtime); a report that would run past a minute says so
    once, with --eval-n and --no-accuracy; the reference is computed once for every target, in order."""
    import time

    module = TinyDigits().eval()
    held = q.task_samples(digits_md, None, "heldout", 12)
    calls = []

    def slow_run(inputs):   # a runtime that takes 10 s an input (simulated clock, no sleeping)
        calls.append(len(inputs))
        clock[0] += 10.0 * len(inputs)
        return q.torch_outputs(module, inputs)

    clock = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    said = []
    report = q.measure_accuracy(module, digits_md, held, slow_run, 1000, say=said.append, runtime="ort")
    assert calls == [2, 10] and len(held.reference) == 12 and report.agreement["cosine"] == pytest.approx(1.0)
    assert said == ["the accuracy report on 12 held-out inputs will take about 2 min more (10 s an input in ort): "
                    "--eval-n N shortens it, --no-accuracy skips it"]
    said.clear()
    q.measure_accuracy(module, digits_md, held, lambda inputs: q.torch_outputs(module, inputs), 1000,
                       say=said.append)   # a fast runtime, the reference already there: nothing to say
    assert said == []
