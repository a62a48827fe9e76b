"""``export(model_or_name, target, ...)``: convert, embed metadata, prove parity, write atomically.

``prepare`` builds the module and the target-independent metadata once; ``export_prepared`` runs one target
through the stages of ``export/stages.py`` (calibrate -> convert -> save -> validate -> parity -> accuracy -> speed ->
finalise): the artifact is written into a scratch folder inside ``out_dir``, run in its own runtime and
compared with PyTorch, rewritten with the parity report in its metadata, re-run to prove the rewrite changed
nothing, and moved (with its sidecar ``<artifact>.json``) into place. A failed check raises and leaves
nothing under the final name.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

import mobilevision
from mobilevision.errors import ExportError, MobileVisionError, UnknownTarget
from mobilevision.registry import ModelCard
from mobilevision.tasks import get_task

from . import stages
from .metadata import ModelMetadata, Preprocessing, RawInput, TensorSpec
from .own_model import OwnModel
from .stages import PRECISIONS, ExportResult, Progress, QuantizeOptions, files_size
from .targets import DEFAULT_TARGET, TARGETS, get_target

__all__ = ["PRECISIONS", "ExportFailure", "ExportResult", "PreparedModel", "QuantizeOptions", "export", "export_all",
           "export_prepared", "files_size", "prepare", "resolve_targets"]


@dataclass
class ExportFailure:
    model: str
    target: str
    precision: str
    error: str


@dataclass
class PreparedModel:
    """A model ready to export: module in eval mode, its card, and the metadata common to all targets.
    ``examples``: one example tensor per model input (``example`` is the first)."""

    module: torch.nn.Module
    card: ModelCard
    input_size: tuple[int, ...]
    base: ModelMetadata
    example: torch.Tensor = field(repr=False)
    trained_on: dict = field(default_factory=dict)   # the run card's task options (data, category), if any
    samples: dict = field(default_factory=dict, repr=False)   # task data read once for several targets
    examples: tuple[torch.Tensor, ...] = field(default=(), repr=False)
    fixed_batch: str | None = None     # why the module cannot take another batch size (a static .pt2)
    max_batch: int = 1024              # the largest batch a dynamic-batch artifact takes

    def __post_init__(self) -> None:
        if not self.examples:
            self.examples = (self.example,)


def _adopt(model_or_name, weights, imgsz, num_classes, checkpoint_key, seed, card, own, example_inputs):
    """(module, card, example inputs or None, why the batch is fixed or None): a zoo model, a module with a card,
    a user's module or .pt2."""
    from .own_model import (check_traceable, load_program, model_name, own_card, program_examples,
                            program_max_batch, program_module, static_batch)

    program_file = isinstance(model_or_name, (str, Path)) and Path(model_or_name).suffix.lower() == ".pt2"
    if isinstance(model_or_name, str) and not program_file:
        if own is not None or card is not None or example_inputs is not None:
            raise ExportError(f"{model_or_name} is a zoo model: task, mean, std, labels, card and example_inputs "
                              "are for your own modules and .pt2 files")
        torch.manual_seed(seed)  # random-init exports are reproducible
        module = mobilevision.create_model(model_or_name, weights=weights, num_classes=num_classes,
                                           checkpoint_key=checkpoint_key)
        return module, module.model_card, None, (None, 1024)
    fixed, max_batch = None, 1024
    if program_file:
        if own is None:
            raise ExportError(f"{Path(model_or_name).name} is a torch.export program with no model card: give its "
                              "task (--task classify|anomaly|landmarks) and its normalisation (--mean, --std)")
        program = load_program(model_or_name)
        with stages.TRACING:
            module = program_module(program)
        examples = program_examples(program, imgsz)
        fixed = static_batch(program)
        max_batch = program_max_batch(program) or max_batch
        own = replace(own, name=own.name if own.name != "model" else model_name(model_or_name))
    elif isinstance(model_or_name, torch.nn.Module):
        module = model_or_name
        card = card or getattr(module, "model_card", None)
        if card is not None:
            return module, card, tuple(example_inputs) if example_inputs is not None else None, (None, 1024)
        if own is None:
            raise ExportError("this module has no model card: give its task (task='classify', with mean, std and "
                              "labels), or card=ModelCard(...), or a zoo model name")
        if example_inputs is None and imgsz is None:
            raise ExportError("give example_inputs=(tensor, ...) (one per model input) or imgsz for a 3-channel "
                              "image input")
        examples = (tuple(example_inputs) if example_inputs is not None else
                    (torch.zeros(1, 3, int(imgsz), int(imgsz)),))
    else:
        raise ExportError(f"expected a model name, a .pt2 file or an nn.Module, got {type(model_or_name).__name__}")
    if not examples or not all(isinstance(e, torch.Tensor) for e in examples):
        raise ExportError("example_inputs must be a tuple of tensors, one per model input")
    module.eval()
    if not program_file:
        with stages.TRACING:
            check_traceable(module, examples)
    with torch.no_grad():
        out = module(*examples)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    if not all(isinstance(o, torch.Tensor) for o in outs):
        raise ExportError("the model must return a tensor or a tuple of tensors")
    return module, own_card(own, examples, outs), examples, (fixed, max_batch)


