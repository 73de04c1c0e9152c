"""Preprocessing of multi-sequence MRI into model input, and the way back to the input grid.

Steps for BraTS-like input (skull-stripped, sequences co-registered on one grid):
reorient to the model's axis order (LPS), resample to the model's spacing, find the brain (non-zero
voxels), crop to it with a margin, and z-score each sequence inside the brain. Every step keeps the
geometry (:mod:`.geometry`), so :func:`to_reference_grid` can bring model outputs back onto the user's grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .geometry import channel, crop, crop_box, reorient, resample_to_grid, resample_to_spacing, uncrop
from .intensity import foreground_mask
from .volume import Volume, same_grid

__all__ = [
    "MODEL_ORIENTATION",
    "PreparedInput",
    "check_same_grid",
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
        brain_mask: brain mask on the reference grid; default: voxels that are not the constant background of
            the skull-stripped sequences (:func:`~TumorSegLib.intensity.foreground_mask`).
    """
    reference = volumes[0]
    stacked = reference.with_array(np.stack([v.array.astype(np.float32) for v in volumes]))
    model_grid_image = resample_to_spacing(reorient(stacked, MODEL_ORIENTATION), spacing, order=1)
    if brain_mask is None:
        mask = foreground_mask(model_grid_image.array)
    else:
        mask_volume = resample_to_grid(brain_mask.with_array(brain_mask.array.astype(np.float32)),
                                       channel(model_grid_image, 0), order=1)
        mask = mask_volume.array > 0.5
    box = crop_box(mask, margin, min_size)
    cropped = crop(model_grid_image, box)
    cropped_mask = mask[box]
    image = cropped.with_array(zscore_in_mask(cropped.array, cropped_mask))
    model_grid = channel(model_grid_image, 0).with_array(np.zeros(model_grid_image.shape, np.uint8))
    return PreparedInput(image, box, model_grid, reference, cropped_mask)


def to_reference_grid(output: Volume, prepared: PreparedInput, order: int = 1) -> Volume:
    """Map a model-grid output (cropped, 3D or with channels) back onto the input's own grid."""
    full = uncrop(output, prepared.box, prepared.model_grid)
    return resample_to_grid(full, prepared.reference, order=order)
