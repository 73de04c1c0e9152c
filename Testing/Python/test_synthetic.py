import numpy as np

from TumorSegLib.labels import Label
from TumorSegLib.synthetic import make_synthetic_case


def test_synthetic_case_has_all_sequences_and_tumour_labels(synthetic_case):
    assert set(synthetic_case.images) == {"t1", "t1c", "t2", "flair"}
    labels = synthetic_case.labels.array
    for label in (Label.NCR, Label.ED, Label.ET):
        assert (labels == label).sum() > 1000
    for image in synthetic_case.images.values():
        assert image.shape == labels.shape and image.spacing == (1.0, 1.0, 1.0)


def test_contrasts_look_like_glioma_mri(synthetic_case):
    labels = synthetic_case.labels.array
    images = synthetic_case.images
    mean = lambda key, label: float(images[key].array[labels == label].mean())  # noqa: E731
    assert mean("t1c", Label.ET) > 1.3 * mean("t1", Label.ET)  # enhancement
    assert mean("flair", Label.ED) > mean("t1", Label.ED)  # oedema bright on FLAIR
    assert mean("t1c", Label.NCR) < mean("t1c", Label.ET)  # dark necrosis within the rim


def test_same_seed_same_case_other_seed_other_tumour(synthetic_case):
    assert np.array_equal(make_synthetic_case(7).labels.array, synthetic_case.labels.array)
    assert not np.array_equal(make_synthetic_case(8).labels.array, synthetic_case.labels.array)
