"""The four MRI sequences: keys, display names, BraTS file suffixes and the names scanners give them."""

from __future__ import annotations

import os
import re

__all__ = ["SEQUENCES", "DISPLAY_NAMES", "FILE_SUFFIXES", "REQUIRED_ANY", "REFERENCE_ORDER", "IMAGE_SUFFIXES",
           "guess_sequence", "case_name", "sequence_files", "brats2023_named", "file_stem"]

SEQUENCES: tuple[str, ...] = ("t1", "t1c", "t2", "flair")
DISPLAY_NAMES = {"t1": "T1", "t1c": "T1c (contrast)", "t2": "T2", "flair": "FLAIR"}
# BraTS file-name suffixes: 2018-2021 names first (the first is the one TumorSeg writes), then 2023 names.
FILE_SUFFIXES: dict[str, tuple[str, ...]] = {
    "t1": ("t1", "t1n"),
    "t1c": ("t1ce", "t1c", "t1gd"),
    "t2": ("t2", "t2w"),
    "flair": ("flair", "t2f"),
}
# A segmentation needs at least one of these: enhancement and oedema are invisible without both missing.
REQUIRED_ANY = ("t1c", "flair")
# Default reference grid: T1c (thin 3D acquisitions, where enhancing tumour is delineated), then FLAIR.
REFERENCE_ORDER: tuple[str, ...] = ("t1c", "flair", "t2", "t1")

# Patterns on volume names / DICOM series descriptions, tried in this order (FLAIR before T2, T1c before T1).
_PATTERNS: tuple[tuple[str, re.Pattern], ...] = (
    ("flair", re.compile(r"flair|t2[\W_]*f(?![a-z])|dark[\W_]*fluid|\btirm\b", re.I)),
    ("t1c", re.compile(r"t1[\W_]*(ce|c|gd|km|post|\+c|\+ ?gd|contrast)(?![a-z])|(post|gad|gd|contrast|mprage[\W_]*post)"
                       r"|\+c\b|\bce\b|t1ce", re.I)),
    ("t2", re.compile(r"t2(?![\W_]*f(?![a-z]))|\bt2w\b|\btse\b", re.I)),
    ("t1", re.compile(r"t1|mprage|spgr|\bt1n\b|bravo|tfl", re.I)),
)
# Names that say "before contrast": such a T1 is never the T1c, whatever else the name says ("AX T1 PRE GAD").
_PRE_CONTRAST = re.compile(r"(?<![a-z])pre(?![a-z])|pre[\W_]*(gad|gd|contrast|con|c)(?![a-z])|w/o|without|"
                           r"non[\W_]*(contrast|enhanced|gad|gd)|no[\W_]*(contrast|gad|gd)(?![a-z])|(?<![a-z])native|"
                           r"(?<![a-z])nc(?![a-z])|plain", re.I)
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
# Suffixes only BraTS 2023 and later use ("t1c" is shared with other conventions, so it says nothing).
_BRATS2023_ONLY = frozenset({"t1n", "t2w", "t2f"})
_BEFORE_2023_ONLY = frozenset({"t1", "t2", "flair", "t1ce"})
# BraTS 2023+ case ids (glioma, meningioma, metastases, paediatric, sub-Saharan Africa, ...): BraTS-GLI-00042-000
_BRATS2023_CASE = re.compile(r"brats-[a-z]{2,6}-\d{5}-\d{3}", re.I)
# A trailing BraTS suffix (longest first, so "t1ce" is not read as "t1" + "ce").
_SUFFIX = re.compile(r"[\W_]*(" + "|".join(sorted({s for v in FILE_SUFFIXES.values() for s in v}, key=len,
                                                   reverse=True)) + r")$", re.I)


