"""Bias Loss against hand-computed values (the formula of lusinlu/bias-loss-skipblocknet at b557bca)."""
from __future__ import annotations

import math

import pytest
import torch

from mobilevision.losses import BiasLoss
from mobilevision.losses.bias import feature_variance

LN10 = math.log(10.0)


def features_with_variance(variances: list[float]) -> torch.Tensor:
    """(B, 1, 1, 2) maps [a, -a]: unbiased variance 2 a^2, so a = sqrt(v / 2)."""
    a = torch.tensor([math.sqrt(v / 2.0) for v in variances], dtype=torch.float64)
    return torch.stack([a, -a], dim=1).reshape(-1, 1, 1, 2)


def uniform_logits(batch: int, classes: int = 10) -> torch.Tensor:
    """Equal logits: every sample's cross-entropy is ln(classes)."""
    return torch.zeros(batch, classes, dtype=torch.float64)


def expected(v_hat: list[float], ce: float = LN10, alpha: float = 0.3, beta: float = 0.3) -> float:
    return sum((math.exp(alpha * v) - beta) * ce for v in v_hat) / len(v_hat)


def test_feature_variance_is_unbiased_over_all_values():
    f = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]], [[[0.0, 0.0], [0.0, 2.0]]]])
    torch.testing.assert_close(feature_variance(f), torch.tensor([5.0 / 3.0, 1.0]))


def test_local_normalisation_is_batch_min_max():
    loss = BiasLoss(normalisation="local")
    out = loss(uniform_logits(3), torch.tensor([0, 1, 2]), features_with_variance([1.0, 2.0, 3.0]))
    assert out.item() == pytest.approx(expected([0.0, 0.5, 1.0]), rel=1e-12)
    assert loss.global_min.item() == 100000.0  # local mode leaves the running minimum alone


def test_global_normalisation_keeps_the_running_minimum_across_calls():
    loss = BiasLoss()  # global is the reference default
    y3 = torch.tensor([0, 1, 2])
    first = loss(uniform_logits(3), y3, features_with_variance([2.0, 4.0, 6.0]))
    assert first.item() == pytest.approx(expected([0.0, 0.5, 1.0]), rel=1e-12)
    assert loss.global_min.item() == pytest.approx(2.0)
    # min 5 > g = 2: g stays, the span is this batch's (9 - 5), so v_hat exceeds 1
    second = loss(uniform_logits(3), y3, features_with_variance([5.0, 7.0, 9.0]))
    assert second.item() == pytest.approx(expected([0.75, 1.25, 1.75]), rel=1e-12)
    assert loss.global_min.item() == pytest.approx(2.0)
    third = loss(uniform_logits(2), y3[:2], features_with_variance([1.0, 3.0]))
    assert third.item() == pytest.approx(expected([0.0, 1.0]), rel=1e-12)
    assert loss.global_min.item() == pytest.approx(1.0)
    loss.reset()
    assert loss.global_min.item() == 100000.0


def test_weights_scale_the_per_sample_cross_entropy():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 2])
    ce = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    out = BiasLoss(alpha=0.5, beta=0.2, normalisation="local")(logits, y, features_with_variance([1.0, 5.0]))
    want = ((math.exp(0.0) - 0.2) * ce[0] + (math.exp(0.5) - 0.2) * ce[1]) / 2
    assert out.item() == pytest.approx(want.item(), rel=1e-12)


@pytest.mark.parametrize("v, reads", [(0.2, 1.754), (0.6, 2.066), (1.0, 2.417)])
def test_matches_the_papers_figure(v, reads):
    """figures/biasloss.png: at p = 0.1 (CE 2.303) the v = 0.2 / 0.6 / 1.0 curves read ~1.75 / 2.07 / 2.42."""
    z = BiasLoss().sample_weight(torch.tensor(v, dtype=torch.float64))
    assert (z * -math.log(0.1)).item() == pytest.approx(reads, abs=0.005)


def test_legacy_2021_weight():
    loss = BiasLoss(alpha=0.3, beta=0.3, normalisation="local", legacy_2021=True)
    out = loss(uniform_logits(3), torch.tensor([0, 1, 2]), features_with_variance([1.0, 2.0, 3.0]))
    want = sum((math.exp(0.3 * v) - 1 + 0.3) * LN10 for v in (0.0, 0.5, 1.0)) / 3
    assert out.item() == pytest.approx(want, rel=1e-12)


