"""Uncertainty sampling and maps: synthetic inputs with known behaviour, and one real case (skipped when absent)."""

import json
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import ndimage

from TumorSegLib.export import write_uncertainty_maps as write_uncertainty
from TumorSegLib.inference import Predictor
from TumorSegLib.labels import Region
from TumorSegLib.models import build_network, get_model
from TumorSegLib.uncertainty import (
    FLAG_THRESHOLDS,
    MIN_SAMPLES,
    Draw,
    Method,
    Sampler,
    class_probabilities,
    estimate_uncertainty,
    normalised_entropy,
    parse_methods,
    plan_draws,
)
from TumorSegLib.volume import Volume, read_volume, same_grid

SHAPE = (40, 36, 32)


class Pointwise(torch.nn.Module):
    """Every region's logit = gain · (first input channel − offset), voxel by voxel: mirror-equivariant."""

    def __init__(self, gain: float = 1.0, offset: float = 0.0, dropout: float = 0.0):
        super().__init__()
        self.gain, self.offset = gain, offset
        self.dropout = torch.nn.Dropout(dropout)

    def forward(self, x):
        return (self.gain * (self.dropout(x[:, :1]) - self.offset)).repeat(1, 3, 1, 1, 1)


class Sleepy(Pointwise):
    """A pointwise network that takes a known time per window (for the time budget)."""

    def forward(self, x):
        time.sleep(0.15)
        return super().forward(x)


def small_spec(patch=(16, 16, 16)):
    return replace(get_model("brats18-segresnet8"), patch_size=patch)


def sphere(shape=SHAPE, radius=9.0, centre=None):
    grid = np.indices(shape, dtype=np.float32)
    centre = np.array(shape) / 2 if centre is None else np.asarray(centre)
    return np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre))) < radius


def model_input(first_channel: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(10.0, -4.0, 2.5)) -> Volume:
    channels = np.repeat(first_channel[None].astype(np.float32), 4, axis=0)
    return Volume(channels, spacing, origin)


def test_methods_parse_from_a_comma_separated_string_and_unknown_ones_name_the_choices():
    assert parse_methods("ensemble, flips,flips") == (Method.ENSEMBLE, Method.FLIPS)
    with pytest.raises(ValueError, match="ensemble, flips, intensity, affine, dropout"):
        parse_methods("ensemble,bayes")
    with pytest.raises(ValueError, match="no uncertainty method"):
        parse_methods("")


def test_any_prefix_of_the_plan_covers_the_ensemble_members_evenly_with_different_flips():
    draws = plan_draws((Method.ENSEMBLE, Method.FLIPS), members=6, samples=12)
    first = draws[:6]
    assert sorted(d.member for d in first) == list(range(6))
    assert len({d.flip for d in first}) == 6
    assert len({(d.member, d.flip) for d in draws}) == 12
    assert all(d.seed is None for d in draws)


def test_a_deterministic_plan_never_repeats_a_sample_but_random_methods_draw_as_many_as_asked():
    assert len(plan_draws((Method.FLIPS,), members=6, samples=50)) == 8
    dropout = plan_draws((Method.DROPOUT,), members=6, samples=5, seed=7)
    assert len(dropout) == 5 and {d.member for d in dropout} == {0}
    assert [d.seed for d in dropout] == [7, 8, 9, 10, 11]


def test_class_probabilities_sum_to_one_and_an_inner_region_raises_the_outer_ones():
    regions = np.array([[0.9, 0.2, 0.5], [0.6, 0.1, 0.7], [0.3, 0.4, 0.1]], np.float32)[:, :, None, None]
    classes = class_probabilities(regions)
    assert np.allclose(classes.sum(0), 1.0)
    assert (classes >= 0).all()
    # Voxel 1 has ET 0.4 above TC 0.1 and WT 0.2: TC and WT become 0.4, so NCR and ED are 0, BG 0.6.
    assert np.allclose(classes[:, 1, 0, 0], [0.6, 0.0, 0.0, 0.4])
    assert np.isclose(normalised_entropy(np.full((4, 1), 0.25))[0], 1.0)


def test_a_plain_sample_equals_the_predictors_own_pass():
    torch.manual_seed(0)
    spec = small_spec()
    network = torch.nn.Conv3d(4, 3, 3, padding=1).eval()
    predictor = Predictor(spec, "cpu", networks=[network])
    image = np.random.default_rng(0).normal(size=(4, *SHAPE)).astype(np.float32)
    expected = [logits for logits in predictor.logits_samples(image, flips=[(), (0, 2)])]
    sampled = [logits for _, logits in Sampler(predictor)(image, [Draw(flip=()), Draw(flip=(0, 2))])]
    for a, b in zip(expected, sampled):
        assert torch.allclose(a, b, atol=1e-5)


