"""RANO 2.0 response rules in one place (Wen et al., J Clin Oncol 2023): thresholds, per-visit categories and
the rules that need the whole series (confirmation, progression after radiotherapy, new baselines).

Per follow-up visit, against the series' baseline and nadir (the smallest value at baseline or any evaluated
visit since, before this one). Thresholds are inclusive and compared with a 1e-9 percentage-point tolerance:

* enhancing disease: bidimensional on the sum of products of the target lesions' perpendicular diameters
  (SPD; up to 3 measurable target lesions chosen at baseline), PR ≤ −50 % vs baseline, PD ≥ +25 % vs nadir;
  volumetric on the enhancing volume, PR ≤ −65 %, PD ≥ +40 %;
* non-enhancing disease (T2/FLAIR, for lower-grade, IDH-mutant and non-enhancing tumours): the same on the
  T2/FLAIR lesions (whole-tumour region), plus minor response (MR) ≤ −25 % bidimensionally; volumetrically
  MR ≤ −35 %, the volume change of a 25 % bidimensional decrease (0.75^1.5 − 1).

Per-visit rules, in order:

1. PD: a new measurable lesion (in the non-enhancing assessment, also new enhancement); change vs nadir at
   the PD threshold; measurable disease after a nadir with none; unequivocal progression of non-target
   lesions (operationalised: their volume +40 % and +1 mL vs its nadir); clinical deterioration.
2. CR: no lesion of the assessed kind left (there was some at baseline), no new lesion, steroids off (or
   physiologic replacement) and clinical status not worse. Disappearance while still on steroids is PR.
3. PR (MR): change vs baseline at the PR (MR) threshold, no new lesion, steroids not increased vs baseline,
   clinical status not worse; otherwise SD. An increased steroid dose alone never makes PD.
4. SD otherwise.

Series rules: CR, PR and MR need a confirmation scan at least 4 weeks later that still shows that response
(or a better one): until then the category is *preliminary*; if that scan does not sustain it, the visit is
SD. Imaging progression within 12 weeks after the end of radiotherapy needs confirmation by the next scan at
least 4 weeks later (else pseudo-progression is suspected and the visit is SD). After (confirmed) progression
the series is no longer scored against its baseline: later visits read "after PD" until a visit is marked as
a new baseline (e.g. a new line of therapy).

Every category is an imaging-based suggestion ("imaging only, needs clinical confirmation").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum

__all__ = ["IMAGING_ONLY", "CONFIRMATION_DAYS", "RADIOTHERAPY_WINDOW_DAYS", "Assessment", "SteroidChange",
           "ClinicalStatus", "ResponseCategory", "Confirmation", "RanoThresholds", "THRESHOLDS", "RANO_2_0",
           "NON_TARGET_PROGRESSION", "VisitFacts", "Response", "percent_change", "classify_response",
           "assess_series"]

IMAGING_ONLY = "imaging only, needs clinical confirmation"
CONFIRMATION_DAYS = 28  # a response must be sustained at a scan at least 4 weeks later
RADIOTHERAPY_WINDOW_DAYS = 84  # progression within 12 weeks after the end of radiotherapy needs confirmation
_TOLERANCE_PCT = 1e-9  # a change exactly on a threshold counts as reaching it despite floating point


class Assessment(str, Enum):
    """Which disease a patient is followed on (RANO 2.0 chooses per tumour type)."""

    ENHANCING = "enhancing"  # contrast-enhancing tumour (glioblastoma, most high-grade gliomas)
    NON_ENHANCING = "non-enhancing"  # T2/FLAIR abnormality (lower-grade, IDH-mutant, non-enhancing tumours)


class SteroidChange(str, Enum):
    """Corticosteroid dose at a visit compared with baseline."""

    INCREASED = "increased"
    STABLE = "stable"
    DECREASED = "decreased"
    OFF = "off"  # none, or physiologic replacement only (what CR requires)


class ClinicalStatus(str, Enum):
    """Neurological status at a visit compared with the previous assessment."""

    WORSE = "worse"
    STABLE = "stable"
    BETTER = "better"


class ResponseCategory(str, Enum):
    """RANO categories, plus the row labels of visits that get none."""

    CR = "CR"  # complete response
    PR = "PR"  # partial response
    MR = "MR"  # minor response (non-enhancing assessment only)
    SD = "SD"  # stable disease
    PD = "PD"  # progressive disease
    BASELINE = "baseline"
    PRE_BASELINE = "pre-baseline"
    NOT_EVALUABLE = "NE"  # no segmentation at this visit, or no baseline measurement
    AFTER_PROGRESSION = "after PD"  # not scored against a baseline that progression has ended


class Confirmation(str, Enum):
    NOT_NEEDED = ""
    PRELIMINARY = "preliminary"  # no scan at least 4 weeks later yet
    CONFIRMED = "confirmed"
    NOT_CONFIRMED = "not confirmed"


@dataclass(frozen=True)
class RanoThresholds:
    """Percent changes at which a category starts (inclusive): PR at ≤ ``pr_pct``, MR at ≤ ``mr_pct`` (when
    the assessment has one), PD at ≥ ``pd_pct``."""

    pr_pct: float
    pd_pct: float
    mr_pct: float | None = None


THRESHOLDS: dict[Assessment, dict[str, RanoThresholds]] = {
    Assessment.ENHANCING: {"bidimensional": RanoThresholds(-50.0, 25.0),
                           "volumetric": RanoThresholds(-65.0, 40.0)},
    Assessment.NON_ENHANCING: {"bidimensional": RanoThresholds(-50.0, 25.0, mr_pct=-25.0),
                               "volumetric": RanoThresholds(-65.0, 40.0, mr_pct=-35.0)},
}
RANO_2_0 = THRESHOLDS[Assessment.ENHANCING]
# Unequivocal progression of non-target lesions, as TumorSeg measures it: their volume vs its own nadir.
NON_TARGET_PROGRESSION = {"pct": 40.0, "ml": 1.0}
_RANK = {ResponseCategory.CR: 3, ResponseCategory.PR: 2, ResponseCategory.MR: 1}


@dataclass(frozen=True)
class VisitFacts:
    """What the rules need to know about one visit (measured by :mod:`.targets`; no images).

    Attributes:
        value: the method's measure (SPD of the target lesions in mm², or the assessed region's volume in
            mL); ``None`` when the visit was not measured.
        disease: any lesion of the assessed kind present (targets or not).
        measurable: a measurable lesion of the assessed kind is present.
        new_lesions, new_measurable_lesions: lesions outside all earlier tumour of the series.
        non_target_progression: unequivocal growth of the non-target lesions.
        new_enhancement: (non-enhancing assessment) a new measurable enhancing lesion.
        new_baseline: this visit starts a new series (e.g. a new line of therapy).
        unmeasurable: why this visit's images cannot show the assessed disease (e.g. "no T1c"): it is not
            evaluable, never a response (enhancement missing from a scan without contrast is not a CR).
    """

    id: str
    date: dt.date
    value: float | None
    disease: bool = True
    measurable: bool = True
    new_lesions: int = 0
    new_measurable_lesions: int = 0
    non_target_progression: bool = False
    new_enhancement: bool = False
    steroids: SteroidChange | None = None
    clinical_status: ClinicalStatus | None = None
    new_baseline: bool = False
    unmeasurable: str = ""


@dataclass(frozen=True)
class Response:
    """A visit's category with the reasons behind it, its confirmation state and the series' baseline."""

    category: ResponseCategory
    method: str
    reasons: tuple[str, ...]
    confirmation: Confirmation = Confirmation.NOT_NEEDED
    baseline: str = ""
    note: str = IMAGING_ONLY


def percent_change(reference: float | None, value: float | None) -> float | None:
    """``100 · (value − reference) / reference``; ``None`` when either is missing or the reference is 0."""
    if reference is None or value is None or reference == 0:
        return None
    return 100.0 * (value - reference) / reference


def _at_most(change: float | None, threshold: float | None) -> bool:
    return change is not None and threshold is not None and change <= threshold + _TOLERANCE_PCT


def _text(change: float | None) -> str:
    return "n/a" if change is None else f"{change:+.1f} %"


def classify_response(method: str, baseline: VisitFacts, nadir_value: float, visit: VisitFacts,
                      assessment: Assessment | str = Assessment.ENHANCING) -> Response:
    """RANO 2.0 category of one follow-up against its series' baseline and nadir (rules 1-4 above).

    Raises:
        ValueError: for an unknown method or assessment.
    """
    assessment = Assessment(assessment)
    if method not in THRESHOLDS[assessment]:
        raise ValueError(f"method must be one of {sorted(THRESHOLDS[assessment])}, got {method!r}")
    limits = THRESHOLDS[assessment][method]
    unit = {"bidimensional": "SPD", "volumetric": "volume"}[method]
    progression = _progression(unit, limits, nadir_value, visit, assessment)
    if progression:
        return Response(ResponseCategory.PD, method, tuple(progression), baseline=baseline.id)
    blockers = ["steroid dose increased"] if visit.steroids is SteroidChange.INCREASED else []
    blockers += [f"{visit.new_lesions} new lesion(s)"] if visit.new_lesions else []
    missing = [name for name, value in (("steroids", visit.steroids), ("clinical status", visit.clinical_status))
               if value is None]
    unknown = (f"clinical input(s) not given: {', '.join(missing)}",) if missing else ()
    if not visit.disease:
        if not baseline.disease:
            return Response(ResponseCategory.SD, method, ("no lesion at baseline nor now",), baseline=baseline.id)
        if blockers:
            return Response(ResponseCategory.SD, method, ("no lesion left", *blockers, "CR needs none of these"),
                            baseline=baseline.id)
        if visit.steroids not in (SteroidChange.OFF, None):
            return Response(ResponseCategory.PR, method, ("no lesion left", f"steroids {visit.steroids.value}: CR "
                                                          "needs them stopped"), baseline=baseline.id)
        return Response(ResponseCategory.CR, method, ("no lesion left", *unknown), baseline=baseline.id)
    change = percent_change(baseline.value, visit.value)
    summary = f"{unit} {_text(change)} vs baseline, {_text(percent_change(nadir_value, visit.value))} vs nadir"
    for category, threshold in ((ResponseCategory.PR, limits.pr_pct), (ResponseCategory.MR, limits.mr_pct)):
        if _at_most(change, threshold):
            reason = f"{summary} ({category.value} from {threshold:+g} %)"
            if blockers:
                return Response(ResponseCategory.SD, method, (reason, *blockers, f"{category.value} needs none of "
                                                              "these"), baseline=baseline.id)
            return Response(category, method, (reason, *unknown), baseline=baseline.id)
    return Response(ResponseCategory.SD, method, (summary,), baseline=baseline.id)


def _progression(unit: str, limits: RanoThresholds, nadir_value: float, visit: VisitFacts,
                 assessment: Assessment) -> list[str]:
    """The reasons for progressive disease at this visit (empty when there are none)."""
    reasons = []
    vs_nadir = percent_change(nadir_value, visit.value)
    if visit.new_measurable_lesions:
        reasons.append(f"{visit.new_measurable_lesions} new measurable lesion(s)")
    if assessment is Assessment.NON_ENHANCING and visit.new_enhancement:
        reasons.append("new measurable enhancing disease")
    if vs_nadir is not None and vs_nadir >= limits.pd_pct - _TOLERANCE_PCT:
        reasons.append(f"{unit} {_text(vs_nadir)} vs nadir (PD from {limits.pd_pct:+g} %)")
    elif nadir_value == 0 and visit.measurable and (visit.value or 0) > 0:
        reasons.append(f"measurable disease after a nadir with none ({unit} {visit.value:g})")
    if visit.non_target_progression:
        reasons.append("unequivocal growth of non-target lesions")
    if visit.clinical_status is ClinicalStatus.WORSE:
        reasons.append("clinical deterioration")
    return reasons


def assess_series(visits: Sequence[VisitFacts], method: str, assessment: Assessment | str = Assessment.ENHANCING,
                  baseline_id: str | None = None, radiotherapy_end: dt.date | None = None) -> list[Response]:
    """The category of every visit (in the given, chronological order), the series rules applied.

    Args:
        visits: in chronological order.
        method: ``'bidimensional'`` or ``'volumetric'``.
        assessment: enhancing or non-enhancing disease.
        baseline_id: the first baseline (default: the first visit); visits before it are pre-baseline.
        radiotherapy_end: end of radiotherapy, if known (progression within 12 weeks after it needs confirmation).
    """
    assessment = Assessment(assessment)
    start = next((n for n, v in enumerate(visits) if v.id == baseline_id), 0) if baseline_id else 0
    raw = _raw_responses(visits, method, assessment, start)
    out = list(raw)
    progressed: str | None = None
    for n in range(start + 1, len(visits)):
        if visits[n].new_baseline:
            progressed = None
            continue
        if progressed is not None:
            out[n] = Response(ResponseCategory.AFTER_PROGRESSION, method, (f"after progression at {progressed}: set a "
                              "new baseline (e.g. a new line of therapy) to score again",), baseline=raw[n].baseline)
            continue
        out[n] = _confirmed(visits, raw, n, radiotherapy_end)
        if out[n].category is ResponseCategory.PD and out[n].confirmation is not Confirmation.PRELIMINARY:
            progressed = visits[n].id
    return out


def _raw_responses(visits: Sequence[VisitFacts], method: str, assessment: Assessment, start: int) -> list[Response]:
    """Per-visit categories against each visit's series baseline and nadir, before the series rules."""
    out: list[Response] = []
    baseline: VisitFacts | None = None
    history: list[float] = []
    for n, visit in enumerate(visits):
        if n < start:
            out.append(Response(ResponseCategory.PRE_BASELINE, method, ("before the baseline visit",)))
        elif n == start or visit.new_baseline:
            baseline, history = visit, ([visit.value] if visit.value is not None else [])
            why = "baseline" if n == start else "new baseline (e.g. a new line of therapy)"
            out.append(Response(ResponseCategory.BASELINE, method, (why,), baseline=visit.id))
        elif visit.value is None or baseline is None or baseline.value is None:
            why = ("no segmentation measured at this visit" if visit.value is None
                   else "the baseline was not measured")
            if visit.unmeasurable:
                why = f"{visit.unmeasurable} at this visit: its disease cannot be measured"
            elif baseline is not None and baseline.unmeasurable:
                why = f"{baseline.unmeasurable} at the baseline: it cannot be measured"
            out.append(Response(ResponseCategory.NOT_EVALUABLE, method, (why,), baseline=baseline.id if baseline else ""))
        else:
            out.append(classify_response(method, baseline, min(history), visit, assessment))
            history.append(visit.value)
    return out


