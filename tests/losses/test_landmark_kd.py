"""KD-Loss against the spec's hand-worked cases (§5), its gradient semantics and the MSE teacher loss."""
import pytest
import torch

from mobilevision.losses.landmark_kd import (TOUGH, KDLoss, LandmarkMSE, assistive_loss, main_loss,
                                             mirrored_teacher, region_weights)

# P, G, T, L -> Loss_main, ALoss_Tou, ALoss_Tol, KD-Loss (spec §5 table)
CASES = [
    (0.3, 0.0, 0.1, 0.2, 1.30, 0.38, 0.18, 1.86),
    (0.05, 0.0, -0.1, 0.2, 0.30, -0.0225, -0.06, 0.2175),
    (0.01, 0.0, 0.1, 0.2, 0.06, 0.0, 0.0, 0.06),
    (0.0, 0.0, 0.1, 0.2, 0.0, 0.0, 0.0, 0.0),
    (-0.1, 0.1, 0.2, 0.05, 0.375, 0.19, 0.27, 0.835),
    (0.1, 0.0, 0.1, 0.2, 0.60, 0.0, -0.04, 0.56),
]


def t(*v):
    return torch.tensor([v], dtype=torch.float64)


@pytest.mark.parametrize("p,g,tou,tol,main,a_tou,a_tol,total", CASES)
def test_hand_worked_cases(p, g, tou, tol, main, a_tou, a_tol, total):
    loss = KDLoss()
    out = loss(t(p), t(g), t(tou), t(tol))
    assert loss.last_terms["main"] == pytest.approx(main, abs=1e-9)
    assert loss.last_terms["aloss_tough"] == pytest.approx(a_tou, abs=1e-9)
    assert loss.last_terms["aloss_tolerant"] == pytest.approx(a_tol, abs=1e-9)
    assert float(out) == pytest.approx(total, abs=1e-9)


def test_means_run_over_coordinates_not_points():
    # the first two rows as one (1, 2) tensor: 0.8 + 0.17875 + 0.06
    out = KDLoss()(t(0.3, 0.05), t(0.0, 0.0), t(0.1, -0.1), t(0.2, 0.2))
    assert float(out) == pytest.approx(1.03875, abs=1e-9)


def test_mirroring_puts_teacher_on_the_students_side():
    p, g, teacher = t(0.05, -0.05, 0.0), t(0.0, 0.0, 0.0), t(-0.1, -0.1, -0.1)
    assert mirrored_teacher(p, g, teacher).tolist() == [[0.1, -0.1, 0.0]]


def test_region_boundaries_strict_and_inclusive():
    g = t(0.0, 0.0, 0.0)
    m = t(0.1, 0.1, 0.1)
    # P exactly at t' is R_N (inclusive), P exactly at the boundary 0.015 is R_N, P below it is R_L
    p = t(0.1, 0.015, 0.01)
    w = region_weights(p, g, m, TOUGH)
    assert w.tolist() == [[TOUGH.negative, TOUGH.negative, 0.0]]
    # just beyond t' is R_P (strict)
    assert region_weights(t(0.1000001), t(0.0), t(0.1), TOUGH).item() == TOUGH.positive


def test_main_loss_is_continuous_at_delta():
    g, tol = t(0.0), t(0.2)
    below, above = main_loss(t(0.2 - 1e-9), g, tol), main_loss(t(0.2 + 1e-9), g, tol)
    assert float(below) == pytest.approx(float(above), abs=1e-7)


def test_gradients_flow_only_through_the_prediction():
    p = torch.tensor([[0.3, 0.05, -0.1]], requires_grad=True)
    g = torch.tensor([[0.0, 0.0, 0.1]], requires_grad=True)
    tou = torch.tensor([[0.1, -0.1, 0.2]], requires_grad=True)
    tol = torch.tensor([[0.2, 0.2, 0.05]], requires_grad=True)
    KDLoss()(p, g, tou, tol).backward()
    assert g.grad is None and tou.grad is None and tol.grad is None
    # coordinate 0: e = 0.3 > delta = 0.2 -> main slope 2e = 0.6, x2 weight; tough R_P +1.9 pulls toward t'
    # (d|t' - P|/dP = +1 since P > t'); tolerant R_P +1.8 likewise; mean over 3 coordinates
    expected0 = (2 * 2 * 0.3 + 1.9 + 1.8) / 3
    assert p.grad[0, 0].item() == pytest.approx(expected0, rel=1e-5)


def test_zero_gradient_at_exact_ground_truth():
    p = torch.zeros(1, 2, requires_grad=True)
    KDLoss()(p, torch.zeros(1, 2), torch.full((1, 2), 0.1), torch.full((1, 2), 0.2)).backward()
    assert p.grad.abs().max().item() == 0.0


def test_assistive_loss_pushes_toward_gt_in_negative_region():
    p = torch.tensor([[0.05]], requires_grad=True)     # between boundary (0.015) and t' (0.1)
    assistive_loss(p, torch.zeros(1, 1), torch.full((1, 1), 0.1), TOUGH).backward()
    # loss = -0.45 |0.1 - P|: decreasing P increases |t' - P| and lowers the loss -> gradient > 0 (toward G)
    assert p.grad.item() > 0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="equal shapes"):
        KDLoss()(torch.zeros(2, 136), torch.zeros(2, 136), torch.zeros(2, 196), torch.zeros(2, 136))


def test_mse_matches_mean_of_squares():
    pred, target = torch.tensor([[0.1, -0.2], [0.0, 0.4]]), torch.zeros(2, 2)
    assert float(LandmarkMSE()(pred, target)) == pytest.approx((0.01 + 0.04 + 0.16) / 4)
