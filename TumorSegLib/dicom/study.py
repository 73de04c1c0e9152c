"""A DICOM study in: find the series under any folder tree, tell T1 / T1c / T2 / FLAIR from the rest, read them.

A hospital export holds more than the four sequences (localisers, diffusion, perfusion, reformats) and names them
as each vendor pleases. Each series is classified from its attributes, in this order of trust: what it is not
(modality, localiser, derived, diffusion, perfusion, too few images), its name (series description and protocol
name, through :func:`TumorSegLib.sequences.guess_sequence`), the contrast agent tag, then TR/TE/TI. Every choice
carries its reason so the user can check it, and ``--assign key=SERIES_UID`` overrides it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..sequences import DISPLAY_NAMES, SEQUENCES, guess_sequence
from ..volume import PathLike, Volume, read_dicom_files

__all__ = ["SeriesInfo", "StudyAssignment", "IGNORED", "scan_folder", "classify_series", "choose_study",
           "assign_series", "read_series", "parse_assignments"]

IGNORED = "ignored"
_MIN_IMAGES = 10  # fewer images than this is a localiser or a single-slice acquisition, not a brain volume
# Tags read from every file (pixel data never): enough to group, classify and sort.
_TAGS = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "Modality", "SeriesNumber",
         "SeriesDescription", "ProtocolName", "ImageType", "ContrastBolusAgent", "SequenceName", "ScanningSequence",
         "RepetitionTime", "EchoTime", "InversionTime", "MRAcquisitionType", "DiffusionBValue", "PatientID",
         "PatientName", "StudyDate", "StudyTime", "StudyDescription", "AccessionNumber", "FrameOfReferenceUID",
         "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "Rows", "Columns",
         "NumberOfFrames", "AcquisitionTime", "SeriesTime"]
_LOCALISER = re.compile(r"locali[sz]er|scout|survey|3[\W_]*plane|\baahead|\bloc\b|\bcal\b|calibration|"
                        r"assetcal|pu_?calibration", re.I)
_DIFFUSION = re.compile(r"dwi|dti|diff|\badc\b|trace|tensor|ep2d_diff|\bfa\b|b[\W_]?1000|resolve", re.I)
_PERFUSION = re.compile(r"perf|\bdsc\b|\bdce\b|\basl\b|pcasl|rcbv|\bcbf\b|\bcbv\b|\bmtt\b|\bttp\b|dynamic", re.I)
_OTHER = re.compile(r"\bswi\b|suscept|\bswan\b|\bmra\b|\btof\b|angio|spectro|\bcsi\b|\bsvs\b|t2[\W_]*\*|"
                    r"\bhemo\b|\bgre\b|\bmip\b|\bbold\b|fmri|\bepi\b", re.I)


@dataclass(frozen=True)
class SeriesInfo:
    """One image series of a study, from its headers.

    Attributes:
        files: the series' files, one per slice, in the order read from disk (sorted on reading).
        tr_ms, te_ms, ti_ms: repetition, echo and inversion times (``None`` when the header lacks them).
        acquisition: ``MRAcquisitionType`` (``2D``/``3D``) or ``""``.
        voxel_mm: in-plane pixel spacing and slice thickness.
    """

    study_uid: str
    series_uid: str
    number: int | None
    description: str
    modality: str
    files: tuple[Path, ...]
    image_type: tuple[str, ...] = ()
    contrast_agent: str = ""
    sequence_name: str = ""
    tr_ms: float | None = None
    te_ms: float | None = None
    ti_ms: float | None = None
    acquisition: str = ""
    diffusion_tag: bool = False
    multiframe: bool = False
    voxel_mm: tuple[float, float, float] | None = None
    time: str = ""
    patient: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"#{self.number if self.number is not None else '?'} '{self.description or '(no description)'}'"

    def identity(self) -> dict:
        """Patient and study identity of the series and its UIDs, for the provenance record."""
        return {**self.patient, "StudyInstanceUID": self.study_uid, "SeriesInstanceUID": self.series_uid,
                "SeriesNumber": self.number, "SeriesDescription": self.description}


@dataclass
class StudyAssignment:
    """Which series is which sequence, and why; what was ignored, and why.

    Attributes:
        chosen: ``{sequence key: series}``.
        reasons: ``{sequence key: why it was chosen}``.
        alternatives: ``{sequence key: other series that looked like it}`` (the user may pick one instead).
        ignored: ``[(series, why)]``.
        warnings: guesses the user should check (shown and written into the summary's QA findings).
    """

    chosen: dict[str, SeriesInfo]
    reasons: dict[str, str]
    alternatives: dict[str, list[SeriesInfo]]
    ignored: list[tuple[SeriesInfo, str]]
    warnings: list[str] = field(default_factory=list)

    @property
    def series(self) -> list[SeriesInfo]:
        every = list(self.chosen.values()) + [s for group in self.alternatives.values() for s in group]
        return every + [s for s, _ in self.ignored]

    def describe(self) -> str:
        """The assignment as a person reads it (printed before any heavy work)."""
        lines = []
        for key in SEQUENCES:
            if key in self.chosen:
                series = self.chosen[key]
                lines.append(f"  {DISPLAY_NAMES[key]:15s} <- {series.label} {series.series_uid} ({self.reasons[key]})")
            else:
                lines.append(f"  {DISPLAY_NAMES[key]:15s} <- none found")
            for other in self.alternatives.get(key, []):
                lines.append(f"  {'':15s}    also possible: {other.label} {other.series_uid}")
        for series, why in self.ignored:
            lines.append(f"  ignored         {series.label} {series.series_uid} ({why})")
        lines += [f"  check: {warning}" for warning in self.warnings]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"assigned": {key: {**s.identity(), "reason": self.reasons[key]} for key, s in self.chosen.items()},
                "ignored": [{"SeriesInstanceUID": s.series_uid, "SeriesDescription": s.description, "reason": why}
                            for s, why in self.ignored],
                "warnings": list(self.warnings)}


def _number(value) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _text(value) -> str:
    return str(value).strip() if value is not None else ""


def scan_folder(folder: PathLike) -> list[SeriesInfo]:
    """Every image series under ``folder`` (any depth), from the headers only.

    Files that are not DICOM (a DICOMDIR, a README) are passed over.

    Raises:
        FileNotFoundError: if ``folder`` does not exist.
        ValueError: if it holds no DICOM image.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--study {folder}: folder not found")
    groups: dict[tuple[str, str], list[tuple[Path, object]]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_TAGS)
        except (InvalidDicomError, OSError, ValueError, EOFError):
            continue
        if "SeriesInstanceUID" not in header or "Rows" not in header:
            continue  # not an image (DICOMDIR, presentation state, ...)
        groups.setdefault((_text(header.StudyInstanceUID), _text(header.SeriesInstanceUID)), []).append((path, header))
    if not groups:
        raise ValueError(f"--study {folder}: no DICOM image found in this folder or below it; give the folder "
                         "that holds the study's DICOM files")
    return [_series_info(study, series, members) for (study, series), members in groups.items()]


def _series_info(study: str, series: str, members: list[tuple[Path, object]]) -> SeriesInfo:
    first = members[0][1]
    get = first.get
    spacing = [_number(v) for v in (get("PixelSpacing") or [])]
    thickness = _number(get("SliceThickness"))
    voxel = (spacing[0], spacing[1], thickness) if len(spacing) == 2 and None not in spacing and thickness else None
    number = _number(get("SeriesNumber"))
    return SeriesInfo(
        study_uid=study, series_uid=series, number=int(number) if number is not None else None,
        description=_text(get("SeriesDescription")) or _text(get("ProtocolName")), modality=_text(get("Modality")),
        files=tuple(path for path, _ in members), image_type=tuple(_text(v).upper() for v in (get("ImageType") or [])),
        contrast_agent=_text(get("ContrastBolusAgent")), sequence_name=_text(get("SequenceName")),
        tr_ms=_number(get("RepetitionTime")), te_ms=_number(get("EchoTime")), ti_ms=_number(get("InversionTime")),
        acquisition=_text(get("MRAcquisitionType")).upper(),
        diffusion_tag=any("DiffusionBValue" in header for _, header in members[:5]),
        multiframe=(_number(get("NumberOfFrames")) or 1) > 1, voxel_mm=voxel,
        time=_text(get("AcquisitionTime")) or _text(get("SeriesTime")),
        patient={"PatientID": _text(get("PatientID")), "PatientName": _text(get("PatientName")),
                 "StudyDate": _text(get("StudyDate")), "StudyDescription": _text(get("StudyDescription")),
                 "AccessionNumber": _text(get("AccessionNumber"))})


_NO_AGENT = re.compile(r"^(none|no|n/?a|-+|0)?$", re.I)


def _has_contrast_agent(series: SeriesInfo) -> bool:
    return not _NO_AGENT.match(series.contrast_agent)


def classify_series(series: SeriesInfo) -> tuple[str, str]:
    """``(sequence key or IGNORED, reason)`` for one series."""
    names = f"{series.description} {series.sequence_name}"
    if series.modality != "MR":
        return IGNORED, f"modality {series.modality or 'unknown'}, not MR"
    if "LOCALIZER" in series.image_type or _LOCALISER.search(names):
        return IGNORED, "localiser"
    if len(series.image_type) and series.image_type[0] == "DERIVED":
        return IGNORED, "derived image (reformat, map or projection)"
    if series.diffusion_tag or _DIFFUSION.search(names):
        return IGNORED, "diffusion"
    if _PERFUSION.search(names):
        return IGNORED, "perfusion"
    if _OTHER.search(names):
        return IGNORED, "another kind of sequence (SWI, angiography, T2*, functional or spectroscopy)"
    if series.multiframe:
        return IGNORED, "enhanced multi-frame object: export the series as classic single-frame MR images"
    if len(series.files) < _MIN_IMAGES:
        return IGNORED, f"only {len(series.files)} image(s)"
    guessed = guess_sequence(series.description) or guess_sequence(series.sequence_name)
    if guessed is not None:
        if guessed == "t1" and _has_contrast_agent(series) and not re.search(r"pre|w/o|without|non|native|plain",
                                                                            series.description, re.I):
            return "t1c", f"T1 by name, contrast agent '{series.contrast_agent}' recorded"
        return guessed, "by name"
    return _classify_by_timing(series)


def _classify_by_timing(series: SeriesInfo) -> tuple[str, str]:
    """TR/TE/TI rules for unnamed series (typical 1.5-3 T values)."""
    tr, te, ti = series.tr_ms, series.te_ms, series.ti_ms
    if tr is None or te is None:
        return IGNORED, "no usable name and no TR/TE in the headers"
    timing = f"TR {tr:g} ms, TE {te:g} ms" + (f", TI {ti:g} ms" if ti else "")
    if ti and ti >= 1500 and tr >= 4000:
        return "flair", f"long inversion time ({timing})"
    if te >= 70 and tr >= 2000:
        return "t2", f"long TR and TE ({timing})"
    if te <= 30 and (tr <= 1000 or (ti and 600 <= ti <= 1300)):
        if _has_contrast_agent(series):
            return "t1c", f"T1 timing ({timing}), contrast agent '{series.contrast_agent}' recorded"
        return "t1", f"T1 timing ({timing})"
    return IGNORED, f"timing fits none of T1, T2, FLAIR ({timing})"


def _preference(series: SeriesInfo) -> tuple:
    """Which of several candidates for one sequence to take: 3D first, then the finest voxels, then more slices."""
    voxel = float(np.prod(series.voxel_mm)) if series.voxel_mm else float("inf")
    return (series.acquisition == "3D", -voxel, len(series.files))


def choose_study(series: Sequence[SeriesInfo], study_uid: str | None = None) -> list[SeriesInfo]:
    """The series of one study: the only one, or ``study_uid``.

    Raises:
        ValueError: listing the studies, when there are several and none (or an unknown one) was chosen.
    """
    studies: dict[str, list[SeriesInfo]] = {}
    for item in series:
        studies.setdefault(item.study_uid, []).append(item)
    if study_uid is not None:
        if study_uid not in studies:
            raise ValueError(f"--study-uid {study_uid} is not in the folder; it holds {_list_studies(studies)}")
        return studies[study_uid]
    if len(studies) > 1:
        raise ValueError(f"the folder holds {len(studies)} studies: {_list_studies(studies)}; choose one with "
                         "--study-uid")
    return next(iter(studies.values()))


def _list_studies(studies: Mapping[str, list[SeriesInfo]]) -> str:
    return "; ".join(f"{uid} (date {group[0].patient.get('StudyDate') or '?'}, "
                     f"'{group[0].patient.get('StudyDescription') or ''}', {len(group)} series)"
                     for uid, group in studies.items())


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """``["t1c=1.2.3", ...]`` → ``{"t1c": "1.2.3"}``; ``none`` as the UID leaves that sequence out.

    Raises:
        ValueError: naming the item, for an unknown sequence key or a malformed item.
    """
    overrides = {}
    for item in items:
        key, sep, uid = item.partition("=")
        key = key.strip().lower()
        if not sep or not uid.strip() or key not in SEQUENCES:
            raise ValueError(f"--assign {item}: write SEQUENCE=SERIES_UID with SEQUENCE one of {list(SEQUENCES)} "
                             "(or SEQUENCE=none to leave it out)")
        overrides[key] = uid.strip()
    return overrides


def assign_series(series: Sequence[SeriesInfo], overrides: Mapping[str, str] | None = None) -> StudyAssignment:
    """Classify every series of one study and choose one per sequence; ``overrides`` (``{key: series UID or
    "none"}``) win over the classification.

    Raises:
        ValueError: for an override naming a series that is not in the study.
    """
    candidates: dict[str, list[tuple[SeriesInfo, str]]] = {}
    ignored = []
    for item in sorted(series, key=lambda s: (s.number if s.number is not None else 1 << 30, s.series_uid)):
        kind, why = classify_series(item)
        if kind == IGNORED:
            ignored.append((item, why))
        else:
            candidates.setdefault(kind, []).append((item, why))
    warnings = _split_unnamed_t1(candidates)
    chosen, reasons, alternatives = {}, {}, {}
    for key, found in candidates.items():
        ranked = sorted(found, key=lambda pair: _preference(pair[0]), reverse=True)
        chosen[key], reasons[key] = ranked[0]
        alternatives[key] = [s for s, _ in ranked[1:]]
    assignment = StudyAssignment(chosen, reasons, alternatives, ignored, warnings)
    return _apply_overrides(assignment, series, overrides or {})


def _split_unnamed_t1(candidates: dict[str, list[tuple[SeriesInfo, str]]]) -> list[str]:
    """Two T1 series and no T1c, neither named pre or post contrast: the later one is taken as post-contrast
    (the usual order of a glioma protocol), with a warning to check it."""
    if "t1c" in candidates or len(candidates.get("t1", [])) < 2:
        return []
    ordered = sorted(candidates["t1"], key=lambda pair: (pair[0].time, pair[0].number or 0))
    later, why = ordered[-1]
    if re.search(r"pre|w/o|without|non|native|plain", later.description, re.I):
        return []
    candidates["t1"] = ordered[:-1]
    candidates["t1c"] = [(later, f"{why}; taken as post-contrast because it was acquired after the other T1")]
    return [f"{later.label} was taken as T1c only because it came after the other T1 series; if that is wrong, "
            f"give --assign t1c=SERIES_UID"]


def _apply_overrides(assignment: StudyAssignment, series: Sequence[SeriesInfo],
                     overrides: Mapping[str, str]) -> StudyAssignment:
    by_uid = {s.series_uid: s for s in series}
    for key, uid in overrides.items():
        if uid.lower() == "none":
            assignment.chosen.pop(key, None)
            assignment.reasons.pop(key, None)
            continue
        if uid not in by_uid:
            known = ", ".join(f"{s.series_uid} {s.label}" for s in series)
            raise ValueError(f"--assign {key}={uid}: no such series in the study; it holds {known}")
        for other in [k for k, s in assignment.chosen.items() if s.series_uid == uid and k != key]:
            assignment.chosen.pop(other)  # a series is one sequence only
            assignment.reasons.pop(other)
        assignment.chosen[key] = by_uid[uid]
        assignment.reasons[key] = "chosen with --assign"
        assignment.ignored = [(s, why) for s, why in assignment.ignored if s.series_uid != uid]
    for key in assignment.alternatives:
        chosen = {s.series_uid for s in assignment.chosen.values()}
        assignment.alternatives[key] = [s for s in assignment.alternatives[key] if s.series_uid not in chosen]
    return assignment


def read_series(series: SeriesInfo) -> Volume:
    """The series' voxels as a :class:`Volume` (slices sorted along their normal; missing slices refused)."""
    return read_dicom_files(series.files, f"series {series.label} {series.series_uid}")

