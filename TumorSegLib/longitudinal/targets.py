"""Lesion identity over visits: target lesions chosen at the baseline and followed, non-target and new lesions.

RANO 2.0 measures the *same* lesions at every visit: up to three measurable target lesions chosen at the
baseline (largest products first), every other baseline lesion non-target. Each visit's lesions (26-connected
components of the assessed region, numbered as its measurements) are mapped into the first baseline's space
through the visit's alignment and matched to the lesions known so far:

* a component within ``tolerance_mm`` of a known lesion's footprint (every place it has occupied) is that
  lesion; one lesion matched by several components has *split*: its product is the sum of the parts';
* a component touching several known lesions (at least a fifth of its voxels nearest to each) *merges* them:
  it counts for the target among them (else the largest share), the others read "merged into …";
* a component near no earlier tumour is a *new* lesion (N1, N2, … followed from then on);
* a known lesion with no component is *gone* (product 0).

Footprints grow with every match, so a lesion that grows or drifts stays itself. A visit marked as a new
baseline starts over (new targets).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..registration import resample_moving
from ..volume import Volume
from .measurements import MAX_TARGET_LESIONS, LesionMeasurement, label_lesions, lesion_mask

if TYPE_CHECKING:
    import SimpleITK as sitk

__all__ = ["VisitLesions", "LesionAtVisit", "SeriesLesions", "track_series"]

_MERGE_SHARE = 0.2  # share of a component's voxels nearest to a second lesion for it to count as merged


@dataclass(frozen=True)
class VisitLesions:
    """One visit's lesions of the assessed region, and how to reach the common space.

    Attributes:
        labels: the visit's internal label map on its own grid.
        lesions: its lesion measurements of that region (``index`` = component number).
        to_visit: maps first-baseline points to this visit's points (its alignment).
        new_baseline: the visit starts a new series (new targets).
    """

    id: str
    labels: Volume
    lesions: tuple[LesionMeasurement, ...]
    to_visit: "sitk.Transform"
    new_baseline: bool = False


@dataclass(frozen=True)
class LesionAtVisit:
    """A followed lesion at one visit (one row of the per-lesion list)."""

    visit: str
    lesion: str  # T1-T3 targets, NT1.. non-targets, N1.. new lesions
    role: str  # "target", "non-target" or "new"
    state: str  # "present", "split into N parts", "merged into T1", "gone", "new"
    components: tuple[int, ...]
    longest_mm: float
    perpendicular_mm: float
    product_mm2: float
    volume_ml: float
    measurable: bool

    def as_dict(self) -> dict:
        return {**self.__dict__, "components": list(self.components), "product_mm2": round(self.product_mm2, 2),
                "longest_mm": round(self.longest_mm, 2), "perpendicular_mm": round(self.perpendicular_mm, 2),
                "volume_ml": round(self.volume_ml, 3)}


@dataclass
class SeriesLesions:
    """Every visit's followed lesions and what the rules need from them."""

    rows: list[LesionAtVisit] = field(default_factory=list)
    spd_mm2: dict[str, float] = field(default_factory=dict)  # sum of the target lesions' products
    new: dict[str, tuple[int, int]] = field(default_factory=dict)  # (new lesions, new measurable lesions)
    non_target_ml: dict[str, float] = field(default_factory=dict)  # volume of the baseline's non-target lesions
    baseline_of: dict[str, str] = field(default_factory=dict)  # the series baseline of each visit

    def at(self, visit: str) -> list[LesionAtVisit]:
        return [row for row in self.rows if row.visit == visit]


@dataclass
class _Lesion:
    name: str
    role: str
    footprint: np.ndarray


def _mapped_components(visit: VisitLesions, grid: Volume, region: str) -> np.ndarray:
    components, _ = label_lesions(lesion_mask(visit.labels.array, region))
    mapped = resample_moving(visit.labels.with_array(components.astype(np.int32)), grid, visit.to_visit, order=0)
    return mapped.array


def _centroid_index(lesion: LesionMeasurement, visit: VisitLesions, grid: Volume) -> tuple[int, int, int] | None:
    """The first-baseline voxel of a lesion too small to survive resampling (its centre of mass)."""
    point = visit.to_visit.GetInverse().TransformPoint(lesion.centroid_mm)
    index = np.rint(np.linalg.solve(grid.direction * np.array(grid.spacing), np.subtract(point, grid.origin)))
    if np.any(index < 0) or np.any(index >= grid.shape):
        return None
    return tuple(int(i) for i in index)  # type: ignore[return-value]


def _footprint(lesion: LesionMeasurement, visit: VisitLesions, mapped: np.ndarray, grid: Volume) -> np.ndarray:
    """Where a lesion lies in the common space: its voxels, or its centre for one too small to resample."""
    voxels = mapped == lesion.index
    if not voxels.any() and (where := _centroid_index(lesion, visit, grid)) is not None:
        voxels[where] = True
    return voxels


