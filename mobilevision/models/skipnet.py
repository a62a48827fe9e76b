"""SkipNet (official name SkipblockNet): "Bias Loss for Mobile Neural Networks" (ICCV 2021).

A MobileNetV3-Large-like classifier with two *skip blocks*: the 16-channel output of the
base block (stride 2) is average-pooled down to the stride-8 and stride-16 resolutions,
run through a small inverted residual, and added to the main path before stages 1 and 2.
Layer for layer as lusinlu/bias-loss-skipblocknet ``skipblocknet(mode='large')``, with its
state-dict key names, so the official ``skipblocknet-m.pth`` (a plain state dict) loads strictly.

Extensions of this project (the official model runs only at width 1.0/0.75 and 224x224):
- the skip blocks take the base block's actual output width (official: hard-coded 16, which
  breaks widths 0.5 and 1.25), so every width multiplier builds;
- the skip blocks pool to the main path's resolution (H/8 and H/16 for inputs divisible by 32;
  official: hard-coded 28 and 14), so 192, 256, ... run; other sizes fall back to adaptive pooling
  (eager PyTorch; converters may refuse it). At 224 the logits are bit-identical to the official model.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import ModelCard, register_model

PAPER = "Bias Loss for Mobile Neural Networks (ICCV 2021)"

# kernel, expansion t, output channels, SE, h_swish, stride; one tuple per stage ("blocks.{g}").
STAGES: tuple[tuple[tuple[int, float, int, bool, bool, int], ...], ...] = (
    ((3, 4, 24, False, False, 2), (3, 3, 24, False, False, 1), (5, 3, 40, True, False, 2),
     (5, 3, 40, True, False, 1), (5, 6, 40, True, True, 1)),
    ((3, 6, 80, False, True, 2), (3, 2.5, 80, False, True, 1), (3, 2.3, 80, False, True, 1),
     (3, 2.3, 80, False, True, 1)),
    ((3, 6, 112, True, True, 1), (3, 6, 112, True, True, 1)),
    ((5, 6, 160, True, True, 2), (5, 6, 160, True, True, 1), (5, 6, 160, True, True, 1)),
)
# expansion t, output channels, kernel of skip1 (added before blocks.1) and skip2 (before blocks.2).
SKIPS: tuple[tuple[float, int, int], ...] = ((6, 40, 5), (2.3, 80, 3))
STEM_CHANNELS = 16
HEAD_WIDTH = 1280  # classifier hidden width ('large' mode); scaled only when width > 1


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` (at least ``divisor``), never more than 10 % down."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class HSigmoid(nn.Module):
    """ReLU6(x + 3) / 6, computed as the official code does (bit-identical logits)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.0) / 6.0


