"""`mobilevision train classify` / `eval classify` / exporting a run, and their bad-input errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mobilevision.cli import main




@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, toy_name, image_folder):
    """Toy classifier trained 2 epochs on a 3-class image folder via the CLI."""
    root = tmp_path_factory.mktemp("train_cli")
    data = image_folder(root / "data", classes=("ant", "bee", "cow"), per_class=8)
    run = root / "run"
    rc = main(["train", "classify", "--model", toy_name, "--data", str(data), "--epochs", "2",
               "--batch-size", "8", "--imgsz", "32", "--ema-decay", "0.9", "--out", str(run)])
    assert rc == 0
    return run, data


def test_train_writes_a_complete_run(trained_run):
    run, _ = trained_run
    card = json.loads((run / "best.json").read_text())
    assert card["model"] == "toy_test_classifier" and card["labels"] == ["ant", "bee", "cow"]
    assert card["input_size"] == [3, 32, 32] and card["ema"] is True and card["train"]["epochs"] == 2
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,lr,train_loss,train_acc") and "val_top1" in rows[0] and len(rows) == 3


def test_resume_extends_the_run(trained_run, capsys, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run[0], run)
    assert main(["train", "classify", "--resume", "--out", str(run), "--epochs", "3"]) == 0
    assert "resuming" in capsys.readouterr().err
    assert len((run / "metrics.csv").read_text().splitlines()) == 4
    assert json.loads((run / "last.json").read_text())["epoch"] == 3


def test_eval_reports_metrics_and_confusion_png(trained_run, capsys):
    run, _ = trained_run
    assert main(["eval", "classify", "--weights", str(run / "best.safetensors")]) == 0
    captured = capsys.readouterr()
    assert "top1" in captured.out and "24 images" in captured.out
    png = run / "best_confusion.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_export_a_run_carries_its_labels(trained_run, tmp_path, capsys):
    from mobilevision.runtime import load

    run, data = trained_run
    assert main(["export", str(run / "best.safetensors"), "-t", "onnx", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    with load(tmp_path / "toy_test_classifier.onnx") as model:
        assert model.metadata.labels == ["ant", "bee", "cow"]
        assert model.metadata.inputs[0].shape == [1, 3, 32, 32]
        top = model.classify(np.full((40, 40, 3), 100, np.uint8), top_k=3)
        assert {c.label for c in top} == {"ant", "bee", "cow"}


def test_train_bad_input(capsys, tmp_path, image_folder, toy_name, one_line_error):
    base = ["train", "classify", "--model", toy_name, "--imgsz", "16", "--epochs", "1"]
    one_line_error(main(["train", "classify", "--resume", "--out", str(tmp_path / "none")]),
                    "nothing to resume")
    one_line_error(main(["train", "classify", "--data", str(tmp_path)]), "--model is required")
    empty = image_folder(tmp_path / "empty")
    (empty / "train" / "zzz").mkdir()
    one_line_error(main([*base, "--data", str(empty)]), "has no images")
    one = image_folder(tmp_path / "one", classes=("solo",))
    one_line_error(main([*base, "--data", str(one)]), "at least 2 class")
    one_line_error(main([*base, "--loss", "focal"]), "unknown loss")
    one_line_error(main([*base, "--loss", "bias", "--label-smoothing", "0.1"]), "label-smoothing")
    one_line_error(main([*base, "--loss", "bias", "--bias-beta", "1.5"]), "beta < 1", "--bias-beta")
    one_line_error(main([*base, "--loss", "bias", "--bias-norm", "batch"]), "unknown Bias Loss normalisation")
    one_line_error(main([*base, "--loss", "bias", "--batch-size", "1"]), "--batch-size >= 2")
    one_line_error(main([*base, "--loss", "bias", "--bias-alpha", "-1"]), "must be >= 0")
    one_line_error(main([*base, "--loss", "bias"]), "forward_features")
    one_line_error(main([*base, "--data", str(tmp_path / "missing")]), "dataset folder not found")
    one_line_error(main(["train", "classify", "--model", "emo_9m"]), "unknown model")


def test_existing_run_is_not_overwritten(trained_run, capsys, toy_name, one_line_error):
    run, data = trained_run
    one_line_error(main(["train", "classify", "--model", toy_name, "--data", str(data), "--out", str(run)]),
                    "already holds a run", "--resume")


def test_eval_and_export_bad_input(trained_run, capsys, tmp_path, one_line_error):
    run, _ = trained_run
    one_line_error(main(["eval", "classify", "--weights", str(tmp_path / "nope.safetensors"),
                                  "--model", "toy_test_classifier"]), "not found")
    plain = tmp_path / "plain.safetensors"
    plain.write_bytes((run / "best.safetensors").read_bytes())
    one_line_error(main(["eval", "classify", "--weights", str(plain)]), "no run card", "--model")
    one_line_error(main(["export", str(plain), "-t", "onnx"]), "no run card")
    one_line_error(main(["eval", "classify", "--weights", str(run / "best.safetensors"), "--data",
                                  str(tmp_path / "x")]), "dataset folder not found")


@pytest.mark.slow
def test_bias_loss_trains_skipnet_and_resumes_its_running_minimum(tmp_path, image_folder, capsys):
    """SkipNet's last feature map feeds Bias Loss; the 'global' running minimum is part of the saved state."""
    import torch

    data = image_folder(tmp_path / "data", classes=("ant", "bee"), per_class=6)
    run = tmp_path / "run"
    base = ["train", "classify", "--data", str(data), "--batch-size", "4", "--out", str(run)]
    assert main([*base, "--model", "skipnet_050", "--imgsz", "32", "--loss", "bias", "--epochs", "1"]) == 0
    card = json.loads((run / "last.json").read_text())
    assert card["model"] == "skipnet_050" and card["task_options"]["loss"] == "bias"
    state = torch.load(run / "last.state.pt", weights_only=True)
    g1 = state["criterion"]["global_min"].item()
    assert 0 <= g1 < 100000  # it saw batches: the minimum feature variance so far
    assert main(["train", "classify", "--resume", "--out", str(run), "--epochs", "2"]) == 0
    assert "resuming" in capsys.readouterr().err
    g2 = torch.load(run / "last.state.pt", weights_only=True)["criterion"]["global_min"].item()
    assert g2 <= g1  # resumed from g1, never restarted at 100000
    assert len((run / "metrics.csv").read_text().splitlines()) == 3
