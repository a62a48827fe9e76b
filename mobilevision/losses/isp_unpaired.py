"""The unpaired ISP objective of Arhire & Timofte (CVPRW 2025), spec isp_unpaired.md §5-§6.

Generator terms, each balanced by the inverse norm of its own gradient (§5.7):
- content: VGG-19 relu5_4 features of the L channel (CIE Lab, /100, three copies) of the output Ŷ
  against those of the naive rendering X̂ of the same RAW (§5.1);
- total variation: mean(dx²) + mean(dy²) (§5.2);
- texture: two discriminators on AlexNet relu1 / relu4 features of BT.601 gray images, the trunk
  run on [0, 1] values without LPIPS's scaling (§5.3, P3);
- colour: one discriminator on ViT-B/16 patch tokens of images blurred by a 21x21 DPED Gaussian
  (zero padding) and resized to 224, without ViT's input normalisation (§5.4, P2).
Relativistic adversarial loss; the discriminators' zero-centred R1 + R2 penalties are taken with
respect to the *feature tensors*, x100 and xγ/2 = 5 (§5.6, P4). Each discriminator has its own Adam
(1e-5, betas 0.5/0.9), gradient clipping at 1.0, and steps once every 10 generator steps on the Ŷ of
that step (§6, P6). Discriminator ``fc1`` layers are built eagerly from the patch size, before their
optimisers (P1 fixed). Feature networks are frozen (P11).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mobilevision.models.feature_nets import load_feature_net

R1_SCALE = 100.0
GAMMA = 10.0
DISC_LR = 1e-5
DISC_BETAS = (0.5, 0.9)
DISC_CLIP = 1.0
DISC_EVERY = 10
TERMS = ("content", "tv", "texture_64", "texture_256", "colour")


def rgb_to_l(x: torch.Tensor) -> torch.Tensor:
    """CIE L* / 100 of sRGB in [0, 1] (kornia's rgb_to_lab formula), NaN-safe below 0 (P13): (N, 1, H, W)."""
    x = x.clamp_min(0.0)
    lin = torch.where(x > 0.04045, ((x + 0.055) / 1.055).pow(2.4), x / 12.92)
    y = 0.212671 * lin[:, 0:1] + 0.715160 * lin[:, 1:2] + 0.072169 * lin[:, 2:3]
    f = torch.where(y > 0.008856, y.clamp_min(0.008856).pow(1.0 / 3.0), 7.787 * y + 4.0 / 29.0)
    return (116.0 * f - 16.0) / 100.0


def tv_loss(y: torch.Tensor) -> torch.Tensor:
    """mean of squared horizontal + mean of squared vertical forward differences (DPED form)."""
    return (y[..., :, 1:] - y[..., :, :-1]).pow(2).mean() + (y[..., 1:, :] - y[..., :-1, :]).pow(2).mean()


def gray_bt601(x: torch.Tensor) -> torch.Tensor:
    """0.299 R + 0.587 G + 0.114 B, as three identical channels."""
    g = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    return g.expand(-1, 3, -1, -1)


def dped_gaussian_kernel(size: int = 21, nsig: float = 3.0) -> torch.Tensor:
    """DPED's kernel: g = diff(Φ(linspace(−nsig − d/2, nsig + d/2, size + 1))), d = (2 nsig + 1) / size;
    K = sqrt(outer(g, g)) normalised to sum 1. (size, size) float64."""
    interval = (2 * nsig + 1.0) / size
    x = torch.linspace(-nsig - interval / 2.0, nsig + interval / 2.0, size + 1, dtype=torch.float64)
    cdf = 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
    g = cdf[1:] - cdf[:-1]
    k = torch.sqrt(torch.outer(g, g))
    return k / k.sum()


class ColourBlur(nn.Module):
    """Depthwise 21x21 DPED Gaussian with zero padding 10 (borders darken, as the reference: P17)."""

    def __init__(self, size: int = 21):
        super().__init__()
        self.register_buffer("kernel", dped_gaussian_kernel(size).float().expand(3, 1, size, size).clone(),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel, padding=self.kernel.shape[-1] // 2, groups=3)


class LPIPSFeatureDiscriminator(nn.Module):
    """Discriminator_LPIPS: convs 5x5/2 -> 48, 3x3/2 -> 128, 3x3 -> 192, 3x3 -> 192, 3x3/2 -> 128 (LeakyReLU 0.2),
    flatten, fc 1024 (LeakyReLU), fc 1 (raw logit). ``fc1`` is sized from ``feature_hw`` at construction."""

    def __init__(self, in_channels: int, feature_hw: tuple[int, int]):
        super().__init__()
        spec = ((in_channels, 48, 5, 2, 2), (48, 128, 3, 2, 1), (128, 192, 3, 1, 1), (192, 192, 3, 1, 1),
                (192, 128, 3, 2, 1))
        for i, (cin, cout, k, s, p) in enumerate(spec, 1):
            setattr(self, f"conv{i}", nn.Conv2d(cin, cout, k, stride=s, padding=p))
        h, w = feature_hw
        for _, _, k, s, p in spec:
            h, w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        if h < 1 or w < 1:
            raise ValueError(f"a {feature_hw} feature map is too small for the texture discriminator")
        self.fc1 = nn.Linear(128 * h * w, 1024)
        self.fc2 = nn.Linear(1024, 1)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        for i in range(1, 6):
            f = F.leaky_relu(getattr(self, f"conv{i}")(f), 0.2)
        return self.fc2(F.leaky_relu(self.fc1(f.flatten(1)), 0.2))


class ViTTokenDiscriminator(nn.Module):
    """Per-token MLP 768 -> 512 -> 512 -> 1 (ReLU), averaged over the tokens: (N, 1)."""

    def __init__(self, dim: int = 768, hidden: int = 512):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.mlp(tokens).mean(dim=1)


def zero_centred_penalty(features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per sample ||∂(Σ logits)/∂features||², summed over every non-batch dimension."""
    grad, = torch.autograd.grad(logits.sum(), features, create_graph=True)
    return grad.pow(2).flatten(1).sum(dim=1)


def discriminator_loss(disc: nn.Module, real: torch.Tensor, fake: torch.Tensor, gamma: float = GAMMA) -> torch.Tensor:
    """mean[softplus(−(D(r) − D(f))) + γ/2 · 100 (R1 + R2)], R1/R2 w.r.t. the detached feature tensors."""
    r = real.detach().clone().requires_grad_(True)
    f = fake.detach().clone().requires_grad_(True)
    dr, df = disc(r), disc(f)
    penalty = R1_SCALE * (zero_centred_penalty(r, dr) + zero_centred_penalty(f, df))
    return (F.softplus(-(dr - df)).view(-1) + gamma / 2.0 * penalty).mean()


def generator_adversarial_loss(disc: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """mean softplus(−(D(f) − D(r))): gradients reach the generator through the frozen features of f."""
    return F.softplus(-(disc(fake) - disc(real))).mean()


class UnpairedISPObjective(nn.Module):
    """Feature networks, the three discriminators and their optimisers for output patches of ``size``.

    ``weights``: local files for "vgg19", "alexnet", "vit_b_16" (missing: random init, reported in
    :attr:`pretrained`). The discriminators' optimiser states travel in this module's state dict
    (``get_extra_state``), so a resumed run continues them.
    """

    def __init__(self, size: tuple[int, int], weights: dict[str, str | None] | None = None):
        super().__init__()
        weights = weights or {}
        nets = {name: load_feature_net(name, weights.get(name)) for name in ("vgg19", "alexnet", "vit_b_16")}
        # frozen and not registered: they stay out of the run's state (hundreds of MB); _apply moves them
        self._frozen = {name: net for name, (net, _) in nets.items()}
        self.pretrained = {name: ok for name, (_, ok) in nets.items()}
        self.blur = ColourBlur()
        with torch.no_grad():  # feature-map sizes for fc1, from a dry run at the patch size
            taps = self.alexnet(torch.zeros(1, 3, *size))
        self.d_texture_64 = LPIPSFeatureDiscriminator(64, tuple(taps[0].shape[-2:]))
        self.d_texture_256 = LPIPSFeatureDiscriminator(256, tuple(taps[3].shape[-2:]))
        self.d_colour = ViTTokenDiscriminator()
        self.optimizers = {name: torch.optim.Adam(getattr(self, name).parameters(), lr=DISC_LR, betas=DISC_BETAS)
                           for name in ("d_texture_64", "d_texture_256", "d_colour")}
        self._pending: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None

    @property
    def vgg(self) -> nn.Module:
        return self._frozen["vgg19"]

    @property
    def alexnet(self) -> nn.Module:
        return self._frozen["alexnet"]

    @property
    def vit(self) -> nn.Module:
        return self._frozen["vit_b_16"]

    def _apply(self, fn: Any, recurse: bool = True) -> "UnpairedISPObjective":  # .to(device) reaches them too
        super()._apply(fn, recurse)
        for net in self._frozen.values():
            net._apply(fn)
        return self

    def get_extra_state(self) -> Any:
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def set_extra_state(self, state: Any) -> None:
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state[name])

    def _vit_tokens(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.blur(x), size=(224, 224), mode="bilinear", align_corners=False)
        return self.vit(x)[:, 1:]

    def _texture(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        taps = self.alexnet(gray_bt601(x))
        return taps[0], taps[3]

    def generator_terms(self, fake: torch.Tensor, reference: torch.Tensor, target: torch.Tensor
                        ) -> dict[str, torch.Tensor]:
        """The five unbalanced generator losses of one batch; keeps the detached features for the
        discriminator step (:meth:`discriminator_step`)."""
        b = fake.shape[0]
        lf, lr_ = rgb_to_l(fake).expand(-1, 3, -1, -1), rgb_to_l(reference).expand(-1, 3, -1, -1)
        with torch.no_grad():
            phi_ref = self.vgg(lr_)
        phi = self.vgg(lf)
        terms = {"content": 2.0 * b * (phi - phi_ref).pow(2).mean(), "tv": tv_loss(fake)}
        f64, f256 = self._texture(fake)
        with torch.no_grad():
            r64, r256 = self._texture(target)
            r_tok = self._vit_tokens(target)
        f_tok = self._vit_tokens(fake)
        terms["texture_64"] = generator_adversarial_loss(self.d_texture_64, r64, f64)
        terms["texture_256"] = generator_adversarial_loss(self.d_texture_256, r256, f256)
        terms["colour"] = generator_adversarial_loss(self.d_colour, r_tok, f_tok)
        self._pending = {"d_texture_64": (r64, f64.detach()), "d_texture_256": (r256, f256.detach()),
                         "d_colour": (r_tok, f_tok.detach())}
        return terms

    def discriminator_step(self) -> dict[str, float]:
        """One Adam step per discriminator on the last batch's features (gradient norm clipped at 1)."""
        if self._pending is None:
            return {}
        losses = {}
        for name, (real, fake) in self._pending.items():
            disc, opt = getattr(self, name), self.optimizers[name]
            opt.zero_grad(set_to_none=True)
            with torch.enable_grad():
                loss = discriminator_loss(disc, real, fake)
                loss.backward()
            nn.utils.clip_grad_norm_(disc.parameters(), DISC_CLIP)
            opt.step()
            losses[f"d_{name[2:]}"] = float(loss.detach())
        self._pending = None
        return losses


def balanced_total(terms: dict[str, torch.Tensor], params: list[torch.Tensor], eps: float = 1e-8
                   ) -> tuple[torch.Tensor, dict[str, float]]:
    """Σ_k L_k / (||∇_θ L_k|| + eps), the factors constants (§5.7, P5); also returns the gradient norms."""
    total, norms = 0.0, {}
    for name, loss in terms.items():
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        norm = torch.sqrt(sum(g.pow(2).sum() for g in grads if g is not None) or torch.zeros(()))
        norms[name] = float(norm)
        total = total + loss / (norm.detach() + eps)
    return total, norms
