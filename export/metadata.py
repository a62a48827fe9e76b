"""THE artifact metadata schema, shared by the exporter and every runtime (Python, Kotlin).

One versioned dataclass <-> JSON. It is written inside each artifact where the format
allows (ONNX metadata_props, Core ML user_defined_metadata, OpenVINO rt_info, TFLite
metadata buffer) under the key ``METADATA_KEY``, and in a sidecar ``<artifact>.json``.
Adding a field means bumping ``SCHEMA_VERSION`` and keeping older files readable.
Torch-free: the runtime imports this module.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mobilevision.errors import ArtifactError

SCHEMA_VERSION = 5  # 2: Preprocessing.resize_mode; 3: ModelMetadata.raw (RAW-input models); 4: .landmarks;
#                    5: .quantization (fp16 / int8: tool, scheme, calibration, accuracy report)
METADATA_KEY = "mobilevision"


@dataclass
class TensorSpec:
    """One model input or output as the artifact sees it."""

    name: str
    shape: list[int]
    dtype: str = "float32"
    layout: str = ""            # "NCHW" for images; "" when it does not apply


@dataclass
class Preprocessing:
    """How an app turns an uint8 HWC RGB image into the input tensor."""

    resize: int                  # shorter side is resized to this (pixels)
    crop: list[int]              # centre crop (H, W) after resizing
    interpolation: str = "bicubic"
    scale: float = 1.0 / 255.0   # pixel * scale, then (x - mean) / std
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    color: str = "RGB"
    layout: str = "NCHW"
    # "shorter_side": resize the shorter side to ``resize`` then centre-crop ``crop``;
    # "stretch": resize straight to ``crop`` (H, W), aspect ratio not kept (EfficientAD's references).
    # Schema 1 files have no field and mean "shorter_side".
    resize_mode: str = "shorter_side"

    @classmethod
    def for_card(cls, card: Any, height: int, width: int) -> "Preprocessing":
        """The evaluation preprocessing of a model card (registry.ModelCard) at height x width:
        resize the shorter side to height / crop_pct, centre-crop (or stretch to height x width).
        Training's validation uses it too, so what a model is evaluated on is what apps feed it."""
        mode = getattr(card, "resize_mode", "shorter_side")
        return cls(resize=int(height / card.crop_pct) if mode == "shorter_side" else min(height, width),
                   crop=[height, width], interpolation=card.interpolation, mean=list(card.mean),
                   std=list(card.std), layout=card.layout, resize_mode=mode)


@dataclass
class RawInput:
    """How an app turns a Bayer mosaic (sensor integers) into the packed input of a RAW model (task "isp").

    Pack the mosaic into half-resolution channels in ``packing`` order (B, G_R, R, G_B: G_R is the green
    sharing a row with red; any 2x2 CFA pattern maps onto it), then per channel
    x -> (x - black_level[c]) / (white_level - black_level[c]), clipped at 0 when ``clip`` is true. The
    levels are the ones the weights were trained with; a camera RAW file brings its own (use those).
    The output is RGB in [0, 1] at twice the packed size.
    """

    black_level: list[float]
    white_level: float
    clip: bool = False
    packing: list[str] = field(default_factory=lambda: ["B", "G_R", "R", "G_B"])


@dataclass
class LandmarkOutput:
    """What a landmark model's output means (task "landmarks").

    The output is (1, ``points``, 2) (x, y) in pixels of the model input (the stretched face crop), pixel
    centres at integer coordinates; map back through the crop box. ``flip_pairs`` are the (left, right)
    index pairs a horizontal flip swaps; ``eye_corners`` are the outer eye corners (NME normaliser).
    """

    points: int
    coordinates: str = "input_pixels"
    flip_pairs: list[list[int]] = field(default_factory=list)
    eye_corners: list[int] | None = None


@dataclass
class ModelMetadata:
    """Everything a runtime needs to use an artifact without the model's Python class."""

    task: str
    model: str
    target: str
    precision: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    preprocessing: Preprocessing | None = None
    labels: list[str] | None = None
    label_set: str | None = None
    num_classes: int | None = None
    params: int | None = None
    macs: int | None = None                   # multiply-accumulates per inference, batch 1
    weights: str | None = None                # file name of the source weights, None = random init
    weights_sha256: str | None = None
    tools: dict[str, str] = field(default_factory=dict)
    parity: dict[str, Any] | None = None
    raw: RawInput | None = None               # RAW-input models only (schema 3)
    landmarks: LandmarkOutput | None = None   # landmark models only (schema 4)
    # fp16 / int8 only (schema 5): {"tool", "scheme", "calibration": {source, inputs}, "kept_float",
    # "accuracy": the task metric before / after on held-out data, agreement with fp32, size}
    quantization: dict[str, Any] | None = None
    created: str = ""
    schema_version: int = SCHEMA_VERSION

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(dataclasses.asdict(self), indent=indent, sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelMetadata":
        version = d.get("schema_version", 0)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ArtifactError(f"metadata schema version {version} is newer than this mobilevision "
                                f"understands ({SCHEMA_VERSION}); upgrade mobilevision")
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        try:
            kw["inputs"] = [TensorSpec(**t) for t in d["inputs"]]
            kw["outputs"] = [TensorSpec(**t) for t in d["outputs"]]
            if d.get("preprocessing") is not None:
                kw["preprocessing"] = Preprocessing(**d["preprocessing"])
            if d.get("raw") is not None:
                kw["raw"] = RawInput(**d["raw"])
            if d.get("landmarks") is not None:
                kw["landmarks"] = LandmarkOutput(**d["landmarks"])
            return cls(**kw)
        except (KeyError, TypeError) as e:
            raise ArtifactError(f"malformed mobilevision metadata ({e}); re-export the artifact") from e

    @classmethod
    def from_json(cls, text: str | bytes) -> "ModelMetadata":
        try:
            d = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ArtifactError(f"metadata is not valid JSON ({e}); re-export the artifact") from e
        if not isinstance(d, dict):
            raise ArtifactError("metadata is not a JSON object; re-export the artifact")
        return cls.from_dict(d)


def sidecar_path(artifact: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json`` (``.xml`` for OpenVINO, ``.mlpackage`` for Core ML)."""
    p = Path(artifact)
    return p.with_name(p.name + ".json")


def read_sidecar(artifact: str | Path) -> ModelMetadata | None:
    p = sidecar_path(artifact)
    if not p.is_file():
        return None
    return ModelMetadata.from_json(p.read_text(encoding="utf-8"))
