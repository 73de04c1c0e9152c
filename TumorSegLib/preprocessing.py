"""Preprocessing of multi-sequence MRI into model input, and the way back to the input grid.

Steps for BraTS-like input (skull-stripped, sequences co-registered on one grid):
reorient to the model's axis order (LPS), resample to the model's spacing, find the brain (non-zero
voxels), crop to it with a margin, and z-score each sequence inside the brain. Every step keeps the
geometry, so :func:`to_reference_grid` can bring model outputs back onto the user's own grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .volume import Volume, same_grid

__all__ = [
    "MODEL_ORIENTATION",
    "PreparedInput",
    "check_same_grid",
    "reorient",
    "resample_to_spacing",
    "resample_to_grid",
    "nonzero_brain_mask",
    "crop_box",
    "crop",
    "uncrop",
    "zscore_in_mask",
    "prepare_input",
    "to_reference_grid",
]

# Index axes of model input point towards Left, Posterior, Superior (identity direction in ITK's LPS).
MODEL_ORIENTATION = "LPS"


def check_same_grid(volumes: Sequence[Volume], names: Sequence[str]) -> None:
    """Refuse sequences that are not on one voxel grid (image content is checked by :mod:`.qa`).

    Raises:
        ValueError: naming the first sequence whose grid differs and what to do.
    """
    for volume, name in zip(volumes[1:], names[1:]):
        if not same_grid(volumes[0], volume, tolerance_mm=0.01):
            raise ValueError(
                f"{name} is not on the same voxel grid as {names[0]} (shape {volume.shape} vs {volumes[0].shape}, "
                f"spacing {volume.spacing} vs {volumes[0].spacing}, origin {volume.origin} vs {volumes[0].origin}); "
                "co-register and resample the sequences to one grid first"
            )


def reorient(volume: Volume, orientation: str = MODEL_ORIENTATION) -> Volume:
    """Permute/flip the index axes so they point as ``orientation`` says (no interpolation)."""
    import SimpleITK as sitk

    if volume.array.ndim == 4:
        return _stack([reorient(_channel(volume, c), orientation) for c in range(volume.array.shape[0])])
    image = volume.to_sitk()
    if sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection()) == orientation:
        return volume
    return Volume.from_sitk(sitk.DICOMOrient(image, orientation))


def _channel(volume: Volume, c: int) -> Volume:
    return Volume(volume.array[c], volume.spacing, volume.origin, volume.direction)


def _stack(volumes: Sequence[Volume]) -> Volume:
    first = volumes[0]
    return first.with_array(np.stack([v.array for v in volumes]))


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
        return _stack([resample_to_spacing(_channel(volume, c), spacing, order) for c in range(volume.array.shape[0])])
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
        return _stack([resample_to_grid(_channel(volume, c), reference, order, default)
                       for c in range(volume.array.shape[0])])
    import SimpleITK as sitk

    ref = sitk.Image([int(s) for s in reference.shape], sitk.sitkUInt8)
    ref.SetSpacing(reference.spacing)
    ref.SetOrigin(reference.origin)
    ref.SetDirection(reference.direction.flatten().tolist())
    image = sitk.Resample(volume.to_sitk(), ref, sitk.Transform(), _interpolator(order), default,
                          sitk.sitkFloat32 if order else sitk.sitkUnknown)
    return Volume.from_sitk(image)


def nonzero_brain_mask(channels: np.ndarray) -> np.ndarray:
    """Brain mask of skull-stripped input: voxels non-zero in any sequence. ``channels`` is (C, I, J, K)."""
    return np.any(channels != 0, axis=0)


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


def zscore_in_mask(channels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-channel z-score over ``mask`` voxels; voxels outside the mask become 0. Returns float32."""
    out = np.zeros(channels.shape, dtype=np.float32)
    for c in range(channels.shape[0]):
        values = channels[c][mask].astype(np.float64)
        std = values.std()
        if values.size == 0 or std == 0:
            raise ValueError(f"sequence {c} is constant inside the brain: nothing to segment")
        out[c][mask] = ((values - values.mean()) / std).astype(np.float32)
    return out


@dataclass(frozen=True)
class PreparedInput:
    """Model input and what is needed to map outputs back.

    Attributes:
        image: (C, I, J, K) float32 z-scored sequences, cropped to the brain, on the model grid.
        box: the crop inside ``model_grid``.
        model_grid: the whole model-grid geometry (3D, zeros), before cropping.
        reference: the input grid that results are returned on.
        brain_mask: brain mask on the cropped model grid.
    """

    image: Volume
    box: tuple[slice, ...]
    model_grid: Volume
    reference: Volume
    brain_mask: np.ndarray


def prepare_input(volumes: Sequence[Volume], spacing: Sequence[float], margin: int = 4,
                  min_size: Sequence[int] | None = None, brain_mask: Volume | None = None) -> PreparedInput:
    """Turn co-registered sequences (same grid) into cropped, normalised model input.

    Args:
        volumes: one 3D volume per model input channel, all on one grid (the reference grid).
        spacing: the model's voxel spacing in mm.
        margin: voxels of background kept around the brain.
        min_size: smallest crop, e.g. the model's patch size.
        brain_mask: brain mask on the reference grid; default: voxels non-zero in any sequence.
    """
    reference = volumes[0]
    stacked = reference.with_array(np.stack([v.array.astype(np.float32) for v in volumes]))
    model_grid_image = resample_to_spacing(reorient(stacked), spacing, order=1)
    if brain_mask is None:
        mask = nonzero_brain_mask(model_grid_image.array)
    else:
        mask_volume = resample_to_grid(brain_mask.with_array(brain_mask.array.astype(np.float32)),
                                       _channel(model_grid_image, 0), order=1)
        mask = mask_volume.array > 0.5
    box = crop_box(mask, margin, min_size)
    cropped = crop(model_grid_image, box)
    cropped_mask = mask[box]
    image = cropped.with_array(zscore_in_mask(cropped.array, cropped_mask))
    model_grid = _channel(model_grid_image, 0).with_array(np.zeros(model_grid_image.shape, np.uint8))
    return PreparedInput(image, box, model_grid, reference, cropped_mask)


def to_reference_grid(output: Volume, prepared: PreparedInput, order: int = 1) -> Volume:
    """Map a model-grid output (cropped, 3D or with channels) back onto the input's own grid."""
    full = uncrop(output, prepared.box, prepared.model_grid)
    return resample_to_grid(full, prepared.reference, order=order)
