"""RANO 2.0 rules (Wen et al., J Clin Oncol 2023), one test per rule, each quoting the criterion it checks
(paraphrased from the RANO 2.0 criteria), table-driven over the branches: per-visit categories and the series
rules (confirmation, progression after radiotherapy, after progression, new baselines)."""

import datetime as dt

import pytest

from TumorSegLib.longitudinal.rano import (
    IMAGING_ONLY,
    THRESHOLDS,
    Assessment,
    ClinicalStatus,
    Confirmation,
    ResponseCategory,
    SteroidChange,
    VisitFacts,
    assess_series,
    classify_response,
)

C = ResponseCategory
DAY0 = dt.date(2024, 1, 1)
STABLE = {"steroids": SteroidChange.STABLE, "clinical_status": ClinicalStatus.STABLE}


def visit(name="v", value=100.0, day=0, **facts) -> VisitFacts:
    present = value is not None and value > 0
    facts = {**STABLE, "disease": present, "measurable": present, **facts}
    return VisitFacts(name, DAY0 + dt.timedelta(days=day), value, **facts)


def category(value, baseline=100.0, nadir=100.0, method="bidimensional", assessment="enhancing", **facts):
    return classify_response(method, visit("base", baseline), nadir, visit("now", value, 60, **facts),
                             assessment).category


# --- per-visit categories ------------------------------------------------------------------------------


@pytest.mark.parametrize("assessment, method, pr, pd", [
    ("enhancing", "bidimensional", -50, 25), ("enhancing", "volumetric", -65, 40),
    ("non-enhancing", "bidimensional", -50, 25), ("non-enhancing", "volumetric", -65, 40)])
def test_thresholds_are_inclusive_and_flip_exactly_on_them(assessment, method, pr, pd):
    """"PR: ≥ 50 % decrease in the sum of products of perpendicular diameters of all measurable enhancing lesions
    compared with baseline"; "PD: ≥ 25 % increase … compared with the smallest tumour measurement (nadir)";
    volumetric: "≥ 65 % decrease" and "≥ 40 % increase"; the same thresholds for non-enhancing (T2/FLAIR) disease."""
    assert THRESHOLDS[Assessment(assessment)][method].pr_pct == pr
    for nadir in (400.0, 123.456, 1.0 / 3.0):
        assert category(nadir * (1 + pd / 100), baseline=nadir, nadir=nadir, method=method,
                        assessment=assessment) is C.PD
        assert category(nadir * (1 + pd / 100) * 0.999, baseline=nadir, nadir=nadir, method=method,
                        assessment=assessment) is C.SD
    assert category(100.0 * (1 + pr / 100), method=method, assessment=assessment) is C.PR
    assert category(100.0 * (1 + pr / 100) + 0.1, method=method, assessment=assessment) is not C.PR


def test_progression_is_measured_from_the_nadir_even_below_baseline():
    """"PD: ≥ 25 % increase in the sum of products … compared with the smallest tumour measurement obtained either
    at baseline (if no decrease) or best response"."""
    assert category(130.0, baseline=400.0, nadir=100.0) is C.PD
    assert category(120.0, baseline=400.0, nadir=100.0) is C.PR  # still 70 % below baseline, +20 % over nadir


@pytest.mark.parametrize("facts, expected", [
    ({"steroids": SteroidChange.OFF}, C.CR),
    ({"steroids": SteroidChange.STABLE}, C.PR),  # disappeared, but still on steroids
    ({"steroids": SteroidChange.INCREASED}, C.SD),
    ({"steroids": SteroidChange.OFF, "new_lesions": 1}, C.SD),
    ({"steroids": SteroidChange.OFF, "clinical_status": ClinicalStatus.WORSE}, C.PD),
])
def test_complete_response_needs_no_lesion_no_new_lesion_steroids_stopped_and_a_stable_patient(facts, expected):
    """"CR: complete disappearance of all enhancing measurable and non-measurable disease …; no new lesions; …
    patient must be off corticosteroids (or on physiologic replacement doses only); clinically stable or improved"."""
    assert category(0.0, disease=False, **facts) is expected


@pytest.mark.parametrize("facts, expected", [
    ({}, C.PR), ({"new_lesions": 1}, C.SD), ({"steroids": SteroidChange.INCREASED}, C.SD),
    ({"clinical_status": ClinicalStatus.WORSE}, C.PD), ({"steroids": SteroidChange.DECREASED}, C.PR)])
