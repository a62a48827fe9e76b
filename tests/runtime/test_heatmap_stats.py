"""The pieces the Kotlin runtime mirrors exactly: heatmap colours, overlay blending, preprocessing
split into resize + normalise, and the benchmark statistics."""
from __future__ import annotations

import numpy as np
import pytest

from mobilevision.export.metadata import Preprocessing
from mobilevision.runtime.profile import latency_stats
from mobilevision.runtime.tasks.anomaly import heatmap, overlay
from mobilevision.runtime.tasks.classify import normalize, preprocess, resized


def test_heatmap_colours_ends_middle_and_nan():
    h = heatmap(np.array([[-1.0, 0.125, 5.0, np.nan]], np.float32), 0.0, 0.25)
    assert h.dtype == np.uint8 and h.shape == (1, 4, 3)
    assert h[0].tolist() == [[0, 0, 128], [128, 255, 128], [128, 0, 0], [0, 0, 128]]


def test_heatmap_and_overlay_reject_bad_input():
    with pytest.raises(ValueError, match="lo < hi"):
        heatmap(np.zeros((2, 2)), 0.2, 0.1)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        heatmap(np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="one size"):
        overlay(np.zeros((2, 2, 3), np.uint8), np.zeros((3, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="0..256"):
        overlay(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2, 3), np.uint8), alpha=300)


def test_overlay_is_integer_blend():
    img = np.full((1, 1, 3), 200, np.uint8)
    heat = np.array([[[0, 100, 255]]], np.uint8)
    assert overlay(img, heat).tolist() == [[[100, 150, 228]]]          # (200*128 + h*128 + 128) >> 8
    assert overlay(img, heat, alpha=0).tolist() == img.tolist()
    assert overlay(img, heat, alpha=256).tolist() == heat.tolist()


def test_preprocess_is_resized_then_normalized():
    pre = Preprocessing(resize=36, crop=[32, 32], interpolation="bilinear")
    img = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    small = resized(img, pre)
    assert small.size == (32, 32)
    np.testing.assert_array_equal(preprocess(img, pre), normalize(small, pre))
    nhwc = Preprocessing(resize=36, crop=[32, 32], layout="NHWC")
    assert normalize(np.asarray(small), nhwc).shape == (1, 32, 32, 3)


def test_latency_stats_are_numpy_s():
    t = np.array([4.0, 7.0, 5.0, 6.0])
    s = latency_stats(t)
    assert s == {"runs": 4, "median_ms": 5.5, "mean_ms": 5.5, "p90_ms": pytest.approx(6.7), "min_ms": 4.0,
                 "max_ms": 7.0, "std_ms": pytest.approx(float(np.std(t)))}
    with pytest.raises(ValueError, match="at least one"):
        latency_stats([])
