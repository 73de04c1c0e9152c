"""``tumorseg track``: recompute a timeline's measurements, categories and new lesions; write table and plot."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..volume import PathLike, Volume
from .lesions import Alignment, align_visits, track_lesions
from .measurements import measure_labels, read_label_map
from .plots import plot_volumes
from .rano import IMAGING_ONLY, RANO_2_0
from .table import timeline_rows, write_table_csv
from .timeline import Timeline, TimelineError

__all__ = ["run_track"]



def run_track(timeline_path: PathLike, output_dir: PathLike | None = None, *, register_visits: bool = True,
              tolerance_mm: float = 5.0, primary: str = "bidimensional", save_measurements: bool = False,
              registration_options: Mapping[str, Any] | None = None) -> dict:
    """Recompute a timeline's measurements, categories and new lesions; write the table and plot.

    Args:
        timeline_path: the timeline JSON file.
        output_dir: where ``timeline_table.csv``, ``timeline_volumes.png`` and ``transforms/<id>_to_baseline.tfm``
            go; default: the timeline's folder.
        register_visits: register each follow-up to the baseline for the new-lesion report (otherwise the
            scanner coordinates are trusted as they are).
        tolerance_mm: see :func:`lesion_status`.
        primary: the method of the ``category`` column (``'bidimensional'`` or ``'volumetric'``).
        save_measurements: also write the recomputed measurements back into the timeline file.
        registration_options: passed to :func:`TumorSegLib.registration.register`.

    Returns:
        ``{"rows": [...], "table": path, "plot": path, "transforms": {id: path}, "lesions": {id: [...]},
        "note": IMAGING_ONLY}``; each ``.tfm`` maps baseline points to the visit's points (ITK convention).

    Raises:
        FileNotFoundError: for a missing timeline, segmentation or image file (naming the visit).
        TimelineError: for an invalid timeline or label file.
    """
    timeline = Timeline.load(timeline_path)
    if not timeline.timepoints:
        raise TimelineError(f"{timeline_path} has no timepoints; add at least a baseline visit")
    if primary not in RANO_2_0:
        raise ValueError(f"primary must be one of {sorted(RANO_2_0)}, got {primary!r}")
    out = Path(output_dir) if output_dir is not None else Path(timeline_path).parent
    out.mkdir(parents=True, exist_ok=True)
    labels = _measure_visits(timeline)
    alignments = align_visits(timeline, register_visits, registration_options) if timeline.baseline.id in labels else {}
    transforms = _write_transforms(alignments, out / "transforms")
    lesions = track_lesions(timeline, labels, alignments, tolerance_mm)
    rows = timeline_rows(timeline, lesions, alignments, primary=primary)
    table = write_table_csv(rows, out / "timeline_table.csv")
    plot = plot_volumes(rows, out / "timeline_volumes.png",
                        title=f"Patient {timeline.patient_id}" if timeline.patient_id else "")
    if save_measurements:
        timeline.save()
    return {"rows": rows, "table": str(table), "plot": str(plot), "transforms": transforms, "note": IMAGING_ONLY,
            "lesions": {key: [_json_ready(asdict(status)) for status in value] for key, value in lesions.items()}}


def _measure_visits(timeline: Timeline) -> dict[str, Volume]:
    """Read every visit's segmentation and measure it; returns the internal label maps by visit id."""
    labels: dict[str, Volume] = {}
    for tp in timeline.ordered():
        if tp.segmentation is None:
            tp.measurements = None
            continue
        if not tp.segmentation.exists():
            raise FileNotFoundError(f"timepoint '{tp.id}': segmentation file not found: {tp.segmentation}")
        try:
            labels[tp.id] = read_label_map(tp.segmentation, tp.label_convention)
        except ValueError as error:
            raise TimelineError(f"timepoint '{tp.id}': {error}") from None
        tp.measurements = measure_labels(labels[tp.id])
    return labels


def _write_transforms(alignments: Mapping[str, Alignment], folder: Path) -> dict[str, str]:
    """Each registered visit's transform as ``<folder>/<id>_to_baseline.tfm``; returns the paths by visit id."""
    import SimpleITK as sitk

    transforms: dict[str, str] = {}
    for name, alignment in alignments.items():
        if alignment.method.startswith("rigid"):
            path = folder / f"{_safe_name(name)}_to_baseline.tfm"
            path.parent.mkdir(parents=True, exist_ok=True)
            sitk.WriteTransform(alignment.transform, str(path))
            transforms[name] = str(path)
    return transforms


def _json_ready(record: dict) -> dict:
    """Infinite distances (no earlier tumour) become ``None``: JSON has no infinity."""
    return {key: None if isinstance(value, float) and math.isinf(value) else value for key, value in record.items()}


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
