"""How sure the model is: sampled predictions, voxel uncertainty maps, region scores and volume intervals.

A *sample* is one prediction of the model under one source of variation; the methods, selectable and
combinable, are

* ``ensemble``  – each weight file of the model is a sample (the default model has six: member 0 trained on
  every case, members 1-5 the cross-validation folds);
* ``flips``     – test-time mirror flips of the three axes (exact and exactly invertible);
* ``intensity`` – test-time per-sequence intensity scale and shift, MONAI's ``RandScaleIntensity`` and
  ``RandShiftIntensity`` over the whole crop, as in training and within its range (±10 %, ±0.1 SD);
* ``affine``    – test-time small rotation (±0.1 rad) and scaling (±5 %) with MONAI's invertible ``Affine``;
  the output is warped back with the transform's own ``inverse``;
* ``dropout``   – Monte-Carlo dropout: the network's dropout layers stay active (refused, naming the other
  methods, for a network without a dropout layer of non-zero rate: its samples would all be the same).

Samples are planned as a grid (members × flips) ordered so that any prefix covers members and flips evenly;
random methods (intensity, affine, dropout) draw fresh parameters for every sample. On CUDA, samples of one
member run as one batch. With a time budget, the first pass is timed to set how many samples should fit,
and sampling stops when the next pass would not fit at the mean pace so far (at least :data:`MIN_SAMPLES`
always run; on CUDA, where the plan is grouped by member, a cut drops the last members).

Why not MONAI's ``TestTimeAugmentation`` class: it runs a dictionary transform pipeline through a
DataLoader for one network and keeps every output; it cannot mix ensemble members or Monte-Carlo dropout,
does not apply the registry's temperature, and would hold all samples in memory. Here MONAI's invertible
transforms are used directly and the samples are reduced on the fly (memory independent of the count).

Outputs (:class:`UncertaintyResult`), all on the model grid of the input:

* mean probability per region (WT, TC, ET) and per label class (BG, NCR, ED, ET), the class probabilities
  of a sample being ``1 − p_WT, p_TC − p_ET, p_WT − p_TC, p_ET`` with ET ⊂ TC ⊂ WT enforced;
* predictive entropy of the mean class distribution, expected (mean per-sample) entropy — the aleatoric
  part — and their difference, the mutual information — the epistemic part; all divided by log 4 so they
  lie in 0–1;
* per-region variance of the sampled probabilities (population variance, 0–0.25);
* per-region score, the *fraction in doubt*: of the region's extent — its predicted mask together with every
  voxel in doubt — the share in doubt, a voxel being in doubt when its mean region probability lies in
  :data:`DOUBT_RANGE` (0.25–0.75, i.e. binary entropy above 0.81 bits). In effect it is the width of the
  uncertain boundary band relative to the region's size. The region's own probability is used, not the label
  entropy, so the WT score is not raised by NCR/ED doubt inside a sure tumour. In the held-out calibration
  study (28 shared cases, fold networks, 3 flips) it followed 1 − Dice with Spearman 0.81 WT, 0.82 TC,
  0.68 ET, against 0.47, 0.61, 0.46 for the mean binary entropy over the same extent; it was chosen over a
  fixed 2 mm band (0.21, 0.35, 0.40 on 15 of those cases), so these are not independent figures. A region
  whose score reaches its
  :data:`FLAG_THRESHOLDS` value is flagged for review; the mean binary entropy and mutual information over
  the extent are reported beside it;
* each label's and region's volume (mL): the point estimate from the mean probability (post-processed as
  the model's segmentation is) and the 5th–95th percentile of the samples' volumes (each sample
  post-processed alike).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .inference import Predictor, flip_sets
from .labels import Region, region_masks
from .postprocessing import PostProcessing, postprocess
from .volume import Volume, write_volume

if TYPE_CHECKING:
    import torch

__all__ = [
    "Method",
    "DEFAULT_METHODS",
    "DEFAULT_SAMPLES",
    "MIN_SAMPLES",
    "FLAG_THRESHOLDS",
    "DOUBT_RANGE",
    "CLASS_NAMES",
    "Draw",
    "parse_methods",
    "plan_draws",
    "Sampler",
    "require_dropout",
    "class_probabilities",
    "normalised_entropy",
    "binary_entropy",
    "VolumeInterval",
    "RegionUncertainty",
    "UncertaintyResult",
    "estimate_uncertainty",
    "write_uncertainty",
]

Progress = Callable[[float, str], None]


class Method(str, Enum):
    """Sources of variation between samples."""

    ENSEMBLE = "ensemble"
    FLIPS = "flips"
    INTENSITY = "intensity"
    AFFINE = "affine"
    DROPOUT = "dropout"


DEFAULT_METHODS: tuple[Method, ...] = (Method.ENSEMBLE, Method.FLIPS)
DEFAULT_SAMPLES = 12  # the default model: each of the 6 members with 2 different flips
MIN_SAMPLES = 2  # spread needs two samples: a time budget never cuts below this
DOUBT_RANGE = (0.25, 0.75)  # mean region probability of a voxel in doubt
# Provisional, set on the shared cases' held-out predictions and judged on the same cases (28, 3 flips):
# flagged regions had mean Dice WT 0.73 vs 0.89 unflagged, TC 0.53 vs 0.81, ET 0.40 vs 0.72, a third of the
# cases flagged. Enhancing tumour, a thin rim, is in doubt more widely. Re-derive on an external set with
# Testing/Benchmarks/calibration_study.py.
FLAG_THRESHOLDS: dict[Region, float] = {Region.WT: 0.25, Region.TC: 0.30, Region.ET: 0.40}
CLASS_NAMES = ("BG", "NCR", "ED", "ET")
GPU_BATCH = 4  # samples per CUDA batch (SegResNet-8 at 128³ needs well under 2 GB per sample in bf16)

_RANDOM_METHODS = frozenset({Method.INTENSITY, Method.AFFINE, Method.DROPOUT})
_LOG4 = math.log(4.0)


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
        intensity, affine, dropout: whether this sample uses the method.
    """

    member: int = 0
    flip: tuple[int, ...] = ()
    seed: int | None = None
    intensity: bool = False
    affine: bool = False
    dropout: bool = False

    def describe(self) -> str:
        parts = [f"member {self.member}", "flip " + ("".join("ijk"[a] for a in self.flip) or "none")]
        parts += [name for name in ("intensity", "affine", "dropout") if getattr(self, name)]
        return ", ".join(parts)


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
    flips = flip_sets(8) if Method.FLIPS in methods else [()]
    grid = [(m, flips[(i + r) % len(flips)]) for r in range(len(flips)) for i, m in enumerate(chosen)]
    random = bool(_RANDOM_METHODS & set(methods))
    count = samples if random else min(samples, len(grid))
    return [Draw(member=grid[n % len(grid)][0], flip=grid[n % len(grid)][1], seed=seed + n if random else None,
                 intensity=Method.INTENSITY in methods, affine=Method.AFFINE in methods,
                 dropout=Method.DROPOUT in methods) for n in range(count)]


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


