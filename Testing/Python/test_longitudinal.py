"""Longitudinal tracking: timeline file, rows over many visits, new lesions, table, plot, timelines built from
folders of visits, real cases. The RANO rules themselves are in test_rano.py, lesion identity in test_targets.py."""

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
    Alignment,
    Assessment,
    ClinicalStatus,
    SteroidChange,
    Timeline,
    TimelineError,
    Timepoint,
    assess_timeline,
    build_timeline,
    format_rows,
    identity,
    measure_labels,
    parse_date,
    percent_change,
    run_track,
    study_date_from_dicom,
    timeline_rows,
)
from TumorSegLib.longitudinal.measurements import read_label_map
from TumorSegLib.registration import points_of, resample_moving, transform_error
from TumorSegLib.volume import Volume, read_volume, write_volume

STABLE = dict(steroids=SteroidChange.STABLE, clinical_status=ClinicalStatus.STABLE)


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
    assert data["schema"] == "tumorseg-timeline" and data["schema_version"] == 2
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


def disc_labels(radius_mm: float) -> Volume:
    """One enhancing disc (radius in mm; 0: none) in oedema, on a 1 x 1 x 2 mm grid."""
    i, j, k = np.indices((80, 80, 24), dtype=float)
    array = np.zeros((80, 80, 24), np.uint8)
    array[((i - 40) ** 2 + (j - 40) ** 2 <= 24**2) & (np.abs(k - 12) <= 5)] = Label.ED
    if radius_mm:
        array[((i - 40) ** 2 + (j - 40) ** 2 <= radius_mm**2) & (np.abs(k - 12) <= 3)] = Label.ET
    return Volume(array, (1.0, 1.0, 2.0))


def test_rows_follow_the_nadir_over_six_visits_including_one_without_enhancing_tumour():
    radii = [("pre-op", None), ("v0", 16), ("v1", 10), ("v2", 11), ("v3", 0), ("v4", 7), ("v5", None)]
    start = dt.date(2024, 1, 1)
    labels = {name: disc_labels(r) for name, r in radii if r is not None}
    timeline = Timeline("P", [Timepoint(name, start + dt.timedelta(days=60 * n), **STABLE,
                                        measurements=measure_labels(labels[name]) if name in labels else None)
                              for n, (name, _) in enumerate(radii)], baseline_id="v0")
    timeline.get("v3").steroids = SteroidChange.OFF
    timeline.timepoints.reverse()  # file order must not matter: rows come by date
    followup = assess_timeline(timeline, labels, {name: Alignment(identity(), "test") for name in labels})
    ordered = timeline_rows(timeline, followup)
    rows = {row["timepoint"]: row for row in ordered}
    assert [row["timepoint"] for row in ordered] == [name for name, _ in radii]
    spd = {name: rows[name]["spd_mm2"] for name in labels}
    assert rows["pre-op"]["category"] == "pre-baseline"
    assert rows["v0"]["category"] == "baseline" and rows["v0"]["days_from_baseline"] == 0
    # Responses are confirmed by the next scan (60 days later) when it sustains them: v1 by v2's PR, v2 by
    # v3's CR; v3's CR is not sustained (v4 progresses), so v3 is SD.
    assert [(rows[n]["category"], rows[n]["confirmation"]) for n in ("v1", "v2", "v3")] == [
        ("PR", "confirmed"), ("PR", "confirmed"), ("SD", "not confirmed")]
    assert rows["v1"]["spd_change_vs_baseline_pct"] == pytest.approx(percent_change(spd["v0"], spd["v1"]), abs=0.01)
    # v2 grows over the nadir (v1) by less than 25 %: the nadir is v1, not the baseline.
    assert rows["v2"]["spd_change_vs_nadir_pct"] == pytest.approx(percent_change(spd["v1"], spd["v2"]), abs=0.01)
    assert rows["v2"]["ET_change_vs_nadir_ml"] == pytest.approx(rows["v2"]["ET_ml"] - rows["v1"]["ET_ml"], abs=1e-3)
    assert rows["v3"]["ET_ml"] == 0 and "CR not sustained at v4" in rows["v3"]["category_reasons"]
    # v4: measurable disease again after a nadir of none (v3): progression, change vs nadir undefined.
    assert rows["v4"]["category"] == "PD" and rows["v4"]["spd_change_vs_nadir_pct"] is None
    assert rows["v5"]["category"] == "after PD"  # not scored against a baseline that progression ended
    assert all(rows[name]["note"] == IMAGING_ONLY for name in ("v1", "v2", "v3", "v4"))
    assert all(row["assessment"] == "enhancing" for row in ordered)


