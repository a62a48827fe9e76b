"""Facial-landmark metrics (spec §8): per-image NME, failure rate, AUC and the CED curve.

NME_i = mean_j ||p_j - g_j||_2 / d_i with d_i the inter-ocular distance (outer eye corners) by default or
the inter-pupil distance. AUC@0.1 is the standard area under the CED curve up to 0.1, normalised to
[0, 1]; ``auc_fard2022`` reproduces the author's running-sum variant (max 0.95, not comparable).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import auc as trapezoid_area

from mobilevision.data.landmarks import INTER_OCULAR, INTER_PUPIL

NORMALISERS = ("inter_ocular", "inter_pupil")


def normaliser_distance(gt: np.ndarray, normaliser: str = "inter_ocular") -> np.ndarray:
    """d_i per image from ground truth (M, N, 2)."""
    n = gt.shape[1]
    if normaliser not in NORMALISERS:
        raise ValueError(f"unknown NME normaliser {normaliser!r}: use one of {', '.join(NORMALISERS)}")
    table = INTER_OCULAR if normaliser == "inter_ocular" else INTER_PUPIL
    if n not in table:
        raise ValueError(f"no {normaliser} definition for {n} landmarks: supported counts are "
                         f"{', '.join(map(str, sorted(table)))}")
    a, b = table[n]
    left = gt[:, list(a) if isinstance(a, tuple) else [a]].mean(axis=1)
    right = gt[:, list(b) if isinstance(b, tuple) else [b]].mean(axis=1)
    return np.linalg.norm(left - right, axis=-1)


def per_image_nme(pred: np.ndarray, gt: np.ndarray, normaliser: str = "inter_ocular") -> np.ndarray:
    """NME_i (a fraction, not %) for predictions and ground truth of shape (M, N, 2)."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(f"predictions {pred.shape} and ground truth {gt.shape} must both be (M, N, 2)")
    d = normaliser_distance(gt, normaliser)
    if np.any(d <= 0):
        raise ValueError(f"{int(np.sum(d <= 0))} image(s) have a zero {normaliser} distance: "
                         "their eye points coincide, so NME is undefined")
    return np.linalg.norm(pred - gt, axis=-1).mean(axis=1) / d


def ced_curve(nme: np.ndarray, limit: float = 0.1, step: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds e, fraction of images with NME_i <= e) on a grid from 0 to ``limit``."""
    e = np.linspace(0.0, limit, int(round(limit / step)) + 1)
    frac = np.searchsorted(np.sort(nme), e, side="right") / len(nme)
    return e, frac


def auc(nme: np.ndarray, limit: float = 0.1) -> float:
    """Standard AUC@limit: (1/limit) times the trapezoid integral of the CED from 0 to limit, in [0, 1]."""
    e, frac = ced_curve(nme, limit)
    return float(trapezoid_area(e, frac) / limit)


def auc_fard2022(nme: np.ndarray, limit: float = 0.1, points: int = 20) -> float:
    """The author's AUC (FLD-DD ``calculate_AUC``): CED on linspace(0, limit, 20), its running sum as the
    abscissa and the thresholds as the integrand of a trapezoid; max 0.95 at limit 0.1. Reproduction only."""
    e = np.linspace(0.0, limit, points)
    ced = np.array([np.mean(nme <= x) for x in e])
    return float(trapezoid_area(np.cumsum(ced), e))


def failure_rate(nme: np.ndarray, threshold: float = 0.1) -> float:
    """Percentage of images with NME_i > threshold."""
    return float(100.0 * np.mean(nme > threshold))


@dataclass
class LandmarkReport:
    """NME in %, FR@0.1 in %, AUC@0.1 in [0, 1] (standard) and the author's variant, over ``images``."""

    name: str
    images: int
    nme: float
    failure_rate: float
    auc: float
    auc_fard2022: float
    normaliser: str

    def to_dict(self) -> dict:
        return asdict(self)


def landmark_report(name: str, pred: np.ndarray, gt: np.ndarray, normaliser: str = "inter_ocular",
                    threshold: float = 0.1) -> tuple[LandmarkReport, np.ndarray]:
    """The report and the per-image NME values."""
    nme = per_image_nme(pred, gt, normaliser)
    return LandmarkReport(name=name, images=len(nme), nme=float(100.0 * nme.mean()),
                          failure_rate=failure_rate(nme, threshold), auc=auc(nme, threshold),
                          auc_fard2022=auc_fard2022(nme, threshold), normaliser=normaliser), nme
