"""Realistic follow-up series made from one real case (for tests): the expert's labels and T1c changed the ways
follow-ups change (shrink, grow, split, a new lesion elsewhere), the head repositioned, slices made thick.

Only for tests; nothing made here is stored in the project."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial.transform import Rotation

from TumorSegLib.geometry import resample_to_spacing
from TumorSegLib.labels import Label
from TumorSegLib.registration import resample_moving
from TumorSegLib.volume import Volume, write_volume


def rigid(angles_deg, translation_mm) -> sitk.Transform:
    """A rigid transform: baseline point → the same point in the repositioned head."""
    transform = sitk.Euler3DTransform()
    transform.SetMatrix(Rotation.from_euler("xyz", angles_deg, degrees=True).as_matrix().flatten().tolist())
    transform.SetTranslation([float(t) for t in translation_mm])
    return transform


def _paint(t1c: np.ndarray, labels: np.ndarray, changed: np.ndarray, new_labels: np.ndarray) -> np.ndarray:
    """The T1c where labels changed takes the median intensity of the new class in the original."""
    image = t1c.astype(np.float32).copy()
    brain = t1c > 0
    for code in (Label.ET, Label.NCR, Label.ED):
        if (labels == code).any():
            image[changed & (new_labels == code)] = np.median(t1c[labels == code])
    image[changed & (new_labels == 0)] = np.median(t1c[brain & (labels == 0)])
    return image


def shrink(labels: np.ndarray, t1c: np.ndarray, voxels: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Enhancing rim loses ``voxels`` to necrosis, oedema loses ``voxels`` at its edge."""
    out = labels.copy()
    enhancing = labels == Label.ET
    out[enhancing & ~ndimage.binary_erosion(enhancing, iterations=voxels)] = Label.NCR
    out[(labels == Label.ED) & ~ndimage.binary_erosion(labels > 0, iterations=voxels)] = 0
    return out, _paint(t1c, labels, out != labels, out)


def shrink_whole_tumour(labels: np.ndarray, t1c: np.ndarray, voxels: int) -> tuple[np.ndarray, np.ndarray]:
    """The whole T2/FLAIR abnormality eroded by ``voxels`` (a non-enhancing tumour responding)."""
    out = np.where(ndimage.binary_erosion(labels > 0, iterations=voxels), labels, 0).astype(labels.dtype)
    return out, _paint(t1c, labels, out != labels, out)


def split(labels: np.ndarray, t1c: np.ndarray, gap_voxels: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """The largest enhancing lesion cut in two by a slab of oedema through its centre, across its longest
    in-plane extent (as a lesion splits when its middle stops enhancing)."""
    components, count = ndimage.label(labels == Label.ET, np.ones((3, 3, 3), bool))
    largest = np.argmax(np.bincount(components.ravel())[1:]) + 1
    points = np.argwhere(components == largest)
    axis = int(np.argmax(np.ptp(points[:, :2], axis=0)))  # i or j, whichever the lesion is longer along
    centre = int(points[:, axis].mean())
    slab = np.zeros(labels.shape, bool)
    index = [slice(None)] * 3
    index[axis] = slice(centre - gap_voxels // 2, centre + gap_voxels // 2 + 1)
    slab[tuple(index)] = True
    out = labels.copy()
    out[slab & (components == largest)] = Label.ED
    return out, _paint(t1c, labels, out != labels, out)


def add_lesion(labels: np.ndarray, t1c: np.ndarray, radius_vox: float = 7.0) -> tuple[np.ndarray, np.ndarray]:
    """A new enhancing sphere (with oedema) in normal brain as far as possible from the tumour."""
    brain = t1c > 0
    room = ndimage.distance_transform_edt(labels == 0) * ndimage.binary_erosion(brain, iterations=int(radius_vox) + 4)
    centre = np.unravel_index(np.argmax(room), labels.shape)
    grid = np.indices(labels.shape)
    distance = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre)))
    out = labels.copy()
    out[(distance < radius_vox + 3) & (out == 0)] = Label.ED
    out[distance < radius_vox] = Label.ET
    return out, _paint(t1c, labels, out != labels, out)


def reposition(volume: Volume, transform: sitk.Transform, order: int, spacing=None) -> Volume:
    """The visit as the scanner stores it after the head moved by ``transform`` (optionally on thick slices)."""
    grid = volume if spacing is None else resample_to_spacing(volume, spacing, order=order)
    return resample_moving(volume, grid, transform.GetInverse(), order=order)


def write_series(folder: Path, labels: Volume, t1c: Volume, visits: list[dict], patient: str = "series",
                 **timeline) -> Path:
    """Write the baseline and ``visits`` (``{"id", "date", "labels", "t1c"}`` arrays, optional ``"transform"``,
    ``"spacing"``, clinical fields) and the timeline JSON listing them; returns its path."""
    entries = []
    for visit in [{"id": "baseline", "date": "2024-01-10", "labels": labels.array, "t1c": t1c.array}, *visits]:
        image, label = t1c.with_array(visit["t1c"].astype(np.float32)), labels.with_array(visit["labels"])
        if "transform" in visit:
            label = reposition(label, visit["transform"], 0, visit.get("spacing"))
            image = reposition(image, visit["transform"], 1, visit.get("spacing"))
        write_volume(image, folder / visit["id"] / "t1c.nii.gz")
        write_volume(label, folder / visit["id"] / "seg.nii.gz")
        extra = {key: value for key, value in visit.items() if key in ("steroids", "clinical_status", "new_baseline")}
        entries.append({"id": visit["id"], "date": visit["date"], "images": {"t1c": f"{visit['id']}/t1c.nii.gz"},
                        "segmentation": f"{visit['id']}/seg.nii.gz", "label_convention": "brats2023", **extra})
    path = folder / "timeline.json"
    path.write_text(json.dumps({"schema": "tumorseg-timeline", "schema_version": 2, "patient_id": patient,
                                **timeline, "timepoints": entries}))
    return path
