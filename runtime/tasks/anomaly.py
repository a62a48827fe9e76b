"""Anomaly-detection post-processing, driven by the artifact metadata (torch-free)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from mobilevision.errors import InputMismatch


@dataclass(frozen=True)
class AnomalyResult:
    score: float                  # image score: the maximum of the map (0.1 ~ the validation q_b)
    anomaly_map: np.ndarray       # float32 (H, W) at the original image's size (stretched back)
    threshold: float | None = None        # the caller's, else the artifact's F1-optimal one, else None
    pixel_threshold: float | None = None  # the artifact's F1-optimal pixel threshold, if it carries one

    @property
    def is_anomalous(self) -> bool | None:
        """score > threshold, when there is a threshold (and a score: NaN decides nothing, never "normal")."""
        if self.threshold is None or math.isnan(self.score):
            return None
        return self.score > self.threshold

    @property
    def anomalous_pixels(self) -> np.ndarray | None:
        """(H, W) bool: map > pixel threshold, when the artifact carries one."""
        if self.pixel_threshold is None:
            return None
        return self.anomaly_map.astype(np.float64) > self.pixel_threshold   # float64: as the threshold was chosen


IMAGE_METHOD = "detect_anomaly"   # the Model method that takes one image (``Model.predict_each``)


def check_options(threshold: float | None = None) -> None:
    """The options of a batch, checked once before its first image."""
    if threshold is not None and not (isinstance(threshold, (int, float)) and math.isfinite(threshold)):
        raise InputMismatch(f"threshold must be a finite number, got {threshold}")


def row(result: AnomalyResult) -> dict[str, object]:
    """One CSV / JSON row: score, the threshold used, the decision and how many pixels are over the pixel
    threshold (empty without thresholds)."""
    pixels = result.anomalous_pixels
    return {"score": result.score, "threshold": result.threshold, "is_anomalous": result.is_anomalous,
            "anomalous_pixels": None if pixels is None else int(pixels.sum())}


def to_image_size(anomaly_map: np.ndarray, width: int, height: int) -> np.ndarray:
    """A (h, w) map at the model's input size -> (height, width), bilinear (the detector stretched the image)."""
    m = np.asarray(anomaly_map, dtype=np.float32).reshape(anomaly_map.shape[-2:])
    if m.shape == (height, width):
        return m
    return np.asarray(Image.fromarray(m, mode="F").resize((width, height), Image.Resampling.BILINEAR),
                      dtype=np.float32)


HEATMAP_RANGE = (0.0, 0.2)   # the detector's maps put the validation 99.5th percentile at 0.1: mid-scale
OVERLAY_ALPHA = 128          # heatmap weight out of 256 in :func:`overlay`


def heatmap(anomaly_map: np.ndarray, lo: float = HEATMAP_RANGE[0], hi: float = HEATMAP_RANGE[1]) -> np.ndarray:
    """(H, W) map -> (H, W, 3) uint8 jet colours, ``lo`` blue to ``hi`` red. Integer-exact across runtimes
    (the Kotlin ``Heatmap.colorize`` gives the same bytes): v = clip((m - lo) / (hi - lo), 0, 1) in float64,
    NaN -> 0; R, G, B = clip(1.5 - |4v - 3|), clip(1.5 - |4v - 2|), clip(1.5 - |4v - 1|); floor(255 c + 0.5)."""
    lo, hi = float(lo), float(hi)
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ValueError(f"heatmap range needs finite lo < hi, got [{lo}, {hi}]")
    m = np.asarray(anomaly_map, dtype=np.float32).astype(np.float64)
    if m.ndim != 2:
        raise ValueError(f"an anomaly map is (H, W), got shape {m.shape}")
    v = np.nan_to_num(np.clip((m - lo) / (hi - lo), 0.0, 1.0), nan=0.0)
    rgb = np.stack([1.5 - np.abs(4.0 * v - c) for c in (3.0, 2.0, 1.0)], axis=-1)
    return np.floor(np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: int = OVERLAY_ALPHA) -> np.ndarray:
    """(image (256 - alpha) + heat alpha + 128) >> 8 per channel, uint8 (H, W, 3): the heatmap over the image."""
    img, hm = np.asarray(image), np.asarray(heat)
    if img.shape != hm.shape or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"overlay needs two (H, W, 3) images of one size, got {img.shape} and {hm.shape}")
    if not 0 <= int(alpha) <= 256:
        raise ValueError(f"overlay alpha is 0..256, got {alpha}")
    a = int(alpha)
    return ((img.astype(np.int32) * (256 - a) + hm.astype(np.int32) * a + 128) >> 8).astype(np.uint8)


