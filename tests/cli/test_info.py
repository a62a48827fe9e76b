"""`mobilevision info`: a human summary by default, the raw record with --json; metadata is untrusted. And what
`classify` prints around its rows (headers, the random-weights note)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from mobilevision.cli import main
from mobilevision.export.integrity import Integrity
from mobilevision.export.metadata import ModelMetadata, Preprocessing, TensorSpec


def _metadata(**changes) -> ModelMetadata:
    md = ModelMetadata(
        task="classify", model="emo_1m", target="onnx", precision="int8",
        inputs=[TensorSpec("image", [1, 3, 224, 224], "float32", "NCHW")], outputs=[TensorSpec("logits", [1, 10])],
        preprocessing=Preprocessing(resize=256, crop=[224, 224]), labels=[f"c{i}" for i in range(10)],
        num_classes=10, params=1_234_567, macs=261_000_000, weights="emo_1m.safetensors",
        tools={"mobilevision": "0.1.0", "onnxruntime": "1.32.0"},
        parity={"runtime": "ort", "numeric": True, "passed": True, "samples": 4, "top1_agreement": 0.75,
                "outputs": [{"name": "logits", "max_abs": 0.012, "cosine": 0.99931}]},
        quantization={"tool": "onnxruntime 1.32.0", "scheme": "static QDQ",
                      "accuracy": {"metric": "top-1", "before": 71.2, "after": 70.9, "precision": "int8",
                                   "samples": 200, "data": "imagenet"},
                      "speed": {"runtime": "ort", "fp32_ms": 30.1, "int8_ms": 36.2, "ratio": 1.203}},
        created="2026-12-05T00:00:00+00:00")
    for k, v in changes.items():
        setattr(md, k, v)
    return md


class _Model:
    def __init__(self, md, integrity=None):
        self.metadata, self.integrity = md, integrity or Integrity({"m.onnx": "0" * 64})

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def classify(self, image, top_k=5):
        return [SimpleNamespace(score=0.5 - i / 10, index=i, label=f"c{i}") for i in range(top_k)]


@pytest.fixture
def info(monkeypatch, capsys):
    def run(md, *flags, integrity=None):
        monkeypatch.setattr("mobilevision.runtime.load", lambda *a, **k: _Model(md, integrity))
        assert main(["info", "m.onnx", *flags]) == 0
        return capsys.readouterr().out
    return run


def test_summary_names_what_a_user_asks(info):
    out = info(_metadata())
    for words in ("classify", "onnx, int8", "emo_1m.safetensors", "image float32 1x3x224x224 NCHW",
                  "logits float32 1x10", "shorter side to 256 (bicubic), centre crop 224x224", "10, 10 names",
                  "1.235 M params, 261.0 M MACs", "passed in ort, 4 samples, max abs 0.012, cosine 0.999310",
                  "top-1 agreement 75%", "static QDQ", "top-1 71.2 (PyTorch fp32) -> 70.9 (int8) on 200",
                  "36.2 ms vs fp32 30.1 ms in ort (x1.20)", "SHA-256 of 1 file(s) matches", "onnxruntime 1.32.0",
                  "info --json"):
        assert words in out, (words, out)
    assert '"preprocessing"' not in out and len(out.splitlines()) < 40   # a summary, not the record


def test_json_flag_prints_the_whole_record(info):
    record = json.loads(info(_metadata(), "--json"))
    assert record["labels"] == [f"c{i}" for i in range(10)] and record["integrity"] == {"sha256": {"m.onnx": "0" * 64}}
    assert record["quantization"]["speed"]["ratio"] == 1.203


def test_random_weights_and_unverified_files_are_said(info):
    out = info(_metadata(weights=None, quantization=None), integrity=Integrity({}, note="no sidecar beside m.onnx"))
    assert "random initialisation" in out and "not verified: no sidecar beside m.onnx" in out
    assert "quantisation" not in out


@pytest.mark.parametrize("parity", [
    {"outputs": "not a list", "samples": [1, 2], "passed": "yes"},
    {"outputs": [{"max_abs": "big", "cosine": None}, 7], "top1_agreement": "all", "numeric": True},
    {"numeric": False, "note": "numbers need macOS", "runtime": "coreml"},
    {"outputs": [{"max_abs": float("nan"), "cosine": float("inf")}]},
    {},
])
def test_odd_parity_records_are_shown_not_raised(info, parity):
    out = info(_metadata(parity=parity, quantization={"accuracy": "x", "speed": [1]}))
    assert "parity" in out and "Traceback" not in out


def test_hostile_text_is_printed_inert(info):
    out = info(_metadata(model="[red]boom[/red]", tools={"\x1b[2Jwipe": "rtl\u202etxt"}))
    assert not any(c in out for c in ("\x1b", "\u202e")) and "[red]boom[/red]" in out


@pytest.mark.parametrize("weights,model,noted", [(None, "emo_1m", True), ("emo_1m.safetensors", "emo_1m", False),
                                                  (None, "my_own_net", False)])
def test_classify_has_headers_and_says_when_weights_are_random(monkeypatch, capsys, weights, model, noted):
    md = _metadata(weights=weights, model=model)
    monkeypatch.setattr("mobilevision.runtime.load", lambda *a, **k: _Model(md))
    assert main(["classify", "m.onnx", "x.png", "--top-k", "2"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].split() == ["score", "class", "label"] and lines[1].split() == ["0.5000", "0", "c0"]
    assert ("random weights" in captured.err) == noted and captured.err.count("\n") == int(noted)
