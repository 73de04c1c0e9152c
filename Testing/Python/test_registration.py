"""Rigid/affine registration: known motions are recovered, within a visit (multi-modal) and across visits."""

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from Testing.conftest import brain_phantom
from TumorSegLib.registration import (
    points_of,
    register,
    resample_moving,
    rotation_angle_deg,
    transform_error,
)
from TumorSegLib.volume import Volume, read_volume

CASE = "Brats18_2013_11_1"


def rigid(angles_deg, translation_mm) -> tuple[np.ndarray, np.ndarray, sitk.Transform]:
    """Rotation matrix, translation and the same map x → R x + t as a SimpleITK transform."""
    matrix = Rotation.from_euler("xyz", angles_deg, degrees=True).as_matrix()
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(matrix.flatten().tolist())
    transform.SetTranslation([float(t) for t in translation_mm])
    return matrix, np.asarray(translation_mm, float), transform


def moved_by(volume: Volume, matrix: np.ndarray, translation: np.ndarray) -> Volume:
    """The same voxels placed at R x + t: what a scanner records when the head has moved rigidly."""
    return Volume(volume.array, volume.spacing, matrix @ np.array(volume.origin) + translation,
                  matrix @ volume.direction)


@pytest.mark.realdata
def test_rigid_registration_recovers_a_known_head_motion_between_visits_within_1mm_and_1_degree(shared_data):
    t1c = read_volume(shared_data / CASE / f"{CASE}_t1ce.nii.gz")
    matrix, translation, truth = rigid([4.0, -3.0, 6.0], [5.0, -7.0, 3.0])
    result = register(t1c, moved_by(t1c, matrix, translation), working_spacing_mm=2.0)
    error = transform_error(result.transform, truth, points_of(t1c, t1c.array > 0))
    assert error.max_displacement_mm < 1.0
    assert error.rotation_deg < 1.0
    assert result.iterations > 0 and result.metric_value < 0


@pytest.mark.realdata
def test_multimodal_registration_aligns_t2_onto_t1c_within_1mm_and_1_degree(shared_data):
    t1c = read_volume(shared_data / CASE / f"{CASE}_t1ce.nii.gz")
    t2 = read_volume(shared_data / CASE / f"{CASE}_t2.nii.gz")
    matrix, translation, truth = rigid([-5.0, 2.0, -4.0], [-4.0, 6.0, -5.0])
    result = register(t1c, moved_by(t2, matrix, translation), working_spacing_mm=2.0)
    error = transform_error(result.transform, truth, points_of(t1c, t1c.array > 0))
    assert error.max_displacement_mm < 1.0
    assert error.rotation_deg < 1.0


def asymmetric_phantom(shape=(56, 64, 52)) -> Volume:
    """The brain phantom with three blobs of other intensities, so that its rotation is observable."""
    images, _ = brain_phantom(shape=shape)
    array = images["t1"].array.copy()
    grid = np.indices(shape)
    for fraction, radius, value in (((0.32, 0.62, 0.58), 6, 60.0), ((0.64, 0.31, 0.38), 4, 180.0),
                                    ((0.5, 0.78, 0.27), 5, 150.0)):
        centre = [f * n for f, n in zip(fraction, shape)]
        array[sum((g - c) ** 2 for g, c in zip(grid, centre)) < radius**2] = value
    return images["t1"].with_array(array.astype(np.float32))


def test_mutual_information_aligns_images_of_opposite_contrast():
    fixed = asymmetric_phantom()
    brain = fixed.array > 50
    inverted = fixed.with_array(np.where(brain, 300.0 - fixed.array, 0.0).astype(np.float32))  # like T1 vs T2
    matrix, translation, truth = rigid([0.0, 0.0, 7.0], [3.0, -2.0, 1.5])
    result = register(fixed, moved_by(inverted, matrix, translation), shrink_factors=(2, 1),
                      smoothing_sigmas_mm=(1.0, 0.0))
    error = transform_error(result.transform, truth, points_of(fixed, brain))
    assert error.max_displacement_mm < 1.0 and error.rotation_deg < 1.0


def test_affine_registration_recovers_a_scaling_that_rigid_cannot():
    fixed = asymmetric_phantom(shape=(44, 50, 40))
    scale = np.diag([1.06, 0.96, 1.0])
    moving = Volume(fixed.array, fixed.spacing, scale @ np.array(fixed.origin), scale @ fixed.direction)
    truth = sitk.AffineTransform(3)
    truth.SetMatrix(scale.flatten().tolist())
    points = points_of(fixed, fixed.array > 50)
    options = dict(shrink_factors=(2, 1), smoothing_sigmas_mm=(1.0, 0.0))
    affine = register(fixed, moving, kind="affine", **options)
    rigid_only = register(fixed, moving, kind="rigid", **options)
    affine_error = transform_error(affine.transform, truth, points).max_displacement_mm
    assert affine_error < 1.0
    assert affine_error < transform_error(rigid_only.transform, truth, points).max_displacement_mm


def test_resampling_through_the_true_transform_puts_labels_back_voxel_for_voxel():
    images, labels = brain_phantom(shape=(40, 44, 36))
    matrix, translation, truth = rigid([3.0, 0.0, -8.0], [2.0, 1.0, -3.0])
    moved_labels = moved_by(labels, matrix, translation)
    back = resample_moving(moved_labels, labels, truth, order=0)
    assert back.array.dtype == labels.array.dtype
    assert set(np.unique(back.array)) <= set(np.unique(labels.array))
    assert np.array_equal(back.array, labels.array)
    image_back = resample_moving(moved_by(images["t2"], matrix, translation), labels, truth, order=1)
    assert np.allclose(image_back.array, images["t2"].array, atol=1e-2)


def test_transform_error_reports_the_known_offset_and_angle():
    box = Volume(np.zeros((11, 11, 11)), (2.0, 2.0, 2.0), (-10.0, -10.0, -10.0))
    shifted = sitk.TranslationTransform(3, (3.0, 4.0, 0.0))
    error = transform_error(shifted, sitk.Transform(3, sitk.sitkIdentity), points_of(box))
    assert error.max_displacement_mm == pytest.approx(5.0) and error.rotation_deg == pytest.approx(0.0, abs=1e-6)
    turned = sitk.Euler3DTransform((0.0, 0.0, 0.0), 0.0, 0.0, np.radians(10.0))
    error = transform_error(turned, sitk.Euler3DTransform(), points_of(box))
    corner = np.linalg.norm([10.0, 10.0])  # farthest box corner from the rotation axis
    assert error.rotation_deg == pytest.approx(10.0, abs=1e-6)
    assert error.max_displacement_mm == pytest.approx(2 * corner * np.sin(np.radians(5.0)), rel=1e-6)
    assert rotation_angle_deg(np.diag([2.0, 2.0, 2.0])) == pytest.approx(0.0)


def test_bad_input_is_refused_with_what_to_fix():
    images, labels = brain_phantom(shape=(32, 32, 32))
    with pytest.raises(ValueError, match="constant"):
        register(images["t1"], images["t1"].with_array(np.zeros(images["t1"].shape, np.float32)))
    with pytest.raises(ValueError, match="mask is empty"):
        register(images["t1"], images["t2"], fixed_mask=labels.with_array(np.zeros(labels.shape, np.uint8)))
    with pytest.raises(ValueError, match="one smoothing sigma per shrink factor"):
        register(images["t1"], images["t2"], shrink_factors=(4, 2), smoothing_sigmas_mm=(1.0,))
