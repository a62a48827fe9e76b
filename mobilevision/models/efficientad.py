"""EfficientAD networks: "EfficientAD: Accurate Visual Anomaly Detection at Millisecond-Level Latencies"
(Batzner, Heckler, König, WACV 2024).

Three networks make one detector: a teacher PDN (patch description network, 384 output channels,
distilled from a WideResNet on ImageNet and then frozen), a student PDN of the same architecture
with 768 channels (0:384 regress the normalised teacher, 384:768 the autoencoder), and an
autoencoder whose decoder resizes to sizes computed from the input size.

Layer for layer as nelson1425/EfficientAD (common.py) and anomalib's efficient_ad/torch_model.py
(spec: shared/specs/efficientad.md). The PDNs are ``nn.Sequential`` with the reference indices as
state-dict keys, so the official teacher files (plain state dicts) load strictly; anomalib's names
(``conv1``...; ``teacher.``/``student.``/``ae.`` in its full-model checkpoints) are converted on load.

The networks take ImageNet-normalised input (the model card's mean/std, as nelson1425's transform);
anomalib normalises inside forward instead, so feed it unnormalised [0, 1] pixels for equal outputs.
``padding=False`` (default, both references at inference) gives 56x56 maps at 256x256; ``padding=True``
(the paper's table, used for teacher pretraining) gives 64x64.
"""
from __future__ import annotations

import functools
import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputMismatch, WeightsError
from ..registry import ModelCard, register_model

PAPER = "EfficientAD: Accurate Visual Anomaly Detection at Millisecond-Level Latencies (WACV 2024)"
TEACHER_CHANNELS = 384
STUDENT_CHANNELS = 2 * TEACHER_CHANNELS
MIN_INPUT = 256  # the autoencoder's 8x8 bottleneck conv needs EncConv-5 >= 8, i.e. H, W >= 256

# One entry per layer of the reference nn.Sequential (spec 1.1, 1.2): ("conv", out, kernel, pad when
# padded) with out None = the network's output channels, ("relu",), ("pool", pad when padded).
# Convolutions have stride 1; pools are 2x2 / stride 2 (count_include_pad, as PyTorch's default).
PDN_LAYERS: dict[str, tuple[tuple[Any, ...], ...]] = {
    "s": (("conv", 128, 4, 3), ("relu",), ("pool", 1),
          ("conv", 256, 4, 3), ("relu",), ("pool", 1),
          ("conv", 256, 3, 1), ("relu",),
          ("conv", None, 4, 0)),
    "m": (("conv", 256, 4, 3), ("relu",), ("pool", 1),
          ("conv", 512, 4, 3), ("relu",), ("pool", 1),
          ("conv", 512, 1, 0), ("relu",),
          ("conv", 512, 3, 1), ("relu",),
          ("conv", None, 4, 0), ("relu",),
          ("conv", None, 1, 0)),
}

# The autoencoder's convolutions (spec 1.4) as (name, out, kernel, stride, padding); None = out_channels.
ENCODER_CONVS = (("enconv1", 32, 4, 2, 1), ("enconv2", 32, 4, 2, 1), ("enconv3", 64, 4, 2, 1),
                 ("enconv4", 64, 4, 2, 1), ("enconv5", 64, 4, 2, 1), ("enconv6", 64, 8, 1, 0))
DECODER_CONVS = tuple((f"deconv{i}", 64, 4, 1, 2) for i in range(1, 7)) + (
    ("deconv7", 64, 3, 1, 1), ("deconv8", None, 3, 1, 1))
# nelson1425's autoencoder nn.Sequential index of each convolution (spec 6).
AE_SEQUENTIAL_INDEX = dict(zip((0, 2, 4, 6, 8, 10, 12, 16, 20, 24, 28, 32, 36, 38),
                               [f"encoder.{c[0]}" for c in ENCODER_CONVS] + [f"decoder.{c[0]}" for c in DECODER_CONVS]))


