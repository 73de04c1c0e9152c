"""Arrays with geometry, and reading/writing them.

A :class:`Volume` is a numpy array indexed ``[i, j, k]`` (ITK index order, x fastest in the file) with
the ITK physical geometry that places it in LPS space: spacing (mm), origin (mm) and a 3×3 direction
matrix whose columns are the index axes. Every step of the pipeline passes volumes, never bare
arrays, so geometry is never dropped.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

if TYPE_CHECKING:  # SimpleITK is only needed when files are read or written.
    import SimpleITK as sitk

__all__ = ["PathLike", "ImageReadError", "Volume", "read_volume", "read_dicom_files", "write_volume", "atomic_write",
           "same_grid"]

PathLike = Union[str, os.PathLike]  # not `|`: Slicer 5.8's Python 3.9 loads this module


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


class ImageReadError(ValueError):
    """A file that cannot be read completely as a 3D image; the message names it and says what to do."""


def _read_dicom_series(directory: Path) -> sitk.Image:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(directory))
    if not series:
        raise ImageReadError(f"{directory} holds no DICOM series: give a folder with the files of one series")
    if len(series) > 1:
        raise ImageReadError(f"{directory} holds {len(series)} DICOM series ({', '.join(series)}); give a folder "
                             "with one series, or the study folder to 'tumorseg segment --study'")
    return _read_dicom_image(reader.GetGDCMSeriesFileNames(str(directory), series[0]), str(directory))


def _read_dicom_image(files: Sequence[str], name: str) -> sitk.Image:
    """The slices of one series stacked in order along their normal (file names say nothing about order);
    missing, repeated or differently oriented slices refused."""
    import SimpleITK as sitk

    positions, orientations = [], set()
    for path in files:
        reader = sitk.ImageFileReader()
        reader.SetFileName(path)
        reader.ReadImageInformation()
        if not (reader.HasMetaDataKey("0020|0032") and reader.HasMetaDataKey("0020|0037")):
            raise ImageReadError(f"{name}: {path} has no image position or orientation; export the series again "
                                 "as standard DICOM images")
        positions.append([float(v) for v in reader.GetMetaData("0020|0032").split("\\")])
        orientations.add(tuple(round(float(v), 3) for v in reader.GetMetaData("0020|0037").split("\\")))
    if len(orientations) > 1:
        raise ImageReadError(f"{name}: its slices have {len(orientations)} different orientations (a localiser or "
                             "several stacks in one series); give a series of parallel slices")
    row, column = np.array(next(iter(orientations))).reshape(2, 3)
    along = np.array(positions) @ np.cross(row, column)
    order = np.argsort(along)
    if len(files) >= 3:
        gaps = np.diff(along[order])
        if gaps.min() <= 1e-3 or gaps.max() > 1.5 * np.median(gaps):
            raise ImageReadError(f"{name}: slices are missing or repeated (slice gaps from {gaps.min():.2f} to "
                                 f"{gaps.max():.2f} mm); export the complete series again")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([files[i] for i in order])
    return reader.Execute()


def read_dicom_files(files: Sequence[PathLike], name: str) -> Volume:
    """Read the files of one DICOM series (any order, any folders) as a volume; ``name`` says which series in
    messages.

    Raises:
        ImageReadError: for missing or repeated slices, mixed orientations, or unreadable files.
    """
    try:
        image = _read_dicom_image([str(f) for f in files], name)
    except RuntimeError as error:
        raise ImageReadError(f"cannot read {name} ({_first_line(error)}); export the series again") from error
    return _checked_volume(image, name)


def _check_nifti(path: Path) -> None:
    """Read a NIfTI file's voxels completely (ITK fills a truncated file with zeros without a word) and refuse
    NaN or infinite values (ITK turns them into 0)."""
    import nibabel as nib

    try:
        data = np.asanyarray(nib.load(str(path)).dataobj)
    except nib.filebasedimages.ImageFileError as error:
        raise ImageReadError(f"{path} is not a NIfTI image, or its header is damaged: export it again") from error
    except (EOFError, OSError, ValueError, zlib.error) as error:
        raise ImageReadError(f"{path} is truncated or damaged ({_first_line(error)}): copy or export it again"
                             ) from error
    if np.issubdtype(data.dtype, np.floating) and (bad := int((~np.isfinite(data)).sum())):
        raise ImageReadError(f"{path} contains {bad} NaN or infinite voxel values; re-export the image from the "
                             "scanner or fix the conversion that produced it")


def _first_line(error: BaseException) -> str:
    """The telling line of a reader's message: nibabel's first line; ITK's line naming the fault (its messages
    end with source locations or an unrelated "Reason")."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    telling = [line for line in lines if any(word in line for word in ("[nrrd]", "expected", "Unable", "not"))
               and not line.startswith("Reason")]
    return (telling or lines or [type(error).__name__])[0].replace("sitk::ERROR: ", "")[:200]


def read_volume(path: PathLike) -> Volume:
    """Read a 3D image completely: NIfTI, NRRD, MHA/MHD, or a folder holding one DICOM series.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ImageReadError: (a ``ValueError``) naming the file, if it is truncated, damaged, holds NaN, has missing
            slices, or is not a 3D scalar image.
    """
    import SimpleITK as sitk

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        if path.name.endswith((".nii", ".nii.gz")):
            _check_nifti(path)
        image = _read_dicom_series(path) if path.is_dir() else sitk.ReadImage(str(path))
    except (RuntimeError, OSError, EOFError, zlib.error) as error:
        raise ImageReadError(f"cannot read {path} as an image (NIfTI, NRRD, MHA or a DICOM series folder): it is "
                             f"damaged, truncated or of another kind ({_first_line(error)}); copy or export it again"
                             ) from error
    return _checked_volume(image, str(path))


def _checked_volume(image: sitk.Image, name: str) -> Volume:
    """A 3D single-channel image as a volume, or a clear refusal."""
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:  # some NIfTI writers add a unit 4th axis
        image = image[:, :, :, 0]
    if image.GetDimension() != 3:
        raise ImageReadError(f"{name} is a {image.GetDimension()}D image; TumorSeg needs a 3D volume")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageReadError(f"{name} has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
                             "give a single-channel (grey-scale) MRI")
    return Volume.from_sitk(image)


def write_volume(volume: Volume, path: PathLike, compress: bool = True) -> Path:
    """Write a 3D volume to any format SimpleITK knows from the file name (e.g. ``.nii.gz``, ``.nrrd``)."""
    import SimpleITK as sitk

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(volume.to_sitk(), str(path), compress)
    return path


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
