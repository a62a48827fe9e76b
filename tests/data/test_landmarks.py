"""Facial-landmark data: flip maps, the 300W / WFLW / COFW readers and their errors, layout detection,
crops in the pixel-centre frame, normalisation, and the seeded augmentation (geometry checked against
bright dots drawn at the landmarks)."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image

from mobilevision.data.landmarks import (FLIP_PAIRS, INTER_OCULAR, INTER_PUPIL, WFLW_ATTRIBUTES, AugmentOptions,
                                         LandmarkSample, augment, crop_resize, dataset_box, denormalize, extent_box,
                                         flip_permutation, hflip, load_image, normalize, read_cofw,
                                         read_landmark_folder, read_pts, read_wflw, reference_test_box,
                                         resolve_landmark_data)
from mobilevision.errors import DataError

# ---------------------------------------------------------------- synthetic faces and files


def face_points(n: int, width: float = 200.0, seed: int = 0) -> np.ndarray:
    """An asymmetric point set that respects the layout: each flip pair's first index on the image-left,
    its partner on the image-right, self-mirrored points near the middle."""
    rng = np.random.default_rng(seed)
    cx = width / 2
    pts = np.empty((n, 2))
    pts[:, 0] = cx + rng.uniform(-4, 4, n)
    pts[:, 1] = rng.uniform(40, 160, n)
    for a, b in FLIP_PAIRS[n]:
        pts[a] = (cx - rng.uniform(10, 80), rng.uniform(40, 160))
        pts[b] = (cx + rng.uniform(10, 80), rng.uniform(40, 160))
    return pts


def grid_points(n: int, spacing: float, origin: float) -> np.ndarray:
    """n integer points on a square grid (well separated, for the bright-dot checks)."""
    side = int(np.ceil(np.sqrt(n)))
    idx = np.arange(n)
    return np.stack([origin + spacing * (idx % side), origin + spacing * (idx // side)], axis=1).astype(float)


def dots(shape: tuple[int, int], points: np.ndarray, radius: int = 0) -> np.ndarray:
    """A black RGB image with a white (2r+1)-square centred on each (integer) point."""
    img = np.zeros((*shape, 3), np.uint8)
    for x, y in np.rint(points).astype(int):
        img[y - radius:y + radius + 1, x - radius:x + radius + 1] = 255
    return img


def write_png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def write_pts(path: Path, points: np.ndarray, declared: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"{x:.3f} {y:.3f}\n" for x, y in points)
    path.write_text(f"version: 1\nn_points:  {declared or len(points)}\n{{\n{body}}}\n")
    return path


def make_300w_face(folder: Path, stem: str, seed: int = 0, suffix: str = ".png") -> Path:
    write_png(folder / f"{stem}{suffix}", np.full((220, 200, 3), 40 + seed, np.uint8))
    return write_pts(folder / f"{stem}.pts", face_points(68, seed=seed))


def wflw_line(points: np.ndarray, box=(10, 20, 190, 200), flags=(1, 0, 0, 1, 0, 0), image="a/x.png") -> str:
    return " ".join([*(f"{v:.4f}" for v in points.reshape(-1)), *map(str, box), *map(str, flags), image])


def make_wflw_root(root: Path) -> Path:
    lists = root / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    lists.mkdir(parents=True)
    for split, names in (("train", ("0--a/t1.jpg", "0--a/t2.jpg")), ("test", ("1--b/s1.jpg",))):
        lines = []
        for i, name in enumerate(names):
            write_png(root / "WFLW_images" / name, np.full((210, 200, 3), 50, np.uint8))
            lines.append(wflw_line(face_points(98, seed=i), flags=(i % 2, 0, 1, 0, 0, 1), image=name))
        (lists / f"list_98pt_rect_attr_{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def cofw_arrays(n: int = 3, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """n images (colour and grey, different sizes), phis rows (29 x, 29 y, 29 flags), bboxes (x, y, w, h)."""
    rng = np.random.default_rng(seed)
    images, phis, boxes = [], [], []
    for i in range(n):
        h, w = 200 + 7 * i, 210 + 3 * i
        img = rng.integers(0, 256, (h, w, 3) if i % 2 == 0 else (h, w), dtype=np.uint8)
        pts = face_points(29, seed=seed + i)
        flags = (rng.random(29) < 0.3).astype(float)
        images.append(img)
        phis.append(np.concatenate([pts[:, 0], pts[:, 1], flags]))
        boxes.append([30.0 + i, 35.0, 140.0, 120.0])
    return images, np.asarray(phis), np.asarray(boxes)


def write_mat_v5(path: Path, split: str, images, phis, boxes) -> Path:
    names = {"train": ("IsTr", "phisTr", "bboxesTr"), "test": ("IsT", "phisT", "bboxesT")}[split]
    cell = np.empty((len(images), 1), dtype=object)
    for i, im in enumerate(images):
        cell[i, 0] = im
    scipy.io.savemat(path, dict(zip(names, (cell, phis, boxes))))
    return path


def write_mat_v73(path: Path, split: str, images, phis, boxes) -> Path:
    """As MATLAB's ``save -v7.3`` writes it: a 512-byte MAT header in the HDF5 user block, every array
    stored transposed (MATLAB is column-major) with a MATLAB_class attribute, and the n x 1 image cell
    array as a (1, n) dataset of object references into ``#refs#``."""
    names = {"train": ("IsTr", "phisTr", "bboxesTr"), "test": ("IsT", "phisT", "bboxesT")}[split]
    with h5py.File(path, "w", userblock_size=512) as f:
        refs_group = f.create_group("#refs#")
        refs = np.empty((1, len(images)), dtype=h5py.ref_dtype)
        for i, im in enumerate(images):
            d = refs_group.create_dataset(chr(ord("a") + i), data=np.ascontiguousarray(im.T))
            d.attrs["MATLAB_class"] = np.bytes_("uint8")
            refs[0, i] = d.ref
        cell = f.create_dataset(names[0], data=refs)
        cell.attrs["MATLAB_class"] = np.bytes_("cell")
        for name, arr in zip(names[1:], (phis, boxes)):
            d = f.create_dataset(name, data=np.ascontiguousarray(np.asarray(arr, np.float64).T))
            d.attrs["MATLAB_class"] = np.bytes_("double")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with open(path, "r+b") as fh:
        fh.write(header.ljust(116) + b"\x00" * 8 + b"\x00\x02" + b"IM")
    return path


