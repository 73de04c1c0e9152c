"""Enhancing tumour only where the images show enhancement; none reported without T1c."""

from dataclasses import replace

import numpy as np
import pytest

from TumorSegLib.enhancement import (
    EnhancementRule,
    check_enhancement,
    enhancement_contrast,
    remove_enhancement,
    without_contrast,
)
from TumorSegLib.labels import Label, to_internal_labels
from TumorSegLib.volume import Volume, read_volume

SHAPE = (48, 48, 40)


def ball(centre, radius, shape=SHAPE):
    grid = np.indices(shape, dtype=np.float32)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) < radius**2


def two_lesion_phantom(seed=0):
    """A brain with two 'enhancing' lesions: A brightens on T1c (true enhancement), B only looks like tumour."""
    rng = np.random.default_rng(seed)
    brain = ball((24, 24, 20), 19)
    lesion_a, lesion_b = ball((14, 24, 20), 4), ball((34, 24, 20), 4)
    t1 = np.where(brain, 100 + rng.normal(0, 5, SHAPE), 0)
    t1c = np.where(brain, 1.1 * t1 + rng.normal(0, 5, SHAPE), 0)
    t1[lesion_a | lesion_b] = 70 + rng.normal(0, 5, int((lesion_a | lesion_b).sum()))  # tumour: dark on T1
    t1c[lesion_b] = 1.1 * t1[lesion_b] + rng.normal(0, 5, int(lesion_b.sum()))  # B: T1c as T1 predicts
    t1c[lesion_a] = 1.1 * t1[lesion_a] + 80  # A: gadolinium uptake
    labels = np.zeros(SHAPE, np.uint8)
    labels[lesion_a | lesion_b] = Label.ET
    images = {"t1": Volume(t1.astype(np.float32)), "t1c": Volume(t1c.astype(np.float32))}
    return images, Volume(labels), brain, lesion_a, lesion_b


RULE = EnhancementRule(min_contrast=1.0, strong_contrast=3.5, min_strong_voxels=20)


def test_tumour_that_does_not_enhance_becomes_non_enhancing_core_and_is_reported():
    images, labels, brain, lesion_a, lesion_b = two_lesion_phantom()
    checked, report = check_enhancement(labels, images, brain, RULE)
    assert (checked.array[lesion_a] == Label.ET).all() and (checked.array[lesion_b] == Label.NCR).all()
    assert report.assessed and len(report.kept) == 1 and report.kept[0]["median_contrast_sd"] > 2
    assert report.relabelled_ml == pytest.approx(lesion_b.sum() / 1000, rel=1e-3)
    assert report.reference == "T1 and normal brain"
    _, without_t1 = check_enhancement(labels, {"t1c": images["t1c"]}, brain, RULE)
    assert without_t1.reference == "normal brain (no T1 given)" and without_t1.as_dict()["reference"]
    unchecked, report = check_enhancement(labels, images, brain, EnhancementRule())  # off: measure only
    assert np.array_equal(unchecked.array, labels.array) and len(report.kept) == 2


def test_weak_contrast_alone_is_not_enough_a_piece_needs_strongly_enhancing_voxels():
    images, labels, brain, lesion_a, lesion_b = two_lesion_phantom()
    t1c = images["t1c"].array.copy()
    t1c[lesion_b] += 7  # B brightens a little (about 1.4 SD): above the voxel threshold, hardly ever strongly
    weak = {**images, "t1c": images["t1c"].with_array(t1c)}
    voxelwise, _ = check_enhancement(labels, weak, brain, EnhancementRule(min_contrast=1.0))
    seeded, _ = check_enhancement(labels, weak, brain, RULE)
    assert (voxelwise.array[lesion_b] == Label.ET).mean() > 0.5 and not (seeded.array[lesion_b] == Label.ET).any()
    assert (seeded.array[lesion_a] == Label.ET).all()


def test_too_little_enhancing_tumour_in_all_is_none_at_all():
    images, labels, brain, lesion_a, lesion_b = two_lesion_phantom()
    enhancing_ml = lesion_a.sum() / 1000  # what the rule keeps: lesion A (about 0.27 mL)
    for min_total_ml, kept in ((enhancing_ml * 0.9, True), (enhancing_ml * 1.1, False)):
        checked, report = check_enhancement(labels, images, brain, replace(RULE, min_total_ml=min_total_ml))
        assert (checked.array[lesion_a] == Label.ET).all() == kept
        assert (checked.array[lesion_a] == Label.NCR).all() != kept and len(report.kept) == int(kept)
        assert (checked.array > 0).sum() == (labels.array > 0).sum()  # the core is unchanged, only split
        # It did enhance: said apart from what did not (lesion B), so the finding can ask for a second look.
        assert report.too_little_ml == pytest.approx(0.0 if kept else enhancing_ml)
        assert report.relabelled_ml == pytest.approx(report.too_little_ml + lesion_b.sum() / 1000)


def test_without_t1_enhancement_is_judged_against_the_bright_end_of_normal_brain():
    images, labels, brain, lesion_a, lesion_b = two_lesion_phantom()
    normal = brain & ~(lesion_a | lesion_b)
    contrast = enhancement_contrast(images["t1c"].array, None, normal)
    assert np.median(contrast[lesion_a]) > 2 and np.median(contrast[lesion_b]) < 0


def test_without_t1c_the_core_is_one_region_and_enhancement_is_not_assessed():
    _, labels, brain, lesion_a, _ = two_lesion_phantom()
    out, report = check_enhancement(labels, {}, brain, RULE)
    assert not (out.array == Label.ET).any() and (out.array[lesion_a] == Label.NCR).all()
    assert not report.assessed and "no T1c" in report.reason
    assert without_contrast(labels)[1].as_dict()["assessed"] is False