def legend_strip(width: int, lo: float, hi: float, marks: dict[str, float], text: str) -> np.ndarray:
    """(h, w, 3) uint8, w >= ``width``: the heatmap's colour bar from ``lo`` (left) to ``hi`` (right) with its scale,
    a tick per ``marks`` entry (name -> map value: the score, the threshold), and a line of ``text`` under it."""
    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default(size=max(10, min(18, int(width) // 40)))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = int(max(width, 160, measure.textlength(text, font=font) + 4))
    line = int(font.size) + 4
    bar_h = max(8, line // 2)
    strip = Image.new("RGB", (width, bar_h + 3 * line + 6), (255, 255, 255))
    ramp = np.linspace(lo, hi, width, dtype=np.float64)[None, :].repeat(bar_h, axis=0)
    strip.paste(Image.fromarray(heatmap(ramp, lo, hi)), (0, line + 2))
    draw = ImageDraw.Draw(strip)
    for name, value in marks.items():   # above the bar: where the score and the threshold fall
        if not math.isfinite(value):
            continue
        x = int(round((min(max(value, lo), hi) - lo) / (hi - lo) * (width - 1)))
        draw.line((x, line - 2, x, line + 2 + bar_h), fill=(0, 0, 0), width=2)
        label = f"{name} {value:.3g}" + (" (off scale)" if not lo <= value <= hi else "")
        w = draw.textlength(label, font=font)
        draw.text((min(max(0, x - w / 2), width - w), 0), label, fill=(0, 0, 0), font=font)
    y = line + 4 + bar_h
    for frac, anchor, note in ((0.0, "la", ""), (0.5, "ma", " = anomaly map value"), (1.0, "ra", "")):
        draw.text((frac * (width - 1), y), f"{lo + frac * (hi - lo):.3g}{note}", fill=(60, 60, 60), font=font,
                  anchor=anchor)
    draw.text((0, y + line), text, fill=(0, 0, 0), font=font)
    return np.asarray(strip)


def readable_overlay(image, result: AnomalyResult, heat_range: tuple[float, float] = HEATMAP_RANGE) -> np.ndarray:
    """The heatmap over the image (exactly :func:`overlay`, in the top rows) above a legend: the colour bar with
    the map's scale, ticks at the score and the threshold, and the decision written out."""
    from .classify import as_rgb_image

    rgb = np.asarray(as_rgb_image(image))
    top = overlay(rgb, heatmap(result.anomaly_map, *heat_range))
    marks = {"score": result.score}
    if result.threshold is not None and result.is_anomalous is not None:
        marks["threshold"] = result.threshold
        text = (f"score {result.score:.4f} {'>' if result.is_anomalous else '<='} threshold {result.threshold:.4g}: "
                f"{'ANOMALOUS' if result.is_anomalous else 'normal'}")
    else:
        text = f"score {result.score:.4f} (no threshold: no decision)"
    strip = legend_strip(rgb.shape[1], heat_range[0], heat_range[1], marks, text)
    if strip.shape[1] > top.shape[1]:   # a narrow image: pad it to the legend's width
        top = np.pad(top, ((0, 0), (0, strip.shape[1] - top.shape[1]), (0, 0)), constant_values=255)
    return np.concatenate([top, strip], axis=0)


def write_overlay(image, result: AnomalyResult, path, heat_range: tuple[float, float] = HEATMAP_RANGE) -> None:
    """:func:`readable_overlay` written atomically (PNG or JPEG by suffix)."""
    import io
    from pathlib import Path

    from mobilevision.atomic_io import atomic_write_bytes

    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"overlay {path}: use a .png or .jpg file name")
    buf = io.BytesIO()
    Image.fromarray(readable_overlay(image, result, heat_range)).save(buf, format=fmt)
    atomic_write_bytes(path, buf.getvalue())
