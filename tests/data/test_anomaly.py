"""Anomaly data: MVTec layout reading, its errors, pixel conversion rules, the validation split,
and the built-in texture benchmark (exact masks, determinism, atomic reuse)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mobilevision.data import anomaly
from mobilevision.data.anomaly import (BUILTIN_CATEGORIES, DEFECT_KINDS, AnomalyImages, add_defect, build_builtin,
                                       builtin_root, load_mask, load_rgb, read_mvtec, resolve_anomaly_data,
                                       split_validation)
from mobilevision.errors import DataError


def _png(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (Image.fromarray(arr) if mode is None else Image.fromarray(arr).convert(mode)).save(path)
    return path


def _img(h: int = 24, w: int = 32, value: int = 100) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


def _mask(h: int = 24, w: int = 32) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[4:9, 5:12] = 255
    return m


def make_mvtec(root: Path, test: bool = True) -> Path:
    """A tiny MVTec AD category: 5 train, 2 test good, crack (2, MVTec masks), dent (1, VisA-style mask)."""
    for i in range(5):
        _png(root / "train" / "good" / f"{i:03d}.png", _img(value=10 * i))
    (root / "train" / "good" / ".hidden.png").write_bytes(b"not an image")
    (root / "train" / "good" / "notes.txt").write_text("ignored")
    if test:
        for i in range(2):
            _png(root / "test" / "good" / f"{i:03d}.png", _img())
            _png(root / "test" / "crack" / f"{i:03d}.png", _img(value=200))
            _png(root / "ground_truth" / "crack" / f"{i:03d}_mask.png", _mask())
        _png(root / "test" / "dent" / "000.png", _img())
        _png(root / "ground_truth" / "dent" / "000.png", _mask())
    return root


# ---------------------------------------------------------------- layout

def test_read_mvtec_layout(tmp_path):
    root = make_mvtec(tmp_path / "bottle")
    data = read_mvtec(root)
    assert data.name == "bottle" and data.root == root
    assert [p.name for p in data.train] == [f"{i:03d}.png" for i in range(5)]
    assert [(s.defect, s.path.name, s.label) for s in data.test] == [
        ("crack", "000.png", 1), ("crack", "001.png", 1), ("dent", "000.png", 1),
        ("good", "000.png", 0), ("good", "001.png", 0)]
    masks = {(s.defect, s.path.name): s.mask for s in data.test}
    assert masks[("crack", "001.png")] == root / "ground_truth" / "crack" / "001_mask.png"
    assert masks[("dent", "000.png")] == root / "ground_truth" / "dent" / "000.png"
    assert masks[("good", "000.png")] is None
    assert data.defects == ["crack", "dent"]
    assert read_mvtec(root) == data  # deterministic


def test_training_only_folder(tmp_path):
    data = read_mvtec(make_mvtec(tmp_path / "c", test=False))
    assert len(data.train) == 5 and data.test == []


def test_resolve_picks_category_from_a_collection(tmp_path):
    make_mvtec(tmp_path / "all" / "bottle")
    make_mvtec(tmp_path / "all" / "cable")
    assert resolve_anomaly_data(str(tmp_path / "all"), "cable").name == "cable"
    assert resolve_anomaly_data(tmp_path / "all" / "bottle", None).name == "bottle"
    with pytest.raises(DataError, match="several categories .*bottle, cable"):
        resolve_anomaly_data(tmp_path / "all", None)
    with pytest.raises(DataError, match="no category 'screw' .*found bottle, cable"):
        resolve_anomaly_data(tmp_path / "all", "screw")


@pytest.mark.parametrize("case, message", [
    ("missing", "anomaly dataset folder not found"),
    ("no_train", "no train/good folder .*expected the MVTec AD layout train/good/"),
    ("empty_train", "train/good has no images"),
    ("missing_mask", r"no mask for anomalous test image .*crack/001.png: expected .*ground_truth/crack/001_mask.png"),
    ("mask_size", r"mask .*000_mask.png is 16x16 px but its image .* is 32x24"),
    ("corrupt_train", r"cannot read image .*002.png"),
    ("corrupt_mask", r"cannot read image .*000_mask.png"),
])
def test_layout_errors(tmp_path, case, message):
    root = tmp_path / "cat"
    if case != "missing":
        make_mvtec(root)
    if case == "no_train":
        (root / "train" / "good").rename(root / "train" / "ok")
    elif case == "empty_train":
        for p in (root / "train" / "good").glob("*.png"):
            p.unlink()
    elif case == "missing_mask":
        (root / "ground_truth" / "crack" / "001_mask.png").unlink()
    elif case == "mask_size":
        _png(root / "ground_truth" / "crack" / "000_mask.png", np.zeros((16, 16), np.uint8))
    elif case == "corrupt_train":
        (root / "train" / "good" / "002.png").write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    elif case == "corrupt_mask":
        (root / "ground_truth" / "crack" / "000_mask.png").write_bytes(b"junk")
    with pytest.raises(DataError, match=message) as e:
        read_mvtec(root)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- pixels

def test_grey_palette_rgba_conversion(tmp_path):
    grey = np.array([[0, 7, 128, 255]], np.uint8)
    assert (load_rgb(_png(tmp_path / "g.png", grey)) == grey[..., None].repeat(3, -1)).all()

    rgba = np.array([[[10, 20, 30, 0], [200, 100, 50, 255]]], np.uint8)
    assert Image.open(_png(tmp_path / "a.png", rgba)).mode == "RGBA"
    assert load_rgb(tmp_path / "a.png").tolist() == [[[10, 20, 30], [200, 100, 50]]]  # alpha dropped, not composited

    pal = Image.fromarray(np.array([[0, 1]], np.uint8), "P")
    pal.putpalette([255, 0, 0, 0, 0, 255])
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png")
    assert load_rgb(tmp_path / "p.png").tolist() == [[[255, 0, 0], [0, 0, 255]]]


def test_sixteen_bit_scales_by_bit_depth_not_max(tmp_path):
    values = np.array([[0, 257, 1000, 32896, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode == "I;16"
    out = load_rgb(tmp_path / "d.png")
    assert out.dtype == np.uint8 and out.shape == (1, 5, 3)
    assert out[0, :, 0].tolist() == [0, 1, 4, 128, 255]   # Pillow's own convert("L") would clip 1000 to 255
    assert (out[..., 0] == out[..., 2]).all()
    Image.fromarray(values.astype(np.int32), "I").save(tmp_path / "i.tif")
    assert load_rgb(tmp_path / "i.tif")[0, :, 1].tolist() == [0, 1, 4, 128, 255]


def test_resize_stretches_and_rejects_tiny_images(tmp_path):
    src = np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    p = _png(tmp_path / "x.png", src)
    assert load_rgb(p, 32).shape == (32, 32, 3)
    assert load_rgb(p, (40, 20)).shape == (40, 20, 3)
    flat = _png(tmp_path / "flat.png", _img(60, 90, 77))
    assert (load_rgb(flat, (30, 45)) == 77).all()   # bilinear keeps a constant image constant
    with pytest.raises(DataError, match=r"x.png is 90x60 px, far smaller than the 256x256 input; "
                                        r"upsampling it 4x would invent detail: use larger images or a smaller --imgsz"):
        load_rgb(p, 256)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0nope")
    with pytest.raises(DataError, match=r"cannot read image .*bad.jpg"):
        load_rgb(tmp_path / "bad.jpg", 32)


def test_load_mask_any_nonzero_and_nearest(tmp_path):
    m = np.zeros((8, 8), np.uint8)
    m[0:4, 0:4] = 1          # class index 1 (VisA-style masks), not 255
    m[6, 6] = 255
    p = _png(tmp_path / "m.png", m)
    assert load_mask(p).sum() == 17 and load_mask(p).dtype == bool
    big = load_mask(p, 16)
    assert big.shape == (16, 16) and big.sum() == 4 * 17   # NEAREST: each pixel becomes a 2x2 block
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[1, 2] = (0, 0, 9)
    assert np.argwhere(load_mask(_png(tmp_path / "c.png", rgb))).tolist() == [[1, 2]]


# ---------------------------------------------------------------- validation split

def test_split_validation_is_deterministic_disjoint_and_from_train(tmp_path):
    data = read_mvtec(make_mvtec(tmp_path / "c"))
    paths = [Path(f"train/{i:03d}.png") for i in range(37)]
    tr, va = split_validation(paths)
    assert (tr, va) == split_validation(paths)
    assert len(va) == 37 - int(0.9 * 37) == 4
    assert not set(tr) & set(va) and sorted(tr + va) == paths
    assert split_validation(paths, seed=7) != (tr, va)
    # same membership as the reference: torch random_split(..., Generator().manual_seed(42))
    ref_tr, ref_va = torch.utils.data.random_split(range(37), [33, 4], torch.Generator().manual_seed(42))
    assert va == [paths[i] for i in sorted(ref_va)]

    tr, va = split_validation(data.train)
    assert len(tr) == 4 and len(va) == 1 and set(va) <= set(data.train)
    assert not set(va) & {s.path for s in data.test}
    assert [len(x) for x in split_validation(paths[:2])] == [1, 1]
    with pytest.raises(DataError, match="needs at least 2"):
        split_validation(paths[:1])


# ---------------------------------------------------------------- dataset

def test_anomaly_images_tensors(tmp_path):
    data = read_mvtec(make_mvtec(tmp_path / "c"))
    train = AnomalyImages(data.train, 16)
    x = train[3]["image"]
    assert set(train[3]) == {"image"}
    assert x.dtype == torch.float32 and x.shape == (3, 16, 16)
    assert torch.allclose(x, torch.full_like(x, 30 / 255))   # no mean/std normalisation

    test = AnomalyImages.from_samples(data.test, (12, 16))
    batch = next(iter(torch.utils.data.DataLoader(test, batch_size=len(test))))
    assert batch["image"].shape == (5, 3, 12, 16) and 0 <= batch["image"].min() and batch["image"].max() <= 1
    assert batch["label"].tolist() == [1, 1, 1, 0, 0]
    assert batch["mask"].shape == (5, 1, 12, 16) and set(batch["mask"].unique().tolist()) == {0.0, 1.0}
    assert batch["mask"][3:].sum() == 0 and (batch["mask"][:3].flatten(1).sum(1) > 0).all()

    flipped = AnomalyImages(data.train, 16, augment=lambda t: 1 - t)
    assert torch.allclose(flipped[3]["image"], 1 - x)


# ---------------------------------------------------------------- built-in benchmark

@pytest.fixture(scope="module")
def gravel(tmp_path_factory) -> Path:
    return build_builtin("gravel", tmp_path_factory.mktemp("builtin") / "gravel", seed=0)


@pytest.fixture
def small_builds(monkeypatch):
    """Fewer images per folder, to keep repeated builds fast."""
    monkeypatch.setattr(anomaly, "N_TRAIN", 3)
    monkeypatch.setattr(anomaly, "N_TEST_GOOD", 2)
    monkeypatch.setattr(anomaly, "N_PER_DEFECT", 1)


@pytest.mark.slow
def test_builtin_layout_and_masks(gravel):
    data = read_mvtec(gravel)
    assert len(data.train) == 60 and data.defects == sorted(DEFECT_KINDS)
    assert sum(s.label == 0 for s in data.test) == 20 and sum(s.label for s in data.test) == 5 * 8
    for s in data.test:
        assert (s.mask is None) == (s.label == 0)
        img = np.asarray(Image.open(s.path))
        assert img.shape == (256, 256, 3) and img.dtype == np.uint8
        if s.mask is not None:
            m = np.asarray(Image.open(s.mask))
            assert m.shape == (256, 256) and set(np.unique(m).tolist()) == {0, 255}
            assert 0.002 < (m > 0).mean() < 0.20
    meta = json.loads((gravel / "builtin.json").read_text())
    assert (meta["category"], meta["seed"], meta["version"]) == ("gravel", 0, 1)
    assert meta["counts"]["train/good"] == 60 and meta["counts"]["ground_truth/hole"] == 8
    assert not list(gravel.parent.glob(".*"))   # no temporary folder left behind


def test_builtin_test_normals_are_not_train_copies(gravel):
    data = read_mvtec(gravel)
    train = {np.asarray(Image.open(p)).tobytes() for p in data.train}
    assert len(train) > 50
    assert not any(np.asarray(Image.open(s.path)).tobytes() in train for s in data.test)
    src_w = anomaly._texture("gravel").shape[1]
    (a0, a1), (b0, b1) = anomaly._regions(src_w).values()
    assert a1 <= b0 and a1 - a0 >= 256 and b1 - b0 >= 256


@pytest.mark.slow
@pytest.mark.parametrize("category", ["brick", "tissue", "stars"])
def test_add_defect_changes_only_inside_the_mask(category):
    rng = np.random.default_rng(3)
    for kind in DEFECT_KINDS:
        for _ in range(3):
            clean = anomaly._crop(category, "test", rng)
            donor = anomaly._crop("grass", "train", rng)
            out, mask = add_defect(clean, kind, rng, donor)
            assert out.shape == clean.shape and mask.shape == clean.shape[:2] and mask.dtype == bool
            assert 0.002 < mask.mean() < 0.20, (kind, mask.mean())
            assert (out[~mask] == clean[~mask]).all()
            diff = np.abs(out.astype(int) - clean.astype(int)).max(-1)
            assert diff[mask].mean() > 15, (kind, diff[mask].mean())   # visible, not a faint tint
            if category == "brick":
                assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_builtin_is_deterministic(tmp_path, small_builds):
    a = build_builtin("brick", tmp_path / "a", seed=5)
    b = build_builtin("brick", tmp_path / "b", seed=5)
    c = build_builtin("brick", tmp_path / "c", seed=6)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 3 + 2 + 2 * 5 + 1
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    pngs = [f for f in files if f.suffix == ".png"]
    assert sum((a / f).read_bytes() != (c / f).read_bytes() for f in pngs) == len(pngs)


def test_builtin_reuse_and_rebuild(tmp_path, small_builds, monkeypatch):
    root = build_builtin("grass", tmp_path / "g", seed=0)
    generate = anomaly._generate

    def no_rebuild(*a):
        raise AssertionError("complete folder was rebuilt")

    monkeypatch.setattr(anomaly, "_generate", no_rebuild)
    assert build_builtin("grass", root, seed=0) == root
    (root / "test" / "hole" / "000.png").unlink()   # incomplete: rebuilt from scratch
    monkeypatch.setattr(anomaly, "_generate", generate)
    assert build_builtin("grass", root, seed=0) == root
    assert (root / "test" / "hole" / "000.png").is_file() and anomaly._is_complete(root, "grass", 0)

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="exists and is not a built-in anomaly dataset"):
        build_builtin("grass", mine)
    assert (mine / "keep.txt").read_text() == "x"


def test_builtin_default_root_and_resolve(tmp_path, small_builds, monkeypatch):
    monkeypatch.delenv("MOBILEVISION_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert builtin_root("brick", 3) == tmp_path / "cache" / "mobilevision" / "anomaly" / "brick-v1-seed3"
    data = resolve_anomaly_data(None, "gravel")
    assert data.root == tmp_path / "cache" / "mobilevision" / "anomaly" / "gravel-v1-seed0"
    assert len(data.train) == 3 and len(data.test) == 2 + 5
    with pytest.raises(DataError, match="unknown built-in anomaly category 'carpet': available brick, grass, gravel"):
        build_builtin("carpet", tmp_path / "x")
    assert set(BUILTIN_CATEGORIES) >= {"brick", "grass", "gravel"}
