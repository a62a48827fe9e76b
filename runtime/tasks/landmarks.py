"""Face-landmark pre/post-processing (torch-free), shared by training's crops and the runtime.

Frame: the pixel in column i, row j has its centre at (i, j). A box (x0, y0, x1, y1) is a continuous
rectangle in that frame that fills the model input (W x H) edge to edge:
x_in = (x - x0) W / (x1 - x0) - 0.5; the artifact returns landmarks in input pixels (metadata
``landmarks.coordinates == "input_pixels"``) and :func:`to_image` maps them back.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image

from mobilevision.errors import InputMismatch

Box = tuple[float, float, float, float]


IMAGE_METHOD = "detect_landmarks"   # the Model method that takes one image (``Model.predict_each``)


def check_options(box: Sequence[float] | None = None) -> None:
    """The options of a batch, checked once before its first image."""
    if box is not None:
        check_box(box)


def row(result: np.ndarray) -> dict[str, float]:
    """One CSV / JSON row: x0, y0, x1, y1, ... in image pixels."""
    out: dict[str, float] = {}
    for i, (x, y) in enumerate(np.asarray(result, np.float64)):
        out[f"x{i}"], out[f"y{i}"] = float(x), float(y)
    return out


def full_box(width: int, height: int) -> Box:
    """The whole image as a box."""
    return (-0.5, -0.5, width - 0.5, height - 0.5)


MAX_BOX_SIDE = 4.0              # a face box may be at most this many times the image's width / height
MAX_BOX_PIXELS = 1 << 26        # ... and cover at most this many pixels (or the whole image, if larger)


def check_box(box: Sequence[float], image_size: tuple[int, int] | None = None) -> Box:
    """``box`` as 4 floats with positive size; with ``image_size`` (width, height) it must also overlap
    the image and be at most :data:`MAX_BOX_SIDE` times its sides (and :data:`MAX_BOX_PIXELS`, which bounds
    the memory of the crop); partly outside is fine (padded black)."""
    try:
        values = [] if isinstance(box, (str, bytes)) else [float(v) for v in box]
    except (TypeError, ValueError):
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise InputMismatch(f"a face box is 4 finite numbers (x0, y0, x1, y1), got {_show(box)}")
    x0, y0, x1, y1 = values
    if not (x1 > x0 and y1 > y0):
        raise InputMismatch(f"face box {_show(box)} has no area: x1 must exceed x0 and y1 must exceed y0")
    if image_size is None:
        return (x0, y0, x1, y1)
    w, h = image_size
    edges = full_box(w, h)
    if x1 <= edges[0] or x0 >= edges[2] or y1 <= edges[1] or y0 >= edges[3]:
        raise InputMismatch(f"face box {_show(box)} does not overlap the {w}x{h} image (pixel centres x 0..{w - 1}, "
                            f"y 0..{h - 1}): give the box in this image's pixels")
    bw, bh, cap = x1 - x0, y1 - y0, max(MAX_BOX_PIXELS, w * h)
    if bw > MAX_BOX_SIDE * w or bh > MAX_BOX_SIDE * h or bw * bh > cap:
        raise InputMismatch(f"face box {_show(box)} is too large for the {w}x{h} image ({bw:.4g}x{bh:.4g} px; at "
                            f"most {MAX_BOX_SIDE:g}x the image's width and height and {cap / 1e6:.0f} Mpx): "
                            "give a box around the face")
    return (x0, y0, x1, y1)


def _show(box: object) -> str:
    """The box as given, short enough for one line."""
    text = " ".join(repr(list(box) if isinstance(box, (tuple, list)) else box).split())
    return text if len(text) <= 120 else text[:117] + "..."


def crop_image(image: np.ndarray, box: Sequence[float], width: int, height: int) -> np.ndarray:
    """``box`` of an uint8 (H, W, 3) image resized (anisotropically, Pillow's antialiased bilinear) to
    ``height`` x ``width``; borders inside the image are replicated for the filter, and output pixels whose
    centre falls outside the image are black."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = check_box(box, (w, h))
    bx0, by0, bx1, by1 = x0 + 0.5, y0 + 0.5, x1 + 0.5, y1 + 0.5        # Pillow's frame: edges at integers
    pad = int(math.ceil(max((bx1 - bx0) / width, (by1 - by0) / height, 1.0))) + 1   # filter support
    wx0, wy0 = int(math.floor(bx0)) - pad, int(math.floor(by0)) - pad
    wx1, wy1 = int(math.ceil(bx1)) + pad, int(math.ceil(by1)) + pad
    sx0, sy0, sx1, sy1 = max(wx0, 0), max(wy0, 0), min(wx1, w), min(wy1, h)
    if sx1 <= sx0 or sy1 <= sy0:
        return np.zeros((height, width, 3), np.uint8)
    window = np.pad(image[sy0:sy1, sx0:sx1], ((sy0 - wy0, wy1 - sy1), (sx0 - wx0, wx1 - sx1), (0, 0)), mode="edge")
    out = np.array(Image.fromarray(window).resize((width, height), Image.Resampling.BILINEAR,
                                                  box=(bx0 - wx0, by0 - wy0, bx1 - wx0, by1 - wy0)))
    cx = (np.arange(width) + 0.5) * (x1 - x0) / width + x0          # source centres of the output pixels
    cy = (np.arange(height) + 0.5) * (y1 - y0) / height + y0
    out[~((cy >= -0.5) & (cy < h - 0.5))] = 0
    out[:, ~((cx >= -0.5) & (cx < w - 0.5))] = 0
    return out


def to_image(points: np.ndarray, box: Sequence[float], width: int, height: int) -> np.ndarray:
    """Landmarks (K, 2) in input pixels -> image pixels, the inverse of the crop."""
    x0, y0, x1, y1 = check_box(box)
    pts = np.asarray(points, np.float64)
    scale = np.array([(x1 - x0) / width, (y1 - y0) / height])
    return (pts + 0.5) * scale + np.array([x0, y0])


def write_overlay(image, points: np.ndarray, path, box: Sequence[float] | None = None) -> None:
    """The image with the landmarks drawn as red dots and the face box they were found in (yellow; the whole
    image when ``box`` is None), written atomically (PNG or JPEG by suffix)."""
    import io
    from pathlib import Path

    from PIL import ImageDraw

    from mobilevision.atomic_io import atomic_write_bytes
    from mobilevision.runtime.tasks.classify import as_rgb_image

    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(Path(path).suffix.lower())
    if fmt is None:
        raise InputMismatch(f"overlay {path}: use a .png or .jpg file name")
    im = as_rgb_image(image)
    draw = ImageDraw.Draw(im)
    r = max(1.0, min(im.size) / 150)
    x0, y0, x1, y1 = full_box(*im.size) if box is None else check_box(box)
    draw.rectangle((x0 + 0.5, y0 + 0.5, x1 - 0.5, y1 - 0.5), outline=(255, 220, 0), width=max(1, round(r)))
    for x, y in np.asarray(points, np.float64):
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(255, 40, 40))
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    atomic_write_bytes(path, buf.getvalue())
