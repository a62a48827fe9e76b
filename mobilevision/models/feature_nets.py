"""Frozen feature networks of the unpaired ISP objective (spec isp_unpaired.md §1), built here (no
torchvision/timm/hub) and loaded from local files only:

- :class:`VGG19Features`: the conv trunk up to ``relu5_4`` (torchvision ``features.{i}`` names). Loads a
  torchvision VGG-19 state dict, or the MatConvNet ``imagenet-vgg-verydeep-19.mat`` with the reference's
  kernel permutation (3, 2, 0, 1) (spec P12).
- :class:`AlexNetFeatures`: the conv trunk (torchvision ``features.{i}``); ``relu1`` = features[1] (64 ch,
  stride 4), ``relu4`` = features[9] (256 ch, stride 16). Loads torchvision AlexNet or a pyiqa/LPIPS
  checkpoint (``net.sliceK.{i}`` keys).
- :class:`ViTB16`: ViT-B/16 at 224 (torchvision ``vit_b_16`` names); returns the final-LayerNorm tokens.
  Loads a torchvision state dict (LayerNorm eps 1e-6) or a Hugging Face ``google/vit-base-patch16-224``
  checkpoint (``model.safetensors`` / ``pytorch_model.bin``; q/k/v concatenated, eps 1e-12).

:func:`load_feature_net` returns the network in eval mode with ``requires_grad`` off (spec P11), and
whether real weights were loaded: with no file the network stays randomly initialised and callers must
say so in their logs and run metadata.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mobilevision.errors import IncompatibleWeights, WeightsError

VGG19_CONVS = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
VGG19_POOLS = (4, 9, 18, 27)
VGG_MAT_MEAN = (123.68, 116.779, 103.939)


class VGG19Features(nn.Module):
    """VGG-19 ``features[0:36]`` (to relu5_4: 512 ch at 1/16). ``input_format`` picks the input
    normalisation of the loaded weights: "torchvision" (ImageNet mean/std on [0, 1]) or "matconvnet"
    (x·255 − the RGB means)."""

    def __init__(self) -> None:
        super().__init__()
        widths = [64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512]
        layers: list[nn.Module] = []
        cin, k = 3, 0
        for i in range(36):
            if i in VGG19_POOLS:
                layers.append(nn.MaxPool2d(2, 2))
            elif i in VGG19_CONVS:
                layers.append(nn.Conv2d(cin, widths[k], 3, padding=1))
                cin, k = widths[k], k + 1
            else:
                layers.append(nn.ReLU())
        self.features = nn.Sequential(*layers)
        self.input_format = "torchvision"
        for m in self.features:  # torchvision's VGG init: random trunks keep O(1) activations to relu5_4
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB -> what the loaded weights expect."""
        if self.input_format == "matconvnet":
            return x * 255.0 - x.new_tensor(VGG_MAT_MEAN).view(1, 3, 1, 1)
        mean = x.new_tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
        std = x.new_tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
        return (x - mean) / std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """relu5_4 of a [0, 1] RGB batch."""
        return self.features(self.normalise(x))


class AlexNetFeatures(nn.Module):
    """AlexNet's conv trunk; forward returns the five LPIPS taps (relu1..relu5), input used as given."""

    TAPS = (1, 4, 7, 9, 11)

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.TAPS:
                taps.append(x)
                if len(taps) == len(self.TAPS):
                    break
        return taps