def test_a_visit_whose_images_cannot_show_the_followed_disease_is_not_evaluable_not_a_response():
    # A follow-up without T1c has no enhancing tumour in its label map because enhancement cannot be seen, not
    # because it is gone: never a CR. One without T2/FLAIR has no oedema for the same reason: its WT is not the
    # core's volume, and the T2/FLAIR (non-enhancing) assessment cannot score it.
    start = dt.date(2024, 1, 1)
    core_only = disc_labels(13)
    core_only = core_only.with_array(np.where(core_only.array == Label.ED, 0, core_only.array).astype(np.uint8))
    no_enhancement = disc_labels(0)
    labels = {"v0": disc_labels(14), "v1": no_enhancement, "v2": core_only, "v3": disc_labels(14)}
    unseen = {"v1": {"NCR": "no T1c", "ET": "no T1c"}, "v2": {"ED": "no T2/FLAIR", "WT": "no T2/FLAIR"}}
    timeline = Timeline("P", [Timepoint(name, start + dt.timedelta(days=60 * n), **STABLE,
                                        measurements=measure_labels(volume), not_assessed=unseen.get(name, {}))
                              for n, (name, volume) in enumerate(labels.items())])
    timeline.get("v1").steroids = SteroidChange.OFF
    aligned = {name: Alignment(identity(), "test") for name in labels}
    rows = {row["timepoint"]: row for row in timeline_rows(timeline, assess_timeline(timeline, labels, aligned))}
    assert rows["v1"]["category"] == "NE" and "no T1c at this visit" in rows["v1"]["category_reasons"]
    assert rows["v1"]["ET_ml"] is None and rows["v1"]["spd_mm2"] is None and rows["v1"]["enhancing_lesions"] is None
    assert rows["v1"]["WT_ml"] == pytest.approx(region_volumes_ml(no_enhancement)["WT"], abs=1e-3)
    assert rows["v1"]["not_assessed"] == "NCR, ET: no T1c"
    assert rows["v2"]["category"] == "SD" and rows["v2"]["ET_ml"] > 0  # T1c given: enhancing disease scored
    assert rows["v2"]["WT_ml"] is None and rows["v2"]["ED_ml"] is None and rows["v2"]["WT_change_vs_baseline_pct"] is None
    assert rows["v2"]["not_assessed"] == "ED, WT: no T2/FLAIR" and rows["v2"]["TC_ml"] > 0
    assert rows["v3"]["category"] == "SD" and rows["v3"]["new_lesions"] == 0  # v1 was not followed as "gone"

    timeline.assessment = Assessment.NON_ENHANCING
    rows = {row["timepoint"]: row for row in timeline_rows(timeline, assess_timeline(timeline, labels, aligned))}
    assert rows["v2"]["category"] == "NE" and "no T2/FLAIR at this visit" in rows["v2"]["category_reasons"]
    assert rows["v1"]["category"] != "NE" and rows["v1"]["WT_ml"] is not None  # FLAIR given: T2/FLAIR disease scored

    # Oedema a reader drew on the T1c-only visit is their finding: its WT counts again.
    timeline.get("v2").measurements = measure_labels(disc_labels(13))
    assert timeline.get("v2").unassessed() == {}
    rows = {row["timepoint"]: row for row in timeline_rows(timeline, assess_timeline(timeline, labels, aligned))}
    assert rows["v2"]["WT_ml"] is not None and rows["v2"]["not_assessed"] == ""


