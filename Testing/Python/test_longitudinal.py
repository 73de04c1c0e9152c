"""Longitudinal tracking: timeline file, RANO 2.0 categories, nadir logic, new lesions, table, plot, real cases."""

import csv
import datetime as dt
import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial.transform import Rotation

from Testing.conftest import brain_phantom
from TumorSegLib.labels import Label, from_internal_labels, region_volumes_ml
from TumorSegLib.longitudinal import (
    IMAGING_ONLY,
    RANO_2_0,
    ClinicalStatus,
    ResponseCategory,
    SteroidChange,
    Timeline,
    TimelineError,
    Timepoint,
    classify_response,
    format_rows,
    parse_date,
    percent_change,
    run_track,
    study_date_from_dicom,
    timeline_rows,
)
from TumorSegLib.longitudinal.measurements import LesionMeasurement, TimepointMeasurements, read_label_map
from TumorSegLib.registration import points_of, resample_moving, transform_error
from TumorSegLib.volume import Volume, read_volume, write_volume

BIDIMENSIONAL, VOLUMETRIC = RANO_2_0["bidimensional"], RANO_2_0["volumetric"]
STABLE = dict(steroids=SteroidChange.STABLE, clinical_status=ClinicalStatus.STABLE)


# --- category rules ------------------------------------------------------------------------------------


def category(method, baseline, nadir, current, **facts) -> ResponseCategory:
    facts = {"enhancing_disease": current > 0, **STABLE, **facts}
    return classify_response(method, baseline, nadir, current, **facts).category


@pytest.mark.parametrize("nadir", [400.0, 123.456, 0.3, 1.0 / 3.0])
def test_category_flips_to_progression_exactly_at_plus_25_percent_vs_nadir(nadir):
    baseline = 1.5 * nadir  # above the nadir, so the nadir (not the baseline) is what +25 % is measured from
    at_threshold = nadir * (1 + BIDIMENSIONAL.pd_pct / 100)
    assert category("bidimensional", baseline, nadir, at_threshold) is ResponseCategory.PD
    assert category("bidimensional", baseline, nadir, at_threshold * (1 - 1e-6)) is ResponseCategory.SD


@pytest.mark.parametrize("baseline", [900.0, 77.7, 0.7])
def test_category_flips_to_partial_response_exactly_at_minus_50_percent_vs_baseline(baseline):
    at_threshold = baseline * (1 + BIDIMENSIONAL.pr_pct / 100)
    assert category("bidimensional", baseline, baseline, at_threshold) is ResponseCategory.PR
    assert category("bidimensional", baseline, baseline, at_threshold * (1 + 1e-6)) is ResponseCategory.SD


@pytest.mark.parametrize("baseline", [20.0, 3.3])
def test_volumetric_categories_flip_exactly_at_minus_65_and_plus_40_percent(baseline):
    response_at = baseline * (1 + VOLUMETRIC.pr_pct / 100)
    progression_at = baseline * (1 + VOLUMETRIC.pd_pct / 100)
    assert category("volumetric", baseline, baseline, response_at) is ResponseCategory.PR
    assert category("volumetric", baseline, baseline, response_at * (1 + 1e-6)) is ResponseCategory.SD
    assert category("volumetric", baseline, baseline, progression_at) is ResponseCategory.PD
    assert category("volumetric", baseline, baseline, progression_at * (1 - 1e-6)) is ResponseCategory.SD


def test_progression_is_measured_from_the_nadir_even_below_baseline():
    baseline, nadir = 900.0, 400.0
    current = nadir * 1.3  # +30 % vs nadir, still −42 % vs baseline
    assert percent_change(baseline, current) < 0
    assert category("bidimensional", baseline, nadir, current) is ResponseCategory.PD


def test_no_enhancing_tumour_left_is_complete_response_unless_steroids_were_increased():
    assert category("bidimensional", 900.0, 400.0, 0.0) is ResponseCategory.CR
    assert category("bidimensional", 900.0, 400.0, 0.0, steroids="increased") is ResponseCategory.SD
    assert category("volumetric", 12.0, 5.0, 0.0, steroids="decreased") is ResponseCategory.CR


