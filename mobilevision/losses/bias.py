"""Bias Loss ("Bias Loss for Mobile Neural Networks", Abrahamyan et al., ICCV 2021).

Cross-entropy weighted per sample by how much information the network extracted from it:
L = mean_i z(v_i) * CE_i, with v_i the normalised variance of sample i's last feature map and
z(v) = exp(alpha * v) - beta. Samples with low-variance features (little information; their
prediction is close to a guess) pull less on the gradient than confident, informative ones.

Numerically identical to lusinlu/bias-loss-skipblocknet bias_loss/biasloss.py at HEAD (b557bca),
and with ``legacy_2021=True`` to its 2021 weight (exp(beta * v) - 1) + alpha. Deliberate deviations:
- the running minimum of 'global' mode is a persistent buffer (``global_min``), so it is saved and
  resumed with the training state (the reference keeps a plain attribute, lost on resume);
  ``reset()`` starts it over;
- ``eps`` (off by default) can be added to the variance range, which the reference divides by
  unguarded (equal variances in a batch give NaN/inf there, and here without ``eps``);
- inputs the reference would turn into a silently wrong or non-finite loss raise ValueError:
  a batch of 1 without ``eps``, fewer than 2 feature values per sample, mismatched batch sizes,
  logits that are not (batch, classes), an unknown normalisation (the reference treats any
  unknown name as 'local'), and alpha/beta that make some weight non-positive or make the
  weight fall as the variance rises.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

NORMALISATIONS = ("global", "local")
GLOBAL_MIN_START = 100000.0  # the reference's initial running minimum


class BiasLoss(nn.Module):
    """Variance-weighted cross-entropy; ``forward(logits, targets, features)`` -> scalar loss.

    ``features`` is the model's last convolutional feature map (B, C, H, W), or any (B, ...)
    tensor; its per-sample variance only weighs the samples (no gradient flows through it).
    'local' normalises the variances by the batch min-max; 'global' (the reference default)
    subtracts the running minimum over all calls so far but divides by the current batch's
    range, so the normalised variance is >= 0 and can exceed 1. Every call updates that
    minimum in 'global' mode, so do not feed it validation batches.
    """

    global_min: torch.Tensor

    def __init__(self, alpha: float = 0.3, beta: float = 0.3, normalisation: str = "global",
                 legacy_2021: bool = False, eps: float | None = None):
        super().__init__()
        check_options(alpha, beta, normalisation, legacy_2021, eps)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.normalisation = normalisation
        self.legacy_2021 = bool(legacy_2021)
        self.eps = None if eps is None else float(eps)
        self.register_buffer("global_min", torch.tensor(GLOBAL_MIN_START), persistent=True)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        self._check_inputs(logits, features)
        weights = self.sample_weight(self._normalise(feature_variance(features)))
        return (weights * F.cross_entropy(logits, targets, reduction="none")).mean()

    def sample_weight(self, v_hat: torch.Tensor) -> torch.Tensor:
        """z(v_hat): exp(alpha*v) - beta, or (exp(beta*v) - 1) + alpha with ``legacy_2021``."""
        if self.legacy_2021:
            return torch.exp(v_hat * self.beta) - 1.0 + self.alpha
        return torch.exp(v_hat * self.alpha) - self.beta

    def reset(self) -> None:
        """Forget the running minimum of 'global' mode (back to the reference's 100000)."""
        self.global_min = torch.full_like(self.global_min, GLOBAL_MIN_START)

    def _normalise(self, v: torch.Tensor) -> torch.Tensor:
        lo, hi = v.min(), v.max()
        span = hi - lo if self.eps is None else hi - lo + self.eps
        if self.normalisation == "local":
            return (v - lo) / span
        # The reference's `if min < g: g = min`, kept on the device (no host sync); a NaN minimum
        # compares False and leaves g alone, as there. where() promotes, so g never loses precision.
        g = self.global_min.to(v.device)
        self.global_min = torch.where(lo < g, lo, g)
        return (v - self.global_min) / span

    def _check_inputs(self, logits: torch.Tensor, features: torch.Tensor) -> None:
        if logits.dim() != 2:
            raise ValueError(f"Bias Loss needs logits of shape (batch, classes), got {tuple(logits.shape)}")
        if features.dim() < 2 or features.shape[0] != logits.shape[0]:
            raise ValueError(f"features {tuple(features.shape)} must be (batch, ...) with the logits' batch "
                             f"size {logits.shape[0]}")
        if math.prod(features.shape[1:]) < 2:
            raise ValueError(f"features {tuple(features.shape)} need at least 2 values per sample for a variance")
        if logits.shape[0] == 0:
            raise ValueError("Bias Loss got an empty batch")
        if logits.shape[0] < 2 and self.eps is None:
            raise ValueError("Bias Loss needs batches of at least 2 samples (it divides by the batch's variance "
                             "range, 0 for one sample); drop incomplete batches or pass eps")

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        # Adopt the saved minimum's dtype (float64 features keep a float64 minimum across a resume).
        saved = state_dict.get(prefix + "global_min")
        if isinstance(saved, torch.Tensor) and saved.is_floating_point():
            self.global_min = self.global_min.to(saved.dtype)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return (f"alpha={self.alpha}, beta={self.beta}, normalisation={self.normalisation!r}, "
                f"legacy_2021={self.legacy_2021}, eps={self.eps}")


def feature_variance(features: torch.Tensor) -> torch.Tensor:
    """Unbiased variance (divide by M - 1) of each sample's M feature values, detached: (B,)."""
    flat = features.detach().reshape(features.shape[0], -1)
    return torch.var(flat, dim=1)


def check_options(alpha: float, beta: float, normalisation: str = "global", legacy_2021: bool = False,
                  eps: float | None = None) -> None:
    """Reject options under which some weight is non-positive or falls as the variance rises
    (v_hat >= 0 in both modes, so z(0) > 0 and a non-negative rate keep every weight positive)."""
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"unknown Bias Loss normalisation {normalisation!r}: choose 'global' or 'local'")
    if not (math.isfinite(alpha) and math.isfinite(beta)):
        raise ValueError(f"Bias Loss alpha and beta must be finite, got alpha={alpha}, beta={beta}")
    rate, name, floor = (beta, "beta", alpha) if legacy_2021 else (alpha, "alpha", 1.0 - beta)
    if rate < 0:
        raise ValueError(f"Bias Loss {name}={rate} must be >= 0 (the weight must not fall as the feature variance rises)")
    if floor <= 0:
        limit = "alpha > 0" if legacy_2021 else "beta < 1"
        raise ValueError(f"Bias Loss needs {limit} so every sample weight is positive, got alpha={alpha}, beta={beta}")
    if eps is not None and not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"Bias Loss eps must be a positive number or None, got {eps}")
