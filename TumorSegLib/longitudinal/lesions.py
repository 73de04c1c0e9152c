"""Cross-visit alignment and new lesions.

Each follow-up is registered rigidly to the baseline (:func:`register_visit`, the one recipe used by the
command line and the Slicer scene); enhancing tumour of every earlier visit is mapped into baseline space,
and a follow-up lesion (26-connected ET component, in its own space) is new when it lies farther than
``tolerance_mm`` from all of it. Measurements stay in each visit's native space.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..labels import Label
from ..registration import RegistrationResult, register, resample_moving
from ..volume import Volume, read_volume
from .measurements import TimepointMeasurements, label_lesions
from .timeline import Timeline, Timepoint

if TYPE_CHECKING:
    import SimpleITK as sitk

__all__ = ["REGISTRATION_SEQUENCES", "Alignment", "LesionStatus", "register_visit", "identity", "align_to_baseline",
           "align_visits", "lesion_status", "track_lesions"]

# Sequences tried, in this order, to register a follow-up to the baseline (the first both visits have).
REGISTRATION_SEQUENCES = ("t1c", "flair", "t1", "t2")
# Same sequence on both visits, resampled to 2 mm: accurate to a few tenths of a millimetre and several times
# faster than at full resolution; 10 000 samples per level are plenty for mutual information.
VISIT_REGISTRATION = {"kind": "rigid", "working_spacing_mm": 2.0, "samples_per_level": 10000}


def register_visit(fixed: Volume, moving: Volume, **options: Any) -> RegistrationResult:
    """Rigid registration of a visit's image (``moving``) onto the baseline's (``fixed``): the visit recipe.

    ``options`` override :data:`VISIT_REGISTRATION` (passed to :func:`~TumorSegLib.registration.register`).
    """
    return register(fixed, moving, **{**VISIT_REGISTRATION, **options})


@dataclass(frozen=True)
class Alignment:
    """How a visit was aligned to the baseline.

    Attributes:
        transform: maps baseline physical points to this visit's physical points (ITK convention; resample
            this visit through it onto the baseline grid, or load it in Slicer as the visit's transform).
        method: e.g. ``"rigid, t1c, MI -0.61"`` or ``"identity: no common image"``.
    """

    transform: "sitk.Transform"
    method: str


@dataclass(frozen=True)
class LesionStatus:
    """Whether a follow-up lesion was there before.

    Attributes:
        index: lesion number in the follow-up (as in its measurements).
        volume_ml: its enhancing volume.
        distance_mm: distance from the lesion to the nearest enhancing tumour of any earlier visit (0 when
            they overlap; ``inf`` when no earlier visit had any).
        new: ``distance_mm`` > the tolerance.
        measurable: as in the follow-up's measurements.
    """

    index: int
    volume_ml: float
    distance_mm: float
    new: bool
    measurable: bool


def identity() -> sitk.Transform:
    import SimpleITK as sitk

    return sitk.Euler3DTransform()


def align_to_baseline(baseline: Timepoint, timepoint: Timepoint, **registration_options: Any) -> Alignment:
    """Rigidly register ``timepoint``'s image to ``baseline``'s (first sequence both have, T1c first).

    Falls back to the identity (scanner coordinates) when the two visits share no image. Registration runs
    on images resampled to 2 mm unless ``working_spacing_mm`` says otherwise: same-sequence registration
    there is accurate to a few tenths of a millimetre and several times faster than at full resolution
    (options default to 2 mm and 10 000 samples per level).

    Args:
        baseline: the fixed visit.
        timepoint: the moving visit.
        **registration_options: passed to :func:`TumorSegLib.registration.register`.
    """
    if timepoint is baseline or timepoint.id == baseline.id:
        return Alignment(identity(), "baseline")
    for key in REGISTRATION_SEQUENCES:
        if key in baseline.images and key in timepoint.images:
            fixed, moving = read_volume(baseline.images[key]), read_volume(timepoint.images[key])
            try:
                result = register_visit(fixed, moving, **registration_options)
            except (RuntimeError, ValueError) as error:  # e.g. images that do not overlap at all
                first_line = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
                return Alignment(identity(), f"identity: registration of {key} failed ({first_line[:120]})")
            return Alignment(result.transform, f"rigid, {key}, MI {result.metric_value:.3f}")
    return Alignment(identity(), "identity: no image common to this visit and the baseline")


def lesion_status(followup: Volume, to_followup: "sitk.Transform", earlier: Sequence[tuple[Volume, "sitk.Transform"]],
                  baseline_grid: Volume, measurements: TimepointMeasurements | None = None,
                  tolerance_mm: float = 5.0) -> tuple[LesionStatus, ...]:
    """Classify each enhancing lesion of a follow-up as new or present before.

    Args:
        followup: the follow-up's internal label map on its own grid.
        to_followup: maps baseline points to follow-up points.
        earlier: (label map, baseline → visit transform) of every earlier visit, baseline included.
        baseline_grid: the baseline's grid (the common space).
        measurements: the follow-up's measurements, to report which lesions are measurable.
        tolerance_mm: a lesion within this distance of earlier enhancing tumour is not new (covers
            registration error and growth from an old lesion's edge).

    Returns:
        One :class:`LesionStatus` per lesion, numbered as :func:`~TumorSegLib.longitudinal.measurements.label_lesions` does.
    """
    from scipy import ndimage

    components, count = label_lesions(followup.array == Label.ET)
    if count == 0:
        return ()
    grid = baseline_grid.with_array(np.zeros(baseline_grid.shape, np.uint8))
    before = np.zeros(grid.shape, bool)
    for labels, transform in earlier:
        mapped = resample_moving(labels.with_array((labels.array == Label.ET).astype(np.uint8)), grid, transform, 0)
        before |= mapped.array > 0
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    measurable = {lesion.index: lesion.measurable for lesion in measurements.lesions} if measurements else {}
    if before.any():
        # Distance (mm) to earlier enhancing tumour, computed in baseline space, then carried onto the follow-up
        # grid (linear) so each lesion is judged on its own voxels.
        distance = grid.with_array(ndimage.distance_transform_edt(~before, sampling=grid.spacing).astype(np.float32))
        far = float(np.linalg.norm(np.array(grid.shape) * np.array(grid.spacing)))
        on_followup = resample_moving(distance, followup, to_followup.GetInverse(), order=1, default=far).array
        lesion_voxels = components > 0
        nearest = np.full(count + 1, np.inf)
        np.minimum.at(nearest, components[lesion_voxels], on_followup[lesion_voxels])
        nearest = nearest[1:]
    else:
        nearest = [math.inf] * count
    return tuple(LesionStatus(index, float(sizes[index]) * followup.voxel_volume_ml, float(nearest[index - 1]),
                              bool(nearest[index - 1] > tolerance_mm), measurable.get(index, False))
                 for index in range(1, count + 1))


def align_visits(timeline: Timeline, register_visits: bool = True,
                 registration_options: Mapping[str, Any] | None = None) -> dict[str, Alignment]:
    """Alignment of the baseline and every later visit to the baseline (earlier visits are left out).

    Args:
        timeline: the visits; image paths must exist when ``register_visits``.
        register_visits: register rigidly (:func:`align_to_baseline`); otherwise trust scanner coordinates.
        registration_options: passed to :func:`TumorSegLib.registration.register`.

    Raises:
        FileNotFoundError: for a missing image, naming the visit.
    """
    baseline = timeline.baseline
    ordered = timeline.ordered()
    start = next(n for n, tp in enumerate(ordered) if tp.id == baseline.id)
    alignments = {}
    for tp in ordered[start:]:
        if register_visits:
            for key, path in tp.images.items():
                if not path.exists():
                    raise FileNotFoundError(f"timepoint '{tp.id}': {key} image not found: {path}")
            alignments[tp.id] = align_to_baseline(baseline, tp, **dict(registration_options or {}))
        else:
            alignments[tp.id] = Alignment(identity(), "baseline" if tp.id == baseline.id
                                          else "identity: registration switched off")
    return alignments


def track_lesions(timeline: Timeline, labels: Mapping[str, Volume], alignments: Mapping[str, Alignment],
                  tolerance_mm: float = 5.0) -> dict[str, tuple[LesionStatus, ...]]:
    """New-or-not status of every lesion of every follow-up, against all earlier visits from the baseline on.

    Args:
        timeline: the visits (their stored measurements say which lesions are measurable).
        labels: internal label map of each segmented visit, by id, on its own grid.
        alignments: by id, from :func:`align_visits`; visits without one are skipped.
        tolerance_mm: see :func:`lesion_status`.
    """
    baseline = timeline.baseline
    if baseline.id not in labels or baseline.id not in alignments:
        return {}
    ordered = timeline.ordered()
    start = next(n for n, tp in enumerate(ordered) if tp.id == baseline.id)
    statuses: dict[str, tuple[LesionStatus, ...]] = {}
    earlier: list[tuple[Volume, sitk.Transform]] = []
    for tp in ordered[start:]:
        if tp.id not in labels or tp.id not in alignments:
            continue
        if tp.id != baseline.id:
            statuses[tp.id] = lesion_status(labels[tp.id], alignments[tp.id].transform, earlier, labels[baseline.id],
                                            tp.measurements, tolerance_mm)
        earlier.append((labels[tp.id], alignments[tp.id].transform))
    return statuses