def test_partial_response_needs_stable_steroids_no_new_lesion_and_no_clinical_worsening():
    assert category("bidimensional", 900.0, 900.0, 300.0) is ResponseCategory.PR
    assert category("bidimensional", 900.0, 900.0, 300.0, steroids="increased") is ResponseCategory.SD
    assert category("bidimensional", 900.0, 900.0, 300.0, new_lesions=1) is ResponseCategory.SD
    assert category("bidimensional", 900.0, 900.0, 300.0, clinical_status="worse") is ResponseCategory.PD


def test_increased_steroids_alone_never_make_progression():
    assert category("bidimensional", 900.0, 900.0, 900.0, steroids="increased") is ResponseCategory.SD


def test_a_new_measurable_lesion_is_progression_whatever_the_sum_of_products():
    assert category("bidimensional", 900.0, 900.0, 400.0, new_lesions=1,
                    new_measurable_lesions=1) is ResponseCategory.PD


def test_measurable_disease_after_a_nadir_without_any_is_progression():
    assert category("bidimensional", 900.0, 0.0, 150.0) is ResponseCategory.PD
    # A small non-measurable speck after a nadir of nothing is not progression: still −99 % vs baseline.
    assert category("volumetric", 12.0, 0.0, 0.05, measurable_disease=False) is ResponseCategory.PR
    assert category("volumetric", 12.0, 0.0, 2.0, measurable_disease=True) is ResponseCategory.PD


def test_every_category_carries_its_reasons_and_the_imaging_only_label():
    response = classify_response("bidimensional", 900.0, 400.0, 520.0, enhancing_disease=True)
    assert response.note == IMAGING_ONLY == "imaging only, needs clinical confirmation"
    assert any("vs nadir" in reason for reason in response.reasons)
    assert "clinical input" in " ".join(classify_response("bidimensional", 900.0, 900.0, 300.0,
                                                          enhancing_disease=True).reasons)


# --- timeline file -------------------------------------------------------------------------------------


def test_dates_are_read_from_iso_text_or_dicom_study_date():
    assert parse_date("2024-01-15") == parse_date("20240115") == dt.date(2024, 1, 15)
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        parse_date("15/01/2024")


def test_the_visit_date_is_read_from_the_dicom_study_date(tmp_path):
    slice_ = sitk.Image(8, 8, sitk.sitkInt16)
    slice_.SetMetaData("0008|0020", "20230917")
    slice_.SetMetaData("0008|0060", "MR")
    (tmp_path / "series").mkdir()
    sitk.WriteImage(slice_, str(tmp_path / "series" / "1.dcm"))
    assert study_date_from_dicom(tmp_path / "series") == dt.date(2023, 9, 17)
    assert study_date_from_dicom(tmp_path / "series" / "1.dcm") == dt.date(2023, 9, 17)


def test_timeline_round_trips_through_json_with_paths_relative_to_its_folder(tmp_path):
    folder = tmp_path / "patient"
    timeline = Timeline("P001", [
        Timepoint("post-RT", parse_date("20240115"), {"t1c": folder / "v0" / "t1c.nii.gz"}, folder / "v0" / "seg.nii.gz"),
        Timepoint("fu1", dt.date(2024, 4, 2), segmentation=folder / "v1" / "seg.nii.gz", corrected=True,
                  steroids=SteroidChange.DECREASED, clinical_status=ClinicalStatus.BETTER, notes="reviewed"),
    ], baseline_id="post-RT")
    path = timeline.save(folder / "timeline.json")
    data = json.loads(path.read_text())
    assert data["schema"] == "tumorseg-timeline" and data["schema_version"] == 1
    assert data["timepoints"][0]["segmentation"] == "v0/seg.nii.gz"
    assert data["timepoints"][0]["date"] == "2024-01-15"

    moved = tmp_path / "elsewhere"
    folder.rename(moved)
    again = Timeline.load(moved / "timeline.json")
    assert again.baseline.id == "post-RT"
    assert again.get("post-RT").images["t1c"] == moved / "v0" / "t1c.nii.gz"
    assert again.get("fu1").segmentation == moved / "v1" / "seg.nii.gz"
    assert again.get("fu1").corrected and again.get("fu1").steroids is SteroidChange.DECREASED


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    (json.dumps({"timepoints": []}), "not a TumorSeg timeline"),
    (json.dumps({"schema": "tumorseg-timeline", "schema_version": 99}), "newer TumorSeg"),
    (json.dumps({"schema": "tumorseg-timeline", "schema_version": 1,
                 "timepoints": [{"id": "a", "date": "2024-01-01"}, {"id": "a", "date": "2024-02-01"}]}), "used twice"),
    (json.dumps({"schema": "tumorseg-timeline", "schema_version": 1,
                 "timepoints": [{"id": "a", "date": "2024-01-01", "segmentaton": "x.nii.gz"}]}), "unknown field"),
    (json.dumps({"schema": "tumorseg-timeline", "schema_version": 1,
                 "timepoints": [{"id": "a", "date": "2024-31-01"}]}), "YYYY-MM-DD"),
    (json.dumps({"schema": "tumorseg-timeline", "schema_version": 1,
                 "timepoints": [{"id": "a", "date": "2024-01-01", "steroids": "more"}]}), "'increased'"),
    (json.dumps({"schema": "tumorseg-timeline", "schema_version": 1, "baseline": "zz",
                 "timepoints": [{"id": "a", "date": "2024-01-01"}]}), "baseline 'zz'"),
])
def test_loading_a_broken_timeline_says_what_to_fix(tmp_path, content, message):
    path = tmp_path / "timeline.json"
    path.write_text(content)
    with pytest.raises(TimelineError, match=message):
        Timeline.load(path)


