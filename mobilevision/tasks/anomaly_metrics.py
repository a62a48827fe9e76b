"""Anomaly-detection evaluation on the MVTec AD protocol: image and pixel AU-ROC, AU-PRO, overlays.

AU-ROC is scikit-learn's; AU-PRO follows MVTec's official evaluation code (Bergmann et al., IJCV 2021):
every distinct score is a threshold, ground-truth regions are 8-connected components (scikit-image),
and the (FPR, PRO) curve starts at (0, 0) and is integrated up to ``max_fpr`` then normalised.
No torch here: the metrics run on numpy arrays from any backend.
"""
from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_ONE_CLASS = "needs both good and anomalous test images"


def _binary_labels(labels: Any, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"labels must be a 1-D sequence of {n} values (one per score), got shape {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (good) or 1 (anomalous)")
    return y.astype(bool)


def image_auroc(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """Image-level AU-ROC of anomaly scores (higher = more anomalous) against labels (1 = anomalous)."""
    from sklearn.metrics import roc_auc_score

    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"scores must be 1-D (one per image), got shape {s.shape}")
    y = _binary_labels(labels, len(s))
    if y.all() or not y.any():
        raise ValueError(f"image AU-ROC is undefined with only {'anomalous' if y.any() else 'good'} images: "
                         f"it {_ONE_CLASS}")
    return float(roc_auc_score(y, s))


def f1_threshold(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> tuple[float, float]:
    """(threshold, F1): the F1-optimal threshold on anomaly scores (as anomalib's adaptive threshold), from
    scikit-learn's precision-recall curve.

    The threshold lies halfway between the lowest score called anomalous and the highest score below it, so
    ``score > threshold`` (the runtimes' rule) and ``score >= threshold`` decide every evaluated image alike."""
    from sklearn.metrics import precision_recall_curve

    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = _binary_labels(np.asarray(labels).reshape(-1), len(s))
    if y.all() or not y.any():
        raise ValueError(f"an F1-optimal threshold {_ONE_CLASS}")
    if not np.isfinite(s).all():
        raise ValueError("anomaly scores contain NaN or infinite values")
    precision, recall, cuts = precision_recall_curve(y, s)
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], np.finfo(np.float64).tiny)
    best = int(np.argmax(f1))
    cut = float(cuts[best])
    below = s[s < cut]
    if below.size:
        low = float(below.max())
        threshold = low + (cut - low) / 2   # no overflow near the float range's ends
        if not low <= threshold < cut:      # adjacent floats: no number between them, the lower one decides alike
            threshold = low
    else:
        threshold = np.nextafter(cut, -np.inf)
    return float(threshold), float(f1[best])


PIXEL_SAMPLE = 2_000_000   # pixels drawn (seeded) for the pixel threshold: the curve's sort stays fast


def pixel_f1_threshold(maps: np.ndarray, masks: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """(threshold, F1) on anomaly-map pixels against the masks; over a seeded sample of ``PIXEL_SAMPLE``
    pixels when there are more."""
    m, g = _pixel_arrays(maps, masks)
    m, g = m.reshape(-1), g.reshape(-1)
    if m.size > PIXEL_SAMPLE:
        pick = np.random.default_rng(seed).choice(m.size, PIXEL_SAMPLE, replace=False)
        m, g = m[pick], g[pick]
    return f1_threshold(m, g.astype(np.int8))


def _pixel_arrays(maps: Any, masks: Any) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) float32 maps and bool masks, without copies when the inputs already are."""
    m = np.asarray(maps, dtype=np.float32)
    g = np.asarray(masks)
    if g.dtype != bool:
        g = g != 0
    if m.ndim == 2 and g.ndim == 2:  # a single image
        m, g = m[None], g[None]
    if m.ndim != 3 or m.shape != g.shape:
        raise ValueError(f"maps and masks must both be (N, H, W) with the same shape, got {m.shape} and {g.shape}")
    if not np.isfinite(m).all():
        raise ValueError("anomaly maps contain NaN or infinite values")
    return m, g


def pixel_auroc(maps: np.ndarray, masks: np.ndarray) -> float:
    """Pixel-level AU-ROC over every pixel of every test image (masks: True = anomalous pixel)."""
    from sklearn.metrics import roc_auc_score

    m, g = _pixel_arrays(maps, masks)
    g = g.reshape(-1)
    if g.all() or not g.any():
        raise ValueError(f"pixel AU-ROC is undefined with only {'anomalous' if g.any() else 'normal'} pixels: "
                         f"it {_ONE_CLASS} (masks with and without defect pixels)")
    return float(roc_auc_score(g, m.reshape(-1)))


def pro_curve(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact (FPR, PRO) curve at every distinct score, from (0, 0), as MVTec's evaluation computes it.

    Pixels are sorted once by descending score; FPR and PRO are cumulative sums over them, read
    at the last pixel of each group of tied scores, so a threshold never splits a tie.
    """
    from skimage.measure import label

    m, g = _pixel_arrays(maps, masks)
    n_normal = g.size - int(np.count_nonzero(g))
    if n_normal == 0:
        raise ValueError("AU-PRO needs normal pixels (mask == 0) to measure the false-positive rate: every pixel "
                         "is anomalous")
    # Global component id per pixel (0 = normal): 8-connected components of each image's mask.
    comp = np.zeros(g.shape, dtype=np.int32)
    sizes = [np.zeros(1, dtype=np.int64)]  # id 0: normal pixels, weight 0
    n_comp = 0
    for i in range(g.shape[0]):
        if not g[i].any():
            continue
        lab, k = label(g[i], connectivity=2, background=0, return_num=True)
        comp[i] = np.where(lab > 0, lab + n_comp, 0)
        sizes.append(np.bincount(lab.ravel(), minlength=k + 1)[1:])
        n_comp += k
    if n_comp == 0:
        raise ValueError(f"AU-PRO needs at least one anomalous region (a mask pixel set): it {_ONE_CLASS}")
    size = np.concatenate(sizes).astype(np.float64)
    weight = np.zeros_like(size)
    weight[1:] = 1.0 / (n_comp * size[1:])  # each region counts 1/n_comp, shared among its pixels

    scores = m.reshape(-1)
    order = np.argsort(scores)[::-1]  # tie order is irrelevant: ties are read as one point
    sorted_scores = scores[order]
    keep = np.empty(len(order), dtype=bool)  # last index of each run of tied scores
    np.not_equal(sorted_scores[1:], sorted_scores[:-1], out=keep[:-1])
    keep[-1] = True
    del sorted_scores
    sorted_comp = comp.reshape(-1)[order]
    del order, comp
    fpr = np.cumsum(sorted_comp == 0, dtype=np.int64)[keep] / n_normal
    pro_w = weight[sorted_comp]
    del sorted_comp
    pro = np.cumsum(pro_w, out=pro_w)[keep]
    np.minimum(pro, 1.0, out=pro)  # cumulative float error must not push PRO past 1
    return np.concatenate(([0.0], fpr)), np.concatenate(([0.0], pro))