# ---------------------------------------------------------------- flip maps


@pytest.mark.parametrize("n", [68, 98, 29])
def test_flip_permutation_is_an_involution_over_all_points(n):
    perm = flip_permutation(n)
    assert sorted(perm) == list(range(n))
    assert np.array_equal(perm[perm], np.arange(n))
    fixed = {68: {8, 27, 28, 29, 30, 33, 51, 57, 62, 66}, 98: {16, 51, 52, 53, 54, 57, 79, 85, 90, 94},
             29: {20, 21, 24, 25, 26, 27, 28}}[n]
    assert set(np.flatnonzero(perm == np.arange(n))) == fixed


def test_flip_maps_fix_dd_wflw_bug_and_pair_the_normalisers():
    perm = flip_permutation(98)
    assert perm[9] == 23 and perm[8] == 24
    for n, (a, b) in INTER_OCULAR.items():
        assert flip_permutation(n)[a] == b
    for n, (left, right) in INTER_PUPIL.items():
        assert sorted(flip_permutation(n)[list(left)]) == sorted(right)
    with pytest.raises(ValueError, match="no flip map"):
        flip_permutation(5)


@pytest.mark.parametrize("n", [68, 98, 29])
def test_hflip_twice_is_identity_and_keeps_the_layout(n):
    pts = face_points(n, width=200)
    img = np.zeros((220, 200, 3), np.uint8)
    img[:, :50] = 255                               # bright on the image-left
    fimg, fpts = hflip(img, pts)
    assert fimg[:, -50:].min() == 255 and fimg[:, :150].max() == 0
    a, b = INTER_OCULAR[n]
    assert fpts[a, 0] < fpts[b, 0]                  # a is still the image-left outer eye corner
    assert fpts[b, 0] == pytest.approx(199 - pts[a, 0])
    img2, pts2 = hflip(fimg, fpts)
    assert np.array_equal(img2, img) and np.allclose(pts2, pts)


