"""A timeline's response assessment: lesions followed from the baseline (:mod:`.targets`), each visit's facts,
and the RANO 2.0 categories of both methods (:mod:`.rano`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..volume import Volume
from .lesions import Alignment, identity
from .measurements import MIN_LESION_ML
from .rano import NON_TARGET_PROGRESSION, Assessment, Response, VisitFacts, assess_series, percent_change
from .targets import SeriesLesions, VisitLesions, track_series
from .timeline import Timeline, Timepoint

__all__ = ["METHODS", "REGION_OF", "FollowUp", "assess_timeline"]

METHODS = ("bidimensional", "volumetric")
REGION_OF = {Assessment.ENHANCING: "ET", Assessment.NON_ENHANCING: "WT"}


@dataclass
class FollowUp:
    """Everything the table, plot and report show about the series.

    Attributes:
        assessment: the disease followed.
        lesions: the followed lesions per visit (targets, non-targets, new).
        facts: per method, per visit id, what the rules used.
        responses: per method, per visit id, the category with reasons and confirmation state.
    """

    assessment: Assessment
    lesions: SeriesLesions
    facts: dict[str, dict[str, VisitFacts]] = field(default_factory=dict)
    responses: dict[str, dict[str, Response]] = field(default_factory=dict)


def _value(tp: Timepoint, method: str, region: str, lesions: SeriesLesions) -> float | None:
    if tp.measurements is None or tp.id not in lesions.spd_mm2:
        return None
    return lesions.spd_mm2[tp.id] if method == "bidimensional" else float(tp.measurements.volumes_ml.get(region, 0.0))


def _non_target_growth(visit_ids: list[str], lesions: SeriesLesions) -> dict[str, bool]:
    """Unequivocal growth of the baseline's non-target lesions: +40 % and +1 mL vs their nadir in the series."""
    out, history, baseline = {}, [], None
    for visit in visit_ids:
        if lesions.baseline_of.get(visit) != baseline:
            baseline, history = lesions.baseline_of.get(visit), []
        volume = lesions.non_target_ml.get(visit)
        if volume is None:
            continue
        nadir = min(history) if history else None
        change = percent_change(nadir, volume)
        out[visit] = bool(nadir is not None and volume - nadir >= NON_TARGET_PROGRESSION["ml"] and change is not None
                          and change >= NON_TARGET_PROGRESSION["pct"])
        history.append(volume)
    return out


def assess_timeline(timeline: Timeline, labels: Mapping[str, Volume], alignments: Mapping[str, Alignment],
                    tolerance_mm: float = 5.0) -> FollowUp:
    """Follow the lesions from the baseline, gather each visit's facts, and categorise both methods.

    Args:
        timeline: the visits, measured (``Timepoint.measurements``).
        labels: internal label map of each segmented visit, by id, on its own grid.
        alignments: by visit id, the alignment to the timeline's baseline (missing: scanner coordinates).
        tolerance_mm: distance within which a lesion is the same as an earlier one.
    """
    assessment = timeline.assessment
    region = REGION_OF[assessment]
    ordered = timeline.ordered()
    start = next(n for n, tp in enumerate(ordered) if tp.id == timeline.baseline.id)
    # A visit whose images cannot show the assessed region (e.g. no T1c for enhancing disease) is not followed:
    # its missing lesions would read as gone.
    followed = [tp for tp in ordered[start:] if tp.id in labels and tp.measurements is not None
                and region not in tp.unassessed()]
    series = SeriesLesions()
    if followed and followed[0].id == timeline.baseline.id:
        visits = [VisitLesions(tp.id, labels[tp.id], _lesions(tp, region),
                               alignments[tp.id].transform if tp.id in alignments else identity(), tp.new_baseline)
                  for tp in followed]
        series = track_series(visits, labels[followed[0].id], region, tolerance_mm)
    growth = _non_target_growth([tp.id for tp in followed], series)
    out = FollowUp(assessment, series)
    for method in METHODS:
        facts = [_facts(tp, method, region, series, growth, timeline) for tp in ordered]
        responses = assess_series(facts, method, assessment, timeline.baseline.id, timeline.radiotherapy_end)
        out.facts[method] = {fact.id: fact for fact in facts}
        out.responses[method] = {fact.id: response for fact, response in zip(facts, responses)}
    return out


def _lesions(tp: Timepoint, region: str) -> tuple:
    """The visit's lesions a reader would follow (specks left out)."""
    if tp.measurements is None:
        return ()
    return tuple(lesion for lesion in tp.measurements.lesions_of(region) if lesion.volume_ml >= MIN_LESION_ML)


def _facts(tp: Timepoint, method: str, region: str, series: SeriesLesions, growth: Mapping[str, bool],
           timeline: Timeline) -> VisitFacts:
    lesions = _lesions(tp, region)
    new, new_measurable = series.new.get(tp.id, (0, 0))
    baseline = timeline.get(series.baseline_of[tp.id]) if tp.id in series.baseline_of else None
    baseline_enhancing = bool(baseline and _lesions(baseline, "ET"))
    unmeasurable = tp.unassessed().get(region, "")
    if unmeasurable:
        return VisitFacts(tp.id, tp.date, None, steroids=tp.steroids, clinical_status=tp.clinical_status,
                          new_baseline=tp.new_baseline, unmeasurable=unmeasurable)
    return VisitFacts(
        tp.id, tp.date, _value(tp, method, region, series), disease=bool(lesions),
        measurable=any(les.measurable for les in lesions), new_lesions=new, new_measurable_lesions=new_measurable,
        non_target_progression=growth.get(tp.id, False),
        new_enhancement=bool(region == "WT" and not baseline_enhancing
                             and any(les.measurable for les in _lesions(tp, "ET"))),
        steroids=tp.steroids, clinical_status=tp.clinical_status, new_baseline=tp.new_baseline)
