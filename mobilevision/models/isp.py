"""Tiny learned ISPs of Arhire & Timofte, "Learned Lightweight Smartphone ISP with Unpaired Data" (CVPRW 2025).

Spec: /work/shared/specs/isp_unpaired.md §3. Three generators, layer for layer as the official
repository (AndreiiArhire/Learned-Lightweight-Smartphone-ISP-with-Unpaired-Data, ``pretrained/model.py``),
with its attribute names so the released ``.pth`` state dicts load strictly:

- **EfficientISP** (3,060 params): packed RAW (N, 4, h, w) -> conv3x3 4->12 + tanh -> conv3x3 12->12 + ReLU
  -> conv3x3 12->12 + ReLU -> pixel_shuffle(2) -> RGB (N, 3, 2h, 2w).
- **RobustISP** (1,616 params): the same shape with widths 4->16 (tanh) ->4 (ReLU) ->12 (ReLU).
- **RMFA-Net** (tiny: 2 blocks of width 16, 29,223 params): a 3-plane full-resolution split of the mosaic
  -> input convs + tanh -> residual multi-frequency attention blocks -> conv3x3 -> sigmoid.

Packed channel order everywhere in this SDK: (B, G_R, R, G_B), where G_R is the green that shares a row
with red (spec §2.1, PyNET's order). :class:`RawToRGB` is what gets exported: packed RAW in, RGB in
[0, 1] out (clamped, as the reference does at inference); for RMFA-Net it also builds the 3-plane
split inside the graph, so every ISP artifact takes the same packed tensor.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import ModelCard, register_model

PAPER = "Arhire & Timofte, Learned Lightweight Smartphone ISP with Unpaired Data, CVPRW 2025 (arXiv 2505.10420)"
PACKED_ORDER = ("B", "G_R", "R", "G_B")        # packed channel c holds this colour site (spec §2.1)
# Per packed channel, what the released Fujifilm checkpoints were trained on (spec §2.2):
# (x - black_c) / (1023 - black_c), not clipped. RMFA-Net: max(x - 63, 0) / 1023 on every site.
FUJIFILM_BLACK = (62.0, 60.0, 58.0, 61.0)
FUJIFILM_WHITE = 1023.0
RMFA_BLACK = 63.0
RMFA_SCALE = 1023.0


def _conv3x3(cin: int, cout: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, bias=bias)


class ThreeConvISP(nn.Module):
    """EfficientISP / RobustISP: three 3x3 convs (tanh, ReLU, ReLU) and a x2 pixel shuffle (PyTorch CRD
    order). Receptive field 7x7 packed pixels, no normalisation layers: tiled inference with a 3-pixel
    halo is exact. Output is not clamped (ReLU >= 0, may exceed 1)."""

    def __init__(self, widths: tuple[int, int]):
        super().__init__()
        w1, w2 = widths
        self.conv1 = _conv3x3(4, w1)
        self.conv2 = _conv3x3(w1, w2)
        self.conv3 = _conv3x3(w2, 12)

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.conv1(packed))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        return F.pixel_shuffle(x, 2)


class _Texture(nn.Module):
    """1x1 (high frequency) and 3x3 (low frequency) branches, ReLU, concatenated: C -> C."""

    def __init__(self, channels: int):
        super().__init__()
        self.high_freq = nn.Sequential(nn.Conv2d(channels, channels // 2, 1), nn.ReLU())
        self.low_freq = nn.Sequential(_conv3x3(channels, channels // 2), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.high_freq(x), self.low_freq(x)], dim=1)


class _ToneMapping(nn.Module):
    """Reflectance = x - illumination; illumination from a two-level average-pool pyramid:
    up2(x1 + up2(x3)), bilinear x2 (align_corners False), resized to x when sizes differ."""

    def __init__(self, channels: int):
        super().__init__()
        self.level1 = nn.Sequential(nn.AvgPool2d(2, 2), _conv3x3(channels, channels), nn.ReLU())
        self.level2 = nn.Sequential(nn.AvgPool2d(2, 2), _conv3x3(channels, channels), nn.ReLU())
        self.level3 = nn.Sequential(_conv3x3(channels, channels), nn.ReLU())

    @staticmethod
    def _up2(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.level1(x)
        x3 = self.level3(self.level2(x1))
        illumination = self._up2(x1 + self._up2(x3))
        if illumination.shape[-2:] != x.shape[-2:]:
            illumination = F.interpolate(illumination, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return x - illumination


class _ChannelAttention(nn.Module):
    """CBAM channel gate: sigmoid(MLP(global avg) + MLP(global max)) * x; MLP = 1x1 convs C -> C/r -> C, no bias."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = channels // reduction
        self.fc = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.ReLU(),
                                nn.Conv2d(hidden, channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.fc(x.mean(dim=(2, 3), keepdim=True))
        peak = self.fc(x.amax(dim=(2, 3), keepdim=True))
        return torch.sigmoid(avg + peak) * x


class _SpatialAttention(nn.Module):
    """CBAM spatial gate: sigmoid(conv7x7([mean_c x, max_c x])) * x, no bias."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled)) * x


class RMFABlock(nn.Module):
    """Texture + tone-mapping branches, fused by conv3x3 2C -> C + ReLU, channel then spatial attention, + x."""

    def __init__(self, channels: int):
        super().__init__()
        self.texture_module = _Texture(channels)
        self.tone_mapping = _ToneMapping(channels)
        self.fusion = nn.Sequential(_conv3x3(2 * channels, channels), nn.ReLU())
        self.channel_attention = _ChannelAttention(channels)
        self.spatial_attention = _SpatialAttention()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.fusion(torch.cat([self.texture_module(x), self.tone_mapping(x)], dim=1))
        return self.spatial_attention(self.channel_attention(f)) + x


class RMFANet(nn.Module):
    """RMFA-Net on the 3-plane full-resolution split (N, 3, H, W) -> RGB (N, 3, H, W) in (0, 1).
    H and W must be multiples of 4 (the pyramid); global channel attention makes tiling inexact."""

    def __init__(self, num_blocks: int = 2, width: int = 16):
        super().__init__()
        self.input_module = nn.Sequential(_conv3x3(3, width), _conv3x3(width, width), nn.Tanh())
        self.rmfa_blocks = nn.ModuleList(RMFABlock(width) for _ in range(num_blocks))
        self.output_module = nn.Sequential(_conv3x3(width, 3), nn.Sigmoid())

    def forward(self, planes: torch.Tensor) -> torch.Tensor:
        x = self.input_module(planes)
        for block in self.rmfa_blocks:
            x = block(x)
        return self.output_module(x)


def packed_to_planes(packed: torch.Tensor, fill: float = 1.0) -> torch.Tensor:
    """Packed (N, 4, h, w) in (B, G_R, R, G_B) order -> RMFA-Net's 3-plane split (N, 3, 2h, 2w) of an RGGB
    mosaic: R at (0::2, 0::2), G at (0::2, 1::2) and (1::2, 0::2), B at (1::2, 1::2), ``fill`` elsewhere.
    Built from a pixel shuffle (CRD: channel 4k + 2i + j lands at site (i, j) of plane k), so it exports."""
    b, g_r, r, g_b = packed.unbind(dim=1)
    one = torch.full_like(r, fill)
    sites = [r, one, one, one,          # R plane: (0,0) (0,1) (1,0) (1,1)
             one, g_r, g_b, one,        # G plane
             one, one, one, b]          # B plane
    return F.pixel_shuffle(torch.stack(sites, dim=1), 2)


class RawToRGB(nn.Module):
    """The exported ISP graph: packed, normalised RAW (N, 4, h, w) -> clamp(G(x), 0, 1) as (N, 3, 2h, 2w)."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        x = packed_to_planes(packed) if isinstance(self.generator, RMFANet) else packed
        return self.generator(x).clamp(0.0, 1.0)


def extract_isp_state_dict(obj: Any, key: str | None = None, path: Any = None) -> Any:
    """A released generator file is a plain state dict of the bare generator (``conv1.weight``, ...):
    its keys get the ``generator.`` prefix of :class:`RawToRGB`; files saved from RawToRGB pass as they are."""
    if isinstance(obj, dict) and key:
        obj = obj[key]
    if isinstance(obj, dict) and obj and not any(isinstance(k, str) and k.startswith("generator.") for k in obj):
        obj = {f"generator.{k}": v for k, v in obj.items()}
    return obj


# Parameters counted from the definitions above (equal to the released checkpoints, spec §3).
PARAMS = {"efficientisp": 3_060, "robustisp": 1_616, "rmfa_net_tiny": 29_223}


def _card(name: str, what: str, black: tuple[float, ...], white: float, clip: bool) -> ModelCard:
    return ModelCard(
        name=name, task="isp", input_size=(4, 224, 224), family="isp_unpaired", paper=PAPER,
        mean=(0.0, 0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0, 1.0), crop_pct=1.0,
        num_classes=0, labels=None, label_set=None, input_names=("raw",),
        output_names=("rgb",), classifier_prefixes=(), raw_black_level=black, raw_white_level=white,
        raw_clip=clip,
        description=f"{what}; {PARAMS[name]:,} params; packed RAW (4, h, w) in (B, G_R, R, G_B) order -> "
                    "RGB (3, 2h, 2w) in [0, 1]")


@register_model(_card("efficientisp", "EfficientISP (3 convs + pixel shuffle)", FUJIFILM_BLACK, FUJIFILM_WHITE,
                      False), checkpoint_extractor=extract_isp_state_dict)
def efficientisp(num_classes: int = 0, **kwargs: Any) -> RawToRGB:
    return RawToRGB(ThreeConvISP((12, 12), **kwargs))


@register_model(_card("robustisp", "RobustISP (3 convs, 16-4-12, + pixel shuffle)", FUJIFILM_BLACK, FUJIFILM_WHITE,
                      False), checkpoint_extractor=extract_isp_state_dict)
def robustisp(num_classes: int = 0, **kwargs: Any) -> RawToRGB:
    return RawToRGB(ThreeConvISP((16, 4), **kwargs))


@register_model(_card("rmfa_net_tiny", "RMFA-Net tiny (2 blocks, width 16)", (RMFA_BLACK,) * 4,
                      RMFA_BLACK + RMFA_SCALE, True), checkpoint_extractor=extract_isp_state_dict)
def rmfa_net_tiny(num_classes: int = 0, **kwargs: Any) -> RawToRGB:
    return RawToRGB(RMFANet(num_blocks=2, width=16, **kwargs))
