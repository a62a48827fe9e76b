"""Camera RAW files (DNG, NEF, CR2, ARW, ...) through rawpy (LibRaw): the Bayer mosaic, its levels, its orientation.

Only 2x2 Bayer sensors are accepted; X-Trans, linear (demosaiced) DNGs and other CFAs are refused
with a message naming the file (spec §10). Odd sizes lose their last row/column. Data LibRaw could not
really decode (a truncated copy, a stub, a mosaic of one value) is refused too, never rendered
(:func:`check_mosaic`). Torch-free, so ``mobilevision isp`` checks its arguments before torch loads.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mobilevision.devices import torch_device_name
from mobilevision.errors import DataError, MobileVisionError
from mobilevision.runtime.tasks.isp import crop_even, pattern_from_cfa, site_levels

ISP_MODELS = ("efficientisp", "robustisp", "rmfa_net_tiny")  # the zoo's RAW -> RGB models (task "isp")
OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}
MIN_TILE = 16                 # packed pixels: below it the 3-pixel halo costs more than the tile
FILL_FRACTION = 0.8           # one unsaturated value in >= 80 % of the pixels: missing data, not a photo
FILL_ROWS = 0.01              # ... or filling >= 1 % of the rows (at least 2) completely
OVERFLOW_FRACTION = 1e-4      # pixels beyond what the sensor can record: at most 1 in 10,000 (a flipped bit)
RECOPY = "copy the complete original from the camera or card again"


@dataclass
class RawMosaic:
    mosaic: np.ndarray            # (H, W) sensor values (uint16), even H and W, as the sensor reads (not rotated)
    pattern: str                  # RGGB / BGGR / GRBG / GBRG
    black_level: list[float]      # per packed channel (B, G_R, R, G_B)
    white_level: float            # saturation, raw units (the camera's own level where LibRaw has one)
    path: Path
    flip: int = 0                 # LibRaw sizes.flip, applied to the rendered picture (runtime apply_flip)


def check_raw_path(path: str | Path) -> Path:
    """``path`` as a Path if it is a non-empty, readable regular file; else a one-line DataError."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"RAW file not found: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a folder, not a RAW file: pass one photo (.dng, .nef, .cr2, .arw, ...)")
    if not path.is_file():
        raise DataError(f"{path} is not a regular file (a pipe or a device): pass the RAW photo file itself")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty (0 bytes): {RECOPY}")
    if not os.access(path, os.R_OK):
        raise DataError(f"cannot read {path}: permission denied (check the file's permissions)")
    return path


