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


SCRATCH_OWNER = ".owner-pid"   # inside a scratch folder: the process writing it


def make_scratch_dir(folder: str | os.PathLike, prefix: str) -> Path:
    """A hidden scratch folder inside ``folder`` (same filesystem, so its files rename into place), marked
    with this process's id so that one a killed process left behind can be told from one in use."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=folder))
    (d / SCRATCH_OWNER).write_text(str(os.getpid()))
    return d


def remove_stale_scratch(folder: str | os.PathLike, prefix: str = ".") -> list[Path]:
    """Remove the scratch folders (``make_scratch_dir``) in ``folder`` whose process is gone; returns them.
    Folders of running processes, and anything not marked as scratch, are left alone."""
    removed = []
    for d in Path(folder).glob(f"{prefix}*"):
        try:
            pid = int((d / SCRATCH_OWNER).read_text().strip())
        except (OSError, ValueError):
            continue
        if pid != os.getpid() and not _process_alive(pid):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's process
        return True
    return True
