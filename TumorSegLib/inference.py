"""Running a registered model: device choice, the one forward pass, ensembles and flips.

Input is a prepared (C, I, J, K) float32 volume on the model grid; output is per-region probabilities in
:class:`~TumorSegLib.labels.Region` order (WT, TC, ET) on the same grid, whatever order the model's output
channels have (the registry's ``channels`` says; :func:`forward` reorders). Ensemble members and test-time
flips are averaged in probability space.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from itertools import combinations
from typing import TYPE_CHECKING

import numpy as np

from .labels import Region
from .memory import keep_freed_memory
from .models import ModelSpec, load_networks
from .options import MAX_FLIPS, Device
from .volume import Volume

if TYPE_CHECKING:
    import torch

__all__ = ["resolve_device", "PRECISION_VARIABLE", "inference_precision", "precision_autocast", "flip_sets",
           "window_count", "forward", "forward_safely", "Predictor", "keep_predictors", "predictor_for",
           "predictors_loaded"]

Progress = Callable[[float, str], None]


def resolve_device(device: Device | str) -> str:
    """``auto`` → ``cuda`` when a GPU is usable, else ``cpu``.

    Raises:
        ValueError: for an unknown name; RuntimeError: for ``cuda`` without a usable GPU.
    """
    import torch

    try:
        device = Device(device)
    except ValueError as error:
        raise ValueError(f"unknown device '{device}': use auto, cpu or cuda") from error
    if device is Device.AUTO:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device is Device.CUDA and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but PyTorch sees no CUDA GPU; use --device cpu or auto")
    return device.value


PRECISION_VARIABLE = "TUMORSEG_PRECISION"


def inference_precision(device: str) -> str:
    """The number format the networks compute in on ``device`` (``cpu`` or ``cuda``): ``bfloat16`` where the
    hardware computes it natively (CUDA; CPUs with AVX512-BF16), else ``float32``.

    The networks were trained in bfloat16 autocast. On a 2-core CPU with AVX512-BF16 a pass takes about 0.7 of
    the float32 time (``Testing/Benchmarks/segment_benchmark.py``) and cross-validated Dice does not move; where
    bfloat16 is only emulated it would be slower, so such CPUs keep float32. On any thread count the network gives
    the same probabilities to float rounding; bfloat16 rounds its input coarsely, so that input must not differ
    either (hence N4 on one thread, :mod:`~TumorSegLib.clinical.bias`). ``TUMORSEG_PRECISION=float32`` keeps
    float32 everywhere.

    Raises:
        ValueError: for a value of ``TUMORSEG_PRECISION`` other than ``auto`` or ``float32``.
    """
    import torch

    asked = os.environ.get(PRECISION_VARIABLE, "").strip().lower() or "auto"
    if asked not in ("auto", "float32"):
        raise ValueError(f"{PRECISION_VARIABLE}={asked!r} is not understood: use auto (bfloat16 where the hardware "
                         f"computes it natively, the default) or float32")
    if asked == "float32":
        return "float32"
    if device == "cuda":
        return "bfloat16"
    # PyTorch's own CPU feature check (private; where a build lacks it, float32 is the safe answer).
    native = getattr(getattr(torch, "cpu", None), "_is_avx512_bf16_supported", None)
    return "bfloat16" if native is not None and native() else "float32"


def precision_autocast(device: str):
    """The autocast context the networks run in on ``device``: bfloat16 where :func:`inference_precision` says so,
    else none. Inference and training both use it, so a network trains in the format it is later run in."""
    import torch

    return torch.autocast(device, dtype=torch.bfloat16, enabled=inference_precision(device) == "bfloat16")


def flip_sets(count: int) -> list[tuple[int, ...]]:
    """The first ``count`` flip combinations of the three spatial axes, starting with no flip."""
    every = [c for r in range(4) for c in combinations((0, 1, 2), r)]
    if not 1 <= count <= MAX_FLIPS:
        raise ValueError(f"flip test-time augmentation takes 1 to {MAX_FLIPS} passes, got {count}")
    return every[:count]


def _dropout_layers(network) -> list:
    import torch

    return [m for m in network.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]


def window_count(shape: Sequence[int], patch_size: Sequence[int], overlap: float) -> int:
    """Sliding windows MONAI runs over an image of spatial ``shape`` (after padding it to one window)."""
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    size = [max(n, p) for n, p in zip(shape, patch_size)]
    scan = _get_scan_interval(size, patch_size, len(size), (overlap,) * len(size))
    return len(dense_patch_slices(size, patch_size, scan))


def forward(network, batch: torch.Tensor, spec: ModelSpec, overlap: float = 0.25, dropout: bool = False,
            seed: int | None = None, progress: Callable[[float], None] | None = None) -> torch.Tensor:
    """The one forward pass: sliding-window logits of ``network`` for a batch, temperature-scaled, in Region order.

    Gaussian-blended MONAI sliding window over ``spec.patch_size`` windows, in bfloat16 autocast where
    :func:`inference_precision` says so for the batch's device, logits divided by the registry's per-channel
    temperature and reordered from ``spec.channels`` to (WT, TC, ET).

    Args:
        network: a loaded MONAI network in eval mode.
        batch: (B, C, I, J, K) float32 tensor on the network's device.
        spec: the registry entry (patch size, channel order, temperature).
        overlap: sliding-window overlap.
        dropout: keep dropout layers active (Monte-Carlo dropout); they are switched off again afterwards.
        seed: seed of the dropout masks (the global random state is left as it was); ``None``: not seeded.
        progress: called with the fraction of windows done after each window.

    Returns:
        (B, 3, I, J, K) float32 logits on ``batch``'s device.
    """
    import torch
    from monai.inferers import sliding_window_inference

    device = batch.device
    layers = _dropout_layers(network)
    # Plain (not channels-last) tensors: channels-last is ~1.1x faster on the CPU but its results change with the
    # thread count, and a batch worker (1 thread) must give what `tumorseg segment` (all cores) gives.
    run = network
    if progress is not None:
        total, done = window_count(batch.shape[2:], spec.patch_size, overlap), [0]

        def run(windows):
            out = network(windows)
            done[0] += 1
            progress(min(done[0] / total, 1.0))
            return out

    autocast = precision_autocast(device.type)
    try:
        for layer in layers:
            layer.train(dropout)
        # A fixed seed makes Monte-Carlo dropout reproducible without touching the global random state.
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
                torch.inference_mode(), autocast:
            if seed is not None:
                torch.manual_seed(seed)
            logits = sliding_window_inference(batch, spec.patch_size, len(batch), run, overlap=overlap,
                                              mode="gaussian")
    finally:
        for layer in layers:
            layer.train(False)
    temperature = torch.tensor(spec.temperature, dtype=torch.float32, device=device).view(1, -1, 1, 1, 1)
    logits = logits.float() / temperature
    return logits[:, [spec.channels.index(region.value) for region in Region]]


def forward_safely(predictor: Predictor, network, batch: torch.Tensor, dropout: bool = False, seed: int | None = None,
                   progress: Callable[[float], None] | None = None) -> torch.Tensor:
    """:func:`forward` that survives CUDA running out of memory: the batch is split into single samples, then
    the network moves to the CPU; each fallback is noted in ``predictor.fallbacks`` (and so in the summary).
    The logits come back on ``batch``'s device."""
    import torch

    try:
        return forward(network, batch, predictor.spec, predictor.overlap, dropout, seed, progress)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
    if len(batch) > 1:
        predictor.note("CUDA ran out of memory: samples were then run one at a time")
        return torch.cat([forward_safely(predictor, network, batch[i:i + 1], dropout, seed, progress)
                          for i in range(len(batch))])
    on_cpu = inference_precision("cpu")  # a CPU without native bfloat16 computes in float32
    predictor.note("CUDA ran out of memory: inference moved to the CPU (slower, same result"
                   + ("" if on_cpu == predictor.precision else f" to rounding: in {on_cpu} there") + ")")
    network.to("cpu")
    logits = forward(network, batch.to("cpu"), predictor.spec, predictor.overlap, dropout, seed, progress)
    return logits.to(batch.device)


