"""Brain extraction for heads that are not skull-stripped, behind a small :class:`BrainExtractor` protocol.

The default extractor registers the MNI ICBM152 2009 template (nilearn) to the patient; another backend
(e.g. a learned skull stripper) only needs a ``__call__(image) -> BrainExtraction``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy import ndimage

from ..atlas import mni_template
from ..intensity import constant_background, foreground
from ..registration import register
from ..volume import Volume

__all__ = ["is_skull_stripped", "stripped_sequences", "BrainExtraction", "BrainExtractor", "AtlasBrainExtractor", "extract_brain",
           "refine_with_tumour"]


def is_skull_stripped(volume: Volume) -> bool:
    """Whether an image holds a brain only: a constant background around a brain-sized object.

    Skull-stripped images (e.g. BraTS) set everything outside the brain to one value (0, 1e-22, or a negative
    constant in intensity-normalised exports), and what remains is about 1–2 L; a head image has a noisy air
    background and 3–6 L of tissue above it.
    """
    if constant_background(volume.array) is None:
        return False
    inside = foreground(volume.array)
    return inside.mean() < 0.7 and inside.sum() * volume.voxel_volume_ml / 1000 < 2.3


def stripped_sequences(volumes: Mapping[str, Volume]) -> tuple[list[str], list[str]]:
    """(skull-stripped, not skull-stripped) sequence keys."""
    stripped = [key for key, volume in volumes.items() if is_skull_stripped(volume)]
    return stripped, [key for key in volumes if key not in stripped]


@dataclass
class BrainExtraction:
    """A brain mask and how it was made."""

    mask: Volume
    method: str
    template_metric: float | None = None
    volume_ml: float = 0.0

    def as_dict(self) -> dict:
        return {"method": self.method, "template_metric": self.template_metric, "volume_ml": round(self.volume_ml, 1)}


class BrainExtractor(Protocol):
    """Anything that finds the brain in a head MRI."""

    def __call__(self, image: Volume) -> BrainExtraction:
        """Brain mask of ``image`` (3D, any grid), on ``image``'s grid."""


class AtlasBrainExtractor:
    """Brain mask by affine registration of the MNI ICBM152 2009 template (from nilearn).

    The template (brain only) is registered to the patient with its brain mask restricting the metric, its
    brain mask is carried over, closed and filled. Tumour at the edge of the brain is added back later from
    the model's own prediction (see :func:`refine_with_tumour`).

    Args:
        template: ``{"t1": ..., "brain": ...}`` volumes (default: :func:`~TumorSegLib.atlas.mni_template`).
    """

    def __init__(self, template: Mapping[str, Volume] | None = None):
        self.template = template

    def __call__(self, image: Volume) -> BrainExtraction:
        template = self.template or mni_template()
        brain = template["brain"]
        moving_mask = brain.with_array((brain.array > 0.5).astype(np.uint8))
        head = image.with_array((image.array > np.percentile(image.array, 40)).astype(np.uint8))
        # Template brain (moving) onto the patient head (fixed): transform maps patient points to template points.
        result = register(image, template["t1"], kind="affine", fixed_mask=head, moving_mask=moving_mask,
                          initialization="moments", working_spacing_mm=3.0, shrink_factors=(2, 1),
                          smoothing_sigmas_mm=(3.0, 1.5))
        mask = result.resample(moving_mask, image, order=0).array > 0
        mask = ndimage.binary_closing(mask, np.ones((3, 3, 3)), iterations=2)
        mask = ndimage.binary_fill_holes(mask)
        return BrainExtraction(image.with_array(mask), "MNI ICBM152 2009 template, affine (Mattes MI)",
                               result.metric_value, float(mask.sum()) * image.voxel_volume_ml)


def extract_brain(image: Volume, template: Mapping[str, Volume] | None = None) -> BrainExtraction:
    """Brain mask of a head MRI with the default :class:`AtlasBrainExtractor`."""
    return AtlasBrainExtractor(template)(image)


def refine_with_tumour(brain: Volume, tumour: np.ndarray, reach_mm: float = 15.0) -> Volume:
    """Add predicted tumour that touches the brain mask (within ``reach_mm``), so edge tumours are kept."""
    components, count = ndimage.label(tumour)
    if count == 0:
        return brain
    grown = ndimage.distance_transform_edt(~brain.array.astype(bool), sampling=brain.spacing) <= reach_mm
    touching = np.unique(components[grown & (components > 0)])
    return brain.with_array(brain.array.astype(bool) | np.isin(components, touching[touching > 0]))
