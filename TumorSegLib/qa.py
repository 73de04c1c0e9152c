"""Input quality checks before a segmentation runs, each with a message that says what to do.

Errors stop the run before anything is changed; warnings are reported with the result. Checks: 2D or
tiny volumes, NaN/infinite or constant images, broken or implausible orientation metadata, extreme
anisotropy, images that do not look like brain MRI (CT numbers, head-sized field of view), and
sequences that look swapped (T2 vs FLAIR from CSF brightness, T1 vs T1c from enhancement).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from .sequences import DISPLAY_NAMES
from .volume import Volume

__all__ = ["Severity", "Finding", "QAReport", "QAError", "check_volume", "check_sequences", "run_qa"]

MIN_VOXELS_PER_AXIS = 8
MIN_FIELD_OF_VIEW_MM = 60.0  # smaller than any brain
MAX_FIELD_OF_VIEW_MM = 500.0  # larger than any head coil's
ANISOTROPY_WARNING = 4.0  # e.g. 1 × 1 × 4 mm and coarser
SWAP_PERCENTILE = 99.5
# Flag when the opposite tail is the heavier one. On the 28 shared cases the opposite/expected ratio was
# at most 0.90 (T2/FLAIR) and 0.55 (T1c/T1) for correct pairs, so at least 1.11 and 1.8 when swapped.
SWAP_RATIO = 1.0


class Severity(str, Enum):
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Finding:
    """One QA result: how serious, a stable code for programs, and a message for people."""

    severity: Severity
    code: str
    message: str
    sequence: str | None = None

    def as_dict(self) -> dict:
        return {"severity": self.severity.value, "code": self.code, "sequence": self.sequence,
                "message": self.message}


class QAError(ValueError):
    """Input that must be fixed before segmenting; ``findings`` lists every error."""

    def __init__(self, findings: list[Finding]):
        self.findings = findings
        super().__init__("; ".join(f.message for f in findings))


@dataclass
class QAReport:
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.WARNING]

    def raise_for_errors(self) -> None:
        if self.errors:
            raise QAError(self.errors)

    def as_list(self) -> list[dict]:
        return [f.as_dict() for f in self.findings]


def _name(key: str) -> str:
    return DISPLAY_NAMES.get(key, key)


def check_volume(volume: Volume, key: str) -> list[Finding]:
    """Checks of one image on its own."""
    name = _name(key)
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


def _in_brain(volume: Volume) -> np.ndarray:
    array = volume.array
    mask = array > np.percentile(array, 2)
    if mask.mean() > 0.9:  # no dark background (skull-stripped images have zeros outside the brain)
        mask = array > np.percentile(array, 25)
    return mask


def _zscore(array: np.ndarray, mask: np.ndarray) -> np.ndarray:
    values = array[mask].astype(np.float64)
    return (array - values.mean()) / (values.std() + 1e-9)


def check_sequences(volumes: Mapping[str, Volume]) -> list[Finding]:
    """Checks across sequences on one grid: T2/FLAIR and T1/T1c swaps."""
    findings: list[Finding] = []
    shapes = {v.shape for v in volumes.values()}
    if len(shapes) != 1:
        return findings  # swaps are judged voxel by voxel: only on a common grid
    mask = np.logical_and.reduce([_in_brain(v) for v in volumes.values()])
    if mask.sum() < 1000:
        return findings
    z = {key: _zscore(v.array, mask) for key, v in volumes.items()}
    # Each pair differs most, in one direction, in a known tissue: fluid is far brighter on T2 than on FLAIR,
    # enhancement far brighter on T1c than on T1. If the opposite tail is the heavier one, the pair is swapped.
    for first, second, code, tissue in (("t2", "flair", "swapped_t2_flair", "fluid (CSF)"),
                                        ("t1c", "t1", "swapped_t1_t1c", "enhancement")):
        if {first, second} <= set(z):
            difference = z[first][mask] - z[second][mask]
            expected_tail = float(np.percentile(difference, SWAP_PERCENTILE))
            opposite_tail = float(np.percentile(-difference, SWAP_PERCENTILE))
            if opposite_tail > SWAP_RATIO * expected_tail:
                findings.append(Finding(
                    Severity.WARNING, code,
                    f"the {_name(first)} and {_name(second)} volumes look swapped: {tissue} should be brighter on "
                    f"{_name(first)} but is brighter on the volume given as {_name(second)}; check the assignment",
                    second))
    return findings


def run_qa(volumes: Mapping[str, Volume]) -> QAReport:
    """All single-image checks, then the cross-sequence checks when the images pass."""
    report = QAReport()
    for key, volume in volumes.items():
        report.findings += check_volume(volume, key)
    if not report.errors:
        report.findings += check_sequences(volumes)
    return report