def test_gradient_reaches_logits_not_features():
    torch.manual_seed(0)
    feats = torch.randn(8, 4, 3, 3, requires_grad=True)
    logits = torch.randn(8, 5, requires_grad=True)
    BiasLoss()(logits, torch.randint(0, 5, (8,)), feats).backward()
    assert feats.grad is None
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_gradient_equals_weighted_cross_entropy_gradient():
    """d loss / d logits = z_i * d CE_i / d logits / B with z held constant (features detached)."""
    torch.manual_seed(1)
    feats, y = torch.randn(6, 3, 2, 2, dtype=torch.float64), torch.randint(0, 4, (6,))
    logits = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    loss = BiasLoss(normalisation="local")
    (g,) = torch.autograd.grad(loss(logits, y, feats), logits)
    v = feature_variance(feats)
    z = torch.exp(0.3 * (v - v.min()) / (v.max() - v.min())) - 0.3
    logits2 = logits.detach().clone().requires_grad_()
    (g2,) = torch.autograd.grad((z * torch.nn.functional.cross_entropy(logits2, y, reduction="none")).mean(), logits2)
    torch.testing.assert_close(g, g2)


def test_running_minimum_is_saved_and_restored():
    loss = BiasLoss()
    loss(uniform_logits(2), torch.tensor([0, 1]), features_with_variance([3.0, 8.0]))
    state = loss.state_dict()
    assert set(state) == {"global_min"}
    fresh = BiasLoss()
    fresh.load_state_dict(state)
    assert fresh.global_min.item() == pytest.approx(3.0)
    assert fresh.global_min.dtype == torch.float64  # float64 features keep a float64 minimum across a resume
    a = loss(uniform_logits(2), torch.tensor([0, 1]), features_with_variance([4.0, 6.0]))
    b = fresh(uniform_logits(2), torch.tensor([0, 1]), features_with_variance([4.0, 6.0]))
    assert a.item() == b.item() == pytest.approx(expected([0.5, 1.5]), rel=1e-12)


def test_eps_guards_equal_variances():
    y = torch.tensor([0, 1])
    same = features_with_variance([2.0, 2.0])
    assert torch.isnan(BiasLoss(normalisation="local")(uniform_logits(2), y, same))  # the reference's 0/0
    out = BiasLoss(normalisation="local", eps=1e-6)(uniform_logits(2), y, same)
    assert out.item() == pytest.approx(expected([0.0, 0.0]), rel=1e-9)
    single = BiasLoss(eps=1e-6)(uniform_logits(1), y[:1], features_with_variance([2.0]))
    assert single.item() == pytest.approx(expected([0.0]), rel=1e-9)


@pytest.mark.parametrize("kwargs, message", [
    ({"normalisation": "batch"}, "unknown Bias Loss normalisation"),
    ({"alpha": -0.1}, "alpha=-0.1 must be >= 0"),
    ({"beta": 1.0}, "beta < 1"),
    ({"alpha": 0.0, "legacy_2021": True}, "alpha > 0"),
    ({"beta": -1.0, "legacy_2021": True}, "beta=-1.0 must be >= 0"),
    ({"alpha": float("nan")}, "must be finite"),
    ({"eps": 0.0}, "eps must be a positive number"),
])
def test_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BiasLoss(**kwargs)


@pytest.mark.parametrize("logits, targets, features, message", [
    (torch.zeros(1, 10), torch.tensor([0]), torch.randn(1, 4), "at least 2 samples"),
    (torch.zeros(2, 10, 1), torch.tensor([0, 1]), torch.randn(2, 4), r"\(batch, classes\)"),
    (torch.zeros(2, 10), torch.tensor([0, 1]), torch.randn(3, 4), "logits' batch size 2"),
    (torch.zeros(2, 10), torch.tensor([0, 1]), torch.randn(2, 1, 1, 1), "at least 2 values per sample"),
    (torch.zeros(0, 10), torch.tensor([], dtype=torch.long), torch.randn(0, 4), "empty batch"),
])
def test_bad_inputs(logits, targets, features, message):
    with pytest.raises(ValueError, match=message):
        BiasLoss()(logits, targets, features)
