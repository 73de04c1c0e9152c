"""What is background: the constant that fills a skull-stripped or masked image around the brain.

Exports differ in that constant: exact 0 (BraTS), 1e-22 after a resampling, a negative value in
intensity-normalised exports. Taking "non-zero" for "brain" turns such a background into brain (a whole head
of "tumour"); here the background is read off the image's border instead.
"""

from __future__ import annotations

import numpy as np

__all__ = ["constant_background", "foreground", "foreground_mask"]

BORDER_SHARE = 0.9  # of border voxels that must hold the one value for it to be a constant background
TOLERANCE = 1e-4  # of the image's robust intensity range: values this close to the background are background


def _border(array: np.ndarray) -> np.ndarray:
    return np.concatenate([array[[0, -1], :, :].ravel(), array[:, [0, -1], :].ravel(), array[:, :, [0, -1]].ravel()])


def _tolerance(array: np.ndarray) -> float:
    low, high = np.percentile(array[:: max(1, array.size // 200000)], [0.5, 99.5])
    return TOLERANCE * max(float(high - low), 1e-12)


def constant_background(array: np.ndarray) -> float | None:
    """The value filling the border of a 3D image when nearly all of it holds one value (a stripped or masked
    image); ``None`` when the border varies (the noisy air around a head)."""
    border = _border(array).astype(np.float64)
    value = float(np.median(border))
    return value if np.mean(np.abs(border - value) <= _tolerance(array)) >= BORDER_SHARE else None


def foreground(array: np.ndarray) -> np.ndarray:
    """Voxels of a 3D image that are not its constant background (all voxels when it has none)."""
    value = constant_background(array)
    if value is None:
        return np.ones(array.shape, bool)
    return np.abs(array.astype(np.float64) - value) > _tolerance(array)


def foreground_mask(channels: np.ndarray) -> np.ndarray:
    """Voxels that are foreground in any channel of a (C, I, J, K) stack; channels without a constant
    background (unstripped heads) do not widen it, unless no channel has one."""
    masks = [foreground(channel) for channel in channels if constant_background(channel) is not None]
    return np.any(masks, axis=0) if masks else np.ones(channels.shape[1:], bool)
