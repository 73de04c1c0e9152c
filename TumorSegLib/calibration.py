"""Is the uncertainty worth trusting: calibration, error detection, and temperature scaling.

* **Reliability and ECE** per region: voxels are binned by their predicted probability of being in the
  region, in :data:`DEFAULT_BINS` equal-width bins over 0–1 (the positive-class reliability diagram, not
  the top-label one, so the diagram reads "of the voxels given 70 %, how many were tumour"). ECE is the
  bin-count-weighted mean of |observed frequency − mean predicted probability|. Bins are kept as sums,
  so curves of many cases merge exactly (``a + b``).
* **Where to measure**: over the brain, ECE and AUROC are dominated by millions of easy background voxels,
  so both are also given over a *tumour neighbourhood*: the union of predicted and true tumour dilated by
  :data:`ROI_MARGIN_MM` (:func:`error_roi`). Report which one a figure uses.
* **Error detection**: AUROC of a voxel uncertainty map for telling wrong voxels (predicted label ≠ true
  label, 4 classes) from right ones; rank-based (Mann–Whitney), ties counted half.
* **Case level**: Spearman and Pearson correlation between a per-case uncertainty and 1 − Dice.
* **Temperature scaling**: one temperature per region channel minimising the binary cross-entropy of
  held-out logits (``sigmoid(logit / T)``); :class:`~TumorSegLib.inference.Predictor` divides logits by
  the registry's ``temperature``, so fit on logits made with the registry temperature set to 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage, optimize, stats

from .labels import REGIONS, Region

__all__ = [
    "DEFAULT_BINS",
    "ROI_MARGIN_MM",
    "Reliability",
    "reliability",
    "expected_calibration_error",
    "region_reliability",
    "reliability_diagram",
    "auroc",
    "error_roi",
    "error_detection_auroc",
    "uncertainty_error_correlation",
    "binary_nll",
    "fit_temperature",
]

DEFAULT_BINS = 15  # Guo et al. 2017's count: enough resolution, each bin well filled on one brain
ROI_MARGIN_MM = 5.0


@dataclass(frozen=True)
class Reliability:
    """Binned calibration sums; merge with ``+``.

    Attributes:
        edges: (B + 1,) bin edges over 0–1.
        counts: (B,) voxels per bin.
        probability_sums: (B,) sum of predicted probabilities per bin.
        positive_sums: (B,) voxels truly positive per bin.
    """

    edges: np.ndarray
    counts: np.ndarray
    probability_sums: np.ndarray
    positive_sums: np.ndarray

    def __add__(self, other: "Reliability") -> "Reliability":
        if not np.array_equal(self.edges, other.edges):
            raise ValueError("reliability curves with different bins cannot be merged; use the same bin count")
        return Reliability(self.edges, self.counts + other.counts, self.probability_sums + other.probability_sums,
                           self.positive_sums + other.positive_sums)

    @property
    def confidence(self) -> np.ndarray:
        """(B,) mean predicted probability per bin (NaN where empty)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.probability_sums / self.counts

    @property
    def frequency(self) -> np.ndarray:
        """(B,) observed fraction of positives per bin (NaN where empty)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.positive_sums / self.counts

    @property
    def ece(self) -> float:
        """Expected calibration error: Σ_b (n_b / N) |frequency_b − confidence_b|; 0 for no voxels."""
        total = self.counts.sum()
        if total == 0:
            return 0.0
        return float(np.abs(self.positive_sums - self.probability_sums).sum() / total)

    @property
    def voxels(self) -> int:
        return int(self.counts.sum())

    def as_dict(self) -> dict:
        return {"ece": round(self.ece, 5), "voxels": self.voxels, "edges": self.edges.round(4).tolist(),
                "counts": self.counts.astype(int).tolist(),
                "confidence": [None if np.isnan(v) else round(float(v), 5) for v in self.confidence],
                "frequency": [None if np.isnan(v) else round(float(v), 5) for v in self.frequency]}


def reliability(probabilities: np.ndarray, targets: np.ndarray, bins: int = DEFAULT_BINS,
                mask: np.ndarray | None = None) -> Reliability:
    """Bin predicted probabilities against binary outcomes.

    Args:
        probabilities: predicted probability of the positive class, any shape, values in 0–1.
        targets: same shape, true outcome (bool or 0/1).
        bins: number of equal-width bins over 0–1.
        mask: same shape, bool: only these elements count (default: all).
    """
    probabilities = np.asarray(probabilities, np.float64)
    targets = np.asarray(targets).astype(bool)
    if probabilities.shape != targets.shape:
        raise ValueError(f"probabilities {probabilities.shape} and targets {targets.shape} must have one shape")
    if mask is not None:
        probabilities, targets = probabilities[mask], targets[mask]
    probabilities, targets = probabilities.ravel(), targets.ravel()
    if probabilities.size and (probabilities.min() < 0 or probabilities.max() > 1):
        raise ValueError("probabilities must lie in 0–1; apply the sigmoid to logits first")
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip((probabilities * bins).astype(np.int64), 0, bins - 1)  # p = 1 falls in the last bin
    return Reliability(edges, np.bincount(index, minlength=bins).astype(np.float64),
                       np.bincount(index, probabilities, minlength=bins),
                       np.bincount(index, targets.astype(np.float64), minlength=bins))


def expected_calibration_error(probabilities: np.ndarray, targets: np.ndarray, bins: int = DEFAULT_BINS,
                               mask: np.ndarray | None = None) -> float:
    """ECE of binary predictions (see :class:`Reliability`)."""
    return reliability(probabilities, targets, bins, mask).ece


def region_reliability(probabilities: np.ndarray, truth_labels: np.ndarray, mask: np.ndarray | None = None,
                       bins: int = DEFAULT_BINS) -> dict[Region, Reliability]:
    """Reliability of each region channel against an internal label map.

    Args:
        probabilities: (3, I, J, K) WT/TC/ET probabilities.
        truth_labels: (I, J, K) internal label codes (NCR 1, ED 2, ET 3).
        mask: (I, J, K) voxels that count (e.g. the brain, or :func:`error_roi`).
    """
    out = {}
    for index, (region, members) in enumerate(REGIONS.items()):
        truth = np.isin(truth_labels, [int(label) for label in members])
        out[region] = reliability(probabilities[index], truth, bins, mask)
    return out


def reliability_diagram(curves: Mapping[str, Reliability], path: str | Path, title: str = "") -> Path:
    """Write a reliability diagram PNG: observed frequency against predicted probability, with bin counts.

    Args:
        curves: {legend label: curve}, e.g. one per region.
        path: the PNG to write.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Figure + Agg canvas directly: no pyplot global state (safe inside Slicer and worker threads).
    figure = Figure(figsize=(5.5, 6.5), dpi=120)
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfect calibration")
    for label, curve in curves.items():
        filled = curve.counts > 0
        centres = (curve.edges[:-1] + curve.edges[1:]) / 2
        top.plot(curve.confidence[filled], curve.frequency[filled], marker="o", markersize=3,
                 label=f"{label} (ECE {curve.ece:.3f})")
        bottom.step(centres, np.maximum(curve.counts, 1), where="mid", label=label)
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="observed frequency", title=title or "Reliability")
    top.legend(loc="upper left", fontsize=8)
    bottom.set(yscale="log", xlabel="predicted probability", ylabel="voxels")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def auroc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for telling ``positives`` from the rest (ties count half).

    Returns NaN when either class is absent.
    """
    scores = np.asarray(scores, np.float64).ravel()
    positives = np.asarray(positives).astype(bool).ravel()
    n_positive = int(positives.sum())
    n_negative = positives.size - n_positive
    if n_positive == 0 or n_negative == 0:
        return float("nan")
    ranks = stats.rankdata(scores)  # average ranks: the Mann–Whitney U statistic counts ties as half
    return float((ranks[positives].sum() - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative))


def error_roi(prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0),
              margin_mm: float = ROI_MARGIN_MM, within: np.ndarray | None = None) -> np.ndarray:
    """Tumour neighbourhood: predicted ∪ true tumour (label > 0), dilated by ``margin_mm``, inside ``within``."""
    tumour = (np.asarray(prediction) > 0) | (np.asarray(truth) > 0)
    if tumour.any():
        roi = ndimage.distance_transform_edt(~tumour, sampling=spacing) <= margin_mm
    else:
        roi = tumour
    return roi & within.astype(bool) if within is not None else roi


def error_detection_auroc(uncertainty: np.ndarray, prediction: np.ndarray, truth: np.ndarray,
                          mask: np.ndarray | None = None) -> float:
    """AUROC of a voxel uncertainty map for finding voxels whose predicted label is wrong.

    Args:
        uncertainty: (I, J, K) e.g. normalised predictive entropy.
        prediction, truth: (I, J, K) internal label maps on the same grid.
        mask: (I, J, K) voxels that count (e.g. :func:`error_roi` or the brain); default all.
    """
    if not uncertainty.shape == prediction.shape == truth.shape:
        raise ValueError(f"uncertainty {uncertainty.shape}, prediction {prediction.shape} and truth {truth.shape} "
                         "must be on one grid")
    errors = np.asarray(prediction) != np.asarray(truth)
    if mask is not None:
        return auroc(uncertainty[mask], errors[mask])
    return auroc(uncertainty, errors)


def uncertainty_error_correlation(uncertainty: Sequence[float], dice: Sequence[float]) -> dict[str, float]:
    """Spearman and Pearson correlation (and p-values) between per-case uncertainty and 1 − Dice.

    Raises:
        ValueError: for fewer than 3 cases or lists of different lengths.
    """
    uncertainty, error = np.asarray(uncertainty, float), 1.0 - np.asarray(dice, float)
    if uncertainty.shape != error.shape or uncertainty.size < 3:
        raise ValueError(f"need one uncertainty per case and at least 3 cases, got {uncertainty.size} and "
                         f"{error.size}")
    if np.ptp(uncertainty) == 0 or np.ptp(error) == 0:
        nan = float("nan")  # a constant list has no correlation
        return {"spearman": nan, "spearman_p": nan, "pearson": nan, "pearson_p": nan, "cases": int(error.size)}
    spearman = stats.spearmanr(uncertainty, error)
    pearson = stats.pearsonr(uncertainty, error)
    return {"spearman": float(spearman.statistic), "spearman_p": float(spearman.pvalue),
            "pearson": float(pearson.statistic), "pearson_p": float(pearson.pvalue), "cases": int(error.size)}


def binary_nll(logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> float:
    """Mean binary cross-entropy of ``sigmoid(logits / temperature)`` against 0/1 ``targets``."""
    z = np.asarray(logits, np.float64) / temperature
    y = np.asarray(targets, np.float64)
    # log(1 + e^z) − y z, written to stay finite for large |z|.
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def fit_temperature(logits: np.ndarray, targets: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> np.ndarray:
    """One temperature per channel minimising the binary cross-entropy of held-out logits.

    Args:
        logits: (C, N) raw logits (made with temperature 1), e.g. voxels sampled from held-out cases.
        targets: (C, N) true 0/1 outcomes.
        bounds: range searched for each temperature.

    Returns:
        (C,) temperatures; divide logits by them (``ModelSpec.temperature``).
    """
    logits, targets = np.atleast_2d(logits), np.atleast_2d(targets)
    if logits.shape != targets.shape:
        raise ValueError(f"logits {logits.shape} and targets {targets.shape} must have one shape (C, N)")
    temperatures = []
    for z, y in zip(logits, targets):
        # Search log T: the loss is smooth and unimodal in it, and T stays positive.
        result = optimize.minimize_scalar(lambda log_t, z=z, y=y: binary_nll(z, y, float(np.exp(log_t))),
                                          bounds=np.log(bounds), method="bounded", options={"xatol": 1e-4})
        temperatures.append(float(np.exp(result.x)))
    return np.asarray(temperatures)
