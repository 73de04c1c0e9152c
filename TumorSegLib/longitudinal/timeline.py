"""One patient's visits as a small versioned JSON file kept next to the data (paths inside it are relative to
its folder), so it lives on outside 3D Slicer::

    {
      "schema": "tumorseg-timeline",
      "schema_version": 2,
      "patient_id": "P001",
      "baseline": "v0",                       # optional; default: the earliest visit
      "assessment": "enhancing",              # optional: enhancing | non-enhancing (T2/FLAIR), RANO 2.0
      "radiotherapy_end": "2024-01-05",       # optional: progression within 12 weeks after it needs confirmation
      "timepoints": [
        {"id": "v0", "date": "2024-01-15",      # ISO date, or DICOM StudyDate "20240115"
         "images": {"t1": "v0/t1.nii.gz", "t1c": "v0/t1c.nii.gz", "t2": "...", "flair": "..."},  # optional
         "segmentation": "v0/seg.nii.gz",       # BraTS 2018 (ET = 4) or 2023 (ET = 3) codes
         "label_convention": null,              # optional: "brats2018" | "brats2023" | null (detect)
         "corrected": false,                    # segmentation corrected by hand
         "steroids": "stable",                  # optional, vs baseline: increased | stable | decreased | off
         "clinical_status": "stable",           # optional: worse | stable | better
         "new_baseline": false,                 # optional: a new series starts here (e.g. a new line of therapy)
         "notes": "",
         "not_assessed": {"ED": "no T2/FLAIR"}, # optional: volumes this visit's images cannot show, and why
         "measurements": {...}}                 # optional, written by TumorSeg (see measurements.py)
      ]
    }
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from ..export import atomic_write
from ..labels import VOLUME_KEYS, LabelConvention
from ..sequences import SEQUENCES
from ..support import still_unassessed_why
from ..volume import PathLike
from .measurements import TimepointMeasurements
from .rano import Assessment, ClinicalStatus, SteroidChange

__all__ = ["SCHEMA_NAME", "SCHEMA_VERSION", "TimelineError", "parse_date", "Timepoint", "Timeline"]

SCHEMA_NAME = "tumorseg-timeline"
SCHEMA_VERSION = 2  # 2 added assessment, radiotherapy_end and new_baseline; version 1 files still load



class TimelineError(ValueError):
    """A timeline file or timeline content that cannot be used; the message says what to fix."""


def parse_date(value: str | dt.date) -> dt.date:
    """A visit date from an ISO date (``2024-01-15``), a DICOM StudyDate (``20240115``) or a ``date``.

    Raises:
        ValueError: for anything else, saying which forms are accepted.
    """
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    for form in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return dt.datetime.strptime(text, form).date()
        except ValueError:
            continue
    raise ValueError(f"date {value!r} is not a date: give an ISO date YYYY-MM-DD or a DICOM StudyDate YYYYMMDD")


@dataclass
class Timepoint:
    """One visit.

    Attributes:
        id: unique name of the visit within the timeline, e.g. ``"2024-01-15"`` or ``"post-RT"``.
        date: acquisition date.
        images: absolute paths by sequence key (``t1``, ``t1c``, ``t2``, ``flair``); any may be missing.
        segmentation: absolute path of the label map (AI or corrected), or ``None`` when not segmented yet.
        label_convention: ``'brats2018'``/``'brats2023'``, or ``None`` to detect it from the codes.
        corrected: whether the segmentation was corrected by hand.
        steroids: corticosteroid dose vs baseline, if known.
        clinical_status: neurological status, if known.
        measurements: the last measurements of the segmentation, if computed.
        notes: free text.
        not_assessed: volume keys the visit's images cannot show, each with why (``{"ED": "no T2/FLAIR"}``:
            see :mod:`TumorSegLib.support`); such volumes are left out of the table and the RANO rules.
    """

    id: str
    date: dt.date
    images: dict[str, Path] = field(default_factory=dict)
    segmentation: Path | None = None
    label_convention: str | None = None
    corrected: bool = False
    steroids: SteroidChange | None = None
    clinical_status: ClinicalStatus | None = None
    measurements: TimepointMeasurements | None = None
    notes: str = ""
    volume_intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    order: int | None = None  # which came first among visits on the same date (1, 2, ...)
    new_baseline: bool = False  # a new series starts here (e.g. a new line of therapy after progression)
    not_assessed: dict[str, str] = field(default_factory=dict)

    def unassessed(self) -> dict[str, str]:
        """The volumes this visit cannot report, with why: :attr:`not_assessed` less what a reader drew (oedema
        although the images had no T2/FLAIR; enhancing tumour where the AI left too little unreported), as in
        :func:`support.still_unassessed_why`."""
        volumes = self.measurements.volumes_ml if self.measurements is not None else {}
        return still_unassessed_why(self.not_assessed, [key for key in ("ED", "ET") if volumes.get(key, 0.0) > 0])

    def to_dict(self, folder: Path | None = None, include_measurements: bool = True) -> dict:
        """JSON-ready dict; paths relative to ``folder`` when given (and on the same drive)."""
        out: dict[str, Any] = {
            "id": self.id,
            "date": self.date.isoformat(),
            "images": {key: _relative(path, folder) for key, path in self.images.items()},
            "segmentation": _relative(self.segmentation, folder) if self.segmentation else None,
            "label_convention": self.label_convention,
            "corrected": self.corrected,
            "steroids": self.steroids.value if self.steroids else None,
            "clinical_status": self.clinical_status.value if self.clinical_status else None,
            "notes": self.notes,
            "volume_intervals_ml": {key: [float(a), float(b)] for key, (a, b) in self.volume_intervals.items()},
            **({"order": self.order} if self.order is not None else {}),
            **({"new_baseline": True} if self.new_baseline else {}),
            **({"not_assessed": dict(self.not_assessed)} if self.not_assessed else {}),
        }
        if include_measurements and self.measurements is not None:
            out["measurements"] = self.measurements.to_dict()
        return out


_TIMEPOINT_KEYS = {"id", "date", "images", "segmentation", "label_convention", "corrected", "steroids",
                   "clinical_status", "notes", "measurements", "volume_intervals_ml", "order", "new_baseline",
                   "not_assessed"}
_TIMELINE_KEYS = {"schema", "schema_version", "patient_id", "baseline", "assessment", "radiotherapy_end",
                  "timepoints"}


def _relative(path: Path, folder: Path | None) -> str:
    if folder is None:
        return str(path)
    try:
        return Path(os.path.relpath(Path(path).resolve(), folder.resolve())).as_posix()
    except ValueError:  # another drive on Windows: keep it absolute
        return str(path)


def _enum(kind: type[Enum], value: Any, where: str, name: str):
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(repr(member.value) for member in kind)  # type: ignore[attr-defined]
        raise TimelineError(f"{where}: {name} is {value!r}; use one of {allowed} or null") from None


def _timepoint_from_dict(data: Any, folder: Path | None, where: str) -> Timepoint:
    if not isinstance(data, dict):
        raise TimelineError(f"{where} must be an object with 'id', 'date', ...; got {type(data).__name__}")
    unknown = set(data) - _TIMEPOINT_KEYS
    if unknown:
        raise TimelineError(f"{where} has unknown field(s) {sorted(unknown)}; known fields: {sorted(_TIMEPOINT_KEYS)}")
    ident = data.get("id")
    if not isinstance(ident, str) or not ident.strip():
        raise TimelineError(f"{where} needs an 'id': a non-empty name such as \"baseline\" or the date")
    where = f"{where} ('{ident}')"
    if "date" not in data:
        raise TimelineError(f"{where} needs a 'date' (YYYY-MM-DD, or a DICOM StudyDate YYYYMMDD)")
    try:
        date = parse_date(data["date"])
    except ValueError as error:
        raise TimelineError(f"{where}: {error}") from None

    def resolve(value: Any, name: str) -> Path:
        if not isinstance(value, str) or not value:
            raise TimelineError(f"{where}: {name} must be a file path (text), got {value!r}")
        path = Path(value)
        return path if path.is_absolute() or folder is None else folder / path

    images = data.get("images") or {}
    if not isinstance(images, dict):
        raise TimelineError(f"{where}: 'images' must map sequence names ({', '.join(SEQUENCES)}) to paths")
    wrong = set(images) - set(SEQUENCES)
    if wrong:
        raise TimelineError(f"{where}: unknown image key(s) {sorted(wrong)}; use {', '.join(SEQUENCES)}")
    convention = data.get("label_convention")
    if convention is not None and convention not in {c.value for c in LabelConvention}:
        raise TimelineError(f"{where}: label_convention is {convention!r}; use 'brats2018', 'brats2023' or null")
    corrected = data.get("corrected", False)
    if not isinstance(corrected, bool):
        raise TimelineError(f"{where}: 'corrected' must be true or false, got {corrected!r}")
    measurements = None
    if data.get("measurements") is not None:
        try:
            measurements = TimepointMeasurements.from_dict(data["measurements"])
        except ValueError as error:
            raise TimelineError(f"{where}: {error}") from None
    intervals = data.get("volume_intervals_ml") or {}
    if not isinstance(intervals, dict) or any(
            key not in VOLUME_KEYS or not isinstance(v, list) or len(v) != 2 for key, v in intervals.items()):
        raise TimelineError(f"{where}: 'volume_intervals_ml' must map {', '.join(VOLUME_KEYS)} to [p5, p95] in mL")
    unseen = data.get("not_assessed") or {}
    if not isinstance(unseen, dict) or any(key not in VOLUME_KEYS or not isinstance(why, str)
                                           for key, why in unseen.items()):
        raise TimelineError(f"{where}: 'not_assessed' must map volume keys ({', '.join(VOLUME_KEYS)}) to why they "
                            "are not assessed, e.g. {\"ED\": \"no T2/FLAIR\"}")
    segmentation = data.get("segmentation")
    return Timepoint(
        id=ident, date=date, images={key: resolve(path, f"images.{key}") for key, path in images.items()},
        segmentation=resolve(segmentation, "segmentation") if segmentation is not None else None,
        label_convention=convention, corrected=corrected,
        steroids=_enum(SteroidChange, data.get("steroids"), where, "steroids"),
        clinical_status=_enum(ClinicalStatus, data.get("clinical_status"), where, "clinical_status"),
        measurements=measurements, notes=str(data.get("notes", "") or ""), order=_order(data.get("order"), where),
        volume_intervals={key: (float(a), float(b)) for key, (a, b) in intervals.items()},
        new_baseline=_flag(data.get("new_baseline", False), where, "new_baseline"), not_assessed=dict(unseen))


def _flag(value: Any, where: str, name: str) -> bool:
    if not isinstance(value, bool):
        raise TimelineError(f"{where}: '{name}' must be true or false, got {value!r}")
    return value


def _order(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TimelineError(f"{where}: 'order' must be 1, 2, ... (which came first among visits on one date), "
                            f"got {value!r}")
    return value


@dataclass
class Timeline:
    """A patient's visits.

    Attributes:
        patient_id: identifier shown in the table and plot.
        timepoints: the visits (any order; :meth:`ordered` sorts them by date).
        baseline_id: the visit that changes are measured against; ``None`` means the earliest.
        path: the file it was loaded from or last saved to.
        assessment: enhancing or non-enhancing (T2/FLAIR) disease, chosen per patient (RANO 2.0).
        radiotherapy_end: end of radiotherapy, when known: imaging progression within 12 weeks after it needs a
            confirmation scan.
    """

    patient_id: str = ""
    timepoints: list[Timepoint] = field(default_factory=list)
    baseline_id: str | None = None
    path: Path | None = None
    assessment: Assessment = Assessment.ENHANCING
    radiotherapy_end: dt.date | None = None

    def ordered(self) -> list[Timepoint]:
        """Visits by date, then by their ``order`` among visits on the same date."""
        return sorted(self.timepoints, key=lambda tp: (tp.date, tp.order or 0))

    def get(self, timepoint_id: str) -> Timepoint:
        for timepoint in self.timepoints:
            if timepoint.id == timepoint_id:
                return timepoint
        raise KeyError(f"no timepoint '{timepoint_id}'; the timeline has {[tp.id for tp in self.timepoints]}")

    @property
    def baseline(self) -> Timepoint:
        """The baseline visit (``baseline_id``, or the earliest)."""
        if not self.timepoints:
            raise TimelineError("the timeline has no timepoints; add the baseline visit first")
        return self.get(self.baseline_id) if self.baseline_id else self.ordered()[0]

    def add(self, timepoint: Timepoint) -> Timepoint:
        """Add a visit; its id must be new."""
        if any(tp.id == timepoint.id for tp in self.timepoints):
            raise TimelineError(f"a timepoint with id '{timepoint.id}' already exists; give the new visit another id")
        self.timepoints.append(timepoint)
        return timepoint

    def validate(self) -> None:
        """Check ids are unique, dates are dates, image keys are known and the baseline exists.

        Raises:
            TimelineError: saying which visit to fix.
        """
        seen: set[str] = set()
        for timepoint in self.timepoints:
            if timepoint.id in seen:
                raise TimelineError(f"timepoint id '{timepoint.id}' is used twice; ids must be unique")
            seen.add(timepoint.id)
            if not isinstance(timepoint.date, dt.date):
                raise TimelineError(f"timepoint '{timepoint.id}': date must be a datetime.date (use parse_date), "
                                    f"got {timepoint.date!r}")
            wrong = set(timepoint.images) - set(SEQUENCES)
            if wrong:
                raise TimelineError(f"timepoint '{timepoint.id}': unknown image key(s) {sorted(wrong)}; "
                                    f"use {', '.join(SEQUENCES)}")
        if self.baseline_id is not None and self.baseline_id not in seen:
            raise TimelineError(f"baseline '{self.baseline_id}' is not one of the timepoints {sorted(seen)}")
        self._check_same_dates()

    def _check_same_dates(self) -> None:
        """Visits on one date must say which came first: otherwise the file's order would decide PD or PR."""
        by_date: dict[dt.date, list[Timepoint]] = {}
        for timepoint in self.timepoints:
            by_date.setdefault(timepoint.date, []).append(timepoint)
        for date, visits in by_date.items():
            orders = [tp.order for tp in visits]
            if len(visits) > 1 and (None in orders or len(set(orders)) < len(orders)):
                raise TimelineError(f"visits {', '.join(repr(tp.id) for tp in visits)} are all on {date.isoformat()}: "
                                    "give each a distinct \"order\" (1, 2, ...) saying which came first, or correct "
                                    "the dates")

    def to_dict(self, folder: Path | None = None, include_measurements: bool = True) -> dict:
        return {"schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION, "patient_id": self.patient_id,
                "baseline": self.baseline_id, "assessment": self.assessment.value,
                "radiotherapy_end": self.radiotherapy_end.isoformat() if self.radiotherapy_end else None,
                "timepoints": [tp.to_dict(folder, include_measurements) for tp in self.ordered()]}

    @classmethod
    def from_dict(cls, data: Any, folder: Path | None = None, source: str = "timeline") -> "Timeline":
        """Build and validate a timeline from its JSON content; relative paths resolve against ``folder``.

        Raises:
            TimelineError: for a wrong schema or version, or any invalid field, naming it.
        """
        if not isinstance(data, dict) or data.get("schema") != SCHEMA_NAME:
            raise TimelineError(f"{source} is not a TumorSeg timeline: expected a JSON object with "
                                f"\"schema\": \"{SCHEMA_NAME}\"")
        version = data.get("schema_version")
        if not isinstance(version, int) or version < 1:
            raise TimelineError(f"{source}: schema_version must be a positive integer, got {version!r}")
        if version > SCHEMA_VERSION:
            raise TimelineError(f"{source} has schema_version {version}, written by a newer TumorSeg (this one reads "
                                f"up to {SCHEMA_VERSION}); update TumorSeg")
        unknown = set(data) - _TIMELINE_KEYS
        if unknown:
            raise TimelineError(f"{source} has unknown field(s) {sorted(unknown)}; known: {sorted(_TIMELINE_KEYS)}")
        items = data.get("timepoints", [])
        if not isinstance(items, list):
            raise TimelineError(f"{source}: 'timepoints' must be a list of visits")
        timepoints = [_timepoint_from_dict(item, folder, f"{source}: timepoint {n + 1}") for n, item in enumerate(items)]
        baseline = data.get("baseline")
        if baseline is not None and not isinstance(baseline, str):
            raise TimelineError(f"{source}: 'baseline' must be a timepoint id or null, got {baseline!r}")
        assessment = _enum(Assessment, data.get("assessment"), source, "assessment") or Assessment.ENHANCING
        try:
            radiotherapy_end = parse_date(data["radiotherapy_end"]) if data.get("radiotherapy_end") else None
        except ValueError as error:
            raise TimelineError(f"{source}: radiotherapy_end: {error}") from None
        timeline = cls(str(data.get("patient_id", "") or ""), timepoints, baseline, None, assessment, radiotherapy_end)
        try:
            timeline.validate()
        except TimelineError as error:
            raise TimelineError(f"{source}: {error}") from None
        return timeline

    @classmethod
    def load(cls, path: PathLike) -> "Timeline":
        """Read a timeline JSON file (paths inside it are relative to its folder).

        Raises:
            FileNotFoundError: if the file does not exist.
            TimelineError: if it is not valid JSON or not a valid timeline.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"timeline file not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise TimelineError(f"{path} is not valid JSON (line {error.lineno}, column {error.colno}: "
                                f"{error.msg})") from None
        timeline = cls.from_dict(data, path.parent, str(path))
        timeline.path = path
        return timeline

    def save(self, path: PathLike | None = None, include_measurements: bool = True) -> Path:
        """Write the timeline as JSON (atomically), paths relative to the file's folder."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise TimelineError("give a path to save the timeline to")
        self.validate()
        target.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_dict(target.parent, include_measurements), indent=2)
        atomic_write(target, lambda partial: partial.write_text(text + "\n", encoding="utf-8"))
        self.path = target
        return target
