"""The MNI ICBM152 2009 template that ships inside the nilearn wheel: brain extraction's atlas and the
anatomy of the synthetic sample case."""

from __future__ import annotations

import numpy as np

from .volume import Volume

__all__ = ["mni_template"]


def _nibabel_to_volume(image) -> Volume:
    """A nibabel image (RAS affine) as an LPS :class:`Volume`."""
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ image.affine
    zooms = np.linalg.norm(affine[:3, :3], axis=0)
    return Volume(np.asarray(image.get_fdata(), dtype=np.float32), tuple(zooms), tuple(affine[:3, 3]),
                  affine[:3, :3] / zooms)


def mni_template() -> dict[str, Volume]:
    """The 1 mm MNI ICBM152 2009 T1 template, grey- and white-matter maps and brain mask from nilearn."""
    from nilearn import datasets

    return {
        "t1": _nibabel_to_volume(datasets.load_mni152_template(resolution=1)),
        "gm": _nibabel_to_volume(datasets.load_mni152_gm_template(resolution=1)),
        "wm": _nibabel_to_volume(datasets.load_mni152_wm_template(resolution=1)),
        "brain": _nibabel_to_volume(datasets.load_mni152_brain_mask(resolution=1)),
    }