def test_batched_samples_equal_samples_run_one_by_one():
    # The CUDA path batches the samples of one member; the same code runs on the CPU here.
    torch.manual_seed(0)
    networks = [torch.nn.Conv3d(4, 3, 3, padding=1).eval() for _ in range(2)]
    predictor = Predictor(small_spec(), "cpu", networks=networks)
    image = np.random.default_rng(0).normal(size=(4, *SHAPE)).astype(np.float32)
    draws = sorted(plan_draws((Method.ENSEMBLE, Method.FLIPS, Method.INTENSITY), 2, 6), key=lambda d: d.member)
    batched = Sampler(predictor, batch_size=2)
    assert [[d.member for d in batch] for batch in batched.batches(draws)] == [[0, 0], [0], [1, 1], [1]]
    for (a_draw, a), (b_draw, b) in zip(Sampler(predictor, batch_size=1)(image, draws), batched(image, draws)):
        assert a_draw == b_draw and torch.allclose(a, b, atol=1e-5)


def test_flip_samples_of_a_mirror_symmetric_input_are_identical():
    # A symmetric sphere through a mirror-equivariant network: every flip sees the same thing.
    predictor = Predictor(small_spec(), "cpu", networks=[Pointwise(gain=8.0, offset=0.5)])
    image = model_input(ndimage.gaussian_filter(sphere(centre=(np.array(SHAPE) - 1) / 2).astype(np.float32), 1.5))
    samples = [logits for _, logits in Sampler(predictor)(image.array, plan_draws((Method.FLIPS,), 1, 8))]
    assert len(samples) == 8
    assert all(torch.allclose(samples[0], s, atol=1e-5) for s in samples[1:])
    result = estimate_uncertainty(predictor, image, methods="flips", samples=8)
    assert result.mutual_information.array.max() < 1e-5
    assert result.variance.array.max() < 1e-8


def test_affine_jitter_is_undone_on_the_output():
    predictor = Predictor(small_spec(), "cpu", networks=[Pointwise()])
    smooth = ndimage.gaussian_filter(np.random.default_rng(1).normal(size=SHAPE).astype(np.float32), 4) * 20
    image = model_input(smooth)
    (_, plain), (_, warped) = Sampler(predictor)(image.array, [Draw(), Draw(seed=3, random_methods=(Method.AFFINE,))])
    interior = (slice(None), slice(8, -8), slice(8, -8), slice(8, -8))
    difference = (plain - warped)[interior].abs()
    assert difference.mean() < 0.05 * plain[interior].abs().mean()


def test_an_ensemble_of_identical_models_has_no_epistemic_uncertainty():
    torch.manual_seed(0)
    network = torch.nn.Conv3d(4, 3, 3, padding=1).eval()
    image = model_input(8 * sphere().astype(np.float32) - 4)
    same = estimate_uncertainty(Predictor(small_spec(), "cpu", networks=[network] * 3), image, "ensemble")
    assert same.samples == 3
    assert same.mutual_information.array.max() < 1e-5
    assert np.allclose(same.entropy.array, same.expected_entropy.array, atol=1e-5)
    assert all(v.low_ml == v.estimate_ml == v.high_ml for v in same.volumes.values())

    other = torch.nn.Conv3d(4, 3, 3, padding=1).eval()
    different = estimate_uncertainty(Predictor(small_spec(), "cpu", networks=[network, other]), image, "ensemble")
    assert different.mutual_information.array.max() > 0.01


def test_a_blurred_boundary_is_more_uncertain_than_the_core_and_its_region_is_flagged():
    ball = sphere(radius=10)
    blurred = model_input(ndimage.gaussian_filter(ball.astype(np.float32), 3.0))
    sharp = model_input(ball.astype(np.float32))
    predictor = Predictor(small_spec(), "cpu", networks=[Pointwise(gain=6.0, offset=0.5)])
    soft = estimate_uncertainty(predictor, blurred, "flips", samples=2)
    crisp = estimate_uncertainty(predictor, sharp, "flips", samples=2)

    core = sphere(radius=4)
    boundary = sphere(radius=11) & ~sphere(radius=9)
    assert soft.entropy.array[boundary].mean() > soft.entropy.array[core].mean() + 0.1
    wt_soft, wt_crisp = soft.regions[Region.WT], crisp.regions[Region.WT]
    assert wt_soft.score > wt_crisp.score and wt_soft.mean_entropy > wt_crisp.mean_entropy
    assert wt_soft.flagged and not wt_crisp.flagged
    assert wt_soft.threshold == FLAG_THRESHOLDS[Region.WT] and wt_soft.doubt_ml > 0
    assert Region.WT in soft.flagged()


