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
