"""The contract every export target implements (one file per format).

``convert(module, example, options) -> handle`` builds the artifact in memory,
``save(handle, path, metadata_json) -> files`` writes it with the metadata embedded,
``validate(path) -> dict`` describes what was written (inputs, outputs, op types).
``runtime`` names the backend that runs it for parity (None: numeric parity impossible here).
"""
from __future__ import annotations

import contextlib
import io
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch


@dataclass
class ExportOptions:
    precision: str = "fp32"                       # "fp32" | "fp16" | "int8"
    input_names: tuple[str, ...] = ("image",)
    output_names: tuple[str, ...] = ("logits",)
    opset: int = 18
    workdir: Path = field(default_factory=Path.cwd)  # scratch space inside the output folder
    # int8 only: calibration inputs, each an array shaped like the model input (1, C, H, W) float32,
    # already preprocessed exactly as the artifact's metadata says an app feeds it.
    calibration: list[Any] = field(default_factory=list)
    # int8 only: PyTorch module paths (prefixes, e.g. "head" or "stages.3.0") whose layers stay float.
    keep_float: tuple[str, ...] = ()
    # Filled by the target's int8 conversion: which tool and scheme it used, which of its own layers
    # it kept in float, anything the sidecar should record (JSON-serialisable values).
    quantization: dict[str, Any] = field(default_factory=dict)
    # The artifact's metadata (export/interface.py): the interface the converted graph must present (input
    # layout and dtype, who normalises, classifier scores). The module and example stay in the model's terms,
    # described by ``model_metadata``.
    metadata: Any = None
    model_metadata: Any = None
    # The artifact takes any batch size (its first dimension, -1 in the metadata): targets with ``dynamic_batch``
    # convert with ``batched_args`` and ``batch_dims``. Default: batch 1, static, as mobile runtimes prefer.
    dynamic_batch: bool = False
    max_batch: int = 1024
    # int8 only, set by the target: its fp32 program, saved in ``workdir`` as the runtime opens it, from which
    # the int8 artifact was quantised (export/speed.py times the two); None where the target keeps none.
    float_program: Path | None = None


class Target(Protocol):
    """Everything about one format. Optional class attributes: ``tools`` (packages whose versions go into the
    metadata), ``directory`` (the artifact is a folder), ``int8_calibrates`` (default True), ``in_all`` (default
    True: part of ``--target all``; False for variants that need hardware or SDKs most machines lack),
    ``dynamic_batch`` (default False: it can write a batch-dynamic artifact, ``ExportOptions.dynamic_batch``), and the artifact
    interface of ``export/interface.py`` (``layouts``, ``input_normalization``, ``classifier_scores``)."""

    name: str
    suffix: str
    runtime: str | None
    precisions: tuple[str, ...]

    def convert(self, module: torch.nn.Module, example: torch.Tensor, options: ExportOptions) -> Any: ...

    def save(self, handle: Any, path: Path, metadata_json: str) -> list[Path]: ...

    def validate(self, path: Path) -> dict[str, Any]: ...

    def numeric_parity_unavailable(self) -> str | None: ...

    def unavailable(self) -> str | None:
        """Why this target cannot export on this machine (a package missing, a system it needs), in one line
        naming the fix; None when it can. Checked before converting; tests skip a target with this reason."""
        ...


