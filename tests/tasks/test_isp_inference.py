"""`mobilevision isp PHOTO.dng`: a DNG the test writes itself (pidng), read back through LibRaw, rendered
in exact tiles; the runtime's process_raw on an exported artifact gives the same pixels."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import mobilevision
from mobilevision.cli import main
from mobilevision.data.raw import read_raw
from mobilevision.errors import DataError
from mobilevision.runtime.tasks.isp import normalize_raw, pack_bayer, to_uint8
from mobilevision.tasks.isp import process_raw_file, render_mosaic
from mobilevision.testing import write_dng


def _mosaic(h=96, w=136, seed=0):
    """Smooth scene values in [black, white] (10-bit sensor), some below black as real sensors give."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(40, 1023, (h // 8, w // 8))
    smooth = np.asarray(Image.fromarray(coarse.astype(np.float32), mode="F").resize((w, h), Image.Resampling.BILINEAR))
    return np.clip(smooth + rng.normal(0, 4, (h, w)), 0, 1023).astype(np.uint16)


@pytest.fixture(scope="module")
def dng(tmp_path_factory):
    path = tmp_path_factory.mktemp("raw") / "photo.dng"
    mosaic = _mosaic()
    write_dng(path, mosaic, pattern="GBRG", black_level=64, white_level=1023)
    return path, mosaic


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """EfficientISP weights with outputs spread over [0, 1], saved as the paper's released files are."""
    torch.manual_seed(0)
    model = mobilevision.create_model("efficientisp")
    with torch.no_grad():
        model.generator.conv3.weight.mul_(8.0)
        model.generator.conv3.bias.add_(0.4)
    path = tmp_path_factory.mktemp("w") / "Efficient_ISP_unpaired.pth"
    torch.save(model.generator.state_dict(), path)
    return path


def test_read_raw_gives_the_written_mosaic_and_levels(dng):
    path, mosaic = dng
    raw = read_raw(path)
    assert raw.pattern == "GBRG" and raw.black_level == [64.0] * 4 and raw.white_level == 1023.0
    assert np.array_equal(raw.mosaic, mosaic)


def test_render_is_tiled_exactly(dng, weights, tmp_path):
    raw = read_raw(dng[0])
    model = mobilevision.create_model("efficientisp", weights=str(weights))
    tiled = render_mosaic(model, raw, tile=16)
    whole = render_mosaic(model, raw, tile=0)
    assert tiled.tiles > 4 and whole.tiles == 1 and tiled.rgb.shape == (96, 136, 3)
    # float results agree to ~1e-7 (tests/runtime/test_isp_raw.py); 8-bit rounding may flip a level
    diff = np.abs(tiled.rgb.astype(int) - whole.rgb.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    x = normalize_raw(pack_bayer(dng[1], "GBRG"), 64, 1023)
    with torch.no_grad():
        direct = to_uint8(model(torch.from_numpy(x[None]))[0].numpy())
    assert np.array_equal(whole.rgb, direct) and direct.std() > 10  # not a flat image
    out = tmp_path / "out.png"
    process_raw_file(dng[0], out, weights=str(weights), tile=16)
    assert np.abs(np.asarray(Image.open(out)).astype(int) - direct).max() <= 1


def test_rmfa_renders_through_the_same_path(dng):
    torch.manual_seed(0)
    r = render_mosaic(mobilevision.create_model("rmfa_net_tiny"), read_raw(dng[0]), tile=32)
    assert r.rgb.shape == (96, 136, 3) and r.tiles > 1


@pytest.mark.slow
def test_runtime_process_raw_matches_torch(dng, weights, tmp_path):
    from mobilevision.export import export
    from mobilevision.runtime import load

    model = mobilevision.create_model("efficientisp", weights=str(weights))
    artifact = export(model, "onnx", out_dir=tmp_path, imgsz=32).path
    with load(artifact) as m:
        rgb = m.process_raw(dng[1], "GBRG", black_level=64, white_level=1023)
        assert rgb.shape == (96, 136, 3) and rgb.dtype == np.float32
        x = normalize_raw(pack_bayer(dng[1], "GBRG"), 64, 1023)
        with torch.no_grad():
            ref = model(torch.from_numpy(x[None]))[0].numpy().transpose(1, 2, 0)
        np.testing.assert_allclose(rgb, ref, atol=1e-5)
        with pytest.raises(mobilevision.errors.InputMismatch, match="smaller --imgsz"):
            m.process_raw(dng[1][:40, :40], "GBRG")


def test_cli_renders_a_dng(dng, weights, tmp_path, capsys):
    out = tmp_path / "photo.png"
    assert main(["isp", str(dng[0]), "-o", str(out), "--weights", str(weights), "--tile", "16"]) == 0
    assert "GBRG" in capsys.readouterr().out
    assert Image.open(out).size == (136, 96)


def test_cli_errors_are_one_line(dng, weights, tmp_path, one_line_error):
    rc = main(["isp", str(tmp_path / "missing.dng"), "-o", str(tmp_path / "o.png")])
    one_line_error(rc, "not found", "missing.dng")
    fake = tmp_path / "fake.dng"
    Image.new("RGB", (16, 16)).save(fake, format="PNG")
    rc = main(["isp", str(fake), "-o", str(tmp_path / "o.png")])
    one_line_error(rc, "fake.dng", "RAW")
    rc = main(["isp", str(dng[0]), "-o", str(tmp_path / "o.gif")])
    one_line_error(rc, ".png")
    rc = main(["isp", str(dng[0]), "-o", str(tmp_path / "o.png"), "--model", "robustisp", "--weights", str(weights)])
    one_line_error(rc, "Efficient_ISP_unpaired.pth")
    rc = main(["isp", str(dng[0]), "-o", str(tmp_path / "o.png"), "--model", "emo_1m"])
    one_line_error(rc, "emo_1m", "ISP model")
    rc = main(["isp", str(dng[0]), "-o", str(tmp_path / "o.png"), "--tile", "7"])
    one_line_error(rc, "--tile")
    assert not (tmp_path / "o.png").exists()


def test_reader_refuses_non_bayer_files(tmp_path):
    path = tmp_path / "x.nef"
    path.write_bytes(b"\0" * 64)
    with pytest.raises(DataError, match="x.nef"):
        read_raw(path)


def test_bad_raw_inputs_are_one_line_errors(weights, tmp_path, one_line_error):
    """A linear (demosaiced) DNG, a JPEG passed as RAW, and an odd-sized mosaic (cropped to even, not an error)."""
    rng = np.random.default_rng(1)
    linear = write_dng(tmp_path / "linear.dng", rng.integers(0, 1023, (32, 48, 3)))
    one_line_error(main(["isp", str(linear), "-o", str(tmp_path / "o.png")]), "linear.dng", "Bayer")
    jpeg = tmp_path / "photo.jpg"
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(jpeg)
    one_line_error(main(["isp", str(jpeg), "-o", str(tmp_path / "o.png")]), "photo.jpg", "RAW")
    odd = write_dng(tmp_path / "odd.dng", rng.integers(64, 1023, (37, 51)))
    assert main(["isp", str(odd), "-o", str(tmp_path / "odd.png"), "--weights", str(weights), "--tile", "16"]) == 0
    assert Image.open(tmp_path / "odd.png").size == (50, 36)