class HSwish(nn.Module):
    """x * ReLU6(x + 3) / 6."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (F.relu6(x + 3.0) / 6.0)


class SqueezeExcite(nn.Module):
    """Global average pool -> Linear(C, r) -> ReLU -> Linear(r, C) -> h_sigmoid -> scale; r = make_divisible(C // 4)."""

    def __init__(self, channels: int):
        super().__init__()
        reduced = make_divisible(channels // 4, 8)
        self.fc = nn.Sequential(nn.Linear(channels, reduced), nn.ReLU(inplace=True),
                                nn.Linear(reduced, channels), HSigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))
        return x * s[:, :, None, None]


class InvertedResidual(nn.Module):
    """``conv``: 1x1 expand, BN, act, kxk depthwise (stride s), BN, act, SE | Identity, 1x1 project, BN.

    The activation is h_swish or ReLU; a residual is added when stride 1 and in == out channels.
    """

    def __init__(self, cin: int, hidden: int, cout: int, kernel: int, stride: int, se: bool, hswish: bool):
        super().__init__()
        act = HSwish if hswish else (lambda: nn.ReLU(inplace=True))
        self.has_residual = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, 1, 0, bias=False), nn.BatchNorm2d(hidden), act(),
            nn.Conv2d(hidden, hidden, kernel, stride, (kernel - 1) // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), act(),
            SqueezeExcite(hidden) if se else nn.Identity(),
            nn.Conv2d(hidden, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.has_residual else self.conv(x)


class SkipBlock(nn.Module):
    """Average-pool the input to ``size``, then ``core_block``: 1x1 expand, BN, ReLU, kxk depthwise, BN, ReLU,
    1x1 project, BN (no SE, always ReLU, stride 1)."""

    def __init__(self, cin: int, hidden: int, cout: int, kernel: int):
        super().__init__()
        self.has_residual = cin == cout   # never true in SkipNet's two blocks; kept as the official rule
        self.core_block = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, 1, 0, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, kernel, 1, (kernel - 1) // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = pool_to(x, size)
        return x + self.core_block(x) if self.has_residual else self.core_block(x)


def pool_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Average-pool (B, C, H, W) to ``size`` (static Python ints at export time).

    When H and W are multiples of ``size`` (every input divisible by 32) this is an avg_pool2d
    with kernel = stride = H / size, which every converter maps to a plain AveragePool and which
    is bit-identical to the official adaptive_avg_pool2d; otherwise adaptive_avg_pool2d (eager only).
    Under torch.jit.trace (the Core ML path) sizes are traced values, not ints: adaptive_avg_pool2d
    records them without Python conversions, and Core ML lowers it to the same average pool.
    """
    if torch.jit.is_tracing():
        return F.adaptive_avg_pool2d(x, size)
    h, w = int(x.shape[-2]), int(x.shape[-1])
    oh, ow = int(size[0]), int(size[1])
    if h % oh == 0 and w % ow == 0:
        if (h, w) == (oh, ow):
            return x
        return F.avg_pool2d(x, (h // oh, w // ow))
    return F.adaptive_avg_pool2d(x, (oh, ow))


class SkipNet(nn.Module):
    """SkipNet classifier: stem and base block (stride 2), four stages ``blocks`` (output strides 8, 16, 16,
    32) with skip blocks from the base block added before stages 1 and 2, 1x1 conv ``conv`` to 6x the
    last width, average pool, two-layer classifier.

    ``width`` multiplies every channel count (official rule, see module docstring for the skip-block fix).
    """

    def __init__(self, width: float = 1.0, num_classes: int = 1000, drop_rate: float = 0.2):
        super().__init__()
        self.width = width
        c0 = make_divisible(STEM_CHANNELS * width, 8)
        self.first_layer = nn.Sequential(nn.Conv2d(3, c0, 3, 2, 1, bias=False), nn.BatchNorm2d(c0), HSwish())
        self.base_block = InvertedResidual(c0, c0, c0, 3, 1, se=False, hswish=True)
        self.blocks = nn.ModuleList()
        cin, hidden = c0, c0
        for stage in STAGES:
            layers = []
            for k, t, c, se, hs, s in stage:
                cout, hidden = make_divisible(c * width, 8), make_divisible(cin * t, 8)
                layers.append(InvertedResidual(cin, hidden, cout, k, s, se, hs))
                cin = cout
            self.blocks.append(nn.Sequential(*layers))
        (t1, c1, k1), (t2, c2, k2) = SKIPS
        self.skip1 = SkipBlock(c0, make_divisible(c0 * t1, 8), make_divisible(c1 * width, 8), k1)
        self.skip2 = SkipBlock(c0, make_divisible(c0 * t2, 8), make_divisible(c2 * width, 8), k2)
        self.num_features = hidden  # the last block's expanded width (960 at width 1)
        self.conv = nn.Sequential(nn.Conv2d(cin, hidden, 1, 1, 0, bias=False), nn.BatchNorm2d(hidden), HSwish())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        head = make_divisible(HEAD_WIDTH * width, 8) if width > 1.0 else HEAD_WIDTH
        self.classifier = nn.Sequential(nn.Linear(hidden, head), HSwish(), nn.Dropout(drop_rate),
                                        nn.Linear(head, num_classes))
        self.apply(_init_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The ``conv`` output (1x1 conv + BN + h_swish) that Bias Loss measures: B x 960 x H/32 x W/32 at width 1."""
        x_base = self.base_block(self.first_layer(x))
        x = self.blocks[0](x_base)
        x = self.blocks[1](x + self.skip1(x_base, x.shape[-2:]))
        x = self.blocks[2](x + self.skip2(x_base, x.shape[-2:]))
        return self.conv(self.blocks[3](x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Global average pool, flatten, Linear + h_swish + Dropout + Linear: -> B x num_classes logits."""
        return self.classifier(self.avgpool(features).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@torch.no_grad()
def _init_weights(m: nn.Module) -> None:
    """Official init: conv N(0, sqrt(2 / (kh * kw * out_channels))), BN 1/0, Linear N(0, 0.01) with bias 0."""
    if isinstance(m, nn.Conv2d):
        m.weight.normal_(0.0, (2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)) ** 0.5)
        if m.bias is not None:
            m.bias.zero_()
    elif isinstance(m, nn.BatchNorm2d):
        m.weight.fill_(1.0)
        m.bias.zero_()
    elif isinstance(m, nn.Linear):
        m.weight.normal_(0.0, 0.01)
        m.bias.zero_()


# Measured at 224 (tests/models/test_skipnet.py keeps these honest): params, and MACs counted by
# mobilevision.complexity in fvcore's convention (conv + linear + BN + pooling), which is how the
# paper's 247.8 M for SkipNet-M was counted (conv + linear alone: 236.6 M).
MEASURED: dict[str, tuple[int, int]] = {
    "skipnet_050": (2_707_816, 82_694_208),
    "skipnet_075": (4_027_992, 180_771_808),
    "skipnet_m": (5_532_352, 247_765_824),
    "skipnet_125": (8_327_792, 404_452_544),
}


def _card(name: str, width: float) -> ModelCard:
    params, macs = MEASURED[name]
    if name == "skipnet_m":
        what = ("SkipNet-M (SkipblockNet-M), the paper's released model, 76.2% ImageNet-1k top-1 (paper); "
                "the official skipblocknet-m.pth loads strictly")
    else:
        what = (f"SkipNet width {width}: this project's member of the family (official width multiplier, "
                "skip-block input width fixed); the paper's other variants are unpublished, no official weights")
    return ModelCard(name=name, task="classify", input_size=(3, 224, 224), family="skipnet", paper=PAPER,
                     interpolation="bilinear", crop_pct=0.875, classifier_prefixes=("classifier.3.",),
                     description=f"{what}; {params / 1e6:.2f}M params, {macs / 1e6:.1f}M MACs at 224")


@register_model(_card("skipnet_050", 0.5))
def skipnet_050(num_classes: int = 1000, **kwargs: Any) -> SkipNet:
    """SkipNet width 0.5 (this project's family member); kwargs: drop_rate (default 0.2)."""
    return SkipNet(0.5, num_classes=num_classes, **kwargs)


@register_model(_card("skipnet_075", 0.75))
def skipnet_075(num_classes: int = 1000, **kwargs: Any) -> SkipNet:
    """SkipNet width 0.75 (this project's family member; equals the official width=0.75 build)."""
    return SkipNet(0.75, num_classes=num_classes, **kwargs)


@register_model(_card("skipnet_m", 1.0))
def skipnet_m(num_classes: int = 1000, **kwargs: Any) -> SkipNet:
    """SkipNet-M, the official model; kwargs: drop_rate (default 0.2)."""
    return SkipNet(1.0, num_classes=num_classes, **kwargs)


@register_model(_card("skipnet_125", 1.25))
def skipnet_125(num_classes: int = 1000, **kwargs: Any) -> SkipNet:
    """SkipNet width 1.25 (this project's family member; classifier width 1600)."""
    return SkipNet(1.25, num_classes=num_classes, **kwargs)
