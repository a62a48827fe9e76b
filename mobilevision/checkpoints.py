"""Safe checkpoint loading: ``torch.load(weights_only=True)`` or safetensors, strict keys.

Nothing here unpickles arbitrary objects, and every failure is a one-line
WeightsError / IncompatibleWeights naming the file and the offending keys.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch

from .errors import IncompatibleWeights, WeightsError
from .run_card import CHECKPOINT_FORMAT, RunCard, read_run_card_file

_MAX_LISTED = 4


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_checkpoint(path: str | os.PathLike) -> Any:
    """Load a checkpoint object from a local ``.pt/.pth/.ckpt`` or ``.safetensors`` file."""
    p = Path(path)
    if str(path).startswith(("http://", "https://")):
        raise WeightsError(f"weights must be a local file, got a URL: {path} (download it first)")
    if not p.is_file():
        raise WeightsError(f"weights file not found: {p} (pass the path of a local checkpoint)")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except (SafetensorError, OSError, ValueError) as e:
            raise WeightsError(f"corrupt safetensors file {p}: {e}") from e
    try:
        return torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = str(e)
        m = re.search(r"GLOBAL (\S+)", detail)  # a class or function reference: code, not just tensors
        if m:
            raise WeightsError(f"{p} holds Python objects beyond tensors ({m.group(1)}) and is refused for safety "
                               "(weights_only loading): load it yourself where you trust its source and save "
                               "model.state_dict() with torch.save or safetensors") from e
        m = re.search(r"WeightsUnpickler error:\s*(\S.*)", detail)
        reason = m.group(1).strip() if m else type(e).__name__
        raise WeightsError(f"cannot read checkpoint {p}: {reason[:120]} (is it a PyTorch file?)") from e
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError, IndexError,
            TypeError, AttributeError, UnicodeDecodeError) as e:  # what torch.load raises on non-checkpoints
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(f"cannot read checkpoint {p}: {first[:160]} (is it a PyTorch file?)") from e


def _check_keys(obj: Any, path: Path) -> None:
    """The checkpoint's top-level keys and its state dict's keys are strings (nested optimizer states may
    use integers, so only those two levels are checked)."""
    bad = [k for k in obj if not isinstance(k, str)] if isinstance(obj, dict) else []
    if bad:
        raise WeightsError(f"{path}: keys are not strings ({', '.join(repr(k) for k in bad[:_MAX_LISTED])}): "
                           "a state dict maps parameter names to tensors; re-save it with model.state_dict()")


def _as_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(obj, dict) or not obj:
        raise WeightsError(f"{path} is not a state dict (got {type(obj).__name__})")
    _check_keys(obj, path)
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"{path}: entries are not tensors ({', '.join(map(str, bad[:_MAX_LISTED]))}); "
                           "pass a state dict or a checkpoint whose container key is known")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def _check_values(sd: dict[str, torch.Tensor], own: dict[str, torch.Tensor], path: Path) -> None:
    """Floating parameters get floating values (float16/64 are cast on load; integers would truncate),
    and every floating value is finite: NaN/Inf weights are refused here, not at parity minutes later."""
    ints = [f"{k} ({str(v.dtype).removeprefix('torch.')})" for k, v in sd.items()
            if k in own and own[k].is_floating_point() and not v.is_floating_point()]
    if ints:
        raise IncompatibleWeights(f"{path}: {_listed(ints)} are not floating point where the model has float "
                                  "weights (a quantised or converted file?): save float32 weights")
    bad = [k for k, v in sd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise WeightsError(f"{path}: {_listed(bad)} hold NaN/Inf values (a diverged run or a damaged file): "
                           "use an earlier checkpoint")


def _listed(keys: list[str]) -> str:
    more = f" (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return ", ".join(keys[:_MAX_LISTED]) + more


def load_into(model: torch.nn.Module, path: str | os.PathLike,
              extractor: Callable[..., Any] | None = None, key: str | None = None,
              drop_prefixes: tuple[str, ...] = ()) -> None:
    """Load a checkpoint strictly into ``model``.

    ``extractor(obj, key)`` unwraps a training container; classifier keys
    (``drop_prefixes``) are skipped when their shapes differ (a new class count).
    """
    p = Path(path)
    obj = read_checkpoint(path)
    _check_keys(obj, p)
    if extractor is not None:
        obj = extractor(obj, key=key, path=p)
    sd = _as_state_dict(obj, p)
    own = model.state_dict()
    dropped = {k for k in sd if k.startswith(drop_prefixes) and k in own and own[k].shape != sd[k].shape}
    for k in dropped:  # fine-tuning to another class count: keep the fresh classifier
        del sd[k]
    missing = [k for k in own if k not in sd and k not in dropped]
    unexpected = [k for k in sd if k not in own]
    shape = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}"
             for k in sd if k in own and sd[k].shape != own[k].shape]
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"missing keys: {_listed(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_listed(unexpected)}")
        if shape:
            parts.append(f"shape mismatch: {_listed(shape)}")
        name = type(model).__name__
        raise IncompatibleWeights(f"{p} does not fit {name}: " + "; ".join(parts)
                                  + " (is it a checkpoint of this model variant?)")
    _check_values(sd, own, p)
    model.load_state_dict(sd, strict=False)


RUN_CARD_FORMAT = CHECKPOINT_FORMAT   # "mobilevision-checkpoint": the card beside trained weights


def run_card_path(weights: str | os.PathLike) -> Path:
    """The JSON that a training run writes beside its weights (``best.safetensors`` -> ``best.json``)."""
    return Path(weights).with_suffix(".json")


def read_run_card(weights: str | os.PathLike) -> RunCard | None:
    """The run card of a checkpoint written by ``mobilevision train`` (model, task, labels, input
    size, normalisation, epoch, metrics), or None for any other checkpoint. A card that is there but
    unreadable, damaged or from a newer mobilevision is a one-line WeightsError."""
    card = run_card_path(weights)
    if str(weights).startswith(("http://", "https://")) or not card.is_file():
        return None
    return read_run_card_file(card, formats=(CHECKPOINT_FORMAT,))


def extract_torchvision_state_dict(obj: Any, key: str | None = None, path: Any = None) -> Any:
    """A torchvision classification file is a plain state dict; add the BN ``num_batches_tracked`` counters
    that old files (e.g. ``mobilenet_v2-b0353104.pth``, pre-2018 ResNets) lack, as BN's own loader does.
    Usable as a registry ``checkpoint_extractor``."""
    if key is not None:
        where = f"{path}: " if path is not None else ""
        raise WeightsError(f"{where}torchvision weights are a plain state dict; drop checkpoint key {key!r}")
    if not isinstance(obj, dict):
        return obj
    sd = dict(obj)
    for k in list(sd):
        if isinstance(k, str) and k.endswith(".running_mean"):
            sd.setdefault(k[: -len("running_mean")] + "num_batches_tracked", torch.tensor(0, dtype=torch.long))
    return sd
