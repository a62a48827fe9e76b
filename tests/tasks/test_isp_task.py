"""ISP training (paired baseline) and evaluation: reference rendering, data layouts, recipe, the
`train isp` / `eval isp` commands end to end on a tiny Zurich-style folder, and bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import mobilevision
from mobilevision.cli import main
from mobilevision.data.isp import read_isp_folder
from mobilevision.data.unprocess import demosaic_bilinear_rggb, to_sensor_values, unprocess
from mobilevision.errors import DataError, TrainingError
from mobilevision.data.isp import reference_rendering
from mobilevision.tasks.isp import IspOptions, isp_recipe, ms_ssim, psnr, quantise_8bit
from mobilevision.train.engine import build_optimizer


def _zrr(root, n_train=6, n_test=2, size=64):
    """A tiny Zurich RAW-to-RGB folder: 16-bit RGGB mosaics (10-bit values) and their photos (JPEG)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        (root / split / "huawei_raw").mkdir(parents=True)
        (root / split / "canon").mkdir(parents=True)
        for i in range(n):
            coarse = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
            rgb = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR))
            mosaic, _ = unprocess(rgb, rng)
            Image.fromarray(to_sensor_values(mosaic, 0, 1020)).save(root / split / "huawei_raw" / f"{i}.png")
            Image.fromarray(rgb).save(root / split / "canon" / f"{i}.jpg", quality=95)
    return root


@pytest.mark.parametrize("demosaic", ["bilinear", "menon2007"])
def test_reference_rendering_is_wb_clip_stretch_gamma(demosaic):
    mosaic = np.zeros((8, 8))
    mosaic[0::2, 0::2], mosaic[0::2, 1::2], mosaic[1::2, 0::2], mosaic[1::2, 1::2] = 400, 300, 300, 200
    out = reference_rendering(mosaic, demosaic)
    # constant planes R 400·1.6 = 640, G 300·1.2 = 360, B 200·1.4 = 280 (x 1/65535) -> stretched -> gamma
    expected = np.array([1.0, (360 - 280) / (640 - 280), 0.0]) ** (1 / 2.2)
    np.testing.assert_allclose(out[:, 4, 4].numpy(), expected, atol=1e-5)
    assert out.shape == (3, 8, 8)


def test_bilinear_demosaic_by_hand():
    m = np.arange(16, dtype=float).reshape(4, 4)
    rgb = demosaic_bilinear_rggb(m)
    assert rgb[0, 0, 0] == 0 and rgb[1, 1, 2] == 5          # known sites keep their value
    assert rgb[0, 1, 0] == pytest.approx((0 + 2) / 2)        # R between two R sites
    assert rgb[1, 1, 0] == pytest.approx((0 + 2 + 8 + 10) / 4)


def test_psnr_and_quantisation_by_hand():
    a, b = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.1)
    assert float(psnr(a, b)) == pytest.approx(20.0)
    assert float(quantise_8bit(torch.tensor(0.5011))) == pytest.approx(128 / 255)
    with pytest.raises(DataError, match="160 px"):
        ms_ssim(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))


def test_recipe_is_the_papers_optimiser():
    cfg = isp_recipe(250)
    assert cfg.epochs == 3 and cfg.batch_size == 32
    opt = build_optimizer(mobilevision.create_model("efficientisp"), cfg)
    assert isinstance(opt, torch.optim.Adam)
    g = opt.param_groups[0]
    assert g["lr"] == 5e-4 and g["betas"] == (0.5, 0.9) and g["weight_decay"] == 0.0


def test_options_and_layouts_are_checked(tmp_path):
    with pytest.raises(TrainingError, match="paired or unpaired"):
        IspOptions(mode="gan")
    with pytest.raises(TrainingError, match="--vgg19-weights"):
        IspOptions(mode="unpaired", vgg19_weights=str(tmp_path / "missing.pth"))
    with pytest.raises(TrainingError, match="efficientisp"):
        IspOptions(model="emo_1m")
    with pytest.raises(DataError, match="not found"):
        read_isp_folder(tmp_path / "nope")
    (tmp_path / "x" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="huawei_raw"):
        read_isp_folder(tmp_path / "x")
    root = _zrr(tmp_path / "zrr", n_train=2, n_test=1)
    (root / "train" / "canon" / "1.jpg").unlink()
    with pytest.raises(DataError, match="1.png"):
        read_isp_folder(root)


