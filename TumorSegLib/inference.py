"""Running a registered model: device choice, MONAI sliding-window inference, ensembles and flips.

Input is a prepared (C, I, J, K) float32 volume on the model grid; output is per-region probabilities
(WT, TC, ET) on the same grid. Ensemble members and test-time flips are averaged in probability space.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum
from itertools import combinations

import numpy as np

from .models import ModelSpec, load_networks
from .volume import Volume

__all__ = ["Device", "resolve_device", "flip_sets", "Predictor"]

Progress = Callable[[float, str], None]


class Device(str, Enum):
    """Where inference runs."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


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


def flip_sets(count: int) -> list[tuple[int, ...]]:
    """The first ``count`` flip combinations of the three spatial axes, starting with no flip."""
    every = [c for r in range(4) for c in combinations((0, 1, 2), r)]
    if not 1 <= count <= len(every):
        raise ValueError(f"flip test-time augmentation takes 1 to {len(every)} passes, got {count}")
    return every[:count]


class Predictor:
    """Per-region probabilities, ``sigmoid(logit / temperature)``, from a registered model.

    Args:
        spec: registry entry.
        device: ``auto``, ``cpu`` or ``cuda`` (AMP in bfloat16 on CUDA).
        members: indices of the ensemble members to use (default: all).
        overlap: sliding-window overlap.
        networks: already-loaded networks (tests and callers that reuse them); default: load from ``spec``.
    """

    def __init__(self, spec: ModelSpec, device: Device | str = Device.AUTO, members: Sequence[int] | None = None,
                 overlap: float = 0.25, networks: list | None = None):
        self.spec = spec
        self.device = resolve_device(device)
        self.overlap = overlap
        self.networks = networks if networks is not None else load_networks(spec, self.device, members=members)
        # Per-channel logit divisor from the registry (validated positive by ModelSpec; 1 = none). Applied
        # here and in uncertainty.Sampler, so a fitted temperature reaches every probability the user sees.
        self.temperature = np.asarray(spec.temperature or (1.0,) * len(spec.channels), dtype=np.float32)

    def logits_samples(self, image: np.ndarray, flips: Sequence[tuple[int, ...]] = ((),),
                       progress: Progress | None = None, dropout: bool = False):
        """Yield temperature-scaled logits (torch, (3, I, J, K)) for each member × flip pass.

        ``dropout`` keeps dropout layers active (Monte-Carlo dropout).
        """
        import torch
        from monai.inferers import sliding_window_inference

        tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None].to(self.device)
        scale = torch.from_numpy(self.temperature).to(self.device).view(1, -1, 1, 1, 1)
        passes = len(self.networks) * len(flips)
        done = 0
        for network in self.networks:
            for module in network.modules():
                if isinstance(module, torch.nn.modules.dropout._DropoutNd):
                    module.train(dropout)
            for axes in flips:
                dims = [a + 2 for a in axes]
                source = torch.flip(tensor, dims) if dims else tensor
                autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if self.device == "cuda"
                            else torch.autocast("cpu", enabled=False))
                with torch.inference_mode(), autocast:
                    logits = sliding_window_inference(source, self.spec.patch_size, 1, network,
                                                      overlap=self.overlap, mode="gaussian")
                logits = logits.float() / scale
                if dims:
                    logits = torch.flip(logits, dims)
                done += 1
                if progress:
                    progress(done / passes, f"inference pass {done}/{passes}")
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
