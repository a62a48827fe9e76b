"""Anomaly metrics: image / pixel AU-ROC, AU-PRO (exact values, region weighting, ties, a brute-force
cross-check), the report and the overlay PNG."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from mobilevision.tasks.anomaly_metrics import (LEGEND_MIN_WIDTH, LEGEND_PX, AnomalyReport, au_pro, evaluate_anomaly, image_auroc, pixel_auroc,
                                                pro_curve, save_overlay)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_trapezoid = getattr(np, "trapezoid", None) or np.trapz


def _tied_rest(p: float, max_fpr: float = 0.3) -> float:
    """AU-PRO of the curve (0,0) -> (0,p) -> (1,1): PRO p at FPR 0, everything else tied at one lower score."""
    return (p + (p + (1 - p) * max_fpr)) / 2


# ---------------------------------------------------------------- image / pixel AU-ROC

def test_image_auroc_perfect_inverted_and_hand_case():
    assert image_auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert image_auroc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert image_auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert image_auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([False, False, True, True])) == pytest.approx(0.75)
    assert image_auroc([0.5, 0.5], [0, 1]) == 0.5  # a tie counts one half


@pytest.mark.parametrize("labels", [[0, 0, 0], [1, 1, 1]])
def test_image_auroc_one_class_is_an_error(labels):
    with pytest.raises(ValueError, match="needs both good and anomalous test images"):
        image_auroc([0.1, 0.2, 0.3], labels)


def test_image_auroc_bad_labels():
    with pytest.raises(ValueError, match="0 \\(good\\) or 1"):
        image_auroc([0.1, 0.2, 0.3], [0, 1, 2])
    with pytest.raises(ValueError, match="one per score"):
        image_auroc([0.1, 0.2, 0.3], [0, 1])


def test_pixel_auroc_perfect_inverted_and_hand_case():
    masks = np.zeros((2, 8, 8), bool)
    masks[0, 2:5, 3:6] = True
    masks[1, 0:2, 0:8] = True
    assert pixel_auroc(masks.astype(np.float32), masks) == 1.0
    assert pixel_auroc(1 - masks.astype(np.float32), masks) == 0.0
    hand = np.array([0.1, 0.4, 0.35, 0.8], np.float32).reshape(1, 2, 2)
    assert pixel_auroc(hand, np.array([0, 0, 1, 1], bool).reshape(1, 2, 2)) == pytest.approx(0.75)
    assert pixel_auroc(hand, np.array([0, 0, 255, 255], np.uint8).reshape(1, 2, 2)) == pytest.approx(0.75)


@pytest.mark.parametrize("fill", [False, True])
def test_pixel_auroc_one_class_is_an_error(fill):
    with pytest.raises(ValueError, match="needs both good and anomalous test images"):
        pixel_auroc(np.random.default_rng(0).random((2, 4, 4)), np.full((2, 4, 4), fill))


def test_pixel_inputs_checked():
    with pytest.raises(ValueError, match="same shape"):
        pixel_auroc(np.zeros((2, 4, 4)), np.zeros((2, 4, 5), bool))
    maps = np.zeros((1, 4, 4))
    maps[0, 0, 0] = np.nan
    masks = np.zeros((1, 4, 4), bool)
    masks[0, 1, 1] = True
    with pytest.raises(ValueError, match="NaN"):
        au_pro(maps, masks)


# ---------------------------------------------------------------- AU-PRO: exact values

def _two_regions() -> np.ndarray:
    masks = np.zeros((1, 16, 16), bool)
    masks[0, 2:6, 2:6] = True    # region A, 16 px
    masks[0, 9:13, 8:12] = True  # region B, 16 px
    return masks


def test_au_pro_perfect_map_is_one():
    masks = _two_regions()
    assert au_pro(masks.astype(np.float32), masks) == pytest.approx(1.0, abs=1e-12)
    assert au_pro(masks.astype(np.float32), masks, max_fpr=1.0) == pytest.approx(1.0, abs=1e-12)


def test_au_pro_one_of_two_regions_detected():
    # The curve starts at (0, 0); covering region A exactly jumps to PRO 0.5 at FPR 0. Everything else
    # ties at 0, so the next (and last) point is (1, 1): PRO at FPR 0.3 is interpolated as 0.65 and
    # AU-PRO = (0.5 + 0.65) / 2 = 0.575.
    masks = _two_regions()
    maps = np.zeros(masks.shape, np.float32)
    maps[0, 2:6, 2:6] = 1.0
    fpr, pro = pro_curve(maps, masks)
    np.testing.assert_allclose(fpr, [0, 0, 1])
    np.testing.assert_allclose(pro, [0, 0.5, 1])
    assert au_pro(maps, masks) == pytest.approx(0.575, abs=1e-12)
    assert _tied_rest(0.5) == pytest.approx(0.575)
    # Region B below every normal pixel: PRO stays 0.5 until FPR 1, so AU-PRO is exactly 0.5.
    maps[0, 9:13, 8:12] = -1.0
    assert au_pro(maps, masks) == pytest.approx(0.5, abs=1e-12)


def test_au_pro_weights_regions_not_pixels():
    masks = np.zeros((1, 20, 20), bool)
    masks[0, 1:3, 1:3] = True      # small: 4 px
    masks[0, 10:18, 10:18] = True  # big: 64 px
    small = np.where(masks & (np.arange(20) < 5)[None, None, :], 1.0, 0.0).astype(np.float32)
    big = np.where(masks & (np.arange(20) >= 5)[None, None, :], 1.0, 0.0).astype(np.float32)
    # Region-wise, finding either region is worth the same.
    assert au_pro(small, masks) == pytest.approx(0.575, abs=1e-12)
    assert au_pro(big, masks) == pytest.approx(0.575, abs=1e-12)
    # Pixel-wise, the big region dominates: P(anomalous > normal) + tie / 2 over the 68 defect pixels.
    assert pixel_auroc(small, masks) == pytest.approx((4 + 64 / 2) / 68)
    assert pixel_auroc(big, masks) == pytest.approx((64 + 4 / 2) / 68)


def test_au_pro_regions_are_8_connected_per_image():
    masks = np.zeros((2, 12, 12), bool)
    masks[0, 0:2, 0:2] = True   # 4 px ...
    masks[0, 2:6, 2:6] = True   # ... touching this 16 px square only at a corner: one 20 px region
    masks[1, 0:2, 0:2] = True   # same place in another image: its own region
    maps = np.zeros(masks.shape, np.float32)
    maps[0, 0:2, 0:2] = 1.0
    # Image 0 alone: one region, 4 of 20 px found -> PRO 0.2 at FPR 0 (4-connectivity would give 0.5).
    assert au_pro(maps[:1], masks[:1]) == pytest.approx(_tied_rest(0.2), abs=1e-12)
    assert _tied_rest(0.2) == pytest.approx(0.32)
    # Both images: two regions, (0.2 + 0) / 2 = 0.1 at FPR 0.
    assert au_pro(maps, masks) == pytest.approx(_tied_rest(0.1), abs=1e-12)


def test_au_pro_max_fpr():
    masks = np.zeros((1, 10, 10), bool)
    masks[0, 4:6, 4:6] = True          # 4 anomalous px, 96 normal
    maps = np.where(masks, 0.5, 0.0).astype(np.float32)
    fp = np.argwhere(~masks[0])[:12]    # 12 / 96 = 0.125 of the normal pixels score above every defect
    maps[0, fp[:, 0], fp[:, 1]] = 1.0
    # Curve: (0,0) -> (0.125, 0) -> (0.125, 1) -> (1, 1).
    assert au_pro(maps, masks) == pytest.approx((0.3 - 0.125) / 0.3, abs=1e-12)
    assert au_pro(maps, masks, max_fpr=0.1) == pytest.approx(0.0, abs=1e-12)
    assert au_pro(maps, masks, max_fpr=1.0) == pytest.approx(0.875, abs=1e-12)
    # Every normal pixel above every defect pixel: nothing is found before FPR 1.
    assert au_pro(np.where(masks, 0.0, 1.0), masks) == pytest.approx(0.0, abs=1e-12)


def test_au_pro_ties_are_one_threshold():
    masks = _two_regions()
    # A constant map: one threshold, curve (0,0) -> (1,1), AU-PRO = 0.3 / 2.
    assert au_pro(np.full(masks.shape, 0.7), masks) == pytest.approx(0.15, abs=1e-12)
    # A coarsely quantised map has many ties; pixel order must not matter (transposing reorders pixels
    # but keeps every region).
    rng = np.random.default_rng(3)
    maps = np.round(rng.random(masks.shape) + 0.6 * masks, 1)
    a = au_pro(maps, masks)
    b = au_pro(maps.transpose(0, 2, 1), masks.transpose(0, 2, 1))
    assert a == pytest.approx(b, abs=1e-12)
    assert len(pro_curve(maps, masks)[0]) == len(np.unique(maps)) + 1


@pytest.mark.parametrize("max_fpr", [0.0, -0.1, 1.5])
def test_au_pro_bad_max_fpr(max_fpr):
    masks = _two_regions()
    with pytest.raises(ValueError, match="max_fpr"):
        au_pro(masks.astype(float), masks, max_fpr=max_fpr)


def test_au_pro_needs_regions_and_normal_pixels():
    maps = np.random.default_rng(0).random((2, 6, 6))
    with pytest.raises(ValueError, match="anomalous region"):
        au_pro(maps, np.zeros((2, 6, 6), bool))
    with pytest.raises(ValueError, match="normal pixels"):
        au_pro(maps, np.ones((2, 6, 6), bool))
    with pytest.raises(ValueError, match="same shape"):
        au_pro(maps, np.zeros((2, 6, 7), bool))


# ---------------------------------------------------------------- AU-PRO: brute force cross-check

def _brute_au_pro(maps: np.ndarray, masks: np.ndarray, thresholds: np.ndarray, max_fpr: float = 0.3) -> float:
    """Per threshold: FPR over all normal pixels, PRO as the mean over 8-connected regions of the found fraction."""
    from skimage.measure import label

    regions = []
    for i in range(len(masks)):
        lab = label(masks[i], connectivity=2)
        regions += [(i, lab == k) for k in range(1, lab.max() + 1)]
    normal = ~masks
    fprs, pros = [0.0], [0.0]  # above every score
    for t in np.sort(thresholds)[::-1]:
        above = maps >= t
        fprs.append((above & normal).sum() / normal.sum())
        pros.append(np.mean([above[i][r].mean() for i, r in regions]))
    fprs, pros = np.array(fprs), np.array(pros)
    j = int(np.argmax(fprs > max_fpr))  # first point past the limit
    y_at = pros[j - 1] + (pros[j] - pros[j - 1]) * (max_fpr - fprs[j - 1]) / (fprs[j] - fprs[j - 1])
    x = np.append(fprs[:j], max_fpr)
    y = np.append(pros[:j], y_at)
    return float(_trapezoid(y, x)) / max_fpr


def _random_case(seed: int, n: int = 6, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), bool)
    maps = rng.normal(0, 1, masks.shape)
    for i in range(n):
        for _ in range(rng.integers(0, 3)):  # some images stay good
            h, w = rng.integers(2, 20, 2)
            y, x = rng.integers(0, size - h), rng.integers(0, size - w)
            masks[i, y:y + h, x:x + w] = True
            maps[i, y:y + h, x:x + w] += rng.uniform(0, 3)  # some regions easy, some hard
    masks[0, 5:9, 5:15] = True  # at least one region
    return maps.astype(np.float32), masks


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_au_pro_matches_brute_force(seed):
    maps, masks = _random_case(seed)
    fast = au_pro(maps, masks)
    coarse = _brute_au_pro(maps, masks, np.linspace(maps.min(), maps.max(), 300))
    assert 0.05 < fast < 0.95  # a case that exercises the curve, not an extreme
    assert fast == pytest.approx(coarse, abs=1e-2)
    # Quantised scores: thresholding at every distinct value makes the brute force exact too.
    q = np.round(maps * 4) / 4
    assert au_pro(q, masks) == pytest.approx(_brute_au_pro(q, masks, np.unique(q)), abs=1e-9)
    assert au_pro(q, masks, max_fpr=0.05) == pytest.approx(_brute_au_pro(q, masks, np.unique(q), 0.05), abs=1e-9)


# ---------------------------------------------------------------- report

def test_evaluate_anomaly_end_to_end():
    defects = ["good"] * 4 + ["crack"] * 2 + ["scratch"] * 2
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    scores = [0.1, 0.2, 0.3, 0.4, 0.9, 0.8, 0.35, 0.05]
    report = evaluate_anomaly(scores, labels, defects=defects)
    assert isinstance(report, AnomalyReport)
    assert report.image_auroc == pytest.approx(11 / 16)
    assert report.per_defect == {"crack": pytest.approx(1.0), "scratch": pytest.approx(3 / 8)}
    assert list(report.per_defect) == ["crack", "scratch"]
    assert (report.n_good, report.n_anomalous) == (4, 4)
    assert report.pixel_auroc is None and report.au_pro is None

    rng = np.random.default_rng(0)
    masks = np.zeros((8, 16, 16), bool)
    for i in range(4, 8):
        masks[i, i:i + 4, 2:8] = True
    maps = rng.random(masks.shape).astype(np.float32) + masks
    report = evaluate_anomaly(scores, labels, maps=maps, masks=masks, defects=defects)
    assert report.pixel_auroc == pytest.approx(pixel_auroc(maps, masks))
    assert report.au_pro == pytest.approx(au_pro(maps, masks))
    d = json.loads(json.dumps(report.to_dict()))
    assert d["image_auroc"] == pytest.approx(11 / 16) and d["n_good"] == 4 and d["max_fpr"] == 0.3
    assert set(d["per_defect"]) == {"crack", "scratch"}


def test_evaluate_anomaly_errors():
    with pytest.raises(ValueError, match="both anomaly maps and ground-truth masks"):
        evaluate_anomaly([0.1, 0.9], [0, 1], maps=np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="same 2 test images"):
        evaluate_anomaly([0.1, 0.9], [0, 1], maps=np.zeros((3, 4, 4)), masks=np.zeros((3, 4, 4), bool))
    with pytest.raises(ValueError, match="one type per image"):
        evaluate_anomaly([0.1, 0.9], [0, 1], defects=["good"])
    with pytest.raises(ValueError, match="needs both good and anomalous"):
        evaluate_anomaly([0.1, 0.9], [1, 1])


# ---------------------------------------------------------------- overlay

def _read_png(path) -> np.ndarray:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def test_save_overlay_is_image_sized_png(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    path = tmp_path / "nested" / "overlay.png"
    out = save_overlay(image, rng.random((48, 64)), path)
    assert out == path
    px = _read_png(path)
    # one output pixel per image pixel in the top-left 64 x 48, a legend under it on a canvas wide enough to read
    assert px.shape == (48 + LEGEND_PX, LEGEND_MIN_WIDTH, 3)
    assert (px[:48, 64:] == 255).all() and (px[48:] != 255).any()   # blank beside the picture; a drawn legend
    assert [p.name for p in path.parent.iterdir()] == ["overlay.png"]  # no temporary file left


def test_save_overlay_heat_smaller_map_mask_and_title(tmp_path):
    image = np.full((48, 64, 3), 128, np.uint8)
    small = np.zeros((12, 16), np.float32)
    small[:, :8] = 1.0  # the left half is anomalous
    save_overlay(image, small, tmp_path / "heat.png", vmin=0.0, vmax=1.0)
    px = _read_png(tmp_path / "heat.png")
    left, right = px[10:38, 4:24].mean((0, 1)), px[10:38, 40:60].mean((0, 1))
    assert left[0] > right[0] + 40 and right[2] > left[2] + 40  # jet: red where high, blue where low

    mask = np.zeros((48, 64), bool)
    mask[16:32, 40:56] = True
    save_overlay(image, small, tmp_path / "mask.png", vmin=0.0, vmax=1.0, mask=mask, title="crack 0.93")
    with_mask = _read_png(tmp_path / "mask.png")
    assert (with_mask[48:] != px[48:]).any()   # the legend explains the outline
    with_mask, px = with_mask[:48, :64], px[:48, :64]
    changed = np.argwhere((with_mask != px).any(-1))
    assert len(changed)
    # Outside the title's corner, the contour changes only pixels around the mask's border.
    body = changed[(changed[:, 0] > 16) | (changed[:, 1] > 40)]
    assert body[:, 0].min() >= 13 and body[:, 0].max() <= 34 and body[:, 1].min() >= 37 and body[:, 1].max() <= 58
    # A mask at the map's size is resized to the image; a constant map and a grey image are fine.
    save_overlay(image[..., 0], np.ones((12, 16)), tmp_path / "const.png", mask=mask[::4, ::4])
    assert _read_png(tmp_path / "const.png").shape == (48 + LEGEND_PX, LEGEND_MIN_WIDTH, 3)


def test_save_overlay_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="H x W x 3"):
        save_overlay(np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="anomaly_map"):
        save_overlay(np.zeros((4, 4, 3), np.uint8), np.zeros((1, 4, 4)), tmp_path / "x.png")
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- F1-optimal thresholds (anomalib's adaptive one)

def _f1(scores, labels, t, strict=True):
    called = (np.asarray(scores) > t) if strict else (np.asarray(scores) >= t)
    y = np.asarray(labels, bool)
    return 2 * (called & y).sum() / (called.sum() + y.sum())


def test_f1_threshold_hand_case_lies_between_the_scores_it_separates():
    from mobilevision.tasks.anomaly_metrics import f1_threshold

    # perfectly separated: halfway between the highest good (0.4) and the lowest anomalous (0.6)
    t, f1 = f1_threshold([0.1, 0.2, 0.4, 0.6, 0.7, 0.9], [0, 0, 0, 1, 1, 1])
    assert t == pytest.approx(0.5) and f1 == pytest.approx(1.0)
    # best cut: call 0.5 and up anomalous (tp 3, fp 1: F1 6/7), halfway to the next lower score 0.4
    t, f1 = f1_threshold([0.1, 0.5, 0.4, 0.6, 0.7, 0.9], [0, 1, 0, 0, 1, 1])
    assert t == pytest.approx(0.45) and f1 == pytest.approx(6 / 7)
    assert _f1([0.1, 0.5, 0.4, 0.6, 0.7, 0.9], [0, 1, 0, 0, 1, 1], t) == pytest.approx(f1)


@pytest.mark.parametrize("seed", range(5))
def test_f1_threshold_is_the_best_of_every_cut_with_either_rule(seed):
    from mobilevision.tasks.anomaly_metrics import f1_threshold

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 40)
    labels[:2] = (0, 1)
    scores = np.round(rng.normal(labels * 0.8, 0.5), 1)   # rounded: ties at the cut
    t, f1 = f1_threshold(scores, labels)
    best = max(_f1(scores, labels, c, strict=False) for c in np.unique(scores))
    assert f1 == pytest.approx(best)
    assert _f1(scores, labels, t) == pytest.approx(best) and _f1(scores, labels, t, strict=False) == pytest.approx(best)
    assert not np.isin(t, scores)


def test_f1_threshold_all_called_and_bad_input():
    from mobilevision.tasks.anomaly_metrics import f1_threshold

    t, f1 = f1_threshold([0.3, 0.3, 0.3], [0, 1, 1])   # one score: every image called anomalous
    assert t < 0.3 and f1 == pytest.approx(0.8)
    with pytest.raises(ValueError, match="both good and anomalous"):
        f1_threshold([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="NaN"):
        f1_threshold([0.1, np.nan], [0, 1])


def test_pixel_threshold_and_the_report_carry_thresholds():
    from mobilevision.tasks.anomaly_metrics import pixel_f1_threshold

    maps = np.zeros((2, 8, 8), np.float32)
    masks = np.zeros((2, 8, 8), bool)
    masks[0, 2:4, 2:4] = True
    maps[0, 2:4, 2:4] = 0.9
    maps[1, 0, 0] = 0.3
    t, f1 = pixel_f1_threshold(maps, masks)
    assert 0.3 < t < 0.9 and f1 == pytest.approx(1.0)
    report = evaluate_anomaly([0.1, 0.9], [0, 1], maps=maps, masks=masks)
    assert report.pixel_threshold == pytest.approx(t) and 0.1 < report.image_threshold < 0.9
    found = report.thresholds("tiny test split")
    assert found["image"] == report.image_threshold and "1 good, 1 anomalous" in found["source"]
