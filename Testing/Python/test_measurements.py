"""Bidimensional (RANO) lesion measurement checked against analytic shapes of known diameters."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from TumorSegLib.labels import Label, region_volumes_ml
from TumorSegLib.longitudinal.diameters import axial_frame, slice_diameters
from TumorSegLib.longitudinal.measurements import TimepointMeasurements, label_lesions, measure_labels, read_label_map
from TumorSegLib.volume import Volume, write_volume


def physical_offsets(shape, spacing, direction=np.eye(3), shift=(0.0, 0.0, 0.0)):
    """(x, y, z) LPS offsets in mm of every voxel centre from the grid centre (+ ``shift``), each of ``shape``."""
    index = np.indices(shape, dtype=float).reshape(3, -1)
    centre = (np.array(shape) - 1) / 2
    offsets = direction @ np.diag(spacing) @ (index - centre[:, None]) - np.asarray(shift)[:, None]
    return [axis.reshape(shape) for axis in offsets]


def elliptic_cylinder(shape, spacing, long_mm, short_mm, height_mm, angle_deg=0.0, direction=np.eye(3),
                      shift=(0.3, -0.2, 0.0), code=Label.ET):
    """Label map of an elliptic cylinder standing along the patient S axis, diameters in the axial plane."""
    x, y, z = physical_offsets(shape, spacing, direction, shift)
    c, s = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
    u, v = c * x + s * y, -s * x + c * y
    inside = (u / (long_mm / 2)) ** 2 + (v / (short_mm / 2)) ** 2 <= 1
    inside &= np.abs(z) <= height_mm / 2
    return Volume((inside * int(code)).astype(np.uint8), spacing, (10.0, -20.0, 5.0), direction)


def single_lesion(volume: Volume):
    measurements = measure_labels(volume)
    assert len(measurements.lesions) == 1
    return measurements.lesions[0]


@pytest.mark.parametrize("angle_deg", [0.0, 17.0, 45.0, 71.0, 120.0])
def test_ellipse_diameters_match_the_analytic_ones_within_one_voxel(angle_deg):
    lesion = single_lesion(elliptic_cylinder((64, 64, 20), (1.0, 1.0, 1.0), 32.0, 18.0, 12.0, angle_deg))
    assert lesion.longest_diameter_mm == pytest.approx(32.0, abs=1.0)
    assert lesion.perpendicular_diameter_mm == pytest.approx(18.0, abs=1.0)
    assert lesion.product_mm2 == pytest.approx(32.0 * 18.0, rel=0.1)


@pytest.mark.parametrize("spacing", [(0.5, 1.25, 3.0), (1.4, 0.6, 1.0), (0.9, 0.9, 5.0)])
def test_anisotropic_voxels_are_measured_in_millimetres(spacing):
    shape = tuple(int(np.ceil(70 / s)) for s in spacing[:2]) + (int(np.ceil(30 / spacing[2])),)
    lesion = single_lesion(elliptic_cylinder(shape, spacing, 36.0, 21.0, 20.0, angle_deg=33.0))
    pixel = max(spacing[:2])  # a rasterised outline is within one (coarser) pixel of the true one
    assert lesion.longest_diameter_mm == pytest.approx(36.0, abs=pixel)
    assert lesion.perpendicular_diameter_mm == pytest.approx(21.0, abs=pixel)


def test_the_two_diameters_are_perpendicular_and_their_end_points_lie_on_the_measured_slice():
    lesion = single_lesion(elliptic_cylinder((60, 50, 12), (0.7, 1.1, 2.0), 30.0, 15.0, 10.0, angle_deg=25.0))
    long_axis = np.subtract(*lesion.longest_endpoints_mm)
    short_axis = np.subtract(*lesion.perpendicular_endpoints_mm)
    assert np.linalg.norm(long_axis) == pytest.approx(lesion.longest_diameter_mm, abs=1e-6)
    assert np.linalg.norm(short_axis) == pytest.approx(lesion.perpendicular_diameter_mm, abs=0.01)
    assert abs(long_axis @ short_axis) / (np.linalg.norm(long_axis) * np.linalg.norm(short_axis)) < 1e-6
    heights = [p[2] for p in (*lesion.longest_endpoints_mm, *lesion.perpendicular_endpoints_mm)]
    assert np.ptp(heights) < 1e-6  # all on one axial plane


def test_a_grid_rotated_about_the_superior_axis_measures_the_same_lesion():
    rotation = Rotation.from_euler("z", 30, degrees=True).as_matrix()
    lesion = single_lesion(elliptic_cylinder((70, 70, 16), (0.8, 1.2, 2.0), 34.0, 20.0, 16.0, angle_deg=10.0,
                                             direction=rotation))
    assert lesion.longest_diameter_mm == pytest.approx(34.0, abs=1.2)
    assert lesion.perpendicular_diameter_mm == pytest.approx(20.0, abs=1.2)


def test_an_oblique_acquisition_is_measured_on_true_axial_planes():
    # Slices tilted 20° about the left-right axis: the volume is resampled onto axial planes before measuring.
    tilt = Rotation.from_euler("x", 20, degrees=True).as_matrix()
    spacing = (0.9, 0.9, 1.5)
    volume = elliptic_cylinder((80, 80, 40), spacing, 30.0, 16.0, 24.0, angle_deg=40.0, direction=tilt)
    framed = axial_frame(volume)
    assert np.allclose(framed.direction, np.eye(3))
    lesion = single_lesion(volume)
    assert lesion.longest_diameter_mm == pytest.approx(30.0, abs=max(spacing))
    assert lesion.perpendicular_diameter_mm == pytest.approx(16.0, abs=max(spacing))


def test_axial_slices_are_found_when_the_file_is_stored_sagittally():
    # Index axis i runs along S, j along L, k along P: axial slices are array[i, :, :] in storage order.
    sagittal = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    spacing = (2.0, 0.8, 1.0)
    volume = elliptic_cylinder((20, 60, 50), spacing, 28.0, 14.0, 16.0, angle_deg=-20.0, direction=sagittal)
    lesion = single_lesion(volume)
    assert lesion.longest_diameter_mm == pytest.approx(28.0, abs=1.0)
    assert lesion.perpendicular_diameter_mm == pytest.approx(14.0, abs=1.0)
    slices_expected = int(((np.abs(physical_offsets(volume.shape, spacing, sagittal, (0.3, -0.2, 0.0))[2])
                            <= 8.0).any(axis=(1, 2))).sum())
    assert lesion.axial_slices == slices_expected


def test_the_lesion_is_measured_on_the_axial_slice_where_it_is_largest():
    # Ellipsoid with semi-axes 15 × 9 × 10 mm: its largest axial section is the central ellipse 30 × 18 mm,
    # on the slice through the grid centre (index 20 of 41, so z = 20 mm with origin 0 and 1 mm slices).
    x, y, z = physical_offsets((51, 51, 41), (1.0, 1.0, 1.0), shift=(0.0, 0.0, 0.0))
    inside = (x / 15) ** 2 + (y / 9) ** 2 + (z / 10) ** 2 <= 1
    lesion = single_lesion(Volume((inside * Label.ET).astype(np.uint8), (1.0, 1.0, 1.0)))
    assert lesion.longest_diameter_mm == pytest.approx(30.0, abs=1.0)
    assert lesion.perpendicular_diameter_mm == pytest.approx(18.0, abs=1.0)
    assert lesion.longest_endpoints_mm[0][2] == pytest.approx(20.0)


def test_a_ring_enhancing_lesion_is_measured_across_its_outer_edge():
    x, y, z = physical_offsets((60, 60, 20), (1.0, 1.0, 1.0))
    radius = np.hypot(x / 1.2, y)  # outer ellipse 36 × 30 mm, necrotic centre inside
    labels = np.zeros(x.shape, np.uint8)
    slab = np.abs(z) <= 6
    labels[slab & (radius <= 15)] = Label.ET
    labels[slab & (radius <= 10)] = Label.NCR
    lesion = single_lesion(Volume(labels, (1.0, 1.0, 1.0)))
    assert lesion.longest_diameter_mm == pytest.approx(36.0, abs=1.0)
    assert lesion.perpendicular_diameter_mm == pytest.approx(30.0, abs=1.0)


def test_a_lesion_is_measurable_only_when_both_diameters_reach_10_mm():
    narrow = single_lesion(elliptic_cylinder((60, 60, 20), (1.0, 1.0, 1.0), 30.0, 8.0, 12.0))
    wide = single_lesion(elliptic_cylinder((60, 60, 20), (1.0, 1.0, 1.0), 30.0, 12.0, 12.0))
    assert not narrow.measurable and "10 mm" in narrow.reason
    assert wide.measurable and wide.reason == ""


def test_slices_thicker_than_5_mm_need_diameters_of_twice_the_thickness():
    lesion = single_lesion(elliptic_cylinder((40, 40, 8), (1.0, 1.0, 6.0), 11.0, 11.0, 30.0))
    assert min(lesion.longest_diameter_mm, lesion.perpendicular_diameter_mm) >= 10.0
    assert not lesion.measurable and "12 mm" in lesion.reason


def test_a_lesion_seen_on_one_axial_slice_is_not_measurable():
    volume = elliptic_cylinder((50, 50, 9), (1.0, 1.0, 3.0), 25.0, 20.0, 1.0)
    lesion = single_lesion(volume)
    assert lesion.axial_slices == 1 and not lesion.measurable


def four_lesions() -> Volume:
    """Four measurable cylinders of different sizes and one lesion too small to measure."""
    shape, spacing = (120, 120, 20), (1.0, 1.0, 1.0)
    labels = np.zeros(shape, np.uint8)
    for (cx, cy), (long_mm, short_mm) in zip([(-30, -30), (30, -30), (-30, 30), (30, 30), (0, 0)],
                                             [(34, 22), (26, 20), (20, 16), (16, 12), (6, 6)]):
        labels |= elliptic_cylinder(shape, spacing, long_mm, short_mm, 10.0, shift=(cx, cy, 0)).array
    return Volume(labels, spacing)


def test_sum_of_products_adds_the_three_largest_measurable_lesions():
    measurements = measure_labels(four_lesions())
    assert len(measurements.lesions) == 5 and len(measurements.measurable_lesions) == 4
    products = sorted((lesion.product_mm2 for lesion in measurements.measurable_lesions), reverse=True)
    assert measurements.sum_of_products_mm2 == pytest.approx(sum(products[:3]))
    assert len(measurements.target_lesions) == 3
    every = measure_labels(four_lesions(), max_target_lesions=5)
    assert every.sum_of_products_mm2 == pytest.approx(sum(products))


def test_lesions_are_26_connected_components_numbered_largest_first():
    mask = np.zeros((10, 10, 10), bool)
    mask[1:3, 1:3, 1:3] = True
    mask[3, 3, 3] = True  # touches the first cube at a corner only: same lesion under 26-connectivity
    mask[6:9, 6:9, 6:9] = True
    components, count = label_lesions(mask)
    assert count == 2
    assert components[7, 7, 7] == 1 and components[3, 3, 3] == components[1, 1, 1] == 2


def test_volumes_are_those_of_the_pipeline_and_no_enhancing_tumour_gives_no_lesions():
    labels = elliptic_cylinder((40, 40, 10), (1.0, 1.0, 2.0), 20.0, 15.0, 8.0, code=Label.ED)
    measurements = measure_labels(labels)
    assert measurements.volumes_ml == region_volumes_ml(labels)
    assert measurements.lesions == () and measurements.sum_of_products_mm2 == 0.0
    assert not measurements.has_enhancing_disease


def test_measurements_survive_a_round_trip_through_their_dict_form():
    measurements = measure_labels(four_lesions())
    again = TimepointMeasurements.from_dict(measurements.to_dict())
    assert again.target_lesions == measurements.target_lesions
    assert again.sum_of_products_mm2 == pytest.approx(measurements.sum_of_products_mm2, abs=1e-3)
    assert [lesion.measurable for lesion in again.lesions] == [lesion.measurable for lesion in measurements.lesions]
    with pytest.raises(ValueError, match="recomputed"):
        TimepointMeasurements.from_dict({"lesions": []})


def test_brats2018_label_files_are_read_into_internal_codes_and_raw_codes_are_refused(tmp_path):
    labels = elliptic_cylinder((40, 40, 10), (1.0, 1.0, 1.0), 20.0, 15.0, 6.0, code=4)
    path = write_volume(labels, tmp_path / "seg.nii.gz")
    internal = read_label_map(path)
    assert set(np.unique(internal.array)) == {0, int(Label.ET)}
    with pytest.raises(ValueError, match="read_label_map"):
        measure_labels(labels)


def test_a_single_anisotropic_pixel_measures_its_own_edge_lengths():
    longest, perpendicular, *_ = slice_diameters(np.pad(np.ones((1, 1), bool), 2), np.array([0.5, 0, 0]),
                                                 np.array([0, 2.0, 0]))
    assert longest == pytest.approx(2.0, abs=0.01)
    assert perpendicular == pytest.approx(0.5, abs=0.03)  # chords are sampled every 1/20 pixel (0.025 mm)
