"""How an artifact presents the model to its consumers, and the conversions between the two views.

The export pipeline works in the model's own terms: an NCHW float32 input normalised as the card says, and
for classifiers logits. A target may present a different interface, because the consumers of its format
expect one (``export/targets/*``, class attributes):

- ``layouts``: the image input layouts it can write, its default first. TFLite writes NHWC (``[1, H, W, 3]``,
  the format's convention and what MediaPipe Tasks and LiteRT's GPU delegate take); the transpose is in the graph.
- ``input_normalization``: "model" when the artifact takes the resized RGB pixels (uint8) and applies
  scale / mean / std itself (a Core ML image input); "uniform" when the app's normalisation must be the same
  for every channel (MediaPipe Tasks normalise all channels alike): a per-channel mean / std (ImageNet's) then
  moves into the graph and the app feeds ``pixel * scale``; "app" (default) when the app feeds normalised floats.
- ``classifier_scores``: "probabilities" when a classifier's graph ends in a softmax (consumers that report
  the output as scores: MediaPipe, Core ML's classifier), "logits" (default) otherwise.

:func:`artifact_metadata` turns the model's metadata into the artifact's; :func:`to_artifact_inputs` and
:func:`to_artifact_outputs` turn model-side samples and reference outputs into what the artifact takes and
gives, so parity compares like with like. Torch-free.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from mobilevision.errors import ExportError
from mobilevision.tasks import classifier_output

from .metadata import IMAGE_LAYOUTS, ModelMetadata, TensorSpec

PIXEL_ROUNDTRIP_ATOL = 1e-3   # a normalised input that came from uint8 pixels inverts to within this of an integer


def _image_input(md: ModelMetadata) -> bool:
    """Whether the model's one input is an image the app preprocesses (classify, anomaly, landmarks)."""
    return md.preprocessing is not None and len(md.inputs) == 1 and md.inputs[0].layout in IMAGE_LAYOUTS


def artifact_metadata(md: ModelMetadata, target, layout: str | None = None) -> ModelMetadata:
    """The metadata of ``target``'s artifact of a model described (in its own NCHW terms) by ``md``.

    ``layout``: the image input layout asked for (None: the target's default); ExportError if the target
    cannot write it."""
    layouts = tuple(getattr(target, "layouts", ("NCHW",)))
    if layout is not None and layout.upper() not in layouts:
        raise ExportError(f"target {target.name} writes image inputs as {' or '.join(layouts)}, not {layout!r}: "
                          f"drop --layout for this target")
    out = replace(md)
    if _image_input(md):
        want = (layout or layouts[0]).upper()
        normalization = getattr(target, "input_normalization", "app")
        spec = md.inputs[0]
        n, c, h, w = spec.shape
        out.inputs = [TensorSpec(spec.name, [n, h, w, c] if want == "NHWC" else [n, c, h, w],
                                 "uint8" if normalization == "model" else spec.dtype, want)]
        pre = md.preprocessing
        if normalization == "uniform":
            uniform = len(set(pre.mean)) == 1 and len(set(pre.std)) == 1
            out.preprocessing = replace(pre, layout=want, mean=pre.mean if uniform else [0.0] * 3,
                                        std=pre.std if uniform else [1.0] * 3)
        else:
            out.preprocessing = replace(pre, layout=want, normalization=normalization)
    if classifier_output(md.task):
        out.scores = getattr(target, "classifier_scores", "logits")
        if out.scores == "probabilities" and out.outputs:
            first = out.outputs[0]
            out.outputs = [TensorSpec("probabilities", list(first.shape), first.dtype, first.layout), *out.outputs[1:]]
    return out


def _affine(pre) -> tuple[np.ndarray, np.ndarray]:
    """(gain, offset), NCHW-broadcastable, of the input a preprocessing makes from pixels: pixel * gain + offset
    (the pixels themselves for a model that normalises inside)."""
    if pre.normalization == "model":
        return np.ones((1, 3, 1, 1)), np.zeros((1, 3, 1, 1))
    std = np.asarray(pre.std, np.float64).reshape(1, 3, 1, 1)
    return pre.scale / std, -np.asarray(pre.mean, np.float64).reshape(1, 3, 1, 1) / std


def graph_affine(model_pre, artifact_pre) -> tuple[np.ndarray, np.ndarray]:
    """(gain, offset), shaped (1, 3, 1, 1), that the artifact's graph applies to its input (NCHW) to make the
    model's: the part of the model's normalisation the app no longer does."""
    g_m, o_m = _affine(model_pre)
    g_a, o_a = _affine(artifact_pre)
    return g_m / g_a, o_m - o_a * g_m / g_a


def to_artifact_inputs(arrays: list[np.ndarray], model: ModelMetadata, artifact: ModelMetadata) -> list[np.ndarray]:
    """Model-side inputs (NCHW, normalised) as ``artifact`` takes them: renormalised as its app does, transposed
    to its layout, and for an artifact that normalises itself the uint8 pixels they came from (ExportError if
    they did not)."""
    if not _image_input(model) or model.preprocessing == artifact.preprocessing:
        return list(arrays)
    x = np.asarray(arrays[0])
    pre = artifact.preprocessing
    g_m, o_m = _affine(model.preprocessing)
    pixels = (x.astype(np.float64) - o_m) / g_m   # the 0..255 values the model's input was made from
    if pre.normalization == "model":
        if np.abs(pixels - np.rint(pixels)).max(initial=0.0) > PIXEL_ROUNDTRIP_ATOL or \
                pixels.min(initial=0.0) < -0.5 or pixels.max(initial=0.0) > 255.5:
            raise ExportError("this artifact takes image pixels: its check inputs must be preprocessed uint8 images, "
                              "not arbitrary arrays")
        x = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    elif (pre.scale, pre.mean, pre.std) != (model.preprocessing.scale, model.preprocessing.mean,
                                            model.preprocessing.std):
        g_a, o_a = _affine(pre)
        x = (pixels * g_a + o_a).astype(x.dtype)
    if pre.layout == "NHWC":
        x = x.transpose(0, 2, 3, 1)
    return [np.ascontiguousarray(x), *arrays[1:]]


def to_artifact_outputs(outputs: list[np.ndarray], model: ModelMetadata, artifact: ModelMetadata) -> list[np.ndarray]:
    """Model-side outputs (classifier logits) as ``artifact`` gives them (probabilities when its graph ends in a
    softmax)."""
    if classifier_output(model.task) and artifact.scores == "probabilities" and model.scores != "probabilities":
        from mobilevision.runtime.tasks.classify import softmax

        z = np.asarray(outputs[0])
        p = softmax(z.reshape(z.shape[0], -1)).reshape(z.shape)   # the classes: every axis after the batch
        return [p.astype(z.dtype), *outputs[1:]]
    return list(outputs)
