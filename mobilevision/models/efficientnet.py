"""EfficientNet (B0, B3) in torchvision's layout: the facial-landmark teachers' trunk (spec landmarks_kd.md §3).

Architecture from "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks" (Tan & Le,
ICML 2019) as torchvision builds it: MBConv blocks (inverted residual + squeeze-excitation, SiLU),
channels ``make_divisible(c * width, 8)``, repeats ``ceil(n * depth)``, stochastic depth rising linearly
with the block index, plain ``nn.BatchNorm2d`` (eps 1e-5, momentum 0.1: torchvision switches to
eps 1e-3 / momentum 0.01 only for B5-B7). Key names are torchvision's (``features.0`` stem,
``features.1..7.{i}.block.*`` stages, ``features.8`` head conv, ``classifier.1``), so its ImageNet files
(``efficientnet_b3_rwightman-*.pth``) load through :func:`load_torchvision_trunk`.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .mobilenetv2 import (ConvBNAct, extract_torchvision_state_dict, load_torchvision_trunk, make_divisible,
                          torchvision_init)

__all__ = ["EfficientNet", "MBConv", "SqueezeExcitation", "StochasticDepth", "efficientnet_b0",
           "efficientnet_b3", "extract_torchvision_state_dict", "load_torchvision_trunk", "stage_settings"]

PAPER = ("EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks (ICML 2019), "
         "torchvision's layout")
# B0 (expand ratio, kernel, first stride, in channels, out channels, repeats), before width/depth scaling.
B0_SETTING: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1),
)
# name -> (width multiplier, depth multiplier, classifier dropout), torchvision's values
SCALING: dict[str, tuple[float, float, float]] = {
    "efficientnet_b0": (1.0, 1.0, 0.2), "efficientnet_b3": (1.2, 1.4, 0.3),
}


def stage_settings(width_mult: float, depth_mult: float) -> list[tuple[int, int, int, int, int, int]]:
    """The B0 table scaled: (expand ratio, kernel, stride, in, out, repeats) per stage."""
    return [(t, k, s, make_divisible(cin * width_mult), make_divisible(cout * width_mult), math.ceil(n * depth_mult))
            for t, k, s, cin, cout, n in B0_SETTING]


class StochasticDepth(nn.Module):
    """Drop the residual branch of whole samples with probability ``p`` in training, scaling survivors by
    1 / (1 - p) ("row" mode of Huang et al. 2016); the identity in eval or when p = 0."""

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"drop probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        keep = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device).bernoulli_(survival)
        if survival > 0.0:
            keep.div_(survival)
        return x * keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class SqueezeExcitation(nn.Module):
    """Channel gate: global pool -> 1x1 conv (``fc1``) -> SiLU -> 1x1 conv (``fc2``) -> sigmoid, times the input."""

    def __init__(self, channels: int, squeeze_channels: int):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = nn.SiLU()
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return x * self.scale_activation(scale)


class MBConv(nn.Module):
    """1x1 expand (when it changes the width) -> kxk depthwise (stride here) -> squeeze-excitation (squeeze
    width = input channels // 4) -> 1x1 linear projection; stochastic-depth residual when stride 1 and in = out."""

    def __init__(self, in_channels: int, out_channels: int, expand_ratio: int, kernel: int, stride: int,
                 drop_prob: float):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"an MBConv's stride is 1 or 2, got {stride}")
        self.use_residual = stride == 1 and in_channels == out_channels
        hidden = make_divisible(in_channels * expand_ratio)
        layers: list[nn.Module] = []
        if hidden != in_channels:
            layers.append(ConvBNAct(in_channels, hidden, kernel_size=1, activation=nn.SiLU))
        layers += [
            ConvBNAct(hidden, hidden, kernel_size=kernel, stride=stride, groups=hidden, activation=nn.SiLU),
            SqueezeExcitation(hidden, max(1, in_channels // 4)),
            ConvBNAct(hidden, out_channels, kernel_size=1, activation=None),
        ]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(drop_prob)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + self.stochastic_depth(y) if self.use_residual else y


class EfficientNet(nn.Module):
    """EfficientNet-B*: stem (3x3/2, SiLU), seven MBConv stages, 1x1 head conv to ``num_features`` (4x the
    last stage), global average pool, and (``include_classifier``) Dropout -> Linear.

    Block ``i`` of ``N`` drops its residual branch with probability ``stochastic_depth_prob * i / N``.
    Without the classifier :meth:`forward` returns the pooled (B, num_features) vector.
    """

    def __init__(self, width_mult: float, depth_mult: float, dropout: float = 0.2,
                 stochastic_depth_prob: float = 0.2, num_classes: int = 1000, include_classifier: bool = True):
        super().__init__()
        settings = stage_settings(width_mult, depth_mult)
        total_blocks = sum(s[-1] for s in settings)
        layers: list[nn.Module] = [ConvBNAct(3, settings[0][3], stride=2, activation=nn.SiLU)]
        block_id = 0
        for t, k, s, cin, cout, n in settings:
            stage: list[nn.Module] = []
            for i in range(n):
                drop = stochastic_depth_prob * block_id / total_blocks
                stage.append(MBConv(cin if i == 0 else cout, cout, t, k, s if i == 0 else 1, drop))
                block_id += 1
            layers.append(nn.Sequential(*stage))
        last = settings[-1][4]
        self.num_features = 4 * last
        layers.append(ConvBNAct(last, self.num_features, kernel_size=1, activation=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier: nn.Sequential | None = None
        if include_classifier:
            self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.num_features, num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's init: Kaiming-normal (fan_out) convs, unit BN, U(±1/sqrt(out)) Linear, zero biases."""
        torchvision_init(self, lambda w: nn.init.uniform_(w, -1.0 / math.sqrt(w.shape[0]), 1.0 / math.sqrt(w.shape[0])))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The head conv's map after BN + SiLU: (B, num_features, H/32, W/32), 7x7 at 224."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool (and the classifier, unless ``pre_logits`` or there is none)."""
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits or self.classifier is None else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _efficientnet(name: str, num_classes: int, include_classifier: bool, **kwargs: Any) -> EfficientNet:
    width, depth, dropout = SCALING[name]
    kwargs.setdefault("dropout", dropout)
    return EfficientNet(width, depth, num_classes=num_classes, include_classifier=include_classifier, **kwargs)


def efficientnet_b0(num_classes: int = 1000, include_classifier: bool = True, **kwargs: Any) -> EfficientNet:
    """EfficientNet-B0 (width 1.0, depth 1.0, dropout 0.2), torchvision layout; kwargs: dropout,
    stochastic_depth_prob."""
    return _efficientnet("efficientnet_b0", num_classes, include_classifier, **kwargs)


def efficientnet_b3(num_classes: int = 1000, include_classifier: bool = True, **kwargs: Any) -> EfficientNet:
    """EfficientNet-B3 (width 1.2, depth 1.4, dropout 0.3), torchvision layout; kwargs: dropout,
    stochastic_depth_prob."""
    return _efficientnet("efficientnet_b3", num_classes, include_classifier, **kwargs)
