"""Cross-visit alignment: each follow-up registered rigidly to the baseline (:func:`register_visit`, the one
recipe used by the command line and the Slicer scene), with a warning when the registration is poor.
Measurements stay in each visit's native space; :mod:`.targets` matches lesions through these alignments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..registration import RegistrationResult, register
from ..volume import Volume, read_volume
from .timeline import Timeline, Timepoint

if TYPE_CHECKING:
    import SimpleITK as sitk

__all__ = ["REGISTRATION_SEQUENCES", "VISIT_POOR_MI", "Alignment", "register_visit", "identity", "align_to_baseline",
           "align_visits"]

# Sequences tried, in this order, to register a follow-up to the baseline (the first both visits have).
REGISTRATION_SEQUENCES = ("t1c", "flair", "t1", "t2")
# Same sequence on both visits, resampled to 2 mm: accurate to a few tenths of a millimetre and several times
# faster than at full resolution; 10 000 samples per level are plenty for mutual information.
VISIT_REGISTRATION = {"kind": "rigid", "working_spacing_mm": 2.0, "samples_per_level": 10000}
# Mattes MI (negated by ITK) weaker than this between two visits' images of one sequence: check the alignment.
# The same head, repositioned or rescanned, reaches about -0.5 to -1.2 on the shared cases.
VISIT_POOR_MI = -0.3


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
    warning: str = ""  # a poor or failed registration: lesion matching may be wrong


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
                return Alignment(identity(), f"identity: registration of {key} failed ({first_line[:120]})",
                                 f"visit '{timepoint.id}': registration to the baseline failed; lesions are matched "
                                 "in scanner coordinates, check for false new lesions")
            warning = (f"visit '{timepoint.id}': registration to the baseline is poor (MI {result.metric_value:.2f}); "
                       "check the aligned images before trusting new lesions") if result.metric_value > VISIT_POOR_MI else ""
            return Alignment(result.transform, f"rigid, {key}, MI {result.metric_value:.3f}", warning)
    return Alignment(identity(), "identity: no image common to this visit and the baseline")


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