def test_builtin_set_splits_photos_three_ways():
    from mobilevision.data.isp import RAW_PHOTOS, TARGET_PHOTOS, TEST_PHOTOS, resolve_isp_data

    assert not set(RAW_PHOTOS) & set(TARGET_PHOTOS) and not set(TEST_PHOTOS) & (set(RAW_PHOTOS) | set(TARGET_PHOTOS))
    d = resolve_isp_data(None)
    assert len(d.train_raw) == len(d.train_aligned) == 480 and len(d.train_targets) == 480 and len(d.test_raw) == 32
    raw = np.asarray(Image.open(d.train_raw[0]))
    assert raw.dtype == np.uint16 and raw.shape == (128, 128) and raw.max() <= 1023
    info = json.loads((d.root / "info.json").read_text())
    assert info["pattern"] == "RGGB"


@pytest.mark.slow
def test_train_and_eval_commands_end_to_end(tmp_path, capsys):
    data = _zrr(tmp_path / "zrr")
    run = tmp_path / "run"
    assert main(["train", "isp", "--data", str(data), "--steps", "3", "--batch-size", "2", "--workers", "0",
                 "--device", "cpu", "--out", str(run)]) == 0
    card = mobilevision.checkpoints.read_run_card(run / "best.safetensors")
    assert card.task == "isp" and card.extras["mode"] == "paired" and card.raw_white_level == 1020.0
    assert card.num_classes is None and card.raw_black_level == (0.0,) * 4
    assert main(["eval", "isp", "--weights", str(run / "best.safetensors"), "--out", str(tmp_path / "ev")]) == 0
    text = capsys.readouterr().out
    assert "naive demosaic" in text and "efficientisp paired" in text
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert [r["name"] for r in summary["reports"]] == ["naive demosaic", "efficientisp paired"]
    assert summary["reports"][1]["ms_ssim"] is None and summary["test_images"] == 2  # 64 px: too small for MS-SSIM
    assert (tmp_path / "ev" / "grid.png").is_file()
    # the trained weights export with the levels they were trained on
    from mobilevision.export import export
    from mobilevision.export.metadata import read_sidecar
    art = export("efficientisp", "onnx", weights=str(run / "best.safetensors"), out_dir=tmp_path / "exp", imgsz=32)
    raw = read_sidecar(art.path).raw
    assert raw.black_level == [0.0] * 4 and raw.white_level == 1020.0


def test_commands_reject_bad_input(tmp_path, one_line_error):
    rc = main(["train", "isp", "--mode", "gan", "--out", str(tmp_path / "r")])
    one_line_error(rc, "paired or unpaired")
    rc = main(["train", "isp", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")])
    one_line_error(rc, "not found")
    (tmp_path / "w.safetensors").write_bytes(b"x")
    rc = main(["eval", "isp", "--weights", str(tmp_path / "w.safetensors")])
    one_line_error(rc, "run card")
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_unpaired_training_runs_and_records_random_feature_networks(tmp_path):
    from mobilevision.tasks.isp import IspTask
    from mobilevision.train import fit

    data = _zrr(tmp_path / "zrr", n_train=4, n_test=1)
    task = IspTask(IspOptions(mode="unpaired", data=str(data), steps=2), batch_size=2)
    result = fit(task, isp_recipe(2, batch_size=2, workers=0, device="cpu"), tmp_path / "run", show_progress=False)
    row = result.history[0]
    for term in ("content", "tv", "texture_64", "texture_256", "colour"):
        assert np.isfinite(row[f"train_{term}"]) and row[f"train_gnorm_{term}"] > 0
    assert row["train_gnorm_content"] > 1e-6          # random VGG keeps a usable content gradient
    card = mobilevision.checkpoints.read_run_card(result.last)
    assert card.extras["mode"] == "unpaired"
    assert card.extras["feature_networks_pretrained"] == {"vgg19": False, "alexnet": False, "vit_b_16": False}
    assert card.extras["reference_demosaic"] == "menon2007"
    # discriminators stepped at step 0 (their Adam state is saved with the run)
    from mobilevision.train.checkpoint import load_state
    extra = load_state(tmp_path / "run")["criterion"]["_extra_state"]
    assert all(extra[name]["state"] for name in ("d_texture_64", "d_texture_256", "d_colour"))


def test_the_grid_spreads_its_rows_over_the_test_set():
    """The built-in test set lists 16 crops of one photo, then 16 of the next: rows taken from the front would
    all show the first photo."""
    from mobilevision.tasks.isp import spread

    assert spread(32, 4) == [0, 10, 21, 31]   # both photos, crops far apart
    assert spread(3, 4) == [0, 1, 2] and spread(10, 1) == [0] and spread(10, 0) == []
    assert len(set(spread(1000, 7))) == 7
