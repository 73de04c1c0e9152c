"""Does each volume look like the sequence it was given as? Tissue contrast read in atlas regions.

The swap checks of :mod:`.sequences` compare two volumes of a known pair; they cannot tell a T2 given as the T1c
when the T2 itself is not given, and a T2 in the T1c slot makes fluid and oedema look like enhancement. Here every
volume is read on its own, in regions of the MNI ICBM152 2009 template carried onto the brain
(:func:`TumorSegLib.clinical.tissues.atlas_tissues`): deep white matter, cortical grey matter and the
ventricles. T1-weighted images (T1, T1c) show white matter brighter than grey matter and fluid dark; a T2 shows
fluid brightest; FLAIR suppresses fluid. Where a volume's own contrast cannot tell (a FLAIR in a T1-weighted
place), its rank correlation with the other sequences can: a T1c follows its T1, a FLAIR its T2. Thresholds:
``Testing/Benchmarks/sequence_contrast_study.py`` on the shared cases, with a margin beyond the most extreme
correct volume.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, stats

from ..volume import Volume
from .report import Finding, Severity, display_name

__all__ = ["TissueContrast", "tissue_contrast", "contrast_findings", "rank_correlations", "t1_relation_findings",
           "exchange_findings", "check_weighting"]

# Differences of region medians in units of the brain's interquartile range. On the 29 shared cases a correct
# T1 or T1c had white minus grey 0.14 to 0.87 and fluid minus white -2.4 to 0.31, a FLAIR fluid minus white up to
# 0.46, a T2 fluid minus white 0.70 to 4.0 and white minus grey -0.72 to 0.08: each threshold leaves a margin of
# about 0.2 or more beyond them, since other scanners will spread them further.
T1_WEIGHTED_MIN_WHITE_MINUS_GREY = -0.05
FLUID_SUPPRESSED_MAX_FLUID_MINUS_WHITE = 0.8
T2_MIN_FLUID_MINUS_WHITE = 0.0
T2_MAX_WHITE_MINUS_GREY = 0.35
# Rank correlation with the T1 inside the brain. On the 29 shared cases a T1c followed its T1 (0.31 to 0.89) and a
# T2 went against it (-0.83 to -0.08); the other sequences given in their place do the opposite.
T1_T1C_MIN_CORRELATION = 0.1
T1_T2_MAX_CORRELATION = 0.15
# A FLAIR can show white matter brighter than grey, as a T1-weighted image does, so its own contrast does not always
# tell it from a T1 or T1c; a third sequence does. In each of the 29 correct shared studies the T1c followed the T1
# more than the FLAIR did (rank correlation higher by 0.17 to 1.04) and the T2 followed the FLAIR more than the T1c
# (0.08 to 1.28); the T1 followed the T1c more than the FLAIR did (0.17 or more) and the T2 the FLAIR more than the
# T1 (0.25 or more). Two exchanged volumes turn every such difference around. For each pair that can be exchanged:
# the witnesses, and the sign of corr(witness, first) - corr(witness, second) in a correct study.
EXCHANGE_WITNESSES = {("t1c", "flair"): {"t1": +1, "t2": -1}, ("t1", "flair"): {"t1c": +1, "t2": -1}}
MIN_BRAIN_ML = 500.0  # the atlas regions need a brain-sized image (not a phantom or a partial slab)
MIN_REGION_VOXELS = 200


@dataclass(frozen=True)
class TissueContrast:
    """Region medians of one volume, relative to each other, in units of its brain interquartile range."""

    white_minus_grey: float
    fluid_minus_white: float

    def as_dict(self) -> dict:
        return {"white_minus_grey": round(self.white_minus_grey, 3),
                "fluid_minus_white": round(self.fluid_minus_white, 3)}


def tissue_contrast(volume: Volume, tissues: Mapping[str, np.ndarray], brain: np.ndarray) -> TissueContrast | None:
    """The volume's contrast between the atlas regions inside ``brain`` (``None`` when a region is too small
    there, e.g. a slab that misses the ventricles)."""
    array = volume.array
    inside = array[brain]
    if inside.size == 0:
        return None
    low, median, high = np.percentile(inside, [25, 50, 75])
    if high - low <= 0:
        return None
    medians = {}
    for name, region in tissues.items():
        values = array[region & brain]
        if values.size < MIN_REGION_VOXELS:
            return None
        medians[name] = (float(np.median(values)) - median) / (high - low)
    return TissueContrast(medians["white"] - medians["grey"], medians["fluid"] - medians["white"])


def contrast_findings(key: str, contrast: TissueContrast) -> list[Finding]:
    """Warnings when a volume's tissue contrast contradicts the sequence it was given as."""
    name = display_name(key)
    reasons = []
    if key in ("t1", "t1c") and contrast.white_minus_grey < T1_WEIGHTED_MIN_WHITE_MINUS_GREY:
        reasons.append("white matter is darker than grey matter, which a T1-weighted image never shows")
    if key in ("t1", "t1c", "flair") and contrast.fluid_minus_white > FLUID_SUPPRESSED_MAX_FLUID_MINUS_WHITE:
        reasons.append(f"the ventricles are bright (fluid minus white matter {contrast.fluid_minus_white:+.2f} "
                       "interquartile ranges), as on a T2, where a " + name + " shows fluid dark")
    if key == "t2" and contrast.fluid_minus_white < T2_MIN_FLUID_MINUS_WHITE:
        reasons.append("the ventricles are darker than white matter, where a T2 shows fluid bright")
    if key == "t2" and contrast.white_minus_grey > T2_MAX_WHITE_MINUS_GREY:
        reasons.append("white matter is brighter than grey matter, as on a T1-weighted image")
    if not reasons:
        return []
    return [Finding(Severity.WARNING, "unexpected_contrast",
                    f"the volume given as {name} does not look like a {name}: {'; '.join(reasons)}. Check that the "
                    f"right series or file was given as {name} (a wrong sequence makes every region wrong: "
                    "with a T2 as the T1c, fluid and oedema read as enhancing tumour)", key)]