def pdn_output_size(size: int, padding: bool = False) -> int:
    """Side of a PDN output map for an input side ``size``: ceil(size / 4), minus 8 without padding."""
    return -(-size // 4) - (0 if padding else 8)


class PDN(nn.Sequential):
    """Patch description network (teacher or student): four (S) or six (M) biased convolutions, two
    2x2 average pools, receptive field 33, stride 4; the last convolution has no activation."""

    def __init__(self, size: str = "s", out_channels: int = TEACHER_CHANNELS, padding: bool = False):
        if size not in PDN_LAYERS:
            raise ValueError(f"PDN size must be one of {sorted(PDN_LAYERS)}, got {size!r}")
        layers: list[nn.Module] = []
        cin = 3
        for kind, *args in PDN_LAYERS[size]:
            if kind == "conv":
                out, kernel, pad = args
                cout = out_channels if out is None else out
                layers.append(nn.Conv2d(cin, cout, kernel, stride=1, padding=pad if padding else 0))
                cin = cout
            elif kind == "relu":
                layers.append(nn.ReLU(inplace=True))
            else:
                layers.append(nn.AvgPool2d(2, stride=2, padding=args[0] if padding else 0))
        super().__init__(*layers)
        self.size, self.out_channels, self.padding = size, out_channels, padding

    def conv_indices(self) -> list[int]:
        """Sequential indices of the convolutions, in order (anomalib's conv1, conv2, ...)."""
        return pdn_conv_indices(self.size)


def pdn_conv_indices(size: str) -> list[int]:
    """Sequential indices of a PDN's convolutions: S 0, 3, 6, 8; M 0, 3, 6, 8, 10, 12."""
    return [i for i, layer in enumerate(PDN_LAYERS[size]) if layer[0] == "conv"]


def ae_resize_sizes(height: int, width: int, padding: bool = False) -> list[tuple[int, int]]:
    """Targets of the decoder's seven bilinear resizes for an H x W input (anomalib's rule; at 256:
    3, 8, 15, 32, 63, 127 and 56 (64 padded), the last matching the PDN output)."""
    sizes = [(height // d - o, width // d - o) for d, o in ((64, 1), (32, 0), (16, 1), (8, 0), (4, 1), (2, 1))]
    return sizes + [(pdn_output_size(height, padding), pdn_output_size(width, padding))]


def _convs(specs: tuple[tuple[Any, ...], ...], cin: int, out_channels: int) -> list[tuple[str, nn.Conv2d]]:
    layers = []
    for name, out, kernel, stride, pad in specs:
        cout = out_channels if out is None else out
        layers.append((name, nn.Conv2d(cin, cout, kernel, stride=stride, padding=pad)))
        cin = cout
    return layers


class Encoder(nn.Module):
    """Five 4x4 stride-2 convolutions with ReLU, then an 8x8 convolution to a 64-channel bottleneck (1x1 at 256)."""

    def __init__(self):
        super().__init__()
        for name, conv in _convs(ENCODER_CONVS, 3, 64):
            self.add_module(name, conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, 6):
            x = F.relu(getattr(self, f"enconv{i}")(x))
        return self.enconv6(x)


class Decoder(nn.Module):
    """Six (bilinear resize, 4x4 conv, ReLU, dropout 0.2) steps, a resize to the PDN output size, 3x3 conv
    with ReLU and a 3x3 conv to ``out_channels``."""

    def __init__(self, out_channels: int = TEACHER_CHANNELS, dropout: float = 0.2):
        super().__init__()
        for name, conv in _convs(DECODER_CONVS, 64, out_channels):
            self.add_module(name, conv)
        self.dropout = nn.Dropout(dropout)  # one module: it holds no state, and each call draws a fresh mask

    def forward(self, x: torch.Tensor, sizes: list[tuple[int, int]]) -> torch.Tensor:
        for i, size in enumerate(sizes[:6], start=1):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            x = self.dropout(F.relu(getattr(self, f"deconv{i}")(x)))
        x = F.interpolate(x, size=sizes[6], mode="bilinear", align_corners=False)
        return self.deconv8(F.relu(self.deconv7(x)))


class Autoencoder(nn.Module):
    """EfficientAD autoencoder (the same for S and M): its output has the PDN's map size for every
    input size, so it can be compared with the student's channels 384:768."""

    def __init__(self, out_channels: int = TEACHER_CHANNELS, padding: bool = False, dropout: float = 0.2):
        super().__init__()
        self.padding, self.out_channels = padding, out_channels
        self.encoder = Encoder()
        self.decoder = Decoder(out_channels, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        if h < MIN_INPUT or w < MIN_INPUT:
            raise InputMismatch(f"the EfficientAD autoencoder needs an input of at least {MIN_INPUT}x{MIN_INPUT}, "
                                f"got {h}x{w}")
        return self.decoder(self.encoder(x), ae_resize_sizes(h, w, self.padding))


# ---------------------------------------------------------------------------------------------- loading

_ROLES = ("teacher", "student", "ae")


def extract_efficientad_state_dict(obj: Any, key: str | None = None, path: Any = None, *,
                                   role: str = "teacher", size: str = "s") -> Any:
    """Turn any known EfficientAD weight file into this project's key names.

    Accepts nelson1425's plain state dicts (Sequential indices), anomalib's teacher files (``conv1``...),
    and anomalib full-model state dicts (``teacher.`` / ``student.`` / ``ae.``, optionally under ``model.``
    or a Lightning ``state_dict``): ``key`` picks the sub-network, default ``role``.
    """
    where = f"{path}: " if path is not None else ""
    if key is not None and key not in _ROLES:
        raise WeightsError(f"{where}EfficientAD checkpoint key must be one of {', '.join(_ROLES)}, got {key!r}")
    if not isinstance(obj, dict):
        return obj
    if isinstance(obj.get("state_dict"), dict):  # a Lightning checkpoint
        obj = obj["state_dict"]
    sd = {(k[len("module."):] if isinstance(k, str) and k.startswith("module.") else k): v for k, v in obj.items()}
    if any(str(k).startswith("model.") for k in sd):  # anomalib Lightning module: only the torch model
        sd = {k[len("model."):]: v for k, v in sd.items() if str(k).startswith("model.")}
    want = key or role
    if any(str(k).startswith(tuple(f"{r}." for r in _ROLES)) for k in sd):  # anomalib EfficientAdModel
        sd = {k[len(want) + 1:]: v for k, v in sd.items() if str(k).startswith(f"{want}.")}
        if not sd:
            raise WeightsError(f"{where}the EfficientAD checkpoint has no {want!r} weights")
    elif key is not None and key != role:
        raise WeightsError(f"{where}checkpoint key {key!r} needs a full EfficientAD checkpoint "
                           f"(teacher./student./ae. keys); this one holds a single network")
    if role == "ae":
        rename = {f"{i}.": f"{name}." for i, name in AE_SEQUENTIAL_INDEX.items()}
    else:
        rename = {f"conv{n}.": f"{i}." for n, i in enumerate(pdn_conv_indices(size), start=1)}
    out = {}
    for k, v in sd.items():
        m = re.match(r"^([a-z]*\d+\.)(weight|bias)$", str(k))
        out[rename.get(m.group(1), m.group(1)) + m.group(2) if m else k] = v
    return out


# ---------------------------------------------------------------------------------------------- zoo

# Measured at 256x256 by mobilevision.complexity (tests/models/test_efficientad.py keeps these honest):
# params, MACs unpadded, MACs padded. MACs are conv MACs plus the 2x2 average pools (fvcore's convention);
# the spec's layer-wise conv-only count is 15.31 / 20.24 / 52.03 / 63.28 / 2.39 G unpadded.
MEASURED: dict[str, tuple[int, int, int]] = {
    "pdn_s": (2_694_144, 15_322_842_112, 18_789_696_512),
    "pdn_s_student": (4_267_392, 20_255_343_616, 25_232_147_456),
    "pdn_m": (8_026_624, 52_053_805_056, 63_203_837_952),
    "pdn_m_student": (11_615_488, 63_306_074_112, 77_900_679_168),
    "efficientad_autoencoder": (1_096_320, 2_392_981_504, 2_640_707_584),
}


def _card(name: str, what: str) -> ModelCard:
    params, macs, macs_padded = MEASURED[name]
    return ModelCard(
        name=name, task="anomaly", input_size=(3, 256, 256), family="efficientad", paper=PAPER,
        interpolation="bilinear", crop_pct=1.0, num_classes=0, labels=None, label_set=None,
        output_names=("features",), classifier_prefixes=(),
        description=(f"{what}; {params / 1e6:.2f}M params, {macs / 1e9:.2f}G MACs at 256 "
                     f"({macs_padded / 1e9:.2f}G with padding=True); input ImageNet-normalised, "
                     "references resize to 256x256 without keeping the aspect ratio"))


_S = "EfficientAD-S"
_M = "EfficientAD-M"


@register_model(_card("pdn_s", f"{_S} teacher PDN (384 x 56 x 56 at 256); nelson1425's teacher_small.pth and "
                      "anomalib's pretrained_teacher_small.pth load strictly"),
                checkpoint_extractor=functools.partial(extract_efficientad_state_dict, role="teacher", size="s"))
def pdn_s(num_classes: int = 0, padding: bool = False, **kwargs: Any) -> PDN:
    """EfficientAD-S teacher; ``num_classes`` is ignored (feature network), ``padding`` as the paper's table."""
    return PDN("s", TEACHER_CHANNELS, padding=padding, **kwargs)


@register_model(_card("pdn_s_student", f"{_S} student PDN (768 channels: 0:384 teacher, 384:768 autoencoder)"),
                checkpoint_extractor=functools.partial(extract_efficientad_state_dict, role="student", size="s"))
def pdn_s_student(num_classes: int = 0, padding: bool = False, **kwargs: Any) -> PDN:
    """EfficientAD-S student; ``num_classes`` is ignored."""
    return PDN("s", STUDENT_CHANNELS, padding=padding, **kwargs)


@register_model(_card("pdn_m", f"{_M} teacher PDN (384 x 56 x 56 at 256); nelson1425's teacher_medium.pth and "
                      "anomalib's pretrained_teacher_medium.pth load strictly"),
                checkpoint_extractor=functools.partial(extract_efficientad_state_dict, role="teacher", size="m"))
def pdn_m(num_classes: int = 0, padding: bool = False, **kwargs: Any) -> PDN:
    """EfficientAD-M teacher; ``num_classes`` is ignored."""
    return PDN("m", TEACHER_CHANNELS, padding=padding, **kwargs)


@register_model(_card("pdn_m_student", f"{_M} student PDN (768 channels: 0:384 teacher, 384:768 autoencoder)"),
                checkpoint_extractor=functools.partial(extract_efficientad_state_dict, role="student", size="m"))
def pdn_m_student(num_classes: int = 0, padding: bool = False, **kwargs: Any) -> PDN:
    """EfficientAD-M student; ``num_classes`` is ignored."""
    return PDN("m", STUDENT_CHANNELS, padding=padding, **kwargs)


@register_model(_card("efficientad_autoencoder", "EfficientAD autoencoder (S and M), 384 x 56 x 56 at 256, "
                      "output size follows the input size; min input 256"),
                checkpoint_extractor=functools.partial(extract_efficientad_state_dict, role="ae"))
def efficientad_autoencoder(num_classes: int = 0, padding: bool = False, **kwargs: Any) -> Autoencoder:
    """EfficientAD autoencoder; ``num_classes`` is ignored, ``padding`` sets the last resize (56 or 64 at 256)."""
    return Autoencoder(TEACHER_CHANNELS, padding=padding, **kwargs)


# ---------------------------------------------------------------------------------------------- detector

Q_A, Q_B = 0.9, 0.995  # map normalisation quantiles (paper §3.4): q_a -> 0, q_b -> 0.1
MAP_BORDER = 4         # zero border added to unpadded maps: ~16 px of a 33 px patch / stride 4


class EfficientADDetector(nn.Module):
    """The whole EfficientAD inference graph: an RGB image in [0, 1] (B, 3, H, W) in, the anomaly map
    (B, 1, H, W) and the image score (B,) out.

    ImageNet normalisation, teacher channel normalisation, student and autoencoder maps, quantile
    normalisation (q_a -> 0, q_b -> 0.1, no clipping), the 0.5/0.5 combination, the zero border
    and the bilinear resize to the input size all live in this one graph, in nelson1425's order
    (quantiles on the raw maps, then normalise, pad, resize, max), so an exported detector needs
    only a resized image. Its statistics are buffers: fitted by training, saved with the weights.
    """

    def __init__(self, size: str = "s", padding: bool = False):
        super().__init__()
        self.size, self.padding = size, padding
        self.teacher = PDN(size, TEACHER_CHANNELS, padding=padding)
        self.student = PDN(size, STUDENT_CHANNELS, padding=padding)
        self.autoencoder = Autoencoder(TEACHER_CHANNELS, padding=padding)
        self.register_buffer("image_mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("image_std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.register_buffer("teacher_mean", torch.zeros(1, TEACHER_CHANNELS, 1, 1))
        self.register_buffer("teacher_std", torch.ones(1, TEACHER_CHANNELS, 1, 1))
        # (q_a, q_b) of the student-teacher and the autoencoder maps; identity-like until fitted
        self.register_buffer("quantiles_st", torch.tensor([0.0, 10.0]))
        self.register_buffer("quantiles_ae", torch.tensor([0.0, 10.0]))

    def normalize_image(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.image_mean) / self.image_std

    def teacher_features(self, x: torch.Tensor) -> torch.Tensor:
        """Channel-normalised teacher output T^(x) of an ImageNet-normalised batch."""
        return (self.teacher(x) - self.teacher_mean) / self.teacher_std

    def raw_maps(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """M_ST and M_AE before quantile normalisation, (B, 1, h, w) at the PDN output size."""
        x = self.normalize_image(image)
        t, s, a = self.teacher_features(x), self.student(x), self.autoencoder(x)
        m_st = (t - s[:, :TEACHER_CHANNELS]).pow(2).mean(dim=1, keepdim=True)
        m_ae = (a - s[:, TEACHER_CHANNELS:]).pow(2).mean(dim=1, keepdim=True)
        return m_st, m_ae

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m_st, m_ae = self.raw_maps(image)
        q_st, q_ae = self.quantiles_st, self.quantiles_ae
        m = 0.5 * 0.1 * (m_st - q_st[0]) / (q_st[1] - q_st[0]) + 0.5 * 0.1 * (m_ae - q_ae[0]) / (q_ae[1] - q_ae[0])
        if not self.padding:
            m = F.pad(m, (MAP_BORDER,) * 4)
        m = F.interpolate(m, size=(image.shape[-2], image.shape[-1]), mode="bilinear", align_corners=False)
        return m, m.amax(dim=(1, 2, 3))

    @torch.no_grad()
    def fit_quantiles(self, maps_st: torch.Tensor, maps_ae: torch.Tensor) -> None:
        """Set (q_a, q_b) from raw validation maps (all pixels of all held-out normal images)."""
        q = torch.tensor([Q_A, Q_B], dtype=torch.float64)
        for buf, maps in ((self.quantiles_st, maps_st), (self.quantiles_ae, maps_ae)):
            values = maps.detach().double().flatten()
            if values.numel() > 2 ** 24:  # torch.quantile's input limit: numpy has none
                import numpy as np

                fitted = torch.from_numpy(np.quantile(values.numpy(), q.numpy()))
            else:
                fitted = torch.quantile(values, q)
            buf.copy_(fitted.to(buf.dtype))


def _detector_card(name: str, size: str) -> ModelCard:
    params = {"s": (2_694_144 + 4_267_392 + 1_096_320), "m": (8_026_624 + 11_615_488 + 1_096_320)}[size]
    label = {"s": "EfficientAD-S", "m": "EfficientAD-M"}[size]
    return ModelCard(
        name=name, task="anomaly", input_size=(3, 256, 256), family="efficientad", paper=PAPER,
        mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), interpolation="bilinear", crop_pct=1.0,
        resize_mode="stretch", num_classes=0, labels=None, label_set=None,
        output_names=("anomaly_map", "score"), classifier_prefixes=(),
        # int8: the networks quantise; the map arithmetic (teacher normalisation, squared differences of
        # near-equal features, quantile scaling) stays float. Quantised too, it broke the map (cosine 0.3-0.4).
        int8_keep_float=(".",),
        description=(f"{label} detector (teacher + student + autoencoder, {params / 1e6:.2f}M params): image in "
                     "[0, 1] -> anomaly map + score in one graph; train with `mobilevision train anomaly`"))


@register_model(_detector_card("efficientad_s", "s"))
def efficientad_s(num_classes: int = 0, padding: bool = False, **kwargs: Any) -> EfficientADDetector:
    """EfficientAD-S detector; ``num_classes`` is ignored."""
    return EfficientADDetector("s", padding=padding, **kwargs)


@register_model(_detector_card("efficientad_m", "m"))
def efficientad_m(num_classes: int = 0, padding: bool = False, **kwargs: Any) -> EfficientADDetector:
    """EfficientAD-M detector; ``num_classes`` is ignored."""
    return EfficientADDetector("m", padding=padding, **kwargs)
