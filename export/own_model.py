"""The user's own model: a module (or a ``torch.export`` program saved as ``.pt2``) plus what its task needs.

    export(my_module, "onnx", task="classify", example_inputs=(torch.randn(1, 3, 224, 224),),
           mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), labels=["cat", "dog"])
    mobilevision export model.pt2 --task classify --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 \
        --labels labels.txt -t all

The result is a ``ModelCard`` like a zoo model's, so the same pipeline converts, checks parity and writes the
metadata. A ``.pt2`` is the code-free format ``torch.export.save`` writes; ``torch.export.load`` would fall
back to unpickling parts of it (pickled weights and constants, custom objects, sample inputs that
``weights_only`` refuses), so the archive is checked first and any pickled part is refused: like every
checkpoint here, a model file is data, never code.
"""
from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from mobilevision.errors import ExportError
from mobilevision.registry import ModelCard
from mobilevision.tasks import TASKS, get_task

MAX_PT2_BYTES = 4 << 30          # 4 GiB: larger than any mobile model
MAX_LABELS = 100_000
MAX_CONFIG_BYTES = 16 << 20      # a weights / constants index or sample inputs: small JSON / tensors


@dataclass
class OwnModel:
    """A module with no zoo card, and how to build one: the task and its preprocessing."""

    task: str
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    labels: tuple[str, ...] | None = None
    interpolation: str = "bilinear"
    resize_mode: str = "stretch"         # straight to the input size; "shorter_side" + crop_pct as timm
    crop_pct: float = 1.0
    name: str = "model"
    output_names: tuple[str, ...] | None = None


# ---------------------------------------------------------------- .pt2 files

def _pickled_parts(archive: zipfile.ZipFile) -> list[str]:
    """Parts of a ``torch.export.save`` archive that ``torch.export.load`` would unpickle."""
    found = []
    for name in archive.namelist():
        base = name.rsplit("/", 1)[-1]
        if re.fullmatch(r".*/data/(weights|constants)/[^/]+\.pt", name):
            found.append(f"{name} (legacy pickled {name.split('/')[-2]})")
        elif "/data/constants/" in name and base.startswith(("custom_obj", "opaque_obj")):
            found.append(f"{name} (a pickled object)")
        elif name.endswith(("_weights_config.json", "_constants_config.json")):
            if archive.getinfo(name).file_size > MAX_CONFIG_BYTES:
                raise ExportError(f"{name} in the .pt2 unpacks to {archive.getinfo(name).file_size} bytes, over "
                                  f"{MAX_CONFIG_BYTES}: not a file torch.export.save wrote")
            try:
                config = json.loads(archive.read(name)).get("config", {})
            except (ValueError, AttributeError) as e:
                raise ExportError(f"{name} in the .pt2 is not valid JSON ({e}): save the program again with "
                                  "torch.export.save") from e
            found += [f"{name}: {fqn} (pickled)" for fqn, meta in config.items()
                      if isinstance(meta, dict) and meta.get("use_pickle")]
    return found


def load_program(path: str | Path) -> torch.export.ExportedProgram:
    """A ``.pt2`` written by ``torch.export.save``, refused (one line) when it holds anything pickled."""
    p = Path(path)
    if not p.is_file():
        raise ExportError(f"{p}: no such file; give a .pt2 written by torch.export.save(program, path)")
    if p.stat().st_size > MAX_PT2_BYTES:
        raise ExportError(f"{p} is {p.stat().st_size / 2**30:.1f} GiB, over the 4 GiB a .pt2 may have here")
    try:
        with zipfile.ZipFile(p) as archive:
            names = archive.namelist()
            if not any(n.endswith("/archive_format") for n in names) or not any("/models/" in n for n in names):
                raise ExportError(f"{p} is a zip but not a torch.export archive (no archive_format / models/): save "
                                  "the program with torch.export.save; a pickled module (torch.save) is never loaded")
            pickled = _pickled_parts(archive) + [f"{n} (a pickle)" for n in names if n.endswith((".pkl", "/data.pkl"))]
            samples = [n for n in archive.namelist() if "/data/sample_inputs/" in n]
            for name in samples:   # torch.export.load retries these with weights_only=False
                if archive.getinfo(name).file_size > MAX_CONFIG_BYTES:
                    pickled.append(f"{name} (sample inputs of {archive.getinfo(name).file_size} bytes)")
                    continue
                try:
                    import io

                    torch.load(io.BytesIO(archive.read(name)), weights_only=True)
                except Exception as e:
                    pickled.append(f"{name} (sample inputs that need unpickling: {type(e).__name__})")
    except zipfile.BadZipFile as e:
        raise ExportError(f"{p} is not a .pt2 archive ({e}): save the program with torch.export.save(program, "
                          f"'{p.name}'); a pickled module (torch.save) is never loaded") from e
    if pickled:
        raise ExportError(f"{p} holds pickled data, which is not loaded (a model file is data, not code): "
                          f"{pickled[0]}{f' and {len(pickled) - 1} more' if len(pickled) > 1 else ''}; save "
                          "plain tensors (no custom objects) with torch.export.save")
    try:
        program = torch.export.load(str(p))
    except Exception as e:   # the deserialiser raises many types
        raise ExportError(f"torch.export.load could not read {p}: {str(e).strip().splitlines()[0][:200]}; "
                          "save it with the same torch version (this is torch " f"{torch.__version__})") from e
    if not isinstance(program, torch.export.ExportedProgram):
        raise ExportError(f"{p} holds a {type(program).__name__}, not an ExportedProgram")
    return program


