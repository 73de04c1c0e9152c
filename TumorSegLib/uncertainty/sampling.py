"""Running the planned samples and summarising their disagreement, on the model grid.

Samples of one member run as one batch on CUDA. With a time budget, the first pass is timed to set how many
samples should fit, and sampling stops when the next pass would not fit at the mean pace so far (at least
:data:`MIN_SAMPLES` always run; on CUDA, where the plan is grouped by member, a cut drops the last members).

Why not MONAI's ``TestTimeAugmentation`` class: it runs a dictionary transform pipeline through a
DataLoader for one network and keeps every output; it cannot mix ensemble members or Monte-Carlo dropout,
does not apply the registry's temperature, and would hold all samples in memory. Here MONAI's invertible
transforms are used directly (:mod:`.methods`) and the samples are reduced on the fly (memory independent
of the count).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..inference import Predictor, forward_safely
from ..labels import Region, region_volumes_ml
from ..postprocessing import PostProcessing, postprocess
from ..volume import Volume
from .intervals import DOUBT_RANGE, FLAG_THRESHOLDS, IntervalCalibration, region_summaries, volume_interval
from .maps import Moments, normalised_entropy
from .methods import DEFAULT_METHODS, Draw, Jitter, Method, augment, parse_methods, plan_draws, require_dropout
from .result import UncertaintyResult

__all__ = ["DEFAULT_SAMPLES", "MIN_SAMPLES", "GPU_BATCH", "Sampler", "estimate_uncertainty"]

Progress = Callable[[float, str], None]
DEFAULT_SAMPLES = 12  # the default model: each of the 6 members with 2 different flips
MIN_SAMPLES = 2  # spread needs two samples: a time budget never cuts below this
GPU_BATCH = 4  # samples per CUDA batch (SegResNet-8 at 128³ needs well under 2 GB per sample in bf16)


class Sampler:
    """Runs planned draws through a :class:`~TumorSegLib.inference.Predictor`'s networks.

    Each sample is one :func:`~TumorSegLib.inference.forward` pass after the draw's augmentation of the input,
    with the augmentation undone on the output.

    Args:
        predictor: supplies networks, device, overlap and the registry entry.
        batch_size: samples per forward batch (default 1 on CPU, :data:`GPU_BATCH` on CUDA).
        jitter: ranges of the random augmentations.
    """

    def __init__(self, predictor: Predictor, batch_size: int | None = None, jitter: Jitter = Jitter()):
        self.predictor = predictor
        self.batch_size = batch_size or (GPU_BATCH if predictor.device == "cuda" else 1)
        self.jitter = jitter

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

    def __call__(self, image: np.ndarray, draws: Sequence[Draw], progress: Callable[[float], None] | None = None
                 ) -> Iterator[tuple[Draw, object]]:
        """Yield (draw, logits) with logits a torch tensor (3, I, J, K) on the predictor's device.

        Args:
            image: model input (C, I, J, K) float32.
            draws: from :func:`~TumorSegLib.uncertainty.methods.plan_draws`; run in :meth:`batches` order.
            progress: called with the fraction of the current batch's windows done, after each window.
        """
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).to(self.predictor.device)
        for batch in self.batches(draws):
            yield from zip(batch, self._run_batch(tensor, batch, progress))

    def _run_batch(self, tensor, batch: list[Draw], progress: Callable[[float], None] | None = None) -> list:
        import torch

        predictor = self.predictor
        network = predictor.networks[batch[0].member]
        if batch[0].dropout:
            require_dropout(network, predictor.spec.id)
        inputs, undo = zip(*(augment(tensor, draw, self.jitter) for draw in batch))
        logits = forward_safely(predictor, network, torch.stack(inputs), batch[0].dropout, seed=batch[0].seed or 0,
                                progress=progress)
        return [restore(sample) for sample, restore in zip(logits, undo)]


@dataclass
class _Tally:
    """What sampling accumulates: moments of the probabilities, each sample's volumes, the draws done."""

    moments: Moments = field(default_factory=Moments)
    volumes: dict[str, list[float]] = field(default_factory=dict)
    done: list[Draw] = field(default_factory=list)
    budget_limited: bool = False
    seconds: float = 0.0


