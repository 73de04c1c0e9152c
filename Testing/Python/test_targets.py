"""Lesion identity over visits: targets fixed at baseline, split and merged lesions, new and gone lesions,
repositioning with and without registration, and the non-enhancing (T2/FLAIR) lesions."""

import numpy as np
import pytest
import SimpleITK as sitk

from TumorSegLib.labels import Label
from TumorSegLib.longitudinal import VisitLesions, identity, measure_labels, track_series
from TumorSegLib.volume import Volume

SHAPE = (96, 96, 30)
SPACING = (1.0, 1.0, 2.0)


def disc(centre, radius_mm, half_height=3) -> np.ndarray:
    i, j, k = np.indices(SHAPE, dtype=float)
    return ((i - centre[0]) ** 2 + (j - centre[1]) ** 2 <= radius_mm**2) & (np.abs(k - centre[2]) <= half_height)


def labels_with(*lesions, oedema=3) -> Volume:
    """Enhancing discs (centre, radius mm) each in a rim of oedema."""
    array = np.zeros(SHAPE, np.uint8)
    for centre, radius in lesions:
        array[disc(centre, radius + oedema, 4)] = Label.ED
    for centre, radius in lesions:
        array[disc(centre, radius)] = Label.ET
    return Volume(array, SPACING)


def visits(*maps, transforms=None, region="ET"):
    out = []
    for n, labels in enumerate(maps):
        lesions = measure_labels(labels).lesions_of(region)
        out.append(VisitLesions(f"v{n}", labels, lesions, (transforms or {}).get(n, identity())))
    return out


A, B, C, D = (25, 25, 15), (70, 25, 15), (25, 70, 15), (70, 70, 15)


def by_lesion(result, visit):
    return {row.lesion: row for row in result.at(visit)}


def test_targets_are_the_three_largest_measurable_lesions_at_baseline_and_stay_fixed():
    """RANO 2.0: "up to three measurable target lesions chosen at baseline"; the rest are non-target, even when
    one of them later outgrows a target."""
    base = labels_with((A, 12), (B, 10), (C, 8), (D, 7))
    later = labels_with((A, 12), (B, 10), (C, 8), (D, 14))
    result = track_series(visits(base, later), base)
    baseline = by_lesion(result, "v0")
    assert [baseline[name].role for name in ("T1", "T2", "T3", "NT1")] == ["target", "target", "target",
                                                                           "non-target"]
    assert result.spd_mm2["v0"] == pytest.approx(sum(baseline[f"T{n}"].product_mm2 for n in (1, 2, 3)))
    follow = by_lesion(result, "v1")
    assert follow["NT1"].product_mm2 > follow["T1"].product_mm2  # grown, still non-target
    assert result.spd_mm2["v1"] == pytest.approx(result.spd_mm2["v0"], rel=0.02)
    assert result.non_target_ml["v1"] > 3 * result.non_target_ml["v0"]


def test_a_target_that_splits_is_the_sum_of_its_parts():
    """A lesion that splits is still one target; its product is the sum of the fragments' products."""
    base = labels_with((A, 14))
    parts = labels_with(((18, 25, 15), 5), ((33, 25, 15), 5))
    result = track_series(visits(base, parts), base)
    row = by_lesion(result, "v1")["T1"]
    assert row.state == "split into 2 parts" and len(row.components) == 2
    assert result.new["v1"] == (0, 0)
    assert result.spd_mm2["v1"] == pytest.approx(row.product_mm2)


def test_targets_that_merge_count_once_and_say_so():
    base = labels_with(((40, 48, 15), 7), ((58, 48, 15), 7))
    merged = labels_with(((49, 48, 15), 14))
    result = track_series(visits(base, merged), base)
    rows = by_lesion(result, "v1")
    assert rows["T1"].state == "present" or rows["T2"].state == "present"
    gone = rows["T2"] if rows["T1"].state == "present" else rows["T1"]
    assert gone.state.startswith("merged into T") and gone.product_mm2 == 0
    assert result.spd_mm2["v1"] == pytest.approx(max(rows["T1"].product_mm2, rows["T2"].product_mm2))


def test_a_lesion_far_from_all_earlier_tumour_is_new_and_one_nearby_is_not():
    base = labels_with((A, 10))
    later = labels_with((A, 10), (D, 8), ((25, 41, 15), 3))  # D: far; the small one: 3 mm from A's edge
    result = track_series(visits(base, later), base, tolerance_mm=5.0)
    rows = by_lesion(result, "v1")
    assert result.new["v1"] == (1, 1) and rows["N1"].state == "new" and rows["N1"].measurable
    assert rows["T1"].state == "split into 2 parts"


def test_a_lesion_that_disappears_is_gone_and_a_new_one_is_followed_afterwards():
    base = labels_with((A, 10), (B, 10))
    second = labels_with((A, 10), (D, 6))
    third = labels_with((A, 10), (D, 9))
    result = track_series(visits(base, second, third), base)
    assert by_lesion(result, "v1")["T2"].state == "gone" and by_lesion(result, "v1")["T2"].product_mm2 == 0
    assert result.new["v1"] == (1, 1) and result.new["v2"] == (0, 0)
    assert by_lesion(result, "v2")["N1"].state == "present"


def moved(labels: Volume, shift_mm) -> tuple[Volume, sitk.Transform]:
    """The same head shifted in the scanner: the labels' origin moves; the transform maps baseline → visit."""
    transform = sitk.TranslationTransform(3, [float(s) for s in shift_mm])
    return Volume(labels.array, labels.spacing, tuple(np.add(labels.origin, shift_mm)), labels.direction), transform


def test_repositioning_makes_no_new_lesion_once_the_visit_is_aligned():
    """Without registration a head moved by 3 cm makes its lesion look new; with the alignment it does not."""
    base = labels_with((A, 8))
    follow, to_visit = moved(labels_with((A, 8)), (25.0, -18.0, 0.0))
    aligned = track_series(visits(base, follow, transforms={1: to_visit}), base)
    assert aligned.new["v1"] == (0, 0) and by_lesion(aligned, "v1")["T1"].state == "present"
    unaligned = track_series(visits(base, follow), base)
    assert unaligned.new["v1"] == (1, 1) and by_lesion(unaligned, "v1")["T1"].state == "gone"


def test_non_enhancing_disease_follows_the_t2_flair_lesions():
    """Non-enhancing assessment: lesions are the T2/FLAIR abnormality (whole tumour), measured the same way."""
    base = labels_with((A, 10), oedema=6)
    result = track_series(visits(base, base, region="WT"), base, region="WT")
    row = by_lesion(result, "v0")["T1"]
    assert row.longest_mm == pytest.approx(2 * 16 + 1, abs=2.0)  # the oedema's outer edge, not the enhancing disc
