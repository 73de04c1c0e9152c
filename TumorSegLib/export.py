"""Writing results to files: label maps, summaries, voxel maps and uncertainty maps, one writer each.

Every writer goes through a temporary name in the target folder and an atomic rename, so a reader never
sees half a file and a failed write leaves nothing behind. (DICOM objects are written by :mod:`.dicom`.)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .labels import LabelConvention, from_internal_labels
from .volume import Volume, write_volume

if TYPE_CHECKING:
    from .uncertainty import UncertaintyResult

__all__ = ["IMAGE_SUFFIXES", "json_path", "atomic_write", "write_label_map", "write_map", "write_summary",
           "write_uncertainty_maps"]

PathLike = str | os.PathLike
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")


def json_path(output: PathLike) -> Path:
    """The summary file beside an image: ``case_seg.nii.gz`` → ``case_seg.json``."""
    output = Path(output)
    for suffix in IMAGE_SUFFIXES:
        if output.name.endswith(suffix):
            return output.with_name(output.name[: -len(suffix)] + ".json")
    return output.with_name(output.name + ".json")


def atomic_write(path: PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(temporary_path)`` then rename the temporary file to ``path``; nothing is left on failure.

    The temporary name keeps the file's extension (writers choose the format from it) and starts with a dot.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{os.getpid()}.partial.{path.name}")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def write_label_map(labels: Volume, path: PathLike, convention: LabelConvention | str) -> Path:
    """Write an internal label map with ``convention``'s codes (uint8) to ``path`` (format from the extension)."""
    coded = labels.with_array(from_internal_labels(labels.array, convention))
    return atomic_write(path, lambda partial: write_volume(coded, partial))


def write_map(volume: Volume, path: PathLike, dtype: Any = np.float32) -> Path:
    """Write a voxel map (probabilities, uncertainty, a mask) as ``dtype``."""
    converted = volume.with_array(volume.array.astype(dtype))
    return atomic_write(path, lambda partial: write_volume(converted, partial))


def write_summary(summary: dict, path: PathLike) -> Path:
    """Write a JSON summary (indented, UTF-8)."""
    text = json.dumps(summary, indent=2)
    return atomic_write(path, lambda partial: partial.write_text(text, encoding="utf-8"))


def write_uncertainty_maps(result: UncertaintyResult, directory: PathLike, prefix: str = "",
                           names: Iterable[str] | None = None) -> dict:
    """Write the maps of ``result`` as ``<directory>/<prefix><name>.nii.gz`` and ``<prefix>uncertainty.json``.

    Map ``result`` to the input grid first (:meth:`~TumorSegLib.uncertainty.UncertaintyResult.mapped`) to get
    maps that overlay the input images.

    Args:
        names: the maps to write (keys of :meth:`~TumorSegLib.uncertainty.UncertaintyResult.maps`, e.g.
            ``entropy``); default all.

    Returns:
        :meth:`~TumorSegLib.uncertainty.UncertaintyResult.summary` plus ``"maps"``: {map name: file name}.

    Raises:
        ValueError: for a map name that does not exist, listing those that do.
    """
    maps = result.maps()
    chosen = list(maps) if names is None else list(names)
    unknown = [name for name in chosen if name not in maps]
    if unknown:
        raise ValueError(f"unknown uncertainty map(s) {unknown}; choose from {', '.join(maps)}")
    directory = Path(directory)
    files = {name: write_map(maps[name], directory / f"{prefix}{name}.nii.gz").name for name in chosen}
    summary = {**result.summary(), "maps": files}
    write_summary(summary, directory / f"{prefix}uncertainty.json")
    return summary
