"""Built-in facial-landmark data: procedurally drawn faces with exact 68-point iBUG (300W) landmarks.

Nothing is downloaded. Each face is built as a small 3-D point model (jaw, brows, eyes, nose, lips,
plus forehead, hair, ears, neck and clothes that carry no landmarks), posed (yaw, pitch about the
head, roll in the image plane), projected orthographically and drawn with Pillow at 2x, then
box-downsampled. Every drawn contour is a Catmull-Rom spline *through* the projected landmarks, so
the landmarks are exact for what is drawn. Backgrounds are random crops of photographs shipped
inside scikit-image (ones with people in them, ``astronaut`` and ``camera``, are left out so that no
unlabelled real face appears).

Landmarks follow spec §7.1: 68 (x, y) points, iBUG order, "left"/"right" meaning image sides
(0-16 jaw from the image-left ear via the chin 8; 36 the image-left eye's outer corner, 45 the
image-right eye's outer corner; ...), so the §7.4 flip pairs hold. In memory (:class:`FaceSample`)
they are **0-based pixel-centre coordinates**: pixel (col, row) covers [col-0.5, col+0.5].

``.pts`` convention (:data:`PTS_ONE_BASED` = True): like the real 300W files the written
coordinates are MATLAB 1-based, i.e. ``x + 1, y + 1`` of the in-memory values, so a reader that
handles 300W handles this set identically (the reference subtracts nothing; a constant 1-px offset
does not change NME).

Variety (all drawn from the generator): face width/length, jaw squareness and taper, forehead
height; eye size, spacing, tilt and openness (with occasional near-blinks), gaze; brow height, arch,
raise/frown and thickness; nose length and width; mouth width, lip thickness, smile, open mouth with
teeth; skin tone on a light-to-dark scale, hair colour and style (bald, short, long, fringe), iris
colour, clothes; pose (roll ~ N(0, 12°) within ±30°, yaw ±25°, pitch ±15°), scale (face width 36-62 %
of the frame) and position; side lighting (face shading, nose shadow, image gradient); background
blur and tint; mild blur and sensor noise.

Layout written by :func:`write_builtin_faces` (300W-style)::

    root/train/00000.png  root/train/00000.pts  ...
    root/test/00000.png   root/test/00000.pts   ...
    root/builtin.json     (written last: version, seed, counts, size, coordinate convention)

:func:`builtin_faces_dir` keeps the default set (1,500 + 300 faces, 256 px, about 170 MB, ~25 s on one
core) in ``<cache>/landmarks/builtin-v1-seed{seed}``, ``<cache>`` being ``$MOBILEVISION_CACHE`` or
``$XDG_CACHE_HOME/mobilevision`` or ``~/.cache/mobilevision``.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from mobilevision.atomic_io import atomic_write_text, move_into_place
from mobilevision.data.cache import cache_root
from mobilevision.errors import DataError

log = logging.getLogger("mobilevision.data")

BUILTIN_VERSION = 1
N_POINTS = 68
PTS_ONE_BASED = True          # .pts files hold MATLAB 1-based coordinates (300W convention)
DEFAULT_TRAIN, DEFAULT_TEST, DEFAULT_SIZE = 1500, 300, 256
MAX_ROLL, MAX_YAW, MAX_PITCH = 30.0, 25.0, 15.0   # degrees; |yaw| <= 25 keeps every feature visible
_SPLITS = ("train", "test")

# scikit-image photos used as backgrounds (loader names; stereo_motorcycle gives a tuple, grey ones are replicated)
_BACKGROUNDS = ("coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
                "stereo_motorcycle", "coins", "brick", "grass", "gravel", "moon", "page")
_SKIN = np.array([(255, 224, 196), (241, 194, 167), (224, 172, 138), (198, 134, 96),
                  (160, 102, 70), (120, 75, 50), (88, 56, 40)], dtype=np.float64)
_HAIR = np.array([(22, 18, 16), (45, 32, 24), (80, 55, 35), (120, 85, 55), (195, 160, 105),
                  (140, 65, 35), (150, 150, 150), (215, 210, 200)], dtype=np.float64)
_HAIR_P = np.array([0.28, 0.2, 0.15, 0.1, 0.09, 0.06, 0.07, 0.05])
_IRIS = np.array([(60, 38, 22), (95, 60, 30), (70, 110, 150), (80, 115, 70), (120, 95, 50),
                  (105, 115, 120), (35, 25, 20)], dtype=np.float64)


@dataclass(frozen=True)
class FacePose:
    """Head pose in degrees: roll in the image plane (+: clockwise on screen), yaw (+: the nose turns
    image-right), pitch (+: chin up, the nose tip moves toward the eyes)."""

    roll: float = 0.0
    yaw: float = 0.0
    pitch: float = 0.0


@dataclass
class FaceSample:
    """One rendered face: RGB uint8 (size, size, 3) and (68, 2) float (x, y) 0-based pixel-centre landmarks."""

    image: np.ndarray
    landmarks: np.ndarray
    pose: FacePose


# ---------------------------------------------------------------- the face model (face units, y down)

def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _depth(x: np.ndarray) -> np.ndarray:
    """Depth of the face surface (toward the camera) across the face: centre +0.25, sides -0.2."""
    return 0.45 * (1.0 - np.minimum(np.asarray(x, dtype=np.float64) ** 2, 1.6)) - 0.2


def _pts3(x, y, z=None) -> np.ndarray:
    x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
    z = _depth(x) if z is None else np.broadcast_to(np.asarray(z, np.float64), x.shape)
    return np.stack([x, y, z], axis=-1)


def _resample(curve: np.ndarray, n: int) -> np.ndarray:
    """n points at equal arc length along a polyline (first and last kept)."""
    seg = np.linalg.norm(np.diff(curve, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(t, s, curve[:, k]) for k in range(curve.shape[1])], axis=1)


@dataclass
class _Face:
    """Landmarks (68, 3) and the unlabelled shapes, all in face units (half face width = 1)."""

    lm: np.ndarray
    shapes: dict[str, np.ndarray]
    params: dict[str, float]


def _jaw(rng: np.random.Generator, top: float, chin: float) -> np.ndarray:
    """Points 0-16: a tapered superellipse from ear level (``top``) to ``chin``, evenly spaced along it."""
    sq, taper = _u(rng, 2.0, 3.4), _u(rng, 0.0, 0.22)
    th = np.linspace(0.0, np.pi, 241)
    c, s = np.cos(th), np.sin(th)
    y = top + (chin - top) * np.abs(s) ** (2.0 / sq)
    x = -np.sign(c) * np.abs(c) ** (2.0 / sq) * (1.0 - taper * ((y - top) / (chin - top)) ** 2)
    xy = _resample(np.stack([x, y], 1), 17)
    tangent = np.gradient(xy, axis=0)
    normal = np.stack([tangent[:, 1], -tangent[:, 0]], 1) / np.linalg.norm(tangent, axis=1, keepdims=True)
    xy += normal * rng.normal(0.0, 0.008, (17, 1))              # irregular contour, spacing kept
    xy[:, 1] = np.minimum(xy[:, 1], xy[8, 1] - 0.004 * np.abs(np.arange(17) - 8))   # 8 is the chin
    z = _depth(xy[:, 0]) + 0.12 * ((xy[:, 1] - top) / (chin - top)) ** 2
    return np.concatenate([xy, z[:, None]], axis=1)


def _eye(rng: np.random.Generator, cx: float, hw: float, tilt: float, openness: float,
         side: int) -> np.ndarray:
    """Six eye points in iBUG order for one eye; side -1 image-left (36-41), +1 image-right (42-47)."""
    up, low = 0.5 * hw * openness, 0.3 * hw * openness
    outer, inner = cx + side * hw, cx - side * hw
    yo, yi = -tilt, 0.0

    def along(f: float) -> tuple[float, float]:
        return outer + (inner - outer) * f, yo + (yi - yo) * f
    x1, y1 = along(_u(rng, 0.28, 0.36))
    x2, y2 = along(_u(rng, 0.62, 0.72))
    x4, y4 = along(0.66)
    x5, y5 = along(0.33)
    pts = [(outer, yo), (x1, y1 - up * _u(rng, 0.9, 1.05)), (x2, y2 - up * _u(rng, 0.85, 1.0)), (inner, yi),
           (x4, y4 + low), (x5, y5 + low * _u(rng, 0.9, 1.05))]
    if side > 0:   # 42 inner, 43-44 upper lid inner->outer, 45 outer, 46-47 lower lid outer->inner
        pts = [pts[3], pts[2], pts[1], pts[0], pts[5], pts[4]]
    p = np.array(pts)
    return _pts3(p[:, 0], p[:, 1], _depth(p[:, 0]) - 0.05)


def _build_face(rng: np.random.Generator) -> _Face:
    """Sample face shape and expression; return landmarks and the unlabelled shapes."""
    hs = _u(rng, 0.88, 1.12)                      # lower-face length
    top = _u(rng, -0.02, 0.12)                    # jaw points 0/16 (ear level)
    eye_hw, eye_dx = _u(rng, 0.17, 0.23), _u(rng, 0.40, 0.50)
    eye_open = _u(rng, 0.35, 1.15) if rng.random() > 0.06 else _u(rng, 0.08, 0.3)
    tilt = _u(rng, -0.03, 0.06)
    y27, y30 = _u(rng, -0.08, 0.02), _u(rng, 0.52, 0.66) * hs
    y33 = y30 + _u(rng, 0.08, 0.13)
    nose_hw = _u(rng, 0.16, 0.25)
    ym = y33 + _u(rng, 0.22, 0.33) * hs
    mouth_hw = _u(rng, 0.30, 0.42)
    up_th, low_th = _u(rng, 0.05, 0.10), _u(rng, 0.07, 0.14)
    mouth_open = 0.0 if rng.random() < 0.45 else _u(rng, 0.02, 0.28)
    smile = _u(rng, -0.04, 0.11)
    chin = max(_u(rng, 1.62, 1.85) * hs, ym + low_th + mouth_open + 0.3) + 0.6 * mouth_open
    lm = np.zeros((N_POINTS, 3))
    lm[0:17] = _jaw(rng, top, chin)

    # brows: 17-21 image-left outer->inner, 22-26 image-right inner->outer
    raise_ = _u(rng, -0.03, 0.09)
    brow_y = _u(rng, -0.40, -0.30) - raise_ - 0.02 * eye_open
    arch, inner_drop = _u(rng, 0.02, 0.09), _u(rng, -0.03, 0.05)
    bx_in, bx_out = _u(rng, 0.10, 0.20), eye_dx + eye_hw + _u(rng, -0.02, 0.12)
    f = np.linspace(0.0, 1.0, 5)
    bx = bx_out + (bx_in - bx_out) * f
    by = brow_y - arch * np.sin(np.pi * (0.15 + 0.85 * f ** 0.8)) + inner_drop * f ** 2 + 0.03 * (1 - f) ** 2
    brow_th = _u(rng, 0.035, 0.08)
    for k, side in ((17, -1), (22, 1)):
        order = slice(None) if side < 0 else slice(None, None, -1)
        jit = rng.normal(0, 0.006, (5, 2))
        lm[k:k + 5] = _pts3(side * bx[order] + jit[:, 0], by[order] + jit[:, 1])

    # eyes
    d_open = _u(rng, -0.08, 0.08)
    lm[36:42] = _eye(rng, -eye_dx, eye_hw, tilt, max(eye_open + d_open, 0.06), -1)
    lm[42:48] = _eye(rng, eye_dx, eye_hw, tilt, max(eye_open - d_open, 0.06), 1)

    # nose: 27-30 bridge top->tip (protruding), 31-35 base left->right
    ny = np.linspace(y27, y30, 4)
    lm[27:31] = _pts3(rng.normal(0, 0.005, 4), ny, _depth(0.0) + np.array([0.08, 0.17, 0.26, 0.36]))
    nx = np.array([-1.0, -0.5, 0.0, 0.5, 1.0]) * nose_hw
    nb = y33 - np.array([0.05, 0.015, 0.0, 0.015, 0.05]) * _u(rng, 0.6, 1.4)
    lm[31:36] = _pts3(nx, nb, _depth(nx) + np.array([0.08, 0.14, 0.18, 0.14, 0.08]))

    # lips: outer 48-59 clockwise from the image-left corner, inner 60-67
    cx_ = np.array([-1.0, -0.62, -0.26, 0.0, 0.26, 0.62, 1.0]) * mouth_hw
    corner_up = smile * (1.0 + mouth_open)
    bend = corner_up * (np.abs(cx_) / mouth_hw) ** 2            # corners up when smiling
    bow = _u(rng, 0.0, 0.025)
    upper = ym - mouth_open * 0.35 - up_th * np.array([0.0, 0.75, 1.0, 0.85, 1.0, 0.75, 0.0]) \
        + np.array([0, 0, -bow, 0, -bow, 0, 0]) - bend
    lx = np.array([0.6, 0.3, 0.0, -0.3, -0.6]) * mouth_hw         # 55..59 run right -> left
    lbend = corner_up * (np.abs(lx) / mouth_hw) ** 2
    lower = ym + mouth_open * 0.65 + low_th * np.array([0.7, 0.95, 1.0, 0.95, 0.7]) - lbend
    lm[48:55] = _pts3(cx_, upper, _depth(cx_) + 0.05)
    lm[55:60] = _pts3(lx, lower, _depth(lx) + 0.05)
    ix = np.array([-0.85, -0.4, 0.0, 0.4, 0.85]) * mouth_hw        # 60..64
    ibend = corner_up * (np.abs(ix) / mouth_hw) ** 2
    seam = ym - ibend - 0.012 * (1 - (ix / mouth_hw) ** 2)
    gap = np.sqrt(np.maximum(1 - (ix / (0.85 * mouth_hw)) ** 2, 0.0))
    itop = seam - mouth_open * 0.35 * gap
    ibot = seam + mouth_open * 0.65 * gap
    lm[60:65] = _pts3(ix, itop, _depth(ix) + 0.03)
    lm[65:68] = _pts3(ix[3:0:-1], ibot[3:0:-1], _depth(ix[3:0:-1]) + 0.03)   # 65, 66, 67 right -> left

    shapes: dict[str, np.ndarray] = {}
    fh = _u(rng, 1.0, 1.4)                                  # forehead top above the eye line
    phi = np.linspace(0.0, np.pi, 33)[1:-1]                 # from image-right over the top to image-left
    wx = np.abs(lm[16, 0]) * 0.5 + np.abs(lm[0, 0]) * 0.5
    shapes["forehead"] = _pts3(wx * np.cos(phi) * (1 - 0.07 * np.sin(phi)), top - (top + fh) * np.sin(phi) ** 0.9)
    shapes["ear_l"] = _ellipse3(-wx - 0.03, top + 0.2, 0.13, 0.27, -0.35)
    shapes["ear_r"] = _ellipse3(wx + 0.03, top + 0.2, 0.13, 0.27, -0.35)
    nw = _u(rng, 0.5, 0.65)
    shapes["neck"] = _pts3([-nw, nw, nw * 1.05, -nw * 1.05], [0.8, 0.8, chin + 1.6, chin + 1.6], -0.4)
    sy, sw = chin + _u(rng, 0.35, 0.7), _u(rng, 1.6, 2.6)
    th = np.linspace(np.pi, 2 * np.pi, 17)
    shoulders = np.stack([sw * np.cos(th), sy + 0.5 * (1 + np.sin(th)) ** 2], 1)
    shapes["clothes"] = _pts3(np.r_[shoulders[:, 0], sw, -sw], np.r_[shoulders[:, 1], sy + 4, sy + 4], -0.5)
    style = rng.choice(3, p=[0.1, 0.45, 0.45])               # bald, short, long
    if style:
        hx, htop = wx * _u(rng, 1.05, 1.22), fh + _u(rng, 0.08, 0.35)
        bottom = top + _u(rng, -0.1, 0.35) if style == 1 else chin + _u(rng, 0.2, 1.6)
        cap = np.linspace(0.0, np.pi, 31)
        hair = np.stack([hx * np.cos(cap), top - (top + htop) * np.sin(cap)], 1)
        hair = np.r_[[[hx * 1.02, bottom]], hair, [[-hx * 1.02, bottom]]]
        shapes["hair"] = _pts3(hair[:, 0], hair[:, 1], -0.45)
        if rng.random() < 0.35:                               # a fringe, its edge above the brows
            fx = np.linspace(-wx * 1.05, wx * 1.05, 13)
            limit = float(lm[17:27, 1].min()) - 0.12
            edge = limit - _u(rng, 0.0, 0.3) + _u(rng, -0.15, 0.15) * fx - 0.04 * rng.random(13)
            edge = np.minimum(edge, limit)
            cap = np.linspace(0.0, np.pi, 21)                 # back over the top, right -> left
            fr = np.r_[np.stack([fx, edge], 1), np.stack([hx * np.cos(cap), top - (top + htop) * np.sin(cap)], 1)]
            shapes["fringe"] = _pts3(fr[:, 0], fr[:, 1], _depth(fr[:, 0]) + 0.02)
    params = dict(style=float(style), mouth_open=mouth_open, brow_th=brow_th)
    return _Face(lm, shapes, params)


def _ellipse3(cx: float, cy: float, rx: float, ry: float, z: float, n: int = 16) -> np.ndarray:
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    return _pts3(cx + rx * np.cos(t), cy + ry * np.sin(t), z)


# ---------------------------------------------------------------- pose and projection

@dataclass
class _Camera:
    """Face units -> output pixel-centre coordinates: yaw, pitch, orthographic, roll, scale, shift."""

    pose: FacePose
    scale: float
    shift: np.ndarray

    def __post_init__(self) -> None:
        ya, pi, ro = np.deg2rad([self.pose.yaw, self.pose.pitch, self.pose.roll])
        yaw = np.array([[np.cos(ya), 0.0, np.sin(ya)], [0.0, 1.0, 0.0], [-np.sin(ya), 0.0, np.cos(ya)]])
        pitch = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(pi), -np.sin(pi)]])
        roll = np.array([[np.cos(ro), -np.sin(ro)], [np.sin(ro), np.cos(ro)]])
        self.matrix = (roll @ pitch @ yaw).T                  # (3, 2): orthographic after the rotations

    def rotate(self, p: np.ndarray) -> np.ndarray:
        return p @ self.matrix

    def __call__(self, p: np.ndarray) -> np.ndarray:
        return p @ self.matrix * self.scale + self.shift


def _place(rng: np.random.Generator, lm: np.ndarray, pose: FacePose, size: int) -> _Camera:
    """Scale and shift so the face spans 36-62 % of the frame and every landmark lies inside it."""
    margin = 0.03 * size
    rel = 0.0
    for _ in range(20):
        cam = _Camera(pose, 1.0, np.zeros(2))
        p = cam.rotate(lm)
        scale = _u(rng, 0.36, 0.62) * size / 2.0 * (1.0 - rel)
        lo, hi = p.min(0) * scale, p.max(0) * scale
        room_lo, room_hi = margin - lo, size - 1 - margin - hi
        if np.all(room_hi >= room_lo):
            shift = room_lo + (room_hi - room_lo) * rng.random(2)
            return _Camera(pose, scale, shift)
        rel = min(rel + 0.1, 0.8)
    raise AssertionError("face does not fit the frame")   # unreachable: scale shrinks to 20 %


def _sample_pose(rng: np.random.Generator) -> FacePose:
    return FacePose(roll=float(np.clip(rng.normal(0.0, 12.0), -MAX_ROLL, MAX_ROLL)),
                    yaw=_u(rng, -MAX_YAW, MAX_YAW), pitch=_u(rng, -MAX_PITCH, MAX_PITCH))


# ---------------------------------------------------------------- drawing

@lru_cache(maxsize=256)
def _spline_matrix(n: int, closed: bool, per: int) -> np.ndarray:
    """Weights (m, n) that map n control points to a uniform Catmull-Rom curve through all of them."""
    if closed:
        ext = np.eye(n)[np.r_[n - 1, 0:n, 0, 1]]
        segs = n
    else:
        e = np.eye(n)
        ext = np.concatenate([2 * e[:1] - e[1:2], e, 2 * e[-1:] - e[-2:-1]])
        segs = n - 1
    t = np.linspace(0.0, 1.0, per, endpoint=False)[:, None]
    basis = 0.5 * np.concatenate([-t + 2 * t ** 2 - t ** 3, 2 - 5 * t ** 2 + 3 * t ** 3,
                                  t + 4 * t ** 2 - 3 * t ** 3, -t ** 2 + t ** 3], axis=1)   # (per, 4)
    rows = [basis @ ext[i:i + 4] for i in range(segs)]
    if not closed:
        rows.append(np.eye(n)[-1:])
    m = np.concatenate(rows)
    m.flags.writeable = False
    return m


def _spline(p: np.ndarray, closed: bool, per: int = 6) -> np.ndarray:
    """Uniform Catmull-Rom curve through every point of p (n, 2)."""
    return _spline_matrix(len(p), closed, per) @ p


def _rgb(c: np.ndarray) -> tuple[int, int, int]:
    c = np.clip(np.round(c), 0, 255).astype(int)
    return int(c[0]), int(c[1]), int(c[2])


def _poly(draw: ImageDraw.ImageDraw, pts: np.ndarray, color) -> None:
    draw.polygon([tuple(q) for q in pts.tolist()], fill=color)


def _line(draw: ImageDraw.ImageDraw, pts: np.ndarray, color, width: float) -> None:
    draw.line([tuple(q) for q in pts.tolist()], fill=color, width=max(1, int(round(width))), joint="curve")


@lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    if isinstance(img, tuple):
        img = img[0]
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    img = np.ascontiguousarray(img[..., :3], dtype=np.uint8)
    img.flags.writeable = False
    return img


@lru_cache(maxsize=64)
def _photo_image(name: str, short_side: int) -> Image.Image:
    """The photo shrunk so its shorter side is at most short_side (cheap crops and resizes)."""
    im = Image.fromarray(_photo(name))
    f = short_side / min(im.size)
    return im.resize((round(im.width * f), round(im.height * f)), Image.LANCZOS) if f < 1 else im


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """A random crop (30-100 % of the shorter side) of a scikit-image photo, resized, flipped, tinted."""
    im = _photo_image(_BACKGROUNDS[int(rng.integers(len(_BACKGROUNDS)))], int(1.6 * size))
    w, h = im.size
    side = int(min(h, w) * _u(rng, 0.3, 1.0))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    im = im.resize((size, size), Image.BILINEAR, box=(x, y, x + side, y + side))
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < 0.4:
        im = im.filter(ImageFilter.BoxBlur(_u(rng, 0.5, 2.0)))
    tint = rng.uniform(0.75, 1.15, 3) * _u(rng, 0.6, 1.1)
    lut = np.clip(np.arange(256)[None] * tint[:, None], 0, 255).astype(np.uint8)
    return im.point(lut.ravel().tolist())


def _clip_draw(canvas: Image.Image, outline: np.ndarray, paint) -> None:
    """Run paint(draw, offset) on a patch of the canvas and paste it back only inside the outline."""
    x0, y0 = np.floor(outline.min(0)).astype(int) - 2
    x1, y1 = np.ceil(outline.max(0)).astype(int) + 2
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, canvas.width), min(y1, canvas.height)
    if x1 <= x0 or y1 <= y0:
        return
    off = np.array([x0, y0], dtype=np.float64)
    patch = canvas.crop((x0, y0, x1, y1))
    mask = Image.new("L", patch.size, 0)
    _poly(ImageDraw.Draw(mask), outline - off, 255)
    paint(ImageDraw.Draw(patch), off)
    canvas.paste(patch, (x0, y0), mask)


@dataclass
class _Colours:
    skin: np.ndarray
    hair: np.ndarray
    brow: np.ndarray
    lip: np.ndarray
    iris: np.ndarray
    clothes: np.ndarray

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "_Colours":
        t = _u(rng, 0.0, len(_SKIN) - 1.0)                    # a point on the light -> dark skin-tone scale
        i = min(int(t), len(_SKIN) - 2)
        skin = np.clip((_SKIN[i] + (_SKIN[i + 1] - _SKIN[i]) * (t - i)) * rng.uniform(0.94, 1.06, 3), 0, 255)
        hair = np.clip(_HAIR[rng.choice(len(_HAIR), p=_HAIR_P)] * _u(rng, 0.8, 1.2), 0, 255)
        brow = hair * 0.75 if hair.mean() < 150 else skin * 0.55
        lip = skin * 0.78 + (np.array([175.0, 60, 75]) - skin * 0.78) * _u(rng, 0.15, 0.5)
        iris = _IRIS[int(rng.integers(len(_IRIS)))] * _u(rng, 0.85, 1.15)
        return cls(skin, hair, brow, lip, iris, rng.uniform(20, 235, 3))

    def shade(self, f: float) -> tuple[int, int, int]:
        return _rgb(self.skin * f)


@dataclass
class _Painter:
    """Draws one face on the 2x canvas; ``lm`` are the 3-D landmarks, ``L`` their canvas positions."""

    canvas: Image.Image
    cam: _Camera
    face: _Face
    col: _Colours
    light: float                                              # -1 light from image-left ... +1 from the right

    def __post_init__(self) -> None:
        self.draw = ImageDraw.Draw(self.canvas)
        self.lm = self.face.lm
        self.L = self.at(self.lm)
        self.px = 2.0 * self.cam.scale                        # canvas pixels per face unit

    def at(self, p: np.ndarray) -> np.ndarray:
        """Face units -> canvas: output pixel centre c sits at 2c + 0.5 on the 2x canvas."""
        return 2.0 * self.cam(p) + 0.5

    def head(self) -> None:
        """Clothes, hair, neck, ears, and the face (jaw + forehead) shaded from the rim toward a lit centre."""
        d, s, col = self.draw, self.face.shapes, self.col
        clothes = self.at(s["clothes"])
        _poly(d, np.r_[_spline(clothes[:17], False), clothes[17:]], _rgb(col.clothes))
        style = int(self.face.params["style"])
        if style == 2:                                        # long hair falls behind the neck
            _poly(d, _spline(self.at(s["hair"]), True, 3), _rgb(col.hair * 0.85))
        _poly(d, self.at(s["neck"]), col.shade(0.78))
        if style != 2:
            for ear in ("ear_l", "ear_r"):
                _poly(d, _spline(self.at(s[ear]), True, 3), col.shade(0.88))
        if style == 1:
            _poly(d, _spline(self.at(s["hair"]), True, 3), _rgb(col.hair))
        outline = np.concatenate([self.lm[:17], s["forehead"]])
        centre = np.array([0.35 * self.light, 0.35, 0.0])
        for k, f in enumerate((1.0, 0.97, 0.93, 0.88, 0.82, 0.75)):
            pts = self.at(centre + (outline - centre) * [f, f, 1.0])
            rim = self.L[:17] if k == 0 else pts[:17]         # the outermost ring is the exact jaw
            _poly(d, np.r_[_spline(rim, False), _spline(pts[17:], False, 3)], col.shade(0.84 + 0.032 * k))
        if "fringe" in s:
            _poly(d, _spline(self.at(s["fringe"]), True, 3), _rgb(col.hair))

    def nose(self) -> None:
        """Shadow beside the bridge away from the light, tip highlight, nose base and nostrils."""
        d, lm, col = self.draw, self.lm, self.col
        side = -1.0 if self.light > 0 else 1.0
        bridge = lm[27:31]
        outer = bridge + np.c_[side * np.linspace(0.04, 0.12, 4), np.zeros((4, 2))]
        wing = lm[31] if side < 0 else lm[35]
        _poly(d, self.at(np.r_[bridge, wing[None], outer[::-1]]), col.shade(0.88))
        nw = abs(lm[35, 0] - lm[31, 0]) / 2
        tip = lm[30] + [0.0, 0.02, 0.0]
        _poly(d, self.at(_ellipse3(tip[0], tip[1], 0.45 * nw, 0.05, tip[2])), col.shade(1.05))
        for a, b in ((31, 32), (35, 34)):
            c = lm[b] * 0.6 + lm[a] * 0.4 + [0.0, -0.028, 0.0]
            _poly(d, self.at(_ellipse3(c[0], c[1], 0.35 * nw, 0.022, c[2], 12)), col.shade(0.35))
        _line(d, _spline(self.L[31:36], False), col.shade(0.62), 0.018 * self.px)
        for a in (31, 35):
            out = np.sign(lm[a, 0])
            arc = lm[a] + np.array([[0.0, 0.0, 0.0], [out * 0.03, -0.05, 0.0], [out * 0.01, -0.1, 0.0]])
            _line(d, _spline(self.at(arc), False), col.shade(0.7), 0.014 * self.px)

    def eyes(self, rng: np.random.Generator) -> None:
        """Sclera, iris, pupil and catch-light clipped to the lids (36-41, 42-47), then the lid lines."""
        gaze = rng.uniform(-0.3, 0.3, 2) * [1.0, 0.3]
        sclera = _rgb(np.array([238.0, 234, 228]) * _u(rng, 0.8, 0.95))
        lash = _rgb(np.minimum(self.col.hair, 60) * 0.6)
        for k, upper, lower in ((36, [36, 37, 38, 39], [39, 40, 41, 36]), (42, [42, 43, 44, 45], [45, 46, 47, 42])):
            eye = self.lm[k:k + 6]
            outline = _spline(self.L[k:k + 6], True, 5)
            hw = float(np.linalg.norm(eye[3, :2] - eye[0, :2])) / 2
            c = eye.mean(0) + [gaze[0] * hw, gaze[1] * hw, 0.0]
            discs = [(self.at(_ellipse3(c[0], c[1], 0.42 * hw, 0.42 * hw, c[2], 20)), _rgb(self.col.iris * 0.6)),
                     (self.at(_ellipse3(c[0], c[1], 0.36 * hw, 0.36 * hw, c[2], 20)), _rgb(self.col.iris)),
                     (self.at(_ellipse3(c[0], c[1], 0.17 * hw, 0.17 * hw, c[2], 12)), (12, 10, 10)),
                     (self.at(_ellipse3(c[0] + 0.12 * hw, c[1] - 0.12 * hw, 0.06 * hw, 0.06 * hw, c[2], 8)),
                      (245, 245, 245))]

            def paint(d: ImageDraw.ImageDraw, off: np.ndarray, outline=outline, discs=discs) -> None:
                _poly(d, outline - off, sclera)
                for pts, colour in discs:
                    _poly(d, pts - off, colour)
            _clip_draw(self.canvas, outline, paint)
            _line(self.draw, _spline(self.L[upper], False), lash, 0.03 * self.px)
            _line(self.draw, _spline(self.L[lower], False), self.col.shade(0.6), 0.012 * self.px)

    def brows(self) -> None:
        """Tapered bands with the landmarks along their upper part."""
        th = self.face.params["brow_th"]
        taper = np.array([0.5, 0.8, 1.0, 1.0, 0.95])             # outer end thin
        for k, order in ((17, slice(None)), (22, slice(None, None, -1))):
            b = self.lm[k:k + 5]
            t = (taper[order] * th)[:, None] * [0.0, 1.0, 0.0]
            band = np.r_[_spline(self.at(b - 0.25 * t), False), _spline(self.at(b + 0.75 * t), False)[::-1]]
            _poly(self.draw, band, _rgb(self.col.brow))

    def mouth(self) -> None:
        """Dark interior and teeth inside the inner lip when open, then the lips over it."""
        L, lip = self.L, self.col.lip
        opening = self.face.params["mouth_open"]
        if opening > 0:
            inner = _spline(L[60:68], True, 5)
            _poly(self.draw, inner, (45, 18, 20))
            top = self.lm[60:65]
            teeth = np.r_[self.at(top), self.at(top[::-1] + [0.0, min(opening * 0.45, 0.06), 0.0])]
            _clip_draw(self.canvas, inner, lambda d, off: _poly(d, teeth - off, (225, 220, 205)))
        upper = np.r_[_spline(L[48:55], False), _spline(L[60:65], False)[::-1]]
        lower = np.r_[_spline(L[[54, 55, 56, 57, 58, 59, 48]], False), _spline(L[[60, 67, 66, 65, 64]], False)]
        _poly(self.draw, lower, _rgb(lip))
        _poly(self.draw, upper, _rgb(lip * 0.85))
        _line(self.draw, _spline(L[60:65], False), _rgb(lip * 0.45), 0.012 * self.px)


def _render(rng: np.random.Generator, size: int, pose: FacePose | None) -> FaceSample:
    face = _build_face(rng)
    pose = _sample_pose(rng) if pose is None else pose
    cam = _place(rng, face.lm, pose, size)
    col = _Colours.sample(rng)
    light = _u(rng, -1.0, 1.0)
    canvas = _background(rng, size).resize((2 * size, 2 * size), Image.NEAREST)   # reduce(2) gives it back
    painter = _Painter(canvas, cam, face, col, light)
    painter.head()
    painter.nose()
    painter.eyes(rng)
    painter.brows()
    painter.mouth()
    image = _finish(rng, canvas.reduce(2), light, pose.roll)
    return FaceSample(image, cam(face.lm), pose)


@lru_cache(maxsize=4)
def _noise_bank(size: int) -> np.ndarray:
    """Fixed standard-normal noise, (size + 64)^2 x 3; each image adds a random window of it."""
    bank = np.random.default_rng(20240607).standard_normal((size + 64, size + 64, 3), dtype=np.float32)
    bank.flags.writeable = False
    return bank


def _finish(rng: np.random.Generator, img: Image.Image, light: float, roll: float) -> np.ndarray:
    """Lighting gradient, mild blur and sensor noise on the output image."""
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.BoxBlur(_u(rng, 0.3, 0.9)))
    a = np.asarray(img, dtype=np.float32)
    n = a.shape[0]
    ang = np.deg2rad(roll) + (0.0 if light > 0 else np.pi) + _u(rng, -0.6, 0.6)
    g = np.linspace(-0.5, 0.5, n, dtype=np.float32)
    strength = _u(rng, 0.0, 0.45)
    gain = np.float32(_u(rng, 0.8, 1.15)) + strength * (np.cos(ang) * g[None, :] + np.sin(ang) * g[:, None])
    a *= gain[..., None].astype(np.float32)
    sigma = _u(rng, 1.0, 4.0)
    if rng.random() < 0.5:
        oy, ox = rng.integers(0, 64, 2)
        a += _noise_bank(n)[oy:oy + n, ox:ox + n] * np.float32(sigma)
    a += 0.5
    return np.clip(a, 0, 255).astype(np.uint8)


def render_face(rng: np.random.Generator, size: int = DEFAULT_SIZE, pose: FacePose | None = None) -> FaceSample:
    """Draw one random face (size x size RGB) and return it with its exact 68 iBUG landmarks.

    ``pose`` fixes roll/yaw/pitch (e.g. ``FacePose()`` for an upright frontal face); by default it is
    drawn from ``rng`` too (roll ~ N(0, 12°) clipped to ±30°, yaw ±25°, pitch ±15°).
    """
    if size < 32:
        raise DataError(f"face size must be at least 32 px, got {size}")
    return _render(rng, int(size), pose)


# ---------------------------------------------------------------- the built-in 300W-style folder

def format_pts(landmarks: np.ndarray) -> str:
    """A 300W ``.pts`` file for (68, 2) 0-based pixel-centre landmarks (written +1 when PTS_ONE_BASED)."""
    pts = np.asarray(landmarks, dtype=np.float64) + (1.0 if PTS_ONE_BASED else 0.0)
    rows = "".join(f"{x:.3f} {y:.3f}\n" for x, y in pts)
    return f"version: 1\nn_points: {len(pts)}\n{{\n{rows}}}\n"


def builtin_faces_root(seed: int = 0) -> Path:
    """Where :func:`builtin_faces_dir` keeps the default set: ``<cache>/landmarks/builtin-v1-seed{seed}``."""
    return cache_root() / "landmarks" / f"builtin-v{BUILTIN_VERSION}-seed{seed}"


def _meta(seed: int, n_train: int, n_test: int, size: int) -> dict:
    return {"kind": "builtin-faces", "version": BUILTIN_VERSION, "seed": seed, "size": size,
            "counts": {"train": n_train, "test": n_test}, "n_points": N_POINTS, "order": "iBUG 300W (68)",
            "pts_one_based": PTS_ONE_BASED}


def _is_complete(root: Path, meta: dict) -> bool:
    """A finished build with these parameters (builtin.json is written last)."""
    try:
        if json.loads((root / "builtin.json").read_text()) != meta:
            return False
    except (OSError, ValueError):
        return False
    return all(len(list((root / split).glob("*.png"))) == n == len(list((root / split).glob("*.pts")))
               for split, n in meta["counts"].items())


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of face ``index`` of ``split``: independent of the counts, so sets nest."""
    return np.random.default_rng([seed, _SPLITS.index(split), index])


