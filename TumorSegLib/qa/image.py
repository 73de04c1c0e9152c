"""Checks of one image on its own: shape, values, orientation, field of view, and whether it is an MRI at all
(not a label map, not noise, not CT)."""

from __future__ import annotations

import numpy as np

from ..intensity import foreground
from ..volume import Volume
from .report import Finding, Severity, display_name

__all__ = ["check_volume"]

MIN_VOXELS_PER_AXIS = 8
MIN_FIELD_OF_VIEW_MM = 60.0  # smaller than any brain
MAX_FIELD_OF_VIEW_MM = 500.0  # larger than any head coil's
ANISOTROPY_WARNING = 4.0  # e.g. 1 × 1 × 4 mm and coarser
MAX_LABEL_VALUES = 10  # an image with this few distinct integer values is a label map, not an MRI
# Correlation of neighbouring voxels inside the image: 0.81-0.98 on the shared MRIs, about 0 for noise.
MIN_NEIGHBOUR_CORRELATION = 0.4


def _sample(array: np.ndarray, count: int = 1_000_000) -> np.ndarray:
    return array.ravel()[:: max(1, array.size // count)]


def _content_findings(array: np.ndarray, key: str, name: str) -> list[Finding]:
    """A label map or noise given as an image."""
    sample = _sample(array)
    values = np.unique(sample)
    if len(values) <= MAX_LABEL_VALUES and np.allclose(values, np.round(values)):
        return [Finding(Severity.ERROR, "label_map", f"{name} holds only the values "
                        f"{', '.join(f'{v:g}' for v in values)}: it is a label map (a segmentation), not an MRI; "
                        f"give the {name} image", key)]
    inside = foreground(array)
    pairs = inside[:-1] & inside[1:]
    if pairs.sum() > 1000:
        first, second = _sample(array[:-1][pairs]), _sample(array[1:][pairs])
        correlation = float(np.corrcoef(first, second)[0, 1]) if first.std() > 0 and second.std() > 0 else 0.0
        if correlation < MIN_NEIGHBOUR_CORRELATION:
            return [Finding(Severity.ERROR, "noise", f"{name} shows no anatomy: neighbouring voxels are unrelated "
                            f"(correlation {correlation:.2f}, MRI gives over 0.8), as in random noise or a "
                            f"scrambled export; give the {name} image", key)]
    return []


def check_volume(volume: Volume, key: str) -> list[Finding]:
    """Checks of one image on its own."""
    name = display_name(key)
    findings: list[Finding] = []

    def error(code, message):
        findings.append(Finding(Severity.ERROR, code, message, key))

    def warning(code, message):
        findings.append(Finding(Severity.WARNING, code, message, key))

    if min(volume.shape) < MIN_VOXELS_PER_AXIS:
        error("not_3d", f"{name} has shape {volume.shape}: it is a 2D image or a thin slab; give a 3D volume "
                        f"covering the whole brain (at least {MIN_VOXELS_PER_AXIS} voxels along every axis)")
        return findings
    array = volume.array
    if not np.isfinite(array).all():
        error("not_finite", f"{name} contains NaN or infinite voxel values; re-export the image from the scanner "
                            "or fix the conversion that produced it")
        return findings
    if float(array.max()) == float(array.min()):
        error("constant", f"{name} is constant (every voxel {array.flat[0]}): an empty or failed export")
        return findings
    direction = volume.direction
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-3) or min(volume.spacing) <= 0:
        error("bad_orientation", f"{name} has invalid orientation metadata (direction {direction.round(3).tolist()}, "
                                 f"spacing {volume.spacing}); re-export it from DICOM with a standard converter")
        return findings
    obliqueness = np.degrees(np.arccos(np.clip(np.abs(direction).max(axis=0), -1, 1))).max()
    if obliqueness > 30:
        warning("oblique", f"{name} is acquired {obliqueness:.0f}° oblique to the patient axes; it is resampled, "
                           "check the result in all three planes")
    extent = np.array(volume.shape) * np.array(volume.spacing)
    if extent.max() < MIN_FIELD_OF_VIEW_MM or extent.max() > MAX_FIELD_OF_VIEW_MM:
        error("not_head", f"{name} covers {extent.round().tolist()} mm, not a head: check that the right series "
                          "was chosen and that its voxel spacing is in millimetres")
    anisotropy = max(volume.spacing) / min(volume.spacing)
    if anisotropy >= ANISOTROPY_WARNING:
        warning("anisotropic", f"{name} has voxels of {tuple(round(s, 2) for s in volume.spacing)} mm "
                               f"({anisotropy:.1f}× anisotropic): thin structures are coarse across slices; a 3D "
                               "or thinner-slice acquisition gives better contours")
    if float(np.percentile(array, 1)) < -500:
        error("not_mri", f"{name} has values down to {array.min():.0f}, like CT Hounsfield units; TumorSeg needs MRI")
        return findings
    return findings + _content_findings(array, key, name)