def test_partial_response_needs_no_new_lesion_stable_or_lower_steroids_and_a_stable_patient(facts, expected):
    """"PR: … no new lesions; stable or reduced corticosteroid dose compared with baseline; clinically stable or
    improved"."""
    assert category(40.0, **facts) is expected


def test_an_increased_steroid_dose_alone_never_makes_progression():
    """RANO 2.0: "an increase in corticosteroid dose alone, without clinical deterioration, is not progression"."""
    assert category(100.0, steroids=SteroidChange.INCREASED) is C.SD


@pytest.mark.parametrize("facts, expected", [
    ({"new_measurable_lesions": 1, "new_lesions": 1}, C.PD), ({"new_lesions": 1}, C.SD),
    ({"non_target_progression": True}, C.PD), ({"clinical_status": ClinicalStatus.WORSE}, C.PD)])
def test_progression_by_new_measurable_lesions_non_target_growth_or_clinical_deterioration(facts, expected):
    """"PD: … any new measurable enhancing lesion; unequivocal progression of existing non-target lesions; clear
    clinical deterioration not attributable to other causes"; a new non-measurable lesion only stops a response."""
    assert category(80.0, **facts) is expected


def test_measurable_disease_after_a_nadir_with_none_is_progression():
    """Growth from a nadir of no measurable disease cannot be a percentage: measurable disease again is PD."""
    assert category(150.0, baseline=400.0, nadir=0.0) is C.PD
    assert category(150.0, baseline=400.0, nadir=0.0, measurable=False) is not C.PD


@pytest.mark.parametrize("method, change, expected", [
    ("bidimensional", -25, C.MR), ("bidimensional", -49, C.MR), ("bidimensional", -24, C.SD),
    ("volumetric", -35, C.MR), ("volumetric", -34, C.SD), ("volumetric", -65, C.PR)])
def test_minor_response_exists_only_for_non_enhancing_disease(method, change, expected):
    """Non-enhancing tumours (RANO-LGG, kept in RANO 2.0): "MR: 25 % to < 50 % decrease in the sum of products
    of T2/FLAIR lesions"; volumetric MR taken at −35 %, the volume change of a 25 % bidimensional decrease."""
    assert category(100.0 + change, method=method, assessment="non-enhancing") is expected
    if expected is C.MR:
        assert category(100.0 + change, method=method, assessment="enhancing") is C.SD


def test_new_enhancement_is_progression_of_a_non_enhancing_tumour():
    """Non-enhancing tumours: "development of new or unequivocally increased contrast enhancement" is PD."""
    assert category(100.0, assessment="non-enhancing", new_enhancement=True) is C.PD
    assert category(100.0, assessment="enhancing", new_enhancement=True) is C.SD


def test_every_category_carries_its_reasons_and_the_imaging_only_label():
    response = classify_response("bidimensional", visit("base"), 100.0, visit("now", 40.0, 60))
    assert response.category is C.PR and response.note == IMAGING_ONLY and "-60.0 %" in response.reasons[0]
    unknown = classify_response("bidimensional", visit("base"), 100.0, visit("now", 40.0, 60, steroids=None))
    assert any("not given: steroids" in reason for reason in unknown.reasons)


# --- series rules ----------------------------------------------------------------------------------------


def series(*values_days, rt_end=None, method="bidimensional", **per_visit):
    visits = [visit(f"v{n}", value, day, **per_visit.get(f"v{n}", {})) for n, (value, day) in enumerate(values_days)]
    return {v.id: r for v, r in zip(visits, assess_series(visits, method, "enhancing", None, rt_end))}


def test_a_response_is_preliminary_until_a_scan_at_least_four_weeks_later_sustains_it():
    """"CR and PR … must be sustained on a confirmatory scan at least 4 weeks later"; unconfirmed: preliminary."""
    preliminary = series((100, 0), (40, 60))
    assert preliminary["v1"].category is C.PR and preliminary["v1"].confirmation is Confirmation.PRELIMINARY
    too_soon = series((100, 0), (40, 60), (45, 70))  # 10 days later: not a confirmation scan
    assert too_soon["v1"].confirmation is Confirmation.PRELIMINARY
    confirmed = series((100, 0), (40, 60), (45, 70), (42, 90))
    assert confirmed["v1"].category is C.PR and confirmed["v1"].confirmation is Confirmation.CONFIRMED


def test_an_unsustained_response_is_stable_disease():
    """A PR not sustained at the confirmatory scan is not a response: the visit is SD."""
    result = series((100, 0), (40, 60), (70, 100))
    assert result["v1"].category is C.SD and result["v1"].confirmation is Confirmation.NOT_CONFIRMED
    assert "not sustained at v2" in result["v1"].reasons[-1]


