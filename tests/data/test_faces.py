"""The procedural face generator: exact iBUG-68 landmarks, determinism, and the 300W-style folder."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mobilevision.data import faces
from mobilevision.data.faces import (FacePose, builtin_faces_dir, builtin_faces_root, format_pts, render_face,
                                     write_builtin_faces)
from mobilevision.errors import DataError

SIZE = 192
# spec §7.4, 68-point horizontal-flip pairs (every other index maps to itself)
FLIP_PAIRS = [(0, 16), (1, 15), (2, 14), (3, 13), (4, 12), (5, 11), (6, 10), (7, 9),
              (17, 26), (18, 25), (19, 24), (20, 23), (21, 22), (31, 35), (32, 34),
              (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),
              (48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)]


def flip_index() -> np.ndarray:
    idx = np.arange(68)
    for a, b in FLIP_PAIRS:
        idx[a], idx[b] = b, a
    return idx


def mirror(image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal flip of an image and its 0-based pixel-centre landmarks, indices remapped."""
    flipped = points.copy()
    flipped[:, 0] = image.shape[1] - 1 - flipped[:, 0]
    return image[:, ::-1], flipped[flip_index()]


def assert_frontal_topology(p: np.ndarray) -> None:
    x, y = p[:, 0], p[:, 1]
    assert x[36] < x[39] < x[42] < x[45], "eye corners out of order"
    assert int(np.argmax(y[:17])) == 8, "the chin (8) is not the lowest jaw point"
    assert np.all(np.diff(y[27:31]) > 0), "nose bridge 27 -> 30 does not go down"
    assert y[51] < y[57] and y[62] <= y[66] + 1e-9, "lips upside down"
    assert np.all(np.diff(x[17:27]) > 0) and np.all(np.diff(x[31:36]) > 0), "brows / nostrils not left -> right"
    assert x[48] < x[60] < x[64] < x[54], "mouth corners out of order"
    assert np.all(np.diff(x[48:55]) > 0) and np.all(np.diff(x[54:60]) < 0), "outer lip not clockwise"
    assert np.all(np.diff(x[60:65]) > 0) and x[64] > x[65] > x[66] > x[67] > x[60], "inner lip not clockwise"
    assert x[36] < x[37] < x[38] < x[39] and x[39] > x[40] > x[41] > x[36], "image-left eye not clockwise"
    assert x[42] < x[43] < x[44] < x[45] and x[45] > x[46] > x[47] > x[42], "image-right eye not clockwise"
    assert y[37] < y[41] and y[38] < y[40] and y[43] < y[47] and y[44] < y[46], "upper lid below lower lid"
    assert y[19] < y[37] and y[30] < y[33] < y[51] and y[57] < y[8], "features out of vertical order"
    assert x[0] < x[8] < x[16]


def eye_cheek_difference(image: np.ndarray, p: np.ndarray) -> float:
    """Smallest (over both eyes) largest channel difference between the eye centre's 3x3 patch and the cheek."""
    img = image.astype(int)
    cx, cy = np.round((p[2] + p[31]) / 2).astype(int)
    diffs = []
    for k in (36, 42):
        ex, ey = np.round(p[k:k + 6].mean(0)).astype(int)
        diffs.append(np.abs(img[ey - 1:ey + 2, ex - 1:ex + 2] - img[cy, cx]).max())
    return float(min(diffs))


def parse_pts(text: str) -> np.ndarray:
    lines = [ln.strip() for ln in text.strip().splitlines()]
    assert lines[0] == "version: 1" and lines[1] == "n_points: 68" and lines[2] == "{" and lines[-1] == "}"
    assert len(lines) == 72
    return np.array([[float(v) for v in ln.split()] for ln in lines[3:71]])


def frontal(seed: int) -> faces.FaceSample:
    return render_face(np.random.default_rng(seed), SIZE, FacePose())


def test_same_seed_same_face_other_seed_other_face():
    a, b = render_face(np.random.default_rng(3), SIZE), render_face(np.random.default_rng(3), SIZE)
    c = render_face(np.random.default_rng(4), SIZE)
    assert a.image.shape == (SIZE, SIZE, 3) and a.image.dtype == np.uint8
    assert a.landmarks.shape == (68, 2) and a.landmarks.dtype == np.float64
    assert np.array_equal(a.image, b.image) and np.array_equal(a.landmarks, b.landmarks) and a.pose == b.pose
    assert not np.array_equal(a.image, c.image) and np.abs(a.landmarks - c.landmarks).max() > 1.0
    with pytest.raises(DataError, match="at least 32"):
        render_face(np.random.default_rng(0), 16)


@pytest.mark.parametrize("size", [64, 256])
def test_landmarks_inside_the_image_for_random_poses(size):
    poses = []
    for seed in range(12):
        s = render_face(np.random.default_rng([seed, size]), size)
        assert s.image.shape == (size, size, 3)
        assert np.all(s.landmarks >= 0) and np.all(s.landmarks <= size - 1)
        poses.append((s.pose.roll, s.pose.yaw, s.pose.pitch))
    poses = np.array(poses)
    assert np.all(np.abs(poses) <= [faces.MAX_ROLL, faces.MAX_YAW, faces.MAX_PITCH])
    assert np.all(poses.std(0) > 3.0), "poses are not varied"


@pytest.mark.parametrize("seed", range(8))
def test_frontal_face_topology_and_drawn_features(seed):
    s = frontal(seed)
    assert s.pose == FacePose()
    assert_frontal_topology(s.landmarks)
    assert eye_cheek_difference(s.image, s.landmarks) > 15


