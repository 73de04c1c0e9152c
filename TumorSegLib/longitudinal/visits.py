"""A patient's timeline built from a folder of visits: nobody writes the timeline file by hand.

The folder holds one sub-folder per visit, in any order, each one of:

* an earlier TumorSeg result (a summary JSON beside its label map, e.g. a ``segment --study`` output folder);
* image files with BraTS-style names (``*_t1ce.nii.gz``, ``*_flair.nii.gz``, ...), with an optional label map
  (``*_seg.nii.gz``, used as the visit's segmentation: an expert's or a corrected one);
* a DICOM study (any folder tree).

Visits without a segmentation are segmented by the ``segment_visit`` callable the caller gives (the command
line runs the pipeline), into ``OUT/visits/<visit>/``; a visit segmented before is not segmented again.
Dates come from the DICOM StudyDate (of the study, or recorded in a result), else from a date in the folder
name (``2024-01-15``, ``20240115``). Clinical inputs already in ``OUT/timeline.json`` (steroids, clinical
status, new baseline, order, notes, baseline, assessment, end of radiotherapy) are kept when it is rebuilt.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..sequences import FILE_SUFFIXES, IMAGE_SUFFIXES, file_stem
from ..support import not_assessed, recorded_not_assessed
from ..volume import PathLike
from .timeline import Timeline, TimelineError, Timepoint, parse_date

__all__ = ["VisitSource", "read_visit", "find_visits", "build_timeline", "study_date_from_dicom", "TIMELINE_FILE"]

TIMELINE_FILE = "timeline.json"
_DATE_IN_NAME = re.compile(r"(?<!\d)(\d{4})-?(\d{2})-?(\d{2})(?!\d)")
_LABEL_SUFFIXES = ("seg", "label", "labels", "tumorseg")
_KEPT_VISIT_FIELDS = ("steroids", "clinical_status", "new_baseline", "order", "notes")


@dataclass(frozen=True)
class VisitSource:
    """One visit folder: what it holds (``result``, ``images`` or ``study``) and what was found in it."""

    name: str
    folder: Path
    kind: str
    images: dict[str, Path]
    segmentation: Path | None
    summary: dict | None
    date: dt.date | None
    patient_id: str = ""


def study_date_from_dicom(path: PathLike) -> dt.date:
    """The StudyDate (0008,0020) of a DICOM file, or of the first DICOM file found in a folder tree.

    Raises:
        ValueError: if no DICOM file is found or it has no valid StudyDate.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    for candidate in ([path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())):
        try:
            header = pydicom.dcmread(candidate, stop_before_pixels=True, specific_tags=["StudyDate"])
        except (InvalidDicomError, OSError, ValueError, EOFError):
            continue
        if str(header.get("StudyDate", "")).strip():
            return parse_date(str(header.StudyDate))
        raise ValueError(f"{candidate} has no StudyDate (0008,0020); enter the visit date by hand")
    raise ValueError(f"{path} holds no DICOM file to read a StudyDate from")


def _summary_in(folder: Path) -> tuple[dict, Path] | None:
    for candidate in sorted(folder.glob("*.json")):
        try:
            data = json.loads(candidate.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(data, dict) and {"model", "volumes_ml", "output"} <= set(data):
            return data, candidate
    return None


def _date_from_name(name: str) -> dt.date | None:
    match = _DATE_IN_NAME.search(name)
    if not match:
        return None
    try:
        return dt.date(*(int(part) for part in match.groups()))
    except ValueError:
        return None


def _images_in(folder: Path) -> tuple[dict[str, Path], Path | None]:
    images, label = {}, None
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES)):
        stem = file_stem(path).lower()
        if any(re.search(rf"(^|[\W_]){name}$", stem) for name in _LABEL_SUFFIXES):
            label = path
            continue
        for key, names in FILE_SUFFIXES.items():
            if any(re.search(rf"(^|[\W_]){name}$", stem) for name in names):
                images.setdefault(key, path)
    return images, label


