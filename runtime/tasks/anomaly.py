"""Anomaly-detection post-processing, driven by the artifact metadata (torch-free)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class AnomalyResult:
    score: float                  # image score: the maximum of the map (0.1 ~ the validation q_b)
    anomaly_map: np.ndarray       # float32 (H, W) at the original image's size (stretched back)
    threshold: float | None = None

    @property
    def is_anomalous(self) -> bool | None:
        """score > threshold, when a threshold was given."""
        return None if self.threshold is None else self.score > self.threshold


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
