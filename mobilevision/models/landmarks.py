"""Landmark regressors of Fard & Mahoor (CVIU 2022) and the exported detector graph.

``LandmarkRegressor``: an ImageNet trunk (MobileNetV2 student, EfficientNet-B3 teacher), global average
pool, dropout and a linear head to 2N numbers, interleaved (x0, y0, x1, y1, ...), in the reference's
normalised space x_n = (S/2 - x) / S (S = input side; the sign is flipped, spec §1). The student's
dropout follows ACR's head (0.1; ASM's is 0), the teachers' KDR's (0.5).

``LandmarkDetector`` is the zoo model and the exported graph: an (N, 3, H, W) crop in [0, 1] -> landmarks
in input-pixel coordinates (N, K, 2), x = W/2 - W x_n, y = H/2 - H y_n, so apps get pixels straight out.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ..registry import ModelCard, register_model
from .efficientnet import efficientnet_b3
from .mobilenetv2 import load_torchvision_trunk, mobilenet_v2

PAPER = ("Fard & Mahoor, Facial Landmark Points Detection Using Knowledge Distillation-Based Neural Networks, "
         "CVIU 215:103316 (2022), arXiv 2111.07047")
DEFAULT_POINTS = 68


class LandmarkRegressor(nn.Module):
    """trunk -> GAP -> Dropout(p) -> Linear(num_features -> 2N): normalised, sign-flipped coordinates."""

    def __init__(self, trunk: nn.Module, num_points: int = DEFAULT_POINTS, dropout: float = 0.1):
        super().__init__()
        self.trunk = trunk
        self.num_points = num_points
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(trunk.num_features, 2 * num_points)

    def load_backbone(self, path: str) -> None:
        """torchvision-format ImageNet weights for the trunk (its classifier keys are ignored)."""
        load_torchvision_trunk(self.trunk, path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = torch.flatten(nn.functional.adaptive_avg_pool2d(self.trunk.forward_features(x), 1), 1)
        return self.head(self.dropout(feats))


class LandmarkDetector(nn.Module):
    """The exported graph: crop (N, 3, H, W) in [0, 1] -> landmarks (N, K, 2) in input pixels (x, y)."""

    def __init__(self, net: LandmarkRegressor):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        out = self.net(x).reshape(x.shape[0], -1, 2)
        size = out.new_tensor([float(w), float(h)])
        return size / 2 - size * out


def _card(name: str, what: str) -> ModelCard:
    return ModelCard(name=name, task="landmarks", input_size=(3, 224, 224), family="landmarks_kd", paper=PAPER,
                     mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), interpolation="bilinear", crop_pct=1.0,
                     resize_mode="stretch", num_classes=DEFAULT_POINTS, labels=None, label_set=None,
                     output_names=("landmarks",), classifier_prefixes=("net.head.",),
                     description=f"{what}; 68-point iBUG default (num_classes = landmark count); input: a face "
                                 "crop stretched to 224x224, pixels / 255; output: landmarks in input pixels")


def _regressor(trunk: Callable[[], nn.Module], num_classes: int, dropout: float) -> LandmarkDetector:
    return LandmarkDetector(LandmarkRegressor(trunk(), num_points=num_classes, dropout=dropout))


STUDENT_WIDTHS = {"landmarks_mnv2": 1.0, "landmarks_mnv2_075": 0.75, "landmarks_mnv2_050": 0.5,
                  "landmarks_mnv2_035": 0.35}


def _register_student(name: str, width: float) -> None:
    what = ("MobileNetV2" + (f" x{width}" if width != 1.0 else "") + " student (GAP, dropout 0.1, linear 2N)"
            + (", the paper's" if width == 1.0 else ""))

    @register_model(_card(name, what))
    def build(num_classes: int = DEFAULT_POINTS, dropout: float = 0.1, **kwargs: Any) -> LandmarkDetector:
        return _regressor(lambda: mobilenet_v2(width, include_classifier=False, **kwargs), num_classes, dropout)

    build.__name__ = name


for _name, _width in STUDENT_WIDTHS.items():
    _register_student(_name, _width)


@register_model(_card("landmarks_effb3", "EfficientNet-B3 Tough / Tolerant teacher at 224 (GAP, dropout 0.5, linear 2N)"))
def landmarks_effb3(num_classes: int = DEFAULT_POINTS, dropout: float = 0.5, **kwargs: Any) -> LandmarkDetector:
    return _regressor(lambda: efficientnet_b3(include_classifier=False, **kwargs), num_classes, dropout)
