"""Parity: run an exported artifact in its own runtime and compare with PyTorch.

Reported per output: max abs error, mean abs error, cosine similarity of the flattened
outputs, plus top-1 agreement for classifiers. An artifact passes when, for every output,
``max_abs <= atol + rtol * max|reference|`` and ``cosine >= min_cosine`` for its precision. The cosine is
required only of an output whose reference reaches past ``atol``: an output that is zero to within the
tolerance (a random-init classifier's centred log-probabilities, ~1e-7) has no direction to agree on, and its
cosine is rounding noise.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mobilevision.export.metadata import ModelMetadata
from mobilevision.tasks import classifier_output


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    min_cosine: float


# fp32 artifacts differ from PyTorch only by kernel summation order; fp16 ones round weights
# (and for ONNX/Core ML activations) to 11 significant bits.
# bf16 (OpenVINO: fp32 weights, computed with an 8-bit mantissa, unit roundoff 2**-8 = 3.9e-3 per op) measured
# with openvino 2026.4 on an AMX CPU, parity inputs, 3 x 8 images: worst max|d| / max|ref| 1.45e-2 (emo_1m),
# 9.4e-3 (emo_5m), 3.5e-3 (the test toy), 1.2e-4 (landmarks_mnv2, pixel outputs); cosine >= 0.99994. Allowed:
# atol 1e-2 + rtol 5e-2 (about 4x the worst), cosine 0.999 (an rms error ~4.5 % of the norm, as rtol).
# int8 (weights and activations on 256 levels) is checked on the task's own images. Past its tolerance
# the artifact is still written, with a warning and the accuracy report; below INT8_BROKEN_COSINE (or
# with non-finite outputs) it is refused as broken.
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(atol=1e-4, rtol=1e-3, min_cosine=0.9999),
    "fp16": Tolerance(atol=1e-2, rtol=3e-2, min_cosine=0.999),
    "int8": Tolerance(atol=5e-2, rtol=1.5e-1, min_cosine=0.98),
    "bf16": Tolerance(atol=1e-2, rtol=5e-2, min_cosine=0.999),
}
INT8_BROKEN_COSINE = 0.9


@dataclass
class OutputParity:
    name: str
    max_abs: float
    mean_abs: float
    cosine: float
    reference_max_abs: float


@dataclass
class ParityReport:
    target: str
    runtime: str | None
    precision: str
    samples: int
    numeric: bool                                   # False: structural validation only
    passed: bool
    outputs: list[OutputParity] = field(default_factory=list)
    top1_agreement: float | None = None             # classifiers: fraction of samples
    tolerance: dict[str, float] = field(default_factory=dict)
    structure: dict[str, Any] | None = None         # what the saved artifact contains
    note: str | None = None
    computed_precision: str | None = None           # what the runtime computed in, read back from it (OpenVINO)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        if not self.numeric:
            return f"validated structure only: {self.note}"
        worst = max(self.outputs, key=lambda o: o.max_abs)
        top1 = f" top-1 {self.top1_agreement:.0%}" if self.top1_agreement is not None else ""
        return f"max|d| {worst.max_abs:.1e} cos {min(o.cosine for o in self.outputs):.6f}{top1}"

    def failure(self) -> str:
        tol = TOLERANCES[self.precision]
        bad = [o for o in self.outputs if not within(o, tol)]
        return "; ".join(f"output '{o.name}': max abs {o.max_abs:.3g} (allowed "
                         f"{tol.atol + tol.rtol * o.reference_max_abs:.3g}), cosine {o.cosine:.6f} "
                         f"(min {tol.min_cosine})" for o in bad)


def parity_inputs(metadata: ModelMetadata, n: int = 4, seed: int = 0) -> list[list[np.ndarray]]:
    """Fixed inputs: for image tasks, random photos-sized uint8 images run through the recorded
    preprocessing (so parity sees the value range apps feed); for RAW models, normalised sensor values
    (uniform in [-0.02, 1.02): black-level noise dips below 0, unclipped highlights pass 1);
    otherwise standard normal."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        arrays = []
        for spec in metadata.inputs:
            if metadata.preprocessing is not None and len(metadata.inputs) == 1:
                from mobilevision.runtime.tasks.classify import preprocess

                h, w = spec.shape[2] + 37 * i, spec.shape[3] + 23 * (n - i)
                image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
                arrays.append(preprocess(image, metadata.preprocessing))
            elif metadata.raw is not None:
                arrays.append(rng.uniform(-0.02, 1.02, spec.shape).astype(spec.dtype))
            else:
                arrays.append(rng.standard_normal(spec.shape).astype(spec.dtype))
        samples.append(arrays)
    return samples


def within(o: "OutputParity", tol: Tolerance) -> bool:
    """One output's verdict: the error bound, and the cosine where the reference is more than rounding noise."""
    return bool(np.isfinite(o.max_abs) and o.max_abs <= tol.atol + tol.rtol * o.reference_max_abs
                and (o.cosine >= tol.min_cosine or o.reference_max_abs <= tol.atol))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return float(a @ b / (na * nb))


PROBABILITY_FLOOR = 1e-30   # log-probabilities of classes a float32 softmax rounds to 0 compare as log(1e-30)


def _centred_log(p: np.ndarray) -> np.ndarray:
    """log p minus its mean over the classes (every axis after the sample and batch axes)."""
    z = np.log(np.maximum(p, PROBABILITY_FLOOR))
    return z - z.reshape(z.shape[0], z.shape[1], -1).mean(axis=-1).reshape(z.shape[:2] + (1,) * (z.ndim - 2))


def compare(reference: list[list[np.ndarray]], actual: list[list[np.ndarray]], output_names: list[str],
            precision: str, task: str, probabilities: bool = False) -> tuple[list[OutputParity], float | None, bool]:
    """Per-output error statistics over all samples, top-1 agreement, and the pass verdict.

    ``probabilities``: the first output is a softmax (a classifier with ``scores: "probabilities"``); it is
    compared as log-probabilities, the logits up to a constant per sample, so the tolerances keep the meaning
    they have for logits (probabilities near 1 / N would pass any absolute tolerance): log(p) minus its mean over
    the classes, which is the logits minus theirs."""
    tol = TOLERANCES[precision]
    outputs = []
    for k, name in enumerate(output_names):
        # samples joined along the batch axis (a dynamic-batch check runs batches of several), then one sample
        # axis in front: (inputs, 1, ...) as _centred_log expects
        ref = np.concatenate([np.atleast_1d(np.asarray(s[k], np.float64)) for s in reference])[:, None]
        act = np.concatenate([np.atleast_1d(np.asarray(s[k], np.float64).reshape(np.shape(r[k])))
                              for s, r in zip(actual, reference)])[:, None]
        if probabilities and k == 0:
            ref, act = (_centred_log(a) for a in (ref, act))
        err = np.abs(ref - act)
        outputs.append(OutputParity(name, float(err.max()), float(err.mean()), _cosine(ref, act),
                                    float(np.abs(ref).max())))
    top1 = None
    if classifier_output(task):   # class scores: does the arg-max agree
        agree = [np.argmax(np.reshape(r[0], (len(r[0]), -1)), axis=1) == np.argmax(
            np.reshape(a[0], (len(r[0]), -1)), axis=1) for r, a in zip(reference, actual)]
        top1 = float(np.mean(np.concatenate(agree)))
    passed = all(within(o, tol) for o in outputs)
    return outputs, top1, passed
