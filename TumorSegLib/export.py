"""Writing results to files: label maps, summaries, voxel maps and uncertainty maps, one writer each.

Every writer goes through a temporary name in the target folder and an atomic rename, so a reader never
sees half a file and a failed write leaves nothing behind. (DICOM objects are written by :mod:`.dicom`.)
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .labels import LabelConvention, from_internal_labels
from .volume import PathLike, Volume, atomic_write, write_volume

if TYPE_CHECKING:
    from .uncertainty import UncertaintyResult

__all__ = ["IMAGE_SUFFIXES", "OutputError", "Outputs", "json_path", "atomic_write", "write_label_map", "write_map",
           "write_summary", "write_uncertainty_maps", "remove_stale_partials", "pid_alive"]

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")


class OutputError(ValueError):
    """An output path that would overwrite an input or an earlier result, or cannot be written."""


_PARTIAL = re.compile(r"^\.(?:.+\.)?(\d+)\.partial(?:\..+)?$")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id still runs (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(folder: PathLike) -> list[Path]:
    """Remove the temporary files and folders that a crashed earlier run left in ``folder`` (their process is
    gone); returns what was removed."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = _PARTIAL.match(entry.name)
        if match and int(match.group(1)) != os.getpid() and not pid_alive(int(match.group(1))):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


class Outputs:
    """Everything one run writes, staged under temporary names beside the targets and put in place together at
    the end: a failure or Ctrl-C leaves nothing partial, and nothing is put in place before the whole run worked.

    Args:
        inputs: files the run reads: never an output.
        overwrite: replace earlier results (otherwise an existing output stops the run before any work).

    Use :meth:`claim` for each output before the work (it checks the path), write to the path it returns, then
    :meth:`commit`; or use it as a context manager, which commits on success and discards otherwise.
    """

    def __init__(self, inputs: Iterable[PathLike] = (), overwrite: bool = False):
        self.inputs = {Path(p).resolve() for p in inputs}
        self.overwrite = overwrite
        self.staged: dict[Path, Path] = {}  # final path → staged path

    def claim(self, path: PathLike, folder: bool = False) -> Path:
        """Check an output path and return the temporary path to write it to.

        Raises:
            OutputError: naming the path, if it is an input, exists (without ``overwrite``) or its folder cannot
                be written.
        """
        final = Path(path).resolve()
        if final in self.inputs or any(final in p.parents for p in self.inputs):
            raise OutputError(f"output {path} is an input of this run: choose another output path, inputs are "
                              "never overwritten")
        if final.exists() and not self.overwrite:
            raise OutputError(f"{path} exists (an earlier result?): choose another output path, or pass --overwrite "
                              "to replace it")
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(final.parent)
        if not os.access(final.parent, os.W_OK):
            raise OutputError(f"cannot write to {final.parent}: choose a folder you may write to")
        staged = final.with_name(f".{final.name}.{os.getpid()}.partial" if folder else
                                 f".{os.getpid()}.partial.{final.name}")
        self.staged[final] = staged
        return staged

    def commit(self) -> None:
        """Put every staged output in place (an earlier result is replaced only with ``overwrite``)."""
        for final, staged in self.staged.items():
            if not staged.exists():
                continue  # claimed, then not produced (e.g. no brain mask when the brain was not extracted)
            if final.is_dir() and staged.is_dir():
                shutil.rmtree(final)
            os.replace(staged, final)
        self.staged.clear()

    def discard(self) -> None:
        for staged in self.staged.values():
            shutil.rmtree(staged, ignore_errors=True) if staged.is_dir() else staged.unlink(missing_ok=True)
        self.staged.clear()

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, kind, error, trace) -> None:
        self.commit() if kind is None else self.discard()


def json_path(output: PathLike) -> Path:
    """The summary file beside an image: ``case_seg.nii.gz`` → ``case_seg.json``."""
    output = Path(output)
    for suffix in IMAGE_SUFFIXES:
        if output.name.endswith(suffix):
            return output.with_name(output.name[: -len(suffix)] + ".json")
    return output.with_name(output.name + ".json")


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
