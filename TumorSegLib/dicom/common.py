"""What every DICOM object TumorSeg writes shares: the source images in frame order, the algorithm's identity,
the equipment attributes, and writing through a temporary name."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..export import atomic_write
from ..version import __version__
from ..volume import PathLike, Volume

__all__ = ["Algorithm", "EQUIPMENT", "read_sources", "frames_of", "frame_stack", "save_dataset"]

# Equipment attributes of every object we write (General Equipment and Enhanced General Equipment modules).
EQUIPMENT = {"manufacturer": "TumorSeg", "software_versions": __version__, "device_serial_number": "0"}


@dataclass(frozen=True)
class Algorithm:
    """The model that made a result: registry id, weights' SHA-256, software version (DICOM algorithm
    identification of the SEG segments and the SR measurements)."""

    model_id: str
    weights_sha256: tuple[str, ...]
    version: str = __version__

    def segment_identification(self):
        import highdicom as hd
        from pydicom.sr.codedict import codes

        return hd.AlgorithmIdentificationSequence(name=f"TumorSeg {self.model_id}"[:64],
                                                  family=codes.cid7162.ArtificialIntelligence,
                                                  version=self.version, parameters=self._parameters())

    def sr_identification(self):
        import highdicom as hd

        return hd.sr.AlgorithmIdentification(name=f"TumorSeg {self.model_id}", version=self.version,
                                             parameters=[f"{k}={v}" for k, v in self._parameters().items()])

    def _parameters(self) -> dict[str, str]:
        return {f"weights_sha256_{n + 1}": sha for n, sha in enumerate(self.weights_sha256)}


def read_sources(files: Sequence[PathLike]) -> list:
    """The source images' headers (pixels are not needed to derive from them)."""
    import pydicom

    return [pydicom.dcmread(path, stop_before_pixels=True) for path in files]


def frames_of(grid: Volume, datasets: Sequence) -> list[tuple[int, object]]:
    """``[(slice index k on grid, dataset)]`` sorted by k: which slice of ``grid`` each source image is.

    Raises:
        ValueError: if the images are not the slices of ``grid`` (another orientation, size or position).
    """
    direction = np.asarray(grid.direction)
    origin = np.asarray(grid.origin)
    placed = []
    for dataset in datasets:
        rows, columns = int(dataset.Rows), int(dataset.Columns)
        orientation = np.array([float(v) for v in dataset.ImageOrientationPatient]).reshape(2, 3)
        position = np.array([float(v) for v in dataset.ImagePositionPatient])
        spacing = [float(v) for v in dataset.PixelSpacing]  # (between rows, between columns)
        offset = (position - origin) @ direction[:, 2] / grid.spacing[2]
        k = int(round(offset))
        expected = origin + k * grid.spacing[2] * direction[:, 2]
        if ((columns, rows) != grid.shape[:2] or not np.allclose(orientation, direction[:, :2].T, atol=1e-3)
                or not np.allclose(spacing, (grid.spacing[1], grid.spacing[0]), atol=1e-3)
                or not 0 <= k < grid.shape[2] or np.linalg.norm(position - expected) > 0.05 * min(grid.spacing)):
            raise ValueError(f"image {dataset.SOPInstanceUID} is not a slice of the result's grid: the result can "
                             "only be referenced to the series it was computed on (the reference sequence)")
        placed.append((k, dataset))
    return sorted(placed, key=lambda pair: pair[0])


def frame_stack(array: np.ndarray, frames: Sequence[tuple[int, object]]) -> np.ndarray:
    """``(I, J, K, ...)`` array → ``(frames, rows, columns, ...)`` in the order of ``frames``."""
    return np.stack([np.swapaxes(array[:, :, k], 0, 1) for k, _ in frames])


def save_dataset(dataset, path: PathLike) -> Path:
    """Write a DICOM object through a temporary name (never a half-written file)."""
    return atomic_write(path, lambda partial: dataset.save_as(partial, enforce_file_format=True))
