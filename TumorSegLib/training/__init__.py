"""Training on BraTS-format folders: case discovery and a preprocessed cache (:mod:`.data`), the recipe
(:mod:`.config`), patch sampling and augmentation on the training device (:mod:`.sampler`), the
resumable loop (:mod:`.loop`), and averaging a fine-tuned network with its starting weights (:mod:`.blend`)."""

from .blend import blend_weights
from .config import TrainConfig
from .data import (
    QUANT_OFFSET,
    QUANT_SCALE,
    cache_case,
    cached_cases,
    cached_with_n4,
    extend_folds,
    find_cases,
    load_cached_case,
    make_folds,
    prepare_cache,
)
from .loop import export_weights, train, train_runs, validate
from .sampler import PatchSampler, device_cases, region_channels

__all__ = ["find_cases", "cache_case", "cached_cases", "cached_with_n4", "prepare_cache", "load_cached_case",
           "make_folds", "extend_folds", "TrainConfig", "train", "train_runs", "validate", "export_weights",
           "PatchSampler", "device_cases", "region_channels", "QUANT_OFFSET", "QUANT_SCALE", "blend_weights"]
