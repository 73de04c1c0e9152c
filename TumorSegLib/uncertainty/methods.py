"""Sources of variation between uncertainty samples: the one registry of methods and the sampling plan.

* ``ensemble``  – each weight file of the model is a sample (the default model has six: member 0 trained on
  every case, members 1-5 the cross-validation folds);
* ``flips``     – test-time mirror flips of the three axes (exact and exactly invertible);
* ``intensity`` – test-time per-sequence intensity scale and shift, MONAI's ``RandScaleIntensity`` and
  ``RandShiftIntensity`` over the whole crop, as in training and within its range (±10 %, ±0.1 SD);
* ``affine``    – test-time small rotation (±0.1 rad) and scaling (±5 %) with MONAI's invertible ``Affine``;
  the output is warped back with the transform's own ``inverse``;
* ``dropout``   – Monte-Carlo dropout: the network's dropout layers stay active (refused, naming the other
  methods, for a network without a dropout layer of non-zero rate: its samples would all be the same).

Ensemble and flips form a deterministic grid (members × flips, :func:`plan_draws`); the random methods draw
fresh parameters for every sample from the sample's seed. A random test-time augmentation is one entry of
:data:`AUGMENTATIONS` (apply to the input, return the function that undoes it on the output); adding a
method means adding its :class:`Method` member and its entry here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

from ..inference import flip_sets
from ..options import MAX_FLIPS

if TYPE_CHECKING:
    import torch

__all__ = ["Method", "DEFAULT_METHODS", "Jitter", "AUGMENTATIONS", "Draw", "parse_methods", "plan_draws",
           "require_dropout", "augment"]


class Method(str, Enum):
    """Sources of variation between samples."""

    ENSEMBLE = "ensemble"
    FLIPS = "flips"
    INTENSITY = "intensity"
    AFFINE = "affine"
    DROPOUT = "dropout"


DEFAULT_METHODS: tuple[Method, ...] = (Method.ENSEMBLE, Method.FLIPS)


@dataclass(frozen=True)
class Jitter:
    """Ranges of the random test-time augmentations.

    Attributes:
        intensity: half-range of the intensity scale factor and of the shift (in SD of the z-scored input).
        rotation_rad: half-range of the rotation about each axis; scaling: half-range of the scale factor.
    """

    intensity: float = 0.1
    rotation_rad: float = 0.1
    scaling: float = 0.05


Undo = Callable[["torch.Tensor"], "torch.Tensor"]
Augmentation = Callable[["torch.Tensor", np.random.Generator, Jitter], tuple["torch.Tensor", Undo]]


def _affine(x: torch.Tensor, rng: np.random.Generator, jitter: Jitter) -> tuple[torch.Tensor, Undo]:
    from monai.data import MetaTensor, get_track_meta, set_track_meta
    from monai.transforms import Affine

    transform = Affine(rotate_params=[float(v) for v in rng.uniform(-jitter.rotation_rad, jitter.rotation_rad, 3)],
                       scale_params=[float(1 + v) for v in rng.uniform(-jitter.scaling, jitter.scaling, 3)],
                       mode="bilinear", padding_mode="border", image_only=True, device=x.device)
    # Border padding: the crop's edges are background both in the input and in the output logits.
    # The inverse needs the MetaTensor's record of the operation, whatever the process-wide setting.
    tracking = get_track_meta()
    set_track_meta(True)
    try:
        warped = transform(MetaTensor(x))
    finally:
        set_track_meta(tracking)
    operations = list(warped.applied_operations)

    def undo(logits):
        return transform.inverse(MetaTensor(logits, applied_operations=list(operations))).as_tensor()

    return warped.as_tensor(), undo


def _intensity(x: torch.Tensor, rng: np.random.Generator, jitter: Jitter) -> tuple[torch.Tensor, Undo]:
    from monai.transforms import RandScaleIntensity, RandShiftIntensity

    scaler = RandScaleIntensity(factors=jitter.intensity, prob=1.0, channel_wise=True)
    shifter = RandShiftIntensity(offsets=jitter.intensity, prob=1.0, channel_wise=True)
    scaler.set_random_state(int(rng.integers(2**31)))
    shifter.set_random_state(int(rng.integers(2**31)))
    x = shifter(scaler(x))
    return (x.as_tensor() if hasattr(x, "as_tensor") else x), (lambda logits: logits)  # nothing spatial to undo


# Applied in this order (each draws its parameters from the sample's generator in turn); undone in reverse.
AUGMENTATIONS: dict[Method, Augmentation] = {Method.AFFINE: _affine, Method.INTENSITY: _intensity}
# Methods that change how the network runs rather than its input.
_NETWORK_MODES = frozenset({Method.DROPOUT})
_RANDOM_METHODS = frozenset(AUGMENTATIONS) | _NETWORK_MODES


def parse_methods(methods: str | Iterable[Method | str]) -> tuple[Method, ...]:
    """Methods from a comma-separated string or a sequence, checked once, duplicates dropped.

    Raises:
        ValueError: naming the known methods, for an unknown one or an empty selection.
    """
    items = [m.strip() for m in methods.split(",") if m.strip()] if isinstance(methods, str) else list(methods)
    chosen: list[Method] = []
    for item in items:
        try:
            method = Method(item)
        except ValueError as error:
            raise ValueError(f"unknown uncertainty method '{item}': use any of "
                             f"{', '.join(m.value for m in Method)} (comma-separated)") from error
        if method not in chosen:
            chosen.append(method)
    if not chosen:
        raise ValueError(f"no uncertainty method chosen: use any of {', '.join(m.value for m in Method)}")
    return tuple(chosen)


@dataclass(frozen=True)
class Draw:
    """One planned sample.

    Attributes:
        member: index into the predictor's networks.
        flip: spatial axes (0-2) mirrored at test time.
        seed: seed of the random jitter and dropout masks; ``None`` when nothing is random.
        random_methods: the random methods (augmentations, dropout) this sample uses.
    """

    member: int = 0
    flip: tuple[int, ...] = ()
    seed: int | None = None
    random_methods: tuple[Method, ...] = ()

    @property
    def dropout(self) -> bool:
        return Method.DROPOUT in self.random_methods

    def describe(self) -> str:
        parts = [f"member {self.member}", "flip " + ("".join("ijk"[a] for a in self.flip) or "none")]
        return ", ".join(parts + [method.value for method in self.random_methods])


def plan_draws(methods: Sequence[Method], members: int, samples: int, seed: int = 0) -> list[Draw]:
    """The samples to run, in the order they should run.

    The deterministic grid members × flips is ordered so that the first ``members`` samples use every member
    once, each with a different flip, the next ``members`` every member with the next flip, and so on: a
    run cut short by a time budget still covers the members evenly. Without a random method the count is
    capped at the grid's size (a repeated sample adds no information).

    Args:
        methods: from :func:`parse_methods`.
        members: number of networks the predictor holds (only member 0 is used without ``ensemble``).
        samples: samples wanted (≥ 1).
        seed: first seed of the random methods (sample ``n`` uses ``seed + n``).
    """
    if samples < 1:
        raise ValueError(f"the number of samples must be at least 1, got {samples}")
    chosen = range(members) if Method.ENSEMBLE in methods else range(1)
    flips = flip_sets(MAX_FLIPS) if Method.FLIPS in methods else [()]
    grid = [(m, flips[(i + r) % len(flips)]) for r in range(len(flips)) for i, m in enumerate(chosen)]
    random = tuple(m for m in Method if m in _RANDOM_METHODS and m in methods)
    count = samples if random else min(samples, len(grid))
    return [Draw(member=grid[n % len(grid)][0], flip=grid[n % len(grid)][1], seed=seed + n if random else None,
                 random_methods=random) for n in range(count)]


def require_dropout(network: torch.nn.Module, model_id: str = "") -> None:
    """Refuse Monte-Carlo dropout on a network without an active dropout layer.

    Without one, every dropout sample is the same prediction: the maps would show no uncertainty at all,
    which a reader would take for a sure segmentation.

    Raises:
        ValueError: saying which methods to use instead.
    """
    import torch

    rates = [m.p for m in network.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    if not any(rate > 0 for rate in rates):
        found = "only dropout layers with probability 0" if rates else "no dropout layer"
        name = f"model '{model_id}'" if model_id else "the network"
        raise ValueError(f"{name} has {found}, so Monte-Carlo dropout would repeat one prediction and show no "
                         "uncertainty; use the methods ensemble, flips, intensity or affine instead")


def augment(x: torch.Tensor, draw: Draw, jitter: Jitter) -> tuple[torch.Tensor, Undo]:
    """(``x`` (C, I, J, K) as the draw sees it, function mapping an output (3, I, J, K) back)."""
    import torch

    rng = np.random.default_rng(draw.seed)
    dims = [a + 1 for a in draw.flip]
    x = torch.flip(x, dims) if dims else x
    undos = []
    for method, augmentation in AUGMENTATIONS.items():
        if method in draw.random_methods:
            x, undo = augmentation(x, rng, jitter)
            undos.append(undo)

    def restore(logits):
        for undo in reversed(undos):
            logits = undo(logits)
        return torch.flip(logits, dims) if dims else logits

    return x, restore