# ---------------------------------------------------------------- 300W .pts


def test_read_pts_keeps_file_values(tmp_path):
    pts = face_points(68)
    path = write_pts(tmp_path / "a.pts", pts)
    got = read_pts(path, 68)
    assert got.shape == (68, 2) and got.dtype == np.float64
    assert np.allclose(got, np.round(pts, 3))
    assert np.allclose(read_pts(path, zero_based=True), got - 1)


def test_read_pts_too_few_points_names_file_and_line(tmp_path):
    path = write_pts(tmp_path / "short.pts", face_points(68)[:67], declared=68)
    with pytest.raises(DataError, match=r"short\.pts:71: 67 points .* n_points: 68"):
        read_pts(path, 68)
    path = write_pts(tmp_path / "p67.pts", face_points(68)[:67])
    with pytest.raises(DataError, match=r"p67\.pts:2: n_points: 67, but this dataset has 68"):
        read_pts(path, 68)


@pytest.mark.parametrize("bad, message", [("nan 3.0", "not finite"), ("1.0 inf", "not finite"),
                                          ("1.0 abc", "expected two numbers"), ("1.0", "expected two numbers")])
def test_read_pts_bad_coordinate_names_file_and_line(tmp_path, bad, message):
    path = write_pts(tmp_path / "bad.pts", face_points(68))
    lines = path.read_text().splitlines()
    lines[3 + 10] = bad                              # point 10 is on file line 14
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"bad\.pts:14: .*{message}"):
        read_pts(path, 68)


def test_read_pts_missing_braces(tmp_path):
    path = tmp_path / "nobrace.pts"
    path.write_text("version: 1\nn_points: 2\n1 2\n3 4\n")
    with pytest.raises(DataError, match=r"nobrace\.pts:3: expected a header line"):
        read_pts(path)
    path.write_text("version: 1\nn_points: 2\n{\n1 2\n3 4\n")
    with pytest.raises(DataError, match=r"nobrace\.pts:5: no closing '\}'"):
        read_pts(path)


def test_read_landmark_folder_pairs_images_and_annotations(tmp_path, caplog):
    make_300w_face(tmp_path / "b", "face1", 1, ".jpg")
    make_300w_face(tmp_path / "a", "face0", 0)
    write_png(tmp_path / "a" / "unannotated.png", np.zeros((8, 8, 3), np.uint8))
    samples = read_landmark_folder(tmp_path)
    assert [s.image.name for s in samples] == ["face0.png", "face1.jpg"]
    assert samples[0].box is None and samples[0].points.shape == (68, 2)
    assert "1 image(s) without a .pts" in caplog.text
    assert load_image(samples[0]).shape == (220, 200, 3)


def test_read_landmark_folder_pts_without_image(tmp_path):
    make_300w_face(tmp_path, "ok")
    write_pts(tmp_path / "orphan.pts", face_points(68))
    with pytest.raises(DataError, match=r"orphan\.pts has no image"):
        read_landmark_folder(tmp_path)


# ---------------------------------------------------------------- WFLW


