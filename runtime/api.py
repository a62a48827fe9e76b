"""``load(path)`` -> a Model with ``predict`` and task helpers. Never imports torch."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np

from mobilevision.errors import ArtifactError, InputMismatch, MobileVisionError
from mobilevision.export.integrity import Integrity
from mobilevision.export.metadata import ModelMetadata, TensorSpec, read_sidecar

from . import batch
from .backends import Backend, open_backend
from .backends.base import ArtifactClosed
from .tasks import anomaly as anomaly_task
from .tasks import classify as classify_task
from .tasks import isp as isp_task
from .tasks import landmarks as landmarks_task


def _check_input(spec: TensorSpec, a: np.ndarray) -> None:
    expected = f"{spec.dtype} {list(spec.shape)}"
    received = f"{a.dtype} {list(a.shape)}"
    if a.ndim != len(spec.shape):
        raise InputMismatch(f"input '{spec.name}' expects rank {len(spec.shape)} ({expected}), "
                            f"received rank {a.ndim} ({received})")
    if any(e > 0 and e != r for e, r in zip(spec.shape, a.shape)):
        raise InputMismatch(f"input '{spec.name}' expects shape {expected}, received {received}")
    if np.dtype(spec.dtype) != a.dtype:
        raise InputMismatch(f"input '{spec.name}' expects dtype {expected}, received {received}"
                            f" (convert with .astype(np.{spec.dtype}))")


def _check_values(spec: TensorSpec, a: np.ndarray) -> None:
    """Refuse NaN / Inf in a float input: the model would answer NaN without a word."""
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        raise InputMismatch(f"input '{spec.name}' holds {bad} NaN/Inf value(s) of {a.size}; "
                            f"replace them (e.g. np.nan_to_num) before calling the model")


def _renamed(specs: list[TensorSpec], named: list[TensorSpec]) -> list[TensorSpec]:
    if len(specs) != len(named):
        return list(specs)
    return [TensorSpec(n.name, list(s.shape), s.dtype, n.layout) for s, n in zip(specs, named)]


class Model:
    """An artifact opened in one runtime, plus the metadata that says how to feed it."""

    def __init__(self, backend: Backend, metadata: ModelMetadata | None):
        self.backend = backend
        self.metadata = metadata
        # Present the metadata's names ("image", "logits"); shapes and dtypes come from the runtime.
        self.inputs = _renamed(backend.inputs, metadata.inputs if metadata else [])
        self.outputs = _renamed(backend.outputs, metadata.outputs if metadata else [])
        self.output_names = [o.name for o in self.outputs]
        self._closed = False

    @property
    def path(self) -> Path:
        return self.backend.path

    @property
    def integrity(self) -> Integrity:
        """The artifact files' SHA-256 checked against its sidecar on load (or why none could be)."""
        return self.backend.integrity

    def predict(self, inputs: np.ndarray | Sequence[np.ndarray] | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the raw model. Returns {output name: array}; inputs are checked against the artifact.
        Safe to call from several threads at once (each backend keeps per-thread state where its runtime
        needs it)."""
        if self._closed:
            raise ArtifactClosed(f"{self.path} was closed: load it again")
        if not isinstance(inputs, (np.ndarray, Mapping, Sequence)) or isinstance(inputs, (str, bytes)) or (
                isinstance(inputs, np.ndarray) and inputs.ndim == 0):
            what = "a 0-d array" if isinstance(inputs, np.ndarray) else type(inputs).__name__
            raise InputMismatch(f"predict() takes a numpy array (or a list / dict of them) for "
                                f"{[s.name for s in self.inputs]}, received {what}")
        if isinstance(inputs, np.ndarray):
            arrays = [inputs]
        elif isinstance(inputs, Mapping):
            missing = [s.name for s in self.inputs if s.name not in inputs]
            if missing:
                raise InputMismatch(f"missing input(s) {missing}; the model takes {[s.name for s in self.inputs]}")
            arrays = [np.asanyarray(inputs[s.name]) for s in self.inputs]
        else:
            arrays = [np.asanyarray(a) for a in inputs]
        if len(arrays) != len(self.inputs):
            raise InputMismatch(f"the model takes {len(self.inputs)} input(s) "
                                f"{[s.name for s in self.inputs]}, received {len(arrays)}")
        for i, (spec, a) in enumerate(zip(self.inputs, arrays)):
            if not isinstance(a, np.ndarray):
                raise InputMismatch(f"input '{spec.name}' must be a numpy array, received {type(a).__name__}")
            if isinstance(a, np.ma.MaskedArray):   # a runtime would read the hidden values under the mask
                if np.ma.count_masked(a):
                    raise InputMismatch(f"input '{spec.name}' is a masked array with {np.ma.count_masked(a)} masked "
                                        f"value(s); fill them (a.filled(value)) before calling the model")
                arrays[i] = a = np.asarray(a)
            _check_input(spec, a)
            _check_values(spec, a)
        outs = self.backend.run([np.ascontiguousarray(a) for a in arrays])
        return dict(zip(self.output_names, outs))

    def classify(self, image, top_k: int = 5) -> list[classify_task.Classification]:
        """Top-k classes of one image (uint8 HWC RGB array, PIL image or file path)."""
        md = self._require_task("classify")
        if md.preprocessing is None:
            raise ArtifactError(f"{self.path} has no preprocessing in its metadata; re-export it")
        x = classify_task.preprocess(image, md.preprocessing)
        logits = next(iter(self.predict(x).values()))
        return classify_task.top_k(logits, top_k, md.labels, md.scores)

    def detect_anomaly(self, image, threshold: float | None = None) -> anomaly_task.AnomalyResult:
        """Anomaly map (at the image's own size) and score of one image (uint8 HWC RGB array, PIL image
        or file path). The decision ``is_anomalous`` is score > ``threshold``; without one, the F1-optimal
        threshold the artifact's metadata carries (``anomaly.image``, chosen at training on labelled test
        images), and none when it carries none. The detector normalises its maps so ~0.1 is the validation
        images' 99.5th percentile."""
        md = self._require_task("anomaly")
        if threshold is not None and not math.isfinite(threshold):   # before any work
            raise MobileVisionError(f"threshold must be a finite number, got {threshold}")
        if md.preprocessing is None:
            raise ArtifactError(f"{self.path} has no preprocessing in its metadata; re-export it")
        im = classify_task.as_rgb_image(image)
        out = self.predict(classify_task.preprocess(im, md.preprocessing))
        amap, score = out["anomaly_map"], out["score"]
        value = float(np.asarray(score).reshape(-1)[0])
        if not math.isfinite(value):   # decided neither way: this image fails, with the reason
            raise MobileVisionError(f"the detector's score is {value} for this image: the artifact computed "
                                    "non-finite values (check the input; re-export the model)")
        if threshold is None and md.anomaly is not None:
            threshold = md.anomaly.image
        return anomaly_task.AnomalyResult(value,
                                          anomaly_task.to_image_size(amap, *im.size), threshold,
                                          md.anomaly.pixel if md.anomaly is not None else None)

    def process_raw(self, mosaic: np.ndarray, pattern: str = "RGGB", black_level: float | Sequence[float] | None = None,
                    white_level: float | None = None, clip: bool | None = None) -> np.ndarray:
        """RGB (H, W, 3) float32 in [0, 1] of a Bayer mosaic (H, W) of sensor values, through an ISP artifact.

        The mosaic is packed in the metadata's order and normalised with ``black_level`` (one value, or
        one per packed channel B, G_R, R, G_B) and ``white_level`` (default: the levels the weights were
        trained with, from the metadata); then run in tiles of the artifact's input size with a 3-pixel
        halo, which is exact for EfficientISP / RobustISP (RMFA-Net's global attention makes tiles
        approximate). Odd sizes lose their last row/column."""
        md = self._require_task("isp")
        if md.raw is None:
            raise ArtifactError(f"{self.path} has no RAW description in its metadata; re-export it")
        mosaic, pattern = isp_task.crop_even(mosaic, pattern)
        black = md.raw.black_level if black_level is None else black_level
        white = md.raw.white_level if white_level is None else white_level
        x = isp_task.normalize_raw(isp_task.pack_bayer(mosaic, pattern), black, white,
                                   md.raw.clip if clip is None else clip)
        th, tw = self.inputs[0].shape[2], self.inputs[0].shape[3]
        if x.shape[1] < th or x.shape[2] < tw:
            raise InputMismatch(f"the mosaic packs to {x.shape[2]}x{x.shape[1]}, smaller than the artifact's "
                                f"{tw}x{th} tile: export the model with a smaller --imgsz")
        name = self.output_names[0]
        rgb = isp_task.run_tiled(x, lambda t: self.predict(np.ascontiguousarray(t[None]))[name][0], (th, tw))
        return rgb.transpose(1, 2, 0)

    def detect_landmarks(self, image, box: Sequence[float] | None = None) -> np.ndarray:
        """Landmarks (K, 2) as (x, y) image pixels (pixel centres at integers) of the face in ``box``
        (x0, y0, x1, y1; default the whole image) of one image (uint8 HWC RGB array, PIL image or file path).
        The box is stretched to the model input as in training (aspect ratio not kept); give a box around
        the face (e.g. a detector's, widened a little)."""
        md = self._require_task("landmarks")
        if md.preprocessing is None:
            raise ArtifactError(f"{self.path} has no preprocessing in its metadata; re-export it")
        rgb = np.asarray(classify_task.as_rgb_image(image))
        box = landmarks_task.full_box(rgb.shape[1], rgb.shape[0]) if box is None else landmarks_task.check_box(box)
        pre = md.preprocessing
        h, w = pre.crop
        crop = landmarks_task.crop_image(rgb, box, w, h)
        out = next(iter(self.predict(classify_task.normalize(crop, pre)).values()))
        return landmarks_task.to_image(np.asarray(out, np.float64).reshape(-1, 2), box, w, h)

    def predict_each(self, images: Iterable, **options) -> Iterator[batch.BatchItem]:
        """The task's method (``classify``, ``detect_anomaly`` or ``detect_landmarks``, with ``options`` such as
        ``top_k``, ``threshold``, ``box``) on each of ``images`` (paths, arrays, PIL images; a generator is fine),
        yielding a ``BatchItem`` (``source``, ``result``, ``error``) per image in order. An image that cannot be
        read or used yields its one-line ``error`` and the run goes on; a problem of the model stops it. For a
        folder, pass ``[p for p, _ in expand_images([folder])]`` (``mobilevision.runtime.batch``)."""
        return batch.predict_each(self, images, **options)

    def _require_metadata(self) -> ModelMetadata:
        if self.metadata is None:
            raise ArtifactError(f"{self.path} carries no mobilevision metadata (no embedded entry, no "
                                f"{self.path.name}.json sidecar); export it with `mobilevision export`")
        return self.metadata

    def _require_task(self, task: str) -> ModelMetadata:
        self._require_metadata()
        if self.metadata.task != task:
            raise MobileVisionError(f"{self.path} is a {self.metadata.task!r} model, not {task!r}")
        return self.metadata

    def close(self) -> None:
        """Release the runtime; later calls raise ArtifactClosed. Closing twice is harmless."""
        if not self._closed:
            self._closed = True
            self.backend.close()

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        task = self.metadata.task if self.metadata else "?"
        return f"Model({str(self.path)!r}, backend={self.backend.name!r}, task={task!r})"