def _start_series(visit: VisitLesions, mapped: np.ndarray, grid: Volume, max_targets: int
                  ) -> list[tuple[_Lesion, LesionMeasurement]]:
    """The baseline's lesions: the largest measurable ones (by product) are targets, the rest non-targets."""
    measurable = sorted((les for les in visit.lesions if les.measurable), key=lambda les: -les.product_mm2)
    targets = [les.index for les in measurable[:max_targets]]
    others = [les for les in visit.lesions if les.index not in targets]
    by_index = {les.index: les for les in visit.lesions}
    out = [(_Lesion(f"T{n}", "target", _footprint(by_index[i], visit, mapped, grid)), by_index[i])
           for n, i in enumerate(targets, start=1)]
    out += [(_Lesion(f"NT{n}", "non-target", _footprint(les, visit, mapped, grid)), les)
            for n, les in enumerate(others, start=1)]
    return out


def _match(visit: VisitLesions, mapped: np.ndarray, known: list[_Lesion], grid: Volume, tolerance_mm: float
           ) -> tuple[dict[str, list[LesionMeasurement]], dict[str, str], list[LesionMeasurement]]:
    """(components per known lesion, merged lesion → lesion it merged into, components near none)."""
    from scipy import ndimage

    footprints = np.zeros(grid.shape, np.int16)
    for number, lesion in enumerate(known, start=1):
        footprints[lesion.footprint & (footprints == 0)] = number
    matched: dict[str, list[LesionMeasurement]] = {}
    merged: dict[str, str] = {}
    unmatched = []
    if not footprints.any():
        return matched, merged, list(visit.lesions)
    distance, nearest_index = ndimage.distance_transform_edt(footprints == 0, sampling=grid.spacing,
                                                             return_indices=True)
    nearest = footprints[tuple(nearest_index)]
    for lesion in visit.lesions:
        voxels = mapped == lesion.index
        if voxels.any():
            close = nearest[voxels][distance[voxels] <= tolerance_mm]
        else:
            where = _centroid_index(lesion, visit, grid)
            close = np.array([nearest[where]]) if where and distance[where] <= tolerance_mm else np.array([], int)
        if close.size == 0:
            unmatched.append(lesion)
            continue
        shares = Counter(int(n) for n in close)
        touching = [known[n - 1] for n, count in shares.most_common() if count >= _MERGE_SHARE * close.size]
        touching = touching or [known[shares.most_common(1)[0][0] - 1]]
        primary = next((item for item in touching if item.role == "target"), touching[0])
        matched.setdefault(primary.name, []).append(lesion)
        for other in touching:
            if other is not primary:
                merged[other.name] = primary.name
        primary.footprint |= voxels
    return matched, merged, unmatched


def _row(visit: str, lesion: _Lesion, parts: list[LesionMeasurement], merged_into: str | None, state: str = ""
         ) -> LesionAtVisit:
    if not parts:
        state = state or (f"merged into {merged_into}" if merged_into else "gone")
        return LesionAtVisit(visit, lesion.name, lesion.role, state, (), 0.0, 0.0, 0.0, 0.0, False)
    largest = max(parts, key=lambda les: les.product_mm2)
    state = state or ("present" if len(parts) == 1 else f"split into {len(parts)} parts")
    return LesionAtVisit(visit, lesion.name, lesion.role, state, tuple(les.index for les in parts),
                         largest.longest_diameter_mm, largest.perpendicular_diameter_mm,
                         sum(les.product_mm2 for les in parts), sum(les.volume_ml for les in parts),
                         any(les.measurable for les in parts))


def track_series(visits: Sequence[VisitLesions], grid: Volume, region: str = "ET", tolerance_mm: float = 5.0,
                 max_targets: int = MAX_TARGET_LESIONS) -> SeriesLesions:
    """Follow the lesions of ``region`` (``ET`` or ``WT``) over ``visits`` (chronological, the first is the
    baseline), in the space of ``grid`` (the first baseline's label map)."""
    out = SeriesLesions()
    known: list[_Lesion] = []
    baseline = ""
    for position, visit in enumerate(visits):
        mapped = _mapped_components(visit, grid, region)
        if position == 0 or visit.new_baseline:
            started = _start_series(visit, mapped, grid, max_targets)
            known, baseline = [lesion for lesion, _ in started], visit.id
            rows = [_row(visit.id, lesion, [measured], None) for lesion, measured in started]
            new = (0, 0)
        else:
            matched, merged, unmatched = _match(visit, mapped, known, grid, tolerance_mm)
            rows = [_row(visit.id, lesion, matched.get(lesion.name, []), merged.get(lesion.name)) for lesion in known]
            fresh = []
            for lesion in unmatched:
                item = _Lesion(f"N{sum(k.role == 'new' for k in known) + 1}", "new",
                               _footprint(lesion, visit, mapped, grid))
                known.append(item)
                fresh.append(_row(visit.id, item, [lesion], None, state="new"))
            rows += fresh
            new = (len(fresh), sum(row.measurable for row in fresh))
        out.rows += rows
        out.spd_mm2[visit.id] = float(sum(row.product_mm2 for row in rows if row.role == "target"))
        out.non_target_ml[visit.id] = float(sum(row.volume_ml for row in rows if row.role == "non-target"))
        out.new[visit.id] = new
        out.baseline_of[visit.id] = baseline
    return out