def test_flag_thresholds_can_be_set_per_region():
    predictor = Predictor(small_spec(), "cpu", networks=[Pointwise(gain=6.0, offset=0.5)])
    image = model_input(ndimage.gaussian_filter(sphere(radius=10).astype(np.float32), 3.0))
    lenient = estimate_uncertainty(predictor, image, "flips", samples=2, flag_thresholds={"WT": 0.99})
    assert not lenient.regions[Region.WT].flagged and lenient.regions[Region.WT].threshold == 0.99
    assert lenient.regions[Region.ET].threshold == FLAG_THRESHOLDS[Region.ET]


def test_monte_carlo_dropout_samples_differ_but_repeat_with_the_same_seed():
    predictor = Predictor(small_spec(), "cpu", networks=[Pointwise(gain=4.0, offset=0.5, dropout=0.3)])
    image = model_input(sphere().astype(np.float32))
    first = estimate_uncertainty(predictor, image, "dropout", samples=4, seed=11)
    again = estimate_uncertainty(predictor, image, "dropout", samples=4, seed=11)
    assert first.mutual_information.array.max() > 0.01
    assert np.array_equal(first.mutual_information.array, again.mutual_information.array)
    no_dropout = estimate_uncertainty(predictor, image, "flips", samples=4)
    assert no_dropout.mutual_information.array.max() < 1e-5  # dropout is off outside Monte-Carlo sampling


def test_the_default_architectures_dropout_is_active_in_monte_carlo_sampling():
    spec = small_spec((16, 16, 16))
    torch.manual_seed(0)
    predictor = Predictor(spec, "cpu", networks=[build_network(spec).eval()])
    image = Volume(np.random.default_rng(2).normal(size=(4, 16, 16, 16)).astype(np.float32))
    (_, a), (_, b) = Sampler(predictor)(image.array, [Draw(seed=1, random_methods=(Method.DROPOUT,)), Draw(seed=2, random_methods=(Method.DROPOUT,))])
    assert not torch.allclose(a, b)
    assert all(not m.training for m in predictor.networks[0].modules())  # left in eval mode afterwards


@pytest.mark.parametrize("network", [torch.nn.Conv3d(4, 3, 1), Pointwise(dropout=0.0)], ids=["no layer", "rate 0"])
def test_monte_carlo_dropout_without_active_dropout_is_refused_naming_the_alternatives(network):
    # Identical samples would show zero uncertainty: a sure-looking result the model never earned.
    predictor = Predictor(small_spec(), "cpu", networks=[network.eval()])
    image = model_input(sphere().astype(np.float32))
    with pytest.raises(ValueError, match="dropout.*use the methods ensemble, flips, intensity or affine"):
        estimate_uncertainty(predictor, image, "flips,dropout", samples=4)
    with pytest.raises(ValueError, match="Monte-Carlo dropout"):  # the Sampler used directly refuses too
        next(Sampler(predictor)(image.array, [Draw(seed=1, random_methods=(Method.DROPOUT,))]))
    assert estimate_uncertainty(predictor, image, "flips", samples=2).samples == 2  # other methods still run


def test_sampled_probabilities_use_the_registry_temperature():
    image = model_input(np.linspace(-3, 3, np.prod(SHAPE), dtype=np.float32).reshape(SHAPE))
    spec = replace(small_spec(), temperature=(0.5, 1.0, 2.0))
    result = estimate_uncertainty(Predictor(spec, "cpu", networks=[Pointwise()]), image, "flips", samples=2)
    logits = image.array[0]
    for channel, temperature in enumerate((0.5, 1.0, 2.0)):  # sigmoid(logit / T), as in Predictor
        assert np.allclose(result.probabilities.array[channel], 1 / (1 + np.exp(-logits / temperature)), atol=1e-5)


