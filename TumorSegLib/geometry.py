"""Moving voxels between grids without losing their place in space: reorient, resample, crop, uncrop.

Every function takes and returns :class:`~TumorSegLib.volume.Volume` objects (3D, or 4D with a leading
channel axis handled channel by channel), so geometry is carried along with the voxels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .volume import Volume, same_grid

if TYPE_CHECKING:
    import SimpleITK as sitk

__all__ = [
    "channel",
    "stack",
    "reference_image",
    "reorient",
    "resample_to_spacing",
    "resample_to_grid",
    "crop_box",
    "crop",
    "uncrop",
]


def channel(volume: Volume, c: int) -> Volume:
    """Channel ``c`` of a 4D volume as a 3D volume with the same geometry."""
    return Volume(volume.array[c], volume.spacing, volume.origin, volume.direction)


def stack(volumes: Sequence[Volume]) -> Volume:
    """3D volumes on one grid as the channels of a 4D volume."""
    return volumes[0].with_array(np.stack([v.array for v in volumes]))


def reference_image(volume: Volume) -> sitk.Image:
    """An empty SimpleITK image with ``volume``'s grid, to resample onto."""
    import SimpleITK as sitk

    image = sitk.Image([int(s) for s in volume.shape], sitk.sitkUInt8)
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(volume.direction.flatten().tolist())
    return image


def reorient(volume: Volume, orientation: str = "LPS") -> Volume:
    """Permute/flip the index axes so they point as ``orientation`` says (no interpolation)."""
    import SimpleITK as sitk

    if volume.array.ndim == 4:
        return stack([reorient(channel(volume, c), orientation) for c in range(volume.array.shape[0])])
    image = volume.to_sitk()
    if sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection()) == orientation:
        return volume
    return Volume.from_sitk(sitk.DICOMOrient(image, orientation))


def _interpolator(order: int):
    import SimpleITK as sitk

    return {0: sitk.sitkNearestNeighbor, 1: sitk.sitkLinear, 3: sitk.sitkBSpline}[order]


def resample_to_spacing(volume: Volume, spacing: Sequence[float], order: int = 1) -> Volume:
    """Resample onto a grid with ``spacing`` covering the same field of view (same origin and direction).

    ``order`` is 0 (nearest, for labels), 1 (linear) or 3 (B-spline).
    """
    if np.allclose(volume.spacing, spacing, atol=1e-3):
        return volume
    if volume.array.ndim == 4:
        return stack([resample_to_spacing(channel(volume, c), spacing, order) for c in range(volume.array.shape[0])])
    import SimpleITK as sitk

    extent = np.array(volume.shape) * np.array(volume.spacing)
    size = [max(1, int(round(e / s))) for e, s in zip(extent, spacing)]
    # Keep the field of view centred: the first voxel centre moves by half the change in voxel size.
    shift = (np.array(spacing) - np.array(volume.spacing)) / 2.0
    origin = np.array(volume.origin) + volume.direction @ shift
    image = sitk.Resample(volume.to_sitk(), size, sitk.Transform(), _interpolator(order), origin.tolist(),
                          [float(s) for s in spacing], volume.direction.flatten().tolist(), 0.0,
                          sitk.sitkFloat32 if order else sitk.sitkUnknown)
    return Volume.from_sitk(image)


def resample_to_grid(volume: Volume, reference: Volume, order: int = 1, default: float = 0.0) -> Volume:
    """Resample ``volume`` onto ``reference``'s grid through physical space (identity transform)."""
    if same_grid(volume, reference):
        return volume
    if volume.array.ndim == 4:
        return stack([resample_to_grid(channel(volume, c), reference, order, default)
                      for c in range(volume.array.shape[0])])
    import SimpleITK as sitk

    image = sitk.Resample(volume.to_sitk(), reference_image(reference), sitk.Transform(), _interpolator(order),
                          default, sitk.sitkFloat32 if order else sitk.sitkUnknown)
    return Volume.from_sitk(image)


def crop_box(mask: np.ndarray, margin: int = 0, min_size: Sequence[int] | None = None) -> tuple[slice, ...]:
    """Bounding box of ``mask`` grown by ``margin`` voxels and to at least ``min_size``, clipped to the array."""
    if not mask.any():
        raise ValueError("the brain mask is empty: the images hold no non-zero voxels")
    idx = np.argwhere(mask)
    lo = idx.min(0) - margin
    hi = idx.max(0) + 1 + margin
    if min_size is not None:
        grow = np.maximum(np.asarray(min_size) - (hi - lo), 0)
        lo -= grow // 2
        hi += grow - grow // 2
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def crop(volume: Volume, box: tuple[slice, ...]) -> Volume:
    """The sub-volume inside ``box``, its origin moved so voxels keep their physical position."""
    start = np.array([s.start for s in box], dtype=float)
    origin = np.array(volume.origin) + volume.direction @ (start * np.array(volume.spacing))
    return Volume(volume.array[(Ellipsis, *box)], volume.spacing, origin, volume.direction)


def uncrop(volume: Volume, box: tuple[slice, ...], full: Volume, fill: float = 0.0) -> Volume:
    """Paste a cropped volume back into ``full``'s grid (channels kept), ``fill`` elsewhere."""
    shape = volume.array.shape[:-3] + full.shape
    out = np.full(shape, fill, dtype=volume.array.dtype)
    out[(Ellipsis, *box)] = volume.array
    return Volume(out, full.spacing, full.origin, full.direction)