class Sampler:
    """Runs planned draws through a :class:`~TumorSegLib.inference.Predictor`'s networks.

    Each sample is one sliding-window pass exactly as ``Predictor.logits_samples`` makes it (Gaussian
    blending, the registry's temperature, bfloat16 autocast on CUDA), after the draw's augmentation of the
    input, with the augmentation undone on the output.

    Args:
        predictor: supplies networks, device, overlap, patch size and temperature.
        batch_size: samples per forward batch (default 1 on CPU, :data:`GPU_BATCH` on CUDA).
        intensity: half-range of the intensity scale factor and of the shift (in SD of the z-scored input).
        rotation_rad: half-range of the rotation about each axis; scaling: half-range of the scale factor.
    """

    def __init__(self, predictor: Predictor, batch_size: int | None = None, intensity: float = 0.1,
                 rotation_rad: float = 0.1, scaling: float = 0.05):
        self.predictor = predictor
        self.batch_size = batch_size or (GPU_BATCH if predictor.device == "cuda" else 1)
        self.intensity = intensity
        self.rotation_rad = rotation_rad
        self.scaling = scaling

    def batches(self, draws: Sequence[Draw]) -> list[list[Draw]]:
        """Consecutive draws grouped into batches of one member (and dropout state), in order."""
        out: list[list[Draw]] = []
        for draw in draws:
            last = out[-1] if out else None
            if last and len(last) < self.batch_size and (last[0].member, last[0].dropout) == (draw.member, draw.dropout):
                last.append(draw)
            else:
                out.append([draw])
        return out

    def __call__(self, image: np.ndarray, draws: Sequence[Draw]) -> Iterator[tuple[Draw, object]]:
        """Yield (draw, logits) with logits a torch tensor (3, I, J, K) on the predictor's device.

        Args:
            image: model input (C, I, J, K) float32.
            draws: from :func:`plan_draws`; run in :meth:`batches` order.
        """
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).to(self.predictor.device)
        for batch in self.batches(draws):
            yield from zip(batch, self._run_batch(tensor, batch))

    def _run_batch(self, tensor, batch: list[Draw]) -> list:
        import torch
        from monai.inferers import sliding_window_inference

        predictor = self.predictor
        network = predictor.networks[batch[0].member]
        inputs, undo = zip(*(self._augment(tensor, draw) for draw in batch))
        scale = torch.from_numpy(predictor.temperature).to(tensor.device).view(1, -1, 1, 1, 1)
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if tensor.device.type == "cuda"
                    else torch.autocast("cpu", enabled=False))
        dropouts = [m for m in network.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
        if batch[0].dropout:
            require_dropout(network, predictor.spec.id)
        devices = [tensor.device] if tensor.device.type == "cuda" else []
        try:
            for module in dropouts:
                module.train(batch[0].dropout)
            # A fixed seed per batch makes Monte-Carlo dropout reproducible without touching the global RNG.
            with torch.random.fork_rng(devices=devices), torch.inference_mode(), autocast:
                torch.manual_seed(batch[0].seed or 0)
                logits = sliding_window_inference(torch.stack(inputs), predictor.spec.patch_size, len(batch),
                                                  network, overlap=predictor.overlap, mode="gaussian")
        finally:
            for module in dropouts:
                module.train(False)
        logits = logits.float() / scale
        return [restore(sample) for sample, restore in zip(logits, undo)]

    def _augment(self, tensor, draw: Draw):
        """(augmented input (C, I, J, K), function mapping the output back) for one draw."""
        import torch

        rng = np.random.default_rng(draw.seed)
        dims = [a + 1 for a in draw.flip]
        x = torch.flip(tensor, dims) if dims else tensor
        affine = None
        if draw.affine:
            from monai.data import MetaTensor
            from monai.transforms import Affine

            affine = Affine(rotate_params=[float(v) for v in rng.uniform(-self.rotation_rad, self.rotation_rad, 3)],
                            scale_params=[float(1 + v) for v in rng.uniform(-self.scaling, self.scaling, 3)],
                            mode="bilinear", padding_mode="border", image_only=True, device=x.device)
            # Border padding: the crop's edges are background both in the input and in the output logits.
            # The inverse needs the MetaTensor's record of the operation, whatever the process-wide setting.
            from monai.data import get_track_meta, set_track_meta

            tracking = get_track_meta()
            set_track_meta(True)
            try:
                warped = affine(MetaTensor(x))
            finally:
                set_track_meta(tracking)
            operations = list(warped.applied_operations)
            x = warped.as_tensor()
        if draw.intensity:
            from monai.transforms import RandScaleIntensity, RandShiftIntensity

            scaler = RandScaleIntensity(factors=self.intensity, prob=1.0, channel_wise=True)
            shifter = RandShiftIntensity(offsets=self.intensity, prob=1.0, channel_wise=True)
            scaler.set_random_state(int(rng.integers(2**31)))
            shifter.set_random_state(int(rng.integers(2**31)))
            x = shifter(scaler(x))
            x = x.as_tensor() if hasattr(x, "as_tensor") else x

        def restore(logits):
            if affine is not None:
                from monai.data import MetaTensor

                logits = affine.inverse(MetaTensor(logits, applied_operations=list(operations))).as_tensor()
            return torch.flip(logits, dims) if dims else logits

        return x, restore


# --- converting and measuring probabilities -------------------------------------------------------------

def _class_probabilities_torch(regions):
    import torch

    et = regions[2]
    tc = torch.maximum(regions[1], et)  # an inner region's voxel belongs to the outer ones too
    wt = torch.maximum(regions[0], tc)
    return torch.stack([1 - wt, tc - et, wt - tc, et])


def _entropy_torch(probabilities):
    import torch

    p = probabilities.clamp_min(1e-12)
    return -(probabilities * torch.log(p)).sum(0) / _LOG4


def class_probabilities(regions: np.ndarray) -> np.ndarray:
    """Label-class probabilities (BG, NCR, ED, ET) from region probabilities (WT, TC, ET).

    Args:
        regions: (3, ...) probabilities; TC and WT are raised to their inner region where lower.

    Returns:
        (4, ...) probabilities summing to 1 along the first axis.
    """
    import torch

    return _class_probabilities_torch(torch.as_tensor(np.asarray(regions, np.float32))).numpy()


def normalised_entropy(probabilities: np.ndarray) -> np.ndarray:
    """Shannon entropy over the first axis of (4, ...) class probabilities, divided by log 4 (0–1)."""
    import torch

    return _entropy_torch(torch.as_tensor(np.asarray(probabilities, np.float32))).numpy()


def binary_entropy(probability: np.ndarray) -> np.ndarray:
    """Entropy in bits (0–1) of a yes/no probability, element-wise."""
    p = np.clip(np.asarray(probability, np.float64), 1e-12, 1 - 1e-12)
    return (-(p * np.log2(p) + (1 - p) * np.log2(1 - p))).astype(np.float32)


class _Moments:
    """Running sums over samples, on the samples' device: memory does not grow with the count."""

    def __init__(self):
        self.count = 0
        self.mean = self.m2 = self.classes = self.entropy = None

    def add(self, regions) -> None:
        """Add one sample's region probabilities (torch (3, I, J, K))."""
        import torch

        self.count += 1
        classes = _class_probabilities_torch(regions)
        if self.mean is None:
            self.mean = regions.clone()
            self.m2 = torch.zeros_like(regions)
            self.classes = classes
            self.entropy = _entropy_torch(classes)
            return
        delta = regions - self.mean  # Welford: stable variance in float32
        self.mean += delta / self.count
        self.m2 += delta * (regions - self.mean)
        self.classes += classes
        self.entropy += _entropy_torch(classes)


# --- results --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VolumeInterval:
    """A volume in mL: point estimate from the mean probability, and the samples' 5th–95th percentile.

    The estimate is the volume of the segmentation the user sees (mean probability, post-processed), so it
    need not lie inside the samples' interval: averaging thins structures the samples place differently —
    a thin enhancing rim shrinks in the mean, and the necrosis it surrounds grows — so NCR and ED estimates
    can fall outside their interval while the regions' (WT, TC, ET) usually do not. :attr:`contains_estimate`
    says which; the summary lists the others under ``estimate_outside_interval``.
    """

    estimate_ml: float
    low_ml: float
    high_ml: float
    samples_ml: tuple[float, ...]

    @property
    def contains_estimate(self) -> bool:
        return self.low_ml - 1e-9 <= self.estimate_ml <= self.high_ml + 1e-9

    def as_dict(self) -> dict:
        return {"estimate": self.estimate_ml, "p5": self.low_ml, "p95": self.high_ml,
                "samples": list(self.samples_ml)}


@dataclass(frozen=True)
class RegionUncertainty:
    """Per-region summary.

    Attributes:
        score: fraction in doubt (0–1): voxels in doubt / the region's extent (predicted mask ∪ voxels in doubt).
        mean_entropy: mean binary entropy (bits, 0–1) of the region's mean probability over the extent.
        epistemic: mean mutual information (normalised) over the extent.
        flagged: ``score >= threshold``: review this region first.
        doubt_ml, extent_ml: volumes of the voxels in doubt and of the extent.
        threshold: the flag threshold used.
    """

    region: Region
    score: float
    mean_entropy: float
    epistemic: float
    flagged: bool
    doubt_ml: float
    extent_ml: float
    threshold: float

    def as_dict(self) -> dict:
        return {"score": round(self.score, 4), "flagged": self.flagged, "threshold": self.threshold,
                "mean_entropy": round(self.mean_entropy, 4), "epistemic": round(self.epistemic, 4),
                "doubt_ml": round(self.doubt_ml, 3), "extent_ml": round(self.extent_ml, 3)}


_MAPS = ("probabilities", "class_probabilities", "entropy", "expected_entropy", "mutual_information", "variance")


@dataclass(frozen=True)
class UncertaintyResult:
    """What :func:`estimate_uncertainty` returns; every map keeps the input's geometry.

    Attributes:
        probabilities: (3, I, J, K) mean WT/TC/ET probability over samples.
        class_probabilities: (4, I, J, K) mean BG/NCR/ED/ET probability.
        entropy: (I, J, K) predictive entropy of the mean class distribution / log 4 (total uncertainty).
        expected_entropy: (I, J, K) mean per-sample entropy / log 4 (aleatoric part).
        mutual_information: (I, J, K) entropy − expected entropy (epistemic part), ≥ 0.
        variance: (3, I, J, K) variance over samples of each region's probability.
        labels: (I, J, K) uint8 label map of the mean probability, post-processed as the model's segmentation.
        volumes: point estimate and interval per label and region (NCR, ED, ET, TC, WT).
        regions: per-region score and flag (WT, TC, ET).
        methods, draws: how the samples were made; planned: samples wanted before the time budget.
        budget_limited: the time budget stopped sampling early. seconds: sampling time. device: where it ran.
    """

    probabilities: Volume
    class_probabilities: Volume
    entropy: Volume
    expected_entropy: Volume
    mutual_information: Volume
    variance: Volume
    labels: Volume
    volumes: dict[str, VolumeInterval]
    regions: dict[Region, RegionUncertainty]
    methods: tuple[Method, ...]
    draws: tuple[Draw, ...]
    planned: int
    budget_limited: bool
    seconds: float
    device: str
    time_budget_s: float | None = None
    settings: dict = field(default_factory=dict)

    @property
    def samples(self) -> int:
        return len(self.draws)

    def maps(self) -> dict[str, Volume]:
        """3D maps by file stem: one per channel of the channel maps (e.g. ``probability_WT``)."""
        out: dict[str, Volume] = {}
        for name, channels in (("probability", [r.value for r in Region]), ("class_probability", CLASS_NAMES),
                               ("variance", [r.value for r in Region])):
            source = {"probability": self.probabilities, "class_probability": self.class_probabilities,
                      "variance": self.variance}[name]
            for index, channel in enumerate(channels):
                out[f"{name}_{channel}"] = source.with_array(source.array[index])
        for name in ("entropy", "expected_entropy", "mutual_information"):
            out[name] = getattr(self, name)
        return out

    def mapped(self, transform: Callable[[Volume, int], Volume]) -> "UncertaintyResult":
        """The same result with every map passed through ``transform(volume, order)``.

        ``order`` is the interpolation order to use (0 for the label map, 1 otherwise), e.g.
        ``result.mapped(lambda v, order: to_reference_grid(v, prepared, order))`` for the input's grid.
        """
        changes = {name: transform(getattr(self, name), 1) for name in _MAPS}
        return replace(self, labels=transform(self.labels, 0), **changes)

    def flagged(self) -> list[Region]:
        """Regions to review first, most uncertain first."""
        return sorted((r for r, u in self.regions.items() if u.flagged), key=lambda r: -self.regions[r].score)

    def summary(self) -> dict:
        """JSON-ready record of the method, sample count, timing, region scores/flags and volume intervals."""
        return {
            "methods": [m.value for m in self.methods],
            "samples": self.samples,
            "samples_planned": self.planned,
            "budget_limited": self.budget_limited,
            "time_budget_s": self.time_budget_s,
            "seconds": round(self.seconds, 2),
            "device": self.device,
            "draws": [d.describe() for d in self.draws],
            "regions": {r.value: u.as_dict() for r, u in self.regions.items()},
            "flagged": [r.value for r in self.flagged()],
            "estimate_outside_interval": [k for k, v in self.volumes.items() if not v.contains_estimate],
            "volumes_ml": {k: {key: (round(v, 3) if isinstance(v, float) else [round(x, 3) for x in v])
                               for key, v in interval.as_dict().items()} for k, interval in self.volumes.items()},
            "settings": self.settings,
        }


# --- the entry point ------------------------------------------------------------------------------------

def _region_summaries(mean: np.ndarray, mutual_information: np.ndarray, labels: np.ndarray, voxel_ml: float,
                      thresholds: dict[Region, float]) -> dict[Region, RegionUncertainty]:
    low, high = DOUBT_RANGE
    out = {}
    for index, (region, mask) in enumerate(region_masks(labels).items()):
        doubt = (mean[index] >= low) & (mean[index] <= high)
        extent = mask | doubt
        if extent.any():
            score = float(doubt.sum() / extent.sum())
            entropy = float(binary_entropy(mean[index][extent]).mean())
            epistemic = float(mutual_information[extent].mean())
        else:
            score = entropy = epistemic = 0.0  # no voxel is even in doubt: the model is sure the region is absent
        out[region] = RegionUncertainty(region, score, entropy, epistemic, score >= thresholds[region],
                                        float(doubt.sum()) * voxel_ml, float(extent.sum()) * voxel_ml,
                                        thresholds[region])
    return out


def _interval(estimate: float, samples: list[float]) -> VolumeInterval:
    low, high = np.percentile(samples, [5, 95]) if samples else (estimate, estimate)
    return VolumeInterval(round(estimate, 3), round(float(low), 3), round(float(high), 3),
                          tuple(round(s, 3) for s in samples))


def estimate_uncertainty(predictor: Predictor, model_input: Volume,
                         methods: str | Iterable[Method | str] = DEFAULT_METHODS, samples: int | None = None,
                         time_budget_s: float | None = None, brain_mask: np.ndarray | None = None,
                         postprocessing: PostProcessing | None = None, batch_size: int | None = None,
                         seed: int = 0, flag_thresholds: Mapping[Region | str, float] | None = None,
                         progress: Progress | None = None,
                         on_sample: Callable[[Draw, object], None] | None = None) -> UncertaintyResult:
    """Sample the model's predictions and summarise their disagreement, on the model grid.

    Args:
        predictor: a ready predictor (its networks are the ensemble members; without ``ensemble`` only its
            first network is used).
        model_input: prepared (C, I, J, K) model input, as :func:`~TumorSegLib.pipeline.segment` builds it
            (missing sequences as zero channels).
        methods: :class:`Method` values or a comma-separated string (default: ensemble, flips).
        samples: samples wanted (default :data:`DEFAULT_SAMPLES`); without a random method at most the
            members × flips grid.
        time_budget_s: stop sampling when the next sample would not fit in this many seconds (timed on the
            samples already run); at least :data:`MIN_SAMPLES` are always run. ``None``: no limit.
        brain_mask: (I, J, K) bool; probabilities outside are set to 0, as the pipeline does.
        postprocessing: settings for the label maps behind the volumes (default: the model's).
        batch_size: samples per forward batch (default 1 on CPU, :data:`GPU_BATCH` on CUDA).
        seed: seed of the random methods.
        flag_thresholds: score at which each region is flagged (default :data:`FLAG_THRESHOLDS`); regions not
            named keep the default.
        progress: called with (fraction done, message).
        on_sample: called with (draw, logits (3, I, J, K) torch tensor) for each sample, e.g. to keep logits.

    Raises:
        ValueError: for an unknown method, a sample count below 1, input whose channels do not fit the model,
            or ``dropout`` with a network that has no active dropout layer (:func:`require_dropout`).
    """
    import torch

    from .pipeline import region_volumes_ml  # here, not at the top: the pipeline imports this module

    methods = parse_methods(methods)
    spec = predictor.spec
    if model_input.array.ndim != 4 or model_input.array.shape[0] != len(spec.sequences):
        raise ValueError(f"model input must have shape (C, I, J, K) with C = {len(spec.sequences)} "
                         f"({', '.join(spec.sequences)}), got {model_input.array.shape}; prepare it as "
                         "pipeline.segment does")
    if time_budget_s is not None and time_budget_s <= 0:
        raise ValueError(f"the time budget must be positive seconds, got {time_budget_s}")
    draws = plan_draws(methods, len(predictor.networks), samples or DEFAULT_SAMPLES, seed)
    for member in sorted({d.member for d in draws if d.dropout}):  # before any sampling time is spent
        require_dropout(predictor.networks[member], spec.id)
    sampler = Sampler(predictor, batch_size)
    if predictor.device == "cuda":  # one member per batch: group the plan by member, keeping its order inside
        draws = sorted(draws, key=lambda d: d.member)
    settings = postprocessing or PostProcessing.from_dict(spec.postprocessing)
    mask = None if brain_mask is None else torch.from_numpy(np.asarray(brain_mask, bool)).to(predictor.device)
    report = progress or (lambda fraction, message: None)

    moments = _Moments()
    sample_volumes: dict[str, list[float]] = {}
    done: list[Draw] = []
    expected = len(draws)  # samples that should fit: the plan, then what the budget allows
    budget_limited = False
    start = time.perf_counter()
    for batch in sampler.batches(draws):
        if time_budget_s is not None and len(done) >= MIN_SAMPLES:
            elapsed = time.perf_counter() - start
            if elapsed + elapsed / len(done) * len(batch) > time_budget_s:
                budget_limited = True
                break
        for draw, logits in sampler(model_input.array, batch):
            if on_sample:
                on_sample(draw, logits)
            probabilities = torch.sigmoid(logits)
            if mask is not None:
                probabilities = probabilities * mask
            moments.add(probabilities)
            labels = postprocess(model_input.with_array(probabilities.cpu().numpy()), settings)
            for key, value in region_volumes_ml(labels).items():
                sample_volumes.setdefault(key, []).append(value)
            done.append(draw)
        if time_budget_s is not None and len(done) == len(batch):  # the first pass, timed: how many fit
            per_sample = (time.perf_counter() - start) / len(done)
            expected = min(len(draws), max(MIN_SAMPLES, int(time_budget_s // per_sample)))
        report(min(len(done) / expected, 1.0), f"uncertainty sample {len(done)}/{expected}: {done[-1].describe()}")
    seconds = time.perf_counter() - start

    count = moments.count
    mean = moments.mean.cpu().numpy()
    classes = (moments.classes / count).cpu().numpy()
    entropy = normalised_entropy(classes)
    expected_entropy = (moments.entropy / count).cpu().numpy()
    mutual_information = np.clip(entropy - expected_entropy, 0.0, None)  # ≥ 0 by Jensen; clip float round-off
    variance = (moments.m2 / count).cpu().numpy()
    mean_volume = model_input.with_array(mean.astype(np.float32))
    labels = postprocess(mean_volume, settings)
    estimates = region_volumes_ml(labels)
    volumes = {key: _interval(estimates[key], sample_volumes.get(key, [])) for key in estimates}
    thresholds = {**FLAG_THRESHOLDS, **{Region(k): float(v) for k, v in (flag_thresholds or {}).items()}}
    regions = _region_summaries(mean, mutual_information, labels.array, model_input.voxel_volume_ml, thresholds)
    report(1.0, f"uncertainty: {count} samples in {seconds:.0f} s")
    return UncertaintyResult(
        probabilities=mean_volume, class_probabilities=model_input.with_array(classes.astype(np.float32)),
        entropy=model_input.with_array(entropy.astype(np.float32)),
        expected_entropy=model_input.with_array(expected_entropy.astype(np.float32)),
        mutual_information=model_input.with_array(mutual_information.astype(np.float32)),
        variance=model_input.with_array(variance.astype(np.float32)), labels=labels, volumes=volumes,
        regions=regions, methods=methods, draws=tuple(done), planned=len(draws), budget_limited=budget_limited,
        seconds=seconds, device=predictor.device, time_budget_s=time_budget_s,
        settings={"flag_thresholds": {r.value: t for r, t in thresholds.items()}, "doubt_range": list(DOUBT_RANGE),
                  "volume_interval": "5th-95th percentile of the samples",
                  "entropy": "over labels BG/NCR/ED/ET, divided by log 4",
                  "score": "fraction in doubt: voxels with mean region probability in doubt_range / "
                           "(predicted region ∪ those voxels)"})


def write_uncertainty(result: UncertaintyResult, directory: str | Path, prefix: str = "",
                      names: Iterable[str] | None = None) -> dict:
    """Write the maps of ``result`` as ``<directory>/<prefix><name>.nii.gz`` and ``<prefix>uncertainty.json``.

    Map ``result`` to the input grid first (:meth:`UncertaintyResult.mapped`) to get maps that overlay the
    input images.

    Args:
        names: the maps to write (keys of :meth:`UncertaintyResult.maps`, e.g. ``entropy``); default all.

    Returns:
        :meth:`UncertaintyResult.summary` plus ``"maps"``: {map name: file name}.

    Raises:
        ValueError: for a map name that does not exist, listing those that do.
    """
    maps = result.maps()
    chosen = list(maps) if names is None else list(names)
    unknown = [name for name in chosen if name not in maps]
    if unknown:
        raise ValueError(f"unknown uncertainty map(s) {unknown}; choose from {', '.join(maps)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in chosen:
        volume = maps[name]
        path = write_volume(volume.with_array(volume.array.astype(np.float32)), directory / f"{prefix}{name}.nii.gz")
        files[name] = path.name
    summary = {**result.summary(), "maps": files}
    (directory / f"{prefix}uncertainty.json").write_text(json.dumps(summary, indent=2))
    return summary
