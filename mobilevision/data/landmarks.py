"""Facial-landmark data (spec ``landmarks_kd.md`` §1, §6, §7): 300W / WFLW / COFW readers, horizontal-flip
index maps, face crops, the (112 − x)/224 normalisation, and one seeded augmentation pipeline.

**Coordinates.** Points are (x, y) floats, x to the right, y down, in the frame where the pixel in column i,
row j has its *centre* at (i, j) and covers [i − 0.5, i + 0.5] × [j − 0.5, j + 0.5] (scikit-image's frame).
Readers keep the file's numbers as they are: 300W ``.pts`` and COFW are MATLAB 1-based, and the reference
subtracts nothing (a constant 1 px shift, which cancels in NME because predictions learn the same frame);
``zero_based=True`` subtracts 1 from them (and from COFW boxes) instead. Flips mirror x → W − 1 − x, exact
in this frame; on 1-based values a flipped label lands 2 source px left of its mirror image (about 1 px at
224 for a 450 px face), so ``zero_based=True`` is the cleaner choice when training with flips.

**EXIF orientation.** Image files are read upright (:mod:`mobilevision.imaging`, as the runtime reads an app's
photo), and points and boxes are taken in that upright frame: viewers, browsers and annotation tools (labelme,
CVAT) show and annotate photos upright. 300W, WFLW and COFW carry no orientation tags (COFW's pixels are inside
its .mat), so for them stored and upright pixels are the same; a file that does carry one is logged once, since
annotations made on its stored pixels (MATLAB's ``imread`` ignores the tag) would then need the tag stripped.

**Boxes.** (x0, y0, x1, y1) is the continuous rectangle [x0, x1] × [y0, y1] in that frame. A crop maps the
rectangle onto the *whole* output image, edge to edge: x_out = (x − x0)·size/(x1 − x0) − 0.5, so a
landmark on the box's left edge lands on the output's left edge (−0.5) and the box centre on the output
centre ((size − 1)/2). Resizing is Pillow's antialiased bilinear; output pixels whose centre lies outside
the image are black.

**Layouts** (:func:`resolve_landmark_data`):

- 300W: a folder of ``*.jpg|*.jpeg|*.png`` with same-stem ``*.pts`` next to them (searched recursively).
  Splits: ``train/`` and ``test/`` subfolders, or the official subset folders ``afw``, ``helen/trainset``,
  ``lfpw/trainset`` (train, 3,148) and ``helen/testset``, ``lfpw/testset`` (common, 554), ``ibug``
  (challenging, 135); test samples then carry ``attributes = {"common": ..., "challenging": ...}``.
  A folder without either is all training data (no test split).
- WFLW: a root holding ``WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_{train,test}.txt``
  and ``WFLW_images/``; samples carry the six attribute flags (:data:`WFLW_ATTRIBUTES`).
- COFW: a folder with ``COFW_train_color.mat`` and ``COFW_test_color.mat`` (or the grey ``COFW_train.mat`` /
  ``COFW_test.mat``), MATLAB v7.3 (HDF5, read with h5py) or v5 (scipy), or one such file.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from mobilevision.errors import DataError
from mobilevision.imaging import open_image, opened, orientation

log = logging.getLogger("mobilevision.data")

LANDMARK_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
Box = tuple[float, float, float, float]

# ---------------------------------------------------------------- point layouts (spec §7.4, §8)

FLIP_PAIRS: dict[int, tuple[tuple[int, int], ...]] = {
    68: (
        (0, 16), (1, 15), (2, 14), (3, 13), (4, 12), (5, 11), (6, 10), (7, 9),          # jaw
        (17, 26), (18, 25), (19, 24), (20, 23), (21, 22),                               # brows
        (31, 35), (32, 34),                                                             # nostrils
        (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),                     # eyes
        (48, 54), (49, 53), (50, 52), (55, 59), (56, 58),                               # outer lip
        (60, 64), (61, 63), (65, 67),                                                   # inner lip
    ),
    98: (
        *((i, 32 - i) for i in range(16)),                                              # contour, 16 fixed
        (33, 46), (34, 45), (35, 44), (36, 43), (37, 42), (38, 50), (39, 49), (40, 48), (41, 47),  # brows
        (55, 59), (56, 58),                                                             # nostrils
        (60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73),  # eyes
        (76, 82), (77, 81), (78, 80), (83, 87), (84, 86),                               # outer lip
        (88, 92), (89, 91), (93, 95),                                                   # inner lip
        (96, 97),                                                                       # pupils
    ),
    29: ((0, 1), (2, 3), (4, 6), (5, 7), (8, 9), (10, 11), (12, 14), (13, 15), (16, 17), (18, 19), (22, 23)),
}
"""Horizontal-flip partners (0-based; unlisted indices map to themselves). DD ``relabel_ds`` with its
WFLW bug fixed (DD lists 8 twice and omits 9↔23)."""

INTER_OCULAR: dict[int, tuple[int, int]] = {68: (36, 45), 98: (60, 72), 29: (8, 9)}
"""Outer eye corners, image-left then image-right: the standard NME normaliser (spec §8)."""

INTER_PUPIL: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {
    68: (tuple(range(36, 42)), tuple(range(42, 48))),   # centroids of the two eye contours
    98: ((96,), (97,)),
    29: ((16,), (17,)),
}
"""Pupils as (left indices, right indices): each pupil is the centroid of its indices (spec §8)."""

WFLW_ATTRIBUTES = ("largepose", "expression", "illumination", "makeup", "occlusion", "blur")
"""The six WFLW flags in annotation order, named as the ``list_98pt_test_<name>.txt`` subset files."""

REFERENCE_TEST_MARGIN: dict[int, float] = {68: 10.0, 98: 3.0}
"""The author's test crops (spec §7.5): GT landmarks ± this many source pixels; COFW (29) uses its box."""