def test_taking_the_enhancement_away_leaves_tumour_that_no_longer_enhances():
    images, labels, brain, lesion_a, lesion_b = two_lesion_phantom()
    labels_array = labels.array.copy()
    labels_array[lesion_b] = Label.NCR  # B is non-enhancing tumour
    t1c, new_labels = remove_enhancement(images["t1c"].array, images["t1"].array, labels_array, brain)
    assert not (new_labels == Label.ET).any() and (new_labels[lesion_a] == Label.NCR).all()
    normal = brain & ~(lesion_a | lesion_b)
    before = enhancement_contrast(images["t1c"].array, images["t1"].array, normal)
    after = enhancement_contrast(t1c, images["t1"].array, normal)
    assert np.median(before[lesion_a]) > 3 and abs(np.median(after[lesion_a])) < 1
    assert np.array_equal(t1c[~brain], images["t1c"].array[~brain])  # nothing changes outside the brain


@pytest.mark.realdata
def test_on_a_real_case_the_taken_away_enhancement_no_longer_passes_the_check(shared_data):
    from TumorSegLib.models import get_model
    from TumorSegLib.training import find_cases

    files = find_cases(shared_data)["Brats18_CBICA_AQT_1"]
    images = {key: read_volume(files[key]) for key in ("t1", "t1c")}
    truth = to_internal_labels(read_volume(files["label"]).array)
    brain = images["t1"].array != 0
    rule = EnhancementRule(**get_model().postprocessing["enhancement"]["with_t1"])
    expert_et_ml = float((truth == Label.ET).sum()) / 1000
    _, report = check_enhancement(images["t1"].with_array(truth), images, brain, rule)
    assert report.relabelled_ml < 0.5 * expert_et_ml  # the expert's enhancing tumour mostly enhances
    t1c, _ = remove_enhancement(images["t1c"].array, images["t1"].array, truth, brain)
    altered = {**images, "t1c": images["t1c"].with_array(t1c)}
    checked, report = check_enhancement(images["t1"].with_array(truth), altered, brain, rule)
    assert (checked.array == Label.ET).sum() * checked.voxel_volume_ml < 1.0  # taken away: not reported


def test_volume_intervals_follow_the_enhancement_check_that_moved_et_to_the_core():
    from TumorSegLib.uncertainty import IntervalCalibration, move_enhancing_to_core
    from TumorSegLib.uncertainty.intervals import volume_interval

    et_samples, ncr_samples = [30.0, 32.0, 28.0, 34.0], [5.0, 6.0, 4.0, 7.0]
    volumes = {"ET": volume_interval("ET", 31.0, et_samples), "NCR": volume_interval("NCR", 5.5, ncr_samples)}
    final = {"ET": 10.0, "NCR": 26.5}  # the check moved 21 mL of the 31 mL drawn as ET to NCR
    moved = move_enhancing_to_core(volumes, final, 21.0, IntervalCalibration(quantiles={"ET": 0.5, "NCR": 0.5}))
    assert moved["ET"].estimate_ml == 10.0 and moved["NCR"].estimate_ml == 26.5
    assert moved["ET"].contains_estimate and moved["NCR"].contains_estimate
    for et, ncr, new_et, new_ncr in zip(et_samples, ncr_samples, moved["ET"].samples_ml, moved["NCR"].samples_ml):
        assert new_et + new_ncr == pytest.approx(et + ncr, abs=0.01)  # the core keeps what ET lost
    assert moved["ET"].high_ml < 12 and moved["ET"].calibrated[1] >= 10.0
    # The check may be wrong: each calibrated interval spans its own (ET 10 ± 0.5 · 11 mL, NCR 26.5 ± 0.5 · 27.5)
    # and the one around the network's reading before the move (ET 31 ± 0.5 · 32, NCR 5.5 ± 0.5 · 6.5), while
    # the samples' spread describes the volumes the user sees.
    assert moved["ET"].calibrated == (pytest.approx(4.5), pytest.approx(47.0))
    assert moved["NCR"].calibrated == (pytest.approx(2.25), pytest.approx(40.25))
    alone = move_enhancing_to_core(volumes, final, 21.0)  # no calibration: the samples' spread only
    assert alone["ET"].calibrated is None and alone["ET"].high_ml == moved["ET"].high_ml
    assert move_enhancing_to_core(volumes, final, 0.0) is volumes


def test_the_result_says_apart_what_did_not_enhance_and_what_enhanced_too_little():
    from TumorSegLib.enhancement import EnhancementCheck
    from TumorSegLib.preprocessing import prepare_input
    from TumorSegLib.qa import result_findings

    images, labels, brain, _, _ = two_lesion_phantom()
    prepared = prepare_input([images["t1"], images["t1c"]], (1.0, 1.0, 1.0), margin=2)
    rule = EnhancementRule(1.0, min_total_ml=2.0)

    def codes(relabelled_ml, too_little_ml):
        check = EnhancementCheck(True, rule=rule, relabelled_ml=relabelled_ml, too_little_ml=too_little_ml,
                                 reference="T1 and normal brain")
        brain_ml = float(prepared.brain_mask.sum()) * prepared.image.voxel_volume_ml
        return {f.code: f.message for f in result_findings(check, brain_ml, labels, None) if "enhanc" in f.code}

    assert set(codes(5.0, 0.0)) == {"enhancement_not_confirmed"}
    found = codes(1.6, 1.4)  # 1.4 mL enhanced, under the 2 mL least total; 0.2 mL did not enhance
    assert set(found) == {"enhancement_too_little"}
    assert "1.4 mL" in found["enhancement_too_little"] and "2 mL" in found["enhancement_too_little"]
    assert set(codes(3.4, 1.4)) == {"enhancement_not_confirmed", "enhancement_too_little"}