def test_a_time_budget_stops_sampling_early_but_keeps_the_minimum():
    predictor = Predictor(small_spec(SHAPE), "cpu", networks=[Sleepy(dropout=0.2)])
    image = model_input(sphere().astype(np.float32))
    reported = []
    result = estimate_uncertainty(predictor, image, "dropout", samples=20, time_budget_s=0.5,
                                  progress=lambda fraction, message: reported.append(fraction))
    assert MIN_SAMPLES <= result.samples < 20
    assert result.budget_limited and result.planned == 20
    assert reported[-1] == 1.0 and reported == sorted(reported)
    tight = estimate_uncertainty(predictor, image, "dropout", samples=20, time_budget_s=0.01)
    assert tight.samples == MIN_SAMPLES


def test_maps_keep_the_input_geometry_and_are_written_with_a_summary(tmp_path):
    spacing, origin = (1.2, 0.9, 1.5), (10.0, -4.0, 2.5)
    image = model_input(8 * sphere().astype(np.float32) - 4, spacing, origin)
    predictor = Predictor(small_spec(), "cpu", networks=[Pointwise(dropout=0.2)])
    result = estimate_uncertainty(predictor, image, "dropout,intensity", samples=3)
    for name, volume in result.maps().items():
        assert volume.array.ndim == 3 and same_grid(volume, Volume(image.array[0], spacing, origin)), name

    summary = write_uncertainty(result, tmp_path / "unc")
    written = read_volume(tmp_path / "unc" / summary["maps"]["entropy"])
    assert same_grid(written, result.entropy) and np.allclose(written.array, result.entropy.array)
    recorded = json.loads((tmp_path / "unc" / "uncertainty.json").read_text())
    assert recorded["samples"] == 3 and set(recorded["regions"]) == {"WT", "TC", "ET"}
    assert set(recorded["volumes_ml"]) == {"NCR", "ED", "ET", "TC", "WT"}

    chosen = write_uncertainty(result, tmp_path / "some", names=["entropy", "probability_WT"])
    assert sorted(p.name for p in (tmp_path / "some").glob("*.nii.gz")) == sorted(chosen["maps"].values())
    with pytest.raises(ValueError, match="choose from"):
        write_uncertainty(result, tmp_path / "none", names=["aleatoric"])


def test_input_that_does_not_fit_the_model_says_how_to_prepare_it():
    predictor = Predictor(small_spec(), "cpu", networks=[Pointwise()])
    with pytest.raises(ValueError, match="prepare it as pipeline.segment does"):
        estimate_uncertainty(predictor, Volume(np.zeros((2, 8, 8, 8), np.float32)))


# --- one real case --------------------------------------------------------------------------------------

@pytest.mark.realdata
def test_real_case_intervals_contain_the_estimate_and_maps_return_to_the_input_grid(shared_data, held_out_cases):
    from TumorSegLib.geometry import crop
    from TumorSegLib.preprocessing import prepare_input, to_reference_grid
    from TumorSegLib.training import find_cases

    spec = get_model()
    case = "Brats18_CBICA_AQT_1"
    files = find_cases(shared_data)[case]
    images = [read_volume(files[key]) for key in spec.sequences]
    prepared = prepare_input(images, spec.spacing, margin=4)
    # The central 128³ of the brain: one sliding window per pass keeps this test short.
    sub = tuple(slice(max(0, (n - 128) // 2), max(0, (n - 128) // 2) + min(n, 128)) for n in prepared.image.shape)
    box = tuple(slice(b.start + s.start, b.start + s.stop) for b, s in zip(prepared.box, sub))
    small = replace(prepared, image=crop(prepared.image, sub), box=box, brain_mask=prepared.brain_mask[sub])
    predictor = Predictor(spec, "cpu", members=[0, held_out_cases[case] + 1])

    result = estimate_uncertainty(predictor, small.image, "ensemble,flips", samples=4, brain_mask=small.brain_mask)
    assert result.samples == 4 and {d.member for d in result.draws} == {0, 1}
    volumes = result.volumes
    assert volumes["WT"].estimate_ml > 10
    for region in ("WT", "TC", "ET"):
        assert volumes[region].contains_estimate, (region, volumes[region])
    # Labels add up to the regions they make, in the estimate and in every sample.
    for volume_of in (lambda key: volumes[key].estimate_ml, lambda key: np.array(volumes[key].samples_ml)):
        assert np.allclose(volume_of("NCR") + volume_of("ET"), volume_of("TC"), atol=0.01)
        assert np.allclose(volume_of("TC") + volume_of("ED"), volume_of("WT"), atol=0.01)
    back = result.mapped(lambda volume, order: to_reference_grid(volume, small, order))
    for name, volume in back.maps().items():
        assert same_grid(volume, images[0]), name
    assert same_grid(back.labels, images[0]) and set(np.unique(back.labels.array)) <= {0, 1, 2, 3}
