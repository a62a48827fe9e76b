"""Camera RAW files (DNG, NEF, CR2, ARW, ...) through rawpy (LibRaw): the Bayer mosaic and its levels.

Only 2x2 Bayer sensors are accepted; X-Trans, linear (demosaiced) DNGs and other CFAs are refused
with a message naming the file (spec §10). Odd sizes lose their last row/column.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mobilevision.errors import DataError
from mobilevision.runtime.tasks.isp import crop_even, pattern_from_cfa, site_levels


@dataclass
class RawMosaic:
    mosaic: np.ndarray            # (H, W) sensor values (uint16), even H and W
    pattern: str                  # RGGB / BGGR / GRBG / GBRG
    black_level: list[float]      # per packed channel (B, G_R, R, G_B)
    white_level: float
    path: Path


def read_raw(path: str | Path) -> RawMosaic:
    """The visible Bayer mosaic of a camera RAW file with its CFA pattern and black/white levels."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"RAW file not found: {path}")
    try:
        import rawpy
    except ImportError as e:  # pragma: no cover - rawpy is a declared dependency of the isp extra
        raise DataError("reading camera RAW files needs rawpy: pip install 'mobilevision[isp]'") from e
    try:
        with rawpy.imread(str(path)) as raw:
            if raw.raw_type != rawpy.RawType.Flat or raw.num_colors != 3:
                raise DataError(f"{path} holds no single-plane Bayer mosaic (RAW type {raw.raw_type.name}, "
                                f"{raw.num_colors} colours): linear/demosaiced DNGs are not supported")
            try:
                pattern = pattern_from_cfa(raw.raw_pattern, raw.color_desc)
            except ValueError as e:
                raise DataError(f"{path}: {e}") from e
            mosaic = np.array(raw.raw_image_visible, copy=True)
            black = site_levels(raw.black_level_per_channel, raw.raw_pattern, pattern)
            white = float(raw.white_level)
    except (rawpy.LibRawError, OSError) as e:
        raise DataError(f"cannot read {path} as a camera RAW file: {e}") from e
    mosaic, pattern = crop_even(mosaic, pattern)
    if min(mosaic.shape) < 8:
        raise DataError(f"{path} has a {mosaic.shape[1]}x{mosaic.shape[0]} mosaic, too small to process")
    if white <= max(black):
        raise DataError(f"{path}: white level {white:g} is not above the black levels {black}")
    return RawMosaic(mosaic, pattern, black, white, path)
