"""CLI: commands work, and bad input is one line on stderr with exit code 2 (no traceback)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from mobilevision.cli import main
from mobilevision.errors import ModelNotFound




@pytest.mark.parametrize("command", [[], ["list"], ["export"], ["bench"], ["info"], ["classify"], ["train"],
                                     ["train", "classify"], ["eval"], ["eval", "classify"]])
def test_help_for_every_command(capsys, command):
    assert main([*command, "--help"]) == 0
    assert "Usage" in capsys.readouterr().out


def test_version(capsys):
    assert main(["--version"]) == 0
    assert "mobilevision 0.1.0" in capsys.readouterr().out


def test_unknown_model(capsys, one_line_error):
    one_line_error(main(["export", "emo_7m", "--target", "onnx"]), "unknown model 'emo_7m'",
                    "did you mean", "mobilevision list")


def test_unknown_target(capsys, toy_name, one_line_error):
    one_line_error(main(["export", toy_name, "--target", "caffe"]), "unknown target 'caffe'")


def test_unknown_precision(capsys, toy_name, one_line_error):
    one_line_error(main(["export", toy_name, "-t", "onnx", "-p", "int3"]), "unknown precision")


def test_missing_weights(capsys, toy_name, tmp_path, one_line_error):
    one_line_error(main(["export", toy_name, "-t", "onnx", "--weights", str(tmp_path / "no.pth")]),
                    "weights file not found")


def test_corrupt_weights(capsys, toy_name, tmp_path, one_line_error):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x00garbage" * 10)
    one_line_error(main(["export", toy_name, "-t", "onnx", "--weights", str(bad), "--out", str(tmp_path)]),
                    "cannot read checkpoint")


def test_wrong_architecture_weights(capsys, toy_name, tmp_path, one_line_error):
    other = tmp_path / "other.pth"
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3)).state_dict(), other)
    one_line_error(main(["export", toy_name, "-t", "onnx", "--weights", str(other), "--out", str(tmp_path)]),
                    "does not fit", "missing keys", "conv.weight", "unexpected keys", "0.weight")


def test_unsafe_pickle_refused(capsys, toy_name, tmp_path, one_line_error):
    evil = tmp_path / "evil.pth"
    torch.save({"state": {"obj": ModelNotFound("x")}}, evil)
    one_line_error(main(["export", toy_name, "-t", "onnx", "--weights", str(evil), "--out", str(tmp_path)]),
                    "refused for safety", "state_dict")


def test_debug_shows_traceback():
    with pytest.raises(ModelNotFound):
        main(["--debug", "export", "nope", "--target", "onnx"])


def test_unreadable_artifact(capsys, tmp_path, one_line_error):
    junk = tmp_path / "junk.onnx"
    junk.write_text("not a model")
    one_line_error(main(["info", str(junk)]), "cannot load")
    one_line_error(main(["bench", str(tmp_path / "missing.tflite")]), "not found")
    one_line_error(main(["classify", str(tmp_path / "m.pb"), str(junk)]), "unknown artifact type")


@pytest.mark.slow
def test_real_process_exit_code_and_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "mobilevision.cli", "export", "nope", "--target", "onnx"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown model 'nope'") and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_export_info_classify_bench(capsys, toy_name, tmp_path, one_line_error):
    from PIL import Image

    rc = main(["export", toy_name, "-t", "onnx", "-t", "tflite", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0 and "export summary" in out and out.count("OK") >= 2
    onnx_path = tmp_path / f"{toy_name}.onnx"
    assert main(["info", str(onnx_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model"] == toy_name and info["parity"]["passed"]
    img = tmp_path / "x.png"
    Image.fromarray(np.full((50, 60, 3), 128, np.uint8)).save(img)
    assert main(["classify", str(onnx_path), str(img), "--top-k", "3"]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if "class_" in l]
    assert len(lines) == 3
    rc = main(["bench", str(onnx_path), str(tmp_path / f"{toy_name}.tflite"), "--runs", "5", "--warmup", "1",
               "--rewarm", "2", "--json", str(tmp_path / "b.json")])
    assert rc == 0
    rows = json.loads((tmp_path / "b.json").read_text())
    assert {r["backend"] for r in rows} == {"ort", "litert"} and all(r["median_ms"] > 0 for r in rows)
    assert all(r["rewarm"] == 2 and r["runs"] == 5 for r in rows)
    one_line_error(main(["bench", str(onnx_path), "--rewarm", "-1"]), "--rewarm")


def test_export_failure_is_reported_and_exit_2(capsys, toy_name, tmp_path, monkeypatch):
    from mobilevision.errors import ExportError
    from mobilevision.export.targets.onnx import OnnxTarget

    def broken(self, *a, **k):
        raise ExportError("converter exploded")

    monkeypatch.setattr(OnnxTarget, "convert", broken)
    rc = main(["export", toy_name, "-t", "onnx", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert rc == 2 and "FAILED" in captured.out and "error: onnx fp32: converter exploded" in captured.err


@pytest.mark.parametrize("argv,flag", [(["export", "--help"], "--dynamic-batch"), (["bench", "--help"], "--use-gpu"),
                                       (["train", "classify", "--help"], "--resume")])
def test_help_shows_no_type_after_flags(capsys, argv, flag):
    """A flag takes no value: its help line names the flag and no ``<bool>`` after it."""
    assert main(argv) == 0
    printed = capsys.readouterr().out
    line = next(line for line in printed.splitlines() if flag in line)
    assert "<bool>" not in line and "BOOLEAN" not in line, line


def test_a_notice_stays_on_screen_while_status_updates_do_not(capsys):
    from mobilevision import cli
    from mobilevision.export.stages import Notice

    class Status:
        shown = []

        def update(self, text):
            self.shown.append(text)

    status = Status()
    cli._progress(status, "emo_1m: onnx fp16: converting")
    cli._progress(status, Notice("emo_1m: onnx fp16: the accuracy report ... --no-accuracy skips it"), keep=True)
    assert capsys.readouterr().err.strip() == "emo_1m: onnx fp16: the accuracy report ... --no-accuracy skips it"
    assert len(status.shown) == 2
