"""Hostile and careless images: 16-bit files, EXIF orientation, decompression bombs, odd arrays and face
boxes, through the runtime API, the CLI and the training readers; each case one readable error or the
same pixels as its 8-bit / upright twin."""
from __future__ import annotations

import logging
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from mobilevision.errors import DataError, InputMismatch

# ---------------------------------------------------------------- images written by the tests


def smooth_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random uint8 RGB picture (survives JPEG; not symmetric, so rotations change it)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))


def smooth_grey16(h: int = 40, w: int = 56, seed: int = 1) -> np.ndarray:
    """uint16 grey spanning most of the 16-bit range."""
    g = smooth_rgb(h, w, seed)[..., 0].astype(np.float64)
    return np.round(g / 255 * 64000 + 700).astype(np.uint16)


def png16(arr: np.ndarray) -> bytes:
    """A 16-bit PNG (grey, grey+alpha, RGB or RGBA by the channel count), written by hand: Pillow cannot."""
    h, w, c = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def write_16bit(path, kind: str) -> tuple:
    """(16-bit file, its 8-bit twin as a uint8 HxWx3 array) for ``kind``."""
    g16 = smooth_grey16()
    g8 = np.round(g16 / 257.0).astype(np.uint8)
    grey8 = np.repeat(g8[..., None], 3, axis=2)
    if kind == "png-I;16":
        Image.fromarray(g16).save(path)
        assert Image.open(path).mode == "I;16"
    elif kind == "tiff-I;16B":
        Image.frombytes("I;16B", (g16.shape[1], g16.shape[0]), g16.astype(">u2").tobytes()).save(path)
        assert Image.open(path).mode.startswith("I;16")
    elif kind == "tiff-I":
        Image.fromarray(g16.astype(np.int32), "I").save(path)
        assert Image.open(path).mode == "I"
    elif kind in ("png-rgb16", "png-rgba16"):
        rgb16 = (smooth_rgb(40, 56, 3).astype(np.uint16) * 257)
        arr = rgb16 if kind == "png-rgb16" else np.concatenate([rgb16, np.full((40, 56, 1), 9000, np.uint16)], 2)
        path.write_bytes(png16(arr))
        return path, (rgb16 // 257).astype(np.uint8)
    else:
        raise AssertionError(kind)
    return path, grey8


SIXTEEN = ["png-I;16", "tiff-I;16B", "tiff-I", "png-rgb16", "png-rgba16"]


def oriented_jpeg(path, orientation: int = 6, h: int = 48, w: int = 80) -> tuple:
    """(JPEG with EXIF orientation, its stored pixels as decoded, the upright pixels)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(smooth_rgb(h, w, 7)).save(path, quality=95, exif=exif)
    with Image.open(path) as im:
        stored = np.asarray(im.convert("RGB"))
    upright = {3: np.rot90(stored, 2), 6: np.rot90(stored, -1), 8: np.rot90(stored, 1),
               2: stored[:, ::-1], 4: stored[::-1]}[orientation]       # 6: turn 90 degrees clockwise to view
    return path, stored, np.ascontiguousarray(upright)


@pytest.fixture
def bomb(tmp_path, monkeypatch):
    """``make(level)``: a 64x64 PNG that is over Pillow's limit: "error" (> 2x MAX_IMAGE_PIXELS, Pillow
    raises) or "warning" (between 1x and 2x, Pillow only warns)."""
    def make(level: str):
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000 if level == "error" else 3000)
        p = tmp_path / f"bomb-{level}.png"
        Image.fromarray(smooth_rgb(64, 64)).save(p)
        return p
    return make


@pytest.fixture(scope="module")
def toy_onnx(toy_exports):
    return str(toy_exports["onnx"].path)


@pytest.fixture(scope="module")
def landmark_onnx(tmp_path_factory):
    import torch

    import mobilevision
    from mobilevision.export import export

    torch.manual_seed(0)
    model = mobilevision.create_model("landmarks_mnv2_035")
    return str(export(model, "onnx", out_dir=tmp_path_factory.mktemp("lm"), imgsz=64).path)


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg, msg
    return msg


# ---------------------------------------------------------------- runtime API and CLI: 16-bit, EXIF


@pytest.mark.parametrize("kind", SIXTEEN)
def test_16bit_file_classifies_like_its_8bit_twin(tmp_path, toy_onnx, kind):
    from mobilevision.runtime import load

    p16, twin = write_16bit(tmp_path / ("x.png" if kind.startswith("png") else "x.tif"), kind)
    with load(toy_onnx) as m:
        got, want = m.classify(p16, top_k=10), m.classify(twin, top_k=10)
    assert got[0].index == want[0].index
    np.testing.assert_allclose(sorted(c.score for c in got), sorted(c.score for c in want), atol=1e-2)
    assert [c.index for c in got] == [c.index for c in want]


def test_16bit_png_cli_prints_what_the_8bit_twin_prints(tmp_path, toy_onnx, capsys):
    from mobilevision.cli import main

    p16, twin = write_16bit(tmp_path / "x16.png", "png-I;16")
    Image.fromarray(twin).save(tmp_path / "x8.png")
    assert main(["classify", toy_onnx, str(p16)]) == 0
    out16 = capsys.readouterr().out
    assert main(["classify", toy_onnx, str(tmp_path / "x8.png")]) == 0
    assert out16 == capsys.readouterr().out and out16.strip()


@pytest.mark.parametrize("orientation", [6, 3, 8, 2])
def test_exif_oriented_jpeg_is_classified_upright(tmp_path, toy_onnx, orientation):
    from mobilevision.runtime import load

    p, stored, upright = oriented_jpeg(tmp_path / "o.jpg", orientation)
    with load(toy_onnx) as m:
        by_path = m.classify(p, top_k=10)
        with Image.open(p) as im:
            by_pil = m.classify(im, top_k=10)       # an Image.open() result is the same photo
        assert by_path == m.classify(upright, top_k=10) == by_pil
        assert by_path != m.classify(stored, top_k=10)   # the orientation mattered


def test_exif_oriented_jpeg_cli(tmp_path, toy_onnx, capsys):
    from mobilevision.cli import main

    p, _, upright = oriented_jpeg(tmp_path / "o.jpg")
    Image.fromarray(upright).save(tmp_path / "upright.png")
    assert main(["classify", toy_onnx, str(p)]) == 0
    got = capsys.readouterr().out
    assert main(["classify", toy_onnx, str(tmp_path / "upright.png")]) == 0
    assert got == capsys.readouterr().out


def test_exif_oriented_image_anomaly_overlay_is_upright(tmp_path):
    from mobilevision.runtime.tasks.classify import as_rgb_image

    p, _, upright = oriented_jpeg(tmp_path / "o.jpg")
    assert np.array_equal(np.asarray(as_rgb_image(p)), upright)
    assert np.array_equal(np.asarray(as_rgb_image(str(p))), upright)


@pytest.mark.parametrize("mode", ["1", "L", "P", "PA", "LA", "RGBA", "CMYK", "I;16", "I"])
def test_every_pil_mode_becomes_rgb8(mode):
    from mobilevision.runtime.tasks.classify import as_rgb_image

    base = Image.fromarray(smooth_rgb(8, 10))
    if mode == "I;16":
        im = Image.fromarray((np.asarray(base.convert("L")).astype(np.uint16) * 257))
    elif mode == "I":
        im = Image.fromarray(np.asarray(base.convert("L")).astype(np.int32) * 257, "I")
    else:
        im = base.convert(mode)
    out = np.asarray(as_rgb_image(im))
    assert out.dtype == np.uint8 and out.shape == (8, 10, 3)
    if mode in ("L", "LA", "I;16", "I"):
        assert np.array_equal(out[..., 0], np.asarray(base.convert("L")))


def test_float_image_is_refused(tmp_path):
    from mobilevision.runtime.tasks.classify import as_rgb_image

    Image.fromarray(np.ones((4, 4), np.float32), "F").save(tmp_path / "f.tif")
    for image in (tmp_path / "f.tif", Image.open(tmp_path / "f.tif")):
        with pytest.raises(InputMismatch, match="32-bit float") as e:
            as_rgb_image(image)
        one_line(e)


# ---------------------------------------------------------------- decompression bombs


@pytest.mark.parametrize("level", ["error", "warning"])
def test_bomb_api_is_one_line_input_mismatch(bomb, toy_onnx, level):
    from mobilevision.runtime import load

    p = bomb(level)
    with load(toy_onnx) as m, warnings.catch_warnings():
        warnings.simplefilter("error")            # a leaked DecompressionBombWarning fails the test
        with pytest.raises(InputMismatch, match="decompression") as e:
            m.classify(p)
    msg = one_line(e)
    assert p.name in msg and "MAX_IMAGE_PIXELS" in msg


@pytest.mark.parametrize("command", ["classify", "anomaly"])
@pytest.mark.parametrize("level", ["error", "warning"])
def test_bomb_cli_is_one_line(bomb, toy_onnx, one_line_error, command, level):
    from mobilevision.cli import main

    p = bomb(level)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one_line_error(main([command, toy_onnx, str(p)]), "decompression", p.name)


@pytest.mark.slow
def test_bomb_landmarks_cli_is_one_line(bomb, landmark_onnx, one_line_error):
    from mobilevision.cli import main

    p = bomb("error")
    one_line_error(main(["landmarks", landmark_onnx, str(p)]), "decompression", p.name)


# ---------------------------------------------------------------- arrays


@pytest.mark.parametrize("array, words", [
    (np.zeros((0, 0, 3), np.uint8), ["no pixels", "(0, 0, 3)"]),
    (np.zeros((0, 8, 3), np.uint8), ["no pixels"]),
    (np.zeros((8, 8), np.uint8), ["uint8 HWC", "np.repeat"]),
    (np.zeros((8, 8, 3), np.float32), ["float32", "astype(np.uint8)"]),
    (np.zeros((8, 8, 3), np.float64) + 0.5, ["float64"]),
    (np.array(7, np.uint8), ["shape ()"]),
    (np.zeros((8, 8, 3), bool), ["bool"]),
    (np.zeros((8, 8, 2), np.uint8), ["(8, 8, 2)"]),
    (np.zeros((2, 8, 8, 3), np.uint8), ["(2, 8, 8, 3)"]),
    ("not an image.png", ["cannot read image"]),
    (np.zeros((1, 100000, 3), np.uint8), ["too elongated"]),
], ids=["0x0", "0xW", "grey-2d", "float32", "float64", "0-d", "bool", "2-channel", "batch", "missing-file", "1x100000"])
def test_bad_arrays_are_one_line_input_mismatch(toy_onnx, array, words):
    from mobilevision.runtime import load

    with load(toy_onnx) as m, pytest.raises(InputMismatch) as e:
        m.classify(array)
    msg = one_line(e)
    assert all(w in msg for w in words), msg


def test_rgba_array_drops_alpha(toy_onnx):
    from mobilevision.runtime import load

    rgb = smooth_rgb(32, 32)
    rgba = np.concatenate([rgb, np.zeros((32, 32, 1), np.uint8)], axis=2)
    with load(toy_onnx) as m:
        assert m.classify(rgba) == m.classify(rgb)


# ---------------------------------------------------------------- face boxes


@pytest.mark.parametrize("box, words", [
    ((1000, 1000, 1100, 1100), ["does not overlap", "64x48"]),
    ((-300, 10, -100, 40), ["does not overlap"]),
    ((0, 0, 1e9, 1e9), ["too large", "64x48"]),
    ((-1e300, -1e300, 1e300, 1e300), ["too large"]),
    ((0, 0, 1000, 30), ["too large"]),
    ((0, 0, float("nan"), 20), ["4 finite numbers"]),
    ((0, 0, float("inf"), 20), ["4 finite numbers"]),
    ((10, 10, 5, 20), ["no area"]),
    ((10, 10, 10, 20), ["no area"]),
    ((1, 2, 3), ["4 finite numbers"]),
    (("a", 2, 3, 4), ["4 finite numbers"]),
    (5, ["4 finite numbers"]),
], ids=["far-outside", "left-of-image", "1e9", "1e300", "wide-strip", "nan", "inf", "negative-width",
        "zero-width", "three-values", "not-a-number", "not-a-sequence"])
def test_bad_face_boxes_are_one_line(landmark_onnx, box, words):
    from mobilevision.runtime import load

    with load(landmark_onnx) as m, pytest.raises(InputMismatch) as e:
        m.detect_landmarks(smooth_rgb(48, 64), box=box)
    msg = one_line(e)
    assert all(w in msg for w in words), msg


def test_box_partly_outside_is_still_used(landmark_onnx):
    from mobilevision.runtime import load

    with load(landmark_onnx) as m:
        pts = m.detect_landmarks(smooth_rgb(48, 64), box=(-30, -20, 40, 30))
    assert pts.shape == (68, 2) and np.isfinite(pts).all()


def test_bad_box_cli_is_one_line(tmp_path, landmark_onnx, one_line_error):
    from mobilevision.cli import main

    Image.fromarray(smooth_rgb(48, 64)).save(tmp_path / "f.png")
    one_line_error(main(["landmarks", landmark_onnx, str(tmp_path / "f.png"), "--box", "1000,1000,1100,1100"]),
                   "does not overlap", "64x48")
    one_line_error(main(["landmarks", landmark_onnx, str(tmp_path / "f.png"), "--box", "0,0,1e9,1e9"]), "too large")


def test_landmarks_of_an_oriented_photo_are_in_upright_pixels(tmp_path, landmark_onnx):
    from mobilevision.runtime import load
    from mobilevision.runtime.tasks.landmarks import write_overlay

    p, _, upright = oriented_jpeg(tmp_path / "o.jpg")
    with load(landmark_onnx) as m:
        assert np.array_equal(m.detect_landmarks(p), m.detect_landmarks(upright))
        write_overlay(p, m.detect_landmarks(p), tmp_path / "overlay.png")
    assert Image.open(tmp_path / "overlay.png").size == (upright.shape[1], upright.shape[0])


# ---------------------------------------------------------------- training readers


def _folder_with(tmp_path, image_folder, name: str, write) -> tuple:
    """An image folder whose train/cat/<name> is written by ``write(path)``; (root, data, index of it)."""
    from mobilevision.data import open_classification_data

    root = image_folder(tmp_path / "d")
    path = root / "train" / "cat" / name
    write(path)
    data = open_classification_data(root)
    return root, data, data.train.paths.index(path)


@pytest.mark.parametrize("kind", SIXTEEN)
def test_classification_reader_16bit(tmp_path, image_folder, kind):
    name = "x.png" if kind.startswith("png") else "x.tif"
    twin = {}
    _, data, i = _folder_with(tmp_path, image_folder, name, lambda p: twin.setdefault("a", write_16bit(p, kind)[1]))
    assert np.array_equal(np.asarray(data.train.image(i)), twin["a"])


def test_classification_reader_exif(tmp_path, image_folder):
    up = {}
    _, data, i = _folder_with(tmp_path, image_folder, "o.jpg", lambda p: up.setdefault("a", oriented_jpeg(p)[2]))
    assert np.array_equal(np.asarray(data.train.image(i)), up["a"])


@pytest.mark.parametrize("level", ["error", "warning"])
def test_classification_bomb_is_skipped_with_a_warning(tmp_path, image_folder, monkeypatch, caplog, level):
    from mobilevision.data.transforms import ClassificationDataset
    from mobilevision.export.metadata import Preprocessing

    root = image_folder(tmp_path / "d", size=(8, 8))     # 64 px: under every limit below
    big = root / "train" / "cat" / "big.png"
    Image.fromarray(smooth_rgb(64, 64)).save(big)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000 if level == "error" else 3000)
    from mobilevision.data import open_classification_data

    data = open_classification_data(root)
    ds = ClassificationDataset(data.train, Preprocessing(resize=8, crop=[8, 8], interpolation="bilinear"))
    i = data.train.paths.index(big)
    with caplog.at_level(logging.WARNING, logger="mobilevision.data"), warnings.catch_warnings():
        warnings.simplefilter("error")
        x, label = ds[i]
    assert x.shape == (3, 8, 8)
    assert "big.png" in caplog.text and "decompression" in caplog.text


@pytest.mark.parametrize("bad", ["corrupt", "bomb"])
def test_classification_folder_without_one_readable_image_is_one_data_error(tmp_path, image_folder,
                                                                            monkeypatch, bad):
    from mobilevision.data import open_classification_data
    from mobilevision.data.transforms import ClassificationDataset
    from mobilevision.export.metadata import Preprocessing

    root = image_folder(tmp_path / "d", per_class=2, size=(64, 64))
    for p in (root / "train").rglob("*.png"):
        if bad == "corrupt":
            p.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    if bad == "bomb":
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    data = open_classification_data(root)
    with pytest.raises(DataError) as e:
        ds = ClassificationDataset(data.train, Preprocessing(resize=8, crop=[8, 8], interpolation="bilinear"))
        ds[0]
    msg = one_line(e)
    assert "no readable image" in msg and str(root / "train") in msg


def test_anomaly_reader_16bit_exif_and_bomb(tmp_path, monkeypatch):
    from mobilevision.data.anomaly import load_mask, load_rgb, read_mvtec

    p16, twin = write_16bit(tmp_path / "g.png", "png-I;16")
    assert np.array_equal(load_rgb(p16), twin)
    p, _, upright = oriented_jpeg(tmp_path / "o.jpg")
    assert np.array_equal(load_rgb(p), upright)
    assert load_rgb(p, (24, 40)).shape == (24, 40, 3)
    # a mask with an orientation tag is turned like its image
    exif = Image.Exif()
    exif[0x0112] = 6
    m = np.zeros((4, 6), np.uint8)
    m[0, 5] = 255
    Image.fromarray(m).save(tmp_path / "m.png", exif=exif)
    assert np.argwhere(load_mask(tmp_path / "m.png")).tolist() == [[5, 3]]

    root = tmp_path / "mv"
    (root / "train" / "good").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(smooth_rgb(64, 64, i)).save(root / "train" / "good" / f"{i}.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match="decompression") as e:
            read_mvtec(root)
    assert "0.png" in one_line(e)


def test_anomaly_mask_size_check_uses_the_upright_size(tmp_path):
    from mobilevision.data.anomaly import read_mvtec

    root = tmp_path / "mv"
    (root / "train" / "good").mkdir(parents=True)
    (root / "test" / "crack").mkdir(parents=True)
    (root / "ground_truth" / "crack").mkdir(parents=True)
    for i in range(2):
        Image.fromarray(smooth_rgb(48, 80, i)).save(root / "train" / "good" / f"{i}.png")
    oriented_jpeg(root / "test" / "crack" / "000.jpg")                # stored 80x48, upright 48x80
    Image.fromarray(np.zeros((80, 48), np.uint8)).save(root / "ground_truth" / "crack" / "000_mask.png")
    assert read_mvtec(root).test[0].mask.name == "000_mask.png"


def test_landmark_reader_uses_upright_pixels_and_size(tmp_path, caplog):
    from mobilevision.data.landmarks import LandmarkSample, load_image
    from mobilevision.tasks.landmarks import _image_width

    p, _, upright = oriented_jpeg(tmp_path / "o.jpg")
    sample = LandmarkSample(p, np.zeros((68, 2)), source="o.pts")
    with caplog.at_level(logging.WARNING, logger="mobilevision.data"):
        assert np.array_equal(load_image(sample), upright)
        load_image(sample)
    assert _image_width(sample) == upright.shape[1] == 48
    assert caplog.text.count("EXIF orientation") == 1 and "o.jpg" in caplog.text

    p16, twin = write_16bit(tmp_path / "g.png", "png-I;16")
    assert np.array_equal(load_image(LandmarkSample(p16, np.zeros((68, 2)))), twin)


def test_landmark_reader_bomb_is_one_data_error(tmp_path, bomb):
    from mobilevision.data.landmarks import LandmarkSample, load_image
    from mobilevision.tasks.landmarks import _image_width

    p = bomb("warning")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for read in (load_image, _image_width):
            with pytest.raises(DataError, match="decompression") as e:
                read(LandmarkSample(p, np.zeros((68, 2))))
            assert p.name in one_line(e)


def test_isp_target_16bit_is_read_not_white(tmp_path):
    from mobilevision.data.isp import load_srgb

    p16, twin = write_16bit(tmp_path / "t.png", "png-I;16")
    got = load_srgb(p16, twin.shape[:2])
    assert np.allclose(got.numpy().transpose(1, 2, 0) * 255, twin, atol=1e-3)


def test_isp_target_bomb_is_one_data_error(tmp_path, bomb):
    from mobilevision.data.isp import load_srgb, read_mosaic

    p = bomb("error")
    for read in (load_srgb, read_mosaic):
        with pytest.raises(DataError, match="decompression") as e:
            read(p)
        one_line(e)
