import numpy as np
import pytest

from TumorSegLib.metrics import MAX_HD95, dice, evaluate_labels, hd95, lesion_wise, sensitivity, specificity


def cube(shape=(40, 40, 40), start=(10, 10, 10), size=10):
    mask = np.zeros(shape, bool)
    mask[tuple(slice(s, s + size) for s in start)] = True
    return mask


def test_dice_of_known_overlap():
    a, b = cube(), cube(start=(12, 10, 10))  # 8 of 10 slabs overlap
    assert dice(a, b) == pytest.approx(0.8)
    assert dice(a, a) == 1.0


def test_empty_masks_follow_brats_conventions():
    empty = np.zeros((20, 20, 20), bool)
    assert dice(empty, empty) == 1.0 and hd95(empty, empty) == 0.0
    assert dice(cube((20,) * 3, (5,) * 3, 5), empty) == 0.0
    assert hd95(cube((20,) * 3, (5,) * 3, 5), empty) == MAX_HD95


def test_hd95_of_a_shift_is_the_shift_in_mm():
    a, b = cube(), cube(start=(13, 10, 10))
    assert hd95(a, b) == pytest.approx(3.0)
    assert hd95(a, b, spacing=(2.0, 1.0, 1.0)) == pytest.approx(6.0)


def test_sensitivity_and_specificity():
    truth = cube()
    prediction = cube(size=5)
    assert sensitivity(prediction, truth) == pytest.approx(125 / 1000)
    assert specificity(prediction, truth) == 1.0
    assert specificity(truth, prediction) == pytest.approx(1 - 875 / (40**3 - 125))


def test_lesion_wise_counts_a_missed_lesion_and_a_false_positive():
    truth = cube(shape=(60, 60, 60), start=(5, 5, 5)) | cube(shape=(60, 60, 60), start=(40, 40, 40))
    prediction = cube(shape=(60, 60, 60), start=(5, 5, 5)) | cube(shape=(60, 60, 60), start=(5, 40, 40), size=6)
    result = lesion_wise(prediction, truth)
    # Lesion 1 perfect, lesion 2 missed (0), one false positive (0): mean over 3.
    assert result["lesions"] == 2 and result["false_positives"] == 1
    assert result["lesion_dice"] == pytest.approx(1 / 3)
    assert result["lesion_hd95"] == pytest.approx(2 * MAX_HD95 / 3)


def test_lesion_wise_ignores_tiny_true_lesions():
    truth = cube(shape=(30, 30, 30), start=(2, 2, 2), size=3)  # 27 voxels < 50
    result = lesion_wise(np.zeros_like(truth), truth)
    assert result == {"lesion_dice": 1.0, "lesion_hd95": 0.0, "lesions": 0, "false_positives": 0}


def test_evaluate_labels_reports_every_region_and_checks_shapes():
    truth = np.zeros((30, 30, 30), np.uint8)
    truth[5:20, 5:20, 5:20] = 2
    truth[8:16, 8:16, 8:16] = 1
    truth[10:14, 10:14, 10:14] = 3
    result = evaluate_labels(truth, truth, (1, 1, 1))
    assert set(result) == {"WT", "TC", "ET"}
    assert all(result[r]["dice"] == 1.0 and result[r]["hd95"] == 0.0 for r in result)
    assert result["WT"]["volume_true_ml"] == pytest.approx(15**3 / 1000)
    with pytest.raises(ValueError, match="same grid"):
        evaluate_labels(truth, truth[:-1], (1, 1, 1))


def test_hd95_pools_both_directions_as_the_official_brats_evaluation_and_hd95_max_is_monais():
    # A small sphere inside a large one: from the small surface every point is far from the large one, but the
    # large surface is mostly far too - pooled, the long distances of the small surface are few.
    from scipy.spatial import cKDTree

    from TumorSegLib.metrics import hd95_max, surface_distances

    grid = np.indices((48, 48, 48)).astype(float)
    small = sum((g - 24) ** 2 for g in grid) < 4**2
    large = sum((g - 24) ** 2 for g in grid) < 15**2
    spacing = (1.0, 1.0, 2.0)

    def surface(mask):
        structure = np.zeros((3, 3, 3), bool)
        structure[1, 1, :] = structure[1, :, 1] = structure[:, 1, 1] = True
        from scipy import ndimage
        return np.argwhere(mask ^ ndimage.binary_erosion(mask, structure)) * spacing

    a, b = surface(small), surface(large)
    brute = np.concatenate([cKDTree(b).query(a)[0], cKDTree(a).query(b)[0]])
    assert hd95(small, large, spacing) == pytest.approx(np.percentile(brute, 95), abs=1e-6)
    assert np.allclose(np.sort(surface_distances(small, large, spacing)), np.sort(cKDTree(b).query(a)[0]))
    assert hd95_max(small, large, spacing) >= hd95(small, large, spacing) - 1e-4  # MONAI works in float32
    speck = large.copy()
    speck[1:7, 1:7, 1:7] = True  # a far false-positive speck: its distances weigh more in one direction alone
    assert hd95_max(speck, large, spacing) > hd95(speck, large, spacing) + 1
    assert evaluate_labels(small.astype(np.uint8) * 2, large.astype(np.uint8) * 2, spacing)["WT"]["hd95_max"] == \
        pytest.approx(hd95_max(small, large, spacing))
