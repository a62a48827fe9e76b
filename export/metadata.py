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
import math
import os
import re
import reprlib
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Sequence

from mobilevision.errors import ArtifactError

SCHEMA_VERSION = 7  # 2: Preprocessing.resize_mode; 3: ModelMetadata.raw (RAW-input models); 4: .landmarks;
#                    5: .quantization (fp16 / int8: tool, scheme, calibration, accuracy report);
#                    6: .scores (classifier output: logits or probabilities), Preprocessing.normalization;
#                    7: .anomaly (an anomaly detector's F1-optimal image and pixel thresholds)
METADATA_KEY = "mobilevision"

# Metadata is untrusted on read: bounded sizes, checked types (see ``ModelMetadata.validate``).
MAX_JSON_BYTES = 16 * 1024 * 1024   # the 1000 ImageNet labels are ~30 KB
MAX_DEPTH = 32                      # JSON nesting; a parity report nests 4 deep
MAX_INT_DIGITS = 20
MAX_STR = 1024                      # characters in a name, label or version
MAX_LABELS = 100_000
MAX_TENSORS = 64                    # inputs, outputs
MAX_RANK, MAX_DIM, MAX_ELEMENTS = 8, 1 << 20, 1 << 31   # tensor shapes; -1 is a dynamic dimension
MAX_CROP = 4096                     # pixels: export's --imgsz limit
MAX_RESIZE = 2 * MAX_CROP           # pixels: the shorter side before the centre crop
MAX_POINTS = 10_000                 # landmarks
INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "lanczos", "box", "hamming")  # runtime.tasks.classify.RESAMPLE
RESIZE_MODES = ("shorter_side", "stretch")
NORMALIZATIONS = ("app", "model")   # who applies scale / mean / std: the app (float input) or the model (pixels in)
SCORES = ("logits", "probabilities")
IMAGE_LAYOUTS = ("NCHW", "NHWC")
DTYPES = ("float32", "float16", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
          "uint64", "bool")
PACKING = ("B", "G_R", "R", "G_B")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_REPR = reprlib.Repr()   # bounded work and length however large the value
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxlong, _REPR.maxother = 2, 4, 2, 40, 24, 40


def _fail(name: str, problem: str) -> NoReturn:
    """Raise the one-line error about field ``name`` ("" for the whole object)."""
    raise ArtifactError(f"metadata {name + ' ' if name else ''}{problem}; re-export the artifact")


def _shown(value: Any) -> str:
    """``repr(value)`` cut short, so that a message stays one short line."""
    return _REPR.repr(value)


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(name, f"is {_shown(value)}, not an integer")
    if not lo <= value <= hi:
        _fail(name, f"is {_shown(value)}, outside {lo}..{hi}")
    return value


