"""Synthesise realistic RAW from sRGB photos: the "unprocessing" inverse ISP of Brooks et al. (CVPR 2019).

Spec: /work/shared/specs/isp_unpaired.md §9 (google-research ``unprocessing/``). Per image, one draw of
random metadata (camera colour matrix as a random convex combination of four XYZ->camera matrices,
brightness and red/blue white-balance gains, shot/read noise levels), then: inverse smoothstep tone
map, gamma expansion (2.2), inverse colour correction, highlight-safe inverse white balance and
brightness, clip, RGGB mosaic, and heteroscedastic Gaussian noise (variance = shot·x + read).

Everything is numpy with one ``numpy.random.Generator`` per call, so a seed fixes the result. The
mosaic comes back as a full-resolution RGGB plane; pack it with ``runtime.tasks.isp.pack_bayer``
(our packed order is (B, G_R, R, G_B), not Brooks' (R, Gr, Gb, B)). :func:`process` is Brooks'
forward pipeline, for checks (it does not re-apply the tone map or the brightness gain).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

XYZ2CAMS = np.array([
    [[1.0234, -0.2969, -0.2266], [-0.5625, 1.6328, -0.0469], [-0.0703, 0.2188, 0.6406]],
    [[0.4913, -0.0541, -0.0202], [-0.613, 1.3513, 0.2906], [-0.1564, 0.2151, 0.7183]],
    [[0.838, -0.263, -0.0639], [-0.2887, 1.0725, 0.2496], [-0.0627, 0.1427, 0.5438]],
    [[0.6596, -0.2079, -0.0562], [-0.4782, 1.3016, 0.1933], [-0.097, 0.1581, 0.5181]],
])
RGB2XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                    [0.2126729, 0.7151522, 0.0721750],
                    [0.0193339, 0.1191920, 0.9503041]])


@dataclass
class UnprocessMeta:
    """The random draw behind one synthetic RAW (needed to process it back)."""

    cam2rgb: np.ndarray      # (3, 3)
    rgb_gain: float
    red_gain: float
    blue_gain: float
    shot_noise: float | None = None
    read_noise: float | None = None


def random_ccm(rng: np.random.Generator) -> np.ndarray:
    """rgb2cam: a random convex combination of the four XYZ->camera matrices times sRGB->XYZ, rows summing to 1."""
    weights = rng.uniform(1e-8, 1e8, size=(4, 1, 1))
    xyz2cam = (XYZ2CAMS * weights).sum(axis=0) / weights.sum()
    rgb2cam = xyz2cam @ RGB2XYZ
    return rgb2cam / rgb2cam.sum(axis=-1, keepdims=True)


def random_gains(rng: np.random.Generator) -> tuple[float, float, float]:
    """(rgb_gain, red_gain, blue_gain): brightness 1 / N(0.8, 0.1), red U(1.9, 2.4), blue U(1.5, 1.9)."""
    rgb_gain = 1.0 / rng.normal(0.8, 0.1)
    return float(rgb_gain), float(rng.uniform(1.9, 2.4)), float(rng.uniform(1.5, 1.9))


def random_noise_levels(rng: np.random.Generator) -> tuple[float, float]:
    """(shot, read) variance coefficients: log shot ~ U(log 1e-4, log 0.012), log read = 2.18 log shot + 1.20 + N(0, 0.26²)."""
    log_shot = rng.uniform(np.log(0.0001), np.log(0.012))
    log_read = 2.18 * log_shot + 1.20 + rng.normal(0.0, 0.26)
    return float(np.exp(log_shot)), float(np.exp(log_read))


def inverse_smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return 0.5 - np.sin(np.arcsin(1.0 - 2.0 * x) / 3.0)


def gamma_expansion(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 1e-8) ** 2.2


def apply_ccm(image: np.ndarray, ccm: np.ndarray) -> np.ndarray:
    """Per pixel x_i <- Σ_j ccm[i, j] x_j on an (H, W, 3) image."""
    return image @ ccm.T


def safe_invert_gains(image: np.ndarray, rgb_gain: float, red_gain: float, blue_gain: float) -> np.ndarray:
    """Inverse white balance and brightness that leaves near-white pixels (gray > 0.9) unclipped."""
    gains = np.array([1.0 / red_gain, 1.0, 1.0 / blue_gain]) / rgb_gain
    gray = image.mean(axis=-1, keepdims=True)
    mask = (np.maximum(gray - 0.9, 0.0) / 0.1) ** 2
    safe = np.maximum(mask + (1.0 - mask) * gains, gains)
    return image * safe


def mosaic_rggb(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> the (H, W) RGGB Bayer plane (R at (0, 0))."""
    h, w = image.shape[:2]
    out = np.empty((h, w), dtype=image.dtype)
    out[0::2, 0::2] = image[0::2, 0::2, 0]
    out[0::2, 1::2] = image[0::2, 1::2, 1]
    out[1::2, 0::2] = image[1::2, 0::2, 1]
    out[1::2, 1::2] = image[1::2, 1::2, 2]
    return out


