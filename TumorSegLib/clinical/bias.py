"""N4 bias-field correction: intensities that drift with coil sensitivity made even again."""

from __future__ import annotations

import numpy as np

from ..volume import Volume

__all__ = ["n4_bias_correction"]


def n4_bias_correction(volume: Volume, mask: np.ndarray | None = None, shrink: int = 4,
                       iterations: tuple[int, ...] = (50, 50, 30)) -> Volume:
    """N4 bias-field correction (SimpleITK), fitted on a shrunk image and applied at full resolution.

    Args:
        volume: 3D MRI.
        mask: voxels to fit on (default: Otsu foreground, SimpleITK's own choice).
        shrink: down-sampling factor for the fit (the field is smooth, so this loses nothing).
        iterations: fitting iterations per resolution level.
    """
    import SimpleITK as sitk

    image = sitk.Cast(volume.to_sitk(), sitk.sitkFloat32)
    # N4 works on log intensities: an image with negative values (a z-scored export) is lifted so that its
    # minimum, the background of such exports, is 0, corrected, and put back (its background unchanged).
    offset = max(0.0, -float(np.min(volume.array)))
    image = image + offset
    mask_image = (sitk.OtsuThreshold(image, 0, 1, 200) if mask is None
                  else volume.with_array(mask.astype(np.uint8)).to_sitk())
    small = sitk.Shrink(image, [shrink] * 3)
    small_mask = sitk.Shrink(mask_image, [shrink] * 3)
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations(list(iterations))
    corrector.Execute(small, small_mask)
    log_field = corrector.GetLogBiasFieldAsImage(image)
    corrected = image / sitk.Exp(log_field) - offset
    return Volume.from_sitk(corrected)
