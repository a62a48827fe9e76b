"""Wide ResNet-50-2 / -101-2: bottleneck ResNets with doubled bottleneck width.

Architecture from "Deep Residual Learning for Image Recognition" (He et al., CVPR 2016) with the
wide variant of "Wide Residual Networks" (Zagoruyko & Komodakis, BMVC 2016) as torchvision defines
it: every bottleneck's inner width is 2 x planes (torchvision's ``width_per_group=128``), the
expansion stays 4, and the stride sits on the 3x3 convolution ("ResNet V1.5"). Module and state-dict
key names are torchvision's (``conv1``, ``bn1``, ``layer{1..4}.{i}.conv{1,2,3}`` / ``bn{1,2,3}`` /
``downsample.{0,1}``, ``fc``), so torchvision's plain state-dict files such as
``wide_resnet101_2-32ee1156.pth`` load strictly through ``create_model(name, weights=PATH)``.

EfficientAD distils wide_resnet101_2's layer2 + layer3 features into its PDN teacher
(see :mod:`mobilevision.models.patch_target`); :meth:`ResNet.intermediate` serves that.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..checkpoints import extract_torchvision_state_dict
from ..registry import ModelCard, register_model

PAPER = ("Wide Residual Networks (BMVC 2016); Deep Residual Learning for Image Recognition (CVPR 2016), "
         "torchvision's V1.5 layout")
STAGES = ("layer1", "layer2", "layer3", "layer4")
STEM_CHANNELS = 64
EXPANSION = 4  # a bottleneck's output has 4 x planes channels


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (stride here, V1.5) -> 1x1 expand, BN after each, ReLU, identity or projected shortcut."""

    def __init__(self, in_channels: int, planes: int, stride: int = 1, width_per_group: int = 64):
        super().__init__()
        width = planes * width_per_group // 64
        out = planes * EXPANSION
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + shortcut)


class ResNet(nn.Module):
    """Bottleneck ResNet: 7x7/2 stem + 3x3/2 max pool, four stages (strides 1, 2, 2, 2), global pool, fc."""

    def __init__(self, depths: Sequence[int], num_classes: int = 1000, width_per_group: int = 64,
                 zero_init_residual: bool = False):
        super().__init__()
        if len(depths) != len(STAGES):
            raise ValueError(f"a ResNet has {len(STAGES)} stages, got depths {tuple(depths)}")
        self.conv1 = nn.Conv2d(3, STEM_CHANNELS, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM_CHANNELS)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = STEM_CHANNELS
        for i, (name, depth) in enumerate(zip(STAGES, depths)):
            planes = STEM_CHANNELS * 2 ** i
            blocks = []
            for j in range(depth):
                blocks.append(Bottleneck(channels, planes, stride=2 if (i > 0 and j == 0) else 1,
                                         width_per_group=width_per_group))
                channels = planes * EXPANSION
            setattr(self, name, nn.Sequential(*blocks))
        self.num_features = channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        """torchvision's init: Kaiming-normal (fan_out) convs, unit BN; optionally zero each block's last BN."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """conv1 -> bn1 -> ReLU -> max pool: stride 4, 64 channels."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def intermediate(self, x: torch.Tensor, layers: Sequence[str] = ("layer2", "layer3")) -> dict[str, torch.Tensor]:
        """Outputs of the named stages (``layer1``..``layer4``), running the network only as far as the deepest one."""
        unknown = [n for n in layers if n not in STAGES]
        if unknown or not layers:
            raise ValueError(f"intermediate layers must be among {', '.join(STAGES)}, got {tuple(layers)}")
        last = max(STAGES.index(n) for n in layers)
        found: dict[str, torch.Tensor] = {}
        x = self.stem(x)
        for name in STAGES[:last + 1]:
            x = getattr(self, name)(x)
            if name in layers:
                found[name] = x
        return {n: found[n] for n in layers}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The final feature map: layer4's output, (B, 2048, H/32, W/32)."""
        x = self.stem(x)
        for name in STAGES:
            x = getattr(self, name)(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool and fc on a feature map; ``pre_logits`` stops before fc."""
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ---------------------------------------------------------------------------------------------- loading

extract_resnet_state_dict = extract_torchvision_state_dict   # torchvision ResNet files: plain state dicts


# ---------------------------------------------------------------------------------------------- zoo

DEPTHS: dict[str, tuple[int, int, int, int]] = {"wide_resnet50_2": (3, 4, 6, 3), "wide_resnet101_2": (3, 4, 23, 3)}
WIDE_WIDTH_PER_GROUP = 128  # bottleneck width = 2 x planes

# Measured at 224 by mobilevision.complexity (tests/models/test_wide_resnet.py keeps these honest): params,
# and MACs in fvcore's convention (conv + fc + inference BN + pooling; conv + fc alone: 11.40 G / 22.75 G).
MEASURED: dict[str, tuple[int, int]] = {
    "wide_resnet50_2": (68_883_240, 11_426_922_496),
    "wide_resnet101_2": (126_886_696, 22_795_599_872),
}


def _card(name: str, what: str) -> ModelCard:
    params, macs = MEASURED[name]
    return ModelCard(name=name, task="classify", input_size=(3, 224, 224), family="wide_resnet", paper=PAPER,
                     interpolation="bilinear", crop_pct=0.875, classifier_prefixes=("fc.",),
                     description=(f"{what}; {params / 1e6:.2f}M params, {macs / 1e9:.2f}G MACs at 224; "
                                  "torchvision state-dict files load strictly"))


@register_model(_card("wide_resnet50_2", "Wide ResNet-50-2 (bottleneck width x2, V1.5 strides)"),
                checkpoint_extractor=extract_resnet_state_dict)
def wide_resnet50_2(num_classes: int = 1000, **kwargs: Any) -> ResNet:
    """Wide ResNet-50-2, torchvision layout; kwargs: zero_init_residual."""
    return ResNet(DEPTHS["wide_resnet50_2"], num_classes=num_classes, width_per_group=WIDE_WIDTH_PER_GROUP, **kwargs)


@register_model(_card("wide_resnet101_2", "Wide ResNet-101-2 (bottleneck width x2, V1.5 strides), "
                                          "EfficientAD's distillation target (layer2 + layer3 at 512)"),
                checkpoint_extractor=extract_resnet_state_dict)
def wide_resnet101_2(num_classes: int = 1000, **kwargs: Any) -> ResNet:
    """Wide ResNet-101-2, torchvision layout; kwargs: zero_init_residual."""
    return ResNet(DEPTHS["wide_resnet101_2"], num_classes=num_classes, width_per_group=WIDE_WIDTH_PER_GROUP, **kwargs)