def prepare(model_or_name: str | Path | torch.nn.Module, weights: str | None = None, imgsz: int | None = None,
            num_classes: int | None = None, checkpoint_key: str | None = None, seed: int = 0, *,
            card: ModelCard | None = None, own: OwnModel | None = None,
            example_inputs: tuple[torch.Tensor, ...] | None = None) -> PreparedModel:
    """Build (or adopt) the module and the target-independent part of its metadata.

    ``model_or_name``: a zoo name, a module (with ``card``, a ``model_card`` attribute, or ``own``: the task and
    normalisation of a user's model), or a ``.pt2`` written by ``torch.export.save`` (with ``own``).
    ``example_inputs``: one tensor per input of a user's module (shapes and dtypes; values are redrawn)."""
    from mobilevision.checkpoints import sha256_of
    from mobilevision.complexity import count_macs, count_params

    module, card, given, (fixed, max_batch) = _adopt(model_or_name, weights, imgsz, num_classes, checkpoint_key,
                                                     seed, card, own, example_inputs)
    module.eval()
    h = int(imgsz) if imgsz is not None else None
    if h is not None and not 32 <= h <= 4096:
        raise ExportError(f"--imgsz {h} is out of range: use 32..4096 pixels")
    gen = torch.Generator().manual_seed(seed)
    if given is None:   # one image input of the card's size (or imgsz)
        c = card.input_size[0]
        size = (c, h or card.input_size[1], h or card.input_size[2])
        examples = (torch.randn(1, *size, generator=gen),)
    else:
        examples = tuple(torch.randn(tuple(e.shape), generator=gen).to(e.dtype) if e.is_floating_point()
                         else e.clone() for e in given)
        size = tuple(int(d) for d in examples[0].shape[1:])
    image = len(examples) == 1 and examples[0].dim() == 4
    with torch.no_grad():
        out = module(*examples)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    if len(card.output_names) != len(outs):
        raise ExportError(f"{card.name}: the card names {len(card.output_names)} outputs, the model returns "
                          f"{len(outs)}: fix output_names")
    extras = get_task(card.task).describe(card, outs)   # what the task adds (class count, landmark points)
    with stages.TRACING:
        macs = count_macs(module, size, inputs=examples)
    raw = (RawInput(black_level=list(card.raw_black_level), white_level=float(card.raw_white_level),
                    clip=bool(card.raw_clip)) if card.raw_black_level is not None else None)
    pre = None if raw is not None or not image else Preprocessing.for_card(card, size[1], size[2])
    names = card.input_names if len(card.input_names) == len(examples) else \
        tuple(f"input_{i}" for i in range(len(examples)))
    labels = list(card.labels) if card.labels else None
    base = ModelMetadata(
        task=card.task, model=card.name, target="", precision="",
        inputs=[TensorSpec(n, list(e.shape), str(e.dtype).replace("torch.", ""), card.layout if image else "")
                for n, e in zip(names, examples)],
        outputs=[TensorSpec(n, list(o.shape), "float32") for n, o in zip(card.output_names, outs)],
        preprocessing=pre, raw=raw, labels=labels, label_set=card.label_set,
        params=count_params(module), macs=macs, **extras,
        weights=Path(weights).name if weights else None,
        weights_sha256=sha256_of(weights) if weights else None)
    trained_on = {}
    if weights:
        from mobilevision.checkpoints import read_run_card

        run = read_run_card(weights) if Path(weights).suffix == ".safetensors" else None
        trained_on = dict(run.task_options) if run is not None else {}
        if run is not None and run.task == card.task:
            for name, value in get_task(card.task).describe_run(run).items():
                setattr(base, name, value)
    return PreparedModel(module, card, size, base, examples[0], trained_on, examples=examples, fixed_batch=fixed,
                         max_batch=max_batch)


