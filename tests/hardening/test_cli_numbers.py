"""Numbers on the command line: out-of-range, non-finite and resume-ignored values are one line, exit 2."""
from __future__ import annotations

import json

import pytest

from mobilevision.cli import main

TOY = "toy_test_classifier"
MISSING = "/nonexistent/mobilevision-data"


def _train(task: str, *args: str) -> list[str]:
    return ["train", task, "--data", MISSING, *args]


# (argv, words the one error line must hold). Each case fails before anything is read or built.
BAD_NUMBERS = {
    "train-classify-epochs-0": (_train("classify", "--model", TOY, "--epochs", "0"), ["--epochs", "0"]),
    "train-classify-lr-inf": (_train("classify", "--model", TOY, "--lr", "inf"), ["--lr", "inf"]),
    "train-classify-weight-decay-inf": (_train("classify", "--model", TOY, "--weight-decay", "inf"),
                                        ["--weight-decay"]),
    "train-classify-warmup-epochs-inf": (_train("classify", "--model", TOY, "--warmup-epochs", "inf"),
                                         ["--warmup-epochs"]),
    "train-classify-clip-grad-inf": (_train("classify", "--model", TOY, "--clip-grad", "inf"), ["--clip-grad"]),
    "train-classify-bias-alpha-inf": (_train("classify", "--model", TOY, "--bias-alpha", "inf"), ["--bias-alpha"]),
    "train-classify-seed-negative": (_train("classify", "--model", TOY, "--seed", "-1"), ["--seed"]),
    "train-landmarks-epochs-0": (_train("landmarks", "--epochs", "0"), ["--epochs", "0"]),
    "train-anomaly-lr-inf": (_train("anomaly", "--lr", "inf"), ["--lr"]),
    "train-anomaly-seed-negative": (_train("anomaly", "--seed", "-2"), ["--seed"]),
    "train-isp-lr-inf": (_train("isp", "--lr", "inf"), ["--lr"]),
    "export-imgsz-0": (["export", "nope", "-t", "onnx", "--imgsz", "0"], ["--imgsz", "0"]),
    "export-imgsz-huge": (["export", "nope", "-t", "onnx", "--imgsz", "100000"], ["--imgsz"]),
    "export-num-classes-0": (["export", "nope", "-t", "onnx", "--num-classes", "0"], ["--num-classes"]),
    "export-num-classes-negative": (["export", "nope", "-t", "onnx", "--num-classes", "-3"], ["--num-classes"]),
    "export-bench-runs-0": (["export", "nope", "-t", "onnx", "--bench", "--runs", "0"], ["--runs"]),
    "bench-threads-huge": (["bench", "missing.onnx", "--threads", "100000"], ["--threads"]),
    "classify-top-k-0": (["classify", "missing.onnx", "img.png", "--top-k", "0"], ["--top-k"]),
    "classify-top-k-negative": (["classify", "missing.onnx", "img.png", "--top-k", "-3"], ["--top-k"]),
    "anomaly-threshold-nan": (["anomaly", "missing.onnx", "img.png", "--threshold", "nan"], ["--threshold"]),
    "anomaly-range-inf": (["anomaly", "missing.onnx", "img.png", "--range", "0", "inf"], ["--range"]),
    "list-imgsz-0": (["list", "--task", "nope", "--imgsz", "0"], ["--imgsz"]),
    "list-imgsz-negative": (["list", "--task", "nope", "--imgsz", "-5"], ["--imgsz"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("argv,words", BAD_NUMBERS.values(), ids=BAD_NUMBERS.keys())
def test_bad_number_is_one_line(argv, words, toy_name, capsys, one_line_error):
    one_line_error(main(argv), *words)


# ------------------------------------------------------------------ --resume keeps the run's recipe

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, toy_name, image_folder):
    """A toy classifier trained 1 epoch with --lr 0.01 --batch-size 4 --imgsz 16."""
    root = tmp_path_factory.mktemp("resume_numbers")
    data = image_folder(root / "data", classes=("ant", "bee"), per_class=4, size=(16, 16))
    run = root / "run"
    assert main(["train", "classify", "--model", toy_name, "--data", str(data), "--epochs", "1", "--lr", "0.01",
                 "--batch-size", "4", "--imgsz", "16", "--out", str(run)]) == 0
    return run, data


RESUME_CHANGES = {
    "lr": (["--lr", "0.5"], ["--lr 0.5", "0.01"]),
    "batch-size": (["--batch-size", "2"], ["--batch-size 2", "4"]),
    "loss": (["--loss", "bias"], ["--loss bias", "ce"]),
    "imgsz": (["--imgsz", "32"], ["--imgsz 32", "16"]),
    "seed": (["--seed", "7"], ["--seed 7", "0"]),
    "optimizer": (["--optimizer", "sgd"], ["--optimizer sgd", "adamw"]),
    "ema-decay": (["--ema-decay", "0.9"], ["--ema-decay 0.9"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("extra,words", RESUME_CHANGES.values(), ids=RESUME_CHANGES.keys())
def test_resume_refuses_a_changed_option(finished_run, extra, words, capsys, one_line_error):
    run, _ = finished_run
    before = (run / "last.state.pt").read_bytes()
    one_line_error(main(["train", "classify", "--resume", "--out", str(run), "--epochs", "2", *extra]),
                   "--resume", *words)
    assert (run / "last.state.pt").read_bytes() == before  # nothing trained


def test_resume_with_epochs_not_beyond_the_finished_ones(finished_run, capsys, one_line_error):
    run, _ = finished_run
    one_line_error(main(["train", "classify", "--resume", "--out", str(run), "--epochs", "1"]), "--epochs 1",
                   "finished 1 epoch")


def test_resume_of_a_finished_run_says_there_is_nothing_to_train(finished_run, capsys):
    run, _ = finished_run
    before = (run / "last.state.pt").read_bytes()
    assert main(["train", "classify", "--resume", "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert "note:" in err and "finished 1 epoch" in err and "--epochs above 1" in err, err
    assert (run / "last.state.pt").read_bytes() == before


def test_resume_accepts_the_same_values_and_extends(finished_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run[0], run)
    argv = ["train", "classify", "--resume", "--out", str(run), "--epochs", "2", "--lr", "0.01", "--batch-size", "4",
            "--model", TOY, "--data", str(finished_run[1]), "--imgsz", "16", "--workers", "0"]
    assert main(argv) == 0, capsys.readouterr().err
    assert json.loads((run / "last.json").read_text())["epoch"] == 2


def test_resume_refuses_a_changed_option_of_a_step_task(tmp_path, capsys, one_line_error):
    """train anomaly / isp / anomaly-teacher / landmarks share the same check (here: a saved anomaly state)."""
    import dataclasses

    from mobilevision.tasks.anomaly import AnomalyOptions, recipe
    from mobilevision.train.checkpoint import save_state

    run = tmp_path / "run"
    run.mkdir()
    options = AnomalyOptions(data=MISSING, steps=1000)
    save_state(run, {"task": {"name": "anomaly", "options": dataclasses.asdict(options)},
                     "config": recipe(1000).to_dict(), "epoch": 1, "history": []})
    one_line_error(main(["train", "anomaly", "--resume", "--out", str(run), "--lr", "0.5"]), "--lr 0.5", "--resume")
    one_line_error(main(["train", "anomaly", "--resume", "--out", str(run), "--steps", "5000"]), "--steps 5000",
                   "1000")