def _generate(out: Path, meta: dict) -> None:
    for split, n in meta["counts"].items():
        (out / split).mkdir(parents=True)
        for i in range(n):
            face = render_face(sample_rng(meta["seed"], split, i), meta["size"])
            Image.fromarray(face.image).save(out / split / f"{i:05d}.png", format="PNG", compress_level=1)
            (out / split / f"{i:05d}.pts").write_text(format_pts(face.landmarks))
    atomic_write_text(out / "builtin.json", json.dumps(meta, indent=2) + "\n")


def write_builtin_faces(root: str | Path, n_train: int, n_test: int, seed: int = 0,
                        size: int = DEFAULT_SIZE) -> Path:
    """Write a 300W-style folder of rendered faces (``train/``, ``test/``: ``NNNNN.png`` + ``.pts``).

    Built in a hidden temporary folder beside ``root`` and renamed into place, so ``root`` only ever
    appears complete; an existing complete build with the same parameters is reused. The same seed
    gives byte-identical files; face i of a split does not depend on the counts.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"built-in dataset seed must be a non-negative integer, got {seed!r}")
    if min(n_train, n_test) < 0 or n_train + n_test == 0:
        raise DataError(f"need a positive number of faces, got n_train={n_train}, n_test={n_test}")
    if size < 32:
        raise DataError(f"face size must be at least 32 px, got {size}")
    root = Path(root)
    meta = _meta(int(seed), int(n_train), int(n_test), int(size))
    if _is_complete(root, meta):
        return root
    if root.exists() and not (root / "builtin.json").is_file() and (not root.is_dir() or any(root.iterdir())):
        raise DataError(f"{root} exists and is not a built-in face dataset (no builtin.json): "
                        "remove it or choose another folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    log.info("rendering %d + %d built-in faces (seed %d) into %s", n_train, n_test, seed, root)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".tmp", dir=root.parent))
    try:
        _generate(tmp, meta)
        if root.exists():
            move_into_place(tmp, root)          # an empty folder or an older build of ours: replaced
        else:
            try:
                os.replace(tmp, root)
            except OSError:
                if not _is_complete(root, meta):  # not a concurrent build of the same data
                    raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def builtin_faces_dir(seed: int = 0) -> Path:
    """The default built-in set (1,500 train + 300 test faces at 256 px), rendered on first use."""
    return write_builtin_faces(builtin_faces_root(seed), DEFAULT_TRAIN, DEFAULT_TEST, seed, DEFAULT_SIZE)
