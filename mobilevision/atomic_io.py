"""Atomic file writes: write beside the destination, fsync, then ``os.replace``.

An interrupted write never leaves a half-written file under the final name. Used by the
exporter (artifacts, sidecars), the benchmark runner (JSON) and checkpoints.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import uuid
from pathlib import Path
from typing import Iterator


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


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``folder`` itself (no lock file is left behind): writers that replace
    several files of one artifact take turns, so their renames never interleave. No-op where flock is absent."""
    try:
        import fcntl
    except ImportError:   # Windows
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)   # closing releases the lock


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


SCRATCH_OWNER = ".owner-pid"   # inside a scratch folder: "<pid> <process start time>" of the writer


def _identity(pid: int) -> str:
    """'<pid> <start time>': a pid alone is reused by later processes, the pair is not."""
    import psutil

    return f"{pid} {psutil.Process(pid).create_time():.3f}"


def make_scratch_dir(folder: str | os.PathLike, prefix: str) -> Path:
    """A hidden scratch folder inside ``folder`` (same filesystem, so its files rename into place), marked
    with this process's identity so that one a killed process left behind can be told from one in use."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=folder))
    (d / SCRATCH_OWNER).write_text(_identity(os.getpid()))
    return d


def _owner(d: Path) -> str | None:
    """The owner line of a scratch folder, read without blocking (a FIFO or device there is no owner)."""
    try:
        fd = os.open(d / SCRATCH_OWNER, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, 64).decode("ascii", "replace").strip()
    finally:
        os.close(fd)


def remove_stale_scratch(folder: str | os.PathLike, prefix: str = ".") -> list[Path]:
    """Remove the scratch folders (``make_scratch_dir``) in ``folder`` whose process is gone; returns them.
    Folders of running processes, and anything not marked as scratch, are left alone."""
    removed = []
    for d in Path(folder).glob(f"{prefix}*"):
        owner = _owner(d) if d.is_dir() and not d.is_symlink() else None
        if owner is None:
            continue
        pid, _, started = owner.partition(" ")
        if not pid.isdigit() or int(pid) <= 0 or _process_alive(int(pid), started):
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


def _process_alive(pid: int, started: str = "") -> bool:
    """Whether process ``pid`` runs and, when ``started`` (its start time) is known, is the same process."""
    import psutil

    try:
        if started:
            return f"{psutil.Process(pid).create_time():.3f}" == started
        return psutil.pid_exists(pid)
    except (psutil.NoSuchProcess, psutil.ZombieProcess, OverflowError, ValueError):
        return False
    except psutil.AccessDenied:
        return True
