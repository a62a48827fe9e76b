"""RAW handling (torch-free runtime part): Bayer packing for every 2x2 pattern, level normalisation,
CFA detection from LibRaw's description, and tiling that equals a full-image pass."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import mobilevision
from mobilevision.runtime.tasks.isp import (PATTERNS, crop_even, normalize_raw, pack_bayer, pattern_from_cfa,
                                            run_tiled, site_levels, to_uint8, unpack_bayer)


def _labelled_mosaic(pattern: str, h: int = 6, w: int = 8) -> np.ndarray:
    """A mosaic whose value says its colour: R=1, G=2, B=3 (which green is told apart by the row)."""
    colour = {"R": 1, "G": 2, "B": 3}
    m = np.zeros((h, w), np.int32)
    for i in range(2):
        for j in range(2):
            m[i::2, j::2] = colour[pattern[2 * i + j]]
    return m


@pytest.mark.parametrize("pattern", PATTERNS)
def test_packing_puts_each_colour_in_its_channel(pattern):
    m = _labelled_mosaic(pattern)
    packed = pack_bayer(m, pattern)
    assert packed.shape == (4, 3, 4)
    assert [int(np.unique(packed[c])[0]) for c in range(4)] == [3, 2, 1, 2]  # B, G, R, G
    # the green in channel 1 shares its rows with red
    rows_with_red = {i % 2 for i in range(m.shape[0]) if 1 in m[i]}
    site_rows = {i for i in range(2) for j in range(2) if pattern[2 * i + j] == "G" and (i % 2) in rows_with_red}
    assert len(site_rows) == 1
    rng = np.random.default_rng(0)
    values = rng.integers(0, 1024, (6, 8))
    assert np.array_equal(unpack_bayer(pack_bayer(values, pattern), pattern), values)


def test_rggb_packing_is_the_reference_order():
    raw = np.arange(16).reshape(4, 4)
    p = pack_bayer(raw, "RGGB")
    assert np.array_equal(p[0], raw[1::2, 1::2]) and np.array_equal(p[1], raw[0::2, 1::2])
    assert np.array_equal(p[2], raw[0::2, 0::2]) and np.array_equal(p[3], raw[1::2, 0::2])


def test_packing_rejects_bad_input():
    with pytest.raises(ValueError, match="odd"):
        pack_bayer(np.zeros((5, 8)), "RGGB")
    with pytest.raises(ValueError, match="unknown Bayer pattern"):
        pack_bayer(np.zeros((4, 4)), "RGBW")
    with pytest.raises(ValueError, match="2-D"):
        pack_bayer(np.zeros((4, 4, 3)))
    cropped, pattern = crop_even(np.zeros((5, 7)), "bggr")
    assert cropped.shape == (4, 6) and pattern == "BGGR"


def test_levels_and_cfa_description():
    assert pattern_from_cfa([[3, 2], [0, 1]], b"RGBG") == "GBRG"
    assert pattern_from_cfa([[0, 1], [3, 2]], "RGBG") == "RGGB"
    with pytest.raises(ValueError, match="not a 2x2 Bayer"):
        pattern_from_cfa(np.zeros((6, 6), int), b"RGBG")
    with pytest.raises(ValueError, match="not one of the Bayer"):
        pattern_from_cfa([[0, 0], [1, 2]], b"RGBG")
    # LibRaw levels per colour index -> per packed channel (B, G_R, R, G_B)
    assert site_levels([10, 20, 30, 40], [[0, 1], [3, 2]], "RGGB") == [30.0, 20.0, 10.0, 40.0]
    p = np.full((4, 2, 2), 512.0)
    out = normalize_raw(p, [62, 60, 58, 61], 1023)
    assert np.allclose(out[:, 0, 0], [(512 - b) / (1023 - b) for b in (62, 60, 58, 61)])
    assert normalize_raw(np.zeros((4, 1, 1)), 63, 1086, clip=False).min() < 0
    assert normalize_raw(np.zeros((4, 1, 1)), 63, 1086, clip=True).min() == 0
    with pytest.raises(ValueError, match="white level"):
        normalize_raw(p, 100, 50)
    assert to_uint8(np.array([[[0.0, 1.2]], [[0.5, -1]], [[1.0, 0.2]]])).tolist() == [[[0, 128, 255], [255, 0, 51]]]


@pytest.mark.parametrize("tile", [16, 24, (16, 40)])
def test_tiling_equals_a_full_pass_for_the_local_isps(tile):
    torch.manual_seed(0)
    model = mobilevision.create_model("efficientisp").eval()
    x = np.random.default_rng(1).uniform(0, 1, (4, 37, 50)).astype(np.float32)
    with torch.no_grad():
        full = model(torch.from_numpy(x[None]))[0].numpy()
        calls = []

        def run(t):
            calls.append(t.shape)
            with torch.no_grad():
                return model(torch.from_numpy(np.ascontiguousarray(t[None])))[0].numpy()
        tiled = run_tiled(x, run, tile)
    assert tiled.shape == (3, 74, 100) and len(calls) > 1
    assert all(s[1:] == ((tile, tile) if isinstance(tile, int) else tile) or s[1] == 37 or s[2] == 50 for s in calls)
    np.testing.assert_allclose(tiled, full, rtol=0, atol=1e-6)
    # too small a halo breaks exactness: the check above is not vacuous
    broken = run_tiled(x, run, 16, halo=1)
    assert np.abs(broken - full).max() > 1e-4
