"""Tissue regions of the MNI template on a patient's brain, for the check that each sequence shows its own
tissue contrast (:mod:`TumorSegLib.qa.weighting`)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import numpy as np
from scipy import ndimage

from ..atlas import derived_from_template, mni_template
from ..intensity import foreground_mask
from ..qa import Finding, check_weighting
from ..registration import register
from ..volume import Volume
from .brain import BrainExtraction, stripped_sequences

__all__ = ["atlas_tissues", "check_tissue_contrast"]


_REGIONS = ("white", "grey", "fluid")  # disjoint: coded 1, 2, 3 in one label map
# What makes a template voxel a region (the cache key holds them: a changed rule is derived anew). Deep fluid only:
# the sulci's partial volume with the brain edge is dark on every sequence.
_REGION_RULES = {"version": 1, "white_min": 0.9, "white_depth_mm": 8.0, "grey_min": 0.6, "fluid_min": 0.8,
                 "fluid_depth_mm": 15.0, "smoothing_sigma_voxels": 2.0}


def _derive_regions() -> dict[str, np.ndarray]:
    """The template's smoothed brain mask and region label map, with their geometry, as arrays."""
    rules = _REGION_RULES
    template = mni_template()
    brain = template["brain"].array > 0.5
    # the same distances on the brain's bounding box (and a margin of background): a third of the grid
    inside = np.argwhere(brain)
    box = tuple(slice(max(low - 1, 0), high + 2) for low, high in zip(inside.min(0), inside.max(0)))
    depth_mm = np.zeros(brain.shape)
    depth_mm[box] = ndimage.distance_transform_edt(brain[box], sampling=template["brain"].spacing)
    grey, white = template["gm"].array, template["wm"].array
    fluid = np.clip(1.0 - grey - white, 0.0, 1.0) * brain
    codes = np.zeros(brain.shape, np.uint8)
    codes[(white > rules["white_min"]) & (depth_mm > rules["white_depth_mm"])] = 1
    codes[grey > rules["grey_min"]] = 2
    codes[(fluid > rules["fluid_min"]) & (depth_mm > rules["fluid_depth_mm"])] = 3
    smooth_brain = ndimage.gaussian_filter(brain.astype(np.float32), rules["smoothing_sigma_voxels"])
    geometry = template["brain"]
    return {"smooth_brain": smooth_brain, "codes": codes, "spacing": np.array(geometry.spacing),
            "origin": np.array(geometry.origin), "direction": geometry.direction}


@lru_cache(maxsize=1)
def _template_regions() -> tuple[Volume, Volume]:
    """(the template's smoothed brain mask, its region label map): derived once, then read from the cache."""
    arrays = derived_from_template("tissue-regions", repr(sorted(_REGION_RULES.items())), _derive_regions)
    geometry = {"spacing": tuple(arrays["spacing"]), "origin": tuple(arrays["origin"]),
                "direction": arrays["direction"]}
    return Volume(arrays["smooth_brain"], **geometry), Volume(arrays["codes"], **geometry)


def atlas_tissues(brain_mask: Volume) -> dict[str, np.ndarray]:
    """Boolean masks on ``brain_mask``'s grid: deep white matter, cortical grey matter and the ventricles of
    the MNI template, carried by an affine registration of the template's brain mask onto ``brain_mask``
    (masks, not images: it works whatever the sequence, and whichever one is wrong)."""
    template_brain, regions = _template_regions()
    patient_brain = brain_mask.with_array(ndimage.gaussian_filter((brain_mask.array > 0).astype(np.float32), 2.0))
    result = register(patient_brain, template_brain, kind="affine", working_spacing_mm=4.0, shrink_factors=(2, 1),
                      smoothing_sigmas_mm=(4.0, 2.0), samples_per_level=10000, max_iterations=100, min_step=0.005)
    codes = result.resample(regions, brain_mask, order=0).array
    return {name: codes == code for code, name in enumerate(_REGIONS, start=1)}


def check_tissue_contrast(aligned: Mapping[str, Volume], brain: BrainExtraction | None) -> list[Finding]:
    """Warnings for sequences (on one grid) whose tissue contrast is another sequence's, read inside the brain:
    the extracted one, else the skull-stripped sequences'; nothing on heads left unstripped (no brain to read)."""
    if brain is not None:
        mask = brain.mask
    else:
        stripped, _ = stripped_sequences(aligned)
        if not stripped:
            return []
        inside = foreground_mask(np.stack([aligned[key].array for key in stripped]))
        mask = aligned[stripped[0]].with_array(inside.astype(np.uint8))
    return check_weighting(aligned, mask, atlas_tissues)