def read_visit(folder: Path) -> VisitSource | None:
    """What a visit folder holds, or ``None`` for a folder that is none of the three kinds."""
    found = _summary_in(folder)
    if found is not None:
        summary, path = found
        study = summary.get("study") or {}
        label = Path(summary["output"])
        label = label if label.is_absolute() else path.parent / label
        images = {key: Path(item["path"]) for key, item in ((summary.get("provenance") or {}).get("inputs") or {}).items()
                  if isinstance(item, dict) and item.get("path") and Path(item["path"]).is_file()}
        images.update({key: folder / f"{key}.nii.gz" for key in FILE_SUFFIXES if (folder / f"{key}.nii.gz").is_file()})
        date = parse_date(study["StudyDate"]) if study.get("StudyDate") else _date_from_name(folder.name)
        return VisitSource(folder.name, folder, "result", images, label, summary, date, study.get("PatientID", ""))
    images, label = _images_in(folder)
    if images:
        return VisitSource(folder.name, folder, "images", images, label, None, _date_from_name(folder.name))
    try:
        date = study_date_from_dicom(folder)
    except ValueError:
        return None
    return VisitSource(folder.name, folder, "study", {}, None, None, date)


def find_visits(folder: PathLike, skip: PathLike | None = None) -> list[VisitSource]:
    """The visits under ``folder`` (one per sub-folder, ``skip`` left out: an output folder inside it), in
    name order.

    Raises:
        FileNotFoundError: if the folder does not exist.
        TimelineError: naming a visit folder with no date, or when no visit is found.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"visits folder not found: {folder}")
    skipped = Path(skip).resolve() if skip is not None else None
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                        and p.resolve() != skipped)
    visits = [source for sub in subfolders if (source := read_visit(sub)) is not None]
    if not visits:
        raise TimelineError(f"{folder} holds no visit: give a folder with one sub-folder per visit (a DICOM study, "
                            "image files named like case_t1ce.nii.gz, or an earlier TumorSeg result)")
    for visit in visits:
        if visit.date is None:
            raise TimelineError(f"visit folder {visit.folder}: no date found; put it in the folder name "
                                "(e.g. 2024-01-15_MRI) or use DICOM files with a StudyDate")
    return visits


def build_timeline(folder: PathLike, out: PathLike,
                   segment_visit: Callable[[VisitSource, Path], VisitSource] | None = None,
                   patient_id: str | None = None) -> Timeline:
    """Find the visits, segment those without a segmentation, and write ``out/timeline.json``.

    Args:
        folder: one sub-folder per visit.
        out: where the timeline (and new segmentations, under ``visits/``) go.
        segment_visit: ``(visit, output folder) → the visit as a result``; without it, a visit that needs
            segmenting is an error.
        patient_id: default: the DICOM PatientID found, else the folder's name.
    """
    out = Path(out)
    visits = []
    for visit in find_visits(folder, skip=out):
        if visit.segmentation is None:
            target = out / "visits" / visit.name
            earlier = read_visit(target) if target.is_dir() else None
            if earlier is not None and earlier.kind == "result":
                visit = VisitSource(visit.name, visit.folder, "result", {**visit.images, **earlier.images},
                                    earlier.segmentation, earlier.summary, visit.date, earlier.patient_id)
            elif segment_visit is None:
                raise TimelineError(f"visit {visit.folder} has no segmentation; segment it first")
            else:
                visit = segment_visit(visit, target)
        visits.append(visit)
    path = out / TIMELINE_FILE
    previous = Timeline.load(path) if path.is_file() else None
    timeline = Timeline(patient_id or (previous.patient_id if previous else "")
                        or next((v.patient_id for v in visits if v.patient_id), "") or Path(folder).name)
    for visit in visits:
        timeline.add(Timepoint(visit.name, visit.date, images=dict(visit.images), segmentation=visit.segmentation,
                               not_assessed=_not_assessed(visit)))
    if previous is not None:
        _keep_clinical_inputs(timeline, previous)
    timeline.save(path, include_measurements=False)
    return timeline


def _not_assessed(visit: VisitSource) -> dict[str, str]:
    """What the visit's images cannot show: as its result recorded it, else from the sequences found beside a
    given segmentation (none found: unknown, nothing left out)."""
    if visit.summary is not None:
        return recorded_not_assessed(visit.summary)
    return not_assessed(visit.images) if visit.images else {}


def _keep_clinical_inputs(timeline: Timeline, previous: Timeline) -> None:
    known = {tp.id: tp for tp in previous.timepoints}
    for tp in timeline.timepoints:
        if tp.id in known:
            for name in _KEPT_VISIT_FIELDS:
                setattr(tp, name, getattr(known[tp.id], name))
    ids = {tp.id for tp in timeline.timepoints}
    timeline.baseline_id = previous.baseline_id if previous.baseline_id in ids else None
    timeline.assessment, timeline.radiotherapy_end = previous.assessment, previous.radiotherapy_end
