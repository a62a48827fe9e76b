"""Where built-in datasets are rendered on first use."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$MOBILEVISION_CACHE``, else ``$XDG_CACHE_HOME/mobilevision``, else ``~/.cache/mobilevision``."""
    if os.environ.get("MOBILEVISION_CACHE"):
        return Path(os.environ["MOBILEVISION_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mobilevision"
