"""Atomic file writes: write beside the destination, fsync, then ``os.replace``.

An interrupted write never leaves a half-written file under the final name. Used by the
exporter (artifacts, sidecars), the benchmark runner (JSON) and checkpoints.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; artifacts are ordinary files
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def move_into_place(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Rename a finished file or directory (e.g. a .mlpackage) onto ``dst`` atomically.

    ``src`` must be on the same filesystem. A directory already at ``dst`` is first renamed
    aside and removed only after the new one is in place.
    """
    s, d = Path(src), Path(dst)
    if s.is_dir():
        old = None
        if d.exists():
            old = d.with_name(f".{d.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(d, old)
        os.replace(s, d)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(s, d)
    return d


def atomic_save_figure(fig, path: str | os.PathLike, **savefig_kwargs) -> Path:
    """Render a matplotlib figure to PNG in memory, write it atomically, and close the figure."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", **savefig_kwargs)
    finally:
        plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
