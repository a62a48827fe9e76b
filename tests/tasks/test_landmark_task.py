"""Landmark training end to end on a tiny rendered-face folder: both teachers, the KD student, the
`train landmarks` / `eval landmarks` commands, the exported detector, and bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import mobilevision
from mobilevision.cli import main
from mobilevision.data.faces import write_builtin_faces
from mobilevision.data.landmarks import read_landmark_folder
from mobilevision.errors import DataError
from mobilevision.tasks.landmarks import KDCriterion, LandmarkOptions, LandmarkTask, landmark_recipe

SIZE = 64
TRAIN = ["--imgsz", str(SIZE), "--epochs", "1", "--batch-size", "8", "--augmentation-factor", "1", "--workers", "0"]


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return write_builtin_faces(tmp_path_factory.mktemp("faces") / "set", 20, 4, seed=3, size=96)


@pytest.fixture(scope="module")
def teachers(faces, tmp_path_factory):
    """Both teachers, one epoch each through the CLI (a tiny MobileNetV2 stands in for EfficientNet-B3)."""
    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for role in ("teacher-tough", "teacher-tolerant"):
        rc = main(["train", "landmarks", "--role", role, "--model", "landmarks_mnv2_035", "--data", str(faces),
                   *TRAIN, "--out", str(root / role)])
        assert rc == 0
        runs[role] = root / role / "best.safetensors"
    return runs


@pytest.mark.slow
def test_teacher_runs_record_their_role_and_targets(teachers):
    tough = json.loads(teachers["teacher-tough"].with_suffix(".json").read_text())
    tolerant = json.loads(teachers["teacher-tolerant"].with_suffix(".json").read_text())
    assert tough["role"] == "teacher-tough" and tough["loss"] == "mse"
    assert tough["shape_model"] is None
    shape = tolerant["shape_model"]
    assert shape["variance"] == 0.9 and 1 <= shape["components"] < 136 and shape["clamp_sigmas"] == 3.0
    assert tolerant["points"] == 68 and tolerant["input_size"] == [3, SIZE, SIZE] and tolerant["num_classes"] is None


def test_tolerant_targets_are_the_softened_ground_truth(faces):
    task = LandmarkTask(LandmarkOptions(role="teacher-tolerant", model="landmarks_mnv2_035", data=str(faces), size=SIZE,
                                        augmentation_factor=2))
    train, _ = task.datasets(seed=0)
    item = train[0]
    soft, target = item["soft"].double().numpy(), item["target"].double().numpy()
    assert soft.shape == target.shape == (136,)
    assert 0 < np.abs(soft - target).max() < 0.2     # close to the GT, not equal (discarded components)
    np.testing.assert_allclose(task.shape_model.soften(target), soft, atol=1e-6)


@pytest.mark.slow
def test_student_with_kd_trains_and_keeps_teachers_out_of_its_state(faces, teachers, tmp_path, capsys):
    run = tmp_path / "student"
    kd = f"{teachers['teacher-tolerant']},{teachers['teacher-tough']}"     # any order: run cards say which
    assert main(["train", "landmarks", "--role", "student", "--model", "landmarks_mnv2_035", "--kd-from", kd,
                 "--data", str(faces), *TRAIN, "--out", str(run)]) == 0
    card = json.loads((run / "best.json").read_text())
    assert card["loss"] == "kd"
    assert set(card["kd_from"]) == {"teacher-tough", "teacher-tolerant"}
    assert all(len(v["sha256"]) == 64 for v in card["kd_from"].values())
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert "train_main" in header and "train_aloss_tough" in header and "val_nme" in header
    state = torch.load(run / "last.state.pt", weights_only=True)
    assert not any("_teachers" in k or "trunk" in k for k in state.get("criterion", {}))


def test_kd_criterion_runs_teachers_frozen_in_eval_mode(faces, teachers):
    task = LandmarkTask(LandmarkOptions(role="student", model="landmarks_mnv2_035", data=str(faces), size=SIZE,
                                        kd_from=[str(teachers["teacher-tough"]), str(teachers["teacher-tolerant"])]))
    crit = task.criterion()
    assert isinstance(crit, KDCriterion)
    crit.train()
    tough = crit._teachers["tough"]
    assert not tough.training and not any(p.requires_grad for p in tough.parameters())
    x = torch.rand(2, 3, SIZE, SIZE)
    a, b = crit.teachers(x)
    np.testing.assert_allclose(a.numpy(), crit.teachers(x)[0].numpy())          # deterministic: dropout off
    assert a.shape == b.shape == (2, 136)


def test_eval_writes_metrics_ced_and_overlays(teachers, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", "landmarks", "--weights", str(teachers["teacher-tough"]), "--weights",
                 str(teachers["teacher-tolerant"]), "--out", str(out), "--overlays", "2"]) == 0
    text = capsys.readouterr().out
    assert "NME %" in text and "teacher-tough" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_faces"] == 4 and len(summary["reports"]) == 2
    assert all(r["nme"] > 0 and 0 <= r["auc"] <= 1 for r in summary["reports"])
    assert (out / "ced.png").stat().st_size > 1000 and (out / "overlays.png").stat().st_size > 1000


def test_exported_student_returns_input_pixels(teachers, tmp_path):
    """The registered model is the exported graph: normalised output -> pixels inside the graph."""
    model = mobilevision.create_model("landmarks_mnv2_035", weights=str(teachers["teacher-tough"]))
    x = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        pixels = model(x)[0].numpy()
        normalised = model.net(x)[0].numpy().reshape(-1, 2)
    np.testing.assert_allclose(pixels, SIZE / 2 - SIZE * normalised, rtol=1e-6, atol=1e-4)
    assert model.model_card.input_size == (3, SIZE, SIZE) and model.model_card.num_classes == 68


def test_bad_input(faces, teachers, tmp_path, one_line_error):
    base = ["train", "landmarks", "--data", str(faces), *TRAIN]
    one_line_error(main([*base, "--role", "teacher"]), "--role", "teacher-tough")
    one_line_error(main([*base, "--role", "teacher-tough", "--kd-from", "a,b"]), "--kd-from is for the student")
    one_line_error(main([*base, "--kd-from", str(teachers["teacher-tough"])]), "two teachers")
    one_line_error(main([*base, "--kd-from", f"{tmp_path / 'no.safetensors'},{teachers['teacher-tough']}"]),
                   "no such file")
    tough = str(teachers["teacher-tough"])
    one_line_error(main([*base, "--model", "landmarks_mnv2_035", "--kd-from", f"{tough},{tough}"]),
                   "both files are teacher-tough")
    one_line_error(main([*base, "--points", "98"]), "68-point")
    one_line_error(main([*base, "--asm-variance", "90"]), "--asm-variance")
    one_line_error(main([*base, "--model", "efficientisp"]), "not a landmark model")
    one_line_error(main(["eval", "landmarks", "--weights", str(tmp_path / "none.safetensors")]), "run card")
    one_line_error(main(["eval", "landmarks", "--weights", tough, "--normaliser", "box"]), "--normaliser")
    bad = tmp_path / "bad"
    (bad / "train").mkdir(parents=True)
    src = sorted((faces / "train").glob("*.png"))[0]
    (bad / "train" / "a.png").write_bytes(src.read_bytes())
    (bad / "train" / "a.pts").write_text("version: 1\nn_points: 68\n{\n" + "1 2\n" * 67 + "}\n")
    one_line_error(main([*base, "--data", str(bad)]), "a.pts", "line")
    with pytest.raises(DataError, match="at least 4"):
        LandmarkTask(LandmarkOptions(data=str(faces)), train=read_landmark_folder(faces / "test")[:3], test=[])


@pytest.mark.slow
def test_export_a_trained_run_keeps_its_input_size(teachers, tmp_path, capsys):
    from mobilevision.export.metadata import read_sidecar

    assert main(["export", str(teachers["teacher-tough"]), "-t", "onnx", "--out", str(tmp_path)]) == 0
    md = read_sidecar(next(tmp_path.glob("*.onnx")))
    assert md.inputs[0].shape == [1, 3, SIZE, SIZE] and md.outputs[0].shape == [1, 68, 2]
    assert md.landmarks.points == 68 and md.parity["passed"]


def _wflw(root, n_train=6, n_test=2):
    """A tiny WFLW layout (98 points, boxes, attribute flags) over rendered-face images."""
    from PIL import Image

    from mobilevision.data.faces import render_face

    lists = root / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    lists.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        lines = []
        for i in range(n):
            name = f"0--x/{split}{i}.jpg"
            (root / "WFLW_images" / "0--x").mkdir(parents=True, exist_ok=True)
            Image.fromarray(render_face(rng, 96).image).save(root / "WFLW_images" / name)
            pts = rng.uniform(20, 76, (98, 2))
            pts[60], pts[72] = (25.0, 40.0), (70.0, 41.0)
            lines.append(" ".join([*(f"{v:.3f}" for v in pts.reshape(-1)), "15", "15", "80", "85",
                                   "0", "1", "0", "0", "1", "0", name]))
        (lists / f"list_98pt_rect_attr_{split}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.slow
def test_wflw_98_points_with_box_crops_and_inter_pupil(tmp_path, capsys):
    data = _wflw(tmp_path / "wflw")
    run = tmp_path / "run"
    assert main(["train", "landmarks", "--role", "teacher-tough", "--model", "landmarks_mnv2_035", "--data", str(data),
                 "--points", "98", "--imgsz", "48", "--epochs", "1", "--batch-size", "4", "--augmentation-factor",
                 "1", "--workers", "0", "--out", str(run)]) == 0
    card = json.loads((run / "best.json").read_text())
    assert card["points"] == 98 and card["num_classes"] is None     # a point count is not a class count
    assert main(["eval", "landmarks", "--weights", str(run / "best.safetensors"), "--crop", "box", "--normaliser",
                 "inter_pupil", "--out", str(tmp_path / "ev"), "--overlays", "0"]) == 0
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["test_faces"] == 2 and summary["crop"] == "box" and summary["normaliser"] == "inter_pupil"
    assert not (tmp_path / "ev" / "overlays.png").exists()