def _sample(predictor: Predictor, model_input: Volume, draws: list[Draw], settings: PostProcessing,
            mask: np.ndarray | None, time_budget_s: float | None, batch_size: int | None, report: Progress,
            on_sample: Callable[[Draw, object], None] | None) -> _Tally:
    """Run the draws (until the time budget says stop), keeping running sums and each sample's volumes."""
    import torch

    sampler = Sampler(predictor, batch_size)
    mask_tensor = None if mask is None else torch.from_numpy(np.asarray(mask, bool)).to(predictor.device)
    tally = _Tally()
    expected = len(draws)  # samples that should fit: the plan, then what the budget allows
    start = time.perf_counter()
    for batch in sampler.batches(draws):
        if time_budget_s is not None and len(tally.done) >= MIN_SAMPLES:
            elapsed = time.perf_counter() - start
            if elapsed + elapsed / len(tally.done) * len(batch) > time_budget_s:
                tally.budget_limited = True
                break
        windows = lambda fraction, batch=batch, expected=expected: report(  # noqa: E731
            min((len(tally.done) + fraction * len(batch)) / expected, 1.0),
            f"uncertainty sample {len(tally.done) + 1}/{expected}: {batch[0].describe()}")
        for draw, logits in sampler(model_input.array, batch, windows):
            if on_sample:
                on_sample(draw, logits)
            probabilities = torch.sigmoid(logits)
            if mask_tensor is not None:
                probabilities = probabilities * mask_tensor
            tally.moments.add(probabilities)
            labels = postprocess(model_input.with_array(probabilities.cpu().numpy()), settings)
            for key, value in region_volumes_ml(labels).items():
                tally.volumes.setdefault(key, []).append(value)
            tally.done.append(draw)
        if time_budget_s is not None and len(tally.done) == len(batch):  # the first pass, timed: how many fit
            per_sample = (time.perf_counter() - start) / len(tally.done)
            expected = min(len(draws), max(MIN_SAMPLES, int(time_budget_s // per_sample)))
        report(min(len(tally.done) / expected, 1.0),
               f"uncertainty sample {len(tally.done)}/{expected}: {tally.done[-1].describe()}")
    tally.seconds = time.perf_counter() - start
    return tally


def _check(predictor: Predictor, model_input: Volume, time_budget_s: float | None) -> None:
    spec = predictor.spec
    if model_input.array.ndim != 4 or model_input.array.shape[0] != len(spec.sequences):
        raise ValueError(f"model input must have shape (C, I, J, K) with C = {len(spec.sequences)} "
                         f"({', '.join(spec.sequences)}), got {model_input.array.shape}; prepare it as "
                         "pipeline.segment does")
    if time_budget_s is not None and time_budget_s <= 0:
        raise ValueError(f"the time budget must be positive seconds, got {time_budget_s}")


def estimate_uncertainty(predictor: Predictor, model_input: Volume,
                         methods: str | Iterable[Method | str] = DEFAULT_METHODS, samples: int | None = None,
                         time_budget_s: float | None = None, brain_mask: np.ndarray | None = None,
                         postprocessing: PostProcessing | None = None, batch_size: int | None = None,
                         seed: int = 0, flag_thresholds: Mapping[Region | str, float] | None = None,
                         progress: Progress | None = None,
                         on_sample: Callable[[Draw, object], None] | None = None) -> UncertaintyResult:
    """Sample the model's predictions and summarise their disagreement, on the model grid.

    Args:
        predictor: its networks are the ensemble members (without ``ensemble`` only the first is used).
        model_input: prepared (C, I, J, K) model input, as :func:`~TumorSegLib.pipeline.segment` builds it.
        methods: :class:`~.methods.Method` values or a comma-separated string (default: ensemble, flips).
        samples: samples wanted (default :data:`DEFAULT_SAMPLES`); without a random method at most the
            members × flips grid.
        time_budget_s: stop sampling when the next sample would not fit in this many seconds (timed on the
            samples already run); at least :data:`MIN_SAMPLES` are always run. ``None``: no limit.
        brain_mask: (I, J, K) bool; probabilities outside are set to 0, as the pipeline does.
        postprocessing: settings for the label maps behind the volumes (default: the model's).
        batch_size: samples per forward batch (default 1 on CPU, :data:`GPU_BATCH` on CUDA).
        seed: seed of the random methods.
        flag_thresholds: score at which each region is flagged (default
            :data:`~.intervals.FLAG_THRESHOLDS`); regions not named keep the default.
        progress: called with (fraction done, message).
        on_sample: called with (draw, logits (3, I, J, K) torch tensor) for each sample, e.g. to keep logits.

    Raises:
        ValueError: for an unknown method, a sample count below 1, input whose channels do not fit the model,
            or ``dropout`` with a network that has no active dropout layer.
    """
    methods = parse_methods(methods)
    _check(predictor, model_input, time_budget_s)
    draws = plan_draws(methods, len(predictor.networks), samples or DEFAULT_SAMPLES, seed)
    for member in sorted({d.member for d in draws if d.dropout}):  # before any sampling time is spent
        require_dropout(predictor.networks[member], predictor.spec.id)
    if predictor.device == "cuda":  # one member per batch: group the plan by member, keeping its order inside
        draws = sorted(draws, key=lambda d: d.member)
    settings = postprocessing or PostProcessing.from_dict(predictor.spec.postprocessing)
    report = progress or (lambda fraction, message: None)
    tally = _sample(predictor, model_input, draws, settings, brain_mask, time_budget_s, batch_size, report,
                    on_sample)
    thresholds = {**FLAG_THRESHOLDS, **{Region(k): float(v) for k, v in (flag_thresholds or {}).items()}}
    result = _summarise(tally, model_input, settings, thresholds, methods, planned=len(draws),
                        device=predictor.device, time_budget_s=time_budget_s,
                        volume_intervals=predictor.spec.volume_intervals)
    report(1.0, f"uncertainty: {tally.moments.count} samples in {tally.seconds:.0f} s")
    return result


def _summarise(tally: _Tally, model_input: Volume, settings: PostProcessing, thresholds: dict[Region, float],
               methods: tuple[Method, ...], planned: int, device: str, time_budget_s: float | None,
               volume_intervals: dict | None = None) -> UncertaintyResult:
    """Maps, labels, volume intervals and region scores from what sampling accumulated."""
    moments = tally.moments
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
    calibration = IntervalCalibration.from_dict(volume_intervals)
    as_map = lambda array: model_input.with_array(array.astype(np.float32))  # noqa: E731
    return UncertaintyResult(
        probabilities=mean_volume, class_probabilities=as_map(classes), entropy=as_map(entropy),
        expected_entropy=as_map(expected_entropy), mutual_information=as_map(mutual_information),
        variance=as_map(variance), labels=labels,
        volumes={key: volume_interval(key, estimates[key], tally.volumes.get(key, []), calibration)
                 for key in estimates},
        regions=region_summaries(mean, mutual_information, labels.array, model_input.voxel_volume_ml, thresholds),
        methods=methods, draws=tuple(tally.done), planned=planned, budget_limited=tally.budget_limited,
        seconds=tally.seconds, device=device, time_budget_s=time_budget_s,
        settings={"flag_thresholds": {r.value: t for r, t in thresholds.items()}, "doubt_range": list(DOUBT_RANGE),
                  "volume_interval": "p5/p95: 5th-95th percentile of the samples; interval: calibrated on held-out "
                                     "cross-validation residuals to contain the true volume in interval_coverage "
                                     "of cases (see the model card)",
                  "entropy": "over labels BG/NCR/ED/ET, divided by log 4",
                  "score": "fraction in doubt: voxels with mean region probability in doubt_range / "
                           "(predicted region ∪ those voxels)"})
