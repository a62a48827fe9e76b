"""Brooks et al.'s unprocessing (spec §9): seeded, each step as specified, and the forward process undoes it."""
from __future__ import annotations

import numpy as np
import pytest

from mobilevision.data.unprocess import (add_noise, inverse_smoothstep, mosaic_rggb, process, random_ccm,
                                         random_noise_levels, safe_invert_gains, to_sensor_values, unprocess)


def test_seeded_and_deterministic():
    img = np.random.default_rng(0).uniform(0, 1, (16, 24, 3))
    a, ma = unprocess(img, np.random.default_rng(5))
    b, mb = unprocess(img, np.random.default_rng(5))
    c, _ = unprocess(img, np.random.default_rng(6))
    assert np.array_equal(a, b) and ma.red_gain == mb.red_gain and not np.array_equal(a, c)
    assert a.shape == (16, 24)


def test_metadata_ranges_and_ccm_keeps_gray():
    rng = np.random.default_rng(0)
    for _ in range(50):
        ccm = random_ccm(rng)
        np.testing.assert_allclose(ccm.sum(axis=1), 1.0, atol=1e-12)
        _, meta = unprocess(np.full((2, 2, 3), 0.5), rng)
        assert 1.9 <= meta.red_gain <= 2.4 and 1.5 <= meta.blue_gain <= 1.9 and meta.rgb_gain > 0
        shot, read = random_noise_levels(rng)
        assert 1e-4 <= shot <= 0.012 and read > 0


def test_steps_by_hand():
    x = np.array([0.0, 0.25, 0.5, 1.0])
    y = inverse_smoothstep(x)
    np.testing.assert_allclose(3 * y ** 2 - 2 * y ** 3, x, atol=1e-12)   # inverts smoothstep
    img = np.array([[[0.2, 0.4, 0.6]]])
    np.testing.assert_allclose(safe_invert_gains(img, 2.0, 2.0, 1.5), [[[0.2 / 4, 0.4 / 2, 0.6 / 3]]])
    white = np.ones((1, 1, 3))
    np.testing.assert_allclose(safe_invert_gains(white, 2.0, 2.0, 1.5), white)  # highlights kept
    rgb = np.arange(2 * 2 * 3, dtype=float).reshape(2, 2, 3)
    assert mosaic_rggb(rgb).tolist() == [[0.0, 4.0], [7.0, 11.0]]  # R, G / G, B sites


def test_noise_variance_is_shot_times_signal_plus_read():
    rng = np.random.default_rng(0)
    flat = np.full((400, 400), 0.3)
    noisy = add_noise(flat, 0.01, 0.0004, rng)
    assert noisy.var() == pytest.approx(0.3 * 0.01 + 0.0004, rel=0.02)


def test_process_undoes_unprocess_up_to_tone_map_and_brightness():
    img = np.empty((8, 10, 3))
    img[...] = (0.45, 0.5, 0.4)   # constant colour: bilinear demosaic is exact, no channel clips
    mosaic, meta = unprocess(img, np.random.default_rng(3), noise=False)
    out = process(mosaic, meta)
    recovered = (out ** 2.2 * meta.rgb_gain) ** (1 / 2.2)
    recovered = 3 * recovered ** 2 - 2 * recovered ** 3
    np.testing.assert_allclose(recovered, img, atol=1e-6)


def test_sensor_values_and_bad_input():
    m = np.array([[0.0, 1.0], [0.5, -0.1]])
    assert to_sensor_values(m, 64, 1023).tolist() == [[64, 1023], [544, 0]]
    with pytest.raises(ValueError, match="even"):
        unprocess(np.zeros((3, 4, 3)), np.random.default_rng(0))
    with pytest.raises(ValueError, match="RGB"):
        unprocess(np.zeros((4, 4)), np.random.default_rng(0))
