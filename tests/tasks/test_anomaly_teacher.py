"""EfficientAD teacher pretraining (spec §2): data, loss, the engine run with a tiny random extractor,
the saved teacher feeding `train anomaly --teacher`, and the CLI's errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import mobilevision
from mobilevision.cli import main
from mobilevision.errors import DataError, TrainingError
from mobilevision.models.wide_resnet import ResNet
from mobilevision.tasks.anomaly import AnomalyOptions, AnomalyTask
from mobilevision.tasks.anomaly_teacher import (DistillationImages, NormalisedTargetMSE, TeacherDistillationGraph,
                                                TeacherOptions, TeacherPretrainTask, recipe)
from mobilevision.models.patch_target import PatchDescriptorTarget
from mobilevision.testing import write_tiny_mvtec
from mobilevision.train import fit
from mobilevision.train.checkpoint import load_state

SMALL = dict(imgsz=64, target_size=128, norm_images=4, workers=0)  # PDN 16x16 = layer2 grid of 128 px


def _photos(root, n=6, size=(150, 120)):
    """Random-texture 'photos' (a few nested in a sub-folder, as ImageNet's class folders)."""
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / ("n0001" if i % 2 else "n0002")
        folder.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, (size[1] // 10, size[0] // 10, 3), dtype=np.uint8)
        Image.fromarray(small).resize(size, Image.Resampling.BILINEAR).save(folder / f"img{i}.jpg")
    return root


def _tiny_extractor():
    """A ResNet with the WideResNets' layer2/layer3 channel counts (512 / 1024) but one narrow block per stage."""
    torch.manual_seed(0)
    net = ResNet((1, 1, 1, 1), num_classes=10, width_per_group=4)
    for m in net.modules():  # BN statistics of real activations, so no channel is dead after a ReLU
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
            m.reset_running_stats()
    with torch.no_grad():
        net.train()(torch.rand(8, 3, 128, 128))
    return net.eval()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return _photos(tmp_path_factory.mktemp("photos"))


def test_distillation_images_sizes_determinism_and_grayscale(photos):
    paths = sorted(photos.rglob("*.jpg"))
    ds = DistillationImages(paths, 64, 128, length=5, seed=3)
    a, b = ds[2], ds[2]
    assert a["image"].shape == (3, 64, 64) and a["target_image"].shape == (3, 128, 128)
    assert torch.equal(a["image"], b["image"]) and 0.0 <= float(a["image"].min()) <= float(a["image"].max()) <= 1.0
    ds.set_epoch(1)
    assert not torch.equal(ds[2]["image"], a["image"])  # another epoch draws other images / grayscale coins
    gray = DistillationImages(paths, 64, 128, length=3, seed=0, grayscale_p=1.0)[0]["target_image"]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    ordered = DistillationImages(paths, 64, 128, length=len(paths), seed=0, grayscale_p=0.0, shuffle=False)
    first = np.asarray(Image.open(paths[0]).convert("RGB").resize((64, 64), Image.Resampling.BILINEAR))
    assert torch.equal(ordered[0]["image"], torch.from_numpy(first.transpose(2, 0, 1).copy()).float() / 255)


def test_normalised_target_mse_by_hand():
    loss = NormalisedTargetMSE(channels=2)
    loss.target_mean.copy_(torch.tensor([1.0, -2.0]))
    loss.target_std.copy_(torch.tensor([2.0, 4.0]))
    psi = torch.tensor([3.0, 2.0]).view(1, 2, 1, 1)       # normalised: (1, 1)
    pred = torch.tensor([0.0, 3.0]).view(1, 2, 1, 1)      # errors 1 and -2 -> (1 + 4) / 2
    assert float(loss(psi, pred)) == pytest.approx(2.5)


def test_options_are_checked():
    with pytest.raises(TrainingError, match="pdn_s or pdn_m"):
        TeacherOptions(model="pdn_x", data="x")
    with pytest.raises(TrainingError, match="--data"):
        TeacherOptions()
    with pytest.raises(TrainingError, match="1:2 ratio"):
        TeacherOptions(data="x", imgsz=256, target_size=256)
    with pytest.raises(TrainingError, match="multiple of 4"):
        TeacherOptions(data="x", imgsz=30)
    cfg = recipe(60_000)
    assert (cfg.optimizer, cfg.base_lr, cfg.decay, cfg.schedule, cfg.batch_size, cfg.epochs) == \
        ("adam", 1e-4, 1e-5, "constant", 16, 60)


def test_task_refuses_bad_data_and_missing_extractor(tmp_path, photos):
    with pytest.raises(DataError, match="--data folder not found"):
        TeacherPretrainTask(TeacherOptions(data=str(tmp_path / "nope"), **SMALL), extractor=_tiny_extractor())
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        TeacherPretrainTask(TeacherOptions(data=str(tmp_path / "empty"), **SMALL), extractor=_tiny_extractor())
    _photos(tmp_path / "one", n=1)
    with pytest.raises(TrainingError, match="at least 2 images"):
        TeacherPretrainTask(TeacherOptions(data=str(tmp_path / "one"), **SMALL), extractor=_tiny_extractor())
    with pytest.raises(TrainingError, match="--teacher"):
        TeacherPretrainTask(TeacherOptions(data=str(photos), **SMALL))
    with pytest.raises(TrainingError, match="intermediate"):
        TeacherPretrainTask(TeacherOptions(data=str(photos), **SMALL), extractor=torch.nn.Conv2d(3, 3, 1))


def test_graph_names_a_grid_mismatch():
    pdn = mobilevision.create_model("pdn_s", padding=False)  # unpadded: 8x8 at 64 px, target grid 16x16
    graph = TeacherDistillationGraph(pdn, PatchDescriptorTarget(_tiny_extractor()))
    with pytest.raises(TrainingError, match="does not match the target"):
        graph(torch.rand(1, 3, 128, 128), torch.rand(1, 3, 64, 64))


@pytest.mark.slow
def test_pretraining_run_fits_target_statistics_learns_and_feeds_anomaly_training(tmp_path, photos):
    opts = TeacherOptions(data=str(photos), steps=12, **SMALL)
    cfg = recipe(12, batch_size=2, lr=1e-3, workers=0, device="cpu")
    task = TeacherPretrainTask(opts, batch_size=2, extractor=_tiny_extractor())
    assert len(task.val_paths) == 1 and len(task.train_paths) == 5
    run = tmp_path / "teacher"
    result = fit(task, cfg, run, show_progress=False)

    state = load_state(run)
    mean, std = state["criterion"]["target_mean"], state["criterion"]["target_std"]
    assert mean.shape == (384,) and bool((std > 0).all()) and float(mean.abs().sum()) > 0
    # μ_Ψ / σ_Ψ are the two-pass statistics of Ψ over the normalisation images
    from mobilevision.models.patch_target import fit_channel_normalisation
    from mobilevision.tasks.anomaly_teacher import NORM_EPOCH, _normalize
    images = DistillationImages(task.train_paths, 64, 128, 4, seed=0)
    images.set_epoch(NORM_EPOCH)
    ref_mean, ref_std = fit_channel_normalisation(lambda b: task.target(_normalize(b["target_image"])),
                                                  torch.utils.data.DataLoader(images, batch_size=2))
    torch.testing.assert_close(mean, ref_mean)
    torch.testing.assert_close(std, ref_std)

    hist = [r["train_distill"] for r in result.history]
    assert len(hist) == 1 and np.isfinite(hist[0]) and result.history[0]["val_distill_mse"] > 0
    card = mobilevision.checkpoints.read_run_card(result.last)
    assert card.task == "anomaly_teacher" and card.model == "pdn_s" and card.extras["padding_when_trained"] is True
    assert card.num_classes is None and card.points is None

    # the padded teacher's weights load into the unpadded PDN (same keys) ...
    teacher = mobilevision.create_model("pdn_s", weights=str(result.last))
    assert teacher.padding is False
    trained = mobilevision.create_model("pdn_s", padding=True)
    trained.load_state_dict(teacher.state_dict())
    with torch.no_grad():
        assert float(trained(torch.zeros(1, 3, 64, 64)).abs().sum()) > 0
    # ... and become the frozen teacher of `train anomaly --teacher`
    data = write_tiny_mvtec(tmp_path / "mvtec", n_train=4)
    det = AnomalyTask(AnomalyOptions(data=str(data), teacher=str(result.last), steps=1)).build_model()
    for k, v in teacher.state_dict().items():
        assert torch.equal(det.teacher.state_dict()[k], v)
    assert not any(p.requires_grad for p in det.teacher.parameters())


@pytest.mark.slow
def test_pretraining_lowers_the_held_out_loss(tmp_path, photos):
    """Distillation does what it should: 40 steps on 5 images bring the held-out loss down (1.0 would be
    predicting the normalised target's mean)."""
    opts = TeacherOptions(data=str(photos), steps=40, **SMALL)
    task = TeacherPretrainTask(opts, batch_size=2, extractor=_tiny_extractor())
    result = fit(task, recipe(40, batch_size=2, lr=1e-3, workers=0, device="cpu"), tmp_path / "r", show_progress=False)
    model = mobilevision.create_model("pdn_s", padding=True)
    torch.manual_seed(0)
    untrained = mobilevision.create_model("pdn_s", padding=True)  # the run's initial weights (same seed)
    model.load_state_dict(mobilevision.create_model("pdn_s", weights=str(result.last)).state_dict())
    _, val = task.datasets(0)
    loader = torch.utils.data.DataLoader(val, batch_size=1)
    before = task.evaluate(untrained.eval(), loader, torch.device("cpu"), task._criterion)["distill_mse"]
    after = result.history[-1]["val_distill_mse"]
    assert after < 0.8 * before, (before, after)  # measured: 0.93 -> 0.69


@pytest.mark.slow
def test_cli_errors_are_one_line(tmp_path, photos, one_line_error):
    rc = main(["train", "anomaly-teacher", "--data", str(photos), "--imgsz", "64", "--target-size", "128",
               "--out", str(tmp_path / "r")])
    one_line_error(rc, "--extractor-weights", "--teacher")
    rc = main(["train", "anomaly-teacher", "--out", str(tmp_path / "r")])
    one_line_error(rc, "--data")
    rc = main(["train", "anomaly-teacher", "--data", str(tmp_path / "missing"), "--extractor-weights", "w.pth",
               "--out", str(tmp_path / "r")])
    one_line_error(rc, "--data folder not found")
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    rc = main(["train", "anomaly-teacher", "--data", str(photos), "--extractor-weights", str(tmp_path / "bad.pth"),
               "--out", str(tmp_path / "r")])
    one_line_error(rc, "bad.pth")
    rc = main(["train", "anomaly-teacher", "--data", str(photos), "--extractor", "resnet18",
               "--extractor-weights", str(tmp_path / "bad.pth"), "--out", str(tmp_path / "r")])
    one_line_error(rc, "resnet18", "wide_resnet101_2")
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_cli_trains_and_resumes(tmp_path, photos, monkeypatch, capsys):
    """The command end to end, with the tiny extractor standing in for a WideResNet checkpoint."""
    import mobilevision.tasks.anomaly_teacher as teacher_mod

    monkeypatch.setattr(teacher_mod, "build_extractor", lambda name, weights: _tiny_extractor())
    run = tmp_path / "run"
    args = ["train", "anomaly-teacher", "--data", str(photos), "--extractor-weights", "stand-in.pth", "--steps", "2",
            "--batch-size", "2", "--imgsz", "64", "--target-size", "128", "--norm-images", "2", "--workers", "0",
            "--device", "cpu", "--out", str(run)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "--teacher" in captured.out and (run / "last.safetensors").is_file()
    state = load_state(run)
    assert state["task"]["options"]["norm_images"] == 2 and state["config"]["batch_size"] == 2
    # resuming a finished run changes nothing (and does not refit the target statistics)
    before = state["criterion"]["target_std"].clone()
    assert main(["train", "anomaly-teacher", "--resume", "--out", str(run)]) == 0
    assert torch.equal(load_state(run)["criterion"]["target_std"], before)
