"""Image files -> 8-bit RGB, one conversion for training, evaluation and the runtime (numpy + Pillow, no torch).

Rules: the picture is turned upright by its EXIF orientation (Pillow's ``ImageOps.exif_transpose``, as
viewers show it); 16-bit and 32-bit-integer grey is divided by 257 (full 16-bit range -> full 8-bit
range, not stretched to the image's maximum); 16-bit RGB(A) PNGs arrive from Pillow already reduced
to their high byte; alpha is dropped, not composited; palette entries give their colour; grey, 1-bit
and CMYK go through Pillow's ``convert("RGB")``; 32-bit float images are refused (no standard range).
Files over Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``, its warning level included:
one limit, which users may raise) are refused before their pixels are decoded. Errors are one line, of the
class the caller names (InputMismatch in the runtime, DataError for datasets).

Turning the bomb warning into an error uses ``warnings.catch_warnings``, which swaps the process's warning
filters while a file is opened; concurrent threads can at worst see that one warning category as an error.
"""
from __future__ import annotations

import contextlib
import struct
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import ExifTags, Image, ImageOps

from mobilevision.errors import InputMismatch

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")   # what a folder's images are
READ_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error,
               Image.DecompressionBombError, Image.DecompressionBombWarning)
"""What Pillow raises for a file it cannot (or will not) decode; UnidentifiedImageError is an OSError."""

_SWAPS_SIDES = (5, 6, 7, 8)     # EXIF orientations that turn the picture by 90 degrees
_PNG_TAGS = {"exif", "Raw profile type exif", "XML:com.adobe.xmp", "xmp"}   # where Pillow finds a PNG's tags


def _reason(e: BaseException) -> str:
    """The exception as one line, with what to do about it."""
    text = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return (f"{text} (Pillow's decompression-bomb guard): downscale the image, or raise "
                "PIL.Image.MAX_IMAGE_PIXELS if you trust the file")
    if isinstance(e, (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)):
        return f"{text}: check the path"
    return f"{text}: replace the file, or re-save it as PNG or JPEG"


@contextlib.contextmanager
def opened(path: str | Path, error: type[Exception] = InputMismatch) -> Iterator[Image.Image]:
    """``Image.open(path)`` with decompression-bomb warnings as errors and every read failure, in the
    block too, raised as one-line ``error("cannot read image <path>: ...")``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                yield im
    except READ_ERRORS as e:
        raise error(f"cannot read image {path}: {_reason(e)}") from e


def orientation(im: Image.Image) -> int:
    """The EXIF (or XMP) orientation tag, 1..8; 1 when absent or unreadable. For a PNG only tags stored
    before the pixel data count (reading later ones would decode the image), in every reader alike."""
    if im.format == "PNG" and not _PNG_TAGS & im.info.keys():
        return 1
    try:
        value = im.getexif().get(ExifTags.Base.Orientation, 1)
    except READ_ERRORS:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright(im: Image.Image) -> Image.Image:
    """The picture as viewers show it (EXIF orientation applied); ``im`` itself is not changed."""
    return im if orientation(im) == 1 else ImageOps.exif_transpose(im)


def to_rgb8(im: Image.Image, name: str = "image", error: type[Exception] = InputMismatch) -> np.ndarray:
    """A decoded PIL image of any mode -> uint8 (H, W, 3) by the module's fixed rules (no EXIF turn here)."""
    if im.mode == "I" or im.mode.startswith("I;16"):
        a = np.asarray(im).astype(np.float64)
        grey = np.round(np.clip(a, 0, 65535) / 257.0).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if im.mode == "F":
        raise error(f"{name} is a 32-bit float image, which has no standard range: save it as 8- or 16-bit")
    if im.mode == "RGB":
        return np.asarray(im)
    try:
        if im.mode in ("P", "PA", "LA", "La", "RGBa"):
            im = im.convert("RGBA")
        return np.asarray(im.convert("RGB"))
    except ValueError as e:
        raise error(f"{name}: Pillow cannot convert its {im.mode} pixels to RGB ({e}): save it as "
                    "8-bit RGB") from e


def rgb_image(im: Image.Image, name: str = "image", error: type[Exception] = InputMismatch) -> Image.Image:
    """:func:`to_rgb8` as a PIL image; an RGB image is returned as it is (no copy)."""
    return im if im.mode == "RGB" else Image.fromarray(to_rgb8(im, name, error))


def open_image(path: str | Path, error: type[Exception] = InputMismatch, exif: bool = True) -> Image.Image:
    """An image file -> RGB uint8 PIL image, upright by its EXIF orientation unless ``exif`` is False
    (for pixels paired with sensor-ordered data); failures raise one-line ``error``."""
    with opened(path, error) as im:
        turn = exif and orientation(im) != 1     # read before decoding, as image_size does
        im.load()
        return rgb_image(ImageOps.exif_transpose(im) if turn else im, str(path), error)


def image_size(path: str | Path, error: type[Exception] = InputMismatch) -> tuple[int, int]:
    """(width, height) in pixels of the upright picture, from the file header (no pixel decoding)."""
    with opened(path, error) as im:
        w, h = im.size
        return (h, w) if orientation(im) in _SWAPS_SIDES else (w, h)
