"""Scoring label maps (and their uncertainty maps) against expert ground truth: ``tumorseg evaluate``.

One case gives the metrics of :func:`~TumorSegLib.metrics.evaluate_labels` per region; several cases add
their mean and, with uncertainty folders, how each region's uncertainty score follows its error.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .calibration import (
    error_detection_auroc,
    error_roi,
    region_reliability,
    reliability_diagram,
    uncertainty_error_correlation,
)
from .labels import to_internal_labels
from .metrics import evaluate_labels
from .volume import read_volume, same_grid

__all__ = ["EvaluationError", "evaluate_case", "evaluate_cases", "reliability_png"]


class EvaluationError(ValueError):
    """Files that cannot be scored together; the message says which and why."""


def evaluate_case(pred: Path, gt: Path, lesion_metrics: bool, uncertainty: Path | None) -> tuple[dict, dict]:
    """Metrics of one prediction against its ground truth, and its neighbourhood reliability curves (if scored)."""
    prediction, truth = read_volume(pred), read_volume(gt)
    if not same_grid(prediction, truth, tolerance_mm=0.01):
        raise EvaluationError(f"--pred {pred} (shape {prediction.shape}, spacing {prediction.spacing}) and --gt "
                           f"{gt} (shape {truth.shape}, spacing {truth.spacing}) are not on the same grid")
    try:
        predicted_labels = to_internal_labels(prediction.array)
        true_labels = to_internal_labels(truth.array)
    except ValueError as error:
        raise EvaluationError(f"not a tumour label map: {error}") from error
    metrics = evaluate_labels(predicted_labels, true_labels, truth.spacing, lesion_metrics=lesion_metrics)
    curves: dict = {}
    if uncertainty is not None:
        metrics["uncertainty"], curves = _evaluate_uncertainty(uncertainty, predicted_labels, true_labels, truth)
    return metrics, curves


def evaluate_cases(predictions: list[Path], truths: list[Path], folders: list[Path], lesion_metrics: bool,
                    reliability_path: str | None) -> dict:
    """Per-case metrics, their mean per region, and (with uncertainty folders) whether each region's
    uncertainty score rises with its error (1 - Dice) across the cases."""
    scores = _uncertainty_scores(folders)  # read first: a missing file should not wait for every case's metrics
    cases, merged = [], {}
    for index, (pred, gt) in enumerate(zip(predictions, truths)):
        metrics, curves = evaluate_case(pred, gt, lesion_metrics, folders[index] if folders else None)
        cases.append({"pred": str(pred), "gt": str(gt), **metrics})
        for region, curve in curves.items():  # reliability sums merge exactly across cases
            merged[region] = merged[region] + curve if region in merged else curve
    regions = [key for key in cases[0] if key not in ("pred", "gt", "uncertainty")]
    mean = {region: {name: float(np.mean([case[region][name] for case in cases])) for name in cases[0][region]}
            for region in regions}
    result: dict = {"cases": cases, "mean": mean}
    if folders:
        result["uncertainty_vs_error"] = _uncertainty_vs_error(scores, cases, regions)
        if reliability_path:
            result["reliability_diagram"] = str(reliability_png(merged, reliability_path, len(cases)))
    return result


def _uncertainty_scores(folders: list[Path]) -> list[dict[str, float]]:
    """Each folder's per-region uncertainty score ({region: score}) from its uncertainty.json."""
    scores = []
    for folder in folders:
        path = folder / "uncertainty.json"
        if not path.exists():
            raise EvaluationError(f"{path} not found: --uncertainty takes the folders written by "
                               "'tumorseg segment --uncertainty DIR'")
        try:
            scores.append({region: float(record["score"])
                           for region, record in json.loads(path.read_text())["regions"].items()})
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise EvaluationError(f"{path} has no per-region uncertainty scores ('regions' -> region -> 'score'): "
                               f"{error!r}") from error
    return scores


def _uncertainty_vs_error(scores: list[dict[str, float]], cases: list[dict], regions: list[str]) -> dict:
    """Per region: correlation of the cases' uncertainty score with 1 - Dice."""
    out: dict = {}
    for region in regions:
        if len(cases) < 3:  # a correlation of two points is always ±1: report why there is none
            out[region] = {"cases": len(cases), "note": f"needs at least 3 cases, got {len(cases)}"}
            continue
        correlation = uncertainty_error_correlation([s[region] for s in scores],
                                                    [case[region]["dice"] for case in cases])
        # NaN (a constant score or Dice over the cases) is not JSON: written as null.
        out[region] = {key: (None if isinstance(value, float) and math.isnan(value) else value)
                       for key, value in correlation.items()}
        if out[region]["spearman"] is None:
            out[region]["note"] = "the score or the Dice is the same in every case: no correlation"
    return out


def reliability_png(curves: dict, path: str, cases: int = 1) -> Path:
    title = "Reliability, tumour neighbourhood" + (f" ({cases} cases)" if cases > 1 else "")
    return reliability_diagram(curves, path, title)


def _evaluate_uncertainty(folder: Path, predicted, truth_labels, truth) -> tuple[dict, dict]:
    """ECE per region and error-detection AUROC of the entropy (and of the mutual information where that
    map was written), over the whole image and the tumour neighbourhood (predicted ∪ true tumour + 5 mm),
    from the maps ``tumorseg segment --uncertainty`` wrote. Returns (scores, neighbourhood curves by region)."""
    maps = {}
    required = ("probability_WT", "probability_TC", "probability_ET", "entropy")
    for name in (*required, "mutual_information"):
        path = folder / f"{name}.nii.gz"
        if not path.exists():
            if name not in required:  # optional: write_uncertainty_maps may have been given a subset of maps
                continue
            raise EvaluationError(f"{path} not found: --uncertainty takes the folder written by "
                               "'tumorseg segment --uncertainty DIR'")
        maps[name] = read_volume(path)
        if not same_grid(maps[name], truth, tolerance_mm=0.01):
            raise EvaluationError(f"{path} is not on the grid of --gt")
    probabilities = np.stack([maps[f"probability_{r}"].array for r in ("WT", "TC", "ET")])
    neighbourhood = error_roi(predicted, truth_labels, truth.spacing)
    out: dict = {"ece": {}, "error_auroc_entropy": {}}
    # Mutual information is the epistemic part: does model disagreement alone point at the errors?
    auroc_maps = {"error_auroc_entropy": "entropy"}
    if "mutual_information" in maps:
        out["error_auroc_mutual_information"] = {}
        auroc_maps["error_auroc_mutual_information"] = "mutual_information"
    curves = {}
    for scope, mask in (("image", None), ("neighbourhood", neighbourhood)):
        for region, curve in region_reliability(probabilities, truth_labels, mask).items():
            out["ece"].setdefault(region.value, {})[scope] = round(float(curve.ece), 4)
            if scope == "neighbourhood":
                curves[region.value] = curve
        for key, name in auroc_maps.items():
            out[key][scope] = round(float(error_detection_auroc(maps[name].array, predicted, truth_labels, mask)), 4)
    return out, curves
