"""``tumorseg track``: a timeline's measurements, followed lesions and RANO 2.0 categories; table, lesion list
and plot written beside it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..volume import PathLike, Volume
from .followup import METHODS, assess_timeline
from .lesions import Alignment, align_visits
from .measurements import measure_labels, read_label_map
from .plots import plot_volumes
from .rano import IMAGING_ONLY, Assessment
from .table import lesion_rows, timeline_rows, write_table_csv
from .timeline import Timeline, TimelineError

__all__ = ["run_track", "TRACK_FILES"]

TRACK_FILES = {"table": "timeline_table.csv", "json": "timeline_table.json", "lesions": "timeline_lesions.csv",
               "plot": "timeline_volumes.png"}


def run_track(timeline_path: PathLike, output_dir: PathLike | None = None, *, register_visits: bool = True,
              tolerance_mm: float = 5.0, primary: str = "bidimensional", save_measurements: bool = False,
              registration_options: Mapping[str, Any] | None = None) -> dict:
    """Measure every visit, follow its lesions from the baseline, categorise; write the table (CSV and JSON),
    the per-lesion list (CSV), the plot and the registration transforms.

    Args:
        timeline_path: the timeline JSON file.
        output_dir: where the outputs go (:data:`TRACK_FILES`, ``transforms/<id>_to_baseline.tfm``); default:
            the timeline's folder.
        register_visits: register each follow-up rigidly to the baseline (default); otherwise scanner
            coordinates are trusted, and repositioning can make a lesion look new.
        tolerance_mm: a lesion within this distance of an earlier one is that lesion.
        primary: the method of the ``category`` column (``'bidimensional'`` or ``'volumetric'``).
        save_measurements: also write the recomputed measurements back into the timeline file.
        registration_options: passed to :func:`TumorSegLib.registration.register`.

    Returns:
        ``{"rows", "lesions", "qa", "table", "json", "lesion_table", "plot", "transforms", "note"}``.

    Raises:
        FileNotFoundError: for a missing timeline, segmentation or image file (naming the visit).
        TimelineError: for an invalid timeline or label file.
    """
    timeline = Timeline.load(timeline_path)
    if not timeline.timepoints:
        raise TimelineError(f"{timeline_path} has no timepoints; add at least a baseline visit")
    if primary not in METHODS:
        raise ValueError(f"primary must be one of {list(METHODS)}, got {primary!r}")
    out = Path(output_dir) if output_dir is not None else Path(timeline_path).parent
    out.mkdir(parents=True, exist_ok=True)
    labels = _measure_visits(timeline)
    alignments = align_visits(timeline, register_visits, registration_options) if timeline.baseline.id in labels else {}
    followup = assess_timeline(timeline, labels, alignments, tolerance_mm)
    rows = timeline_rows(timeline, followup, alignments, primary)
    lesions = lesion_rows(followup)
    qa = [{"severity": "warning", "code": "visit_registration", "visit": key, "message": alignment.warning}
          for key, alignment in alignments.items() if alignment.warning]
    record = {"patient_id": timeline.patient_id, "assessment": timeline.assessment.value, "primary": primary,
              "rows": rows, "lesions": lesions, "qa": qa, "note": IMAGING_ONLY}
    written = {"table": write_table_csv(rows, out / TRACK_FILES["table"]),
               "lesion_table": write_table_csv(lesions, out / TRACK_FILES["lesions"]),
               "plot": plot_volumes(rows, out / TRACK_FILES["plot"], title=_title(timeline))}
    (out / TRACK_FILES["json"]).write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    if save_measurements:
        timeline.save()
    return {**record, **{key: str(path) for key, path in written.items()}, "json": str(out / TRACK_FILES["json"]),
            "transforms": _write_transforms(alignments, out / "transforms")}


def _title(timeline: Timeline) -> str:
    disease = "T2/FLAIR (non-enhancing)" if timeline.assessment is Assessment.NON_ENHANCING else "enhancing"
    return f"Patient {timeline.patient_id}, {disease} disease" if timeline.patient_id else ""


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


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