def _float(value: Any, name: str, lo: float = -math.inf, above: float | None = None) -> float:
    """A finite number >= ``lo`` (and > ``above`` when given); ints count, bools do not."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
        _fail(name, f"is {_shown(value)}, not a finite number")
    if value < lo or (above is not None and not value > above):
        _fail(name, f"is {_shown(value)}, expected {f'> {above:g}' if above is not None else f'>= {lo:g}'}")
    return float(value)


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float range
        return False


def _str(value: Any, name: str, choices: Sequence[str] = ()) -> str:
    if not isinstance(value, str):
        _fail(name, f"is {_shown(value)}, not a string")
    if len(value) > MAX_STR:
        _fail(name, f"is {len(value)} characters long, over {MAX_STR}")
    if _CONTROL.search(value):
        _fail(name, f"is {_shown(value)}, with control characters")
    if choices and value not in choices:
        _fail(name, f"is {_shown(value)}: expected one of {', '.join(map(repr, choices))}")
    return value


def _list(value: Any, name: str, lo: int, hi: int) -> list:
    if not isinstance(value, list):
        _fail(name, f"is {_shown(value)}, not a list")
    if not lo <= len(value) <= hi:
        _fail(name, f"has {len(value)} items, expected {lo if lo == hi else f'{lo}..{hi}'}")
    return value


def _ints(value: Any, name: str, lo: int, hi: int, items: tuple[int, int]) -> list[int]:
    return [_int(v, f"{name}[{i}]", lo, hi) for i, v in enumerate(_list(value, name, *items))]


def _floats(value: Any, name: str, items: tuple[int, int], lo: float = -math.inf,
            above: float | None = None) -> list[float]:
    return [_float(v, f"{name}[{i}]", lo, above) for i, v in enumerate(_list(value, name, *items))]


def _dict(value: Any, name: str) -> dict:
    if not isinstance(value, dict):
        _fail(name, f"is {_shown(value)}, not an object")
    return value


def _build(cls: type, value: Any, name: str) -> Any:
    """``cls(**value)`` from a JSON object, refusing unknown and missing fields (values: see ``validate``)."""
    fields = dataclasses.fields(cls)
    unknown = set(_dict(value, name)) - {f.name for f in fields}
    if unknown:
        _fail(name, f"has the unknown field {_shown(sorted(unknown)[0])}")
    missing = [f.name for f in fields if f.name not in value
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        _fail(name, f"is malformed: the field {missing[0]!r} is missing")
    return cls(**value)


@dataclass
class TensorSpec:
    """One model input or output as the artifact sees it."""

    name: str
    shape: list[int]
    dtype: str = "float32"
    layout: str = ""            # "NCHW" for images; "" when it does not apply

    def validate(self, name: str = "tensor") -> None:
        """Raise ArtifactError unless every field has its type and a sane range."""
        _str(self.name, f"{name}.name")
        shape = _ints(self.shape, f"{name}.shape", -1, MAX_DIM, (0, MAX_RANK))
        if math.prod(max(d, 1) for d in shape) > MAX_ELEMENTS:
            _fail(f"{name}.shape", f"is {shape}, over {MAX_ELEMENTS} elements")
        _str(self.dtype, f"{name}.dtype", DTYPES)
        _str(self.layout, f"{name}.layout", ("", *IMAGE_LAYOUTS))


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
    # "app": the app feeds (pixel * scale - mean) / std as float32; "model": the artifact takes the resized RGB
    # pixels (uint8) and applies scale / mean / std itself (a Core ML image input). Schema < 6: "app".
    normalization: str = "app"

    @classmethod
    def for_card(cls, card: Any, height: int, width: int) -> "Preprocessing":
        """The evaluation preprocessing of a model card (registry.ModelCard) at height x width:
        resize the shorter side to height / crop_pct, centre-crop (or stretch to height x width).
        Training's validation uses it too, so what a model is evaluated on is what apps feed it."""
        mode = getattr(card, "resize_mode", "shorter_side")
        return cls(resize=int(height / card.crop_pct) if mode == "shorter_side" else min(height, width),
                   crop=[height, width], interpolation=card.interpolation, mean=list(card.mean),
                   std=list(card.std), layout=card.layout, resize_mode=mode)

    def validate(self, name: str = "preprocessing") -> None:
        """Raise ArtifactError unless sizes are bounded (pixels) and the arithmetic is defined."""
        _int(self.resize, f"{name}.resize", 1, MAX_RESIZE)
        _ints(self.crop, f"{name}.crop", 1, MAX_CROP, (2, 2))
        _str(self.interpolation, f"{name}.interpolation", INTERPOLATIONS)
        _float(self.scale, f"{name}.scale", above=0.0)
        _floats(self.mean, f"{name}.mean", (3, 3))
        _floats(self.std, f"{name}.std", (3, 3), above=0.0)
        _str(self.color, f"{name}.color", ("RGB",))
        _str(self.layout, f"{name}.layout", IMAGE_LAYOUTS)
        _str(self.resize_mode, f"{name}.resize_mode", RESIZE_MODES)
        _str(self.normalization, f"{name}.normalization", NORMALIZATIONS)


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

    def validate(self, name: str = "raw") -> None:
        """Raise ArtifactError unless the levels define a division (white above every black) and
        ``packing`` is an order of B, G_R, R, G_B."""
        black = _floats(self.black_level, f"{name}.black_level", (1, 4), lo=0.0)
        if len(black) not in (1, 4):
            _fail(f"{name}.black_level", f"has {len(black)} values, expected 1 or 4 (B, G_R, R, G_B)")
        _float(self.white_level, f"{name}.white_level", above=max(black))
        if not isinstance(self.clip, bool):
            _fail(f"{name}.clip", f"is {_shown(self.clip)}, not true or false")
        packing = [_str(p, f"{name}.packing[{i}]") for i, p in enumerate(_list(self.packing, f"{name}.packing", 4, 4))]
        if sorted(packing) != sorted(PACKING):
            _fail(f"{name}.packing", f"is {_shown(packing)}, not an order of {', '.join(PACKING)}")


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

    def validate(self, name: str = "landmarks") -> None:
        """Raise ArtifactError unless ``points`` is bounded and every index names a point."""
        last = _int(self.points, f"{name}.points", 1, MAX_POINTS) - 1
        _str(self.coordinates, f"{name}.coordinates", ("input_pixels",))
        for i, pair in enumerate(_list(self.flip_pairs, f"{name}.flip_pairs", 0, last + 1)):
            _ints(pair, f"{name}.flip_pairs[{i}]", 0, last, (2, 2))
        if self.eye_corners is not None:
            _ints(self.eye_corners, f"{name}.eye_corners", 0, last, (2, 2))


