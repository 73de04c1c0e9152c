import numpy as np
import pytest

from TumorSegLib.labels import (
    LABELS,
    REGIONS,
    Label,
    LabelConvention,
    Region,
    from_internal_labels,
    labels_from_region_masks,
    region_masks,
    to_internal_labels,
)


def test_brats2018_codes_are_detected_and_converted():
    labels = np.array([0, 1, 2, 4])
    assert to_internal_labels(labels).tolist() == [0, 1, 2, 3]


def test_brats2023_codes_pass_through():
    labels = np.array([0, 1, 2, 3])
    assert to_internal_labels(labels).tolist() == [0, 1, 2, 3]


def test_round_trip_to_each_convention():
    internal = np.array([0, 1, 2, 3], np.uint8)
    assert from_internal_labels(internal, LabelConvention.BRATS2018).tolist() == [0, 1, 2, 4]
    assert from_internal_labels(internal, "brats2023").tolist() == [0, 1, 2, 3]
    assert to_internal_labels(from_internal_labels(internal, "brats2018")).tolist() == internal.tolist()


@pytest.mark.parametrize("codes, message", [([0, 3, 4], "both 3 and 4"), ([0, 1, 7], "codes \\[7\\]"),
                                            ([0, 255], "codes \\[255\\]")])
def test_a_file_that_is_not_a_tumour_label_map_is_rejected(codes, message):
    with pytest.raises(ValueError, match=message):
        to_internal_labels(np.array(codes))


def test_explicit_convention_rejects_the_other_et_code():
    with pytest.raises(ValueError, match="brats2023"):
        to_internal_labels(np.array([0, 4]), "brats2023")


def test_regions_are_the_brats_unions():
    assert REGIONS[Region.WT] == {Label.NCR, Label.ED, Label.ET}
    assert REGIONS[Region.TC] == {Label.NCR, Label.ET}
    assert REGIONS[Region.ET] == {Label.ET}
    masks = region_masks(np.array([0, 1, 2, 3]))
    assert masks[Region.WT].tolist() == [False, True, True, True]
    assert masks[Region.TC].tolist() == [False, True, False, True]
    assert masks[Region.ET].tolist() == [False, False, False, True]


def test_labels_from_region_masks_nests_et_in_tc_in_wt():
    wt = np.array([1, 1, 0, 0, 0], bool)
    tc = np.array([0, 1, 1, 0, 0], bool)  # TC outside WT at index 2
    et = np.array([0, 0, 0, 1, 0], bool)  # ET outside both at index 3
    labels = labels_from_region_masks(wt, tc, et)
    assert labels.tolist() == [Label.ED, Label.NCR, Label.NCR, Label.ET, 0]
    masks = region_masks(labels)
    assert not (masks[Region.ET] & ~masks[Region.TC]).any()
    assert not (masks[Region.TC] & ~masks[Region.WT]).any()


def test_every_label_has_colour_and_snomed_terminology():
    assert {info.label for info in LABELS} == {Label.NCR, Label.ED, Label.ET}
    for info in LABELS:
        assert len(info.color) == 3 and all(0 <= c <= 1 for c in info.color)
        assert info.category[0].isdigit() and info.type[0].isdigit()
