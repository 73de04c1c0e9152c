"""Preparing clinical scans for the model: co-registration onto a reference sequence, N4 bias-field
correction and brain extraction, each reporting what it did; the atlas tissue regions that check each
sequence's contrast."""

from .bias import n4_bias_correction, n4_bias_correction_all
from .brain import (
    AtlasBrainExtractor,
    BrainExtraction,
    BrainExtractor,
    extract_brain,
    is_skull_stripped,
    refine_with_tumour,
    stripped_sequences,
)
from .coregistration import CoRegistration, coregister, is_aligned
from .tissues import atlas_tissues, check_tissue_contrast

__all__ = ["CoRegistration", "coregister", "is_aligned", "n4_bias_correction", "n4_bias_correction_all",
           "is_skull_stripped", "BrainExtraction", "BrainExtractor", "AtlasBrainExtractor", "extract_brain",
           "refine_with_tumour", "stripped_sequences", "atlas_tissues", "check_tissue_contrast"]
