"""Enhancing tumour only where there is enhancement.

A network trained on glioblastomas tends to draw "enhancing tumour" on any bright-ish core, also in gliomas
that do not enhance. Enhancement is a fact of the images, not of shape: gadolinium makes tissue brighter on
T1c than the same tissue is on T1 (and than normal white matter is on T1c). :func:`enhancement_contrast`
measures that per voxel, in standard deviations of the normal-appearing brain; :func:`check_enhancement`
keeps enhancing tumour only where the contrast shows uptake (:class:`EnhancementRule`, tuned on held-out
predictions: ``Testing/Benchmarks/enhancement_study.py``) and turns the rest into non-enhancing core. Without T1c no enhancement can be seen at all: :func:`without_contrast` reports the core as one
undivided region and the summary says why.

:func:`remove_enhancement` does the opposite on images with an expert label: it takes the enhancement away
(T1c inside the enhancing tumour made to look like non-enhancing tumour, label ET → NCR). It makes the
non-enhancing test cases the shared data lacks (every shared case has some ET), for tuning and for
training.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from scipy import ndimage

from .labels import Label
from .volume import Volume

__all__ = ["EnhancementRule", "EnhancementRules", "EnhancementCheck", "enhancement_contrast", "apply_rule",
           "enough_in_total", "check_enhancement", "without_contrast", "remove_enhancement", "NOT_ASSESSED_WITHOUT_T1C"]

NOT_ASSESSED_WITHOUT_T1C = ("no T1c: enhancement cannot be seen without contrast, so enhancing tumour and its "
                            "split from necrosis are not reported; the tumour core is given as one region")
_STRUCTURE = np.ones((3, 3, 3), bool)


@dataclass(frozen=True)
class EnhancementRule:
    """Which predicted enhancing tumour the images support (a model's registry ``postprocessing`` sets it).

    A voxel stays enhancing tumour when its (smoothed) enhancement contrast reaches ``min_contrast``; a
    connected piece of what stays must hold at least ``min_strong_voxels`` voxels reaching ``strong_contrast``
    (a real enhancing rim always has some) and measure at least ``min_piece_ml``; and what stays must
    together measure at least ``min_total_ml``, a case-level "is there enhancing tumour at all?" (a few mL
    scattered on a non-enhancing glioma is the typical false finding). What fails becomes non-enhancing core
    (NCR): the tumour core is unchanged. ``min_contrast`` 0 or less switches the rule off (contrasts are still
    reported).

    Attributes:
        min_contrast: SD of normal brain a voxel must reach.
        strong_contrast: SD of normal brain of a "strongly enhancing" voxel.
        min_strong_voxels: strongly enhancing voxels a piece needs.
        smoothing: Gaussian σ (voxels) of the contrast map, against noise.
        min_piece_ml: smallest piece of enhancing tumour kept.
        min_total_ml: least enhancing tumour in all for any to be reported.
    """

    min_contrast: float = 0.0
    strong_contrast: float = 0.0
    min_strong_voxels: int = 0
    smoothing: float = 0.0
    min_piece_ml: float = 0.0
    min_total_ml: float = 0.0

    @property
    def active(self) -> bool:
        return self.min_contrast > 0


@dataclass(frozen=True)
class EnhancementRules:
    """One :class:`EnhancementRule` for studies with a T1 (contrast against what T1 predicts) and one without
    (contrast against the normal brain's bright end on T1c alone, a weaker measure tuned apart)."""

    with_t1: EnhancementRule = field(default_factory=EnhancementRule)
    without_t1: EnhancementRule = field(default_factory=EnhancementRule)

    @classmethod
    def from_dict(cls, values: Mapping | None) -> EnhancementRules:
        values = values or {}
        return cls(EnhancementRule(**values.get("with_t1", {})), EnhancementRule(**values.get("without_t1", {})))

    def for_images(self, images: Mapping[str, Volume]) -> EnhancementRule:
        return self.with_t1 if "t1" in images else self.without_t1


@dataclass
class EnhancementCheck:
    """What the enhancement check found.

    Attributes:
        assessed: whether enhancement could be judged (a T1c was given).
        reason: why not, when it could not.
        rule: the rule applied.
        kept: per remaining enhancing piece: volume (mL), median contrast, strongly enhancing voxels.
        relabelled_ml: predicted enhancing tumour the images did not support, now NCR.
        too_little_ml: of ``relabelled_ml``, what did enhance but was less in all than the rule's least total.
        reference: what the T1c was compared with.
    """

    assessed: bool
    reason: str = ""
    rule: EnhancementRule = field(default_factory=EnhancementRule)
    kept: list[dict] = field(default_factory=list)
    relabelled_ml: float = 0.0
    too_little_ml: float = 0.0
    reference: str = ""

    def as_dict(self) -> dict:
        return {"assessed": self.assessed, "reason": self.reason, "reference": self.reference, "rule": asdict(self.rule),
                "components_kept": self.kept, "relabelled_ncr_ml": round(self.relabelled_ml, 3),
                "too_little_ml": round(self.too_little_ml, 3)}


def _zscore(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    values = image[mask].astype(np.float64)
    return ((image - np.median(values)) / (values.std() + 1e-6)).astype(np.float32)


def enhancement_contrast(t1c: np.ndarray, t1: np.ndarray | None, normal: np.ndarray) -> np.ndarray:
    """How much brighter each voxel is on T1c than normal tissue explains, in SD of the normal brain.

    With T1: the residual of T1c after the linear map T1 → T1c fitted on normal-appearing brain (so white
    matter, which is bright on both, scores about 0, and only contrast uptake scores high). Without T1: T1c
    relative to the normal brain's bright end (its 90th percentile).

    Args:
        t1c, t1: (I, J, K) images on one grid (``t1`` may be ``None``).
        normal: (I, J, K) bool, normal-appearing brain (brain outside the predicted tumour).
    """
    if normal.sum() < 1000:
        raise ValueError("too little normal-appearing brain to judge enhancement against")
    c = _zscore(t1c, normal)
    if t1 is None:
        reference = np.percentile(c[normal], 90)
        return ((c - reference) / (c[normal].std() + 1e-6)).astype(np.float32)
    t = _zscore(t1, normal)
    slope, intercept = np.polyfit(t[normal].astype(np.float64), c[normal].astype(np.float64), 1)
    residual = c - (slope * t + intercept)
    return (residual / (residual[normal].std() + 1e-6)).astype(np.float32)


def apply_rule(enhancing: np.ndarray, contrast: np.ndarray, rule: EnhancementRule, voxel_ml: float = 0.001
               ) -> np.ndarray:
    """The enhancing voxels ``rule`` keeps, given the voxel contrast map (both (I, J, K)) and a voxel's mL."""
    if not rule.active:
        return enhancing
    smoothed = ndimage.gaussian_filter(contrast, rule.smoothing) if rule.smoothing > 0 else contrast
    kept = enhancing & (smoothed >= rule.min_contrast)
    if rule.min_strong_voxels > 0 or rule.min_piece_ml > 0:
        pieces, count = ndimage.label(kept, _STRUCTURE)
        strong = np.bincount(pieces[kept & (smoothed >= rule.strong_contrast)], minlength=count + 1)
        size = np.bincount(pieces.ravel(), minlength=count + 1) * voxel_ml
        supported = (strong >= rule.min_strong_voxels) & (size >= rule.min_piece_ml)
        supported[0] = False
        kept = supported[pieces]
    return kept if enough_in_total(kept, rule, voxel_ml) else np.zeros_like(kept)


def enough_in_total(kept: np.ndarray, rule: EnhancementRule, voxel_ml: float = 0.001) -> bool:
    """Whether the enhancing voxels ``kept`` reach the rule's least total."""
    return rule.min_total_ml <= 0 or float(kept.sum()) * voxel_ml >= rule.min_total_ml


def check_enhancement(labels: Volume, images: Mapping[str, Volume], brain: np.ndarray,
                      rule: EnhancementRule | EnhancementRules) -> tuple[Volume, EnhancementCheck]:
    """Relabel predicted enhancing tumour that the images do not show as enhancing to non-enhancing core.

    Args:
        labels: internal label map on the images' grid.
        images: sequences by key on that grid; ``t1c`` is needed, ``t1`` is used when given.
        brain: (I, J, K) bool brain mask.
        rule: the :class:`EnhancementRule`, or :class:`EnhancementRules` to choose by whether a T1 was given
            (inactive: the contrasts are reported, nothing changes).
    """
    if "t1c" not in images:
        return without_contrast(labels)
    if isinstance(rule, EnhancementRules):
        rule = rule.for_images(images)
    enhancing = labels.array == Label.ET
    check = EnhancementCheck(True, rule=rule, reference="T1 and normal brain" if "t1" in images
                             else "normal brain (no T1 given)")
    if not enhancing.any():
        return labels, check
    tumour = ndimage.binary_dilation(labels.array > 0, _STRUCTURE, iterations=3)
    t1 = images["t1"].array if "t1" in images else None
    contrast = enhancement_contrast(images["t1c"].array, t1, brain & ~tumour)
    kept = apply_rule(enhancing, contrast, replace(rule, min_total_ml=0.0), labels.voxel_volume_ml)
    if not enough_in_total(kept, rule, labels.voxel_volume_ml):
        check.too_little_ml = float(kept.sum()) * labels.voxel_volume_ml
        kept = np.zeros_like(kept)
    out = labels.array.copy()
    out[enhancing & ~kept] = Label.NCR
    check.relabelled_ml = float((enhancing & ~kept).sum()) * labels.voxel_volume_ml
    pieces, count = ndimage.label(kept, _STRUCTURE)
    for index in range(1, count + 1):
        piece = pieces == index
        check.kept.append({"volume_ml": round(float(piece.sum()) * labels.voxel_volume_ml, 3),
                           "median_contrast_sd": round(float(np.median(contrast[piece])), 2),
                           "strong_voxels": int((piece & (contrast >= rule.strong_contrast)).sum())})
    return labels.with_array(out), check


def without_contrast(labels: Volume) -> tuple[Volume, EnhancementCheck]:
    """No T1c: enhancing tumour cannot be told from the rest of the core, so the core is one region (NCR)."""
    out = labels.array.copy()
    out[out == Label.ET] = Label.NCR
    return labels.with_array(out), EnhancementCheck(False, NOT_ASSESSED_WITHOUT_T1C)


def remove_enhancement(t1c: np.ndarray, t1: np.ndarray, labels: np.ndarray, brain: np.ndarray,
                       rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Take the enhancement away: T1c inside the enhancing tumour made to look like non-enhancing tumour.

    The T1c of non-enhancing tumour is what its T1 predicts through the T1 → T1c relation of the tumour's own
    non-enhancing tissue (NCR and oedema); enhancing voxels get that value plus the residual noise of that fit,
    blended over a one-voxel rim so no edge is left. The label ET becomes NCR.

    Args:
        t1c, t1: (I, J, K) images (any intensity scale, e.g. raw or z-scored).
        labels: (I, J, K) internal label map.
        brain: (I, J, K) bool brain mask.
        rng: noise generator (default: seeded, so the result repeats).

    Returns:
        (new T1c, new labels); unchanged copies when there is no enhancing tumour.
    """
    rng = rng or np.random.default_rng(0)
    enhancing = labels == Label.ET
    t1c_out, labels_out = t1c.astype(np.float32, copy=True), labels.copy()
    if not enhancing.any():
        return t1c_out, labels_out
    tissue = np.isin(labels, [Label.NCR, Label.ED]) & brain
    if tissue.sum() < 200:  # too little non-enhancing tumour: fit on the normal brain
        tissue = brain & (labels == 0)
    slope, intercept = np.polyfit(t1[tissue].astype(np.float64), t1c[tissue].astype(np.float64), 1)
    residual = t1c[tissue] - (slope * t1[tissue] + intercept)
    predicted = slope * t1 + intercept + rng.normal(0.0, residual.std(), t1.shape)
    weight = ndimage.gaussian_filter(ndimage.binary_dilation(enhancing, _STRUCTURE).astype(np.float32), 0.7)
    weight = np.clip(np.maximum(weight, enhancing), 0.0, 1.0) * brain
    t1c_out = (weight * predicted + (1 - weight) * t1c).astype(np.float32)
    labels_out[enhancing] = Label.NCR
    return t1c_out, labels_out