def test_read_wflw_parses_points_box_flags(tmp_path):
    root = make_wflw_root(tmp_path)
    txt = root / "WFLW_annotations" / "list_98pt_rect_attr_train_test" / "list_98pt_rect_attr_train.txt"
    samples = read_wflw(txt, root / "WFLW_images")
    assert len(samples) == 2 and samples[1].source.endswith("train.txt:2")
    assert np.allclose(samples[0].points, np.round(face_points(98, seed=0), 4))
    assert samples[0].box == (10.0, 20.0, 190.0, 200.0)
    assert samples[1].attributes == dict(zip(WFLW_ATTRIBUTES, (True, False, True, False, False, True)))


@pytest.mark.parametrize("case, message", [
    ("68pt", r"list\.txt:2: 147 fields, expected 207"),
    ("text", r"list\.txt:2: field 5 'x1' is not a number"),
    ("nan", r"list\.txt:2: field 3 is nan"),
    ("image", r"list\.txt:2: image not found: .*missing\.png"),
])
def test_read_wflw_bad_lines_name_file_and_line(tmp_path, case, message):
    write_png(tmp_path / "img" / "a" / "x.png", np.zeros((8, 8, 3), np.uint8))
    good = wflw_line(face_points(98))
    tokens = good.split()
    bad = {"68pt": " ".join(wflw_line(face_points(68)).split()),
           "text": " ".join(tokens[:4] + ["x1"] + tokens[5:]),
           "nan": " ".join(tokens[:2] + ["nan"] + tokens[3:]),
           "image": wflw_line(face_points(98), image="a/missing.png")}[case]
    (tmp_path / "list.txt").write_text(good + "\n" + bad + "\n")
    with pytest.raises(DataError, match=message):
        read_wflw(tmp_path / "list.txt", tmp_path / "img")


# ---------------------------------------------------------------- COFW


@pytest.mark.parametrize("writer", [write_mat_v5, write_mat_v73])
def test_read_cofw_v5_and_v73_alike(tmp_path, writer):
    images, phis, boxes = cofw_arrays()
    path = writer(tmp_path / "COFW_train_color.mat", "train", images, phis, boxes)
    samples = read_cofw(path)
    assert len(samples) == 3
    for s, im, row, bb in zip(samples, images, phis, boxes):
        assert np.array_equal(s.image, im)
        assert np.allclose(s.points[:, 0], row[:29]) and np.allclose(s.points[:, 1], row[29:58])
        assert np.array_equal(s.occluded, row[58:] > 0.5)
        assert s.box == pytest.approx((bb[0], bb[1], bb[0] + bb[2], bb[1] + bb[3]))
        rgb = load_image(s)
        assert rgb.shape == (*im.shape[:2], 3) and rgb.dtype == np.uint8
    assert np.array_equal(load_image(samples[1])[..., 2], images[1])     # grey replicated
    shifted = read_cofw(path, zero_based=True)
    assert np.allclose(shifted[0].points, samples[0].points - 1)
    assert shifted[0].box == pytest.approx(tuple(v - 1 for v in samples[0].box))


def test_v73_writer_is_what_scipy_cannot_read(tmp_path):
    path = write_mat_v73(tmp_path / "t.mat", "test", *cofw_arrays(2))
    with pytest.raises(NotImplementedError):
        scipy.io.loadmat(path)
    assert h5py.is_hdf5(path) and path.read_bytes()[:10] == b"MATLAB 7.3"
    assert [s.points.shape for s in read_cofw(path, "test")] == [(29, 2)] * 2


def test_read_cofw_rejects_non_mat_and_wrong_arrays(tmp_path):
    txt = tmp_path / "COFW_train_color.mat"
    txt.write_text("this is not a MATLAB file\n" * 20)
    with pytest.raises(DataError, match="not a readable MATLAB .mat file"):
        read_cofw(txt)
    other = tmp_path / "other.mat"
    scipy.io.savemat(other, {"x": np.zeros(3)})
    with pytest.raises(DataError, match="expected the COFW arrays"):
        read_cofw(other)
    images, phis, boxes = cofw_arrays(2)
    bad = write_mat_v73(tmp_path / "bad.mat", "train", images, phis[:, :40], boxes)
    with pytest.raises(DataError, match=r"phisTr has shape \(2, 40\)"):
        read_cofw(bad)


