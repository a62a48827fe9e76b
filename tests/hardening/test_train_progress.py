"""Training outside a terminal: progress lines on stderr, and the run folder with its run card from the start."""
from __future__ import annotations

import json
import re

import pytest

from mobilevision.cli import main


@pytest.fixture
def tiny_run(tmp_path, image_folder, toy_name):
    data = image_folder(tmp_path / "data", classes=("ant", "bee"), per_class=8, size=(16, 16))
    run = tmp_path / "run"
    return ["train", "classify", "--model", toy_name, "--data", str(data), "--epochs", "2", "--batch-size", "4",
            "--imgsz", "16", "--out", str(run)], run


@pytest.mark.slow
def test_progress_lines_when_stderr_is_not_a_terminal(tiny_run, monkeypatch, capsys):
    argv, run = tiny_run
    monkeypatch.setenv("MOBILEVISION_PROGRESS_S", "0")  # a line after every step
    assert main(argv) == 0
    err = capsys.readouterr().err
    steps = [l for l in err.splitlines() if re.match(r"epoch \d/2 step \d+/4 ", l)]
    assert len(steps) == 8, err  # 2 epochs x 4 steps of 4 images
    assert all(re.search(r"loss \d+\.\d+ .*img/s .*ETA \d+:\d\d", l) for l in steps), steps
    assert steps[-1].startswith("epoch 2/2 step 4/4") and "ETA 0:00" in steps[-1]


@pytest.mark.slow
def test_default_interval_logs_the_first_step_and_epoch_ends(tiny_run, capsys):
    argv, _ = tiny_run
    assert main(argv) == 0
    err = capsys.readouterr().err
    steps = [l for l in err.splitlines() if re.match(r"epoch \d/2 step", l)]
    assert [l.split("  ")[0] for l in steps] == ["epoch 1/2 step 1/4"], err  # then every 30 s
    assert len([l for l in err.splitlines() if re.match(r"epoch \d/2  ", l)]) == 2  # the epoch summaries


def test_bad_interval_is_one_line(tiny_run, monkeypatch, capsys, one_line_error):
    monkeypatch.setenv("MOBILEVISION_PROGRESS_S", "soon")
    one_line_error(main(tiny_run[0]), "MOBILEVISION_PROGRESS_S", "soon")


@pytest.mark.slow
def test_run_folder_and_card_exist_before_the_first_step(tiny_run, monkeypatch, capsys):
    from mobilevision.tasks.classify import ClassifyTask

    argv, run = tiny_run
    seen = []
    step = ClassifyTask.training_step

    def spy(self, *args, **kwargs):
        if not seen:
            card = run / "run.json"
            seen.append(json.loads(card.read_text()) if card.is_file() else None)
        return step(self, *args, **kwargs)

    monkeypatch.setattr(ClassifyTask, "training_step", spy)
    assert main(argv) == 0
    card = seen[0]
    assert card is not None, "no run card before the first step"
    assert card["model"] == "toy_test_classifier" and card["labels"] == ["ant", "bee"]
    assert card["train"]["epochs"] == 2 and card["state"] == "running"
    final = json.loads((run / "run.json").read_text())
    assert final["state"] == "finished" and final["epochs_done"] == 2
