"""RANO 2.0 response rules in one place: thresholds, categories, and the imaging-based category of a visit.

Response (RANO 2.0, Wen et al., J Clin Oncol 2023; imaging-based, per follow-up visit), two methods side by side:

* bidimensional, on the sum of products of perpendicular diameters (SPD) of the target lesions:
  PR when the change vs baseline is ≤ −50 %, PD when the change vs nadir is ≥ +25 %;
* volumetric, on the enhancing-tumour (ET) volume: PR ≤ −65 % vs baseline, PD ≥ +40 % vs nadir.

Thresholds are inclusive ("a decrease of 50 % or more"), as RANO words them, and compared with a
tolerance of 1e-9 percentage points so that a change exactly on the threshold counts despite floating
point. The nadir is the smallest value at baseline or any evaluated visit after it and before the
current one. Rules, in order:

1. PD if: a new *measurable* enhancing lesion; or change vs nadir reaches the PD threshold; or
   measurable disease after a nadir with none; or clinical status "worse" (clinical deterioration).
2. CR if no enhancing tumour is left (there was some at baseline) and steroids were not increased and
   clinical status is not worse; otherwise SD.
3. PR if change vs baseline reaches the PR threshold, no new lesion of any size appeared, steroids were
   not increased and clinical status is not worse; otherwise SD.
4. SD otherwise. An increased steroid dose alone never makes PD (RANO 2.0).

Every category is an imaging-based suggestion: RANO also needs confirmation scans (CR/PR sustained for
≥ 4 weeks; PD within 12 weeks of radiotherapy), non-enhancing disease for some tumours, and the
treating team's judgement. Rows carry the note "imaging only, needs clinical confirmation".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

__all__ = ["IMAGING_ONLY", "SteroidChange", "ClinicalStatus", "ResponseCategory", "RanoThresholds", "RANO_2_0",
           "Response", "percent_change", "classify_response"]

IMAGING_ONLY = "imaging only, needs clinical confirmation"
# Changes this close (in percentage points) to a threshold count as reaching it: floating point must not
# move a change that is exactly on the threshold to the other side.
_THRESHOLD_TOLERANCE_PCT = 1e-9


class SteroidChange(str, Enum):
    """Corticosteroid dose at a visit compared with baseline."""

    INCREASED = "increased"
    STABLE = "stable"
    DECREASED = "decreased"


class ClinicalStatus(str, Enum):
    """Neurological status at a visit compared with the previous assessment."""

    WORSE = "worse"
    STABLE = "stable"
    BETTER = "better"


class ResponseCategory(str, Enum):
    """RANO categories, plus the row labels of visits that get none."""

    CR = "CR"  # complete response
    PR = "PR"  # partial response
    SD = "SD"  # stable disease
    PD = "PD"  # progressive disease
    BASELINE = "baseline"
    PRE_BASELINE = "pre-baseline"
    NOT_EVALUABLE = "NE"  # no segmentation at this visit


@dataclass(frozen=True)
class RanoThresholds:
    """Percent changes at which a category starts (inclusive): PR at ≤ ``pr_pct``, PD at ≥ ``pd_pct``."""

    pr_pct: float
    pd_pct: float


RANO_2_0: dict[str, RanoThresholds] = {
    "bidimensional": RanoThresholds(pr_pct=-50.0, pd_pct=25.0),
    "volumetric": RanoThresholds(pr_pct=-65.0, pd_pct=40.0),
}


def percent_change(reference: float | None, value: float | None) -> float | None:
    """``100 · (value − reference) / reference``; ``None`` when either is missing or the reference is 0."""
    if reference is None or value is None or reference == 0:
        return None
    return 100.0 * (value - reference) / reference


def _reaches_decrease(change: float | None, threshold: float) -> bool:
    return change is not None and change <= threshold + _THRESHOLD_TOLERANCE_PCT


def _reaches_increase(change: float | None, threshold: float) -> bool:
    return change is not None and change >= threshold - _THRESHOLD_TOLERANCE_PCT


@dataclass(frozen=True)
class Response:
    """A response category with the reasons that led to it.

    Attributes:
        category: CR, PR, SD or PD.
        method: ``'bidimensional'`` or ``'volumetric'``.
        reasons: human-readable facts behind the category.
        note: always "imaging only, needs clinical confirmation".
    """

    category: ResponseCategory
    method: str
    reasons: tuple[str, ...]
    note: str = IMAGING_ONLY


def classify_response(method: str, baseline_value: float, nadir_value: float, current_value: float, *,
                      enhancing_disease: bool, baseline_enhancing_disease: bool = True,
                      measurable_disease: bool | None = None, new_lesions: int = 0, new_measurable_lesions: int = 0,
                      steroids: SteroidChange | str | None = None,
                      clinical_status: ClinicalStatus | str | None = None,
                      thresholds: Mapping[str, RanoThresholds] = RANO_2_0) -> Response:
    """RANO 2.0 imaging-based category of one follow-up visit (rules in the module docstring).

    Args:
        method: ``'bidimensional'`` (values are SPDs in mm²) or ``'volumetric'`` (ET volumes in mL).
        baseline_value: value at baseline.
        nadir_value: smallest value at baseline or any evaluated visit since, before this one.
        current_value: value at this visit.
        enhancing_disease: whether any enhancing tumour is present now.
        baseline_enhancing_disease: whether any was present at baseline (CR needs something to respond).
        measurable_disease: whether a measurable lesion is present now; default: ``current_value > 0``.
        new_lesions: enhancing lesions absent from every earlier visit (any size).
        new_measurable_lesions: those of them that are measurable.
        steroids: dose vs baseline, if known.
        clinical_status: neurological status, if known.
        thresholds: per-method :class:`RanoThresholds`.

    Returns:
        The category, with its reasons and the imaging-only note.
    """
    if method not in thresholds:
        raise ValueError(f"method must be one of {sorted(thresholds)}, got {method!r}")
    limits = thresholds[method]
    steroids = SteroidChange(steroids) if steroids is not None else None
    clinical_status = ClinicalStatus(clinical_status) if clinical_status is not None else None
    measurable_disease = current_value > 0 if measurable_disease is None else measurable_disease
    unit = "SPD" if method == "bidimensional" else "ET volume"
    progression = _progression(unit, limits, nadir_value, current_value, measurable_disease,
                               new_measurable_lesions, clinical_status)
    if progression:
        return Response(ResponseCategory.PD, method, tuple(progression))
    blockers = ["steroid dose increased"] if steroids is SteroidChange.INCREASED else []
    missing = [name for name, value in (("steroids", steroids), ("clinical status", clinical_status)) if value is None]
    unknown = (f"clinical input(s) not given: {', '.join(missing)}",) if missing else ()
    if not enhancing_disease:
        if not baseline_enhancing_disease:
            return Response(ResponseCategory.SD, method, ("no enhancing tumour at baseline nor now",))
        if blockers:
            return Response(ResponseCategory.SD, method, ("no enhancing tumour left", *blockers, "CR needs them not"))
        return Response(ResponseCategory.CR, method, ("no enhancing tumour left", *unknown))
    summary = (f"{unit} {_text(percent_change(baseline_value, current_value))} vs baseline, "
               f"{_text(percent_change(nadir_value, current_value))} vs nadir")
    if _reaches_decrease(percent_change(baseline_value, current_value), limits.pr_pct):
        blockers += [f"{new_lesions} new lesion(s)"] if new_lesions else []
        if blockers:
            return Response(ResponseCategory.SD, method,
                            (f"{summary} (PR from {limits.pr_pct:+g} %)", *blockers, "PR needs none of these"))
        return Response(ResponseCategory.PR, method, (f"{summary} (PR from {limits.pr_pct:+g} %)", *unknown))
    return Response(ResponseCategory.SD, method, (summary,))


def _text(change: float | None) -> str:
    return "n/a" if change is None else f"{change:+.1f} %"


def _progression(unit: str, limits: RanoThresholds, nadir_value: float, current_value: float,
                 measurable_disease: bool, new_measurable_lesions: int,
                 clinical_status: ClinicalStatus | None) -> list[str]:
    """The reasons for progressive disease at this visit (empty when there are none)."""
    reasons = []
    vs_nadir = percent_change(nadir_value, current_value)
    if new_measurable_lesions:
        reasons.append(f"{new_measurable_lesions} new measurable enhancing lesion(s)")
    if _reaches_increase(vs_nadir, limits.pd_pct):
        reasons.append(f"{unit} {_text(vs_nadir)} vs nadir (PD from {limits.pd_pct:+g} %)")
    elif nadir_value == 0 and current_value > 0 and measurable_disease:
        reasons.append(f"measurable enhancing disease after a nadir with none ({unit} {current_value:g})")
    if clinical_status is ClinicalStatus.WORSE:
        reasons.append("clinical deterioration")
    return reasons
