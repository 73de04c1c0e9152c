import numpy as np
import pytest

from Testing.conftest import brain_phantom
from TumorSegLib.geometry import crop, crop_box, reorient, resample_to_grid, resample_to_spacing, uncrop
from TumorSegLib.preprocessing import check_same_grid, prepare_input, to_reference_grid, zscore_in_mask
from TumorSegLib.volume import Volume, same_grid


def flipped_permuted(volume: Volume) -> Volume:
    """The same physical image stored with axes permuted and one flipped (as a RAS-stored NIfTI would be)."""
    array = np.flip(volume.array.transpose(1, 0, 2), axis=0)
    direction = volume.direction[:, [1, 0, 2]] * np.array([-1, 1, 1])
    shape_j = volume.shape[1]
    origin = np.array(volume.origin) + volume.direction[:, 1] * volume.spacing[1] * (shape_j - 1)
    return Volume(np.ascontiguousarray(array), (volume.spacing[1], volume.spacing[0], volume.spacing[2]),
                  tuple(origin), direction)


def test_reorient_undoes_an_axis_permutation_and_flip():
    images, _ = brain_phantom()
    original = Volume(images["t1"].array, (1.0, 1.2, 1.5), (3.0, -4.0, 5.0))
    stored = flipped_permuted(original)
    back = reorient(stored)
    assert np.allclose(back.direction, np.eye(3))
    assert np.array_equal(back.array, original.array)
    assert np.allclose(back.origin, original.origin)


def test_resample_to_spacing_keeps_the_field_of_view():
    volume = Volume(np.ones((40, 40, 20), np.float32), (1.0, 1.0, 3.0), (10.0, 0.0, 0.0))
    resampled = resample_to_spacing(volume, (2.0, 2.0, 1.0))
    assert resampled.shape == (20, 20, 60)
    extent = lambda v: np.array(v.shape) * np.array(v.spacing)  # noqa: E731
    assert np.allclose(extent(resampled), extent(volume))
    # The first voxel's corner stays where it was: centres move by half the change of voxel size.
    corner = lambda v: np.array(v.origin) - 0.5 * np.array(v.spacing)  # noqa: E731
    assert np.allclose(corner(resampled), corner(volume))


def test_crop_moves_the_origin_so_voxels_stay_in_place():
    volume = Volume(np.random.default_rng(0).random((30, 30, 30)), (0.5, 1.0, 2.0), (1.0, 2.0, 3.0))
    box = (slice(5, 20), slice(3, 9), slice(10, 30))
    cropped = crop(volume, box)
    assert np.allclose(cropped.affine @ [0, 0, 0, 1], volume.affine @ [5, 3, 10, 1])
    back = uncrop(cropped, box, volume)
    assert same_grid(back, volume)
    assert np.array_equal(back.array[box], volume.array[box])


def test_crop_box_grows_to_a_minimum_size_within_bounds():
    mask = np.zeros((50, 50, 50), bool)
    mask[2:6, 20:30, 45:48] = True
    box = crop_box(mask, margin=1, min_size=(16, 16, 16))
    sizes = [s.stop - s.start for s in box]
    assert box[0].start == 0 and box[2].stop == 50
    assert sizes[1] == 16


def test_zscore_is_computed_inside_the_mask_only():
    channels = np.stack([np.full((10, 10, 10), 5.0), np.arange(1000, dtype=float).reshape(10, 10, 10)])
    channels[0, :5] = 9.0
    mask = np.zeros((10, 10, 10), bool)
    mask[2:8] = True
    out = zscore_in_mask(channels, mask)
    assert out[:, ~mask].max() == 0
    assert np.allclose(out[1][mask].mean(), 0, atol=1e-5) and np.allclose(out[1][mask].std(), 1, atol=1e-4)


def test_model_outputs_come_back_on_the_input_grid():
    images, labels = brain_phantom(spacing=(1.2, 0.9, 2.0))
    stored = {k: flipped_permuted(v) for k, v in images.items()}
    prepared = prepare_input(list(stored.values()), (1.0, 1.0, 1.0))
    assert np.allclose(prepared.image.direction, np.eye(3)) and prepared.image.spacing == (1.0, 1.0, 1.0)
    # A model that returns its first input channel: mapped back, it lands where the input was.
    mask_on_model_grid = prepared.image.with_array((prepared.image.array[0] != 0).astype(np.float32))
    back = to_reference_grid(mask_on_model_grid, prepared)
    assert same_grid(back, stored["t1"])
    reference_brain = stored["t1"].array > 0
    overlap = (back.array > 0.5) & reference_brain
    assert overlap.sum() / reference_brain.sum() > 0.95


def test_resample_to_grid_is_identity_on_the_same_grid():
    images, _ = brain_phantom()
    assert resample_to_grid(images["t1"], images["t2"]) is images["t1"]


def test_sequences_on_different_grids_are_refused_with_what_to_fix():
    images, _ = brain_phantom()
    moved = Volume(images["t2"].array, images["t2"].spacing, (5.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="not on the same voxel grid as T1.*co-register"):
        check_same_grid([images["t1"], moved], ["T1", "T2"])