def check_output_path(out: str | Path, photo: str | Path | None = None) -> str:
    """The Pillow format for ``out`` (.png/.jpg/.jpeg/.tif/.tiff) if it can be written: not a folder, its
    folder a folder or creatable, writable, not the input ``photo``."""
    out = Path(out)
    fmt = OUTPUT_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise MobileVisionError(f"output {out}: use a .png, .jpg or .tif file name (.jpeg and .tiff work too)")
    if out.is_dir():
        raise MobileVisionError(f"output {out} is a folder: name an image file inside it, e.g. {out / 'photo.png'}")
    folder = out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # atomic_write_bytes creates the missing folders below this one
    if not folder.is_dir():
        raise MobileVisionError(f"output {out}: {folder} is not a folder (it is a file): choose another output path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise MobileVisionError(f"output {out}: cannot write into {folder} (permission denied)")
    if photo is not None and out.exists() and out.resolve() == Path(photo).resolve():
        raise MobileVisionError(f"output {out} is the input photo: choose another output file name")
    return fmt


def check_tile(tile: int) -> None:
    """``tile`` (packed pixels) is 0 (one piece) or an even number >= MIN_TILE."""
    if tile and (tile < MIN_TILE or tile % 2):
        raise MobileVisionError(f"--tile {tile}: use an even number of packed pixels >= {MIN_TILE}, "
                                "or 0 for no tiling")


def check_isp_request(photo: str | Path, out: str | Path, model: str, tile: int, weights: str | Path | None = None,
                      device: str = "auto") -> str:
    """Every argument of an ISP render checked without torch (milliseconds); returns the output's Pillow format."""
    check_raw_path(photo)
    fmt = check_output_path(out, photo)
    check_tile(tile)
    if model not in ISP_MODELS:
        raise MobileVisionError(f"--model {model!r} is not an ISP model: pick one of {', '.join(ISP_MODELS)}")
    if weights is not None and not Path(weights).is_file():
        raise MobileVisionError(f"weights file not found: {weights}")
    try:
        torch_device_name(device)
    except ValueError as e:
        raise MobileVisionError(f"--device {e}") from None
    return fmt


def saturation_level(camera_levels: Sequence[float] | None, white_level: float, black: Sequence[float]) -> float:
    """Raw value at which the sensor saturates: the lowest of LibRaw's per-channel camera levels
    (``camera_white_level_per_channel``) where the file has them above black, else LibRaw's ``white_level``.
    One value for all channels, so normalising keeps the colour ratios."""
    levels = [float(v) for v in camera_levels or ()]
    if levels and min(levels) > max(black):
        return min(levels)
    return float(white_level)


def check_mosaic(mosaic: np.ndarray, white: float, ceiling: float, path: Path) -> None:
    """Refuse data LibRaw could not really decode (DataError naming ``path``).

    Real sensors never give: one value everywhere; values above ``ceiling`` (the largest value of the bit
    depth the white level needs, e.g. 16383 for 15000); one unsaturated value in >= 80 % of the pixels or
    filling >= 1 % of the rows (read noise spreads even a black frame over several values: at a black level
    above 0 no value holds 40 %; at black 0 clipping puts about half of a dark frame at exactly 0).
    Saturated values (>= ``white``) may fill any area: a blown-out sky is a real photo.
    """
    lo, hi = int(mosaic.min()), int(mosaic.max())
    if lo == hi:
        raise DataError(f"{path}: every pixel of the mosaic is {lo}: the file holds no image data (a stub "
                        f"or a failed copy); {RECOPY}")
    over = int(np.count_nonzero(mosaic > ceiling))
    if over > OVERFLOW_FRACTION * mosaic.size:
        raise DataError(f"{path}: {over / mosaic.size:.1%} of the pixels are above the white level {white:g} "
                        f"(up to {hi}), which this sensor cannot record: LibRaw could not decode the image "
                        f"data; {RECOPY}")
    counts = np.bincount(mosaic.ravel(), minlength=int(white))[: int(white)]
    value = int(counts.argmax())
    if counts[value] >= FILL_FRACTION * mosaic.size:
        raise DataError(f"{path}: {counts[value] / mosaic.size:.0%} of the pixels hold the one value {value}: "
                        f"the image data is missing (a truncated or damaged file); {RECOPY}")
    flat = (mosaic == mosaic[:, :1]).all(axis=1) & (mosaic[:, 0] < white)
    if flat.sum() >= max(2, FILL_ROWS * mosaic.shape[0]):
        rows = np.flatnonzero(flat)
        raise DataError(f"{path}: {rows.size} of {mosaic.shape[0]} rows (from row {rows[0]}) hold one value "
                        f"with no sensor noise: the image data is missing (a truncated or damaged file); {RECOPY}")


def _libraw_reason(e: Exception) -> str:
    arg = e.args[0] if e.args else type(e).__name__
    return arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)


def read_raw(path: str | Path) -> RawMosaic:
    """The visible Bayer mosaic of a camera RAW file with its CFA pattern, black/white levels and
    orientation; refuses files LibRaw cannot read and mosaics it could not really decode."""
    path = check_raw_path(path)
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
            camera = raw.camera_white_level_per_channel
            white = saturation_level(camera, raw.white_level, black)
            largest = max([raw.white_level, *(camera or ())])
            flip = int(raw.sizes.flip)
    except rawpy.LibRawIOError as e:
        raise DataError(f"{path} is truncated or unreadable (LibRaw: {_libraw_reason(e)}): {RECOPY}") from e
    except rawpy.LibRawDataError as e:
        raise DataError(f"{path} holds corrupt image data (LibRaw: {_libraw_reason(e)}): {RECOPY}") from e
    except rawpy.LibRawFileUnsupportedError as e:
        raise DataError(f"{path} is not a camera RAW file LibRaw can read ({_libraw_reason(e)}): pass the "
                        "camera's RAW photo (.dng, .nef, .cr2, .arw, ...)") from e
    except (rawpy.LibRawError, OSError) as e:
        raise DataError(f"cannot read {path} as a camera RAW file (LibRaw: {_libraw_reason(e)})") from e
    if flip not in range(8):
        raise DataError(f"{path}: LibRaw reports orientation flip {flip}, not one of 0-7: the photo cannot be "
                        "turned upright (convert it to DNG and try again)")
    mosaic, pattern = crop_even(mosaic, pattern)
    if min(mosaic.shape) < 8:
        raise DataError(f"{path} has a {mosaic.shape[1]}x{mosaic.shape[0]} mosaic, too small to process")
    if white <= max(black):
        raise DataError(f"{path}: white level {white:g} is not above the black levels {black}")
    check_mosaic(mosaic, white, (1 << int(largest).bit_length()) - 1, path)
    return RawMosaic(mosaic, pattern, black, white, path, flip)
