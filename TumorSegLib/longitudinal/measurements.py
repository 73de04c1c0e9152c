"""Per-visit tumour measurements: region volumes and automatic bidimensional (RANO) lesion diameters.

Volumes (mL) of NCR, ED, ET, TC and WT come from :func:`TumorSegLib.labels.region_volumes_ml`.

Bidimensional measurement, as a radiologist does it with calipers on axial post-contrast T1:

* a lesion is a 26-connected component of enhancing tumour (ET);
* each lesion's axial cross-sections are filled (a ring of enhancement around necrosis is measured across
  its outer edge, as calipers are), and the slice with the largest filled area is chosen;
* on that slice the longest diameter is the largest distance between two points of the lesion's outline
  (maximum Feret diameter), and the perpendicular diameter is the longest chord inside the lesion at a
  right angle to it (it need not cross the first);
* outlines are taken at pixel edges (half-way between a lesion pixel and a background pixel), so a
  rasterised ellipse of true diameter D measures D within about one pixel, with no systematic bias;
* distances are in mm through the voxel spacing *and* direction, so anisotropic or rotated grids measure
  right. "Axial" is the slice plane most perpendicular to the patient's superior (S) axis; when even that
  plane is tilted by more than ``max_tilt_deg`` (an oblique acquisition), the lesion map is resampled
  (nearest neighbour) onto an axis-aligned LPS grid first.

A lesion is measurable (RANO) when both diameters reach ``min_diameter_mm`` (10 mm; twice the slice
thickness when slices are thicker than 5 mm) and it is seen on at least two axial slices. The sum of
products of perpendicular diameters (SPD) is taken over the target lesions: the largest measurable
lesions by product, at most ``max_target_lesions`` (3, RANO 2.0; RANO 2010 allowed 5).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..labels import Label, region_volumes_ml, to_internal_labels
from ..volume import Volume, read_volume
from .diameters import axial_frame, lps, slice_diameters, slice_normal

__all__ = [
    "MIN_DIAMETER_MM",
    "MIN_LESION_ML",
    "MAX_TARGET_LESIONS",
    "LesionMeasurement",
    "TimepointMeasurements",
    "label_lesions",
    "lesion_mask",
    "measure_lesions",
    "measure_labels",
    "read_label_map",
]

MIN_DIAMETER_MM = 10.0
# Components smaller than this (30 mm³, a sphere of 4 mm) are specks of a segmentation, not lesions a reader
# would follow: left out of lesion tracking (their voxels still count in the volumes).
MIN_LESION_ML = 0.03
MAX_TARGET_LESIONS = 3  # RANO 2.0 target lesions; RANO 2010 allowed up to 5
MIN_AXIAL_SLICES = 2
# Slices thicker than this need diameters of twice the slice thickness to be measurable (RANO).
THICK_SLICE_MM = 5.0

Point = tuple[float, float, float]


@dataclass(frozen=True)
class LesionMeasurement:
    """One enhancing lesion of one visit.

    Attributes:
        index: component number, 1 = largest volume (the value in :func:`label_lesions`' map).
        volume_ml: enhancing volume of the lesion (mL).
        centroid_mm: LPS centre of mass (mm).
        axial_slices: number of axial slices the lesion appears on.
        longest_diameter_mm: longest in-plane diameter on the measured slice (mm).
        perpendicular_diameter_mm: longest diameter at a right angle to it on the same slice (mm).
        longest_endpoints_mm: the two LPS end points of the longest diameter.
        perpendicular_endpoints_mm: the two LPS end points of the perpendicular diameter.
        measurable: whether RANO counts it as measurable disease.
        reason: why it is not measurable ("" when it is).
    """

    index: int
    volume_ml: float
    centroid_mm: Point
    axial_slices: int
    longest_diameter_mm: float
    perpendicular_diameter_mm: float
    longest_endpoints_mm: tuple[Point, Point]
    perpendicular_endpoints_mm: tuple[Point, Point]
    measurable: bool
    reason: str = ""

    @property
    def product_mm2(self) -> float:
        """Product of the two perpendicular diameters (mm²)."""
        return self.longest_diameter_mm * self.perpendicular_diameter_mm

    def to_dict(self) -> dict:
        out = asdict(self)
        out["product_mm2"] = round(self.product_mm2, 3)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "LesionMeasurement":
        def point(p) -> Point:
            return tuple(float(c) for c in p)  # type: ignore[return-value]

        return cls(int(data["index"]), float(data["volume_ml"]), point(data["centroid_mm"]),
                   int(data["axial_slices"]), float(data["longest_diameter_mm"]),
                   float(data["perpendicular_diameter_mm"]),
                   tuple(point(p) for p in data["longest_endpoints_mm"]),  # type: ignore[arg-type]
                   tuple(point(p) for p in data["perpendicular_endpoints_mm"]),  # type: ignore[arg-type]
                   bool(data["measurable"]), str(data.get("reason", "")))


@dataclass(frozen=True)
class TimepointMeasurements:
    """Everything measured on one visit's label map.

    Attributes:
        volumes_ml: mL of NCR, ED, ET, TC, WT.
        lesions: every enhancing lesion, largest volume first.
        target_lesions: ``index`` of the lesions summed in the SPD, largest product first.
        sum_of_products_mm2: sum of products of perpendicular diameters of the target lesions (mm²).
        settings: the parameters the measurement used (minimum diameter, number of targets, tilt).
    """

    volumes_ml: dict[str, float]
    lesions: tuple[LesionMeasurement, ...] = ()
    target_lesions: tuple[int, ...] = ()
    sum_of_products_mm2: float = 0.0
    settings: dict = field(default_factory=dict)
    t2_lesions: tuple[LesionMeasurement, ...] = ()  # T2/FLAIR (whole-tumour) lesions, for non-enhancing disease

    def lesions_of(self, region: str) -> tuple[LesionMeasurement, ...]:
        """The enhancing (``ET``) or T2/FLAIR (``WT``) lesions."""
        return self.lesions if region == "ET" else self.t2_lesions

    @property
    def has_enhancing_disease(self) -> bool:
        """Whether any enhancing tumour remains."""
        return self.volumes_ml.get("ET", 0.0) > 0 or bool(self.lesions)

    @property
    def measurable_lesions(self) -> tuple[LesionMeasurement, ...]:
        return tuple(lesion for lesion in self.lesions if lesion.measurable)

    def to_dict(self) -> dict:
        return {"volumes_ml": dict(self.volumes_ml), "sum_of_products_mm2": round(self.sum_of_products_mm2, 3),
                "target_lesions": list(self.target_lesions), "lesions": [lesion.to_dict() for lesion in self.lesions],
                "t2_lesions": [lesion.to_dict() for lesion in self.t2_lesions], "settings": dict(self.settings)}

    @classmethod
    def from_dict(cls, data: dict) -> "TimepointMeasurements":
        """Rebuild from :meth:`to_dict` output.

        Raises:
            ValueError: if a required field is missing or of the wrong type.
        """
        try:
            volumes = {str(k): float(v) for k, v in data["volumes_ml"].items()}
            lesions = tuple(LesionMeasurement.from_dict(item) for item in data.get("lesions", []))
            t2_lesions = tuple(LesionMeasurement.from_dict(item) for item in data.get("t2_lesions", []))
            return cls(volumes, lesions, tuple(int(i) for i in data.get("target_lesions", [])),
                       float(data.get("sum_of_products_mm2", 0.0)), dict(data.get("settings", {})), t2_lesions)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"measurements are malformed ({error!r}); delete them to have them recomputed") from error


def read_label_map(path: str | os.PathLike, convention: str | None = None) -> Volume:
    """Read a tumour label file and convert it to internal codes {0: none, 1: NCR, 2: ED, 3: ET}.

    Args:
        path: NIfTI/NRRD/... label map.
        convention: ``'brats2018'`` (ET = 4), ``'brats2023'`` (ET = 3) or ``None`` to detect it.
    """
    volume = read_volume(Path(path))
    if not np.issubdtype(volume.array.dtype, np.integer):
        rounded = np.rint(volume.array)
        if not np.allclose(rounded, volume.array):
            raise ValueError(f"{path} holds non-integer values: it is an image, not a label map")
        volume = volume.with_array(rounded.astype(np.int16))
    try:
        return volume.with_array(to_internal_labels(volume.array, convention))
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error


def label_lesions(enhancing: np.ndarray) -> tuple[np.ndarray, int]:
    """Number the 26-connected components of a boolean mask, 1 = largest (ties: first in index order).

    Args:
        enhancing: boolean array (I, J, K).

    Returns:
        (int32 array of component numbers, 0 = background; number of components).
    """
    from scipy import ndimage

    components, count = ndimage.label(enhancing, structure=np.ones((3, 3, 3), bool))
    if count == 0:
        return components.astype(np.int32), 0
    sizes = np.bincount(components.ravel())[1:]
    order = np.argsort(-sizes, kind="stable")  # stable: equal sizes keep scan order, so numbering is repeatable
    relabel = np.zeros(count + 1, np.int32)
    relabel[order + 1] = np.arange(1, count + 1, dtype=np.int32)
    return relabel[components], int(count)


def lesion_mask(labels: np.ndarray, region: str = "ET") -> np.ndarray:
    """The voxels whose lesions are measured: enhancing tumour (``ET``), or the T2/FLAIR abnormality (``WT``,
    every tumour label) for the non-enhancing assessment."""
    if region not in ("ET", "WT"):
        raise ValueError(f"lesions are measured on ET or WT, got {region!r}")
    return labels == Label.ET if region == "ET" else labels > 0


def measure_lesions(labels: Volume, min_diameter_mm: float = MIN_DIAMETER_MM, max_tilt_deg: float = 1.0,
                    region: str = "ET") -> tuple[LesionMeasurement, ...]:
    """Bidimensional measurement of every lesion of an internal label map: enhancing (``region='ET'``) or
    T2/FLAIR (``'WT'``).

    Args:
        labels: internal label map (I, J, K) with codes {0, 1, 2, 3}; any spacing and direction.
        min_diameter_mm: smallest diameter of measurable disease (raised to twice the slice thickness for
            slices thicker than 5 mm).
        max_tilt_deg: see :func:`axial_frame`.

    Returns:
        One :class:`LesionMeasurement` per 26-connected ET component, largest volume first.
    """
    from scipy import ndimage

    components, count = label_lesions(lesion_mask(labels.array, region))
    if count == 0:
        return ()
    # Sizes and centres of mass from the lesion voxels only (cheaper than scanning the whole grid per lesion).
    where = np.nonzero(components)
    numbers = components[where]
    voxels = np.bincount(numbers, minlength=count + 1)
    centroids = np.stack([np.bincount(numbers, weights=axis, minlength=count + 1)[1:] for axis in where], axis=1)
    centroids /= voxels[1:, None]

    framed = axial_frame(labels.with_array(components), max_tilt_deg)
    step_i, step_j, step_k = (framed.direction * np.array(framed.spacing)).T
    slice_mm = float(abs(step_k @ slice_normal(framed.direction)))
    needed = max(min_diameter_mm, 2 * slice_mm) if slice_mm > THICK_SLICE_MM else min_diameter_mm
    boxes = ndimage.find_objects(framed.array, max_label=count)

    lesions = []
    for index in range(1, count + 1):
        centroid = lps(labels, centroids[index - 1])
        volume_ml = float(voxels[index]) * labels.voxel_volume_ml
        box = boxes[index - 1]
        if box is None:  # lost when an oblique grid was resampled: smaller than a voxel of the new grid
            lesions.append(LesionMeasurement(index, volume_ml, centroid, 0, 0.0, 0.0, (centroid, centroid),
                                             (centroid, centroid), False, "too small to measure"))
            continue
        mask = framed.array[box] == index
        filled = np.stack([ndimage.binary_fill_holes(mask[:, :, k]) for k in range(mask.shape[2])], axis=2)
        areas = filled.sum(axis=(0, 1))
        slices_seen = int((areas > 0).sum())
        middle = (mask.shape[2] - 1) / 2
        best = max(range(mask.shape[2]), key=lambda k: (areas[k], -abs(k - middle)))
        longest, perpendicular, longest_ends, perpendicular_ends = slice_diameters(filled[:, :, best], step_i, step_j)
        corner = np.array([s.start for s in box], dtype=float)
        k = corner[2] + best
        ends = tuple(tuple(lps(framed, (corner[0] + e[0], corner[1] + e[1], k)) for e in pair)
                     for pair in (longest_ends, perpendicular_ends))
        reasons = []
        if min(longest, perpendicular) < needed:
            reasons.append(f"diameters {longest:.1f} × {perpendicular:.1f} mm, both must reach {needed:.0f} mm")
        if slices_seen < MIN_AXIAL_SLICES:
            reasons.append(f"seen on {slices_seen} axial slice(s), needs {MIN_AXIAL_SLICES}")
        lesions.append(LesionMeasurement(index, volume_ml, centroid, slices_seen, longest, perpendicular,
                                         ends[0], ends[1], not reasons, "; ".join(reasons)))  # type: ignore[arg-type]
    return tuple(lesions)


def measure_labels(labels: Volume, min_diameter_mm: float = MIN_DIAMETER_MM,
                   max_target_lesions: int = MAX_TARGET_LESIONS, max_tilt_deg: float = 1.0) -> TimepointMeasurements:
    """Volumes, lesion diameters and sum of products of one visit's internal label map.

    Args:
        labels: internal label map (I, J, K), codes {0, 1 NCR, 2 ED, 3 ET}, on the visit's own grid.
        min_diameter_mm: smallest diameter of measurable disease.
        max_target_lesions: most measurable lesions summed into the SPD (largest products first).
        max_tilt_deg: see :func:`axial_frame`.

    Raises:
        ValueError: if the map holds codes other than 0-3 (convert BraTS 2018 maps with
            :func:`TumorSegLib.labels.to_internal_labels` or :func:`read_label_map`).
    """
    if labels.array.ndim != 3:
        raise ValueError(f"a label map is 3D, got shape {labels.array.shape}")
    codes = set(np.unique(labels.array).tolist())
    if not codes <= {0, 1, 2, 3}:
        raise ValueError(f"label map holds codes {sorted(codes - {0, 1, 2, 3})}; internal codes are 0-3 "
                         "(read BraTS 2018 files, where ET = 4, with read_label_map)")
    if max_target_lesions < 1:
        raise ValueError(f"max_target_lesions must be at least 1, got {max_target_lesions}")
    lesions = measure_lesions(labels, min_diameter_mm, max_tilt_deg)
    t2_lesions = measure_lesions(labels, min_diameter_mm, max_tilt_deg, region="WT")
    targets = sorted((lesion for lesion in lesions if lesion.measurable), key=lambda lesion: -lesion.product_mm2)
    targets = targets[:max_target_lesions]
    settings = {"min_diameter_mm": min_diameter_mm, "max_target_lesions": max_target_lesions,
                "max_tilt_deg": max_tilt_deg}
    return TimepointMeasurements(region_volumes_ml(labels), lesions, tuple(t.index for t in targets),
                                 float(sum(t.product_mm2 for t in targets)), settings, t2_lesions)