def export_prepared(prep: PreparedModel, target: str, precision: str = "fp32", out_dir: str | Path = "exports",
                    name: str | None = None, parity_samples: int = 4, on_progress: Progress | None = None,
                    quantize: QuantizeOptions | None = None, layout: str | None = None,
                    dynamic_batch: bool = False) -> ExportResult:
    """Export an already-prepared model to one target through the stages of ``export/stages.py``.

    The artifact presents the interface its target declares (``export/interface.py``: TFLite takes an NHWC
    image, Core ML an image it normalises itself, their classifiers end in a softmax); ``layout`` ("NCHW" /
    "NHWC") overrides the target's default image layout where it can write both. Samples and references are
    made in the model's own terms and converted to the artifact's for every comparison.

    fp16 / bf16 / int8 exports also measure the task metric before and after on held-out data (``quantize``;
    defaults: the built-in data of the task, or what the weights were trained on); int8 calibrates on the
    task's training images. A loss past the task's threshold is returned in ``warnings``, with the layers
    to keep in float. ``dynamic_batch``: the artifact takes any batch size (targets with ``dynamic_batch``),
    checked at batch 1 and at a batch of all the parity inputs."""
    record = stages.plan(prep, target, precision, out_dir, name, quantize or QuantizeOptions(), layout,
                         parity_samples, on_progress, dynamic_batch)
    work = stages.scratch(record)
    try:
        for stage in stages.STAGES:
            stage(record)
        return record.result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _in_all(name: str) -> bool:
    try:
        return bool(getattr(get_target(name), "in_all", True))
    except UnknownTarget:   # its package is missing: kept, so that the export reports why
        return True


def resolve_targets(target: str | list[str]) -> list[str]:
    if target == "all":   # the targets that run on a usual machine (``in_all``); the others are asked for by name
        return [n for n in TARGETS if _in_all(n)]
    names = [target] if isinstance(target, str) else list(target)
    for n in names:
        if n not in TARGETS:
            raise UnknownTarget(f"unknown target {n!r}: choose one of {', '.join(TARGETS)} or 'all'")
    return names


def _own(task: str | None, mean, std, labels, card: ModelCard | None) -> OwnModel | None:
    """The user's task and normalisation as an OwnModel (None when none was given)."""
    if task is None:
        if any(v is not None for v in (mean, std, labels)):
            raise ExportError("mean, std and labels describe your own model: give its task too (task='classify', "
                              "'anomaly' or 'landmarks')")
        return None
    if card is not None:
        raise ExportError("give either card=ModelCard(...) or task= (with mean, std, labels), not both")
    return OwnModel(task, tuple(mean) if mean is not None else None, tuple(std) if std is not None else None,
                    tuple(str(x) for x in labels) if labels is not None else None)