# ---------------------------------------------------------------- layout detection


def test_resolve_300w_train_test_folders(tmp_path):
    make_300w_face(tmp_path / "train", "a", 0)
    make_300w_face(tmp_path / "train" / "sub", "b", 1)
    make_300w_face(tmp_path / "test", "c", 2)
    train, test = resolve_landmark_data(tmp_path, 68)
    assert [s.image.stem for s in train] == ["a", "b"] and [s.image.stem for s in test] == ["c"]


def test_resolve_300w_official_subsets(tmp_path):
    for i, d in enumerate(("afw", "helen/trainset", "lfpw/trainset", "helen/testset", "lfpw/testset", "ibug")):
        make_300w_face(tmp_path / d, f"f{i}", i)
    train, test = resolve_landmark_data(tmp_path)
    assert len(train) == 3 and len(test) == 3
    assert [s.attributes["common"] for s in test] == [True, True, False]
    assert [s.attributes["challenging"] for s in test] == [False, False, True]


def test_resolve_wflw_and_cofw(tmp_path):
    train, test = resolve_landmark_data(make_wflw_root(tmp_path / "wflw"), 98)
    assert (len(train), len(test)) == (2, 1) and test[0].n_points == 98
    cofw = tmp_path / "cofw"
    cofw.mkdir()
    write_mat_v73(cofw / "COFW_train_color.mat", "train", *cofw_arrays(3))
    write_mat_v5(cofw / "COFW_test_color.mat", "test", *cofw_arrays(2, seed=5))
    train, test = resolve_landmark_data(cofw, 29)
    assert (len(train), len(test)) == (3, 2)
    train, test = resolve_landmark_data(cofw / "COFW_test_color.mat")
    assert (len(train), len(test)) == (0, 2)


def test_resolve_none_reads_the_builtin_faces(tmp_path, monkeypatch):
    from mobilevision.data import faces

    monkeypatch.setattr(faces, "builtin_faces_dir",
                        lambda seed=0: faces.write_builtin_faces(tmp_path / f"s{seed}", 2, 1, seed, size=96))
    train, test = resolve_landmark_data(None, 68, seed=3)
    assert (len(train), len(test)) == (2, 1) and train[0].image.parent == tmp_path / "s3" / "train"
    assert load_image(train[0]).shape == (96, 96, 3)