@pytest.mark.parametrize("seed", range(4))
def test_mirrored_face_with_flip_pairs_is_a_face(seed):
    s = frontal(seed)
    image, points = mirror(s.image, s.landmarks)
    assert_frontal_topology(points)
    assert eye_cheek_difference(image, points) > 15


def test_open_mouth_shows_a_dark_interior():
    for seed in range(50):
        s = frontal(seed)
        p = s.landmarks
        if p[66, 1] - p[62, 1] > 4:
            x, y = np.round((p[62] + p[66]) / 2).astype(int)
            assert s.image[y, x].astype(float).mean() < 90
            return
    pytest.fail("no open mouth in 50 faces")


def test_pose_moves_the_landmarks_the_documented_way():
    base = dict(size=SIZE)
    rolled = render_face(np.random.default_rng(1), pose=FacePose(roll=20.0), **base).landmarks
    d = rolled[45] - rolled[36]
    assert 10.0 < np.degrees(np.arctan2(d[1], d[0])) < 30.0       # clockwise in image coordinates (y down)
    for yaw, sign in ((20.0, 1), (-20.0, -1)):
        p = render_face(np.random.default_rng(1), pose=FacePose(yaw=yaw), **base).landmarks
        mid = (p[39] + p[42]) / 2
        assert sign * (p[30, 0] - mid[0]) > 1.0                    # the nose tip turns with the head
        near, far = (36, 45) if sign > 0 else (45, 36)
        assert abs(p[near, 0] - p[0 if sign > 0 else 16, 0]) > abs(p[far, 0] - p[16 if sign > 0 else 0, 0])


def test_pts_round_trip():
    s = frontal(5)
    text = format_pts(s.landmarks)
    assert text.startswith("version: 1\nn_points: 68\n{\n") and text.endswith("}\n")
    offset = 1.0 if faces.PTS_ONE_BASED else 0.0
    np.testing.assert_allclose(parse_pts(text) - offset, s.landmarks, atol=1e-3)


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_write_builtin_faces_layout_and_determinism(tmp_path):
    root = write_builtin_faces(tmp_path / "faces", n_train=6, n_test=3, seed=1, size=96)
    assert root == tmp_path / "faces"
    for split, n in (("train", 6), ("test", 3)):
        pngs = sorted((root / split).glob("*.png"))
        assert [p.stem for p in pngs] == [f"{i:05d}" for i in range(n)]
        assert sorted(p.stem for p in (root / split).glob("*.pts")) == [p.stem for p in pngs]
        for png in pngs:
            with Image.open(png) as im:
                assert im.size == (96, 96) and im.mode == "RGB"
            pts = parse_pts(png.with_suffix(".pts").read_text())
            zero_based = pts - (1.0 if faces.PTS_ONE_BASED else 0.0)
            assert np.all(zero_based >= 0) and np.all(zero_based <= 95)
    # face i of a split is the render of its own generator, whatever the counts
    again = render_face(faces.sample_rng(1, "test", 2), 96)
    with Image.open(root / "test" / "00002.png") as im:
        assert np.array_equal(np.asarray(im), again.image)
    np.testing.assert_allclose(parse_pts((root / "test" / "00002.pts").read_text()) - 1.0 * faces.PTS_ONE_BASED,
                               again.landmarks, atol=1e-3)
    meta = json.loads((root / "builtin.json").read_text())
    assert meta["seed"] == 1 and meta["counts"] == {"train": 6, "test": 3}
    assert meta["pts_one_based"] == faces.PTS_ONE_BASED

    assert files(write_builtin_faces(tmp_path / "same", 6, 3, seed=1, size=96)) == files(root)
    other = files(write_builtin_faces(tmp_path / "other", 6, 3, seed=2, size=96))
    assert other["train/00000.png"] != files(root)["train/00000.png"]

    stamp = (root / "train" / "00000.png").stat().st_mtime_ns
    assert write_builtin_faces(root, 6, 3, seed=1, size=96) == root          # complete: reused, not rebuilt
    assert (root / "train" / "00000.png").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faces", "other", "same"]


def test_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    real, calls = faces.render_face, []

    def failing(rng, size=faces.DEFAULT_SIZE, pose=None):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(rng, size, pose)

    monkeypatch.setattr(faces, "render_face", failing)
    with pytest.raises(KeyboardInterrupt):
        write_builtin_faces(tmp_path / "faces", 6, 3, size=64)
    assert list(tmp_path.iterdir()) == []                     # no final folder, no temporary one

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="not a built-in face dataset"):
        write_builtin_faces(mine, 2, 1, size=64)
    assert [p.name for p in mine.iterdir()] == ["keep.txt"]
    with pytest.raises(DataError, match="seed"):
        write_builtin_faces(tmp_path / "x", 2, 1, seed=-1)


def test_builtin_faces_dir_uses_the_cache_convention(tmp_path, monkeypatch):
    monkeypatch.delenv("MOBILEVISION_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert builtin_faces_root(3) == tmp_path / "xdg" / "mobilevision" / "landmarks" / "builtin-v1-seed3"
    monkeypatch.setenv("MOBILEVISION_CACHE", str(tmp_path / "mv"))
    monkeypatch.setattr(faces, "DEFAULT_TRAIN", 2)
    monkeypatch.setattr(faces, "DEFAULT_TEST", 1)
    monkeypatch.setattr(faces, "DEFAULT_SIZE", 64)
    root = builtin_faces_dir(0)
    assert root == tmp_path / "mv" / "landmarks" / "builtin-v1-seed0"
    assert len(list((root / "train").glob("*.pts"))) == 2 and len(list((root / "test").glob("*.png"))) == 1