def export(model_or_name: str | Path | torch.nn.Module, target: str | None = None, *, weights: str | None = None,
           imgsz: int | None = None, precision: str = "fp32", out_dir: str | Path = "exports",
           num_classes: int | None = None, checkpoint_key: str | None = None, name: str | None = None,
           on_progress: Progress | None = None, quantize: QuantizeOptions | None = None,
           layout: str | None = None, card: ModelCard | None = None, task: str | None = None,
           mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
           labels: list[str] | None = None, example_inputs: tuple[torch.Tensor, ...] | None = None,
           dynamic_batch: bool = False) -> ExportResult:
    """Export one model to one target (default: the registry's ``DEFAULT_TARGET``); raises ExportParityError if
    the artifact disagrees with PyTorch.

    ``model_or_name``: a zoo name, a ``.pt2`` (``torch.export.save``), or a module; a module without a model
    card takes ``card=ModelCard(...)``, or ``task`` with ``mean`` / ``std`` / ``labels`` and ``example_inputs``
    (one tensor per input; or ``imgsz`` for one 3-channel image)."""
    target = target or DEFAULT_TARGET
    if target == "all":
        raise UnknownTarget("export() writes one target; use export_all() for 'all'")
    (t,) = resolve_targets(target)
    prep = prepare(model_or_name, weights=weights, imgsz=imgsz, num_classes=num_classes,
                   checkpoint_key=checkpoint_key, card=card, own=_own(task, mean, std, labels, card),
                   example_inputs=example_inputs)
    return export_prepared(prep, t, precision, out_dir, name=name, on_progress=on_progress, quantize=quantize,
                           layout=layout, dynamic_batch=dynamic_batch)


def export_all(model_or_name: str | Path | torch.nn.Module, targets: str | list[str] = "all", *,
               precisions: tuple[str, ...] = ("fp32",), weights: str | None = None, imgsz: int | None = None,
               out_dir: str | Path = "exports", num_classes: int | None = None, checkpoint_key: str | None = None,
               on_progress: Progress | None = None, quantize: QuantizeOptions | None = None,
               layout: str | None = None, card: ModelCard | None = None, task: str | None = None,
               mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
               labels: list[str] | None = None, example_inputs: tuple[torch.Tensor, ...] | None = None,
               dynamic_batch: bool = False) -> list[ExportResult | ExportFailure]:
    """Export to several targets; one target's failure is recorded and the others still run. ``layout`` and
    ``dynamic_batch`` apply to the targets that can write them (the others keep their own: batch 1); ExportError
    when none can. The model arguments are ``export()``'s."""
    names = resolve_targets(targets)
    dynamic = {t: dynamic_batch and bool(getattr(get_target(t), "dynamic_batch", False)) for t in names}
    if dynamic_batch and not any(dynamic.values()):
        raise ExportError(f"no target among {', '.join(names)} writes a dynamic batch: drop --dynamic-batch")
    writes = {t: layout is None or layout.upper() in getattr(get_target(t), "layouts", ("NCHW",)) for t in names}
    if layout is not None and not any(writes.values()):
        raise ExportError(f"no target among {', '.join(names)} writes image inputs as {layout!r}: drop --layout")
    prep = prepare(model_or_name, weights=weights, imgsz=imgsz, num_classes=num_classes,
                   checkpoint_key=checkpoint_key, card=card, own=_own(task, mean, std, labels, card),
                   example_inputs=example_inputs)
    results: list[ExportResult | ExportFailure] = []
    for precision in precisions:
        for t in names:
            try:
                results.append(export_prepared(prep, t, precision, out_dir, on_progress=on_progress,
                                               quantize=quantize, layout=layout if writes[t] else None,
                                               dynamic_batch=dynamic[t] and precision != "int8"))
            except MobileVisionError as e:
                results.append(ExportFailure(prep.card.name, t, precision, str(e)))
    return results
