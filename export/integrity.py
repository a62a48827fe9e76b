"""SHA-256 of every file of an artifact: recorded in its sidecar by the exporter, checked before a runtime
opens the artifact. A bit-flipped ``.onnx``, a ``.bin`` with bytes appended, or a pair of files left
half-replaced by an interrupted export is refused instead of computing something else.

The sidecar (``<artifact>.json``) is the artifact's manifest: the exporter writes it last, so the files it
names are the ones it vouches for. Torch-free: the runtime imports this module.
"""
from __future__ import annotations

import hashlib
import json
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mobilevision.errors import ArtifactError

from .metadata import ModelMetadata, sidecar_path

FILES_KEY = "files"          # sidecar key: {path relative to the artifact's folder: sha256 hex}
MAX_FILES = 10_000           # a .mlpackage holds a handful; a sidecar naming more is not ours
CHUNK = 1 << 20


def companions(path: str | Path) -> list[Path]:
    """Files an artifact needs beside its entry file (OpenVINO's ``.bin``), whether or not they exist."""
    p = Path(path)
    return [p.with_suffix(".bin")] if p.suffix.lower() == ".xml" else []


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def artifact_digests(path: str | Path) -> dict[str, str]:
    """{name relative to the artifact's folder: SHA-256} of the entry file (every file of a ``.mlpackage``
    folder) and its companions, in a stable order."""
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p, *companions(p)]
    return {f.relative_to(p.parent).as_posix(): sha256_file(f) for f in files}


def sidecar_text(md: ModelMetadata, digests: dict[str, str]) -> str:
    """The sidecar JSON: the metadata plus the SHA-256 of every artifact file."""
    return json.dumps({**json.loads(md.to_json()), FILES_KEY: digests}, indent=2)


@dataclass
class Integrity:
    """What loading checked: ``verified`` files (name -> SHA-256), or why nothing could be (``note``)."""

    verified: dict[str, str]
    note: str | None = None

    def describe(self) -> str:
        if not self.verified:
            return f"not verified: {self.note}"
        return "; ".join(f"{name} sha256 {digest}" for name, digest in self.verified.items())


def _recorded(sidecar: Path, text: str) -> dict[str, str] | None:
    try:
        d = json.loads(text)
    except (ValueError, RecursionError):
        return None    # the metadata reader reports a malformed sidecar with its own message
    files = d.get(FILES_KEY) if isinstance(d, dict) else None
    if files is None:
        return None
    if (not isinstance(files, dict) or len(files) > MAX_FILES or not all(
            isinstance(k, str) and isinstance(v, str) and len(v) == 64 for k, v in files.items())):
        raise ArtifactError(f"{sidecar}: '{FILES_KEY}' must map file names to SHA-256 hex digests; re-export the artifact")
    return files


def _inside(folder: Path, name: str, sidecar: Path) -> Path:
    """``folder / name`` for a plain relative name; a sidecar pointing elsewhere is refused."""
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise ArtifactError(f"{sidecar} names the file {name!r} outside the artifact's folder; re-export the artifact")
    return folder.joinpath(*pure.parts)


def verify_artifact(path: str | Path, sidecar_bytes_cap: int = 16 << 20) -> Integrity:
    """Check every file of ``path`` against the SHA-256 its sidecar records; raise ArtifactError naming the
    first file that differs or is missing. Without a sidecar, or a sidecar without hashes (exports older
    than the hashes), nothing can be checked and the returned note says so."""
    p = Path(path)
    side = sidecar_path(p)
    try:
        st = side.stat()
    except FileNotFoundError:
        return Integrity({}, f"no sidecar {side.name} records the files' SHA-256")
    if not stat.S_ISREG(st.st_mode) or st.st_size > sidecar_bytes_cap:
        return Integrity({}, f"{side.name} is not a readable sidecar")   # the metadata reader names the problem
    with open(side, "rb") as f:
        text = f.read(sidecar_bytes_cap + 1)
    recorded = _recorded(side, text.decode("utf-8", "replace"))
    if recorded is None:
        return Integrity({}, f"{side.name} records no SHA-256 (exported by an older mobilevision)")
    entry = p.name if not p.is_dir() else None
    needed = [f.relative_to(p.parent).as_posix() for f in companions(p)] + ([entry] if entry else [])
    missing = [n for n in needed if n not in recorded]
    if missing or (p.is_dir() and not any(n.startswith(p.name + "/") for n in recorded)):
        raise ArtifactError(f"{side} records no SHA-256 for {', '.join(missing) or p.name}: it belongs to another "
                            f"artifact; re-export {p.name}")
    if p.is_dir():
        on_disk = {f.relative_to(p.parent).as_posix() for f in p.rglob("*") if f.is_file()}
        extra = sorted(on_disk - set(recorded))
        if extra:
            raise ArtifactError(f"{p.parent / extra[0]} is not among the files {side.name} records: the artifact "
                                f"was changed after export; re-export it")
    for name, digest in recorded.items():
        f = _inside(p.parent, name, side)
        if not f.is_file():
            raise ArtifactError(f"{f} is missing: {side.name} records it as part of the artifact; re-export it")
        if sha256_file(f) != digest.lower():
            raise ArtifactError(f"{f} does not match the SHA-256 recorded in {side.name} (changed, corrupted, or "
                                f"half-replaced by an interrupted export): re-export it")
    return Integrity(dict(recorded))
