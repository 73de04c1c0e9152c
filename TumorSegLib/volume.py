"""Arrays with geometry, and reading/writing them.

A :class:`Volume` is a numpy array indexed ``[i, j, k]`` (ITK index order, x fastest in the file) with
the ITK physical geometry that places it in LPS space: spacing (mm), origin (mm) and a 3×3 direction
matrix whose columns are the index axes. Every step of the pipeline passes volumes, never bare
arrays, so geometry is never dropped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # SimpleITK is only needed when files are read or written.
    import SimpleITK as sitk

__all__ = ["Volume", "read_volume", "write_volume", "same_grid"]

PathLike = str | os.PathLike


@dataclass(frozen=True)
class Volume:
    """A 3D array (or 4D with a leading channel axis) with its physical geometry.

    Attributes:
        array: shape ``(I, J, K)`` or ``(C, I, J, K)``.
        spacing: voxel size along i, j, k in mm.
        origin: LPS position in mm of voxel (0, 0, 0).
        direction: 3×3 matrix, column ``n`` is the LPS direction of index axis ``n``.
    """

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        if self.array.ndim not in (3, 4):
            raise ValueError(f"a volume needs a 3D array (or channels + 3D), got shape {self.array.shape}")
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "origin", tuple(float(o) for o in self.origin))
        object.__setattr__(self, "direction", np.asarray(self.direction, dtype=float).reshape(3, 3))

    @property
    def shape(self) -> tuple[int, int, int]:
        """Spatial shape (I, J, K)."""
        return tuple(self.array.shape[-3:])  # type: ignore[return-value]

    @property
    def affine(self) -> np.ndarray:
        """4×4 index-to-LPS matrix."""
        out = np.eye(4)
        out[:3, :3] = self.direction @ np.diag(self.spacing)
        out[:3, 3] = self.origin
        return out

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres."""
        return float(np.prod(self.spacing)) / 1000.0

    def with_array(self, array: np.ndarray) -> "Volume":
        """The same geometry with other voxel values (spatial shape must match)."""
        if tuple(array.shape[-3:]) != self.shape:
            raise ValueError(f"array shape {array.shape} does not fit the grid {self.shape}")
        return replace(self, array=array)

    def to_sitk(self) -> "sitk.Image":
        """This volume as a SimpleITK image (3D only)."""
        import SimpleITK as sitk

        if self.array.ndim != 3:
            raise ValueError("only 3D volumes convert to a SimpleITK image")
        array = self.array.astype(np.uint8) if self.array.dtype == bool else self.array
        image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction.flatten().tolist())
        return image

    @classmethod
    def from_sitk(cls, image: "sitk.Image") -> "Volume":
        """Wrap a 3D SimpleITK image."""
        if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
            raise ValueError(
                f"expected a 3D single-component image, got {image.GetDimension()}D with "
                f"{image.GetNumberOfComponentsPerPixel()} component(s)"
            )
        import SimpleITK as sitk

        array = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
        return cls(np.ascontiguousarray(array), image.GetSpacing(), image.GetOrigin(),
                   np.array(image.GetDirection()).reshape(3, 3))


def same_grid(a: Volume, b: Volume, tolerance_mm: float = 1e-3) -> bool:
    """Whether two volumes share shape, spacing, origin and direction (within ``tolerance_mm``)."""
    return (
        a.shape == b.shape
        and np.allclose(a.spacing, b.spacing, atol=tolerance_mm)
        and np.allclose(a.origin, b.origin, atol=tolerance_mm)
        and np.allclose(a.direction, b.direction, atol=1e-4)
    )


def _read_dicom_series(directory: Path) -> "sitk.Image":
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(directory))
    if not series:
        raise ValueError(f"{directory} holds no DICOM series")
    if len(series) > 1:
        raise ValueError(
            f"{directory} holds {len(series)} DICOM series ({', '.join(series)}); give a folder with one series"
        )
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(directory), series[0]))
    return reader.Execute()


def _nifti_non_finite_count(path: Path) -> int:
    """NaN/inf voxels of a floating-point NIfTI file (ITK's reader silently turns them into 0)."""
    import nibabel as nib

    image = nib.load(str(path))
    if not np.issubdtype(image.get_data_dtype(), np.floating):
        return 0
    return int((~np.isfinite(np.asanyarray(image.dataobj))).sum())


def read_volume(path: PathLike) -> Volume:
    """Read a 3D image: NIfTI, NRRD, MHA/MHD, or a folder holding one DICOM series.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is not a readable 3D scalar image.
    """
    import SimpleITK as sitk

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        image = _read_dicom_series(path) if path.is_dir() else sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise ValueError(f"cannot read {path} as an image (NIfTI, NRRD, MHA or DICOM series): {error}") from error
    if path.name.endswith((".nii", ".nii.gz")) and (bad := _nifti_non_finite_count(path)):
        raise ValueError(f"{path} contains {bad} NaN or infinite voxel values; re-export the image from the scanner "
                         "or fix the conversion that produced it")
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:  # some NIfTI writers add a unit 4th axis
        image = image[:, :, :, 0]
    if image.GetDimension() != 3:
        raise ValueError(f"{path} is a {image.GetDimension()}D image; TumorSeg needs a 3D volume")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{path} has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
                         "give a single-channel (grey-scale) MRI")
    return Volume.from_sitk(image)


def write_volume(volume: Volume, path: PathLike, compress: bool = True) -> Path:
    """Write a 3D volume to any format SimpleITK knows from the file name (e.g. ``.nii.gz``, ``.nrrd``)."""
    import SimpleITK as sitk

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(volume.to_sitk(), str(path), compress)
    return path