def _area_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoid area under y(x) (x non-decreasing, x[0] = 0, x[-1] = 1) from 0 to x_max, interpolated at x_max."""
    from sklearn.metrics import auc

    i = int(np.searchsorted(x, x_max, side="right"))  # x[:i] <= x_max
    xs, ys = x[:i], y[:i]
    if xs[-1] < x_max:  # then x[i] > x_max > x[i - 1]: interpolate linearly between them
        t = (x_max - x[i - 1]) / (x[i] - x[i - 1])
        xs, ys = np.append(xs, x_max), np.append(ys, y[i - 1] + t * (y[i] - y[i - 1]))
    return float(auc(xs, ys))


def au_pro(maps: np.ndarray, masks: np.ndarray, max_fpr: float = 0.3) -> float:
    """Area under the per-region-overlap curve up to ``max_fpr``, divided by ``max_fpr`` (perfect = 1.0).

    Regions are weighted equally whatever their size, so small defects count as much as large ones.
    """
    if not 0 < max_fpr <= 1:
        raise ValueError(f"max_fpr must be in (0, 1], got {max_fpr}")
    fpr, pro = pro_curve(maps, masks)
    return _area_to(fpr, pro, max_fpr) / max_fpr


@dataclass
class AnomalyReport:
    """Anomaly-detection results on a test split; pixel metrics are None when no masks were given."""

    image_auroc: float
    pixel_auroc: float | None
    au_pro: float | None
    n_good: int
    n_anomalous: int
    per_defect: dict[str, float] = field(default_factory=dict)  # image AU-ROC of each defect type vs all good
    max_fpr: float = 0.3
    image_threshold: float | None = None   # F1-optimal on these images' scores (score > threshold: anomalous)
    image_f1: float | None = None
    pixel_threshold: float | None = None   # F1-optimal on the map pixels against the masks
    pixel_f1: float | None = None

    def thresholds(self, data: str) -> dict[str, Any]:
        """What a detector's run card and exported metadata carry: the thresholds, their F1 and where from."""
        return {"image": self.image_threshold, "pixel": self.pixel_threshold, "image_f1": self.image_f1,
                "pixel_f1": self.pixel_f1, "source": f"F1-optimal on {data} ({self.n_good} good, "
                                                     f"{self.n_anomalous} anomalous images)"}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable values (for run cards and benchmark tables)."""
        return dataclasses.asdict(self)


def evaluate_anomaly(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray,
                     maps: np.ndarray | None = None, masks: np.ndarray | None = None,
                     defects: Sequence[str] | None = None, max_fpr: float = 0.3) -> AnomalyReport:
    """Image AU-ROC, per-defect image AU-ROC (``defects``: one type per image) and, given maps and masks
    for the same test images, pixel AU-ROC and AU-PRO."""
    image = image_auroc(scores, labels)  # validates scores and labels first
    s = np.asarray(scores, dtype=np.float64)
    y = _binary_labels(labels, len(s))
    pixel = pro = pixel_cut = pixel_f1 = None
    image_cut, image_f1 = f1_threshold(s, y.astype(int))
    if (maps is None) != (masks is None):
        raise ValueError("pixel metrics need both anomaly maps and ground-truth masks (pass both or neither)")
    if maps is not None:
        if len(maps) != len(s) or len(masks) != len(s):
            raise ValueError(f"maps ({len(maps)}) and masks ({len(masks)}) must cover the same {len(s)} test "
                             "images as the scores")
        pixel = pixel_auroc(maps, masks)
        pro = au_pro(maps, masks, max_fpr=max_fpr)
        pixel_cut, pixel_f1 = pixel_f1_threshold(maps, masks)
    per_defect: dict[str, float] = {}
    if defects is not None:
        d = np.asarray([str(v) for v in defects])
        if len(d) != len(s):
            raise ValueError(f"defects must name one type per image ({len(s)}), got {len(d)}")
        for name in sorted(set(d[y])):
            keep = ~y | (d == name)
            per_defect[name] = image_auroc(s[keep], y[keep].astype(int))
    return AnomalyReport(image, pixel, pro, int((~y).sum()), int(y.sum()), per_defect, max_fpr, image_cut, image_f1,
                         pixel_cut, pixel_f1)


LEGEND_PX = 52          # height of the legend under an overlay: colour bar, its scale and unit, what the lines mean
LEGEND_MIN_WIDTH = 260  # a narrow image gets a wider canvas, so the legend stays readable


def save_overlay(image: np.ndarray, anomaly_map: np.ndarray, path: str | os.PathLike, vmin: float | None = None,
                 vmax: float | None = None, mask: np.ndarray | None = None, title: str | None = None) -> Path:
    """A PNG of the image with the anomaly map blended over it (jet, alpha 0.5) and the mask's contour, one
    output pixel per image pixel in the top-left W x H, above a legend: the colour bar with the map's scale
    (``vmin`` .. ``vmax``) and, when a mask is drawn, what its white outline is. Written atomically.

    The map (and a mask of another size) is resized to the image bilinearly (nearest for the mask).
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from skimage.transform import resize

    from mobilevision.atomic_io import atomic_write_bytes

    img = np.asarray(image)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"image must be H x W x 3 (uint8), got shape {img.shape}")
    h, w = img.shape[:2]
    amap = np.asarray(anomaly_map, dtype=np.float32)
    if amap.ndim != 2:
        raise ValueError(f"anomaly_map must be H x W, got shape {amap.shape}")
    if amap.shape != (h, w):
        amap = resize(amap, (h, w), order=1, mode="edge", anti_aliasing=False, preserve_range=True)
    finite = amap[np.isfinite(amap)]
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if not hi > lo:
        hi = lo + 1e-6

    dpi = 100
    fw, fh = max(w, LEGEND_MIN_WIDTH), h + LEGEND_PX
    fig = Figure(figsize=(fw / dpi, fh / dpi), dpi=dpi, facecolor="white")
    ax = fig.add_axes((0, LEGEND_PX / fh, w / fw, h / fh))   # the picture: exactly W x H pixels, top left
    ax.set_axis_off()
    ax.imshow(img, interpolation="nearest")
    ax.imshow(amap, cmap="jet", alpha=0.5, vmin=lo, vmax=hi, interpolation="nearest")
    drawn_mask = False
    if mask is not None:
        mk = np.asarray(mask) != 0
        if mk.shape != (h, w):
            mk = resize(mk.astype(np.float32), (h, w), order=0, anti_aliasing=False) > 0.5
        if min(h, w) >= 2 and mk.any() and not mk.all():  # a contour needs a 2 x 2 grid and both sides
            ax.contour(mk.astype(np.float32), levels=[0.5], colors="white", linewidths=1)
            drawn_mask = True
    if title:
        ax.text(2, 2, title, color="white", fontsize=max(5.0, min(10.0, h / 24)), va="top", ha="left",
                bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "linewidth": 0})
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    bar = fig.add_axes((6 / fw, 30 / fh, (fw - 12) / fw, 9 / fh))
    cb = fig.colorbar(ScalarMappable(Normalize(lo, hi), cmap="jet"), cax=bar, orientation="horizontal")
    cb.ax.tick_params(labelsize=6, length=2, pad=1)
    cb.set_ticks([lo, (lo + hi) / 2, hi])
    for label, align in zip(cb.ax.set_xticklabels([f"{v:.3g}" for v in (lo, (lo + hi) / 2, hi)]),
                            ("left", "center", "right")):
        label.set_horizontalalignment(align)
    note = "colour: anomaly map value" + ("; white outline: ground-truth defect" if drawn_mask else "")
    fig.text(6 / fw, 4 / fh, note, fontsize=6, color="black", va="bottom", ha="left")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return atomic_write_bytes(path, buf.getvalue())