def test_a_missing_timeline_file_is_named():
    with pytest.raises(FileNotFoundError, match="timeline file not found"):
        Timeline.load("/nonexistent/timeline.json")


# --- rows: nadir over many visits ----------------------------------------------------------------------


def measured(et_ml: float, spd_mm2: float) -> TimepointMeasurements:
    """Measurements of one visit: a single square-ish lesion whose product is ``spd_mm2`` (0: none measurable)."""
    volumes = {"NCR": 2.0, "ED": 20.0, "ET": et_ml, "TC": 2.0 + et_ml, "WT": 22.0 + et_ml}
    lesions = ()
    if et_ml > 0:
        side = float(np.sqrt(spd_mm2)) if spd_mm2 else 5.0
        point = (0.0, 0.0, 0.0)
        lesions = (LesionMeasurement(1, et_ml, point, 5, side, side, (point, point), (point, point), spd_mm2 > 0),)
    return TimepointMeasurements(volumes, lesions, (1,) if spd_mm2 else (), spd_mm2)


def test_rows_follow_the_nadir_over_six_visits_including_one_without_enhancing_tumour():
    visits = [("pre-op", None), ("v0", measured(20.0, 900.0)), ("v1", measured(8.0, 400.0)),
              ("v2", measured(9.0, 460.0)), ("v3", measured(0.0, 0.0)), ("v4", measured(3.0, 150.0)), ("v5", None)]
    start = dt.date(2024, 1, 1)
    timeline = Timeline("P", [Timepoint(name, start + dt.timedelta(days=60 * n), measurements=m, **STABLE)
                              for n, (name, m) in enumerate(visits)], baseline_id="v0")
    timeline.timepoints.reverse()  # file order must not matter: rows come by date
    rows = {row["timepoint"]: row for row in timeline_rows(timeline)}
    assert [row["timepoint"] for row in timeline_rows(timeline)] == [name for name, _ in visits]

    assert rows["pre-op"]["category"] == "pre-baseline"
    assert rows["v0"]["category"] == "baseline" and rows["v0"]["days_from_baseline"] == 0
    assert rows["v1"]["category"] == "PR"
    assert rows["v1"]["spd_change_vs_baseline_pct"] == pytest.approx(percent_change(900.0, 400.0), abs=0.01)
    # v2 grows 15 % over the nadir (v1): still stable; the nadir is v1, not the baseline.
    assert rows["v2"]["spd_change_vs_nadir_pct"] == pytest.approx(percent_change(400.0, 460.0), abs=0.01)
    assert rows["v2"]["ET_change_vs_nadir_ml"] == pytest.approx(9.0 - 8.0)
    assert rows["v2"]["category"] == "SD"
    assert rows["v3"]["category"] == "CR" and rows["v3"]["rano_volumetric"] == "CR"
    # v4: measurable disease again after a nadir of none (v3): progression, change vs nadir undefined.
    assert rows["v4"]["category"] == "PD" and rows["v4"]["spd_change_vs_nadir_pct"] is None
    assert rows["v4"]["ET_change_vs_baseline_ml"] == pytest.approx(3.0 - 20.0)
    assert rows["v5"]["category"] == "NE"
    assert all(rows[name]["note"] == IMAGING_ONLY for name in ("v1", "v2", "v3", "v4"))


