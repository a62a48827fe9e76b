"""mobilevision: paper-faithful lightweight vision models for on-device inference.

The front door: ``create_model`` and ``list_models``. Importing this package does not
import torch, so ``mobilevision.runtime`` stays usable in a torch-free install.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .registry import ModelCard


def create_model(name: str, weights: str | None = None, num_classes: int | None = None,
                 **kwargs: Any) -> "torch.nn.Module":
    """Build zoo model ``name``; ``weights`` is a local checkpoint path (never a URL)."""
    from .registry import create_model as _create

    return _create(name, weights=weights, num_classes=num_classes, **kwargs)


def list_models(task: str | None = None) -> list[str]:
    """Names of the registered models, optionally only those of one task."""
    from .registry import list_models as _list

    return _list(task)


def get_model_card(name: str) -> "ModelCard":
    """The model card (task, input size, normalisation, labels) of zoo model ``name``."""
    from .registry import get_model_card as _card

    return _card(name)


__all__ = ["__version__", "create_model", "list_models", "get_model_card"]
