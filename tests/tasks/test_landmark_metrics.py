"""NME / FR / AUC (spec §8) on hand-built cases."""
import numpy as np
import pytest

from mobilevision.tasks.landmark_metrics import (auc, auc_fard2022, ced_curve, failure_rate, landmark_report,
                                                 normaliser_distance, per_image_nme)


def face(n=68, eye_distance=100.0):
    gt = np.zeros((1, n, 2))
    a, b = {68: (36, 45), 98: (60, 72), 29: (8, 9)}[n]
    gt[0, a] = (50.0, 80.0)
    gt[0, b] = (50.0 + eye_distance, 80.0)
    return gt


@pytest.mark.parametrize("n", [68, 98, 29])
def test_inter_ocular_uses_outer_eye_corners(n):
    gt = face(n)
    assert normaliser_distance(gt)[0] == pytest.approx(100.0)
    pred = gt.copy()
    pred[0, :, 0] += 3.0           # every point 3 px off -> NME 0.03
    assert per_image_nme(pred, gt)[0] == pytest.approx(0.03)


def test_inter_pupil_68_is_eye_centroids():
    gt = np.zeros((1, 68, 2))
    gt[0, 36:42] = (10.0, 0.0)
    gt[0, 42:48] = (70.0, 0.0)
    assert normaliser_distance(gt, "inter_pupil")[0] == pytest.approx(60.0)


def test_fr_and_auc_on_known_distribution():
    nme = np.array([0.0, 0.05, 0.2, 0.1])
    assert failure_rate(nme) == 25.0           # only 0.2 > 0.1 (0.1 is not a failure)
    # CED: 0.25 at 0, 0.5 on (0.05, 0.1), 0.75 at 0.1 -> area ~ 0.25*0.05 + 0.5*0.05 = 0.0375 -> /0.1
    assert auc(nme) == pytest.approx(0.375, abs=2e-3)
    e, frac = ced_curve(nme)
    assert e[0] == 0 and e[-1] == pytest.approx(0.1) and frac[-1] == 0.75


def test_perfect_predictions():
    nme = np.zeros(10)
    assert auc(nme) == pytest.approx(1.0)
    assert auc_fard2022(nme) == pytest.approx(0.95)       # the author's variant tops out at 0.95
    assert failure_rate(nme) == 0.0


def test_report_in_percent():
    gt = np.concatenate([face(), face()])
    pred = gt.copy()
    pred[1] += 5.0                                         # 5*sqrt(2) px / 100
    report, nme = landmark_report("m", pred, gt)
    assert report.nme == pytest.approx(100 * 0.05 * np.sqrt(2) / 2)
    assert report.images == 2 and nme.shape == (2,)


def test_bad_shapes_and_degenerate_eyes():
    with pytest.raises(ValueError, match="must both be"):
        per_image_nme(np.zeros((1, 68, 2)), np.zeros((1, 98, 2)))
    with pytest.raises(ValueError, match="zero inter_ocular distance"):
        per_image_nme(np.zeros((1, 68, 2)), np.zeros((1, 68, 2)))
    with pytest.raises(ValueError, match="no inter_ocular definition for 5"):
        per_image_nme(np.ones((1, 5, 2)), np.ones((1, 5, 2)))
    with pytest.raises(ValueError, match="unknown NME normaliser"):
        normaliser_distance(face(), "box")