def read_metadata(backend: Backend) -> ModelMetadata | None:
    """Embedded metadata first; the sidecar JSON when the format has none."""
    text = backend.embedded_metadata()
    if text:
        return ModelMetadata.from_json(text, source=f"{backend.path} (embedded)")
    return read_sidecar(backend.path)


def run_options(backend: str, precision: str | None) -> dict[str, str]:
    """``open_backend`` keywords that run an artifact stored at ``precision`` (its metadata's) as its export
    checked it: a bf16 artifact compiles with OpenVINO's bf16 hint; everything else as the backend defaults (f32)."""
    return {"ov_precision": "bf16"} if backend == "openvino" and precision == "bf16" else {}


def load(path: str | Path, backend: str | None = None, threads: int | None = None) -> Model:
    """Open an exported artifact (.onnx, .tflite, .xml, .mlpackage) in its runtime, computing in the precision
    its metadata records (see ``run_options``)."""
    b = open_backend(path, backend=backend, threads=threads)
    try:
        md = read_metadata(b)
        options = run_options(b.name, md.precision if md else None)
        if options:   # the metadata comes from the opened artifact itself: compile it again as it was checked
            first, b = b, None
            first.close()
            b = open_backend(path, backend=backend, threads=threads, **options)
            md = read_metadata(b)
        return Model(b, md)
    except BaseException:
        if b is not None:
            b.close()
        raise