def add_noise(mosaic: np.ndarray, shot: float, read: float, rng: np.random.Generator) -> np.ndarray:
    """x + N(0, sqrt(shot·x + read)) per pixel (shot and read are variance coefficients)."""
    variance = mosaic * shot + read
    return mosaic + rng.normal(0.0, 1.0, mosaic.shape) * np.sqrt(np.maximum(variance, 0.0))


def unprocess(image: np.ndarray, rng: np.random.Generator, noise: bool = True) -> tuple[np.ndarray, UnprocessMeta]:
    """sRGB (H, W, 3) in [0, 1] (or uint8), H and W even -> (RGGB mosaic (H, W) float64, mostly in [0, 1]; meta)."""
    img = np.asarray(image)
    if img.dtype == np.uint8:
        img = img.astype(np.float64) / 255.0
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"unprocess takes an (H, W, 3) RGB image, got shape {img.shape}")
    if img.shape[0] % 2 or img.shape[1] % 2:
        raise ValueError(f"image size {img.shape[1]}x{img.shape[0]} must be even for a Bayer mosaic")
    rgb2cam = random_ccm(rng)
    rgb_gain, red_gain, blue_gain = random_gains(rng)
    x = inverse_smoothstep(img.astype(np.float64))
    x = gamma_expansion(x)
    x = apply_ccm(x, rgb2cam)
    x = safe_invert_gains(x, rgb_gain, red_gain, blue_gain)
    x = np.clip(x, 0.0, 1.0)
    m = mosaic_rggb(x)
    meta = UnprocessMeta(np.linalg.inv(rgb2cam), rgb_gain, red_gain, blue_gain)
    if noise:
        meta.shot_noise, meta.read_noise = random_noise_levels(rng)
        m = add_noise(m, meta.shot_noise, meta.read_noise, rng)
    return m, meta


def demosaic_bilinear_rggb(mosaic: np.ndarray) -> np.ndarray:
    """(H, W) RGGB -> (H, W, 3) by bilinear interpolation of each colour's sites (zero-padded borders,
    normalised by the kernel weight that fell on real sites)."""
    from scipy.ndimage import convolve

    h, w = mosaic.shape
    masks = np.zeros((3, h, w))
    masks[0, 0::2, 0::2] = 1
    masks[1, 0::2, 1::2] = masks[1, 1::2, 0::2] = 1
    masks[2, 1::2, 1::2] = 1
    k = np.array([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])
    out = np.empty((h, w, 3))
    for c in range(3):
        num = convolve(mosaic * masks[c], k, mode="constant")
        den = convolve(masks[c], k, mode="constant")
        out[..., c] = np.where(masks[c] > 0, mosaic, num / den)
    return out


def process(mosaic: np.ndarray, meta: UnprocessMeta) -> np.ndarray:
    """Brooks' forward pipeline: white balance (red, 1, blue), clip, bilinear demosaic, cam2rgb, clip, gamma 1/2.2.
    It does not re-apply the smoothstep tone map or the brightness gain (spec §9.3)."""
    m = np.array(mosaic, dtype=np.float64)
    m[0::2, 0::2] *= meta.red_gain
    m[1::2, 1::2] *= meta.blue_gain
    rgb = demosaic_bilinear_rggb(np.clip(m, 0.0, 1.0))
    rgb = np.clip(apply_ccm(rgb, meta.cam2rgb), 0.0, 1.0)
    return np.maximum(rgb, 1e-8) ** (1.0 / 2.2)


def to_sensor_values(mosaic_rggb: np.ndarray, black_level: float = 64.0, white_level: float = 1023.0) -> np.ndarray:
    """A [0, 1] RGGB mosaic as uint16 sensor values: round(x·(white − black) + black), clipped to [0, white]."""
    return np.clip(np.round(mosaic_rggb * (white_level - black_level) + black_level), 0, white_level).astype(np.uint16)
