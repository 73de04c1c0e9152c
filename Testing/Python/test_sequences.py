"""Sequence names: scanner descriptions, BraTS suffixes, and which BraTS naming (hence label codes) files use."""

import doctest

import TumorSegLib.sequences as sequences
from TumorSegLib.sequences import brats2023_named, guess_sequence


def test_the_documented_examples_hold():
    failed, tried = doctest.testmod(sequences)
    assert tried >= 5 and failed == 0


def test_brats2023_naming_is_told_from_the_case_id_or_the_suffixes_alone():
    brats2023 = [f"/data/BraTS-GLI-00042-000/BraTS-GLI-00042-000-{s}.nii.gz" for s in ("t1n", "t1c", "t2w", "t2f")]
    assert brats2023_named(brats2023)
    assert brats2023_named(["/data/BraTS-PED-00010-001/t1c.nii.gz"])  # renamed files in a 2023 case folder
    assert not brats2023_named([f"/d/BraTS2021_00002/BraTS2021_00002_{s}.nii.gz" for s in ("t1", "t1ce", "flair")])
    assert not brats2023_named(["scan_t2f.nii.gz", "scan_flair.nii.gz"])  # mixed: not a 2023 set
    assert not brats2023_named(["patient/AX_T1_POST.nii.gz"]) and not brats2023_named([])
    assert guess_sequence("BraTS-GLI-00042-000-t2f") == "flair"