def test_what_a_visit_could_not_show_is_kept_in_the_timeline_file_and_checked(tmp_path):
    visit = Timepoint("v0", dt.date(2024, 1, 1), not_assessed={"ED": "no T2/FLAIR", "WT": "no T2/FLAIR"})
    Timeline("P", [visit]).save(tmp_path / "timeline.json")
    assert Timeline.load(tmp_path / "timeline.json").get("v0").not_assessed == visit.not_assessed
    data = json.loads((tmp_path / "timeline.json").read_text())
    data["timepoints"][0]["not_assessed"] = {"oedema": "no T2"}
    (tmp_path / "timeline.json").write_text(json.dumps(data))
    with pytest.raises(TimelineError, match="'not_assessed' must map volume keys"):
        Timeline.load(tmp_path / "timeline.json")


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
                                         "timepoints": entries}))  # version 1 files still load

    # The phantom is small (72 × 72 × 48 mm): register it at its own 1 mm resolution, not the default 2 mm.
    result = run_track(timeline_path, tmp_path / "out", save_measurements=True,
                       registration_options={"working_spacing_mm": None})
    rows = {row["timepoint"]: row for row in result["rows"]}
    # v1's PR is not sustained at v2's scan? v2 is a CR (stronger): PR confirmed; v2's CR is not sustained (v3 PD).
    assert [rows[f"v{n}"]["category"] for n in range(5)] == ["baseline", "PR", "SD", "PD", "after PD"]
    assert rows["v1"]["confirmation"] == "confirmed" and rows["v2"]["confirmation"] == "not confirmed"
    assert rows["v3"]["new_lesions"] == 1 and rows["v3"]["new_measurable_lesions"] == 1
    assert rows["v1"]["new_lesions"] == 0
    assert rows["v2"]["ET_ml"] == 0 and rows["v2"]["WT_ml"] > 0  # oedema left, no enhancing tumour
    at_v3 = {lesion["lesion"]: lesion for lesion in result["lesions"] if lesion["visit"] == "v3"}
    assert at_v3["T1"]["state"] == "present" and at_v3["N1"]["state"] == "new" and at_v3["N1"]["measurable"]
    with open(result["lesion_table"], newline="") as stream:
        assert {line["lesion"] for line in csv.DictReader(stream)} == {"T1", "N1"}
    assert json.loads(open(result["json"]).read())["rows"][3]["category"] == "PD"

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


# --- timelines built from folders of visits ----------------------------------------------------------------


def test_track_builds_the_timeline_from_a_folder_of_visits_and_adds_a_visit_in_one_command(
        synthetic_case_files, tmp_path, capsys):
    """A baseline given as image files with its label map (date in the folder name) and a follow-up as a DICOM
    study (date from its StudyDate, segmented by track itself); no timeline written by hand."""
    import shutil

    from Testing.dicom_fixtures import write_study
    from TumorSegLib.cli import main

    visits = tmp_path / "patient"
    baseline = visits / "2024-01-10_preop"
    baseline.mkdir(parents=True)
    for path in synthetic_case_files.values():
        shutil.copy(path, baseline / path.name)
    images = {key: read_volume(path) for key, path in synthetic_case_files.items() if key != "label"}
    write_study(images, visits / "followup", "ge", study_date="20240410")
    out = tmp_path / "track"
    assert main(["track", str(visits), "-o", str(out), "--model", "brats18-segresnet8", "--no-n4", "--json"]) == 0
    printed = capsys.readouterr().out
    timeline = Timeline.load(out / "timeline.json")
    assert [(tp.id, tp.date.isoformat()) for tp in timeline.ordered()] == [("2024-01-10_preop", "2024-01-10"),
                                                                          ("followup", "2024-04-10")]
    assert timeline.get("2024-01-10_preop").segmentation.name.endswith("seg.nii.gz")  # the given label map
    assert (out / "visits" / "followup" / "segmentation.seg.dcm").is_file()  # segmented by track
    assert "followup" in printed and (out / "timeline_table.csv").is_file()

    # One more command records clinical inputs; the follow-up is not segmented again.
    stamp = (out / "visits" / "followup" / "segmentation.nii.gz").stat().st_mtime_ns
    assert main(["track", str(visits), "-o", str(out), "--steroids", "followup=decreased", "--assessment",
                 "non-enhancing"]) == 0
    again = Timeline.load(out / "timeline.json")
    assert again.get("followup").steroids is SteroidChange.DECREASED and again.assessment is Assessment.NON_ENHANCING
    assert (out / "visits" / "followup" / "segmentation.nii.gz").stat().st_mtime_ns == stamp
    rows = json.loads((out / "timeline_table.json").read_text())["rows"]
    assert rows[1]["assessment"] == "non-enhancing" and rows[1]["steroids"] == "decreased"


def test_a_visit_folder_without_a_date_is_named(tmp_path):
    (tmp_path / "visits" / "mri_one").mkdir(parents=True)
    write_volume(disc_labels(10), tmp_path / "visits" / "mri_one" / "case_t1ce.nii.gz")
    with pytest.raises(TimelineError, match="mri_one: no date found.*2024-01-15"):
        build_timeline(tmp_path / "visits", tmp_path / "out")


