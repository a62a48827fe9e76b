"""The unpaired ISP objective (spec §5-§6): each term by hand, discriminator sizes and losses, the
gradient-norm balancing, the 1-in-10 discriminator cadence, and a short real training run."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mobilevision.losses.isp_unpaired import (LPIPSFeatureDiscriminator, UnpairedISPObjective, ViTTokenDiscriminator,
                                              balanced_total, discriminator_loss, dped_gaussian_kernel,
                                              generator_adversarial_loss, rgb_to_l, tv_loss)


def test_l_channel_and_nan_safety():
    x = torch.tensor([0.0, 0.5, 1.0]).view(3, 1, 1, 1).expand(3, 3, 1, 1).clone().requires_grad_(True)
    l = rgb_to_l(x).view(-1)
    np.testing.assert_allclose(l.detach().numpy(), [0.0, 0.533890, 1.0], atol=1e-4)  # L* of sRGB gray 0.5 = 53.39
    neg = torch.full((1, 3, 2, 2), -0.2, requires_grad=True)
    rgb_to_l(neg).sum().backward()
    assert torch.isfinite(neg.grad).all()


def test_tv_by_hand():
    y = torch.tensor([[0.0, 1.0], [2.0, 4.0]]).view(1, 1, 2, 2)
    assert float(tv_loss(y)) == pytest.approx((1 + 4) / 2 + (4 + 9) / 2)


def test_dped_kernel_matches_the_normal_cdf_recipe():
    from scipy.stats import norm

    k = dped_gaussian_kernel(21).numpy()
    interval = 7 / 21
    g = np.diff(norm.cdf(np.linspace(-3 - interval / 2, 3 + interval / 2, 22)))
    ref = np.sqrt(np.outer(g, g))
    np.testing.assert_allclose(k, ref / ref.sum(), atol=1e-12)


def test_discriminator_sizes_match_the_paper():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(LPIPSFeatureDiscriminator(64, (63, 63))) == 9_297_585      # 256 px output
    assert count(LPIPSFeatureDiscriminator(256, (15, 15))) == 1_663_665
    assert count(ViTTokenDiscriminator()) == 656_897


def test_relativistic_losses_by_hand_with_a_linear_discriminator():
    w = torch.tensor([0.5, -1.0, 2.0])
    disc = lambda f: (f * w).sum(dim=1, keepdim=True)  # noqa: E731  gradient w.r.t. each sample: w
    r, f = torch.tensor([[1.0, 0.0, 0.5]]), torch.tensor([[0.0, 1.0, 0.0]])
    dr, df = 0.5 + 1.0, -1.0
    expected = torch.nn.functional.softplus(torch.tensor(-(dr - df))) + 5.0 * 100.0 * 2 * float(w.pow(2).sum())
    assert float(discriminator_loss(disc, r, f)) == pytest.approx(float(expected))
    assert float(generator_adversarial_loss(disc, r, f)) == pytest.approx(
        float(torch.nn.functional.softplus(torch.tensor(-(df - dr)))))


def test_balancing_sums_unit_gradient_directions():
    p = torch.tensor([1.0, 2.0], requires_grad=True)
    terms = {"a": 3.0 * p[0] ** 2, "b": 10.0 * p[1]}     # gradients (6, 0) and (0, 10)
    total, norms = balanced_total(terms, [p])
    total.backward()
    assert norms == pytest.approx({"a": 6.0, "b": 10.0})
    torch.testing.assert_close(p.grad, torch.tensor([1.0, 1.0]), atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def objective():
    torch.manual_seed(0)
    return UnpairedISPObjective((64, 64))


@pytest.mark.slow
def test_objective_terms_state_and_discriminator_step(objective):
    assert objective.pretrained == {"vgg19": False, "alexnet": False, "vit_b_16": False}
    keys = objective.state_dict().keys()
    assert not any(k.startswith(("vgg", "alexnet", "vit")) for k in keys)  # frozen nets stay out of the run state
    assert "_extra_state" in keys
    gen = torch.nn.Conv2d(3, 3, 3, padding=1)
    x = torch.rand(2, 3, 64, 64)
    fake = torch.sigmoid(gen(x))
    terms = objective.generator_terms(fake, torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64))
    assert set(terms) == {"content", "tv", "texture_64", "texture_256", "colour"}
    total, norms = balanced_total(terms, list(gen.parameters()))
    assert all(v > 0 for v in norms.values())
    total.backward()
    before = objective.d_colour.mlp[0].weight.clone()
    losses = objective.discriminator_step()
    assert set(losses) == {"d_texture_64", "d_texture_256", "d_colour"}
    assert not torch.equal(before, objective.d_colour.mlp[0].weight)
    # the discriminators' Adam states round-trip through the state dict
    state = objective.state_dict()
    fresh = UnpairedISPObjective((64, 64))
    fresh.load_state_dict(state)
    assert fresh.optimizers["d_colour"].state_dict()["state"][0]["step"] == 1


def test_discriminators_step_every_tenth_generator_step(objective, monkeypatch):
    from mobilevision.tasks.isp import IspOptions, IspTask

    calls = []
    monkeypatch.setattr(objective, "discriminator_step", lambda: calls.append(1) or {})
    task = IspTask.__new__(IspTask)
    task.opts = IspOptions(mode="unpaired")
    for step in range(21):
        task.after_optimizer_step(objective, step)
    assert len(calls) == 3      # steps 0, 10, 20
