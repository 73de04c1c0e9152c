import numpy as np
import pytest
import SimpleITK as sitk

from TumorSegLib.volume import Volume, read_volume, same_grid, write_volume


def oblique_volume():
    angle = np.deg2rad(20)
    direction = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    array = np.arange(12 * 10 * 8, dtype=np.int16).reshape(12, 10, 8)
    return Volume(array, (0.9, 1.1, 3.0), (-10.0, 20.0, 5.5), direction)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_write_then_read_keeps_voxels_and_geometry(tmp_path, suffix):
    volume = oblique_volume()
    back = read_volume(write_volume(volume, tmp_path / f"image{suffix}"))
    assert np.array_equal(back.array, volume.array)
    assert same_grid(back, volume)


def test_array_index_order_is_ijk():
    volume = oblique_volume()
    image = volume.to_sitk()
    assert image.GetSize() == (12, 10, 8)
    assert image[3, 2, 1] == volume.array[3, 2, 1]


def test_affine_maps_index_to_lps_like_itk():
    volume = oblique_volume()
    point = volume.affine @ np.array([3, 2, 1, 1.0])
    assert np.allclose(point[:3], volume.to_sitk().TransformIndexToPhysicalPoint((3, 2, 1)))


def write_dicom_series(volume: Volume, folder):
    """A minimal MR DICOM series, one file per slice, through SimpleITK."""
    image = sitk.Cast(volume.to_sitk(), sitk.sitkInt16)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series_uid = "1.2.826.0.1.3680043.2.1125.1.1"
    direction = image.GetDirection()
    orientation = "\\".join(str(v) for v in (direction[0], direction[3], direction[6],
                                             direction[1], direction[4], direction[7]))
    for k in range(image.GetDepth()):
        slice_image = image[:, :, k]
        for tag, value in {"0008|0060": "MR", "0020|000e": series_uid, "0020|000d": "1.2.3.4",
                           "0008|103e": "AX T1 POST GD", "0020|0037": orientation,
                           "0020|0032": "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, k)))),
                           "0020|0013": str(k + 1), "0008|0018": f"{series_uid}.{k + 1}",
                           "0028|0030": f"{image.GetSpacing()[1]}\\{image.GetSpacing()[0]}",
                           "0018|0050": str(image.GetSpacing()[2])}.items():
            slice_image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(slice_image)


def test_reads_a_dicom_series_folder(tmp_path):
    volume = Volume(np.arange(16 * 12 * 6, dtype=np.int16).reshape(16, 12, 6), (0.8, 0.8, 2.5), (1.0, 2.0, 3.0))
    write_dicom_series(volume, tmp_path)
    back = read_volume(tmp_path)
    assert back.shape == volume.shape
    assert np.array_equal(back.array, volume.array)
    assert np.allclose(back.spacing, volume.spacing) and np.allclose(back.origin, volume.origin)


def test_missing_file_says_which(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.nii.gz"):
        read_volume(tmp_path / "nothere.nii.gz")


def test_a_2d_image_is_refused(tmp_path):
    path = tmp_path / "slice.nrrd"
    sitk.WriteImage(sitk.Image(32, 32, sitk.sitkInt16), str(path))
    with pytest.raises(ValueError, match="2D image"):
        read_volume(path)


def test_a_file_that_is_not_an_image_is_refused(tmp_path):
    path = tmp_path / "notes.nii.gz"
    path.write_text("not an image")
    with pytest.raises(ValueError, match="notes.nii.gz is not a NIfTI image.*export it again"):
        read_volume(path)


def test_an_empty_folder_is_not_a_dicom_series(tmp_path):
    with pytest.raises(ValueError, match="no DICOM series"):
        read_volume(tmp_path)


def test_volume_rejects_other_dimensions():
    with pytest.raises(ValueError, match="3D"):
        Volume(np.zeros((4, 4)))


def test_nan_voxels_in_a_nifti_file_are_reported_not_hidden(tmp_path):
    import nibabel as nib

    array = np.ones((8, 8, 8), np.float32)
    array[2, 3, 4] = np.nan
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(tmp_path / "nan.nii.gz"))
    with pytest.raises(ValueError, match="1 NaN"):
        read_volume(tmp_path / "nan.nii.gz")
