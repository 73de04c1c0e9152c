"""Weight averaging of a fine-tuned network with the weights it started from.

Fine-tuning a shipped member for a few hundred steps on two CPU cores moves it towards what those steps favour
(here: less enhancing tumour, after training with enhancement removed). Averaging the tuned weights with the
starting ones, which share one basin of the loss, keeps most of the gain and gives back part of what the short run
lost (Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022; "model soups", ICML 2022).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where networks are used, not when the package is
    import torch


def blend_weights(tuned: Mapping[str, torch.Tensor], start: Mapping[str, torch.Tensor],
                  weight: float) -> dict[str, torch.Tensor]:
    """``weight`` × tuned + (1 − ``weight``) × start, tensor by tensor, computed in float32.

    Both must be state dicts of one architecture (same keys and shapes); integer tensors (counters) are taken
    from ``tuned``. ``weight`` in (0, 1]: 1 gives the tuned network back.
    """
    if not 0.0 < weight <= 1.0:
        raise ValueError(f"blend weight {weight}: give a share of the tuned network in (0, 1]")
    if set(tuned) != set(start):
        differing = sorted(set(tuned) ^ set(start))
        raise ValueError(f"the two networks differ in their tensors ({', '.join(differing[:3])} …): "
                         "blend a network only with the weights it was trained from")
    blended = {}
    for key, value in tuned.items():
        other = start[key]
        if value.shape != other.shape:
            raise ValueError(f"{key}: shape {tuple(value.shape)} against {tuple(other.shape)}: not one architecture")
        if value.is_floating_point():
            blended[key] = weight * value.float() + (1.0 - weight) * other.float()
        else:
            blended[key] = value.clone()
    return blended
