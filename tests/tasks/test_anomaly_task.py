"""EfficientAD training on the engine (losses, statistics, schedule) and `train/eval anomaly` end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import mobilevision
from mobilevision.cli import main
from mobilevision.errors import DataError, TrainingError
from mobilevision.tasks.anomaly import (AnomalyOptions, AnomalyTask, EfficientADTrainingGraph,
                                        augment_for_autoencoder, penalty_image, recipe)
from mobilevision.testing import write_tiny_mvtec
from mobilevision.train.engine import WarmupSchedule


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("anomaly")
    data = write_tiny_mvtec(root / "data")
    run = root / "run"
    assert main(["train", "anomaly", "--data", str(data), "--steps", "2", "--workers", "0", "--out", str(run)]) == 0
    return data, run


@pytest.mark.slow
def test_training_graph_losses_match_the_paper():
    torch.manual_seed(0)
    d = mobilevision.create_model("efficientad_s")
    graph = EfficientADTrainingGraph(d)
    gen = torch.Generator().manual_seed(1)
    image, aug, pen = (torch.rand(1, 3, 256, 256, generator=gen) for _ in range(3))
    losses = graph(image, aug, pen)
    with torch.no_grad():
        x = d.normalize_image(image)
        dist = (d.teacher_features(x) - d.student(x)[:, :384]) ** 2
        q = torch.quantile(dist.flatten(), 0.999)
        torch.testing.assert_close(losses["hard"], dist[dist >= q].mean())
        assert (dist >= q).sum() <= dist.numel() * 0.0011  # only the hardest 0.1 %
        torch.testing.assert_close(losses["penalty"], (d.student(d.normalize_image(pen))[:, :384] ** 2).mean())
        xa = d.normalize_image(aug)
    d.autoencoder.eval()  # the AE's dropout is random in training mode; compare in eval mode
    losses = graph(image, aug, pen)
    with torch.no_grad():
        a = d.autoencoder(xa)
        torch.testing.assert_close(losses["ae"], ((d.teacher_features(xa) - a) ** 2).mean())
        torch.testing.assert_close(losses["stae"], ((a - d.student(xa)[:, 384:]) ** 2).mean())
    assert "penalty" not in graph(image, aug)


@pytest.mark.slow
def test_teacher_is_frozen_and_gets_no_gradient():
    task_model = mobilevision.create_model("efficientad_s")
    task_model.teacher.requires_grad_(False)
    losses = EfficientADTrainingGraph(task_model)(torch.rand(1, 3, 256, 256), torch.rand(1, 3, 256, 256))
    sum(losses.values()).backward()
    assert all(p.grad is None for p in task_model.teacher.parameters())
    assert all(p.grad is not None for p in task_model.student.parameters())


def test_recipe_is_the_papers_schedule():
    cfg = recipe(70_000)
    assert (cfg.optimizer, cfg.batch_size, cfg.base_lr, cfg.decay, cfg.milestones) == ("adam", 1, 1e-4, 1e-5, (0.95,))
    sched = WarmupSchedule(cfg.schedule, 70_000, 0, cfg.min_lr_ratio, cfg.milestones)
    assert sched(66_499) == 1.0 and sched(66_500) == pytest.approx(0.1) and sched(69_999) == pytest.approx(0.1)


def test_autoencoder_augmentation_and_penalty_image(tmp_path):
    image = torch.rand(3, 64, 64)
    outs = [augment_for_autoencoder(image, np.random.default_rng(s)) for s in range(20)]
    assert all(o.shape == image.shape and 0 <= o.min() and o.max() <= 1 for o in outs)
    assert len({round(float((o - image).abs().mean()), 6) for o in outs}) > 10  # random kinds and factors
    torch.testing.assert_close(augment_for_autoencoder(image, np.random.default_rng(3)),
                               augment_for_autoencoder(image, np.random.default_rng(3)))
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), np.uint8)).save(tmp_path / "p.jpg")
    p = penalty_image(tmp_path / "p.jpg", 256, np.random.default_rng(0))
    assert p.shape == (3, 256, 256) and 0 <= p.min() and p.max() <= 1


def test_options_and_data_errors(tmp_path):
    with pytest.raises(TrainingError, match="unknown anomaly model"):
        AnomalyOptions(model="padim")
    with pytest.raises(TrainingError, match="multiple of 4"):
        AnomalyOptions(imgsz=250)
    data = write_tiny_mvtec(tmp_path / "d", n_train=3)
    with pytest.raises(DataError, match="penalty"):
        AnomalyTask(AnomalyOptions(data=str(data), penalty_data=str(tmp_path / "nowhere")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        AnomalyTask(AnomalyOptions(data=str(data), penalty_data=str(tmp_path / "empty")))


@pytest.mark.slow
def test_training_run_saves_a_complete_detector(trained):
    data, run = trained
    card = json.loads((run / "last.json").read_text())
    assert card["task"] == "anomaly" and card["model"] == "efficientad_s" and card["train_images"] == 9
    assert card["val_images"] == 1  # 10 % of train/good, never the test set
    det = mobilevision.create_model("efficientad_s", weights=str(run / "last.safetensors"))
    assert not torch.equal(det.teacher_std, torch.ones_like(det.teacher_std))  # fitted before step 1
    q = det.quantiles_st
    assert 0 < q[0] < q[1] and not torch.equal(q, torch.tensor([0.0, 10.0]))  # fitted on the held-out normals
    rows = (run / "metrics.csv").read_text().splitlines()
    assert "train_hard" in rows[0] and "val_st_map" in rows[0] and len(rows) == 2
    # the validation also chose F1-optimal thresholds on the labelled test split, recomputable from the weights
    from mobilevision.data.anomaly import read_mvtec
    from mobilevision.tasks.anomaly import test_split_thresholds

    found = card["thresholds"]
    assert set(found) == {"image", "pixel", "image_f1", "pixel_f1", "source"} and "2 good, 2 anomalous" in found["source"]
    again, _ = test_split_thresholds(det.eval(), read_mvtec(data), 256, "cpu")
    assert found["image"] == pytest.approx(again["image"], rel=1e-5) and 0 < found["image_f1"] <= 1
    assert found["pixel"] == pytest.approx(again["pixel"], rel=1e-5)
    assert "val_image_threshold" in rows[0] and "val_test_image_auroc" in rows[0]


@pytest.mark.slow
def test_eval_anomaly_reports_metrics_overlays_and_summary(trained, capsys, tmp_path):
    data, run = trained
    assert main(["eval", "anomaly", "--weights", str(run / "last.safetensors"), "--out", str(tmp_path / "ev")]) == 0
    printed = capsys.readouterr().out
    assert "image AU-ROC" in printed and "pixel AU-ROC" in printed and "AU-PRO" in printed
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["n_good"] == 2 and summary["n_anomalous"] == 2 and 0 <= summary["au_pro"] <= 1
    assert len(summary["scores"]) == 4
    # the F1-optimal threshold separates the scores as F1 says, with > (the runtimes' rule)
    t = summary["thresholds"]
    assert "image threshold (F1-optimal)" in printed and t["image"] == summary["image_threshold"]
    scores = np.array([s["score"] for s in summary["scores"]])
    bad = np.array([s["defect"] != "good" for s in summary["scores"]])
    called = scores > t["image"]
    tp = (called & bad).sum()
    assert 2 * tp / (called.sum() + bad.sum()) == pytest.approx(t["image_f1"])
    pngs = sorted((tmp_path / "ev").rglob("*.png"))
    assert len(pngs) == 4 and pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_exported_trained_detector_runs_in_the_runtime(trained, tmp_path, capsys):
    from mobilevision.runtime import load

    data, run = trained
    assert main(["export", str(run / "last.safetensors"), "-t", "onnx", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    with load(tmp_path / "efficientad_s.onnx") as m:
        r = m.detect_anomaly(str(data / "test" / "square" / "000.png"))
        thresholds = m.metadata.anomaly
    assert r.anomaly_map.shape == (256, 256) and np.isfinite(r.score)
    card = json.loads((run / "last.json").read_text())["thresholds"]
    assert thresholds is not None and thresholds.image == card["image"] and thresholds.pixel == card["pixel"]
    assert r.threshold == card["image"] and r.is_anomalous == (r.score > card["image"])
    assert r.anomalous_pixels.shape == (256, 256) and r.anomalous_pixels.dtype == bool


def test_bad_cli_input(tmp_path, one_line_error):
    one_line_error(main(["train", "anomaly", "--data", str(tmp_path / "nope")]), "not found")
    (tmp_path / "flat").mkdir()
    one_line_error(main(["train", "anomaly", "--data", str(tmp_path / "flat")]), "train/good")
    one_line_error(main(["train", "anomaly", "--model", "padim"]), "unknown anomaly model")
    one_line_error(main(["eval", "anomaly", "--weights", str(tmp_path / "x.safetensors")]), "run card")
    one_line_error(main(["train", "anomaly", "--resume", "--out", str(tmp_path / "none")]), "nothing to resume")

