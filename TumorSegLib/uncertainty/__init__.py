"""How sure the model is: sampled predictions, voxel uncertainty maps, region scores and volume intervals.

A *sample* is one prediction of the model under one source of variation (:mod:`.methods`: ensemble members,
flips, intensity and affine jitter, Monte-Carlo dropout). :func:`estimate_uncertainty` (:mod:`.sampling`)
runs them and returns an :class:`UncertaintyResult` (:mod:`.result`): mean probabilities, entropy maps
(:mod:`.maps`), region scores with review flags and volume intervals (:mod:`.intervals`), all on the model
grid of the input.
"""

from .intervals import (
    DOUBT_RANGE,
    FLAG_THRESHOLDS,
    IntervalCalibration,
    RegionUncertainty,
    VolumeInterval,
    move_enhancing_to_core,
)
from .maps import CLASS_NAMES, binary_entropy, class_probabilities, normalised_entropy
from .methods import DEFAULT_METHODS, Draw, Jitter, Method, parse_methods, plan_draws, require_dropout
from .result import UncertaintyResult
from .sampling import DEFAULT_SAMPLES, GPU_BATCH, MIN_SAMPLES, Sampler, estimate_uncertainty

__all__ = [
    "Method", "DEFAULT_METHODS", "DEFAULT_SAMPLES", "MIN_SAMPLES", "GPU_BATCH", "FLAG_THRESHOLDS", "DOUBT_RANGE",
    "CLASS_NAMES", "Draw", "Jitter", "parse_methods", "plan_draws", "Sampler", "require_dropout",
    "class_probabilities", "normalised_entropy", "binary_entropy", "IntervalCalibration", "VolumeInterval", "move_enhancing_to_core",
    "RegionUncertainty",
    "UncertaintyResult", "estimate_uncertainty",
]
