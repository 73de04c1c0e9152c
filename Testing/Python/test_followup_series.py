"""Multi-visit series made from real shared cases (expert labels shrunk, split, grown a new lesion; the head
repositioned; thick slices): ``tumorseg track`` must give the categories a RANO reader would."""

import pytest

from Testing.followup_series import add_lesion, rigid, shrink, shrink_whole_tumour, split, write_series
from TumorSegLib.longitudinal import run_track
from TumorSegLib.longitudinal.measurements import read_label_map
from TumorSegLib.volume import read_volume

pytestmark = pytest.mark.realdata
STABLE = {"steroids": "stable", "clinical_status": "stable"}


def case_volumes(shared_data, case):
    return (read_label_map(shared_data / case / f"{case}_seg.nii.gz"),
            read_volume(shared_data / case / f"{case}_t1ce.nii.gz"))


def test_an_enhancing_series_with_motion_thick_slices_a_split_and_a_new_lesion(shared_data, tmp_path):
    labels, t1c = case_volumes(shared_data, "Brats18_CBICA_AQT_1")
    split_labels, split_t1c = split(labels.array, t1c.array, gap_voxels=12)
    new_labels, new_t1c = add_lesion(labels.array, t1c.array)
    later_labels, later_t1c = shrink(new_labels, new_t1c, 3)
    visits = [
        {"id": "moved", "date": "2024-03-10", "labels": labels.array, "t1c": t1c.array,
         "transform": rigid([3, -2, 4], [5, -4, 3]), "spacing": (1.0, 1.0, 3.0), **STABLE},
        {"id": "split", "date": "2024-05-10", "labels": split_labels, "t1c": split_t1c, **STABLE},
        {"id": "new", "date": "2024-07-10", "labels": new_labels, "t1c": new_t1c,
         "transform": rigid([-2, 3, -3], [-4, 3, 2]), **STABLE},
        {"id": "later", "date": "2024-09-10", "labels": later_labels, "t1c": later_t1c, **STABLE},
    ]
    result = run_track(write_series(tmp_path, labels, t1c, visits), tmp_path / "out")
    rows = {row["timepoint"]: row for row in result["rows"]}
    assert [rows[v]["category"] for v in ("baseline", "moved", "split", "new", "later")] == [
        "baseline", "SD", "SD", "PD", "after PD"]
    # Repositioned and on 3 mm slices: the same lesions, none new (registration by default).
    assert rows["moved"]["new_lesions"] == 0 and rows["split"]["new_lesions"] == 0
    lesions = {(item["visit"], item["lesion"]): item for item in result["lesions"]}
    assert lesions[("split", "T1")]["state"] == "split into 2 parts"
    assert rows["new"]["new_measurable_lesions"] == 1 and "new measurable" in rows["new"]["category_reasons"]
    assert lesions[("new", "N1")]["measurable"] and not result["qa"]


def test_a_non_enhancing_series_is_followed_on_t2_flair(shared_data, tmp_path):
    labels, t1c = case_volumes(shared_data, "Brats18_TCIA10_637_1")  # a lower-grade glioma
    small, small_t1c = shrink_whole_tumour(labels.array, t1c.array, 4)
    smaller, smaller_t1c = shrink_whole_tumour(labels.array, t1c.array, 7)
    visits = [{"id": "fu1", "date": "2024-04-10", "labels": small, "t1c": small_t1c, **STABLE},
              {"id": "fu2", "date": "2024-07-10", "labels": smaller, "t1c": smaller_t1c, **STABLE}]
    result = run_track(write_series(tmp_path, labels, t1c, visits, assessment="non-enhancing"), tmp_path / "out")
    rows = {row["timepoint"]: row for row in result["rows"]}
    assert all(row["assessment"] == "non-enhancing" for row in result["rows"])
    change = rows["fu1"]["spd_change_vs_baseline_pct"]
    expected = "PR" if change <= -50 else "MR" if change <= -25 else "SD"
    assert change < -20 and rows["fu1"]["rano_bidimensional"] == expected
    assert rows["fu1"]["confirmation"] == ("confirmed" if expected != "SD" else "")
    assert rows["fu2"]["spd_mm2"] < rows["fu1"]["spd_mm2"] < rows["baseline"]["spd_mm2"]
    assert rows["fu2"]["confirmation"] == "preliminary"
