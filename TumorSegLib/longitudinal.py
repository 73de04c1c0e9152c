"""One patient's tumour over many visits: timeline file, change, RANO 2.0 category, new lesions, table, plot.

The timeline is a small versioned JSON file kept next to the data (paths inside it are relative to its
folder), so it lives on outside 3D Slicer::

    {
      "schema": "tumorseg-timeline",
      "schema_version": 1,
      "patient_id": "P001",
      "baseline": "v0",                       # optional; default: the earliest visit
      "timepoints": [
        {"id": "v0", "date": "2024-01-15",      # ISO date, or DICOM StudyDate "20240115"
         "images": {"t1": "v0/t1.nii.gz", "t1c": "v0/t1c.nii.gz", "t2": "...", "flair": "..."},  # optional
         "segmentation": "v0/seg.nii.gz",       # BraTS 2018 (ET = 4) or 2023 (ET = 3) codes
         "label_convention": null,              # optional: "brats2018" | "brats2023" | null (detect)
         "corrected": false,                    # segmentation corrected by hand
         "steroids": "stable",                  # optional: dose vs baseline: increased | stable | decreased
         "clinical_status": "stable",           # optional: worse | stable | better
         "notes": "",
         "measurements": {...}}                 # optional, written by TumorSeg (see measurements.py)
      ]
    }

Response (RANO 2.0, imaging-based, per follow-up visit), two methods side by side:

* bidimensional, on the sum of products of perpendicular diameters (SPD) of the target lesions:
  PR when the change vs baseline is ≤ −50 %, PD when the change vs nadir is ≥ +25 %;
* volumetric, on the enhancing-tumour (ET) volume: PR ≤ −65 % vs baseline, PD ≥ +40 % vs nadir.

Thresholds are inclusive ("a decrease of 50 % or more"), as RANO words them, and compared with a
tolerance of 1e-9 percentage points so that a change exactly on the threshold counts despite floating
point. The nadir is the smallest value at baseline or any evaluated visit after it and before the
current one. Rules, in order:

1. PD if: a new *measurable* enhancing lesion; or change vs nadir reaches the PD threshold; or
   measurable disease after a nadir with none; or clinical status "worse" (clinical deterioration).
2. CR if no enhancing tumour is left (there was some at baseline) and steroids were not increased and
   clinical status is not worse; otherwise SD.
3. PR if change vs baseline reaches the PR threshold, no new lesion of any size appeared, steroids were
   not increased and clinical status is not worse; otherwise SD.
4. SD otherwise. An increased steroid dose alone never makes PD (RANO 2.0).

Every category is an imaging-based suggestion: RANO also needs confirmation scans (CR/PR sustained for
≥ 4 weeks; PD within 12 weeks of radiotherapy), non-enhancing disease for some tumours, and the
treating team's judgement. Rows carry the note "imaging only, needs clinical confirmation".

New lesions: each follow-up is registered rigidly to the baseline (:mod:`TumorSegLib.registration`);
enhancing tumour of every earlier visit is mapped into baseline space, and a follow-up lesion (26-connected
ET component, in its own space) is new when it lies farther than ``tolerance_mm`` from all of it.
Measurements stay in each visit's native space.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .labels import Label, LabelConvention
from .measurements import TimepointMeasurements, label_lesions, measure_labels, read_label_map
from .sequences import SEQUENCES
from .volume import Volume

if TYPE_CHECKING:
    import SimpleITK as sitk

__all__ = [
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "IMAGING_ONLY",
    "TimelineError",
    "SteroidChange",
    "ClinicalStatus",
    "ResponseCategory",
    "RanoThresholds",
    "RANO_2_0",
    "Timepoint",
    "Timeline",
    "Response",
    "LesionStatus",
    "Alignment",
    "parse_date",
    "study_date_from_dicom",
    "percent_change",
    "classify_response",
    "align_to_baseline",
    "align_visits",
    "lesion_status",
    "track_lesions",
    "timeline_rows",
    "write_table_csv",
    "format_rows",
    "plot_volumes",
    "run_track",
]

SCHEMA_NAME = "tumorseg-timeline"
SCHEMA_VERSION = 1
IMAGING_ONLY = "imaging only, needs clinical confirmation"
VOLUME_KEYS = ("NCR", "ED", "ET", "TC", "WT")
# Sequences tried, in this order, to register a follow-up to the baseline (the first both visits have).
REGISTRATION_SEQUENCES = ("t1c", "flair", "t1", "t2")
# Changes this close (in percentage points) to a threshold count as reaching it: floating point must not
# move a change that is exactly on the threshold to the other side.
_THRESHOLD_TOLERANCE_PCT = 1e-9

PathLike = str | os.PathLike


class TimelineError(ValueError):
    """A timeline file or timeline content that cannot be used; the message says what to fix."""


class SteroidChange(str, Enum):
    """Corticosteroid dose at a visit compared with baseline."""

    INCREASED = "increased"
    STABLE = "stable"
    DECREASED = "decreased"


class ClinicalStatus(str, Enum):
    """Neurological status at a visit compared with the previous assessment."""

    WORSE = "worse"
    STABLE = "stable"
    BETTER = "better"


class ResponseCategory(str, Enum):
    """RANO categories, plus the row labels of visits that get none."""

    CR = "CR"  # complete response
    PR = "PR"  # partial response
    SD = "SD"  # stable disease
    PD = "PD"  # progressive disease
    BASELINE = "baseline"
    PRE_BASELINE = "pre-baseline"
    NOT_EVALUABLE = "NE"  # no segmentation at this visit


@dataclass(frozen=True)
class RanoThresholds:
    """Percent changes at which a category starts (inclusive): PR at ≤ ``pr_pct``, PD at ≥ ``pd_pct``."""

    pr_pct: float
    pd_pct: float


RANO_2_0: dict[str, RanoThresholds] = {
    "bidimensional": RanoThresholds(pr_pct=-50.0, pd_pct=25.0),
    "volumetric": RanoThresholds(pr_pct=-65.0, pd_pct=40.0),
}


# --- timeline model -----------------------------------------------------------------------------------


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


def study_date_from_dicom(path: PathLike) -> dt.date:
    """The StudyDate (0008,0020) of a DICOM file, or of the first file of a DICOM series folder.

    Raises:
        ValueError: if no DICOM file is found or it has no valid StudyDate.
    """
    import SimpleITK as sitk

    path = Path(path)
    if path.is_dir():
        series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path))
        if not series:
            raise ValueError(f"{path} holds no DICOM series to read a StudyDate from")
        path = Path(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path), series[0])[0])
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise ValueError(f"cannot read {path} as DICOM: {error}") from error
    if not reader.HasMetaDataKey("0008|0020") or not reader.GetMetaData("0008|0020").strip():
        raise ValueError(f"{path} has no StudyDate (0008,0020); enter the visit date by hand")
    return parse_date(reader.GetMetaData("0008|0020"))


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
        }
        if include_measurements and self.measurements is not None:
            out["measurements"] = self.measurements.to_dict()
        return out


_TIMEPOINT_KEYS = {"id", "date", "images", "segmentation", "label_convention", "corrected", "steroids",
                   "clinical_status", "notes", "measurements", "volume_intervals_ml"}
_TIMELINE_KEYS = {"schema", "schema_version", "patient_id", "baseline", "timepoints"}


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
    segmentation = data.get("segmentation")
    return Timepoint(
        id=ident, date=date, images={key: resolve(path, f"images.{key}") for key, path in images.items()},
        segmentation=resolve(segmentation, "segmentation") if segmentation is not None else None,
        label_convention=convention, corrected=corrected,
        steroids=_enum(SteroidChange, data.get("steroids"), where, "steroids"),
        clinical_status=_enum(ClinicalStatus, data.get("clinical_status"), where, "clinical_status"),
        measurements=measurements, notes=str(data.get("notes", "") or ""),
        volume_intervals={key: (float(a), float(b)) for key, (a, b) in intervals.items()})


@dataclass
class Timeline:
    """A patient's visits.

    Attributes:
        patient_id: identifier shown in the table and plot.
        timepoints: the visits (any order; :meth:`ordered` sorts them by date).
        baseline_id: the visit that changes are measured against; ``None`` means the earliest.
        path: the file it was loaded from or last saved to.
    """

    patient_id: str = ""
    timepoints: list[Timepoint] = field(default_factory=list)
    baseline_id: str | None = None
    path: Path | None = None

    def ordered(self) -> list[Timepoint]:
        """Visits by date (visits on the same day keep their order in the file)."""
        return sorted(self.timepoints, key=lambda tp: tp.date)

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

    def to_dict(self, folder: Path | None = None, include_measurements: bool = True) -> dict:
        return {"schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION, "patient_id": self.patient_id,
                "baseline": self.baseline_id,
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
        timeline = cls(str(data.get("patient_id", "") or ""), timepoints, baseline)
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
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
        partial.write_text(text + "\n", encoding="utf-8")
        partial.replace(target)
        self.path = target
        return target


# --- response rules -----------------------------------------------------------------------------------


def percent_change(reference: float | None, value: float | None) -> float | None:
    """``100 · (value − reference) / reference``; ``None`` when either is missing or the reference is 0."""
    if reference is None or value is None or reference == 0:
        return None
    return 100.0 * (value - reference) / reference


def _reaches_decrease(change: float | None, threshold: float) -> bool:
    return change is not None and change <= threshold + _THRESHOLD_TOLERANCE_PCT


def _reaches_increase(change: float | None, threshold: float) -> bool:
    return change is not None and change >= threshold - _THRESHOLD_TOLERANCE_PCT


@dataclass(frozen=True)
class Response:
    """A response category with the reasons that led to it.

    Attributes:
        category: CR, PR, SD or PD.
        method: ``'bidimensional'`` or ``'volumetric'``.
        reasons: human-readable facts behind the category.
        note: always "imaging only, needs clinical confirmation".
    """

    category: ResponseCategory
    method: str
    reasons: tuple[str, ...]
    note: str = IMAGING_ONLY


def classify_response(method: str, baseline_value: float, nadir_value: float, current_value: float, *,
                      enhancing_disease: bool, baseline_enhancing_disease: bool = True,
                      measurable_disease: bool | None = None, new_lesions: int = 0, new_measurable_lesions: int = 0,
                      steroids: SteroidChange | str | None = None,
                      clinical_status: ClinicalStatus | str | None = None,
                      thresholds: Mapping[str, RanoThresholds] = RANO_2_0) -> Response:
    """RANO 2.0 imaging-based category of one follow-up visit (rules in the module docstring).

    Args:
        method: ``'bidimensional'`` (values are SPDs in mm²) or ``'volumetric'`` (ET volumes in mL).
        baseline_value: value at baseline.
        nadir_value: smallest value at baseline or any evaluated visit since, before this one.
        current_value: value at this visit.
        enhancing_disease: whether any enhancing tumour is present now.
        baseline_enhancing_disease: whether any was present at baseline (CR needs something to respond).
        measurable_disease: whether a measurable lesion is present now; default: ``current_value > 0``.
        new_lesions: enhancing lesions absent from every earlier visit (any size).
        new_measurable_lesions: those of them that are measurable.
        steroids: dose vs baseline, if known.
        clinical_status: neurological status, if known.
        thresholds: per-method :class:`RanoThresholds`.

    Returns:
        The category, with its reasons and the imaging-only note.
    """
    if method not in thresholds:
        raise ValueError(f"method must be one of {sorted(thresholds)}, got {method!r}")
    limits = thresholds[method]
    steroids = SteroidChange(steroids) if steroids is not None else None
    clinical_status = ClinicalStatus(clinical_status) if clinical_status is not None else None
    measurable_disease = current_value > 0 if measurable_disease is None else measurable_disease
    vs_baseline = percent_change(baseline_value, current_value)
    vs_nadir = percent_change(nadir_value, current_value)
    unit = "SPD" if method == "bidimensional" else "ET volume"

    def text(change: float | None) -> str:
        return "n/a" if change is None else f"{change:+.1f} %"

    progression = []
    if new_measurable_lesions:
        progression.append(f"{new_measurable_lesions} new measurable enhancing lesion(s)")
    if _reaches_increase(vs_nadir, limits.pd_pct):
        progression.append(f"{unit} {text(vs_nadir)} vs nadir (PD from {limits.pd_pct:+g} %)")
    elif nadir_value == 0 and current_value > 0 and measurable_disease:
        progression.append(f"measurable enhancing disease after a nadir with none ({unit} {current_value:g})")
    if clinical_status is ClinicalStatus.WORSE:
        progression.append("clinical deterioration")
    if progression:
        return Response(ResponseCategory.PD, method, tuple(progression))

    blockers = []
    if steroids is SteroidChange.INCREASED:
        blockers.append("steroid dose increased")
    missing = [name for name, value in (("steroids", steroids), ("clinical status", clinical_status)) if value is None]
    unknown = (f"clinical input(s) not given: {', '.join(missing)}",) if missing else ()

    if not enhancing_disease:
        if not baseline_enhancing_disease:
            return Response(ResponseCategory.SD, method, ("no enhancing tumour at baseline nor now",))
        if blockers:
            return Response(ResponseCategory.SD, method, ("no enhancing tumour left", *blockers, "CR needs them not"))
        return Response(ResponseCategory.CR, method, ("no enhancing tumour left", *unknown))

    summary = f"{unit} {text(vs_baseline)} vs baseline, {text(vs_nadir)} vs nadir"
    if _reaches_decrease(vs_baseline, limits.pr_pct):
        if new_lesions:
            blockers.append(f"{new_lesions} new lesion(s)")
        if blockers:
            return Response(ResponseCategory.SD, method,
                            (f"{summary} (PR from {limits.pr_pct:+g} %)", *blockers, "PR needs none of these"))
        return Response(ResponseCategory.PR, method, (f"{summary} (PR from {limits.pr_pct:+g} %)", *unknown))
    return Response(ResponseCategory.SD, method, (summary,))


# --- cross-visit alignment and new lesions -------------------------------------------------------------


@dataclass(frozen=True)
class Alignment:
    """How a visit was aligned to the baseline.

    Attributes:
        transform: maps baseline physical points to this visit's physical points (ITK convention; resample
            this visit through it onto the baseline grid, or load it in Slicer as the visit's transform).
        method: e.g. ``"rigid, t1c, MI -0.61"`` or ``"identity: no common image"``.
    """

    transform: "sitk.Transform"
    method: str


@dataclass(frozen=True)
class LesionStatus:
    """Whether a follow-up lesion was there before.

    Attributes:
        index: lesion number in the follow-up (as in its measurements).
        volume_ml: its enhancing volume.
        distance_mm: distance from the lesion to the nearest enhancing tumour of any earlier visit (0 when
            they overlap; ``inf`` when no earlier visit had any).
        new: ``distance_mm`` > the tolerance.
        measurable: as in the follow-up's measurements.
    """

    index: int
    volume_ml: float
    distance_mm: float
    new: bool
    measurable: bool


def _identity() -> "sitk.Transform":
    import SimpleITK as sitk

    return sitk.Euler3DTransform()


def align_to_baseline(baseline: Timepoint, timepoint: Timepoint, **registration_options: Any) -> Alignment:
    """Rigidly register ``timepoint``'s image to ``baseline``'s (first sequence both have, T1c first).

    Falls back to the identity (scanner coordinates) when the two visits share no image. Registration runs
    on images resampled to 2 mm unless ``working_spacing_mm`` says otherwise: same-sequence registration
    there is accurate to a few tenths of a millimetre and several times faster than at full resolution
    (options default to 2 mm and 10 000 samples per level).

    Args:
        baseline: the fixed visit.
        timepoint: the moving visit.
        **registration_options: passed to :func:`TumorSegLib.registration.register`.
    """
    from .registration import register
    from .volume import read_volume

    if timepoint is baseline or timepoint.id == baseline.id:
        return Alignment(_identity(), "baseline")
    for key in REGISTRATION_SEQUENCES:
        if key in baseline.images and key in timepoint.images:
            fixed, moving = read_volume(baseline.images[key]), read_volume(timepoint.images[key])
            # Same sequence on both visits: 10 000 samples per level are plenty for mutual information.
            options = {"working_spacing_mm": 2.0, "samples_per_level": 10000, **registration_options}
            try:
                result = register(fixed, moving, kind="rigid", **options)
            except (RuntimeError, ValueError) as error:  # e.g. images that do not overlap at all
                first_line = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
                return Alignment(_identity(), f"identity: registration of {key} failed ({first_line[:120]})")
            return Alignment(result.transform, f"rigid, {key}, MI {result.metric_value:.3f}")
    return Alignment(_identity(), "identity: no image common to this visit and the baseline")


def lesion_status(followup: Volume, to_followup: "sitk.Transform", earlier: Sequence[tuple[Volume, "sitk.Transform"]],
                  baseline_grid: Volume, measurements: TimepointMeasurements | None = None,
                  tolerance_mm: float = 5.0) -> tuple[LesionStatus, ...]:
    """Classify each enhancing lesion of a follow-up as new or present before.

    Args:
        followup: the follow-up's internal label map on its own grid.
        to_followup: maps baseline points to follow-up points.
        earlier: (label map, baseline → visit transform) of every earlier visit, baseline included.
        baseline_grid: the baseline's grid (the common space).
        measurements: the follow-up's measurements, to report which lesions are measurable.
        tolerance_mm: a lesion within this distance of earlier enhancing tumour is not new (covers
            registration error and growth from an old lesion's edge).

    Returns:
        One :class:`LesionStatus` per lesion, numbered as :func:`TumorSegLib.measurements.label_lesions` does.
    """
    from scipy import ndimage

    from .registration import resample_moving

    components, count = label_lesions(followup.array == Label.ET)
    if count == 0:
        return ()
    grid = baseline_grid.with_array(np.zeros(baseline_grid.shape, np.uint8))
    before = np.zeros(grid.shape, bool)
    for labels, transform in earlier:
        mapped = resample_moving(labels.with_array((labels.array == Label.ET).astype(np.uint8)), grid, transform, 0)
        before |= mapped.array > 0
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    measurable = {lesion.index: lesion.measurable for lesion in measurements.lesions} if measurements else {}
    if before.any():
        # Distance (mm) to earlier enhancing tumour, computed in baseline space, then carried onto the follow-up
        # grid (linear) so each lesion is judged on its own voxels.
        distance = grid.with_array(ndimage.distance_transform_edt(~before, sampling=grid.spacing).astype(np.float32))
        far = float(np.linalg.norm(np.array(grid.shape) * np.array(grid.spacing)))
        on_followup = resample_moving(distance, followup, to_followup.GetInverse(), order=1, default=far).array
        lesion_voxels = components > 0
        nearest = np.full(count + 1, np.inf)
        np.minimum.at(nearest, components[lesion_voxels], on_followup[lesion_voxels])
        nearest = nearest[1:]
    else:
        nearest = [math.inf] * count
    return tuple(LesionStatus(index, float(sizes[index]) * followup.voxel_volume_ml, float(nearest[index - 1]),
                              bool(nearest[index - 1] > tolerance_mm), measurable.get(index, False))
                 for index in range(1, count + 1))


# --- table, CSV and plot ------------------------------------------------------------------------------


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def timeline_rows(timeline: Timeline, lesions: Mapping[str, Sequence[LesionStatus]] | None = None,
                  alignments: Mapping[str, Alignment] | None = None, primary: str = "bidimensional",
                  thresholds: Mapping[str, RanoThresholds] = RANO_2_0) -> list[dict]:
    """One row per visit, by date: volumes, changes vs baseline and nadir, SPD, new lesions, categories.

    Uses each timepoint's stored ``measurements``; visits without them are "NE" (not evaluable).

    Args:
        timeline: the visits.
        lesions: per visit id, its lesions' new/old status (from :func:`lesion_status`); without it new
            lesions are not assessed (blank).
        alignments: per visit id, how it was aligned (shown in the row).
        primary: the method whose category fills the ``category`` column.
        thresholds: per-method thresholds.

    Returns:
        A list of flat dicts (CSV-ready), volumes in mL, SPD in mm², changes in mL/mm² and %.
    """
    if primary not in thresholds:
        raise ValueError(f"primary must be one of {sorted(thresholds)}, got {primary!r}")
    timeline.validate()
    ordered = timeline.ordered()
    baseline = timeline.baseline
    start = next(n for n, tp in enumerate(ordered) if tp.id == baseline.id)
    base = baseline.measurements
    history: list[TimepointMeasurements] = []  # evaluated visits from baseline up to the current one
    rows = []
    for position, tp in enumerate(ordered):
        current = tp.measurements
        row: dict[str, Any] = {"timepoint": tp.id, "date": tp.date.isoformat(),
                               "days_from_baseline": (tp.date - baseline.date).days,
                               "role": "baseline" if tp.id == baseline.id else
                               ("pre-baseline" if position < start else "follow-up"),
                               "corrected": tp.corrected}
        values = _values(current)
        for key in VOLUME_KEYS:
            row[f"{key}_ml"] = _rounded(values.get(key), 3)
            # The model's 5th-95th percentile volume; it describes the AI result, so not after hand edits.
            interval = tp.volume_intervals.get(key) if not tp.corrected else None
            row[f"{key}_interval_ml"] = f"{interval[0]:.2f}-{interval[1]:.2f}" if interval else None
        row["spd_mm2"] = _rounded(values.get("SPD"), 2)
        row["enhancing_lesions"] = len(current.lesions) if current else None
        row["measurable_lesions"] = len(current.measurable_lesions) if current else None
        following = position > start and current is not None and base is not None
        nadir = {key: min(_values(m)[key] for m in history) for key in values} if following and history else {}
        for key in (*VOLUME_KEYS, "SPD"):
            prefix, unit, digits = (key.lower(), "mm2", 2) if key == "SPD" else (key, "ml", 3)
            reference = _values(base).get(key) if base else None
            if position >= start and current is not None and reference is not None:
                change = values[key] - reference
                row[f"{prefix}_change_vs_baseline_{unit}"] = round(change, digits)
                row[f"{prefix}_change_vs_baseline_pct"] = _rounded(percent_change(reference, values[key]), 2)
            else:
                row[f"{prefix}_change_vs_baseline_{unit}"] = row[f"{prefix}_change_vs_baseline_pct"] = None
            if key in nadir:
                row[f"{prefix}_change_vs_nadir_{unit}"] = round(values[key] - nadir[key], digits)
                row[f"{prefix}_change_vs_nadir_pct"] = _rounded(percent_change(nadir[key], values[key]), 2)
            else:
                row[f"{prefix}_change_vs_nadir_{unit}"] = row[f"{prefix}_change_vs_nadir_pct"] = None

        statuses = (lesions or {}).get(tp.id)
        new = [s for s in statuses if s.new] if statuses is not None else None
        row["new_lesions"] = len(new) if new is not None and following else None
        row["new_measurable_lesions"] = sum(s.measurable for s in new) if new is not None and following else None
        row["alignment"] = alignments[tp.id].method if alignments and tp.id in alignments else ""
        row["steroids"] = tp.steroids.value if tp.steroids else ""
        row["clinical_status"] = tp.clinical_status.value if tp.clinical_status else ""

        if position < start:
            categories = {method: ResponseCategory.PRE_BASELINE for method in thresholds}
            reasons = "before the baseline visit"
        elif current is None:
            categories = {method: ResponseCategory.NOT_EVALUABLE for method in thresholds}
            reasons = "no segmentation measured at this visit"
        elif tp.id == baseline.id:
            categories = {method: ResponseCategory.BASELINE for method in thresholds}
            reasons = ""
        elif base is None:
            categories = {method: ResponseCategory.NOT_EVALUABLE for method in thresholds}
            reasons = "the baseline visit has no measurements"
        else:
            responses = {}
            for method in thresholds:
                key = "SPD" if method == "bidimensional" else "ET"
                responses[method] = classify_response(
                    method, _values(base)[key], nadir[key], values[key],
                    enhancing_disease=current.has_enhancing_disease,
                    baseline_enhancing_disease=base.has_enhancing_disease,
                    measurable_disease=bool(current.measurable_lesions),
                    new_lesions=row["new_lesions"] or 0, new_measurable_lesions=row["new_measurable_lesions"] or 0,
                    steroids=tp.steroids, clinical_status=tp.clinical_status, thresholds=thresholds)
            categories = {method: response.category for method, response in responses.items()}
            reasons = "; ".join(responses[primary].reasons)
        for method, category in categories.items():
            row[f"rano_{method}"] = category.value
        row["category"] = categories[primary].value
        row["category_method"] = primary
        row["category_reasons"] = reasons
        row["note"] = IMAGING_ONLY if position > start and current is not None and base is not None else ""
        rows.append(row)
        if position >= start and current is not None:
            history.append(current)
    return rows


def _values(measurements: TimepointMeasurements | None) -> dict[str, float]:
    if measurements is None:
        return {}
    return {**{key: float(measurements.volumes_ml.get(key, 0.0)) for key in VOLUME_KEYS},
            "SPD": float(measurements.sum_of_products_mm2)}


def write_table_csv(rows: Sequence[Mapping[str, Any]], path: PathLike) -> Path:
    """Write rows (from :func:`timeline_rows`) as CSV, one header line; blanks for missing values."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if row.get(key) is None else row.get(key) for key in columns})
    return path


def plot_volumes(rows: Sequence[Mapping[str, Any]], path: PathLike, title: str = "") -> Path:
    """Plot ET, TC and WT volume (mL) against visit date, follow-ups labelled with their category; PNG.

    Uses matplotlib's Agg canvas directly, so it never needs a display and never changes pyplot's backend.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    measured = [row for row in rows if row.get("WT_ml") is not None]
    figure = Figure(figsize=(8, 4.5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    dates = [dt.date.fromisoformat(row["date"]) for row in measured]
    # Distinct markers and line styles keep regions visible where they coincide (e.g. TC = ET without necrosis).
    for key, colour, marker, style in (("WT", "tab:green", "o", "-"), ("TC", "tab:red", "s", "--"),
                                       ("ET", "goldenrod", "^", ":")):
        axes.plot(dates, [row[f"{key}_ml"] for row in measured], marker=marker, linestyle=style, color=colour,
                  label=key)
    for date, row in zip(dates, measured):
        if row.get("role") == "follow-up" and row.get("category"):
            axes.annotate(row["category"], (date, row["WT_ml"]), textcoords="offset points", xytext=(0, 8),
                          ha="center", fontsize=9)
    axes.set_xlabel("visit date")
    axes.set_ylabel("volume (mL)")
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="best")
    axes.set_title(title or "Tumour volume over time")
    figure.autofmt_xdate()
    figure.text(0.99, 0.01, f"Categories: RANO 2.0, {IMAGING_ONLY}", ha="right", va="bottom", fontsize=7,
                color="dimgray")
    figure.savefig(path, format="png")
    return path


# --- the whole computation ----------------------------------------------------------------------------


def align_visits(timeline: Timeline, register_visits: bool = True,
                 registration_options: Mapping[str, Any] | None = None) -> dict[str, Alignment]:
    """Alignment of the baseline and every later visit to the baseline (earlier visits are left out).

    Args:
        timeline: the visits; image paths must exist when ``register_visits``.
        register_visits: register rigidly (:func:`align_to_baseline`); otherwise trust scanner coordinates.
        registration_options: passed to :func:`TumorSegLib.registration.register`.

    Raises:
        FileNotFoundError: for a missing image, naming the visit.
    """
    baseline = timeline.baseline
    ordered = timeline.ordered()
    start = next(n for n, tp in enumerate(ordered) if tp.id == baseline.id)
    alignments = {}
    for tp in ordered[start:]:
        if register_visits:
            for key, path in tp.images.items():
                if not path.exists():
                    raise FileNotFoundError(f"timepoint '{tp.id}': {key} image not found: {path}")
            alignments[tp.id] = align_to_baseline(baseline, tp, **dict(registration_options or {}))
        else:
            alignments[tp.id] = Alignment(_identity(), "baseline" if tp.id == baseline.id
                                          else "identity: registration switched off")
    return alignments


def track_lesions(timeline: Timeline, labels: Mapping[str, Volume], alignments: Mapping[str, Alignment],
                  tolerance_mm: float = 5.0) -> dict[str, tuple[LesionStatus, ...]]:
    """New-or-not status of every lesion of every follow-up, against all earlier visits from the baseline on.

    Args:
        timeline: the visits (their stored measurements say which lesions are measurable).
        labels: internal label map of each segmented visit, by id, on its own grid.
        alignments: by id, from :func:`align_visits`; visits without one are skipped.
        tolerance_mm: see :func:`lesion_status`.
    """
    baseline = timeline.baseline
    if baseline.id not in labels or baseline.id not in alignments:
        return {}
    ordered = timeline.ordered()
    start = next(n for n, tp in enumerate(ordered) if tp.id == baseline.id)
    statuses: dict[str, tuple[LesionStatus, ...]] = {}
    earlier: list[tuple[Volume, sitk.Transform]] = []
    for tp in ordered[start:]:
        if tp.id not in labels or tp.id not in alignments:
            continue
        if tp.id != baseline.id:
            statuses[tp.id] = lesion_status(labels[tp.id], alignments[tp.id].transform, earlier, labels[baseline.id],
                                            tp.measurements, tolerance_mm)
        earlier.append((labels[tp.id], alignments[tp.id].transform))
    return statuses


PRINTED_COLUMNS = ("timepoint", "date", "ET_ml", "TC_ml", "WT_ml", "ET_change_vs_baseline_pct",
                   "spd_mm2", "spd_change_vs_baseline_pct", "spd_change_vs_nadir_pct", "new_lesions",
                   "rano_bidimensional", "rano_volumetric")


def format_rows(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] = PRINTED_COLUMNS) -> str:
    """A plain-text table of ``rows`` (for a terminal), with the imaging-only note underneath."""
    cells = [[str(column) for column in columns]]
    cells += [["" if row.get(column) is None else str(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(line[n]) for line in cells) for n in range(len(columns))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in cells]
    return "\n".join(lines + [f"Categories: RANO 2.0, {IMAGING_ONLY}."])


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
    import SimpleITK as sitk

    timeline = Timeline.load(timeline_path)
    if not timeline.timepoints:
        raise TimelineError(f"{timeline_path} has no timepoints; add at least a baseline visit")
    if primary not in RANO_2_0:
        raise ValueError(f"primary must be one of {sorted(RANO_2_0)}, got {primary!r}")
    out = Path(output_dir) if output_dir is not None else Path(timeline_path).parent
    out.mkdir(parents=True, exist_ok=True)

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

    alignments = align_visits(timeline, register_visits, registration_options) if timeline.baseline.id in labels else {}
    transforms: dict[str, str] = {}
    for name, alignment in alignments.items():
        if alignment.method.startswith("rigid"):
            path = out / "transforms" / f"{_safe_name(name)}_to_baseline.tfm"
            path.parent.mkdir(parents=True, exist_ok=True)
            sitk.WriteTransform(alignment.transform, str(path))
            transforms[name] = str(path)
    lesions = track_lesions(timeline, labels, alignments, tolerance_mm)

    rows = timeline_rows(timeline, lesions, alignments, primary=primary)
    table = write_table_csv(rows, out / "timeline_table.csv")
    plot = plot_volumes(rows, out / "timeline_volumes.png",
                        title=f"Patient {timeline.patient_id}" if timeline.patient_id else "")
    if save_measurements:
        timeline.save()
    return {"rows": rows, "table": str(table), "plot": str(plot), "transforms": transforms, "note": IMAGING_ONLY,
            "lesions": {key: [_json_ready(asdict(status)) for status in value] for key, value in lesions.items()}}


def _json_ready(record: dict) -> dict:
    """Infinite distances (no earlier tumour) become ``None``: JSON has no infinity."""
    return {key: None if isinstance(value, float) and math.isinf(value) else value for key, value in record.items()}


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