def program_examples(program: torch.export.ExportedProgram, imgsz: int | None = None) -> tuple[torch.Tensor, ...]:
    """One example tensor per user input of ``program``, batch 1; a symbolic H / W takes ``imgsz``."""
    user = set(program.graph_signature.user_inputs)
    examples = []
    for node in program.graph.nodes:
        if node.op != "placeholder" or node.name not in user:
            continue
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            raise ExportError(f"input {node.name!r} of the program is not a tensor ({type(val).__name__}): "
                              "export a model whose inputs are tensors")
        shape = []
        for k, d in enumerate(val.shape):
            if isinstance(d, int):
                shape.append(d)
            elif k == 0:
                shape.append(1)     # a dynamic batch: exported at 1
            elif imgsz is not None and len(val.shape) == 4 and k >= 2:
                shape.append(int(imgsz))
            else:
                raise ExportError(f"input {node.name!r} has a dynamic dimension {k} ({d}): give --imgsz for a "
                                  "dynamic image size, or export the program with static shapes")
        if imgsz is not None and len(shape) == 4 and shape[2:] != [int(imgsz)] * 2:
            raise ExportError(f"the program was exported for {shape[2]}x{shape[3]} inputs, so --imgsz {imgsz} "
                              "cannot apply: drop --imgsz, or export the program with a dynamic H / W")
        examples.append(torch.zeros(shape, dtype=val.dtype))
    if not examples:
        raise ExportError("the program takes no tensor inputs")
    return tuple(examples)


def program_module(program: torch.export.ExportedProgram) -> torch.nn.Module:
    """The program's module (``ExportedProgram.module()``), which refuses ``train()`` / ``eval()``: an exported
    graph has no modes (it was captured in one), so its ``train`` / ``eval`` only keep the flag. Its forward keeps the
    program's own arguments, which ``torch.export``'s dynamic shapes are matched against."""
    import types

    graph = program.module()

    def train(self, mode: bool = True):
        self.training = mode
        return self
    graph.train = types.MethodType(train, graph)
    graph.eval = types.MethodType(lambda self: self.train(False), graph)
    return graph


def _user_frame(error: BaseException) -> str:
    """' at FILE:LINE (`code`)': where in the user's code tracing failed, as torch reports it or from the
    traceback's last frame outside torch and this package."""
    found = re.search(r'The following call raised this error:\s*File "([^"]+)", line (\d+), in \w+\s*\n\s*(.+)',
                      str(error))
    if found:
        return f" at {found.group(1)}:{found.group(2)} (`{found.group(3).strip()}`)"
    import traceback

    import mobilevision

    ours = (str(Path(__file__).resolve().parent), str(Path(mobilevision.__file__).resolve().parent),
            str(Path(torch.__file__).resolve().parent.parent))   # this package, and site-packages
    frames = [f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith(ours)]
    if frames:
        f = frames[-1]
        return f" at {f.filename}:{f.lineno} (`{(f.line or '').strip()}`)"
    return ""


def check_traceable(module: torch.nn.Module, examples: tuple[torch.Tensor, ...]) -> None:
    """ExportError naming the first place ``torch.export`` cannot trace, with the usual fix; every target
    converts through a trace, so a model that fails here would fail in each of them with a longer story."""
    from .targets.base import quiet_converters

    try:
        with quiet_converters():
            torch.export.export(module, examples, strict=False)
    except Exception as e:
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip() and not ln.startswith(" ")]
        reason = next((ln for ln in lines if not ln.startswith(("def ", "#"))), type(e).__name__)[:200]
        raise ExportError(f"torch.export cannot trace {type(module).__name__}: {reason}{_user_frame(e)}; make the "
                          "forward pass depend on shapes only (no Python `if` on tensor values, no .item(), "
                          ".numpy() or .tolist()); torch.export.draft_export(model, args) lists every such place") from e


def static_batch(program: torch.export.ExportedProgram) -> str | None:
    """Why ``program`` takes batch 1 only (its first input's batch dimension is a number), or None."""
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in program.graph_signature.user_inputs:
            val = node.meta.get("val")
            if isinstance(val, torch.Tensor) and val.dim() and isinstance(val.shape[0], int):
                return (f"the program was exported with a fixed batch of {val.shape[0]}: for --dynamic-batch export "
                        "it with dynamic_shapes={'x': {0: torch.export.Dim('batch')}} (and an example batch of 2)")
            return None
    return None


