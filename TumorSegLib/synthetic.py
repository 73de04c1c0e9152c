"""A synthetic glioma case built on the MNI ICBM152 2009 template that ships inside the nilearn wheel.

The case has the four sequences with plausible relative contrasts (from the template's T1 and its grey
matter / white matter maps), an irregular tumour — necrotic core, enhancing rim, oedema spreading
along white matter — with mild mass effect, smooth bias fields and noise, and its ground truth. It is
made on the fly (nothing cut from real patient data) for the demo and fast tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from .atlas import mni_template
from .labels import Label, LabelConvention, from_internal_labels
from .sequences import FILE_SUFFIXES
from .volume import Volume, write_volume

__all__ = ["SyntheticCase", "make_synthetic_case", "write_synthetic_case", "add_synthetic_head"]

# Mean intensity per tissue (CSF, GM, WM, NCR, ED, ET) relative to white matter on T1, per sequence.
CONTRASTS: dict[str, tuple[float, ...]] = {
    "t1": (0.33, 0.72, 1.00, 0.38, 0.62, 0.72),
    "t1c": (0.33, 0.74, 1.00, 0.36, 0.64, 1.45),
    "t2": (1.60, 0.85, 0.55, 1.45, 1.20, 0.95),
    "flair": (0.25, 0.85, 0.65, 0.75, 1.45, 1.10),
}


@dataclass(frozen=True)
class SyntheticCase:
    """Four sequences and the internal-code ground truth, all on one grid."""

    images: dict[str, Volume]
    labels: Volume


def _smooth_noise(shape, sigma: float, rng: np.random.Generator) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return field / (field.std() + 1e-8)


def _tumour(shape, centre, radius_mm: float, wm: np.ndarray, brain: np.ndarray, rng) -> np.ndarray:
    """Internal label map of an irregular glioma centred at ``centre`` (voxel indices, 1 mm grid)."""
    # Work in a box around the centre: the tumour never reaches further than this.
    reach = int(np.ceil(radius_mm * 1.6 * 1.8 + 14))
    box = tuple(slice(max(0, c - reach), min(n, c + reach + 1)) for c, n in zip(centre, shape))
    local_shape = tuple(b.stop - b.start for b in box)
    grid = np.indices(local_shape, dtype=np.float32)
    distance = np.sqrt(sum((g + b.start - c) ** 2 for g, b, c in zip(grid, box, centre)))
    core_radius = radius_mm * (1 + 0.18 * _smooth_noise(local_shape, 6.0, rng))
    inside = brain[box]
    local = np.zeros(local_shape, np.uint8)
    # Oedema: a wider blob that prefers white matter (finger-like spread), inside the brain.
    oedema_reach = core_radius * 1.6 + 8 * wm[box] * (1 + 0.4 * _smooth_noise(local_shape, 4.0, rng))
    local[(distance < oedema_reach) & inside] = Label.ED
    rim = 3.0 + 1.5 * np.abs(_smooth_noise(local_shape, 3.0, rng))
    local[(distance < core_radius) & inside] = Label.ET
    local[(distance < core_radius - rim) & inside] = Label.NCR
    labels = np.zeros(shape, np.uint8)
    labels[box] = local
    return labels


def make_synthetic_case(seed: int = 7, radius_mm: float = 14.0, noise: float = 0.03) -> SyntheticCase:
    """Build a synthetic case; the same ``seed`` gives the same case."""
    rng = np.random.default_rng(seed)
    template = mni_template()
    brain = template["brain"].array > 0.5
    gm, wm = template["gm"].array, template["wm"].array
    csf = np.clip(1.0 - gm - wm, 0, 1) * brain
    shape = brain.shape
    # A centre in deep white matter of one hemisphere, away from the midline.
    candidates = np.argwhere(ndimage.gaussian_filter(wm, 4) > 0.8)
    candidates = candidates[np.abs(candidates[:, 0] - shape[0] / 2) > 22]
    centre = candidates[rng.integers(len(candidates))]
    labels = _tumour(shape, centre, radius_mm, wm, brain, rng)

    tissue = np.stack([csf, gm, wm]) * brain
    tissue = tissue / np.maximum(tissue.sum(0), 1e-6) * brain
    images = {}
    t1_texture = template["t1"].array / max(float(template["t1"].array[wm > 0.9].mean()), 1e-6)
    for key, contrast in CONTRASTS.items():
        healthy = np.tensordot(np.asarray(contrast[:3], np.float32), tissue, axes=1)
        if key == "t1":  # real anatomical texture where the template provides it
            healthy = 0.5 * healthy + 0.5 * t1_texture * brain
        image = healthy.copy()
        texture = 1 + 0.05 * _smooth_noise(shape, 2.0, rng)
        for label, value in zip((Label.NCR, Label.ED, Label.ET), contrast[3:]):
            mask = labels == label
            image[mask] = value * texture[mask]
        image = ndimage.gaussian_filter(image, 0.6)
        # A smooth bias field, made at 1/8 resolution (a wide Gaussian on the full grid is slow).
        coarse = _smooth_noise(tuple(-(-n // 8) for n in shape), 5.0, rng)
        bias = np.exp(0.08 * ndimage.zoom(coarse, 8, order=1)[tuple(slice(0, n) for n in shape)])
        image = image * bias + noise * rng.standard_normal(shape).astype(np.float32)
        image = np.where(brain, np.clip(image, 0, None), 0) * 800.0
        images[key] = template["t1"].with_array(image.astype(np.float32))
    return SyntheticCase(images, template["t1"].with_array(labels))


def write_synthetic_case(out_dir: Path, case: str = "TumorSeg_Synthetic_1", seed: int = 7) -> dict[str, Path]:
    """Write a synthetic case in BraTS layout (``<out>/<case>/<case>_t1.nii.gz`` …, ``_seg`` in 2018 codes)."""
    synthetic = make_synthetic_case(seed)
    folder = Path(out_dir) / case
    paths = {key: write_volume(volume, folder / f"{case}_{FILE_SUFFIXES[key][0]}.nii.gz")
             for key, volume in synthetic.images.items()}
    seg = synthetic.labels.with_array(from_internal_labels(synthetic.labels.array, LabelConvention.BRATS2018))
    paths["label"] = write_volume(seg, folder / f"{case}_seg.nii.gz")
    return paths


# Head layers outside the brain: (outer distance from the brain in mm, intensity relative to white matter)
# per sequence: CSF/meninges, skull, scalp fat, then air.
HEAD_LAYERS: dict[str, tuple[tuple[float, float], ...]] = {
    "t1": ((3.0, 0.30), (9.0, 0.08), (15.0, 1.30)),
    "t1c": ((3.0, 0.35), (9.0, 0.08), (15.0, 1.30)),
    "t2": ((3.0, 1.60), (9.0, 0.10), (15.0, 0.90)),
    "flair": ((3.0, 0.25), (9.0, 0.08), (15.0, 1.00)),
}


def add_synthetic_head(image: Volume, brain: np.ndarray, sequence: str, seed: int = 0) -> Volume:
    """Wrap a skull-stripped image in CSF, skull and scalp layers over a noisy air background.

    Gives head images with a known brain mask (``brain``) to measure brain extraction on real brains.
    Layer intensities are relative to the image's white-matter level (its 75th percentile in the brain).
    """
    rng = np.random.default_rng(seed)
    level = float(np.percentile(image.array[brain], 75))
    distance = ndimage.distance_transform_edt(~brain, sampling=image.spacing)
    out = np.where(brain, image.array, 0).astype(np.float32)
    inner = 0.0
    for outer, value in HEAD_LAYERS[sequence]:
        shell = (distance > inner) & (distance <= outer)
        out[shell] = value * level * (1 + 0.05 * rng.standard_normal(int(shell.sum())))
        inner = outer
    air = distance > inner
    out[air] = np.abs(rng.normal(0, 0.02 * level, int(air.sum())))
    return image.with_array(out)