def guess_sequence(name: str) -> str | None:
    """Which sequence a volume name or DICOM series description suggests, or ``None``.

    A T1 named as before contrast ("PRE", "W/O", "without", "non-contrast", "native") is T1, never T1c.

    >>> guess_sequence("AX T1 POST GD"), guess_sequence("t2_tse_tra"), guess_sequence("3D FLAIR")
    ('t1c', 't2', 'flair')
    >>> guess_sequence("AX T1 PRE GAD"), guess_sequence("T1 W/O contrast"), guess_sequence("t1_non-contrast")
    ('t1', 't1', 't1')
    """
    for key, pattern in _PATTERNS:
        if pattern.search(name):
            return "t1" if key == "t1c" and _PRE_CONTRAST.search(name) else key
    return None


def case_name(names: list[str]) -> str:
    """A case name from the names of its sequences: their common prefix without the BraTS suffix and a trailing
    separator, e.g. ``Brats18_CBICA_AQT_1_t1ce``, ``…_flair`` → ``Brats18_CBICA_AQT_1``."""
    if not names:
        return "Case"
    stems = [_SUFFIX.sub("", name) for name in names]
    prefix = re.sub(r"[\W_]+$", "", os.path.commonprefix(stems))
    return prefix or "Case"


def file_stem(path: str | os.PathLike) -> str:
    """A file's name without its image extension (``case_t1.nii.gz`` → ``case_t1``)."""
    return re.sub(r"(\.nii\.gz|\.[a-z]+)$", "", os.path.basename(os.fspath(path)), flags=re.I)


def _brats_suffix(path: str | os.PathLike) -> str | None:
    suffix = _SUFFIX.search(file_stem(path))
    return suffix.group(1).lower() if suffix else None


def brats2023_named(paths) -> bool:
    """Whether image files are named the BraTS 2023 way: a 2023 case id in the path (``BraTS-GLI-00042-000``),
    or 2023-only suffixes (``…-t1n``, ``-t2w``, ``-t2f``) and none of the older ones. Such a user's label maps
    code enhancing tumour 3, not 4.

    >>> brats2023_named(["BraTS-GLI-00001-000-t1c.nii.gz", "BraTS-GLI-00001-000-t2f.nii.gz"])
    True
    >>> brats2023_named(["/data/BraTS-MEN-00004-000/t1c.nii.gz"]), brats2023_named(["x/case_t2f.nii.gz"])
    (True, True)
    >>> brats2023_named(["Brats18_X_1_t1ce.nii.gz", "BraTS2021_00002_flair.nii.gz"]), brats2023_named(["a_t1c.nii"])
    (False, False)
    """
    paths = [os.fspath(path) for path in paths]
    if any(_BRATS2023_CASE.search(path) for path in paths):
        return True
    suffixes = {_brats_suffix(path) for path in paths}
    return bool(suffixes & _BRATS2023_ONLY) and not suffixes & _BEFORE_2023_ONLY


def sequence_files(folder: str | os.PathLike) -> dict[str, str]:
    """The sequence image files of one case folder, by sequence key, from their names (BraTS suffixes or scanner
    names); files naming no sequence (a label map, notes) are left out.

    Raises:
        ValueError: when two files name the same sequence (naming both), or none names T1c or FLAIR.
    """
    found: dict[str, str] = {}
    for name in sorted(os.listdir(folder)):
        if not name.lower().endswith(IMAGE_SUFFIXES):
            continue
        suffix = _brats_suffix(name)
        key = next((k for k, names in FILE_SUFFIXES.items() if suffix in names), None)
        key = key or guess_sequence(file_stem(name))
        if key is None:
            continue
        if key in found:
            raise ValueError(f"{folder}: both {os.path.basename(found[key])} and {name} look like "
                             f"{DISPLAY_NAMES[key]}; keep one, or give the files explicitly")
        found[key] = os.path.join(folder, name)
    if not any(key in found for key in REQUIRED_ANY):
        raise ValueError(f"{folder}: no T1c or FLAIR image found (names ending _t1ce or _flair, e.g. "
                         f"case_t1ce.nii.gz); rename the files or give them explicitly")
    return found
