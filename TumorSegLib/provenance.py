"""Where a result came from: the inputs (paths and SHA-256), the software and its versions, the time, the options.

Recorded in every summary JSON (and, with the DICOM identity, in the DICOM objects and the report), so a
result can be traced to exactly what produced it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import platform
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from enum import Enum
from importlib import metadata
from pathlib import Path
from typing import Any

from .version import __version__
from .volume import PathLike

__all__ = ["SOFTWARE", "file_sha256", "files_sha256", "input_record", "versions", "provenance"]

SOFTWARE = "TumorSeg"
_PACKAGES = ("torch", "monai", "SimpleITK", "numpy", "nibabel")


def file_sha256(path: PathLike, chunk_size: int = 1 << 20) -> str:
    """SHA-256 of a file, or of a folder (a DICOM series): of its files' names and hashes, in name order."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for member in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{member.relative_to(path).as_posix()}:{file_sha256(member)}\n".encode())
        return digest.hexdigest()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def files_sha256(paths: Sequence[PathLike]) -> str:
    """SHA-256 of a set of files (a DICOM series in any folders): of their hashes, sorted (order-free)."""
    digest = hashlib.sha256()
    for sha in sorted(file_sha256(path) for path in paths):
        digest.update(f"{sha}\n".encode())
    return digest.hexdigest()


def input_record(paths: Mapping[str, PathLike]) -> dict[str, dict]:
    """``{sequence: {"path": absolute path, "sha256": ...}}``."""
    return {key: {"path": str(Path(path).resolve()), "sha256": file_sha256(path)} for key, path in paths.items()}


def versions() -> dict[str, str]:
    """This software's version and those of the libraries that decide the result."""
    out = {"tumorseg": __version__, "python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _plain(value: Any) -> Any:
    if is_dataclass(value):
        return {key: _plain(item) for key, item in asdict(value).items()}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def provenance(inputs: Mapping[str, dict] | None = None, options: Any = None, **extra: Any) -> dict:
    """The record for a summary: software and versions, time (UTC), inputs, options and anything in ``extra``."""
    return {"software": SOFTWARE, "versions": versions(),
            "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "inputs": dict(inputs or {}), "options": _plain(options) if options is not None else None, **extra}
