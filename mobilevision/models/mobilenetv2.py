"""MobileNetV2 in torchvision's layout: the facial-landmark student's trunk (spec landmarks_kd.md §2).

Architecture from "MobileNetV2: Inverted Residuals and Linear Bottlenecks" (Sandler et al., CVPR 2018)
as torchvision builds it: symmetric padding, BN eps 1e-5, ReLU6, channels rounded by
:func:`make_divisible`. Module and state-dict key names are torchvision's (``features.0.{0,1}`` stem,
``features.1..17.conv.*`` inverted residuals, ``features.18.{0,1}`` last 1x1 conv, ``classifier.1``),
so torchvision's ImageNet file ``mobilenet_v2-b0353104.pth`` loads through :func:`load_torchvision_trunk`.

The conv-BN-activation block, the channel rounding and the trunk loader are shared with
:mod:`mobilevision.models.efficientnet`, whose MBConv is this inverted residual plus squeeze-excitation.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..checkpoints import extract_torchvision_state_dict, load_into

PAPER = "MobileNetV2: Inverted Residuals and Linear Bottlenecks (CVPR 2018), torchvision's layout"
STEM_CHANNELS = 32
LAST_CHANNELS = 1280
# (expansion t, output channels c, repeats n, first stride s), width 1.0
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)
WIDTHS = (0.35, 0.5, 0.75, 1.0)  # the widths the SDK supports (spec §2)
CLASSIFIER_PREFIX = "classifier."


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (at least ``min_value``, default ``divisor``),
    stepping up once if that lost more than 10 % of ``value`` (the TF-slim / torchvision rule)."""
    floor = divisor if min_value is None else min_value
    rounded = max(floor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class ConvBNAct(nn.Sequential):
    """Conv (no bias, 'same' padding for odd kernels) -> BN -> optional activation; keys ``0``, ``1``
    like torchvision's ``Conv2dNormActivation``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1, activation: Callable[[], nn.Module] | None = nn.ReLU6,
                 norm: Callable[[int], nn.Module] = nn.BatchNorm2d):
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2,
                      groups=groups, bias=False),
            norm(out_channels),
        ]
        if activation is not None:
            layers.append(activation())
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """1x1 expand (skipped when t = 1) -> 3x3 depthwise (stride here) -> 1x1 linear projection, BN after each;
    identity shortcut when stride 1 and in = out."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"an inverted residual's stride is 1 or 2, got {stride}")
        hidden = int(round(in_channels * expand_ratio))
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_channels, hidden, kernel_size=1))
        layers += [
            ConvBNAct(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.use_residual else y


def torchvision_init(module: nn.Module, linear_weight: Callable[[torch.Tensor], Any]) -> None:
    """torchvision's classification-net init: Kaiming-normal (fan_out) conv weights, unit BN, zero biases;
    ``linear_weight`` initialises each Linear weight (it differs per family)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            linear_weight(m.weight)
            nn.init.zeros_(m.bias)


class MobileNetV2(nn.Module):
    """MobileNetV2 at width ``width_mult``: stem, 17 inverted residuals, 1x1 conv to ``num_features``
    (1280 for widths <= 1), global average pool, and (``include_classifier``) Dropout -> Linear.

    Without the classifier the module holds no ``classifier.*`` weights and :meth:`forward` returns the
    pooled (B, num_features) vector, ready for a task head.
    """

    def __init__(self, width_mult: float = 1.0, dropout: float = 0.2, num_classes: int = 1000,
                 include_classifier: bool = True,
                 setting: Sequence[tuple[int, int, int, int]] = INVERTED_RESIDUAL_SETTING):
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        channels = make_divisible(STEM_CHANNELS * width_mult)
        self.num_features = make_divisible(LAST_CHANNELS * max(1.0, width_mult))
        features: list[nn.Module] = [ConvBNAct(3, channels, stride=2)]
        for t, c, n, s in setting:
            out = make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(channels, out, s if i == 0 else 1, t))
                channels = out
        features.append(ConvBNAct(channels, self.num_features, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.width_mult = width_mult
        self.classifier: nn.Sequential | None = None
        if include_classifier:
            self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.num_features, num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's init: Kaiming-normal (fan_out) convs, unit BN, N(0, 0.01) Linear, zero biases."""
        torchvision_init(self, lambda w: nn.init.normal_(w, 0.0, 0.01))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last conv's map after BN + ReLU6: (B, num_features, H/32, W/32), 7x7 at 224."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool (and the classifier, unless ``pre_logits`` or there is none)."""
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return x if pre_logits or self.classifier is None else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def mobilenet_v2(width_mult: float = 1.0, num_classes: int = 1000, include_classifier: bool = True,
                 **kwargs: Any) -> MobileNetV2:
    """MobileNetV2, torchvision layout; kwargs: dropout."""
    return MobileNetV2(width_mult=width_mult, num_classes=num_classes, include_classifier=include_classifier,
                       **kwargs)


# ---------------------------------------------------------------------------------------------- loading

def load_torchvision_trunk(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a torchvision ImageNet file (MobileNetV2 or EfficientNet) into ``model``, in place.

    ``classifier.*`` keys are ignored when ``model`` has no classifier or another class count; every other
    key must match by name and shape. Raises WeightsError for a missing or unreadable file and
    IncompatibleWeights (one line, naming the file and keys) for another architecture or width.
    """
    has_classifier = any(k.startswith(CLASSIFIER_PREFIX) for k in model.state_dict())

    def extract(obj: Any, key: str | None = None, path: Any = None) -> Any:
        sd = extract_torchvision_state_dict(obj, key=key, path=path)
        if has_classifier or not isinstance(sd, dict):
            return sd
        return {k: v for k, v in sd.items()
                if not (isinstance(k, str) and k.removeprefix("module.").startswith(CLASSIFIER_PREFIX))}

    load_into(model, path, extractor=extract, drop_prefixes=(CLASSIFIER_PREFIX,))
