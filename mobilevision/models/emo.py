"""EMO: "Rethinking Mobile Block for Efficient Attention-based Models" (ICCV 2023).

An ImageNet classifier built only from inverted residual mobile blocks (iRMB). Layer for
layer as the official zhangzjn/EMO model, with the official state-dict key names, so its
checkpoints load strictly. The window attention keeps the official strided-grid windows but
uses at most 5-D reshapes/permutes (no einops), which every exporter understands.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsError
from ..registry import ModelCard, register_model

PAPER = "EMO: Rethinking Mobile Block for Efficient Attention-based Models (ICCV 2023)"
WINDOW = 7  # attention window side, in tokens, in every stage


@dataclass(frozen=True)
class EMOConfig:
    """One EMO variant; stages 1-2 use BN + SiLU + 3x3 DW, stages 3-4 LN + GELU + 5x5 DW + attention."""

    depths: tuple[int, int, int, int]
    dims: tuple[int, int, int, int]           # output channels of stages 1-4
    exp_ratios: tuple[float, float, float, float]
    dim_heads: tuple[int, int]                # channels per head in stages 3 and 4
    drop_path: float                          # stochastic-depth rate of the last block
    stem_dim: int = 24


CONFIGS = {
    "emo_1m": EMOConfig((2, 2, 8, 3), (32, 48, 80, 168), (2.0, 2.5, 3.0, 3.5), (20, 21), 0.04036),
    "emo_2m": EMOConfig((3, 3, 9, 3), (32, 48, 120, 200), (2.0, 2.5, 3.0, 3.5), (20, 20), 0.05),
    "emo_5m": EMOConfig((3, 3, 9, 3), (48, 72, 160, 288), (2.0, 3.0, 4.0, 4.0), (32, 32), 0.05),
    "emo_6m": EMOConfig((3, 3, 9, 3), (48, 72, 160, 320), (2.0, 3.0, 4.0, 5.0), (20, 32), 0.05),
}


class DropPath(nn.Module):
    """Per-sample stochastic depth: drop the residual branch with probability p, scale kept by 1/(1-p)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * (mask / keep if keep > 0.0 else mask)