def _confirmation_scan(visits: Sequence[VisitFacts], raw: Sequence[Response], n: int) -> int | None:
    """The first evaluated visit of the same series at least 4 weeks after visit ``n``."""
    for m in range(n + 1, len(visits)):
        if visits[m].new_baseline:
            return None
        if (visits[m].date - visits[n].date).days >= CONFIRMATION_DAYS and raw[m].category not in (
                ResponseCategory.NOT_EVALUABLE,):
            return m
    return None


def _confirmed(visits: Sequence[VisitFacts], raw: Sequence[Response], n: int,
               radiotherapy_end: dt.date | None) -> Response:
    """Visit ``n``'s category once responses and early progression have been confirmed (or not)."""
    response, visit = raw[n], visits[n]
    imaging = [r for r in response.reasons if r != "clinical deterioration"]
    early = (radiotherapy_end is not None and 0 <= (visit.date - radiotherapy_end).days <= RADIOTHERAPY_WINDOW_DAYS)
    if response.category is ResponseCategory.PD and early and imaging:
        later = _confirmation_scan(visits, raw, n)
        if later is None:
            return replace(response, confirmation=Confirmation.PRELIMINARY, reasons=(
                *response.reasons, "within 12 weeks after radiotherapy: needs a scan at least 4 weeks later"))
        if raw[later].category is ResponseCategory.PD:
            return replace(response, confirmation=Confirmation.CONFIRMED,
                           reasons=(*response.reasons, f"confirmed at {visits[later].id}"))
        return replace(response, category=ResponseCategory.SD, confirmation=Confirmation.NOT_CONFIRMED, reasons=(
            *response.reasons, f"not confirmed at {visits[later].id}: pseudo-progression suspected"))
    if response.category in _RANK:
        later = _confirmation_scan(visits, raw, n)
        if later is None:
            return replace(response, confirmation=Confirmation.PRELIMINARY,
                           reasons=(*response.reasons, "needs a scan at least 4 weeks later to confirm"))
        if _RANK.get(raw[later].category, 0) >= _RANK[response.category]:
            return replace(response, confirmation=Confirmation.CONFIRMED,
                           reasons=(*response.reasons, f"confirmed at {visits[later].id}"))
        return replace(response, category=ResponseCategory.SD, confirmation=Confirmation.NOT_CONFIRMED, reasons=(
            *response.reasons, f"{response.category.value} not sustained at {visits[later].id}"))
    return response