class Predictor:
    """Per-region probabilities, ``sigmoid(logit / temperature)``, from a registered model.

    Args:
        spec: registry entry.
        device: ``auto``, ``cpu`` or ``cuda`` (computing in :func:`inference_precision`'s format).
        members: indices of the ensemble members to use (default: all).
        overlap: sliding-window overlap.
        networks: already-loaded networks (tests and callers that reuse them); default: load from ``spec``.
    """

    def __init__(self, spec: ModelSpec, device: Device | str = Device.AUTO, members: Sequence[int] | None = None,
                 overlap: float = 0.25, networks: list | None = None):
        self.spec = spec
        self.device = resolve_device(device)
        self.precision = inference_precision(self.device)
        self.overlap = overlap
        # Halves CPU inference time (memory.py). The Slicer module and the web app never build a Predictor in
        # their own process: they run `tumorseg segment` in a child, so only worker processes keep memory.
        keep_freed_memory()
        self.networks = networks if networks is not None else load_networks(spec, self.device, members=members)
        self.fallbacks: list[str] = []  # what had to change while running (e.g. CUDA out of memory)

    def note(self, fallback: str) -> None:
        if fallback not in self.fallbacks:
            self.fallbacks.append(fallback)

    def logits_samples(self, image: np.ndarray, flips: Sequence[tuple[int, ...]] = ((),),
                       progress: Progress | None = None, dropout: bool = False):
        """Yield temperature-scaled logits (torch, (3, I, J, K), Region order) for each member × flip pass.

        ``dropout`` keeps dropout layers active (Monte-Carlo dropout).
        """
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None].to(self.device)
        passes = len(self.networks) * len(flips)
        done = 0
        for network in self.networks:
            for axes in flips:
                dims = [a + 2 for a in axes]
                windows = None if progress is None else (
                    lambda fraction, done=done: progress((done + fraction) / passes, f"inference pass {done + 1}/{passes}"))
                logits = forward_safely(self, network, torch.flip(tensor, dims) if dims else tensor, dropout,
                                        progress=windows)
                if dims:
                    logits = torch.flip(logits, dims)
                done += 1
                yield logits[0]

    def __call__(self, image: Volume, flips: Sequence[tuple[int, ...]] = ((),),
                 progress: Progress | None = None) -> Volume:
        """Mean sigmoid probability per region over members and flips: (3, I, J, K) float32 volume."""
        import torch

        total = None
        count = 0
        for logits in self.logits_samples(image.array, flips, progress):
            probabilities = torch.sigmoid(logits)
            total = probabilities if total is None else total + probabilities
            count += 1
        return image.with_array((total / count).cpu().numpy().astype(np.float32))


# Set by keep_predictors(): one loaded Predictor per (model, device, members) for the rest of the process.
_KEPT: dict[tuple, Predictor] | None = None
_LOADED = 0


def keep_predictors() -> None:
    """Keep loaded networks for the rest of this process: a batch worker segments many cases with one model, so
    it loads the weights once, not per case."""
    global _KEPT
    if _KEPT is None:
        _KEPT = {}


def predictor_for(spec: ModelSpec, device: Device | str = Device.AUTO) -> Predictor:
    """A Predictor for ``spec`` on ``device``: a new one, or the kept one after :func:`keep_predictors`."""
    global _LOADED
    key = (spec.id, tuple(weight.sha256 for weight in spec.weights), resolve_device(device))
    if _KEPT is not None and key in _KEPT:
        predictor = _KEPT[key]
        predictor.fallbacks = []  # what had to change belongs to one case
        return predictor
    predictor = Predictor(spec, device)
    _LOADED += 1
    if _KEPT is not None:
        _KEPT[key] = predictor
    return predictor


def predictors_loaded() -> int:
    """How many times this process has loaded a model's weights through :func:`predictor_for`."""
    return _LOADED