def program_max_batch(program: torch.export.ExportedProgram) -> int | None:
    """The largest batch a program with a dynamic batch was exported for (its range constraint), or None."""
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in program.graph_signature.user_inputs:
            val = node.meta.get("val")
            if not isinstance(val, torch.Tensor) or not val.dim() or isinstance(val.shape[0], int):
                return None
            bound = program.range_constraints.get(val.shape[0].node.expr)
            upper = getattr(bound, "upper", None)
            try:
                return int(upper)
            except (TypeError, ValueError, OverflowError):   # unbounded (int_oo)
                return None
    return None


# ---------------------------------------------------------------- the card

def _three(values: Sequence[float] | None, flag: str, channels: int) -> tuple[float, ...]:
    vals = tuple(float(v) for v in values)
    if len(vals) == 1:
        vals = vals * channels
    if len(vals) != channels or not all(v == v and abs(v) < 1e6 for v in vals):
        raise ExportError(f"{flag} takes {channels} finite numbers (one per channel), got {list(values)}")
    return vals


def read_labels(path: str | Path) -> tuple[str, ...]:
    """A labels file: one class name per line (UTF-8), blank lines at the end ignored."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ExportError(f"--labels {p}: no such file") from e
    except UnicodeDecodeError as e:
        raise ExportError(f"--labels {p} is not UTF-8 text: save it as UTF-8, one class name per line") from e
    names = text.rstrip("\n").split("\n") if text.strip() else []
    names = [n.rstrip("\r") for n in names]
    if not names or len(names) > MAX_LABELS:
        raise ExportError(f"--labels {p} holds {len(names)} names: give 1..{MAX_LABELS}, one per line")
    return tuple(names)


def own_card(own: OwnModel, examples: tuple[torch.Tensor, ...], outputs: list[torch.Tensor]) -> ModelCard:
    """The card of a user's model from its task, preprocessing flags and example inputs / outputs; ExportError
    naming the flag a task needs that is missing or wrong."""
    if own.task not in TASKS:
        raise ExportError(f"--task {own.task!r} is not a task: one of {', '.join(TASKS)}")
    task = get_task(own.task)
    first = examples[0]
    image = task.image_input and len(examples) == 1 and first.dim() == 4
    if task.image_input and len(examples) == 1 and not image:
        raise ExportError(f"a {own.task} model takes one image tensor [1, C, H, W]; this one takes "
                          f"{list(first.shape)}")
    if not task.image_input:
        raise ExportError(f"own {own.task} models need a RAW description (black / white levels): pass "
                          "card=ModelCard(...) to export() in Python")
    if first.dtype != torch.float32:
        raise ExportError(f"the model's input is {first.dtype}, not float32: export a model that takes float32")
    c = int(first.shape[1]) if first.dim() >= 2 else 1
    if image and c != 3:
        raise ExportError(f"a {own.task} model takes an RGB image [1, 3, H, W]; this one takes {list(first.shape)} "
                          "(the runtimes feed 3 channels): export a model with a 3-channel input")
    if own.labels is not None and not task.classifier:
        raise ExportError(f"--labels names classes, and a {own.task} model has none: drop --labels")
    if image:
        if own.mean is None:
            raise ExportError(f"a {own.task} model needs its input normalisation: give --mean (e.g. --mean "
                              "0.485,0.456,0.406 for ImageNet, or 0 for none)")
        if own.std is None:
            raise ExportError(f"a {own.task} model needs its input normalisation: give --std (e.g. --std "
                              "0.229,0.224,0.225 for ImageNet, or 1 for none)")
    mean = _three(own.mean, "--mean", c) if own.mean is not None else (0.0,) * 3
    std = _three(own.std, "--std", c) if own.std is not None else (1.0,) * 3
    if any(s <= 0 for s in std):
        raise ExportError(f"--std must be > 0 per channel, got {list(std)}")
    n_out = len(outputs)
    names = own.output_names or (("logits",) if task.classifier and n_out == 1 else
                                 tuple(f"output_{i}" for i in range(n_out)))
    if len(names) != n_out:
        raise ExportError(f"{len(names)} output names for a model with {n_out} outputs")
    labels = own.labels
    num_classes = int(outputs[0][0].numel()) if task.classifier else 0
    if labels is not None and task.classifier and len(labels) != num_classes:
        raise ExportError(f"--labels has {len(labels)} names but the model's first output has {num_classes} "
                          "classes: give one name per class")
    return ModelCard(name=own.name, task=own.task, input_size=tuple(int(d) for d in first.shape[1:]),
                     family="own model", mean=mean, std=std, interpolation=own.interpolation,
                     crop_pct=own.crop_pct, resize_mode=own.resize_mode, num_classes=max(num_classes, 1),
                     labels=labels, label_set="custom" if labels else None,
                     input_names=tuple(f"input_{i}" for i in range(len(examples))) if len(examples) > 1
                     else ("image" if image else "input",), output_names=names, classifier_prefixes=())


def model_name(path: str | Path) -> str:
    """An artifact name from a file name: letters, digits, '_', '-' and '.'."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(path).stem).strip("._") or "model"
    return stem[:64]
