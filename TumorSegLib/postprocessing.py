"""From region probabilities to a clean label map.

Thresholds each region, enforces ET ⊂ TC ⊂ WT, removes whole-tumour components too small to be a
lesion, and relabels a total enhancing volume too small to be real as non-enhancing core (a small
false ET on a non-enhancing glioma matters more to a clinician — and to Dice — than a missed speck).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .enhancement import EnhancementRules
from .labels import Label, labels_from_region_masks
from .volume import Volume

__all__ = ["PostProcessing", "remove_small_components", "postprocess"]


@dataclass(frozen=True)
class PostProcessing:
    """Post-processing settings (a model's registry entry sets them).

    Attributes:
        threshold: probability above which a voxel belongs to a region.
        min_component_ml: whole-tumour components smaller than this are removed.
        min_enhancing_ml: if all enhancing tumour together is smaller, it becomes necrosis/non-enhancing core.
        enhancement: the rules keeping enhancing tumour only where T1c shows uptake, with and without a T1
            (:class:`~TumorSegLib.enhancement.EnhancementRules`: ``with_t1``/``without_t1`` rule fields; empty: off).
    """

    threshold: float = 0.5
    min_component_ml: float = 0.1
    min_enhancing_ml: float = 0.0
    enhancement: dict = field(default_factory=dict)

    @property
    def enhancement_rules(self) -> EnhancementRules:
        return EnhancementRules.from_dict(self.enhancement)

    @classmethod
    def from_dict(cls, values: dict) -> PostProcessing:
        return cls(**values)


def remove_small_components(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    """``mask`` without its 26-connected components smaller than ``min_voxels``."""
    if min_voxels <= 1 or not mask.any():
        return mask
    components, count = ndimage.label(mask, np.ones((3, 3, 3), bool))
    sizes = ndimage.sum_labels(np.ones(mask.shape, np.int32), components, range(1, count + 1))
    keep = np.concatenate([[False], sizes >= min_voxels])
    return keep[components]


def postprocess(probabilities: Volume, settings: PostProcessing = PostProcessing()) -> Volume:
    """Internal label map (uint8, codes of :class:`~TumorSegLib.labels.Label`) from (WT, TC, ET) probabilities."""
    wt, tc, et = (probabilities.array[c] > settings.threshold for c in range(3))
    labels = labels_from_region_masks(wt, tc, et)
    voxel_ml = probabilities.voxel_volume_ml
    tumour = remove_small_components(labels > 0, int(np.ceil(settings.min_component_ml / voxel_ml)))
    labels[~tumour] = Label.BACKGROUND
    enhancing = labels == Label.ET
    if settings.min_enhancing_ml and enhancing.sum() * voxel_ml < settings.min_enhancing_ml:
        labels[enhancing] = Label.NCR
    return Volume(labels, probabilities.spacing, probabilities.origin, probabilities.direction)
