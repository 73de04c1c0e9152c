"""Checks across the sequences of one study on one grid: swapped, identical or near-identical sequences, and
sequences that do not relate to the T1 as they should."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np
from scipy import ndimage, stats

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
# Rank correlation with the T1 inside the brain. On the 29 shared cases a T1c followed its T1 (0.32 to 0.89) and a
# T2 went against it (-0.83 to -0.08); the other sequences given in their place do the opposite.
T1_T1C_MIN_CORRELATION = 0.1
T1_T2_MAX_CORRELATION = 0.15
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
    # enhancement far brighter on T1c than on T1. If the opposite tail is the heavier one, the pair is swapped.
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
                    f"the {_name(first)} and {_name(second)} volumes look swapped: {tissue} should be brighter on "
                    f"{_name(first)} but is brighter on the volume given as {_name(second)}; check the assignment",
                    second))
    return findings


def t1_correlations(z: Mapping[str, np.ndarray], mask: np.ndarray) -> dict[str, float]:
    """Spearman correlation of the T1 with the T1c and the T2 (those given) inside ``mask``."""
    inside = ndimage.binary_erosion(mask, iterations=3)  # the brain edge is dark on every sequence
    sample = {key: array[inside][::7] for key, array in z.items()}
    return {key: float(stats.spearmanr(sample["t1"], sample[key])[0]) for key in ("t1c", "t2")
            if "t1" in sample and key in sample and sample[key].size > 100}


def _unlike_t1(z: Mapping[str, np.ndarray], mask: np.ndarray) -> list[Finding]:
    correlations = t1_correlations(z, mask)
    findings = []
    if correlations.get("t1c", 1.0) < T1_T1C_MIN_CORRELATION:
        findings.append(Finding(
            Severity.WARNING, "t1c_unlike_t1", f"the {_name('t1c')} volume does not follow the T1 (rank correlation "
            f"{correlations['t1c']:+.2f}; a T1 and its contrast-enhanced T1 correlate at 0.3 or more): one of them is "
            "another sequence; check which series was given as T1 and as T1c", "t1c"))
    if correlations.get("t2", -1.0) > T1_T2_MAX_CORRELATION:
        findings.append(Finding(
            Severity.WARNING, "t2_like_t1", "the T2 volume follows the T1 (rank correlation "
            f"{correlations['t2']:+.2f}; a T2 goes against a T1, about -0.1 or lower): one of them is another sequence; check which series was "
            "given as T1 and as T2", "t2"))
    return findings


def check_sequences(volumes: Mapping[str, Volume]) -> list[Finding]:
    """Checks across sequences on one grid: one image given twice (identical or nearly), T2/FLAIR and T1/T1c
    swaps, a T1c or T2 that correlates with the T1 the wrong way."""
    shapes = {v.shape for v in volumes.values()}
    if len(shapes) != 1:
        return []  # judged voxel by voxel: only on a common grid
    mask = np.logical_and.reduce([_in_brain(v) for v in volumes.values()])
    if mask.sum() < 1000:
        return []
    duplicates = _duplicates(volumes, mask)
    if duplicates:
        return duplicates  # a swap check between copies of one image says nothing
    z = {key: _zscore(v.array, mask) for key, v in volumes.items()}
    return _swaps(z, mask) + _unlike_t1(z, mask)