def rank_correlations(volumes: Mapping[str, Volume], brain: np.ndarray) -> dict[tuple[str, str], float]:
    """Spearman correlation of every two volumes, keyed both ways, inside ``brain`` away from its edge (dark on
    every sequence) and where both hold an image (the outside of a slab says nothing); pairs with too few such
    voxels are left out."""
    inside = ndimage.binary_erosion(brain, iterations=3)
    correlations = {}
    for first, second in itertools.combinations(volumes, 2):
        both = inside & (volumes[first].array != 0) & (volumes[second].array != 0)
        if both.sum() > 1000:
            value = float(stats.spearmanr(volumes[first].array[both][::7], volumes[second].array[both][::7])[0])
            correlations[first, second] = correlations[second, first] = value
    return correlations


def t1_relation_findings(correlations: Mapping[tuple[str, str], float]) -> list[Finding]:
    """Warnings when, with a T1 given, the T1c goes against it or the T2 follows it (``correlations``: of
    :func:`rank_correlations`)."""
    findings = []
    t1c, t2 = correlations.get(("t1", "t1c")), correlations.get(("t1", "t2"))
    if t1c is not None and t1c < T1_T1C_MIN_CORRELATION:
        findings.append(Finding(
            Severity.WARNING, "t1c_unlike_t1", f"the {display_name('t1c')} volume does not follow the T1 (rank "
            f"correlation {t1c:+.2f}; a T1 and its contrast-enhanced T1 correlate at 0.3 or more): "
            "one of them is another sequence; check which series was given as T1 and as T1c", "t1c"))
    if t2 is not None and t2 > T1_T2_MAX_CORRELATION:
        findings.append(Finding(
            Severity.WARNING, "t2_like_t1", f"the T2 volume follows the T1 (rank correlation "
            f"{t2:+.2f}; a T2 goes against a T1, about -0.1 or lower): one of them is another "
            "sequence; check which series was given as T1 and as T2", "t2"))
    return findings


def exchange_findings(correlations: Mapping[tuple[str, str], float]) -> list[Finding]:
    """Warnings for two volumes that look exchanged (``EXCHANGE_WITNESSES``): every witness given relates to them
    the wrong way round. Of exchanges sharing a volume, the one the witnesses show most strongly is reported
    (``correlations``: of :func:`rank_correlations`). :func:`check_weighting` asks only when every volume's own
    contrast fits its place: a wrong witness turns the differences around as well (a T2 in the T1 place would
    name an exchange of the T1c and the FLAIR)."""
    candidates = []
    for (first, second), witnesses in EXCHANGE_WITNESSES.items():
        signed = {witness: sign * (correlations[witness, first] - correlations[witness, second])
                  for witness, sign in witnesses.items() if (witness, first) in correlations
                  and (witness, second) in correlations}
        if signed and max(signed.values()) < 0:
            candidates.append((sum(signed.values()) / len(signed), first, second, signed))
    findings, named = [], set()
    for _, first, second, signed in sorted(candidates):
        if {first, second} & named:
            continue
        named |= {first, second}
        reasons = []
        for witness in signed:  # what each witness shows: it follows the other one of the two more
            more, less = (second, first) if EXCHANGE_WITNESSES[first, second][witness] > 0 else (first, second)
            reasons.append(f"the {display_name(witness)} follows the volume given as {display_name(more)} "
                           f"({correlations[witness, more]:+.2f}) more than the one given as {display_name(less)} "
                           f"({correlations[witness, less]:+.2f})")
        findings.append(Finding(
            Severity.WARNING, f"swapped_{first}_{second}",
            f"the {display_name(first)} and {display_name(second)} volumes look exchanged: {'; '.join(reasons)}, "
            f"the other way round from a correct study. Check which series was given as {display_name(first)} and "
            f"as {display_name(second)}", second))
    return findings


def check_weighting(volumes: Mapping[str, Volume], brain_mask: Volume,
                    tissues_of: Callable[[Volume], Mapping[str, np.ndarray]]) -> list[Finding]:
    """Warnings for volumes (all on ``brain_mask``'s grid) whose tissue contrast contradicts their sequence, or
    that relate to the others the wrong way (a T1c against the T1, a T2 with it, two exchanged), read inside the
    brain.

    ``tissues_of(brain_mask)`` gives the white, grey and fluid regions (e.g.
    :func:`TumorSegLib.clinical.tissues.atlas_tissues`); it is called only for a brain-sized mask.
    """
    brain = brain_mask.array > 0
    if brain.sum() * brain_mask.voxel_volume_ml < MIN_BRAIN_ML:
        return []
    tissues = tissues_of(brain_mask)
    findings = []
    for key, volume in volumes.items():
        contrast = tissue_contrast(volume, tissues, brain & (volume.array != 0))
        if contrast is not None:
            findings += contrast_findings(key, contrast)
    correlations = rank_correlations(volumes, brain)
    # a volume whose own contrast is another sequence's is named by that finding, and is no witness of an exchange
    return t1_relation_findings(correlations) + (findings or exchange_findings(correlations))
