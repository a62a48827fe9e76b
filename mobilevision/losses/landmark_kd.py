"""KD-Loss of Fard & Mahoor (CVIU 2022) for facial landmarks: main loss + two Assistive Losses.

Implemented as the reference code (aliprf/KD-Loss ``custom_Losses.py::kd_loss``) computes it, which is
not what the repository's figures draw (spec §5.1):

* weights: +1.9 / -0.45 (Tough teacher) and +1.8 / -0.4 (Tolerant teacher), and 0 between the ground
  truth and the boundary; the figures show +1 / -0.5 with a linear ramp to -0.5 in that low region;
* boundary: 15 % of the way from the ground truth to the mirrored teacher; the figures show 40 %;
* main loss: slope 3 inside a per-coordinate threshold delta = |G - L| from the Tolerant teacher and
  e^2 + 3 delta - delta^2 outside; the figures show |e| up to a fixed 0.5, then e^2 + 0.25.

Every operation is per coordinate (x and y separately) on (B, 2N) tensors, every mean runs over the
whole tensor, and the masks, mirrored teachers, boundaries and delta are constants: gradients reach
only the student's prediction P through |t' - P|, |G - P| and (G - P)^2.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TeacherWeights:
    """Per-teacher region weights of the Assistive Loss (code values, spec §5)."""

    positive: float     # R_P: the student is beyond the mirrored teacher (pulled back toward it)
    negative: float     # R_N: the student is between the boundary and the mirrored teacher (pushed to the GT)


TOUGH = TeacherWeights(positive=1.9, negative=-0.45)
TOLERANT = TeacherWeights(positive=1.8, negative=-0.4)
BOUNDARY = 0.15          # the boundary sits this fraction of |t' - G| away from the ground truth
MAIN_SLOPE = 3.0         # slope of the main loss inside delta


def mirrored_teacher(pred: torch.Tensor, gt: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """t' = G + sign(P - G) |t - G|: the teacher reflected onto the student's side of the ground truth
    (equal to G where P == G, since sign(0) = 0)."""
    return gt + torch.sign(pred - gt) * (teacher - gt).abs()


def region_weights(pred: torch.Tensor, gt: torch.Tensor, mirrored: torch.Tensor, weights: TeacherWeights,
                   boundary: float = BOUNDARY) -> torch.Tensor:
    """omega_t per coordinate: ``weights.positive`` where sign(P - t') sign(t' - G) > 0 (strict),
    ``weights.negative`` where sign(t' - P) sign(P - beta) >= 0 (inclusive), 0 elsewhere (R_L)."""
    beta = gt + torch.sign(pred - gt) * (mirrored - gt).abs() * boundary
    beyond = torch.sign(pred - mirrored) * torch.sign(mirrored - gt) > 0
    between = torch.sign(mirrored - pred) * torch.sign(pred - beta) >= 0
    return beyond.to(pred.dtype) * weights.positive + between.to(pred.dtype) * weights.negative


def assistive_loss(pred: torch.Tensor, gt: torch.Tensor, teacher: torch.Tensor, weights: TeacherWeights,
                   boundary: float = BOUNDARY) -> torch.Tensor:
    """ALoss_t = mean(omega_t |t' - P|) over the whole (B, 2N) tensor (before the term weight)."""
    with torch.no_grad():
        mirrored = mirrored_teacher(pred, gt, teacher)
        omega = region_weights(pred, gt, mirrored, weights, boundary)
    return (omega * (mirrored - pred).abs()).mean()


def main_loss(pred: torch.Tensor, gt: torch.Tensor, tolerant: torch.Tensor, slope: float = MAIN_SLOPE) -> torch.Tensor:
    """mean(l(e)) with e = |G - P|, delta = |G - L|: l = slope e where e <= delta, else e^2 + slope delta - delta^2
    (continuous at delta; the slope drops from ``slope`` to 2 delta there, as in the code)."""
    delta = (gt - tolerant).abs().detach()
    err = (gt - pred).abs()
    inside = (err <= delta).detach()
    loss = torch.where(inside, slope * err, err.square() + slope * delta - delta.square())
    return loss.mean()


class KDLoss(nn.Module):
    """KD-Loss = w_main main_loss + w_tou ALoss(Tough) + w_tol ALoss(Tolerant), w = (2, 1, 1) as the code.

    ``forward(pred, gt, tough, tolerant)`` takes (B, 2N) student predictions, ground truth and the two
    teachers' predictions (eval mode, no grad) in the normalised coordinate space and returns the total;
    ``last_terms`` keeps the three weighted terms of the latest call for logging.
    """

    def __init__(self, w_main: float = 2.0, w_tough: float = 1.0, w_tolerant: float = 1.0,
                 tough: TeacherWeights = TOUGH, tolerant: TeacherWeights = TOLERANT, boundary: float = BOUNDARY,
                 slope: float = MAIN_SLOPE):
        super().__init__()
        self.w_main, self.w_tough, self.w_tolerant = w_main, w_tough, w_tolerant
        self.tough, self.tolerant, self.boundary, self.slope = tough, tolerant, boundary, slope
        self.last_terms: dict[str, float] = {}

    def forward(self, pred: torch.Tensor, gt: torch.Tensor, tough: torch.Tensor,
                tolerant: torch.Tensor) -> torch.Tensor:
        if not pred.shape == gt.shape == tough.shape == tolerant.shape:
            raise ValueError(f"KD-Loss needs equal shapes, got pred {tuple(pred.shape)}, gt {tuple(gt.shape)}, "
                             f"tough {tuple(tough.shape)}, tolerant {tuple(tolerant.shape)}")
        gt, tolerant = gt.detach(), tolerant.detach()
        main = self.w_main * main_loss(pred, gt, tolerant, self.slope)
        tol = self.w_tolerant * assistive_loss(pred, gt, tolerant, self.tolerant, self.boundary)
        tou = self.w_tough * assistive_loss(pred, gt, tough.detach(), self.tough, self.boundary)
        self.last_terms = {"main": float(main.detach()), "aloss_tough": float(tou.detach()),
                           "aloss_tolerant": float(tol.detach())}
        return main + tou + tol


class LandmarkMSE(nn.Module):
    """The teachers' loss (and the no-KD student's): mean over batch and 2N of (pred - target)^2."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (pred - target).square().mean()
