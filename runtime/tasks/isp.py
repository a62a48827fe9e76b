"""RAW handling for the ISP models, torch-free: Bayer packing, level normalisation, exact tiling.

Packed order (spec §2.1): channel 0 = B, 1 = G_R (the green sharing a row with red), 2 = R,
3 = G_B. Any 2x2 Bayer pattern maps onto it (``SITES``); unpacking is the exact inverse.
Normalisation per packed channel: (x - black_c) / (white - black_c), clipped at 0 only on request
(the Fujifilm-trained weights saw slightly negative values, spec P19).

Tiling: the EfficientISP/RobustISP graphs are local (7x7 packed receptive field, zero padding per
conv), so a large photo processed in tiles whose interior borders carry a halo of >= 3 real packed
pixels, and whose outer borders coincide with the image border, equals one full-image pass.

Orientation: the mosaic stays as the sensor reads it (turning it would change the CFA pattern); the
rendered RGB is turned upright afterwards with LibRaw's flip code (``apply_flip``).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

PACKED_ORDER = ("B", "G_R", "R", "G_B")
PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
# (row, col) of each packed channel's site in the 2x2 cell, in PACKED_ORDER (spec §2.1 table)
SITES: dict[str, tuple[tuple[int, int], ...]] = {
    "RGGB": ((1, 1), (0, 1), (0, 0), (1, 0)),
    "BGGR": ((0, 0), (1, 0), (1, 1), (0, 1)),
    "GRBG": ((1, 0), (0, 0), (0, 1), (1, 1)),
    "GBRG": ((0, 1), (1, 1), (1, 0), (0, 0)),
}
HALO = 3  # packed pixels: EfficientISP / RobustISP receptive-field radius


def _pattern(pattern: str) -> str:
    p = str(pattern).upper()
    if p not in SITES:
        raise ValueError(f"unknown Bayer pattern {pattern!r}: use one of {', '.join(PATTERNS)}")
    return p


def pattern_from_cfa(raw_pattern: Sequence[Sequence[int]], color_desc: str | bytes) -> str:
    """The 2x2 pattern name from LibRaw/rawpy's ``raw_pattern`` (colour indices) and ``color_desc``
    (e.g. b"RGBG"); raises ValueError for anything that is not a 2x2 Bayer pattern (X-Trans, ...)."""
    desc = color_desc.decode() if isinstance(color_desc, bytes) else str(color_desc)
    cells = np.asarray(raw_pattern)
    if cells.shape != (2, 2):
        raise ValueError(f"the sensor's colour filter repeats every {cells.shape[0]}x{cells.shape[1]} pixels, "
                         "not a 2x2 Bayer pattern (X-Trans and other CFAs are not supported)")
    try:
        name = "".join(desc[int(i)] for i in cells.ravel()).upper()
    except IndexError as e:
        raise ValueError(f"colour indices {cells.tolist()} do not fit the colour description {desc!r}") from e
    if name not in SITES:
        raise ValueError(f"colour filter {name} is not one of the Bayer patterns {', '.join(PATTERNS)}")
    return name


def pack_bayer(mosaic: np.ndarray, pattern: str = "RGGB") -> np.ndarray:
    """(H, W) mosaic, H and W even -> (4, H/2, W/2) in (B, G_R, R, G_B) order (dtype kept)."""
    m = np.asarray(mosaic)
    if m.ndim != 2:
        raise ValueError(f"a Bayer mosaic is one 2-D plane, got shape {m.shape}")
    if m.shape[0] % 2 or m.shape[1] % 2:
        raise ValueError(f"mosaic size {m.shape[1]}x{m.shape[0]} is odd: crop it to even (crop_even)")
    return np.stack([m[i::2, j::2] for i, j in SITES[_pattern(pattern)]])


def unpack_bayer(packed: np.ndarray, pattern: str = "RGGB") -> np.ndarray:
    """Inverse of :func:`pack_bayer`: (4, h, w) -> (2h, 2w)."""
    p = np.asarray(packed)
    if p.ndim != 3 or p.shape[0] != 4:
        raise ValueError(f"packed RAW must be (4, h, w), got shape {p.shape}")
    out = np.empty((2 * p.shape[1], 2 * p.shape[2]), dtype=p.dtype)
    for c, (i, j) in enumerate(SITES[_pattern(pattern)]):
        out[i::2, j::2] = p[c]
    return out


def crop_even(mosaic: np.ndarray, pattern: str = "RGGB") -> tuple[np.ndarray, str]:
    """Drop a last odd row/column (the pattern is anchored at (0, 0), so it does not change)."""
    m = np.asarray(mosaic)
    return m[: m.shape[0] // 2 * 2, : m.shape[1] // 2 * 2], _pattern(pattern)


def site_levels(per_colour: Sequence[float], raw_pattern: Sequence[Sequence[int]], pattern: str) -> list[float]:
    """Per packed channel, the level LibRaw gives per colour index (``black_level_per_channel``)."""
    cells = np.asarray(raw_pattern)
    return [float(per_colour[int(cells[i, j])]) for i, j in SITES[_pattern(pattern)]]


def normalize_raw(packed: np.ndarray, black_level: float | Sequence[float], white_level: float,
                  clip: bool = False) -> np.ndarray:
    """float32 (x - black_c) / (white - black_c) per packed channel; clipped at 0 when ``clip``."""
    p = np.asarray(packed, dtype=np.float32)
    black = np.broadcast_to(np.asarray(black_level, dtype=np.float32).reshape(-1), (p.shape[0],)).reshape(-1, 1, 1)
    span = np.float32(white_level) - black
    if np.any(span <= 0):
        raise ValueError(f"white level {white_level} must exceed every black level {black.ravel().tolist()}")
    out = (p - black) / span
    return np.maximum(out, 0.0) if clip else out


def _windows(length: int, tile: int, halo: int) -> list[tuple[int, int, int]]:
    """(window start, keep start, keep end) along one axis; windows lie inside [0, length)."""
    if length <= tile:
        return [(0, 0, length)]
    step = tile - 2 * halo
    if step <= 0:
        raise ValueError(f"tile {tile} is too small for a {halo}-pixel halo on both sides")
    out, p = [], 0
    while p < length:
        start = min(max(p - halo, 0), length - tile)
        end = length if start == length - tile else min(p + step if p else tile - halo, length)
        out.append((start, p, end))
        p = end
    return out


def run_tiled(packed: np.ndarray, run: Callable[[np.ndarray], np.ndarray], tile: int | tuple[int, int],
              halo: int = HALO, scale: int = 2) -> np.ndarray:
    """Apply ``run`` ((4, th, tw) -> (C, scale·th, scale·tw)) over (4, h, w) in tiles of ``tile`` packed
    pixels with ``halo`` of real neighbours on interior borders; returns (C, scale·h, scale·w).
    Tiles never extend past the image, so outer borders see the model's own zero padding: exact for
    a model whose receptive-field radius is <= ``halo``. A side shorter than the tile is one window."""
    p = np.asarray(packed)
    th, tw = (tile, tile) if isinstance(tile, int) else tile
    rows, cols = _windows(p.shape[1], th, halo), _windows(p.shape[2], tw, halo)
    out = None
    for r0, keep_r0, keep_r1 in rows:
        for c0, keep_c0, keep_c1 in cols:
            window = p[:, r0:r0 + th, c0:c0 + tw]
            y = np.asarray(run(window))
            if out is None:
                out = np.empty((y.shape[0], scale * p.shape[1], scale * p.shape[2]), dtype=y.dtype)
            out[:, scale * keep_r0:scale * keep_r1, scale * keep_c0:scale * keep_c1] = \
                y[:, scale * (keep_r0 - r0):scale * (keep_r1 - r0), scale * (keep_c0 - c0):scale * (keep_c1 - c0)]
    return out


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8, rounded (clamped first, as the reference saves PNGs)."""
    return (np.clip(np.asarray(rgb, dtype=np.float32), 0.0, 1.0).transpose(1, 2, 0) * 255.0 + 0.5).astype(np.uint8)


def apply_flip(image: np.ndarray, flip: int) -> np.ndarray:
    """``image`` (H, W, ...) turned as LibRaw's ``sizes.flip`` says (0 none, 3 180°, 5 90° CCW, 6 90° CW;
    bit 1 mirrors columns, bit 2 rows, bit 4 swaps the axes, as LibRaw's flip_index), so a photo comes out upright."""
    if flip not in range(8):
        raise ValueError(f"LibRaw flip {flip} is not one of 0-7")
    if flip & 2:
        image = image[::-1]
    if flip & 1:
        image = image[:, ::-1]
    if flip & 4:
        image = image.swapaxes(0, 1)
    return np.ascontiguousarray(image)