# --- run_track end to end on synthetic visits ----------------------------------------------------------


def rigid(angles_deg, translation_mm):
    matrix = Rotation.from_euler("xyz", angles_deg, degrees=True).as_matrix()
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(matrix.flatten().tolist())
    transform.SetTranslation([float(t) for t in translation_mm])
    return matrix, np.asarray(translation_mm, float), transform


def moved_by(volume: Volume, matrix, translation) -> Volume:
    """The same voxels placed at R x + t (the head moved in the scanner)."""
    return Volume(volume.array, volume.spacing, matrix @ np.array(volume.origin) + translation, matrix @ volume.direction)


def cylinder(shape, centre, long_mm, short_mm, height=8) -> np.ndarray:
    i, j, k = np.indices(shape, dtype=float)
    return ((i - centre[0]) / (long_mm / 2)) ** 2 + ((j - centre[1]) / (short_mm / 2)) ** 2 <= 1 \
        & (np.abs(k - centre[2]) <= height / 2)


def phantom_visit(lesions, oedema=()) -> tuple[Volume, Volume]:
    """A T1c-like image and labels of the phantom brain with enhancing cylinders (centre, diameters) in oedema."""
    images, base_labels = brain_phantom(shape=(72, 72, 48))
    brain = images["t1c"].array > 50
    labels = np.zeros(brain.shape, np.uint8)
    for centre, long_mm, short_mm in (*lesions, *oedema):
        labels[cylinder(brain.shape, centre, long_mm + 8, short_mm + 8) & brain] = Label.ED
    for centre, long_mm, short_mm in lesions:
        labels[cylinder(brain.shape, centre, long_mm, short_mm) & brain] = Label.ET
    grid = np.indices(brain.shape)
    image = images["t1c"].array + 80.0 * (labels == Label.ET)
    for fraction, radius, value in (((0.3, 0.6, 0.6), 6, -50.0), ((0.65, 0.3, 0.35), 4, 60.0)):  # break symmetry
        centre = [f * n for f, n in zip(fraction, brain.shape)]
        image[sum((g - c) ** 2 for g, c in zip(grid, centre)) < radius**2] += value
    return images["t1c"].with_array(image.astype(np.float32)), base_labels.with_array(labels)