def test_a_complete_response_is_confirmed_only_by_another_complete_response():
    later_pr = series((100, 0), (0, 60), (30, 100), v1={"steroids": SteroidChange.OFF})
    assert later_pr["v1"].category is C.SD and later_pr["v1"].confirmation is Confirmation.NOT_CONFIRMED
    later_cr = series((100, 0), (0, 60), (0, 100), v1={"steroids": SteroidChange.OFF},
                      v2={"steroids": SteroidChange.OFF})
    assert later_cr["v1"].category is C.CR and later_cr["v1"].confirmation is Confirmation.CONFIRMED


def test_progression_within_12_weeks_of_radiotherapy_needs_confirmation():
    """"Within 12 weeks after completion of radiotherapy, progression … requires confirmation on a repeat scan
    (pseudoprogression)"; outside the window, PD stands at once."""
    rt_end = DAY0 + dt.timedelta(days=10)
    pending = series((100, 0), (140, 50), rt_end=rt_end)
    assert pending["v1"].category is C.PD and pending["v1"].confirmation is Confirmation.PRELIMINARY
    pseudo = series((100, 0), (140, 50), (105, 90), rt_end=rt_end)
    assert pseudo["v1"].category is C.SD and "pseudo-progression" in pseudo["v1"].reasons[-1]
    assert pseudo["v2"].category is C.SD  # scored on: the series did not progress
    real = series((100, 0), (140, 50), (190, 90), rt_end=rt_end)
    assert real["v1"].category is C.PD and real["v1"].confirmation is Confirmation.CONFIRMED
    late = series((100, 0), (140, 150), rt_end=rt_end)
    assert late["v1"].category is C.PD and late["v1"].confirmation is Confirmation.NOT_NEEDED


def test_after_progression_the_old_baseline_no_longer_scores_the_series():
    """After PD at visit 3, a shrinking visit 4 is not a "partial response" against the old baseline."""
    result = series((100, 0), (60, 60), (90, 120), (30, 180))
    assert [result[f"v{n}"].category for n in range(4)] == [C.BASELINE, C.SD, C.PD, C.AFTER_PROGRESSION]
    assert "set a new baseline" in result["v3"].reasons[0]


def test_a_new_baseline_starts_a_new_series():
    """A new line of therapy after progression: the new baseline is the reference from then on."""
    result = series((100, 0), (60, 60), (90, 120), (80, 150), (30, 210), (28, 250), v3={"new_baseline": True})
    assert [result[f"v{n}"].category for n in range(6)] == [C.BASELINE, C.SD, C.PD, C.BASELINE, C.PR, C.PR]
    assert result["v4"].baseline == "v3" and "-62.5 %" in result["v4"].reasons[0]
    assert result["v4"].confirmation is Confirmation.CONFIRMED


def test_visits_before_the_baseline_or_without_measurement_get_no_category():
    visits = [visit("pre", 50.0, -30), visit("base", 100.0, 0), visit("missing", None, 60), visit("next", 90.0, 90)]
    result = assess_series(visits, "bidimensional", "enhancing", baseline_id="base")
    assert [r.category for r in result] == [C.PRE_BASELINE, C.BASELINE, C.NOT_EVALUABLE, C.SD]
    unmeasured = assess_series([visit("base", None, 0), visit("next", 90.0, 90)], "bidimensional")
    assert unmeasured[1].category is C.NOT_EVALUABLE and "baseline was not measured" in unmeasured[1].reasons[0]


def test_a_visit_or_baseline_that_cannot_show_the_disease_is_not_evaluable_and_says_why():
    series = [visit("b0"), visit("f1", None, 60, unmeasurable="no T1c"), visit("f2", 30.0, 120)]
    responses = assess_series(series, "volumetric")
    assert responses[1].category is ResponseCategory.NOT_EVALUABLE
    assert responses[1].reasons == ("no T1c at this visit: its disease cannot be measured",)
    assert responses[2].category is ResponseCategory.PR  # scored against the baseline, f1 skipped
    unmeasured_baseline = [visit("b0", None, unmeasurable="no T2/FLAIR"), visit("f1", 80.0, 60)]
    responses = assess_series(unmeasured_baseline, "volumetric", "non-enhancing")
    assert responses[1].category is ResponseCategory.NOT_EVALUABLE
    assert responses[1].reasons == ("no T2/FLAIR at the baseline: it cannot be measured",)
