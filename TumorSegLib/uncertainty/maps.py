"""Probabilities to uncertainty: label-class probabilities, entropies, and running moments over samples.

The class probabilities of a sample are ``1 − p_WT, p_TC − p_ET, p_WT − p_TC, p_ET`` with ET ⊂ TC ⊂ WT
enforced. Predictive entropy of the mean class distribution is the total uncertainty; the mean per-sample
entropy is its aleatoric part and their difference, the mutual information, the epistemic part; all are
divided by log 4 so they lie in 0–1.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["CLASS_NAMES", "class_probabilities", "normalised_entropy", "binary_entropy", "Moments"]

CLASS_NAMES = ("BG", "NCR", "ED", "ET")
_LOG4 = math.log(4.0)


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


class Moments:
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