class _EncoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int, eps: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=eps)
        self.self_attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Dropout(0.0), nn.Linear(mlp, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.self_attention(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class _Encoder(nn.Module):
    def __init__(self, tokens: int, dim: int, depth: int, heads: int, mlp: int, eps: float):
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.zeros(1, tokens, dim).normal_(std=0.02))
        self.layers = nn.Sequential(OrderedDict(  # torchvision's names: layers.encoder_layer_{i}
            (f"encoder_layer_{i}", _EncoderBlock(dim, heads, mlp, eps)) for i in range(depth)))
        self.ln = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(self.layers(x + self.pos_embedding))


class ViTB16(nn.Module):
    """ViT-B/16 (224 px, 768 wide, 12 layers, 12 heads, MLP 3072); forward -> final-LayerNorm tokens
    (N, 197, 768), class token first. ``eps`` 1e-6 (torchvision) or 1e-12 (Hugging Face)."""

    def __init__(self, image_size: int = 224, patch: int = 16, dim: int = 768, depth: int = 12, heads: int = 12,
                 mlp: int = 3072, eps: float = 1e-6):
        super().__init__()
        self.patch, self.image_size = patch, image_size
        self.conv_proj = nn.Conv2d(3, dim, patch, stride=patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.encoder = _Encoder((image_size // patch) ** 2 + 1, dim, depth, heads, mlp, eps)

    def set_eps(self, eps: float) -> None:
        for m in self.modules():
            if isinstance(m, nn.LayerNorm):
                m.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        tokens = self.conv_proj(x).flatten(2).transpose(1, 2)
        return self.encoder(torch.cat([self.class_token.expand(n, -1, -1), tokens], dim=1))


# ---------------------------------------------------------------- weight formats


def _vgg_from_mat(path: Path, model: VGG19Features) -> dict[str, torch.Tensor]:
    from scipy.io import loadmat

    try:
        layers = loadmat(str(path))["layers"][0]
    except Exception as e:  # noqa: BLE001 - scipy raises several types for a bad .mat
        raise WeightsError(f"cannot read {path} as MatConvNet VGG-19 weights: {e}") from e
    sd = {}
    for i in VGG19_CONVS:
        try:
            kernel, bias = layers[i][0][0][0][0]  # the struct's first field: weights = {kernel, bias}
        except (IndexError, ValueError, TypeError) as e:
            raise IncompatibleWeights(f"{path}: layer {i} is not a conv entry of imagenet-vgg-verydeep-19.mat") from e
        sd[f"features.{i}.weight"] = torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous().float()
        sd[f"features.{i}.bias"] = torch.from_numpy(bias).reshape(-1).float()
    return sd


def _alexnet_keys(sd: dict[str, Any]) -> dict[str, Any]:
    """pyiqa/LPIPS ``net.sliceK.{i}.*`` (and ``lin*`` heads, ignored) -> ``features.{i}.*``; torchvision as is."""
    out = {}
    for k, v in sd.items():
        if k.startswith("net.slice"):
            out["features." + k.split(".", 2)[2]] = v
        elif k.startswith("features."):
            out[k] = v
    return out or sd  # nothing recognised: the strict load names the keys that do not fit


# Hugging Face ViT per-layer names: the published checkpoints (transformers < 5) and transformers 5's
HF_LAYER_NAMES = {
    "encoder.layer.{i}.": {"ln_1": "layernorm_before", "ln_2": "layernorm_after", "mlp.0": "intermediate.dense",
                           "mlp.3": "output.dense", "self_attention.out_proj": "attention.output.dense",
                           "q": "attention.attention.query", "k": "attention.attention.key",
                           "v": "attention.attention.value"},
    "layers.{i}.": {"ln_1": "layernorm_before", "ln_2": "layernorm_after", "mlp.0": "mlp.fc1", "mlp.3": "mlp.fc2",
                    "self_attention.out_proj": "attention.o_proj", "q": "attention.q_proj", "k": "attention.k_proj",
                    "v": "attention.v_proj"},
}


def _vit_from_hf(sd: dict[str, Any]) -> dict[str, Any] | None:
    """Hugging Face ViT keys (``vit.`` prefix optional) -> torchvision's; None when ``sd`` is not one."""
    sd = {k[4:] if k.startswith("vit.") else k: v for k, v in sd.items()}
    if "embeddings.cls_token" not in sd:
        return None
    out = {"conv_proj.weight": sd["embeddings.patch_embeddings.projection.weight"],
           "conv_proj.bias": sd["embeddings.patch_embeddings.projection.bias"],
           "class_token": sd["embeddings.cls_token"],
           "encoder.pos_embedding": sd["embeddings.position_embeddings"],
           "encoder.ln.weight": sd["layernorm.weight"], "encoder.ln.bias": sd["layernorm.bias"]}
    pattern, names = next(((p, n) for p, n in HF_LAYER_NAMES.items()
                           if p.format(i=0) + n["ln_1"] + ".weight" in sd), (None, None))
    if pattern is None:
        return out  # no layers recognised: the strict load reports the missing keys
    i = 0
    while pattern.format(i=i) + names["ln_1"] + ".weight" in sd:
        src, dst = pattern.format(i=i), f"encoder.layers.encoder_layer_{i}."
        for ours in ("ln_1", "ln_2", "mlp.0", "mlp.3", "self_attention.out_proj"):
            for p in ("weight", "bias"):
                out[f"{dst}{ours}.{p}"] = sd[f"{src}{names[ours]}.{p}"]
        for p in ("weight", "bias"):
            out[dst + f"self_attention.in_proj_{p}"] = torch.cat([sd[f"{src}{names[q]}.{p}"] for q in "qkv"], dim=0)
        i += 1
    return out


def _vit_tv_keys(sd: dict[str, Any]) -> dict[str, Any]:
    """Older torchvision files name the MLP ``linear_1`` / ``linear_2``; heads are unused."""
    out = {}
    for k, v in sd.items():
        if k.startswith("heads."):
            continue
        out[k.replace("mlp.linear_1.", "mlp.0.").replace("mlp.linear_2.", "mlp.3.")] = v
    return out


FEATURE_NETS = ("vgg19", "alexnet", "vit_b_16")


def load_feature_net(name: str, weights: str | Path | None = None) -> tuple[nn.Module, bool]:
    """(network in eval mode, frozen; True when pretrained weights were loaded from ``weights``)."""
    from mobilevision.checkpoints import load_into

    if name not in FEATURE_NETS:
        raise ValueError(f"unknown feature network {name!r}: one of {', '.join(FEATURE_NETS)}")
    model: nn.Module = {"vgg19": VGG19Features, "alexnet": AlexNetFeatures, "vit_b_16": ViTB16}[name]()
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"{name} weights not found: {path}")
        if name == "vgg19" and path.suffix.lower() == ".mat":
            model.load_state_dict(_vgg_from_mat(path, model))
            model.input_format = "matconvnet"
        elif name == "vgg19":
            load_into(model, path, extractor=lambda obj, **_: {k: v for k, v in obj.items()
                                                                 if k.startswith("features.") and
                                                                 int(k.split(".")[1]) < 36})
        elif name == "alexnet":
            load_into(model, path, extractor=lambda obj, **_: _alexnet_keys(obj))
        else:
            def vit(obj: Any, **_: Any) -> Any:
                hf = _vit_from_hf(obj)
                if hf is not None:
                    model.set_eps(1e-12)
                    return hf
                return _vit_tv_keys(obj)
            load_into(model, path, extractor=vit)
    model.eval().requires_grad_(False)
    return model, weights is not None
