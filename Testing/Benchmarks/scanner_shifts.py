"""Held-out cases as another scanner or protocol might have given them: the input changes a robust model should
shrug off, applied to the original files' intensities (benchmarks only; ``compare_fold.py --shifts`` uses them).

Each change is fixed (no random draw) so that two networks see exactly the same inputs, and stays on the case's
own grid so that only the network, not co-registration, is being compared.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
from scipy import ndimage

from TumorSegLib.volume import Volume

__all__ = ["SHIFTS", "STRONG_SHIFTS", "shifted"]


def _brain(images: dict[str, Volume]) -> np.ndarray:
    return np.any([v.array != 0 for v in images.values()], axis=0)


def _bias_field(images: dict[str, Volume], brain: np.ndarray, ratio: float = 1.5) -> dict[str, Volume]:
    """A smooth multiplicative field (``ratio`` from one side of the head to the other), as an uncorrected
    receive coil gives; each sequence gets it along another direction."""
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in brain.shape], indexing="ij")
    out = {}
    for index, (key, volume) in enumerate(images.items()):
        direction = np.roll(np.array([1.0, 0.5, 0.25]), index)
        log_field = sum(d * g for d, g in zip(direction, grids)) / np.abs(direction).sum() * np.log(ratio) / 2
        out[key] = volume.with_array(np.where(brain, volume.array * np.exp(log_field), 0).astype(np.float32))
    return out


def _gamma(images: dict[str, Volume], brain: np.ndarray, gamma: float = 1.4) -> dict[str, Volume]:
    """Another contrast curve: intensities inside the brain through ``gamma`` (range kept)."""
    out = {}
    for key, volume in images.items():
        values = volume.array[brain].astype(np.float64)
        low, high = values.min(), values.max()
        curved = low + (high - low) * ((volume.array - low) / max(high - low, 1e-6)).clip(0, 1) ** gamma
        out[key] = volume.with_array(np.where(brain, curved, 0).astype(np.float32))
    return out


def _noise(images: dict[str, Volume], brain: np.ndarray, share: float = 0.04) -> dict[str, Volume]:
    """Rician noise with an SD of ``share`` of the brain's mean intensity (a faster, noisier acquisition)."""
    rng = np.random.default_rng(20261129)
    out = {}
    for key, volume in images.items():
        sd = share * float(volume.array[brain].mean())
        real, imaginary = volume.array + rng.normal(0, sd, brain.shape), rng.normal(0, sd, brain.shape)
        out[key] = volume.with_array(np.where(brain, np.hypot(real, imaginary), 0).astype(np.float32))
    return out


def _thick_slices(images: dict[str, Volume], brain: np.ndarray, keys=("t2", "flair"), thickness: int = 5):
    """T2 and FLAIR as ``thickness`` mm axial slices (a routine 2D protocol), interpolated back onto the 1 mm
    grid."""
    out = dict(images)
    axial = int(np.argmax([abs(d[2]) for d in np.asarray(images["flair"].direction).reshape(3, 3).T]))
    for key in keys:
        array = images[key].array.astype(np.float32)
        size = array.shape[axial]
        index = np.arange(size)
        slab = np.minimum(index // thickness, (size - 1) // thickness)
        centres = np.array([index[slab == number].mean() for number in np.unique(slab)])
        stacked = np.stack([np.moveaxis(array, axial, 0)[slab == number].mean(axis=0) for number in np.unique(slab)])
        # Linear interpolation between slab centres back onto every 1 mm slice.
        upper = np.clip(np.searchsorted(centres, index), 1, len(centres) - 1)
        weight = ((index - centres[upper - 1]) / (centres[upper] - centres[upper - 1])).clip(0, 1)
        resampled = stacked[upper - 1] * (1 - weight)[:, None, None] + stacked[upper] * weight[:, None, None]
        out[key] = images[key].with_array(np.where(brain, np.moveaxis(resampled, 0, axial), 0).astype(np.float32))
    return out


def _low_resolution(images: dict[str, Volume], brain: np.ndarray, factor: float = 2.0) -> dict[str, Volume]:
    """Every sequence acquired at ``factor`` mm isotropic and interpolated back onto the 1 mm grid."""
    out = {}
    for key, volume in images.items():
        small = ndimage.zoom(volume.array.astype(np.float32), 1 / factor, order=1)
        back = ndimage.zoom(small, np.array(brain.shape) / np.array(small.shape), order=1)
        out[key] = volume.with_array(np.where(brain, back, 0).astype(np.float32))
    return out


SHIFTS: dict[str, Callable] = {
    "bias field x1.5": _bias_field,
    "gamma 1.4": _gamma,
    "Rician noise 4%": _noise,
    "T2/FLAIR 5 mm slices": _thick_slices,
    "2 mm isotropic": _low_resolution,
}
# The same changes, stronger: where the networks start to break.
STRONG_SHIFTS: dict[str, Callable] = {
    "bias field x2.5": partial(_bias_field, ratio=2.5),
    "gamma 0.6": partial(_gamma, gamma=0.6),
    "Rician noise 10%": partial(_noise, share=0.10),
    "T2/FLAIR 8 mm slices": partial(_thick_slices, thickness=8),
    "3 mm isotropic": partial(_low_resolution, factor=3.0),
}


def shifted(images: dict[str, Volume], name: str) -> dict[str, Volume]:
    """``images`` (the four sequences of one case) changed as :data:`SHIFTS` or :data:`STRONG_SHIFTS` ``[name]``
    says."""
    return {**SHIFTS, **STRONG_SHIFTS}[name](images, _brain(images))
