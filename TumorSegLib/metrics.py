"""Segmentation metrics: Dice, HD95, sensitivity, specificity, and BraTS-2023 lesion-wise Dice/HD95.

Conventions follow the BraTS evaluation: a region empty in both prediction and truth scores Dice 1 and
HD95 0; empty in only one scores Dice 0 and HD95 :data:`MAX_HD95` (the image diagonal BraTS uses).
Distances are in mm, using the voxel spacing.

HD95 (:func:`hd95`) is the official BraTS evaluation's (``brats-evaluation``, panoptica underneath): the 95th
percentile of the distances from each surface voxel of either mask to the other mask's surface, both
directions pooled, surfaces being the voxels an erosion with the 6-neighbourhood removes. MONAI's
``compute_hausdorff_distance`` takes the larger of the two directed 95th percentiles instead, which is never
smaller: it is reported beside it as ``hd95_max`` (:func:`hd95_max`), named, so figures are not confused.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from .labels import Region, region_masks

__all__ = ["MAX_HD95", "dice", "surface_distances", "hd95", "hd95_max", "sensitivity", "specificity", "lesion_wise",
           "evaluate_labels"]

MAX_HD95 = 373.13


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice overlap of two boolean masks."""
    prediction, truth = prediction.astype(bool), truth.astype(bool)
    total = int(prediction.sum()) + int(truth.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(prediction, truth).sum()) / total


def _crop(prediction: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cropped to their joint bounding box plus one voxel: same distances, far less work."""
    where = np.argwhere(prediction | truth)
    box = tuple(slice(max(0, lo - 1), hi + 2) for lo, hi in zip(where.min(0), where.max(0)))
    return prediction[box], truth[box]


def surface_distances(source: np.ndarray, target: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Distance (mm) from each surface voxel of ``source`` to the nearest surface voxel of ``target``.

    A surface voxel is one that an erosion with the 6-neighbourhood removes (both masks non-empty, one grid).
    """
    structure = ndimage.generate_binary_structure(source.ndim, 1)
    source_border = source ^ ndimage.binary_erosion(source, structure)
    target_border = target ^ ndimage.binary_erosion(target, structure)
    return ndimage.distance_transform_edt(~target_border, sampling=spacing)[source_border]


def _empty_case(prediction: np.ndarray, truth: np.ndarray) -> float | None:
    if not prediction.any() and not truth.any():
        return 0.0
    if not prediction.any() or not truth.any():
        return MAX_HD95
    return None


def hd95(prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> float:
    """HD95 (mm) as the official BraTS evaluation computes it: 95th percentile of both directions' surface
    distances pooled."""
    prediction, truth = prediction.astype(bool), truth.astype(bool)
    special = _empty_case(prediction, truth)
    if special is not None:
        return special
    prediction, truth = _crop(prediction, truth)
    pooled = np.concatenate([surface_distances(prediction, truth, spacing), surface_distances(truth, prediction, spacing)])
    return float(np.percentile(pooled, 95))


def hd95_max(prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> float:
    """HD95 (mm) as MONAI computes it: the larger of the two directed 95th percentiles (never below :func:`hd95`)."""
    import torch
    from monai.metrics import compute_hausdorff_distance

    prediction, truth = prediction.astype(bool), truth.astype(bool)
    special = _empty_case(prediction, truth)
    if special is not None:
        return special
    prediction, truth = _crop(prediction, truth)
    value = compute_hausdorff_distance(torch.from_numpy(prediction)[None, None], torch.from_numpy(truth)[None, None],
                                       include_background=True, percentile=95, spacing=list(spacing))
    return float(value.item())


def sensitivity(prediction: np.ndarray, truth: np.ndarray) -> float:
    """True positive rate; 1 when the truth is empty."""
    positives = int(truth.astype(bool).sum())
    return 1.0 if positives == 0 else int(np.logical_and(prediction, truth).sum()) / positives


def specificity(prediction: np.ndarray, truth: np.ndarray, within: np.ndarray | None = None) -> float:
    """True negative rate, over ``within`` (e.g. the brain) when given."""
    negatives = ~truth.astype(bool)
    if within is not None:
        negatives &= within.astype(bool)
    count = int(negatives.sum())
    return 1.0 if count == 0 else int(np.logical_and(~prediction.astype(bool), negatives).sum()) / count


def lesion_wise(prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0),
                min_lesion_voxels: int = 50, dilation: int = 3) -> dict[str, float]:
    """BraTS-2023 lesion-wise Dice and HD95.

    Truth lesions (26-connected components of at least ``min_lesion_voxels``) are each matched with the
    predicted components touching the lesion dilated by ``dilation`` voxels. Each truth lesion scores the
    Dice/HD95 against its matched components; predicted components matching no lesion are false
    positives scoring Dice 0 / HD95 :data:`MAX_HD95`. Scores are averaged over lesions + false positives.
    """
    structure = np.ones((3, 3, 3), bool)
    truth_components, n_truth = ndimage.label(truth.astype(bool), structure)
    predicted_components, n_predicted = ndimage.label(prediction.astype(bool), structure)
    sizes = ndimage.sum_labels(np.ones_like(truth_components), truth_components, range(1, n_truth + 1))
    dices, distances, matched = [], [], set()
    for index in range(1, n_truth + 1):
        lesion = truth_components == index
        if sizes[index - 1] < min_lesion_voxels:
            matched |= set(np.unique(predicted_components[lesion]).tolist())  # tiny lesion: ignore, not FP
            continue
        grown = ndimage.binary_dilation(lesion, structure, iterations=dilation)
        hits = set(np.unique(predicted_components[grown]).tolist()) - {0}
        matched |= hits
        predicted = np.isin(predicted_components, list(hits)) if hits else np.zeros_like(lesion)
        dices.append(dice(predicted, lesion))
        distances.append(hd95(predicted, lesion, spacing))
    false_positives = len(set(range(1, n_predicted + 1)) - matched)
    count = len(dices) + false_positives
    if count == 0:
        return {"lesion_dice": 1.0, "lesion_hd95": 0.0, "lesions": 0, "false_positives": 0}
    return {
        "lesion_dice": (sum(dices)) / count,
        "lesion_hd95": (sum(distances) + MAX_HD95 * false_positives) / count,
        "lesions": len(dices),
        "false_positives": false_positives,
    }


def evaluate_labels(prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0),
                    lesion_metrics: bool = True) -> dict[str, dict[str, float]]:
    """All metrics per region (WT, TC, ET) for two internal label maps on the same grid."""
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction shape {prediction.shape} differs from ground truth shape {truth.shape}: "
                         "both must be on the same grid")
    predicted_regions, true_regions = region_masks(prediction), region_masks(truth)
    results: dict[str, dict[str, float]] = {}
    for region in Region:
        p, t = predicted_regions[region], true_regions[region]
        scores = {"dice": dice(p, t), "hd95": hd95(p, t, spacing), "hd95_max": hd95_max(p, t, spacing),
                  "sensitivity": sensitivity(p, t),
                  "specificity": specificity(p, t),
                  "volume_pred_ml": float(p.sum()) * float(np.prod(spacing)) / 1000.0,
                  "volume_true_ml": float(t.sum()) * float(np.prod(spacing)) / 1000.0}
        if lesion_metrics:
            scores.update(lesion_wise(p, t, spacing))
        results[region.value] = scores
    return results
