"""Calibration measures on synthetic predictors whose calibration is known."""

import itertools

import numpy as np
import pytest

from TumorSegLib.calibration import (
    DEFAULT_BINS,
    auroc,
    binary_nll,
    error_detection_auroc,
    error_roi,
    expected_calibration_error,
    fit_temperature,
    region_reliability,
    reliability,
    reliability_diagram,
    uncertainty_error_correlation,
)
from TumorSegLib.labels import Region

N = 200_000


def calibrated(rng, n=N):
    """Probabilities and outcomes drawn from exactly those probabilities."""
    p = rng.uniform(0, 1, n)
    return p, rng.uniform(0, 1, n) < p


def sharpen(p, factor):
    logit = np.log(p / (1 - p))
    return 1 / (1 + np.exp(-factor * logit))


def test_a_perfectly_calibrated_predictor_has_almost_no_calibration_error(rng):
    p, y = calibrated(rng)
    assert expected_calibration_error(p, y) < 0.01


def test_an_over_confident_predictor_has_a_clear_calibration_error(rng):
    p, y = calibrated(rng)
    over = sharpen(p, 3.0)
    assert expected_calibration_error(over, y) > 0.05
    assert expected_calibration_error(over, y) > 5 * expected_calibration_error(p, y)


def test_bins_are_equal_width_and_curves_of_several_cases_merge_exactly(rng):
    p, y = calibrated(rng, 10_000)
    whole = reliability(p, y)
    merged = reliability(p[:3000], y[:3000]) + reliability(p[3000:], y[3000:])
    assert len(whole.counts) == DEFAULT_BINS and np.allclose(np.diff(whole.edges), 1 / DEFAULT_BINS)
    assert np.isclose(whole.ece, merged.ece) and whole.voxels == merged.voxels == 10_000
    with pytest.raises(ValueError, match="same bin count"):
        _ = whole + reliability(p, y, bins=10)


def test_a_mask_restricts_the_voxels_that_count(rng):
    p, y = calibrated(rng, 1000)
    mask = np.zeros(1000, bool)
    mask[:100] = True
    assert reliability(p, y, mask=mask).voxels == 100


def test_logits_given_for_probabilities_are_refused():
    with pytest.raises(ValueError, match="sigmoid"):
        reliability(np.array([-2.0, 3.0]), np.array([0, 1]))


def test_region_curves_compare_each_channel_with_its_nested_region():
    truth = np.array([[[0, 1, 2, 3]]])  # BG, NCR, ED, ET
    probabilities = np.stack([truth > 0, np.isin(truth, [1, 3]), truth == 3]).astype(float)
    curves = region_reliability(probabilities, truth)
    assert set(curves) == set(Region)
    assert all(curve.ece == 0 for curve in curves.values())


def pixels_of_colour(pixels: np.ndarray, hex_colour: str) -> np.ndarray:
    """(H, W) bool: pixels within 5 % of an RGB colour such as matplotlib's first cycle colour #1f77b4."""
    colour = np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return np.abs(pixels[..., :3] - colour).max(-1) < 0.05


def test_the_reliability_diagram_draws_every_curve_where_its_data_puts_it(tmp_path, rng):
    from matplotlib import image

    p, y = calibrated(rng, 5000)
    curves = {"calibrated": reliability(p, y), "over-confident": reliability(sharpen(p, 3), y)}
    path = reliability_diagram(curves, tmp_path / "figures" / "reliability.png", "synthetic")
    pixels = image.imread(path)  # fails unless the file is a readable PNG
    assert pixels.shape == (780, 660, 4)  # 5.5 x 6.5 inches at 120 dpi
    # Each curve is drawn in its own colour (matplotlib's cycle: blue, then orange), in lines, not a dot.
    assert pixels_of_colour(pixels, "#1f77b4").sum() > 500 and pixels_of_colour(pixels, "#ff7f0e").sum() > 500
    # The drawing follows the data: one curve alone, calibrated or over-confident, lands on other pixels.
    alone = [pixels_of_colour(image.imread(reliability_diagram({"curve": curve}, tmp_path / f"{name}.png")), "#1f77b4")
             for name, curve in curves.items()]
    assert (alone[0] ^ alone[1]).sum() > 0.5 * min(alone[0].sum(), alone[1].sum())


def test_auroc_is_one_for_an_oracle_and_about_a_half_for_noise(rng):
    errors = rng.uniform(0, 1, 50_000) < 0.1
    assert auroc(errors.astype(float) + 0.01 * rng.uniform(0, 1, errors.size), errors) == 1.0
    assert abs(auroc(rng.uniform(0, 1, errors.size), errors) - 0.5) < 0.02
    assert np.isnan(auroc(rng.uniform(0, 1, 10), np.zeros(10, bool)))


def test_auroc_counts_ties_as_half_like_the_pairwise_definition(rng):
    scores = rng.integers(0, 4, 60).astype(float)
    positives = rng.uniform(0, 1, 60) < 0.4
    pairs = [(1.0 if a > b else 0.5 if a == b else 0.0)
             for a, b in itertools.product(scores[positives], scores[~positives])]
    assert np.isclose(auroc(scores, positives), np.mean(pairs))


def test_error_detection_uses_voxels_whose_label_is_wrong_inside_the_roi():
    truth = np.zeros((20, 20, 20), np.uint8)
    truth[5:15, 5:15, 5:15] = 2
    prediction = truth.copy()
    prediction[5:7] = 0  # a slab of missed tumour
    uncertainty = np.where(prediction != truth, 0.9, 0.1)
    roi = error_roi(prediction, truth, margin_mm=2.0)
    assert roi[truth > 0].all() and not roi[0, 0, 0]
    assert error_detection_auroc(uncertainty, prediction, truth, roi) == 1.0
    assert error_detection_auroc(-uncertainty, prediction, truth, roi) == 0.0


def test_uncertainty_that_rises_with_the_error_correlates_positively():
    dice = np.array([0.95, 0.9, 0.8, 0.6, 0.4])
    result = uncertainty_error_correlation(np.sqrt(1 - dice), dice)
    assert np.isclose(result["spearman"], 1.0) and result["pearson"] > 0.9 and result["cases"] == 5
    with pytest.raises(ValueError, match="at least 3 cases"):
        uncertainty_error_correlation([0.1, 0.2], [0.9, 0.8])


@pytest.mark.parametrize("true_temperature", [0.6, 2.5])
def test_the_temperature_fit_recovers_a_known_temperature(rng, true_temperature):
    logits = rng.normal(0, 4, (2, N))
    targets = rng.uniform(0, 1, logits.shape) < 1 / (1 + np.exp(-logits / true_temperature))
    fitted = fit_temperature(logits, targets)
    assert fitted.shape == (2,)
    assert np.allclose(fitted, true_temperature, rtol=0.05)
    assert binary_nll(logits[0], targets[0], fitted[0]) < binary_nll(logits[0], targets[0], 1.0)


def test_temperature_scaling_removes_most_of_an_over_confident_calibration_error(rng):
    logits = rng.normal(0, 3, N)
    targets = rng.uniform(0, 1, N) < 1 / (1 + np.exp(-logits))
    over = 2.5 * logits  # an over-confident network: logits too large by 2.5
    (temperature,) = fit_temperature(over[None], targets[None])
    before = expected_calibration_error(1 / (1 + np.exp(-over)), targets)
    after = expected_calibration_error(1 / (1 + np.exp(-over / temperature)), targets)
    assert after < 0.2 * before
