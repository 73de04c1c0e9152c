"""Checks across the sequences of one study on one grid: swapped, identical or near-identical sequences."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np

from ..volume import Volume
from .report import Finding, Severity, display_name

__all__ = ["check_sequences"]

SWAP_PERCENTILE = 99.5
# Flag when the opposite tail is the heavier one. On the 28 shared cases the opposite/expected ratio was
# at most 0.90 (T2/FLAIR) and 0.55 (T1c/T1) for correct pairs, so at least 1.11 and 1.8 when swapped.
SWAP_RATIO = 1.0
# Intensity correlation inside the brain above which two sequences are one image given twice (the most similar
# real pair of the shared cases, a T1 and its T1c, reached 0.88).
NEAR_IDENTICAL = 0.98
_name = display_name


def _in_brain(volume: Volume) -> np.ndarray:
    array = volume.array
    mask = array > np.percentile(array, 2)
    if mask.mean() > 0.9:  # no dark background (skull-stripped images have zeros outside the brain)
        mask = array > np.percentile(array, 25)
    return mask


def _zscore(array: np.ndarray, mask: np.ndarray) -> np.ndarray:
    values = array[mask].astype(np.float64)
    return (array - values.mean()) / (values.std() + 1e-9)


def _duplicates(volumes: Mapping[str, Volume], mask: np.ndarray) -> list[Finding]:
    findings = []
    for (first, a), (second, b) in itertools.combinations(volumes.items(), 2):
        if np.array_equal(a.array, b.array):
            findings.append(Finding(Severity.ERROR, "identical_sequences", f"the {_name(first)} and {_name(second)} "
                                    "volumes are the same image: one file was given twice; give each sequence",
                                    second))
            continue
        correlation = float(np.corrcoef(a.array[mask][::3], b.array[mask][::3])[0, 1])
        if correlation > NEAR_IDENTICAL:
            findings.append(Finding(Severity.ERROR, "near_identical_sequences", f"the {_name(first)} and "
                                    f"{_name(second)} volumes are nearly the same image (correlation "
                                    f"{correlation:.3f}; different sequences reach at most about 0.9): check that "
                                    "each sequence was given once", second, forceable=True))
    return findings


def _swaps(z: Mapping[str, np.ndarray], mask: np.ndarray) -> list[Finding]:
    # Each pair differs most, in one direction, in a known tissue: fluid is far brighter on T2 than on FLAIR,
    # enhancement far brighter on T1c than on T1. If the opposite tail is the heavier one, the pair is swapped, or
    # one of them is a third sequence (with the T1 and T2 exchanged, the T2 place's fluid is dark: 28 of 29 shared
    # studies), which the message allows for.
    findings = []
    for first, second, code, tissue in (("t2", "flair", "swapped_t2_flair", "fluid (CSF)"),
                                        ("t1c", "t1", "swapped_t1_t1c", "enhancement")):
        if {first, second} <= set(z):
            difference = z[first][mask] - z[second][mask]
            expected_tail = float(np.percentile(difference, SWAP_PERCENTILE))
            opposite_tail = float(np.percentile(-difference, SWAP_PERCENTILE))
            if opposite_tail > SWAP_RATIO * expected_tail:
                findings.append(Finding(
                    Severity.WARNING, code,
                    f"the {_name(first)} and {_name(second)} volumes look swapped, or one of them is another "
                    f"sequence: {tissue} should be brighter on {_name(first)} but is brighter on the volume given as "
                    f"{_name(second)}; check which series was given as {_name(first)} and as {_name(second)}",
                    second))
    return findings


def check_sequences(volumes: Mapping[str, Volume]) -> list[Finding]:
    """Checks across sequences on one grid: one image given twice (identical or nearly), T2/FLAIR and T1/T1c
    swaps."""
    shapes = {v.shape for v in volumes.values()}
    if len(shapes) != 1:
        return []  # judged voxel by voxel: only on a common grid
    mask = np.logical_and.reduce([_in_brain(v) for v in volumes.values()])
    if mask.sum() < 1000:
        return []
    duplicates = _duplicates(volumes, mask)
    if duplicates:
        return duplicates  # a swap check between copies of one image says nothing
    return _swaps({key: _zscore(v.array, mask) for key, v in volumes.items()}, mask)
