"""SHA-256 of every file of an artifact: recorded in its sidecar by the exporter, checked before a runtime
opens the artifact. A bit-flipped ``.onnx``, a ``.bin`` with bytes appended, or a pair of files left
half-replaced by an interrupted export is refused instead of computing something else.

The sidecar (``<artifact>.json``) is the artifact's manifest: the exporter writes it last, so the files it
names are the ones it vouches for. Torch-free: the runtime imports this module.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from mobilevision.errors import ArtifactError

from .metadata import ModelMetadata, read_sidecar_json, sidecar_path

FILES_KEY = "files"          # sidecar key: {path relative to the artifact's folder: sha256 hex}
MAX_FILES = 10_000           # a .mlpackage holds a handful; a sidecar naming more is not ours
CHUNK = 1 << 20


def companions(path: str | Path) -> list[Path]:
    """Files an artifact needs beside its entry file (OpenVINO's ``.bin``, as its backend's registry line says),
    whether or not they exist."""
    from mobilevision.runtime.backends import companion_suffixes   # here: the registry imports this module

    p = Path(path)
    return [p.with_suffix(s) for s in companion_suffixes(p.suffix)]


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
    """What loading checked: ``verified`` files (name -> SHA-256), or why nothing could be (``note``).

    ``contents``: the bytes of the entry file and its companions, read once and hashed; the runtime is
    handed exactly these bytes (not the path again), so a file replaced or truncated after the check
    cannot reach it. Empty for folder artifacts (``.mlpackage``)."""

    verified: dict[str, str]
    note: str | None = None
    contents: dict[str, bytes] = field(default_factory=dict, repr=False)

    def describe(self) -> str:
        if not self.verified:
            return f"not verified: {self.note}"
        return "; ".join(f"{name} sha256 {digest}" for name, digest in self.verified.items())


def _bad_name(name: object) -> bool:
    return (not isinstance(name, str) or not name or len(name) > 1024
            or any(len(part.encode("utf-8", "replace")) > 255 for part in name.split("/"))
            or any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in name))


def _recorded(artifact: Path) -> tuple[dict[str, str] | None, str | None]:
    """(the SHA-256 the sidecar records, None) or (None, why nothing can be checked). A missing sidecar, or
    one without the key (exports older than the hashes), can be loaded unverified; a damaged one cannot."""
    side = sidecar_path(artifact)
    d = read_sidecar_json(artifact)   # the metadata reader's limits: size, nesting, numbers, UTF-8, regular file
    if d is None:
        return None, f"no sidecar {side.name} records the files' SHA-256"
    if FILES_KEY not in d:
        return None, f"{side.name} records no SHA-256 (exported by an older mobilevision)"
    files = d[FILES_KEY]
    if (not isinstance(files, dict) or not files or len(files) > MAX_FILES or any(_bad_name(k) for k in files)
            or not all(isinstance(v, str) and len(v) == 64 for v in files.values())):
        raise ArtifactError(f"the sidecar {side} has a '{FILES_KEY}' entry that is not a map of plain file names to "
                            f"SHA-256 hex digests; re-export the artifact")
    return files, None


def _inside(folder: Path, name: str, sidecar: Path) -> Path:
    """``folder / name`` for a plain relative name; a sidecar pointing elsewhere is refused."""
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or "\\" in name or not pure.parts:
        raise ArtifactError(f"{sidecar} names the file {name!r} outside the artifact's folder; re-export the artifact")
    return folder.joinpath(*pure.parts)


def _read(f: Path) -> bytes:
    try:
        return f.read_bytes()
    except OSError as e:
        raise ArtifactError(f"cannot read {f}: {e.strerror}; re-export the artifact") from None


def verify_artifact(path: str | Path) -> Integrity:
    """Read the artifact's files once and check them against the SHA-256 its sidecar records; raise
    ArtifactError naming the first file that differs or is missing. Without a sidecar, or with one written
    before the hashes were recorded, nothing can be checked and the returned note says so; a damaged
    sidecar is refused."""
    p = Path(path)
    side = sidecar_path(p)
    recorded, note = _recorded(p)
    if p.is_dir():
        return _verify_folder(p, side, recorded, note)
    files = [p, *(c for c in companions(p) if recorded is not None or c.is_file())]
    names = [f.relative_to(p.parent).as_posix() for f in files]
    if recorded is not None and {k.removeprefix("./") for k in recorded} != set(names):
        raise ArtifactError(f"{side} records the SHA-256 of {sorted(recorded)!r}, not of this artifact's files "
                            f"{names!r}: it belongs to another artifact; re-export {p.name}")
    contents: dict[str, bytes] = {}
    for f, name in zip(files, names):
        if not f.exists():
            raise ArtifactError(f"{f} is missing: {side.name} records it as part of the artifact; re-export it")
        contents[name] = data = _read(f)
        if recorded is not None:
            digest = next(v for k, v in recorded.items() if k.removeprefix("./") == name)
            if hashlib.sha256(data).hexdigest() != digest.lower():
                raise ArtifactError(f"{f} does not match the SHA-256 recorded in {side.name} (changed, corrupted, or "
                                    f"half-replaced by an interrupted export): re-export it")
    verified = {n: hashlib.sha256(contents[n]).hexdigest() for n in names} if recorded is not None else {}
    return Integrity(verified, note, contents)


def _verify_folder(p: Path, side: Path, recorded: dict[str, str] | None, note: str | None) -> Integrity:
    """A folder artifact (.mlpackage): every file inside, and no other, as recorded."""
    if recorded is None:
        return Integrity({}, note)
    if not all(k.startswith(p.name + "/") for k in recorded):
        raise ArtifactError(f"{side} records files outside {p.name}: it belongs to another artifact; re-export it")
    on_disk = {f.relative_to(p.parent).as_posix() for f in p.rglob("*") if f.is_file() or f.is_symlink()}
    extra = sorted(on_disk - set(recorded))
    if extra:
        raise ArtifactError(f"{p.parent / extra[0]} is not among the files {side.name} records: the artifact "
                            f"was changed after export; re-export it")
    for name, digest in recorded.items():
        f = _inside(p.parent, name, side)
        if not f.is_file():
            raise ArtifactError(f"{f} is missing: {side.name} records it as part of the artifact; re-export it")
        if hashlib.sha256(_read(f)).hexdigest() != digest.lower():
            raise ArtifactError(f"{f} does not match the SHA-256 recorded in {side.name} (changed, corrupted, or "
                                f"half-replaced by an interrupted export): re-export it")
    return Integrity(dict(recorded))