def test_a_timeline_built_from_visit_folders_knows_what_each_visit_could_not_show(tmp_path):
    # A T1c-only visit given with its label map, and an earlier FLAIR-only result: the table leaves out what
    # their images cannot show, and the plot draws each region from the visits that measured it.
    visits = tmp_path / "visits"
    (visits / "2024-01-10").mkdir(parents=True)
    write_volume(disc_labels(14), visits / "2024-01-10" / "case_t1ce.nii.gz")
    write_volume(disc_labels(14).with_array(np.where(disc_labels(14).array == Label.ED, 0, disc_labels(14).array)
                                            .astype(np.uint8)), visits / "2024-01-10" / "case_seg.nii.gz")
    result = visits / "2024-04-10"
    result.mkdir()
    write_volume(disc_labels(0), result / "labels.nii.gz")
    (result / "labels.json").write_text(json.dumps({"model": "m", "volumes_ml": {}, "output": "labels.nii.gz",
                                                    "not_assessed": ["NCR", "ET"],
                                                    "not_assessed_why": {"NCR": "no T1c", "ET": "no T1c"}}))
    timeline = build_timeline(visits, tmp_path / "out")
    assert timeline.get("2024-01-10").not_assessed == {"ED": "no T2/FLAIR", "WT": "no T2/FLAIR"}
    assert timeline.get("2024-04-10").not_assessed == {"NCR": "no T1c", "ET": "no T1c"}
    tracked = run_track(tmp_path / "out" / "timeline.json", register_visits=False)
    rows = {row["timepoint"]: row for row in tracked["rows"]}
    assert rows["2024-01-10"]["WT_ml"] is None and rows["2024-01-10"]["ET_ml"] > 0
    assert rows["2024-04-10"]["ET_ml"] is None and rows["2024-04-10"]["category"] == "NE"
    assert (tmp_path / "out" / "timeline_volumes.png").stat().st_size > 0
    table = list(csv.DictReader((tmp_path / "out" / "timeline_table.csv").open()))
    assert table[0]["not_assessed"] == "ED, WT: no T2/FLAIR" and table[0]["WT_ml"] == ""



def test_a_follow_up_whose_enhancement_was_too_little_to_report_is_not_read_as_gone(tmp_path):
    # The enhancement check reports no ET when what enhances is under the model's least total; a follow-up
    # must not read that as the enhancing disease gone (a complete response): the visit says why and is NE.
    visits = tmp_path / "visits"
    for name, labels, enhancement in (("2024-01-10", disc_labels(14), {"too_little_ml": 0.0}),
                                      ("2024-04-10", disc_labels(0), {"too_little_ml": 1.4})):
        (visits / name).mkdir(parents=True)
        write_volume(labels, visits / name / "labels.nii.gz")
        (visits / name / "labels.json").write_text(json.dumps({
            "model": "m", "volumes_ml": {}, "output": "labels.nii.gz", "not_assessed": [], "not_assessed_why": {},
            "enhancement": {"assessed": True, **enhancement}}))
    timeline = build_timeline(visits, tmp_path / "out")
    assert timeline.get("2024-01-10").not_assessed == {}
    assert "1.4 mL enhancing, under the model's reporting minimum" in timeline.get("2024-04-10").not_assessed["ET"]
    rows = {row["timepoint"]: row for row in run_track(tmp_path / "out" / "timeline.json",
                                                       register_visits=False)["rows"]}
    assert rows["2024-01-10"]["ET_ml"] > 0
    assert rows["2024-04-10"]["category"] == "NE" and rows["2024-04-10"]["ET_ml"] is None
    assert "reporting minimum" in rows["2024-04-10"]["category_reasons"]


def test_enhancing_tumour_a_reader_drew_after_the_ai_left_too_little_is_assessed(tmp_path):
    # The AI left 1.4 mL unreported; a reader reviewed the T1c and drew enhancing tumour in the visit's label map:
    # that ET is the reader's finding and is measured, as the Slicer tracker does. Without T1c it never is.
    visits = tmp_path / "visits"
    for name, labels, enhancement, why in (
            ("2024-01-10", disc_labels(14), {"too_little_ml": 0.0}, {}),
            ("2024-04-10", disc_labels(12), {"too_little_ml": 1.4}, {}),
            ("2024-07-10", disc_labels(12), {}, {"NCR": "no T1c", "ET": "no T1c"})):
        (visits / name).mkdir(parents=True)
        write_volume(labels, visits / name / "labels.nii.gz")
        (visits / name / "labels.json").write_text(json.dumps({
            "model": "m", "volumes_ml": {}, "output": "labels.nii.gz", "not_assessed": sorted(why),
            "not_assessed_why": why, "enhancement": {"assessed": True, **enhancement}}))
    build_timeline(visits, tmp_path / "out")
    rows = {row["timepoint"]: row for row in run_track(tmp_path / "out" / "timeline.json",
                                                       register_visits=False)["rows"]}
    assert rows["2024-04-10"]["ET_ml"] > 0 and rows["2024-04-10"]["category"] != "NE"
    assert rows["2024-07-10"]["ET_ml"] is None and rows["2024-07-10"]["category"] == "NE"