def test_resolve_errors_name_the_fix(tmp_path):
    write_png(tmp_path / "x.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="no landmark dataset recognised .* WFLW_annotations"):
        resolve_landmark_data(tmp_path)
    make_300w_face(tmp_path / "faces", "a")
    with pytest.raises(DataError, match="68-point annotations, but 98 points"):
        resolve_landmark_data(tmp_path / "faces", 98)
    with pytest.raises(DataError, match="not found"):
        resolve_landmark_data(tmp_path / "nope")


# ---------------------------------------------------------------- crops and normalisation


def test_boxes():
    pts = np.array([[10.0, 20.0], [50.0, 80.0]])
    assert extent_box(pts, 10) == (0.0, 10.0, 60.0, 90.0)
    s = LandmarkSample(Path("x.png"), pts, box=(15.0, 5.0, 40.0, 70.0))
    assert dataset_box(s) == (10.0, 5.0, 50.0, 80.0)
    assert dataset_box(s, cover_points=False) == (15.0, 5.0, 40.0, 70.0)
    with pytest.raises(DataError, match="no annotated face box"):
        dataset_box(LandmarkSample(Path("x.png"), pts))
    s68 = LandmarkSample(Path("x.png"), face_points(68))
    assert reference_test_box(s68) == extent_box(s68.points, 10)
    s29 = LandmarkSample(Path("x.png"), face_points(29), box=(0.0, 0.0, 5.0, 5.0))
    assert reference_test_box(s29) == dataset_box(s29)


@pytest.mark.parametrize("box", [(20.3, 11.6, 130.2, 95.9),     # upscale about 2x / 2.7x
                                 (-40.5, -30.0, 260.0, 190.5)])  # downscale, partly outside the image
def test_crop_resize_single_bright_pixel_lands_on_the_mapped_point(box):
    rng = np.random.default_rng(1)
    for _ in range(6):
        x, y = rng.integers(25, 125), rng.integers(15, 90)
        img = np.zeros((120, 160, 3), np.uint8)
        img[y, x] = 255
        out, p = crop_resize(img, np.array([[x, y]], float), box, 224)
        assert out.shape == (224, 224, 3) and out.dtype == np.uint8
        g = out[..., 0].astype(float)
        iy, ix = np.unravel_index(np.argmax(g), g.shape)
        assert abs(ix - p[0, 0]) <= 0.5 + 1e-9 and abs(iy - p[0, 1]) <= 0.5 + 1e-9
        yy, xx = np.mgrid[:224, :224]
        c = np.array([(g * xx).sum(), (g * yy).sum()]) / g.sum()
        assert np.abs(c - p[0]).max() < 0.15


def test_crop_resize_pads_outside_with_black_and_maps_box_edges():
    img = np.full((100, 100, 3), 200, np.uint8)
    box = (-50.0, -0.5, 150.0, 99.5)          # the image's rows exactly; 50 px of nothing left and right
    out, p = crop_resize(img, np.array([[-50.0, -0.5], [150.0, 99.5], [50.0, 49.5]]), box, 224)
    assert out[:, :50].max() == 0 and out[:, -50:].max() == 0 and out[:, 60:160].min() == 200
    assert np.allclose(p, [[-0.5, -0.5], [223.5, 223.5], [111.5, 111.5]])


def test_normalize_matches_the_reference_and_inverts():
    pts = np.array([[0.0, 224.0], [112.0, 112.0], [50.0, 10.0]])
    v = normalize(pts)
    assert v.shape == (6,)
    assert np.allclose(v[:4], [0.5, -0.5, 0.0, 0.0])            # (112 - x) / 224: image-left is positive
    assert np.allclose(denormalize(v), pts)
    assert np.allclose(denormalize(normalize(pts, 256), 256), pts)


# ---------------------------------------------------------------- augmentation


def test_augment_is_deterministic_given_the_rng():
    pts = face_points(68) + 100
    img = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    a = augment(img, pts, np.random.default_rng(7))
    b = augment(img, pts, np.random.default_rng(7))
    c = augment(img, pts, np.random.default_rng(8))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    assert a[0].shape == (224, 224, 3) and a[0].dtype == np.uint8


def test_photometric_ops_do_not_move_points():
    pts = face_points(98) + 50
    img = np.full((300, 300, 3), 90, np.uint8)
    heavy = AugmentOptions(gamma_prob=1.0, color_prob=1.0, noise_prob=1.0, blur_prob=1.0, occlusion_prob=1.0)
    for seed in range(5):
        full_img, full = augment(img, pts, np.random.default_rng(seed), heavy)
        geo_img, geo = augment(img, pts, np.random.default_rng(seed), AugmentOptions.geometric_only())
        assert np.array_equal(full, geo)
        assert not np.array_equal(full_img, geo_img)


def test_augment_flip_remaps_indices():
    pts = face_points(68, width=200) + [0, 20]
    img = np.zeros((260, 200, 3), np.uint8)
    opts = AugmentOptions.geometric_only(flip_prob=1.0, rotation=(0.0, 0.0), scale=(1.0, 1.0), margin_px=(8, 8))
    _, out = augment(img, pts, np.random.default_rng(0), opts)
    a, b = INTER_OCULAR[68]
    assert out[a, 0] < out[b, 0] and out[0, 0] < out[16, 0]
    fimg, fpts = hflip(img, pts)
    _, expected = crop_resize(fimg, fpts, _extent_for_margin(fpts, 8, 224), 224)
    assert np.allclose(out, expected)


def _extent_for_margin(points: np.ndarray, margin_out: float, size: int) -> tuple[float, float, float, float]:
    """The source box whose crop puts the landmarks' extent ``margin_out`` output pixels from each edge."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    m = margin_out * (hi - lo) / (size - 2 * margin_out)
    return (lo[0] - m[0], lo[1] - m[1], hi[0] + m[0], hi[1] + m[1])


@pytest.mark.parametrize("shape, spacing, radius", [((300, 300), 30, 0),      # about 1:1
                                                     ((700, 700), 70, 1),      # 2.5x shrink: reduce by 2
                                                     ((1400, 1400), 150, 3)])  # 5x shrink: reduce by 4
def test_augment_geometry_matches_the_image(shape, spacing, radius):
    """Bright dots at the landmarks, photometry off: each mapped point sits on its dot (brightest pixel
    within 1.5 px; intensity centroid within 0.45 px, 0.2 px on average: a half-pixel slip fails)."""
    pts = grid_points(68, spacing, origin=spacing)
    img = dots(shape, pts, radius)
    opts = AugmentOptions.geometric_only(border="constant")
    errors = []
    for seed in range(4):
        out, q = augment(img, pts, np.random.default_rng(seed), opts)
        assert ((q >= 0) & (q < 224)).all()
        g = out.astype(float).sum(axis=2)
        for x, y in q:
            x0, y0 = max(int(round(x)) - 4, 0), max(int(round(y)) - 4, 0)
            win = g[y0:y0 + 9, x0:x0 + 9]
            iy, ix = np.unravel_index(np.argmax(win), win.shape)
            assert np.hypot(x0 + ix - x, y0 + iy - y) <= 1.5
            yy, xx = np.mgrid[y0:y0 + win.shape[0], x0:x0 + win.shape[1]]
            errors.append(np.hypot((win * xx).sum() / win.sum() - x, (win * yy).sum() / win.sum() - y))
    assert max(errors) < 0.45 and np.mean(errors) < 0.2


def test_augment_points_stay_inside_and_margins_hold():
    pts = face_points(29) * 3
    img = np.zeros((700, 700, 3), np.uint8)
    for seed in range(20):
        _, q = augment(img, pts, np.random.default_rng(seed), AugmentOptions(), size=128)
        lo, hi = 5 * 128 / 224, 15 * 128 / 224          # margins are given at 224 and scale with the size
        assert (q.min(axis=0) >= lo - 0.5 - 1e-9).all() and (q.max(axis=0) <= 128 - lo - 0.5 + 1e-9).all()
        assert (q.min(axis=0) <= hi - 0.5 + 1e-9).all() and (q.max(axis=0) >= 128 - hi - 0.5 - 1e-9).all()


def test_augment_options_validate_and_serialise():
    d = AugmentOptions().options_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["rotation"] == [-0.35, 0.35] and d["margin_px"] == [5, 15] and d["noise_prob"] == 0.4
    with pytest.raises(ValueError, match="flip_prob"):
        AugmentOptions(flip_prob=1.5)
    with pytest.raises(ValueError, match="margin_px"):
        AugmentOptions(margin_px=(0, 3))
    with pytest.raises(ValueError, match="border"):
        AugmentOptions(border="wrap")
    with pytest.raises(ValueError, match="leaves no room"):
        augment(np.zeros((50, 50, 3), np.uint8), face_points(68) / 5, np.random.default_rng(0),
                AugmentOptions(margin_px=(5, 120)), size=30)
    with pytest.raises(ValueError, match="no flip map for 5 points"):
        augment(np.zeros((50, 50, 3), np.uint8), face_points(29)[:5] / 5, np.random.default_rng(0))
