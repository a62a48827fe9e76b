"""The training engine: exact resume after SIGKILL, DDP == one process, run-folder safety, bad options."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from mobilevision.errors import TrainingError
from mobilevision.train import TrainConfig
from mobilevision.train.engine import WarmupSchedule

pytestmark = pytest.mark.slow   # real zoo models end to end (the quick set skips them)

# One script for every subprocess run: toy classifier on the built-in digits at 16 px.
SCRIPT = textwrap.dedent('''
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from conftest import _register_toy
    from mobilevision.tasks.classify import ClassifyOptions, ClassifyTask
    from mobilevision.train import Callback, TrainConfig, fit

    _register_toy()
    run_dir, mode = sys.argv[1], sys.argv[2]

    class KillMidEpoch(Callback):
        def on_step_end(self, info):
            if info.epoch == 1 and info.step == 5:
                os.kill(os.getpid(), signal.SIGKILL)

    task = ClassifyTask(ClassifyOptions(model="toy_test_classifier", imgsz=16, loss=os.environ.get("LOSS", "ce")))
    cfg = TrainConfig(epochs=int(os.environ.get("EPOCHS", "3")), batch_size=32, optimizer="sgd", lr=0.05,
                      ema_decay=0.9, clip_grad=5.0, workers=int(os.environ.get("WORKERS", "0")))
    fit(task, cfg, run_dir, resume=(mode == "resume"), callbacks=[KillMidEpoch()] if mode == "kill" else [],
        show_progress=False)
''')


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    path = tmp_path_factory.mktemp("script") / "train_toy.py"
    path.write_text(SCRIPT.format(tests=os.path.dirname(os.path.dirname(__file__))))
    return path


def _run(cmd, env=None):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})})


def _weights(run_dir, name="last"):
    return load_file(str(run_dir / f"{name}.safetensors"))


def test_resume_after_sigkill_ends_with_the_same_weights(script, tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    env = {"WORKERS": "1"}  # a loader worker process too: its seeds must survive the kill as well
    assert _run([sys.executable, str(script), str(full), "new"], env).returncode == 0
    proc = _run([sys.executable, str(script), str(killed), "kill"], env)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert json.loads((killed / "last.json").read_text())["epoch"] == 1  # died inside epoch 2
    proc = _run([sys.executable, str(script), str(killed), "resume"], env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = _weights(full), _weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    state_a = torch.load(full / "last.state.pt", weights_only=True)
    state_b = torch.load(killed / "last.state.pt", weights_only=True)
    assert all(torch.equal(state_a["model"][k], state_b["model"][k]) for k in state_a["model"])
    rows = (killed / "metrics.csv").read_text().splitlines()
    assert len(rows) == 4 and [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]
    assert rows[1:] and (full / "best.safetensors").is_file()


def test_torchrun_two_processes_match_one_process(script, tmp_path):
    """Same global batch (32 = 2 x 16), gloo on CPU: DDP averages the gradients of the two halves."""
    one, two = tmp_path / "one", tmp_path / "two"
    env = {"EPOCHS": "1", "OMP_NUM_THREADS": "1"}
    assert _run([sys.executable, str(script), str(one), "new"], env).returncode == 0
    proc = _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
                 str(script), str(two), "new"], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((two / "last.json").read_text())["world_size"] == 2
    a, b = _weights(one), _weights(two)
    diffs = {k: (a[k] - b[k]).abs().max().item() for k in a}
    assert max(diffs.values()) < 1e-5, diffs
    moved = torch.load(one / "last.state.pt", weights_only=True)["model"]["head.weight"]
    assert not torch.allclose(moved, torch.zeros_like(moved))


def test_existing_run_is_never_overwritten_and_resume_needs_a_run(toy_name, tmp_path):
    from mobilevision.tasks.classify import ClassifyOptions, ClassifyTask
    from mobilevision.train import fit

    task = ClassifyTask(ClassifyOptions(model=toy_name, imgsz=16))
    cfg = TrainConfig(epochs=1, batch_size=256)
    with pytest.raises(TrainingError, match="nothing to resume"):
        fit(task, cfg, tmp_path / "empty", resume=True, show_progress=False)
    fit(task, cfg, tmp_path / "run", show_progress=False)
    before = (tmp_path / "run" / "last.safetensors").read_bytes()
    with pytest.raises(TrainingError, match="already holds a run"):
        fit(task, cfg, tmp_path / "run", show_progress=False)
    assert (tmp_path / "run" / "last.safetensors").read_bytes() == before
    with pytest.raises(TrainingError, match="fewer than one batch"):
        fit(task, TrainConfig(epochs=1, batch_size=4096), tmp_path / "big", show_progress=False)
    with pytest.raises(TrainingError, match="no CUDA GPU"):
        fit(task, TrainConfig(epochs=1, device="cuda"), tmp_path / "gpu", show_progress=False)


@pytest.mark.parametrize("kwargs, message", [
    ({"optimizer": "lamb"}, "unknown optimizer"), ({"schedule": "poly"}, "unknown schedule"),
    ({"epochs": 0}, "--epochs"), ({"batch_size": 0}, "--batch-size"), ({"lr": -1.0}, "--lr"),
    ({"milestones": (0.5, 1.0)}, "milestones"),
    ({"ema_decay": 1.0}, "--ema-decay"), ({"clip_grad": 0.0}, "--clip-grad"),
])
def test_bad_config(kwargs, message):
    with pytest.raises(TrainingError, match=message):
        TrainConfig(**kwargs)


def test_schedule_shapes():
    cos = WarmupSchedule("cosine", total_steps=110, warmup_steps=10, min_ratio=0.01)
    assert cos(0) == pytest.approx(1 / 11) and cos(9) == pytest.approx(10 / 11) and cos(10) == pytest.approx(1.0)
    assert cos(60) == pytest.approx(0.01 + 0.99 * 0.5) and cos(110) == pytest.approx(0.01)
    step = WarmupSchedule("step", total_steps=100, warmup_steps=0, min_ratio=0.0)
    assert (step(49), step(50), step(75)) == (1.0, pytest.approx(0.1), pytest.approx(0.01))
    assert WarmupSchedule("constant", 100, 0, 0.0)(99) == 1.0
    keras = WarmupSchedule("inverse_time", 100, 0, 0.0, inverse_time_rate=1e-4)   # Keras decay=1e-4
    assert (keras(0), keras(10_000)) == (1.0, pytest.approx(0.5))


def test_loss_divergence_is_a_clear_error(toy_name, tmp_path):
    from mobilevision.tasks.classify import ClassifyOptions, ClassifyTask
    from mobilevision.train import fit

    task = ClassifyTask(ClassifyOptions(model=toy_name, imgsz=16))
    with pytest.raises(TrainingError, match="the loss became"):
        fit(task, TrainConfig(epochs=1, batch_size=64, optimizer="sgd", lr=1e12, warmup_epochs=0), tmp_path / "r",
            show_progress=False)


def test_amp_on_cpu_trains_in_bfloat16(toy_name, tmp_path):
    from mobilevision.tasks.classify import ClassifyOptions, ClassifyTask
    from mobilevision.train import fit

    task = ClassifyTask(ClassifyOptions(model=toy_name, imgsz=16))
    result = fit(task, TrainConfig(epochs=1, batch_size=64, amp=True), tmp_path / "amp", show_progress=False)
    row = result.history[0]
    assert row["train_loss"] > 0 and 0 <= row["val_top1"] <= 1
    weights = load_file(str(result.last))
    assert all(t.dtype == torch.float32 for t in weights.values())  # autocast never changes the stored weights


def test_run_card_drives_create_model(toy_name, tmp_path):
    import mobilevision
    from mobilevision.errors import IncompatibleWeights
    from mobilevision.tasks.classify import ClassifyOptions, ClassifyTask
    from mobilevision.train import fit

    result = fit(ClassifyTask(ClassifyOptions(model=toy_name, imgsz=16)), TrainConfig(epochs=1, batch_size=128),
                 tmp_path / "r", show_progress=False)
    model = mobilevision.create_model(toy_name, weights=str(result.best))
    card = model.model_card
    assert card.labels == tuple(str(i) for i in range(10)) and card.input_size == (3, 16, 16) and card.crop_pct == 1.0
    with pytest.raises(IncompatibleWeights, match="was trained as 'toy_test_classifier'"):
        mobilevision.create_model("emo_1m", weights=str(result.best))


def test_long_run_estimate_and_duration_words():
    from mobilevision.train.engine import duration, long_run_note

    assert [duration(s) for s in (45, 750, 11_100)] == ["45 s", "12 min 30 s", "3 h 05 min"]
    assert long_run_note(0.01, 1000, torch.device("cpu"), "--steps") is None   # 10 s: nothing to say
    note = long_run_note(2.05, 70_000, torch.device("cpu"), "--steps")
    assert note.startswith("estimated 39 h 51 min for the 70,000 steps left on this CPU (2.05 s a step")
    assert "--steps N" in note and "--device gpu" in note
    assert "--device gpu" not in long_run_note(2.0, 70_000, torch.device("cuda", 0), "--epochs")


def test_a_run_estimates_its_length_and_says_when_it_learned_nothing(toy_name, tmp_path, monkeypatch):
    import io

    from rich.console import Console

    from mobilevision.tasks.classify import ClassifyOptions, ClassifyTask
    from mobilevision.train import engine, fit

    monkeypatch.setattr(engine, "LONG_RUN_S", -1.0)   # any run counts as long: the estimate must appear
    buf = io.StringIO()
    task = ClassifyTask(ClassifyOptions(model=toy_name, imgsz=16))
    fit(task, TrainConfig(epochs=2, batch_size=64, lr=1e-12, warmup_epochs=0.0), tmp_path / "run",
        show_progress=False, console=Console(file=buf, width=300))
    printed = buf.getvalue()
    assert printed.count("estimated ") == 1 and "--epochs N" in printed and "--device gpu" in printed
    steps = len(task.datasets(0)[0]) // 64
    assert f"for the {2 * steps - 6:,} steps left" in printed   # after 6 of 2 x steps
    assert "WARNING validation top-1" in printed and "at chance for 10 classes" in printed
