import numpy as np

from TumorSegLib.labels import Label
from TumorSegLib.postprocessing import PostProcessing, postprocess, remove_small_components
from TumorSegLib.volume import Volume


def probabilities(shape=(40, 40, 40)):
    p = np.zeros((3, *shape), np.float32)
    p[0, 5:30, 5:30, 5:30] = 0.9  # WT
    p[1, 10:25, 10:25, 10:25] = 0.8  # TC
    p[2, 12:20, 12:20, 12:20] = 0.7  # ET
    return p


def test_labels_follow_the_nested_regions():
    labels = postprocess(Volume(probabilities())).array
    assert labels[6, 6, 6] == Label.ED
    assert labels[11, 11, 11] == Label.NCR
    assert labels[15, 15, 15] == Label.ET
    assert labels[0, 0, 0] == 0


def test_enhancing_outside_the_core_extends_the_core():
    p = probabilities()
    p[2, 27:29, 27:29, 27:29] = 0.9  # ET inside WT, outside TC
    labels = postprocess(Volume(p)).array
    assert labels[27, 27, 27] == Label.ET


def test_small_components_are_removed_and_geometry_kept():
    p = probabilities()
    p[0, 35:37, 35:37, 35:37] = 0.9  # 8 voxels = 0.008 mL at 1 mm
    volume = Volume(p, spacing=(1.0, 1.0, 1.0), origin=(5.0, 6.0, 7.0))
    labels = postprocess(volume, PostProcessing(min_component_ml=0.1))
    assert labels.array[36, 36, 36] == 0
    assert labels.array[6, 6, 6] == Label.ED
    assert labels.origin == (5.0, 6.0, 7.0)


def test_component_size_is_in_millilitres_so_spacing_counts():
    p = probabilities()
    p[0, 35:37, 35:37, 35:37] = 0.9  # 8 voxels of 27 mm^3 = 0.216 mL at 3 mm
    labels = postprocess(Volume(p, spacing=(3.0, 3.0, 3.0)), PostProcessing(min_component_ml=0.1))
    assert labels.array[36, 36, 36] == Label.ED


def test_tiny_total_enhancement_becomes_core():
    p = probabilities()
    p[2] = 0
    p[2, 15:17, 15:17, 15:17] = 0.9
    labels = postprocess(Volume(p), PostProcessing(min_enhancing_ml=0.5)).array
    assert not (labels == Label.ET).any()
    assert labels[15, 15, 15] == Label.NCR


def test_remove_small_components_keeps_large_ones():
    mask = np.zeros((20, 20, 20), bool)
    mask[1:3, 1:3, 1:3] = True
    mask[10:18, 10:18, 10:18] = True
    kept = remove_small_components(mask, 9)
    assert not kept[1, 1, 1] and kept[12, 12, 12]