class ArtifactModule(torch.nn.Module):
    """The model (child ``model``) as its artifact presents it (``export/interface.py``): an NHWC input
    transposed to NCHW, the part of the model's normalisation the app does not do (uint8 pixels, or ImageNet's
    per-channel mean / std where the app's must be uniform) applied in the graph, a classifier's logits turned
    into probabilities. ``pixels`` False: the format's input description normalises (Core ML's ImageType
    scale / bias), the graph does not."""

    def __init__(self, model: torch.nn.Module, metadata: Any, pixels: bool = True, model_pre: Any = None,
                 conv_affine: bool = False):
        from mobilevision.export.interface import graph_affine

        super().__init__()
        self.model = model
        pre = metadata.preprocessing
        self.nhwc = pre is not None and pre.layout == "NHWC"
        self.softmax = metadata.scores == "probabilities"
        self.affine = False
        # the same x * gain + offset as a per-channel 1x1 convolution: LiteRT's converter cannot lower a broadcast
        # against a dynamic batch (litert-torch 0.10), a convolution it can
        self.conv_affine = conv_affine
        if pixels and pre is not None:
            if model_pre is None:   # "model": the artifact's record holds the model's own scale / mean / std
                model_pre = replace(pre, normalization="app") if pre.normalization == "model" else pre
            gain, offset = graph_affine(model_pre, pre)
            if not (np.allclose(gain, 1.0, rtol=0, atol=1e-12) and np.allclose(offset, 0.0, rtol=0, atol=1e-12)):
                self.affine = True   # x -> x * gain + offset, per channel
                self.register_buffer("gain", torch.tensor(gain, dtype=torch.float32), persistent=False)
                self.register_buffer("offset", torch.tensor(offset, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor, *rest: torch.Tensor):
        if self.nhwc:
            x = x.permute(0, 3, 1, 2)
        if self.affine and self.conv_affine:
            x = torch.nn.functional.conv2d(x.float(), self.gain.reshape(-1, 1, 1, 1), self.offset.reshape(-1),
                                           groups=self.gain.numel())
        elif self.affine:
            x = x.float() * self.gain + self.offset
        y = self.model(x, *rest)
        if not self.softmax:
            return y
        if isinstance(y, (tuple, list)):   # the first output is the classifier's; the others pass through
            return (probabilities(y[0]), *y[1:])
        return probabilities(y)


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over a classifier's classes: every axis after the batch (a conv head's [1, N, 1, 1] included)."""
    if logits.dim() == 2:   # [batch, classes]: no reshapes, which a dynamic batch would make symbolic
        return torch.softmax(logits, dim=-1)
    return torch.softmax(logits.flatten(1), dim=-1).reshape(logits.shape)


def artifact_module(module: torch.nn.Module, example: torch.Tensor, metadata: Any, pixels: bool = True,
                    model_pre: Any = None, conv_affine: bool = False) -> tuple[torch.nn.Module, torch.Tensor]:
    """The module and an example input as the artifact described by ``metadata`` takes them; unchanged when
    its interface is the model's own (``model_pre``: the model's preprocessing, when the artifact's differs
    in more than layout and who normalises). A pixel example holds random 0..255 integers (as float32)."""
    pre = metadata.preprocessing if metadata is not None else None
    wrapped = ArtifactModule(module, metadata, pixels, model_pre, conv_affine).eval() if metadata is not None else None
    if wrapped is None or not (wrapped.nhwc or wrapped.affine or wrapped.softmax):
        return module, example
    if isinstance(example, tuple):   # several inputs: only a single image input is ever re-laid or normalised
        return wrapped, example
    x = example
    if pre is not None and pre.normalization == "model":
        x = torch.randint(0, 256, tuple(example.shape), generator=torch.Generator().manual_seed(0)).float()
    if pre is not None and pre.layout == "NHWC":
        x = x.permute(0, 2, 3, 1).contiguous()
    return wrapped, x


def needs_packages(**modules: str) -> str | None:
    """``unavailable()``'s usual answer: the first of ``module=package`` not importable here, as one line."""
    import importlib.util

    for module, package in modules.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return f"needs the '{package}' package, which is not installed: pip install 'mobilevision[export]'"
    return None


def as_args(example: "torch.Tensor | tuple[torch.Tensor, ...]") -> tuple[torch.Tensor, ...]:
    """The positional arguments of a model call: the example, or the examples of a model with several inputs."""
    return tuple(example) if isinstance(example, (tuple, list)) else (example,)


MAX_BATCH = 1024


def batched_args(example: "torch.Tensor | tuple[torch.Tensor, ...]") -> tuple[torch.Tensor, ...]:
    """The examples at batch 2: traced at batch 1, torch.export would fix the batch dimension to 1."""
    return tuple(torch.cat([a, a], dim=0) for a in as_args(example))


def batch_dims(example: "torch.Tensor | tuple[torch.Tensor, ...]", max_batch: int = MAX_BATCH
               ) -> tuple[dict[int, Any], ...]:
    """torch.export ``dynamic_shapes`` making the first dimension of every input one batch of 1..``max_batch``
    (a bound: LiteRT's converter needs one; a loaded program brings its own, ``ExportOptions.max_batch``)."""
    batch = torch.export.Dim("batch", min=1, max=int(max_batch))
    return tuple({0: batch} for _ in as_args(example))


def op_histogram(op_types) -> dict[str, int]:
    return dict(sorted(Counter(op_types).items()))


@contextlib.contextmanager
def quiet_converters():
    """Silence converters that print progress to stdout/stderr (torch.onnx, coremltools, MLIR)."""
    buf_out, buf_err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buf_out), contextlib.redirect_stderr(buf_err):
        # native code (MLIR, XNNPACK) writes to fd 1/2 directly; silence those too
        saved = [os.dup(1), os.dup(2)]
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in (*saved, devnull):
                os.close(fd)