def flip_permutation(n_points: int) -> np.ndarray:
    """``perm`` with ``perm[i]`` the mirror partner of point i; checked to be an involution over 0..N−1."""
    if n_points not in FLIP_PAIRS:
        raise ValueError(f"no flip map for {n_points} points (known: {sorted(FLIP_PAIRS)})")
    perm = np.arange(n_points)
    seen: set[int] = set()
    for a, b in FLIP_PAIRS[n_points]:
        if a == b or {a, b} & seen or not (0 <= a < n_points and 0 <= b < n_points):
            raise ValueError(f"flip map for {n_points} points: bad or repeated pair ({a}, {b})")
        seen |= {a, b}
        perm[a], perm[b] = b, a
    if not np.array_equal(perm[perm], np.arange(n_points)) or sorted(perm) != list(range(n_points)):
        raise ValueError(f"flip map for {n_points} points is not an involution")
    return perm


def hflip(image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror an image left-right and its points: x → W − 1 − x, then the §7.4 index remap (so index 36
    is again the image-left outer eye corner)."""
    w = image.shape[1]
    flipped = np.asarray(points, np.float64).copy()
    flipped[:, 0] = (w - 1) - flipped[:, 0]
    return np.ascontiguousarray(image[:, ::-1]), flipped[flip_permutation(len(flipped))]


# ---------------------------------------------------------------- samples and pixels

@dataclass(frozen=True, eq=False)
class LandmarkSample:
    """One annotated face. ``image`` is a file, or the pixels themselves (COFW keeps them inside its .mat).

    ``points`` (N, 2) float64 in the image's pixel frame (module docstring); ``box`` the annotated face
    rectangle or None (300W); ``attributes`` subset flags (WFLW's six, 300W test ``common``/``challenging``);
    ``occluded`` (N,) bool (COFW); ``source`` where it came from, for messages (``file:line``).
    """

    image: Path | np.ndarray
    points: np.ndarray
    box: Box | None = None
    attributes: dict[str, bool] | None = None
    occluded: np.ndarray | None = None
    source: str = ""

    @property
    def n_points(self) -> int:
        return len(self.points)


def _as_rgb(arr: np.ndarray, where: str) -> np.ndarray:
    """uint8 grey (H, W) / (H, W, 1) / RGB / RGBA → uint8 (H, W, 3)."""
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        raise DataError(f"{where}: image is {arr.dtype}, expected uint8 pixels")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise DataError(f"{where}: image has shape {arr.shape}, expected H x W (grey) or H x W x 3 (RGB)")
    if arr.shape[2] == 1:
        return np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr[..., :3])


_WARNED_ORIENTATION: set[Path] = set()    # files whose EXIF orientation was logged (once per process)


def load_image(sample: LandmarkSample) -> np.ndarray:
    """The sample's pixels as uint8 (H, W, 3) RGB, read by :func:`mobilevision.imaging.open_image`: upright
    by EXIF (annotations are taken in that frame; see the module docstring), 16-bit scaled, grey replicated."""
    if isinstance(sample.image, np.ndarray):
        return _as_rgb(sample.image, sample.source or "image array")
    with opened(sample.image, DataError) as im:
        turned = orientation(im) != 1
    if turned and sample.image not in _WARNED_ORIENTATION:
        _WARNED_ORIENTATION.add(sample.image)
        log.warning("%s carries an EXIF orientation: its points (%s) are taken in the upright picture, as "
                    "viewers and annotation tools show it; strip the tag if they were marked on the stored "
                    "pixels", sample.image, sample.source or "annotation")
    return np.asarray(open_image(sample.image, DataError))


# ---------------------------------------------------------------- 300W .pts

def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise DataError(f"cannot read {what} {path}: {e}") from e


def read_pts(path: str | Path, n_points: int | None = None, zero_based: bool = False) -> np.ndarray:
    """A 300W ``.pts`` file (``version: 1``, ``n_points: 68``, ``{``, one "x y" per line, ``}``) → (N, 2) float64.

    Values are kept as in the file unless ``zero_based`` (then 1 is subtracted). Errors name ``file:line``.
    """
    path = Path(path)
    lines = _read_text(path, ".pts file").splitlines()
    header: dict[str, tuple[str, int]] = {}
    body = None
    for lineno, raw in enumerate(lines, 1):
        s = raw.strip()
        if not s:
            continue
        if s == "{":
            body = lineno
            break
        if ":" not in s:
            raise DataError(f"{path}:{lineno}: expected a header line 'key: value' or '{{', got {s[:40]!r} "
                            "(a .pts file starts with 'version: 1', 'n_points: 68', '{')")
        key, value = s.split(":", 1)
        header[key.strip().lower()] = (value.strip(), lineno)
    if body is None:
        raise DataError(f"{path}:{max(len(lines), 1)}: no '{{' line before the points: "
                        "not a .pts file (expected 'version: 1', 'n_points: 68', '{', points, '}')")

    pts: list[tuple[float, float]] = []
    close = None
    for lineno in range(body + 1, len(lines) + 1):
        s = lines[lineno - 1].strip()
        if not s:
            continue
        if s == "}":
            close = lineno
            break
        tokens = s.split()
        try:
            if len(tokens) != 2:
                raise ValueError
            x, y = float(tokens[0]), float(tokens[1])
        except ValueError:
            raise DataError(f"{path}:{lineno}: expected two numbers 'x y', got {s[:60]!r}") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise DataError(f"{path}:{lineno}: coordinate {s!r} is not finite: fix the annotation or remove the file")
        pts.append((x, y))
    if close is None:
        raise DataError(f"{path}:{len(lines)}: no closing '}}' after {len(pts)} points (is the file truncated?)")
    trailing = next((i for i in range(close + 1, len(lines) + 1) if lines[i - 1].strip()), None)
    if trailing is not None:
        raise DataError(f"{path}:{trailing}: text after the closing '}}': {lines[trailing - 1].strip()[:40]!r}")

    if "n_points" in header:
        value, hline = header["n_points"]
        try:
            declared = int(value)
        except ValueError:
            raise DataError(f"{path}:{hline}: n_points {value!r} is not an integer") from None
        if n_points is not None and declared != n_points:
            raise DataError(f"{path}:{hline}: n_points: {declared}, but this dataset has {n_points}-point "
                            f"annotations: remove the file or read it as a {declared}-point set")
        if declared != len(pts):
            raise DataError(f"{path}:{close}: {len(pts)} points before '}}', but line {hline} says "
                            f"n_points: {declared}: the annotation is incomplete, fix or remove it")
    elif n_points is not None and len(pts) != n_points:
        raise DataError(f"{path}:{close}: {len(pts)} points, expected {n_points}: fix or remove the annotation")
    if not pts:
        raise DataError(f"{path}:{close}: no points between '{{' and '}}'")
    arr = np.asarray(pts, np.float64)
    return arr - 1.0 if zero_based else arr


def read_landmark_folder(root: str | Path, n_points: int = 68, zero_based: bool = False) -> list[LandmarkSample]:
    """Every ``*.jpg|*.jpeg|*.png`` under ``root`` (recursive) with a same-stem ``.pts`` beside it, sorted by path.

    Images without a ``.pts`` are skipped (counted in a warning); a ``.pts`` without an image is an error.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"landmark folder not found: {root}")
    images: dict[tuple[Path, str], Path] = {}
    pts_files: list[Path] = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.name.startswith("."):
            continue
        suffix = p.suffix.lower()
        if suffix == ".pts":
            pts_files.append(p)
        elif suffix in LANDMARK_IMAGE_SUFFIXES:
            key = (p.parent, p.stem)
            if key in images:
                raise DataError(f"two images share the stem of one annotation: {images[key]} and {p}; "
                                "keep one of them")
            images[key] = p
    samples = []
    for pts in pts_files:
        image = images.pop((pts.parent, pts.stem), None)
        if image is None:
            raise DataError(f"annotation {pts} has no image next to it ({pts.stem}.jpg, .jpeg or .png): "
                            "add the image or remove the .pts file")
        samples.append(LandmarkSample(image, read_pts(pts, n_points, zero_based), source=str(pts)))
    if images:
        log.warning("%s: %d image(s) without a .pts annotation skipped (first: %s)", root, len(images),
                    min(images.values()))
    if not samples:
        raise DataError(f"no annotated images under {root}: expected image files with same-name .pts "
                        "files beside them (300W layout)")
    return sorted(samples, key=lambda s: str(s.image))


_300W_TRAIN = ("afw", "helen/trainset", "lfpw/trainset")
_300W_COMMON = ("helen/testset", "lfpw/testset")
_300W_CHALLENGING = ("ibug",)


def _is_300w_official(root: Path) -> bool:
    return any((root / d).is_dir() for d in _300W_TRAIN + _300W_COMMON + _300W_CHALLENGING)


def read_300w(root: str | Path, zero_based: bool = False) -> tuple[list[LandmarkSample], list[LandmarkSample]]:
    """(train, test) of a 300W root: ``train/`` + ``test/`` subfolders, or the official subset folders
    (test samples flagged ``common`` / ``challenging``); a plain folder is all train."""
    root = Path(root)
    if (root / "train").is_dir():
        train = read_landmark_folder(root / "train", 68, zero_based)
        test = read_landmark_folder(root / "test", 68, zero_based) if (root / "test").is_dir() else []
        return train, test
    if not _is_300w_official(root):
        return read_landmark_folder(root, 68, zero_based), []
    missing = [d for d in _300W_TRAIN + _300W_COMMON + _300W_CHALLENGING if not (root / d).is_dir()]
    if missing:
        log.warning("%s: 300W subset folder(s) missing: %s", root, ", ".join(missing))
    train = [s for d in _300W_TRAIN if (root / d).is_dir() for s in read_landmark_folder(root / d, 68, zero_based)]
    test = []
    for names, common in ((_300W_COMMON, True), (_300W_CHALLENGING, False)):
        for d in names:
            if (root / d).is_dir():
                test += [dataclasses.replace(s, attributes={"common": common, "challenging": not common})
                         for s in read_landmark_folder(root / d, 68, zero_based)]
    if not train:
        raise DataError(f"{root} has 300W test folders but no training folder ({', '.join(_300W_TRAIN)})")
    return train, test


# ---------------------------------------------------------------- WFLW

_WFLW_TOKENS = 98 * 2 + 4 + 6 + 1


def read_wflw(annotation_txt: str | Path, images_root: str | Path) -> list[LandmarkSample]:
    """A WFLW list file: per line 196 coordinates, box x_min y_min x_max y_max, six 0/1 flags, image path
    relative to ``images_root``. Errors name ``file:line``."""
    path, images_root = Path(annotation_txt), Path(images_root)
    samples = []
    for lineno, raw in enumerate(_read_text(path, "WFLW annotation file").splitlines(), 1):
        tokens = raw.split()
        if not tokens:
            continue
        where = f"{path}:{lineno}"
        if len(tokens) != _WFLW_TOKENS:
            raise DataError(f"{where}: {len(tokens)} fields, expected {_WFLW_TOKENS} (98 x/y pairs, 4 box "
                            "numbers, 6 flags, image path): not a 98-point WFLW annotation line")
        try:
            values = np.array([float(t) for t in tokens[:-1]], np.float64)
        except ValueError:
            bad = next(i for i, t in enumerate(tokens[:-1]) if not _is_number(t))
            raise DataError(f"{where}: field {bad + 1} {tokens[bad][:30]!r} is not a number") from None
        if not np.isfinite(values).all():
            bad = int(np.flatnonzero(~np.isfinite(values))[0])
            raise DataError(f"{where}: field {bad + 1} is {tokens[bad]}: fix the annotation or drop the line")
        box = tuple(float(v) for v in values[196:200])
        if not (box[2] > box[0] and box[3] > box[1]):
            raise DataError(f"{where}: face box {box} has no area (expected x_min y_min x_max y_max)")
        flags = values[200:206]
        if not np.isin(flags, (0.0, 1.0)).all():
            raise DataError(f"{where}: attribute flags {tokens[200:206]} must be 0 or 1")
        image = images_root / tokens[-1]
        if not image.is_file():
            raise DataError(f"{where}: image not found: {image} (images_root should be the WFLW_images folder)")
        samples.append(LandmarkSample(image, values[:196].reshape(98, 2), box,
                                      dict(zip(WFLW_ATTRIBUTES, (bool(f) for f in flags))), source=where))
    if not samples:
        raise DataError(f"{path} has no annotation lines")
    return samples


def _is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


_WFLW_LISTS = Path("WFLW_annotations") / "list_98pt_rect_attr_train_test"


def read_wflw_root(root: str | Path) -> tuple[list[LandmarkSample], list[LandmarkSample]]:
    """(train, test) of a WFLW root holding ``WFLW_annotations/`` and ``WFLW_images/``."""
    root = Path(root)
    lists = root / _WFLW_LISTS
    out = []
    for split in ("train", "test"):
        txt = lists / f"list_98pt_rect_attr_{split}.txt"
        if not txt.is_file():
            raise DataError(f"WFLW {split} list not found: {txt} (unpack WFLW_annotations.tar.gz into {root})")
        out.append(read_wflw(txt, root / "WFLW_images"))
    return out[0], out[1]


# ---------------------------------------------------------------- COFW

_COFW_VARS = {"train": ("IsTr", "phisTr", "bboxesTr"), "test": ("IsT", "phisT", "bboxesT")}


def _cofw_v73(path: Path, split: str | None) -> tuple[str, list[np.ndarray], np.ndarray, np.ndarray]:
    """MATLAB v7.3: HDF5 with every array transposed; the image cell array holds object references."""
    import h5py

    with h5py.File(path, "r") as f:
        split = _cofw_split(path, split, set(f.keys()))
        ims_name, phis_name, boxes_name = _COFW_VARS[split]
        try:
            refs = np.asarray(f[ims_name][()]).ravel()     # MATLAB's column-major order
            images = [np.asarray(f[r][()]).T for r in refs]
            phis = np.asarray(f[phis_name][()], np.float64).T
            boxes = np.asarray(f[boxes_name][()], np.float64).T
        except (KeyError, TypeError, ValueError, OSError) as e:
            raise DataError(f"{path}: cannot read the COFW arrays {ims_name}/{phis_name}/{boxes_name}: {e}") from e
    return split, images, phis, boxes


def _cofw_v5(path: Path, split: str | None) -> tuple[str, list[np.ndarray], np.ndarray, np.ndarray]:
    """MATLAB v5/v7 via scipy; the image cell array comes as an object array."""
    import scipy.io

    try:
        names = {name for name, _, _ in scipy.io.whosmat(path)}
        split = _cofw_split(path, split, names)
        mat = scipy.io.loadmat(path, variable_names=list(_COFW_VARS[split]))
    except DataError:
        raise
    except Exception as e:  # scipy raises ValueError, TypeError, MatReadError, NotImplementedError, ...
        raise DataError(f"{path} is not a readable MATLAB .mat file ({e}): pass COFW_train_color.mat or "
                        "COFW_test_color.mat") from e
    ims_name, phis_name, boxes_name = _COFW_VARS[split]
    images = [np.asarray(im) for im in np.asarray(mat[ims_name], dtype=object).ravel(order="F")]
    return split, images, np.asarray(mat[phis_name], np.float64), np.asarray(mat[boxes_name], np.float64)


def _cofw_split(path: Path, split: str | None, names: set[str]) -> str:
    present = [s for s, vs in _COFW_VARS.items() if all(v in names for v in vs)]
    if split is not None:
        if split not in present:
            raise DataError(f"{path} has no COFW {split} arrays ({', '.join(_COFW_VARS[split])})")
        return split
    if len(present) != 1:
        raise DataError(f"{path}: expected the COFW arrays IsTr/phisTr/bboxesTr or IsT/phisT/bboxesT, found "
                        f"{', '.join(sorted(names)) or 'no variables'}" + (": pass split='train' or 'test'"
                                                                              if present else ""))
    return present[0]


def read_cofw(mat_path: str | Path, split: str | None = None, zero_based: bool = False) -> list[LandmarkSample]:
    """COFW samples from ``COFW_{train,test}_color.mat`` (v7.3 via h5py, or v5 via scipy), images in memory.

    ``phis`` rows are 29 x, 29 y, then 29 occlusion flags (1 = occluded); ``bboxes`` (x, y, w, h), 1-based,
    becomes the box (x, y, x + w, y + h). ``split`` picks the arrays when a file holds both.
    """
    return _load_cofw(Path(mat_path), split, zero_based)[1]


def _load_cofw(path: Path, split: str | None, zero_based: bool) -> tuple[str, list[LandmarkSample]]:
    """(the split found, its samples): :func:`read_cofw`'s work."""
    import h5py

    if split not in (None, *_COFW_VARS):
        raise ValueError(f"COFW split must be 'train' or 'test', got {split!r}")
    if not path.is_file():
        raise DataError(f"COFW file not found: {path}")
    split, images, phis, boxes = (_cofw_v73 if h5py.is_hdf5(path) else _cofw_v5)(path, split)
    ims_name, phis_name, boxes_name = _COFW_VARS[split]
    if phis.ndim != 2 or phis.shape[1] not in (58, 87):
        raise DataError(f"{path}: {phis_name} has shape {phis.shape}, expected (images, 87): 29 x, 29 y, "
                        "29 occlusion flags")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise DataError(f"{path}: {boxes_name} has shape {boxes.shape}, expected (images, 4) as x, y, w, h")
    if not len(images) == len(phis) == len(boxes):
        raise DataError(f"{path}: {len(images)} images in {ims_name} but {len(phis)} rows in {phis_name} and "
                        f"{len(boxes)} in {boxes_name}")
    shift = 1.0 if zero_based else 0.0
    samples = []
    for i, (image, row, (x, y, w, h)) in enumerate(zip(images, phis, boxes)):
        where = f"{path}:{phis_name}[{i + 1}]"
        if not np.isfinite(row).all() or not np.isfinite((x, y, w, h)).all():
            raise DataError(f"{where}: non-finite landmark or box value: fix or drop this face")
        if w <= 0 or h <= 0:
            raise DataError(f"{where}: box {boxes_name} has width {w} and height {h}: expected positive")
        _as_rgb(image, where)  # check the pixels now, not at training time
        points = np.stack([row[:29], row[29:58]], axis=1) - shift
        occluded = row[58:87] > 0.5 if row.shape[0] == 87 else None
        box = (float(x - shift), float(y - shift), float(x + w - shift), float(y + h - shift))
        samples.append(LandmarkSample(image, points, box,
                                      occluded=occluded, source=where))
    if not samples:
        raise DataError(f"{path}: {ims_name} holds no images")
    return split, samples


_COFW_FILES = {"train": ("COFW_train_color.mat", "COFW_train.mat"), "test": ("COFW_test_color.mat", "COFW_test.mat")}


# ---------------------------------------------------------------- layout detection

def resolve_landmark_data(path: str | Path | None, n_points: int | None = None, zero_based: bool = False,
                          seed: int = 0) -> tuple[list[LandmarkSample], list[LandmarkSample]]:
    """(train, test) samples from a 300W folder, a WFLW root or COFW ``.mat`` file(s) (module docstring);
    ``None``: the built-in rendered 68-point faces of :mod:`mobilevision.data.faces` (``seed``), made on first use.

    ``n_points`` (68, 98, 29) checks the layout found is the one expected. ``zero_based`` applies to the
    MATLAB 1-based sets (300W, COFW, the built-in faces' ``.pts``).
    """
    if path is None:
        from .faces import builtin_faces_dir

        path = builtin_faces_dir(seed)
    p = Path(path)
    if not p.exists():
        raise DataError(f"landmark data not found: {p}")
    if p.is_file():
        if p.suffix.lower() != ".mat":
            raise DataError(f"{p} is a file but not a COFW .mat: pass a 300W folder, a WFLW root or a COFW .mat")
        split, samples = _load_cofw(p, None, zero_based)
        train, test = (samples, []) if split == "train" else ([], samples)
    elif (p / "WFLW_annotations").is_dir():
        train, test = read_wflw_root(p)
    elif any((p / name).is_file() for names in _COFW_FILES.values() for name in names):
        found = {s: next((p / n for n in names if (p / n).is_file()), None) for s, names in _COFW_FILES.items()}
        train = read_cofw(found["train"], "train", zero_based) if found["train"] else []
        test = read_cofw(found["test"], "test", zero_based) if found["test"] else []
    elif (p / "train").is_dir() or _is_300w_official(p) or any(p.rglob("*.pts")):
        train, test = read_300w(p, zero_based)
    else:
        raise DataError(
            f"no landmark dataset recognised in {p}: expected images with same-name .pts files (300W; split "
            "by train/ and test/ or afw, helen/, lfpw/, ibug), a WFLW root with WFLW_annotations/ and "
            "WFLW_images/, or COFW_train_color.mat and COFW_test_color.mat")
    found_n = (train or test)[0].n_points
    if n_points is not None and found_n != n_points:
        raise DataError(f"{p} holds {found_n}-point annotations, but {n_points} points were asked for: "
                        f"use a {found_n}-point model or the {n_points}-point dataset")
    log.info("%s: %d-point landmarks, %d train / %d test faces", p, found_n, len(train), len(test))
    return train, test


# ---------------------------------------------------------------- crops and normalisation

def extent_box(points: np.ndarray, margin_px: float) -> Box:
    """The landmarks' bounding rectangle grown by ``margin_px`` source pixels on every side."""
    pts = np.asarray(points, np.float64)
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    return (float(x0 - margin_px), float(y0 - margin_px), float(x1 + margin_px), float(y1 + margin_px))


def dataset_box(sample: LandmarkSample, cover_points: bool = True) -> Box:
    """The annotated face box, widened to cover every landmark (COFW's test rule) unless ``cover_points`` is False."""
    if sample.box is None:
        raise DataError(f"{sample.source or sample.image}: no annotated face box (300W has none): "
                        "crop by the landmark extent instead")
    if not cover_points:
        return sample.box
    lo, hi = sample.points.min(axis=0), sample.points.max(axis=0)
    x0, y0, x1, y1 = sample.box
    return (min(x0, float(lo[0])), min(y0, float(lo[1])), max(x1, float(hi[0])), max(y1, float(hi[1])))


def reference_test_box(sample: LandmarkSample) -> Box:
    """The author's test crop (spec §7.5): 300W GT ± 10 px, WFLW GT ± 3 px, COFW the box widened to the GT."""
    margin = REFERENCE_TEST_MARGIN.get(sample.n_points)
    return dataset_box(sample) if margin is None else extent_box(sample.points, margin)


def crop_matrix(box: Box, size: int) -> np.ndarray:
    """3x3 affine taking the image frame to the crop's: the box fills the ``size`` x ``size`` output edge to edge."""
    x0, y0, x1, y1 = box
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"box {box} has no area")
    sx, sy = size / (x1 - x0), size / (y1 - y0)
    return np.array([[sx, 0.0, -x0 * sx - 0.5], [0.0, sy, -y0 * sy - 0.5], [0.0, 0.0, 1.0]])


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 2) points through a 3x3 affine."""
    pts = np.asarray(points, np.float64)
    return pts @ matrix[:2, :2].T + matrix[:2, 2]


def crop_resize(image: np.ndarray, points: np.ndarray, box: Box, size: int = 224) -> tuple[np.ndarray, np.ndarray]:
    """Crop ``box`` and resize it anisotropically to ``size`` x ``size`` by Pillow's antialiased bilinear;
    output pixels whose centre falls outside the image are black (the runtime's crop, so apps see the same
    pixels). Returns (uint8 size x size x 3, points in crop pixels)."""
    from mobilevision.runtime.tasks.landmarks import crop_image

    image = _as_rgb(image, "crop_resize")
    return crop_image(image, box, size, size), apply_affine(crop_matrix(box, size), points)


def normalize(points: np.ndarray, size: int = 224) -> np.ndarray:
    """Crop-pixel points (N, 2) → the reference's (2N,) interleaved ((size/2 − x)/size, (size/2 − y)/size)
    (at 224: (112 − x)/224; sign flipped, about [−0.5, 0.5])."""
    pts = np.asarray(points, np.float64)
    return ((size / 2.0 - pts) / size).reshape(-1)


def denormalize(vector: np.ndarray, size: int = 224) -> np.ndarray:
    """The inverse of :func:`normalize`: (2N,) → (N, 2) crop pixels, x = size/2 − size·xₙ."""
    v = np.asarray(vector, np.float64).reshape(-1, 2)
    return size / 2.0 - size * v


# ---------------------------------------------------------------- augmentation (spec §6)

_BORDERS = ("edge", "symmetric", "reflect", "constant")


@dataclass(frozen=True)
class AugmentOptions:
    """One seeded pipeline; defaults are DD's ``random_augment`` ranges (spec §6) except where noted.

    Geometry (one affine warp): flip with index remap; rotation (rad) about the landmarks' centroid; per-axis
    scale; then a crop to the landmarks' extent with a U{margin_px} margin drawn per side, in *output*
    pixels at 224 (DD augments images already at the 224 input size; other sizes scale it by size / 224,
    so the face fills the same fraction of the crop), resized anisotropically to ``size``.
    Photometry, each independent, in this order: gamma, colour, salt-and-pepper, median blur, occlusion.
    Rectangle sizes and positions are given at 224 and scale with ``size``.
    """

    flip_prob: float = 0.5                      # DD flips every second copy
    rotation: tuple[float, float] = (-0.35, 0.35)
    scale: tuple[float, float] = (0.9, 1.1)     # [SDK]: DD has none, KDR uses (0.7, 1.3)
    margin_px: tuple[int, int] = (5, 15)        # inclusive, drawn per side
    border: str = "edge"                        # DD "edge", KDR "symmetric"
    gamma_prob: float = 0.5
    gamma_ranges: tuple[tuple[float, float], ...] = ((0.2, 0.6), (1.2, 3.5))   # one range picked uniformly
    color_prob: float = 0.5                     # [SDK]: not in DD (issue 6 asks for colour); per-channel gain
    color_gain: tuple[float, float] = (0.8, 1.2)
    noise_prob: float = 0.4                     # salt-and-pepper, 2/5
    noise_amounts: tuple[float, ...] = (0.02, 0.2)
    blur_prob: float = 0.5
    blur_size: int = 5                          # median filter side
    occlusion_max: int = 15
    occlusion_prob: float = 6 / 11              # per rectangle
    occlusion_size: tuple[int, int] = (10, 50)
    occlusion_start_max: int = 170

    def __post_init__(self) -> None:
        for name in ("flip_prob", "gamma_prob", "color_prob", "noise_prob", "blur_prob", "occlusion_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("rotation", "scale", "margin_px", "color_gain", "occlusion_size"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name} range ({lo}, {hi}) is reversed")
        if self.scale[0] <= 0 or self.margin_px[0] < 1:
            raise ValueError("scale must be positive and margin_px at least 1 (points must stay inside the crop)")
        if self.border not in _BORDERS:
            raise ValueError(f"border must be one of {_BORDERS}, got {self.border!r}")
        if any(lo > hi or lo <= 0 for lo, hi in self.gamma_ranges) or not self.gamma_ranges:
            raise ValueError(f"gamma_ranges must be positive (lo, hi) pairs, got {self.gamma_ranges}")
        if self.blur_size < 1 or self.blur_size % 2 == 0:
            raise ValueError(f"blur_size must be odd, got {self.blur_size}")

    @classmethod
    def geometric_only(cls, **changes: object) -> "AugmentOptions":
        """The same geometry with every photometric operation off."""
        return cls(**{"gamma_prob": 0.0, "color_prob": 0.0, "noise_prob": 0.0, "blur_prob": 0.0,
                      "occlusion_prob": 0.0, **changes})

    def options_dict(self) -> dict:
        """JSON-ready copy for run metadata."""
        return {k: _jsonable(v) for k, v in dataclasses.asdict(self).items()}


def _jsonable(v: object) -> object:
    return [_jsonable(x) for x in v] if isinstance(v, (tuple, list)) else v


def _geometry(points: np.ndarray, width: int, rng: np.random.Generator, opts: AugmentOptions,
              size: int) -> tuple[bool, np.ndarray]:
    """Draw flip, rotation, scale and margins; return (flipped, 3x3 image→crop affine). The flip's index
    remap is not part of the matrix."""
    flip = bool(rng.random() < opts.flip_prob)
    theta = rng.uniform(*opts.rotation)
    sx, sy = rng.uniform(*opts.scale, size=2)
    left, top, right, bottom = rng.integers(opts.margin_px[0], opts.margin_px[1] + 1, size=4) * (size / 224.0)
    mirror = np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) if flip else np.eye(3)
    cx, cy = apply_affine(mirror, points).mean(axis=0)
    c, s = math.cos(theta), math.sin(theta)
    linear = np.array([[c, -s], [s, c]]) @ np.diag([sx, sy])
    about = np.eye(3)
    about[:2, :2] = linear
    about[:2, 2] = (cx, cy) - linear @ (cx, cy)
    moved = about @ mirror
    q = apply_affine(moved, points)
    (qx0, qy0), (qx1, qy1) = q.min(axis=0), q.max(axis=0)
    if qx1 - qx0 < 1e-6 or qy1 - qy0 < 1e-6:
        raise DataError("augment: the landmarks have no extent (all points on a line): check the annotation")
    # the landmarks' extent lands on [left − 0.5, size − right − 0.5] (and likewise in y): inside [0, size)
    kx, ky = (size - left - right) / (qx1 - qx0), (size - top - bottom) / (qy1 - qy0)
    crop = np.array([[kx, 0.0, left - 0.5 - qx0 * kx], [0.0, ky, top - 0.5 - qy0 * ky], [0.0, 0.0, 1.0]])
    return flip, crop @ moved


def _warp(image: np.ndarray, matrix: np.ndarray, size: int, border: str) -> np.ndarray:
    """``image`` through the 3x3 affine (image frame → output frame) by bilinear sampling; a warp that shrinks
    by 2x or more first box-reduces the needed region by the integer factor (composed exactly into the
    matrix) so the bilinear step does not alias."""
    from skimage.transform import AffineTransform, warp

    h, w = image.shape[:2]
    inverse = np.linalg.inv(matrix)
    gain = float(np.linalg.svd(matrix[:2, :2], compute_uv=False).max())
    factor = int(1.0 / gain) if gain < 0.5 else 1
    corners = apply_affine(inverse, np.array([[-0.5, -0.5], [size - 0.5, -0.5], [-0.5, size - 0.5],
                                              [size - 0.5, size - 0.5]]))
    pad = 2 * factor + 2
    x0 = min(max(int(math.floor(corners[:, 0].min())) - pad, 0), w - 1)
    y0 = min(max(int(math.floor(corners[:, 1].min())) - pad, 0), h - 1)
    x1 = max(min(int(math.ceil(corners[:, 0].max())) + pad + 1, w), x0 + 1)
    y1 = max(min(int(math.ceil(corners[:, 1].max())) + pad + 1, h), y0 + 1)
    region = image[y0:y1, x0:x1]
    # source frame → region frame → reduced frame (pixel centres: x' = (x + 0.5)/f − 0.5)
    to_region = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]])
    if factor > 1:
        region = np.asarray(Image.fromarray(region).reduce(factor))
        to_region = np.array([[1 / factor, 0, 0.5 / factor - 0.5], [0, 1 / factor, 0.5 / factor - 0.5],
                              [0, 0, 1.0]]) @ to_region
    out_to_region = to_region @ inverse
    warped = warp(region, AffineTransform(matrix=out_to_region), output_shape=(size, size), order=1,
                  mode=border, cval=0.0, preserve_range=True)
    return np.clip(np.rint(warped), 0, 255).astype(np.uint8)


def _photometric(image: np.ndarray, rng: np.random.Generator, opts: AugmentOptions) -> np.ndarray:
    from skimage.exposure import adjust_gamma
    from skimage.util import random_noise

    size = image.shape[0]
    if rng.random() < opts.gamma_prob:
        lo, hi = opts.gamma_ranges[int(rng.integers(len(opts.gamma_ranges)))]
        image = adjust_gamma(image, float(rng.uniform(lo, hi)))
    if rng.random() < opts.color_prob:
        gains = rng.uniform(*opts.color_gain, size=3)
        image = np.clip(np.rint(image * gains), 0, 255).astype(np.uint8)
    if rng.random() < opts.noise_prob:
        amount = float(opts.noise_amounts[int(rng.integers(len(opts.noise_amounts)))])
        noisy = random_noise(image, mode="s&p", amount=amount, rng=rng)
        image = np.rint(noisy * 255).astype(np.uint8)
    if rng.random() < opts.blur_prob:
        image = np.asarray(Image.fromarray(image).filter(ImageFilter.MedianFilter(opts.blur_size)))
    image = np.array(image, copy=True)
    k = size / 224.0
    for _ in range(opts.occlusion_max):
        if rng.random() < opts.occlusion_prob:
            x, y = rng.integers(0, int(opts.occlusion_start_max * k) + 1, size=2)
            rw, rh = rng.integers(int(round(opts.occlusion_size[0] * k)), int(round(opts.occlusion_size[1] * k)) + 1,
                                  size=2)
            image[y:y + rh, x:x + rw] = rng.integers(0, 256, size=3, dtype=np.uint8)
    return image


def augment_points(points: np.ndarray, width: int, rng: np.random.Generator, opts: AugmentOptions | None = None,
                   size: int = 224) -> np.ndarray:
    """The points :func:`augment` would return for an image ``width`` pixels wide and the same ``rng`` state,
    without touching pixels (cheap: for fitting a shape model on augmented training shapes)."""
    opts = opts or AugmentOptions()
    points = np.asarray(points, np.float64)
    flip, matrix = _geometry(points, width, rng, opts, size)
    out = apply_affine(matrix, points)
    return out[flip_permutation(len(points))] if flip else out


def augment(image: np.ndarray, points: np.ndarray, rng: np.random.Generator, opts: AugmentOptions | None = None,
            size: int = 224) -> tuple[np.ndarray, np.ndarray]:
    """One augmented training crop: (uint8 size x size x 3, points (N, 2) in crop pixels, all in [0, size)).

    Deterministic given ``rng``'s state. Geometry is drawn first, so switching photometric operations off
    leaves the points unchanged. The image is warped by the exact matrix that maps the points; the crop
    follows the transformed landmarks, so no point can leave it and no sample has to be redrawn (KDR's
    rejection of points outside [0, 224] never triggers).
    """
    opts = opts or AugmentOptions()
    image = _as_rgb(image, "augment")
    points = np.asarray(points, np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or not np.isfinite(points).all():
        raise ValueError(f"points must be finite (N, 2), got shape {points.shape}")
    if 2 * opts.margin_px[1] * size / 224.0 >= size - 1:
        raise ValueError(f"margin_px {opts.margin_px} leaves no room for the face in a {size} px crop")
    if opts.flip_prob > 0 and len(points) not in FLIP_PAIRS:
        raise ValueError(f"no flip map for {len(points)} points: use flip_prob=0 or 68, 98 or 29 points")
    flip, matrix = _geometry(points, image.shape[1], rng, opts, size)
    out_points = apply_affine(matrix, points)
    if flip:
        out_points = out_points[flip_permutation(len(points))]
    out = _warp(image, matrix, size, opts.border)
    assert ((out_points >= 0) & (out_points < size)).all(), "the crop follows the landmarks"
    return _photometric(out, rng, opts), out_points