class ConvNormAct(nn.Module):
    """conv -> optional BN(eps 1e-6) -> optional activation; padding ceil((k - stride) / 2)."""

    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, bias: bool = False,
                 norm: bool = False, act: type[nn.Module] | None = None):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, math.ceil((k - stride) / 2), groups=groups, bias=bias)
        self.norm = nn.BatchNorm2d(cout, eps=1e-6) if norm else nn.Identity()
        self.act = act() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class LayerNorm2d(nn.Module):
    """LayerNorm over channels at each pixel (NCHW in, NCHW out), eps 1e-6."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SqueezeExcite(nn.Module):
    """timm SqueezeExcite with rd_ratio 1 and SiLU (stem block only)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, channels, 1)
        self.act = nn.SiLU()
        self.conv_expand = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.conv_expand(self.act(self.conv_reduce(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(s)


class PatchEmbed(nn.Module):
    """The stem's MSPatchEmb with its single branch: conv 3x3/2 with bias, then BN (no activation)."""

    def __init__(self, cout: int):
        super().__init__()
        self.convs = nn.ModuleList([nn.Sequential(nn.Conv2d(3, cout, 3, 2, 1), nn.BatchNorm2d(cout, eps=1e-6))])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs[0](x)


def window_partition(x: torch.Tensor, n1: int, n2: int) -> torch.Tensor:
    """(B, C, 7*n1, 7*n2) -> (B*n1*n2, C, 7, 7); window (i, j) holds pixels (a*n1 + i, b*n2 + j)."""
    b, c, _, wp = x.shape
    x = x.reshape(b, c, WINDOW, n1, wp).permute(0, 3, 1, 2, 4)          # B, n1, C, 7, Wp
    x = x.reshape(b * n1, c * WINDOW, WINDOW, n2).permute(0, 3, 1, 2)   # B*n1, n2, C*7, 7
    return x.reshape(b * n1 * n2, c, WINDOW, WINDOW)


def window_merge(x: torch.Tensor, b: int, n1: int, n2: int) -> torch.Tensor:
    """Inverse of window_partition: (B*n1*n2, C, 7, 7) -> (B, C, 7*n1, 7*n2)."""
    c = x.shape[1]
    wp = WINDOW * n2
    x = x.reshape(b * n1, n2, c * WINDOW, WINDOW).permute(0, 2, 3, 1)   # B*n1, C*7, 7, n2
    x = x.reshape(b, n1, c, WINDOW, wp).permute(0, 2, 3, 1, 4)          # B, C, 7, n1, Wp
    return x.reshape(b, c, WINDOW * n1, wp)


def window_partition_last(x: torch.Tensor, n1: int, n2: int) -> torch.Tensor:
    """Channels-last window_partition: (B, 7*n1, 7*n2, C) -> (B*n1*n2, 49, C), the same windows and token order."""
    b, _, wp, c = x.shape
    if not torch.jit.is_tracing() and n1 == 1 and n2 == 1:   # traced sizes are tensors: the general path
        return x.reshape(b, WINDOW * WINDOW, c)
    x = x.reshape(b, WINDOW, n1, wp * c).permute(0, 2, 1, 3)                    # B, n1, 7, Wp*C
    x = x.reshape(b * n1, WINDOW * WINDOW, n2, c).permute(0, 2, 1, 3)           # B*n1, n2, 49, C
    return x.reshape(b * n1 * n2, WINDOW * WINDOW, c)


def window_merge_last(x: torch.Tensor, b: int, n1: int, n2: int) -> torch.Tensor:
    """Inverse of window_partition_last: (B*n1*n2, 49, C) -> (B, 7*n1, 7*n2, C)."""
    c = x.shape[-1]
    if not torch.jit.is_tracing() and n1 == 1 and n2 == 1:   # traced sizes are tensors: the general path
        return x.reshape(b, WINDOW, WINDOW, c)
    x = x.reshape(b * n1, n2, WINDOW * WINDOW, c).permute(0, 2, 1, 3)           # B*n1, 49, n2, C
    x = x.reshape(b, n1, WINDOW, WINDOW * n2 * c).permute(0, 2, 1, 3)           # B, 7, n1, Wp*C
    return x.reshape(b, WINDOW * n1, WINDOW * n2, c)


class IRMB(nn.Module):
    """Inverted residual mobile block: norm -> (window attention | 1x1 expand) -> DW conv -> 1x1 project."""

    def __init__(self, cin: int, cout: int, mid: int, stride: int = 1, norm: str = "bn", act: type[nn.Module] = nn.SiLU,
                 kernel: int = 3, dim_head: int = 0, drop_path: float = 0.0, stem: bool = False):
        super().__init__()
        self.norm = nn.Identity() if stem else (LayerNorm2d(cin) if norm == "ln" else nn.BatchNorm2d(cin, eps=1e-6))
        self.dim_head = dim_head
        self.qk = ConvNormAct(cin, 2 * cin, bias=True) if dim_head else None
        self.v = nn.Identity() if stem else ConvNormAct(cin, mid, bias=True, act=act)
        self.conv_local = ConvNormAct(mid, mid, kernel, stride, groups=mid, norm=True, act=nn.SiLU)
        self.se = SqueezeExcite(mid) if stem else nn.Identity()
        self.proj = ConvNormAct(mid, cout)
        self.has_skip = cin == cout and stride == 1 and not stem
        self.drop_path = DropPath(drop_path)
        # The attention blocks compute channels-last (see attention_last); False: the official code's NCHW
        # op order (attention), for comparing the two through the same converters.
        self.channels_last = True

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Multi-head self-attention inside strided-grid 7x7 windows; values are the normed input."""
        b, c, h, w = x.shape
        pad_b, pad_r = (WINDOW - h % WINDOW) % WINDOW, (WINDOW - w % WINDOW) % WINDOW
        # Static shapes: torch.export drops a no-op Pad; jit.trace (sizes are traced) always pads.
        padded = torch.jit.is_tracing() or pad_b > 0 or pad_r > 0
        if padded:
            x = F.pad(x, (0, pad_r, 0, pad_b))     # zeros after the norm, not masked (as official)
        n1, n2 = (h + pad_b) // WINDOW, (w + pad_r) // WINDOW
        xw = window_partition(x, n1, n2)
        bw, heads, d, tokens = xw.shape[0], c // self.dim_head, self.dim_head, WINDOW * WINDOW
        qk = self.qk(xw).reshape(bw, 2, heads, d, tokens).permute(1, 0, 2, 4, 3)   # 2, b', h, L, d
        attn = torch.softmax((qk[0] @ qk[1].transpose(-2, -1)) * d ** -0.5, dim=-1)
        v = xw.reshape(bw, heads, d, tokens).transpose(-1, -2)                     # b', h, L, d
        out = (attn @ v).transpose(-1, -2).reshape(bw, c, WINDOW, WINDOW)
        out = window_merge(self.v(out), b, n1, n2)                                 # expand after attention
        return out[:, :, :h, :w] if padded else out

    def attention_last(self, x: torch.Tensor) -> torch.Tensor:
        """norm + attention + value projection as ``attention(self.norm(x))``, computed channels-last.

        The same arithmetic on the same weights (1x1 convs as linear layers on the channel axis), but the
        tokens keep their channels innermost from the LayerNorm to the value projection: an exported graph
        needs no NCHW <-> NHWC transposes around the window split, the 1x1 convs and the merge (TFLite keeps
        tensors NHWC; a 7x7 map is one window and needs no split at all), only the head split of q, k, v."""
        b, c, h, w = x.shape
        x = self.norm.norm(x.permute(0, 2, 3, 1))                                   # B, H, W, C
        pad_b, pad_r = (WINDOW - h % WINDOW) % WINDOW, (WINDOW - w % WINDOW) % WINDOW
        padded = torch.jit.is_tracing() or pad_b > 0 or pad_r > 0
        if padded:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        n1, n2 = (h + pad_b) // WINDOW, (w + pad_r) // WINDOW
        xw = window_partition_last(x, n1, n2)                                       # b', L, C
        bw, heads, d, tokens = xw.shape[0], c // self.dim_head, self.dim_head, WINDOW * WINDOW
        qk = F.linear(xw, self.qk.conv.weight.flatten(1), self.qk.conv.bias)         # b', L, 2C: (q|k, head, d)
        qk = qk.reshape(bw, tokens, 2, heads, d).permute(2, 0, 3, 1, 4)             # 2, b', h, L, d
        attn = torch.softmax((qk[0] @ qk[1].transpose(-2, -1)) * d ** -0.5, dim=-1)
        v = xw.reshape(bw, tokens, heads, d).transpose(1, 2)                        # b', h, L, d
        out = (attn @ v).transpose(1, 2).reshape(bw, tokens, c)
        out = self.v.act(F.linear(out, self.v.conv.weight.flatten(1), self.v.conv.bias))
        out = window_merge_last(out, b, n1, n2)                                     # B, Hp, Wp, mid
        if padded:
            out = out[:, :h, :w]
        return out.permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        if self.qk is not None and self.channels_last:
            x = self.attention_last(x)
        else:
            x = self.norm(x)
            x = self.attention(x) if self.qk is not None else self.v(x)
        y = self.conv_local(x)
        x = x + y if self.has_skip else y
        x = self.proj(self.se(x))
        return shortcut + self.drop_path(x) if self.has_skip else x


class EMO(nn.Module):
    """EMO classifier: stem, four iRMB stages (strides 4/8/16/32), LayerNorm, average pool, linear head."""

    pyramid_strides = (4, 8, 16, 32)

    def __init__(self, cfg: EMOConfig, num_classes: int = 1000, drop_path_rate: float | None = None):
        super().__init__()
        self.cfg = cfg
        self.stage0 = nn.ModuleList([PatchEmbed(cfg.stem_dim),
                                     IRMB(cfg.stem_dim, cfg.stem_dim, cfg.stem_dim, stem=True)])
        rate = cfg.drop_path if drop_path_rate is None else drop_path_rate
        rates = iter(torch.linspace(0, rate, sum(cfg.depths)).tolist())  # ds blocks take (and ignore) one
        cin = cfg.stem_dim
        for s in range(4):
            attn_stage = s >= 2
            blocks = []
            for j in range(cfg.depths[s]):
                first = j == 0
                c_in = cin if first else cfg.dims[s]
                mid = int(c_in * (cfg.exp_ratios[s] * 2 if first else cfg.exp_ratios[s]))  # ds: 2x ratio
                blocks.append(IRMB(c_in, cfg.dims[s], mid, stride=2 if first else 1,
                                   norm="ln" if attn_stage else "bn", act=nn.GELU if attn_stage else nn.SiLU,
                                   kernel=5 if attn_stage else 3,
                                   dim_head=cfg.dim_heads[s - 2] if attn_stage and not first else 0,
                                   drop_path=next(rates)))
            setattr(self, f"stage{s + 1}", nn.ModuleList(blocks))
            cin = cfg.dims[s]
        self.norm = LayerNorm2d(cin)
        self.head = nn.Linear(cin, num_classes)
        self.num_features = cin
        self.pyramid_channels = cfg.dims
        self.apply(_init_weights)

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of stages 1-4 (strides 4, 8, 16, 32; channels ``cfg.dims``) for dense tasks."""
        for block in self.stage0:
            x = block(x)
        features = []
        for stage in (self.stage1, self.stage2, self.stage3, self.stage4):
            for block in stage:
                x = block(x)
            features.append(x)
        return features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map (stage 4, before the head norm): B x C x H/32 x W/32."""
        return self.forward_pyramid(x)[-1]

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Head norm, global average pool, linear classifier: B x C x h x w -> B x num_classes logits."""
        return self.head(self.norm.norm(features.permute(0, 2, 3, 1)).mean((1, 2)))   # LayerNorm2d, channels-last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _init_weights(m: nn.Module) -> None:
    """Official init: Linear trunc-normal std 0.02 (cut at +-2), norms 1/0, convs PyTorch default."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02, a=-2.0, b=2.0)
        nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def _extract_emo_state_dict(obj: Any, key: str | None = None, path: Any = None) -> Any:
    """Official loader rule: a trainer dict holding 'net'/'net_E' gives obj[key or 'net'];
    anything else (net.pth / net_E.pth, a plain state dict) is returned unchanged."""
    where = f"{path}: " if path is not None else ""
    if key is not None and key not in ("net", "net_E"):
        raise WeightsError(f"{where}EMO checkpoint key must be 'net' or 'net_E', got {key!r}")
    if isinstance(obj, dict) and ("net" in obj or "net_E" in obj):
        key = key or "net"
        if obj.get(key) is None:
            if key == "net_E":
                raise WeightsError(f"{where}checkpoint has no EMA weights (net_E is None); use key 'net'")
            raise WeightsError(f"{where}checkpoint has no 'net' weights; use key 'net_E'")
        return obj[key]
    return obj


def _card(name: str, params_m: float, macs_m: int, top1: float) -> ModelCard:
    return ModelCard(name=name, task="classify", input_size=(3, 224, 224), family="emo", paper=PAPER,
                     description=f"EMO-{name[4:].upper()}: {params_m}M params, {macs_m}M MACs at 224, "
                                 f"{top1}% ImageNet-1k top-1 (paper)")


@register_model(_card("emo_1m", 1.36, 261, 71.5), checkpoint_extractor=_extract_emo_state_dict)
def emo_1m(num_classes: int = 1000, **kwargs: Any) -> EMO:
    """EMO-1M; kwargs: drop_path_rate (default 0.04036)."""
    return EMO(CONFIGS["emo_1m"], num_classes=num_classes, **kwargs)


@register_model(_card("emo_2m", 2.38, 439, 75.1), checkpoint_extractor=_extract_emo_state_dict)
def emo_2m(num_classes: int = 1000, **kwargs: Any) -> EMO:
    """EMO-2M; kwargs: drop_path_rate (default 0.05)."""
    return EMO(CONFIGS["emo_2m"], num_classes=num_classes, **kwargs)


@register_model(_card("emo_5m", 5.11, 903, 78.4), checkpoint_extractor=_extract_emo_state_dict)
def emo_5m(num_classes: int = 1000, **kwargs: Any) -> EMO:
    """EMO-5M; kwargs: drop_path_rate (default 0.05)."""
    return EMO(CONFIGS["emo_5m"], num_classes=num_classes, **kwargs)


@register_model(_card("emo_6m", 6.17, 961, 79.0), checkpoint_extractor=_extract_emo_state_dict)
def emo_6m(num_classes: int = 1000, **kwargs: Any) -> EMO:
    """EMO-6M; kwargs: drop_path_rate (default 0.05)."""
    return EMO(CONFIGS["emo_6m"], num_classes=num_classes, **kwargs)
