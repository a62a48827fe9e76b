"""Classification pre/post-processing, driven by the artifact metadata (torch-free)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mobilevision.errors import ArtifactError, InputMismatch
from mobilevision.imaging import open_image, to_rgb8, upright
from mobilevision.export.metadata import Preprocessing

RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
            "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS,
            "box": Image.Resampling.BOX, "hamming": Image.Resampling.HAMMING}

PROBABILITY_SLACK = 1e-4       # per class: float32 softmax rounding (and int8 dequantisation) around sum 1
MAX_RESIZED_PIXELS = 1 << 26    # shorter-side resizing of an extreme aspect ratio (1 x 100,000) stops here


@dataclass(frozen=True)
class Classification:
    index: int
    label: str
    score: float          # softmax probability


IMAGE_METHOD = "classify"   # the Model method that takes one image (``Model.predict_each``)


def check_options(top_k: int = 5) -> None:
    """The options of a batch, checked once before its first image."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise InputMismatch(f"top_k must be a whole number >= 1, got {top_k!r}")


def row(result: list[Classification]) -> dict[str, object]:
    """One CSV / JSON row of a top-k list: top1_index, top1_label, top1_score, top2_index, ..."""
    out: dict[str, object] = {}
    for rank, c in enumerate(result, 1):
        out.update({f"top{rank}_index": c.index, f"top{rank}_label": c.label, f"top{rank}_score": c.score})
    return out


def as_rgb_image(image: np.ndarray | Image.Image | str | Path) -> Image.Image:
    """An uint8 (H, W, 3) RGB or (H, W, 4) RGBA array (alpha dropped), a PIL image or an image file path ->
    a new RGB PIL image. Files and PIL images are read by :mod:`mobilevision.imaging` (upright by EXIF,
    16-bit scaled, bomb-guarded). A 2-D array is refused rather than guessed (grey, mask or RAW mosaic)."""
    if isinstance(image, (str, Path)):
        return open_image(image, InputMismatch)
    if isinstance(image, Image.Image):
        arr = to_rgb8(upright(image), "the PIL image", InputMismatch)
    else:
        arr = np.asarray(image)
    shape = tuple(arr.shape)
    if arr.dtype != np.uint8 or arr.ndim != 3 or shape[2] not in (3, 4):
        hint = {"f": ": scale to 0..255 and convert, e.g. (x * 255).round().astype(np.uint8)",
                "b": ": convert, e.g. x.astype(np.uint8) * 255"}.get(arr.dtype.kind, "")
        if arr.dtype == np.uint8 and arr.ndim == 2:
            hint = ": replicate grey to RGB with np.repeat(x[..., None], 3, axis=2)"
        raise InputMismatch(f"an image array must be uint8 HWC RGB (H, W, 3) or RGBA (H, W, 4), got "
                            f"{arr.dtype} array of shape {shape}{hint}")
    if shape[0] == 0 or shape[1] == 0:
        raise InputMismatch(f"the image of shape {shape} has no pixels: pass a picture at least 1x1")
    return Image.fromarray(np.ascontiguousarray(arr[..., :3]))


def resized(image: np.ndarray | Image.Image | str | Path, pre: Preprocessing) -> Image.Image:
    """The image the model sees, ``pre.crop`` (H, W): the shorter side resized to ``pre.resize`` and
    centre-cropped, or stretched straight to ``pre.crop`` (``resize_mode``)."""
    im = as_rgb_image(image)
    if pre.interpolation not in RESAMPLE:   # metadata read from a file is validated; a hand-made one may not be
        raise ArtifactError(f"unknown interpolation {pre.interpolation!r}: use one of {', '.join(RESAMPLE)}")
    resample = RESAMPLE[pre.interpolation]
    if pre.resize_mode == "stretch":
        return im.resize((pre.crop[1], pre.crop[0]), resample)
    if pre.resize_mode == "shorter_side":
        w, h = im.size
        s = pre.resize / min(w, h)
        nw, nh = max(pre.crop[1], round(w * s)), max(pre.crop[0], round(h * s))
        if nw * nh > MAX_RESIZED_PIXELS:
            raise InputMismatch(f"the {w}x{h} image is too elongated: its shorter side resized to {pre.resize} "
                                f"would make it {nw}x{nh} px; crop it to a less extreme aspect ratio first")
        im = im.resize((nw, nh), resample)
        left, top = (nw - pre.crop[1]) // 2, (nh - pre.crop[0]) // 2
        return im.crop((left, top, left + pre.crop[1], top + pre.crop[0]))
    raise InputMismatch(f"unknown resize_mode {pre.resize_mode!r} in the metadata; upgrade mobilevision")


def normalize(image: np.ndarray | Image.Image, pre: Preprocessing) -> np.ndarray:
    """(pixel * scale - mean) / std in float32 of an uint8 RGB image at the model's size -> 1xCxHxW
    (or 1xHxWxC for an NHWC layout). A model that normalises itself (``normalization`` "model") takes the
    uint8 pixels as they are, in its layout."""
    if pre.normalization == "model":
        x = np.asarray(image, dtype=np.uint8)
        return np.ascontiguousarray((x.transpose(2, 0, 1) if pre.layout == "NCHW" else x)[None])
    x = np.asarray(image, dtype=np.float32) * np.float32(pre.scale)
    x = (x - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    if pre.layout == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x[None], dtype=np.float32)


def preprocess(image: np.ndarray | Image.Image | str | Path, pre: Preprocessing) -> np.ndarray:
    """:func:`resized` then :func:`normalize`: the 1xCxHxW float32 model input of one image."""
    return normalize(resized(image, pre), pre)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def top_k(logits: np.ndarray, k: int, labels: list[str] | None, scores: str | None = None) -> list[Classification]:
    """The k most probable classes of a single output vector: logits (softmax applied here), or the
    probabilities of a model with a softmax in its graph (``scores`` "probabilities" in its metadata)."""
    out = np.asarray(logits, dtype=np.float32).reshape(-1)
    if out.size == 0:
        raise ArtifactError("the classifier's output is empty; re-export the artifact")
    if scores == "probabilities":
        probs = out.astype(np.float64)
        if not (np.isfinite(probs).all() and probs.min() >= -PROBABILITY_SLACK
                and abs(probs.sum() - 1.0) <= PROBABILITY_SLACK * max(1, probs.size)):
            raise ArtifactError(f"the metadata says the output holds probabilities, but its {probs.size} values sum "
                                f"to {probs.sum():.4g} (min {probs.min():.3g}); re-export the artifact")
    else:
        probs = softmax(out)
    k = max(1, min(int(k), probs.size))
    order = np.argsort(-probs, kind="stable")[:k]
    return [Classification(int(i), labels[i] if labels and i < len(labels) else str(int(i)), float(probs[i]))
            for i in order]
