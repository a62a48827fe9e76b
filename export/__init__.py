"""mobilevision.export: one pipeline from a PyTorch model to ONNX, TFLite, Core ML and OpenVINO.

``export`` / ``export_all`` need torch and are imported on first use, so that
``mobilevision.export.metadata`` (the schema the runtime reads) stays torch-free.
"""
from __future__ import annotations

from typing import Any

_LAZY = {"export", "export_all", "prepare", "export_prepared", "ExportResult", "ExportFailure"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'mobilevision.export' has no attribute {name!r}")


__all__ = sorted(_LAZY)