@dataclass
class AnomalyThresholds:
    """An anomaly detector's decision thresholds (task "anomaly"), chosen F1-optimal on labelled held-out
    images: an image is anomalous when its score > ``image``, a pixel when its map value > ``pixel``. The
    runtimes use them when the caller gives no threshold."""

    image: float
    pixel: float | None = None
    image_f1: float | None = None
    pixel_f1: float | None = None
    source: str = ""                       # what they were chosen on

    def validate(self, name: str = "anomaly") -> None:
        _float(self.image, f"{name}.image")
        for key in ("pixel", "image_f1", "pixel_f1"):
            if getattr(self, key) is not None:
                value = _float(getattr(self, key), f"{name}.{key}")
                if key.endswith("_f1") and value > 1:
                    _fail(f"{name}.{key}", f"is {_shown(value)}, an F1 score is 0..1")
                if key.endswith("_f1"):
                    _float(value, f"{name}.{key}", lo=0.0)
        _str(self.source, f"{name}.source")


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
    # classify (schema 6): what the output holds, "logits" (the app applies softmax) or "probabilities" (a softmax
    # in the graph, for consumers that report the output as scores: MediaPipe, Core ML); None: logits
    scores: str | None = None
    anomaly: AnomalyThresholds | None = None  # anomaly detectors trained here (schema 7); None: no thresholds
    created: str = ""
    schema_version: int = SCHEMA_VERSION

    def validate(self) -> None:
        """Raise ArtifactError (one line naming the field) unless every field has its type and a bounded size."""
        for name in ("task", "model", "target", "precision", "created"):
            _str(getattr(self, name), name)
        for name in ("label_set", "weights", "weights_sha256"):
            if getattr(self, name) is not None:
                _str(getattr(self, name), name)
        if self.scores is not None:
            _str(self.scores, "scores", SCORES)
        for name in ("inputs", "outputs"):
            for i, spec in enumerate(_list(getattr(self, name), name, 0, MAX_TENSORS)):
                if not isinstance(spec, TensorSpec):
                    _fail(f"{name}[{i}]", f"is {_shown(spec)}, not a tensor description")
                spec.validate(f"{name}[{i}]")
        if self.num_classes is not None:
            _int(self.num_classes, "num_classes", 0, MAX_LABELS)
        if self.labels is not None:
            labels = _list(self.labels, "labels", 0, MAX_LABELS)
            for i, label in enumerate(labels):
                _str(label, f"labels[{i}]")
            if self.num_classes is not None and len(labels) > self.num_classes:
                _fail("labels", f"has {len(labels)} names for num_classes {self.num_classes}")
        for name in ("params", "macs"):
            if getattr(self, name) is not None:
                _int(getattr(self, name), name, 0, 10**18)
        for key, version in _dict(self.tools, "tools").items():
            _str(version, f"tools[{_shown(_str(key, 'tools key'))}]")
        for name in ("parity", "quantization"):
            if getattr(self, name) is not None:
                _dict(getattr(self, name), name)
        for name, cls in _PARTS:
            part = getattr(self, name)
            if part is not None:
                if not isinstance(part, cls):
                    _fail(name, f"is {_shown(part)}, not an object")
                part.validate(name)
        self._check_image_input()

    def _check_image_input(self) -> None:
        """An image input and its preprocessing must agree: one layout, 3 channels where it says, uint8 pixels
        exactly when the model normalises (metadata that contradicts itself would feed transposed or
        mis-scaled data)."""
        pre = self.preprocessing
        if pre is None or len(self.inputs) != 1 or self.inputs[0].layout not in IMAGE_LAYOUTS:
            return
        spec = self.inputs[0]
        if pre.layout != spec.layout:
            _fail("preprocessing.layout", f"is {pre.layout!r} but inputs[0] is {spec.layout!r}")
        if len(spec.shape) != 4 or spec.shape[1 if spec.layout == "NCHW" else 3] not in (3, -1):
            _fail("inputs[0].shape", f"is {spec.shape}, not an RGB image in {spec.layout}")
        if (pre.normalization == "model") != (spec.dtype == "uint8"):
            _fail("inputs[0].dtype", f"is {spec.dtype!r} for normalization {pre.normalization!r} (uint8 pixels "
                                     f"exactly when the model normalises)")

    def to_json(self, indent: int | None = None) -> str:
        """Strict JSON: a non-finite number in a report (a NaN cosine) is written as null."""
        return json.dumps(_finite_only(dataclasses.asdict(self)), indent=indent, sort_keys=False, allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelMetadata":
        """The metadata of a parsed JSON object, validated (ArtifactError names the first bad field)."""
        version = _dict(d, "").get("schema_version", 0)
        if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
            raise ArtifactError(f"metadata schema version {version} is newer than this mobilevision "
                                f"understands ({SCHEMA_VERSION}); upgrade mobilevision")
        _int(version, "schema_version", 0, SCHEMA_VERSION)
        fields = dataclasses.fields(cls)
        missing = [f.name for f in fields if f.name not in d
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            _fail("", f"is malformed: the field {missing[0]!r} is missing")
        kw = {f.name: d[f.name] for f in fields if f.name in d}   # unknown fields: ignored
        kw["schema_version"] = version
        for name, spec in (("inputs", TensorSpec), ("outputs", TensorSpec)):
            kw[name] = [_build(spec, t, f"{name}[{i}]") for i, t in enumerate(_list(d[name], name, 0, MAX_TENSORS))]
        for name, part in _PARTS:
            if d.get(name) is not None:
                kw[name] = _build(part, d[name], name)
        md = cls(**kw)
        md.validate()
        return md

    @classmethod
    def from_json(cls, text: str | bytes, source: str | Path | None = None) -> "ModelMetadata":
        """The metadata in JSON ``text`` (at most MAX_JSON_BYTES, UTF-8), validated; ``source`` (the
        file it came from) starts every error message."""
        try:
            return cls.from_dict(_parse(text))
        except ArtifactError as e:
            if source is None:
                raise
            raise ArtifactError(f"{source}: {e}") from e


_PARTS = (("preprocessing", Preprocessing), ("raw", RawInput), ("landmarks", LandmarkOutput),
          ("anomaly", AnomalyThresholds))   # the fields that are objects of their own


def _finite_only(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_only(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_only(v) for v in value]
    return value


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ArtifactError(f"metadata holds an integer of {len(text)} digits; re-export the artifact")
    return int(text)


def _json_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ArtifactError(f"metadata holds the number {_shown(text)}, beyond float range; re-export the artifact")
    return value


def _json_constant(name: str) -> NoReturn:
    raise ArtifactError(f"metadata holds {name}, which is not JSON; re-export the artifact")


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise ArtifactError(f"metadata has the duplicate key {_shown(key)}; re-export the artifact")
        seen.add(key)
    return dict(pairs)


def _depth(value: Any) -> int:
    """How deep lists and objects nest in ``value`` (iterative: no recursion limit), up to MAX_DEPTH + 1."""
    deepest, stack = 0, [(value, 1)]
    while stack and deepest <= MAX_DEPTH:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def _parse(text: str | bytes) -> Any:
    """JSON ``text`` bounded in size, nesting and number length; NaN, Infinity and duplicate keys refused."""
    if len(text) > MAX_JSON_BYTES:
        raise ArtifactError(f"metadata is {len(text) / 2**20:.1f} MiB, over the {MAX_JSON_BYTES >> 20} MiB limit; "
                            "re-export the artifact")
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise ArtifactError(f"metadata is not UTF-8 text (byte {e.start}); re-export the artifact") from e
    try:
        value = json.loads(text, parse_int=_json_int, parse_float=_json_float, parse_constant=_json_constant,
                           object_pairs_hook=_json_object)
    except RecursionError as e:
        raise ArtifactError(f"metadata nests deeper than {MAX_DEPTH} levels; re-export the artifact") from e
    except json.JSONDecodeError as e:
        raise ArtifactError(f"metadata is not valid JSON ({e}); re-export the artifact") from e
    if _depth(value) > MAX_DEPTH:
        raise ArtifactError(f"metadata nests deeper than {MAX_DEPTH} levels; re-export the artifact")
    if not isinstance(value, dict):
        raise ArtifactError("metadata is not a JSON object; re-export the artifact")
    return value


def sidecar_path(artifact: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json`` (``.xml`` for OpenVINO, ``.mlpackage`` for Core ML)."""
    p = Path(artifact)
    return p.with_name(p.name + ".json")


def read_sidecar_json(artifact: str | Path) -> dict[str, Any] | None:
    """The JSON object in ``<artifact>.json`` (parsed with the metadata limits), or None when there is none.
    Symlinks are followed; a FIFO, device or directory, or a file over MAX_JSON_BYTES, is refused unread."""
    p = sidecar_path(artifact)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))   # a FIFO must not block the open
    except FileNotFoundError:                                          # also a dangling symlink
        return None
    except OSError as e:
        raise ArtifactError(f"cannot read {p} ({e.strerror}); fix its permissions or re-export the artifact") from e
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ArtifactError(f"{p} is not a regular file; remove it or re-export the artifact")
        if info.st_size > MAX_JSON_BYTES:
            raise ArtifactError(f"{p} is {info.st_size / 2**20:.1f} MiB, over the {MAX_JSON_BYTES >> 20} MiB "
                                "metadata limit; re-export the artifact")
        with open(fd, "rb", closefd=False) as f:
            text = f.read(MAX_JSON_BYTES + 1)
    finally:
        os.close(fd)
    try:
        return _parse(text)
    except ArtifactError as e:
        raise ArtifactError(f"{p}: {e}") from e


def read_sidecar(artifact: str | Path) -> ModelMetadata | None:
    """The metadata in ``<artifact>.json``, or None when there is none (see ``read_sidecar_json``)."""
    d = read_sidecar_json(artifact)
    if d is None:
        return None
    try:
        return ModelMetadata.from_dict(d)
    except ArtifactError as e:
        raise ArtifactError(f"{sidecar_path(artifact)}: {e}") from e
