"""The MNI ICBM152 2009 template that ships inside the nilearn wheel: brain extraction's atlas, the tissue regions
of the input contrast check and the anatomy of the synthetic sample case.

The files are read from nilearn's package data as its ``load_mni152_*`` functions read them (each scaled to a
maximum of 1; the brain mask is the T1 template above 0.2), without importing nilearn: that import alone took
1.6 s of every run. Arrays derived from them (tissue regions) are kept in a cache folder between runs
(:func:`derived_from_template`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np

from .volume import Volume, atomic_write

__all__ = ["mni_template", "derived_cache_dir", "derived_from_template"]

_FILES = {"t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
          "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
          "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz"}
BRAIN_THRESHOLD = 0.2  # nilearn's load_mni152_brain_mask default


def _data_dir() -> Path:
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("nilearn (which ships the MNI ICBM152 template) is not installed: install "
                                  "TumorSeg's requirements (make setup)")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def _lps_volume(array: np.ndarray, ras_affine: np.ndarray) -> Volume:
    """An array with its NIfTI (RAS) affine as an LPS :class:`Volume`."""
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ras_affine
    zooms = np.linalg.norm(affine[:3, :3], axis=0)
    return Volume(array, tuple(zooms), tuple(affine[:3, 3]), affine[:3, :3] / zooms)


@lru_cache(maxsize=1)
def _read_template() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    import nibabel

    out = {}
    for key, name in _FILES.items():
        image = nibabel.load(_data_dir() / name)
        data = np.asanyarray(image.dataobj).astype(np.float32)
        data /= data.max()
        out[key] = (data, image.affine)
    return out


def mni_template() -> dict[str, Volume]:
    """The 1 mm MNI ICBM152 2009 T1 template, grey- and white-matter maps and brain mask (a fresh copy each call)."""
    template = {key: _lps_volume(data.copy(), affine) for key, (data, affine) in _read_template().items()}
    template["brain"] = template["t1"].with_array((template["t1"].array > BRAIN_THRESHOLD).astype(np.float32))
    return template


def derived_cache_dir() -> Path:
    """Where arrays derived from the template are kept: ``$TUMORSEG_ATLAS_CACHE``, else ``~/.cache/tumorseg/atlas``."""
    return Path(os.environ.get("TUMORSEG_ATLAS_CACHE", Path.home() / ".cache" / "tumorseg" / "atlas"))


def derived_from_template(name: str, recipe: str, derive: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """``derive()``'s arrays, derived once and then read back from :func:`derived_cache_dir` (0.1 s, against the
    seconds a derivation on the 1 mm template takes in every run).

    The file's name holds ``name`` and a key made of ``recipe`` (every parameter of the derivation, so that a changed
    one is derived anew) and of the template files (a new nilearn, likewise). A file that cannot be read (cut short,
    damaged) is derived again and replaced, always through a temporary name; a folder that cannot be written costs
    the time only.
    """
    files = [_data_dir() / file_name for file_name in sorted(_FILES.values())]
    stamp = repr((recipe, [(path.name, path.stat().st_size, path.stat().st_mtime_ns) for path in files]))
    path = derived_cache_dir() / f"{name}-{hashlib.sha256(stamp.encode()).hexdigest()[:16]}.npz"
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {key: stored[key] for key in stored.files}
    except Exception:  # noqa: BLE001 - absent or unreadable: whatever the reason, derive it again
        pass
    arrays = derive()
    try:
        atomic_write(path, lambda partial: np.savez_compressed(partial, **arrays))
    except OSError:
        pass  # not kept: derived again next time
    return arrays