def test_run_track_writes_table_plot_and_transforms_and_finds_the_new_lesion(tmp_path):
    site_a, site_b = (24, 26, 24), (50, 50, 24)  # about 15 mm apart, edge to edge
    plan = [  # (date, enhancing lesions, oedema without enhancement, head motion)
        ("2024-01-10", [(site_a, 30, 24)], [], None),
        ("2024-03-10", [(site_a, 20, 16)], [], ([0, 0, 4], [2, -3, 1])),
        ("2024-05-10", [], [(site_a, 12, 10)], ([0, 3, 0], [-2, 1, 2])),
        ("2024-07-10", [(site_a, 14, 12), (site_b, 14, 14)], [], ([2, 0, -3], [1, 2, -2])),
    ]
    truths = {}
    entries = []
    for n, (date, lesions, oedema, motion) in enumerate(plan):
        image, labels = phantom_visit(lesions, oedema)
        if motion:
            matrix, translation, truths[f"v{n}"] = rigid(*motion)
            image, labels = moved_by(image, matrix, translation), moved_by(labels, matrix, translation)
        write_volume(image, tmp_path / f"v{n}" / "t1c.nii.gz")
        write_volume(labels.with_array(from_internal_labels(labels.array, "brats2018")), tmp_path / f"v{n}" / "seg.nii.gz")
        entries.append({"id": f"v{n}", "date": date.replace("-", "") if n == 0 else date,
                        "images": {"t1c": f"v{n}/t1c.nii.gz"}, "segmentation": f"v{n}/seg.nii.gz", **{
                            k: v.value for k, v in STABLE.items()}})
    entries.append({"id": "v4", "date": "2024-09-01"})  # planned visit, not segmented yet
    timeline_path = tmp_path / "timeline.json"
    timeline_path.write_text(json.dumps({"schema": "tumorseg-timeline", "schema_version": 1, "patient_id": "phantom",
                                         "timepoints": entries}))

    # The phantom is small (72 × 72 × 48 mm): register it at its own 1 mm resolution, not the default 2 mm.
    result = run_track(timeline_path, tmp_path / "out", save_measurements=True,
                       registration_options={"working_spacing_mm": None})
    rows = {row["timepoint"]: row for row in result["rows"]}
    assert [rows[f"v{n}"]["category"] for n in range(5)] == ["baseline", "PR", "CR", "PD", "NE"]
    assert rows["v3"]["new_lesions"] == 1 and rows["v3"]["new_measurable_lesions"] == 1
    assert rows["v1"]["new_lesions"] == 0
    assert rows["v2"]["ET_ml"] == 0 and rows["v2"]["WT_ml"] > 0  # oedema left, no enhancing tumour
    new_lesion = next(status for status in result["lesions"]["v3"] if status["new"])
    old_lesion = next(status for status in result["lesions"]["v3"] if not status["new"])
    assert old_lesion["distance_mm"] == pytest.approx(0.0, abs=1.0)
    assert new_lesion["distance_mm"] > 10.0  # far beyond the 5 mm tolerance

    with open(result["table"], newline="") as stream:
        table = list(csv.DictReader(stream))
    assert [line["timepoint"] for line in table] == [f"v{n}" for n in range(5)]
    assert float(table[1]["ET_ml"]) == pytest.approx(rows["v1"]["ET_ml"])
    assert open(result["plot"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    printed = format_rows(result["rows"])
    assert len(printed.splitlines()) == 1 + 5 + 1 and IMAGING_ONLY in printed
    saved = Timeline.load(timeline_path)
    assert saved.get("v1").measurements.sum_of_products_mm2 == pytest.approx(rows["v1"]["spd_mm2"], abs=0.01)
    assert saved.get("v4").measurements is None

    baseline_t1c = read_volume(tmp_path / "v0" / "t1c.nii.gz")
    brain = points_of(baseline_t1c, baseline_t1c.array > 50)
    for name, truth in truths.items():
        error = transform_error(sitk.ReadTransform(result["transforms"][name]), truth, brain)
        assert error.max_displacement_mm < 1.0 and error.rotation_deg < 1.0


def test_run_track_names_the_visit_whose_segmentation_is_missing(tmp_path):
    path = tmp_path / "timeline.json"
    Timeline("P", [Timepoint("v0", dt.date(2024, 1, 1), segmentation=tmp_path / "missing.nii.gz")]).save(path)
    with pytest.raises(FileNotFoundError, match="timepoint 'v0'"):
        run_track(path)


# --- real cases: synthetic follow-ups with known volumes and motion ------------------------------------


def changed_followup(labels: np.ndarray, t1c: np.ndarray, grow: bool) -> tuple[np.ndarray, np.ndarray]:
    """Grow (ET by 2 voxels into the brain) or shrink (ET loses 1 voxel to NCR, oedema loses 2 voxels) the expert
    labels, and change the T1c the same way (new ET gets the median ET intensity, lost tissue its new class's)."""
    brain = t1c > 0
    enhancing = labels == Label.ET
    out = labels.copy()
    if grow:
        out[ndimage.binary_dilation(enhancing, iterations=2) & brain] = Label.ET
    else:
        out[enhancing & ~ndimage.binary_erosion(enhancing)] = Label.NCR
        whole = labels > 0
        out[(labels == Label.ED) & ~ndimage.binary_erosion(whole, iterations=2)] = 0
    image = t1c.astype(np.float32).copy()
    for code in (Label.ET, Label.NCR):
        image[(out == code) & (labels != code)] = np.median(t1c[labels == code])
    image[(out == 0) & (labels != 0)] = np.median(t1c[brain & (labels == 0)])
    return out, image


@pytest.mark.realdata
def test_real_case_followups_report_volume_change_within_1_percent_and_motion_within_1mm(shared_data, tmp_path):
    case = "Brats18_2013_11_1"
    labels = read_label_map(shared_data / case / f"{case}_seg.nii.gz")
    t1c = read_volume(shared_data / case / f"{case}_t1ce.nii.gz")
    baseline_ml = region_volumes_ml(labels)
    truths, true_ml, entries = {}, {}, [{"id": "baseline", "date": "2024-01-10",
                                         "images": {"t1c": str(shared_data / case / f"{case}_t1ce.nii.gz")},
                                         "segmentation": str(shared_data / case / f"{case}_seg.nii.gz")}]
    for name, grow, motion, date in (("shrunk", False, ([3, -2, 5], [4, -6, 2]), "2024-04-10"),
                                     ("grown", True, ([-4, 3, -3], [-5, 3, 4]), "2024-07-10")):
        new_labels, new_t1c = changed_followup(labels.array, t1c.array, grow)
        true_ml[name] = region_volumes_ml(labels.with_array(new_labels))  # truth: counted before any motion
        matrix, translation, truths[name] = rigid(*motion)
        if grow:  # stored with the head's pose in the file's direction matrix (oblique grid, no interpolation)
            fu_labels, fu_t1c = (moved_by(v, matrix, translation) for v in (labels.with_array(new_labels),
                                                                               t1c.with_array(new_t1c)))
        else:  # resampled onto the scanner's axis-aligned grid: labels nearest neighbour, image linear
            to_baseline = truths[name].GetInverse()  # follow-up point → baseline point
            fu_labels = resample_moving(labels.with_array(new_labels), labels, to_baseline, order=0)
            fu_t1c = resample_moving(t1c.with_array(new_t1c), t1c, to_baseline, order=1)
        write_volume(fu_labels, tmp_path / name / "seg.nii.gz")
        write_volume(fu_t1c, tmp_path / name / "t1c.nii.gz")
        entries.append({"id": name, "date": date, "images": {"t1c": f"{name}/t1c.nii.gz"},
                        "segmentation": f"{name}/seg.nii.gz", "label_convention": "brats2023"})
    timeline_path = tmp_path / "timeline.json"
    timeline_path.write_text(json.dumps({"schema": "tumorseg-timeline", "schema_version": 1, "timepoints": entries}))

    result = run_track(timeline_path)
    rows = {row["timepoint"]: row for row in result["rows"]}
    points = points_of(t1c, t1c.array > 0)
    for name in ("shrunk", "grown"):
        for region in ("ET", "TC", "WT"):
            true_change = true_ml[name][region] - baseline_ml[region]
            reported = rows[name][f"{region}_change_vs_baseline_ml"]
            assert abs(reported - true_change) <= 0.01 * true_ml[name][region], (name, region)
            assert rows[name][f"{region}_ml"] == pytest.approx(true_ml[name][region], rel=0.01)
        assert rows[name]["new_lesions"] == 0
        error = transform_error(sitk.ReadTransform(result["transforms"][name]), truths[name], points)
        assert error.max_displacement_mm < 1.0 and error.rotation_deg < 1.0
    assert rows["grown"]["ET_change_vs_baseline_pct"] > 0 > rows["shrunk"]["ET_change_vs_baseline_pct"]


def test_visits_on_one_date_must_say_which_came_first_not_the_file_order():
    # Two visits dated alike: which is the follow-up decides PD or PR, so the file's order must not decide it.
    first, second = Timepoint("morning", dt.date(2024, 3, 1)), Timepoint("evening", dt.date(2024, 3, 1))
    timeline = Timeline("P", [Timepoint("base", dt.date(2024, 1, 1)), second, first])
    with pytest.raises(TimelineError, match="'evening', 'morning' are all on 2024-03-01.*\"order\""):
        timeline.validate()
    first.order, second.order = 1, 1
    with pytest.raises(TimelineError, match="distinct"):
        timeline.validate()
    second.order = 2
    timeline.validate()
    assert [tp.id for tp in timeline.ordered()] == ["base", "morning", "evening"]
    again = Timeline.from_dict(timeline.to_dict())
    assert [tp.id for tp in again.ordered()] == ["base", "morning", "evening"]
    with pytest.raises(TimelineError, match="'order' must be 1, 2"):
        Timeline.from_dict({**timeline.to_dict(), "timepoints": [{**timeline.to_dict()["timepoints"][0], "order": 0}]})
