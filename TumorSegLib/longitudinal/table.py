"""The per-visit table: volumes, changes vs baseline and nadir, SPD, new lesions, categories; CSV and text."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..labels import VOLUME_KEYS
from ..volume import PathLike
from .followup import REGION_OF, FollowUp
from .lesions import Alignment
from .measurements import TimepointMeasurements
from .rano import IMAGING_ONLY, ResponseCategory, percent_change
from .timeline import Timeline, Timepoint

__all__ = ["timeline_rows", "lesion_rows", "write_table_csv", "format_rows", "PRINTED_COLUMNS"]



def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def timeline_rows(timeline: Timeline, followup: FollowUp, alignments: Mapping[str, Alignment] | None = None,
                  primary: str = "bidimensional") -> list[dict]:
    """One row per visit, by date: volumes, changes vs baseline and nadir, target SPD, new lesions, categories.

    Uses each timepoint's stored ``measurements`` and the follow-up assessment (:func:`assess_timeline`).

    Args:
        timeline: the visits.
        followup: the lesions followed and each method's categories.
        alignments: per visit id, how it was aligned (shown in the row).
        primary: the method whose category fills the ``category`` column.

    Returns:
        A list of flat dicts (CSV-ready), volumes in mL, SPD in mm², changes in mL/mm² and %.
    """
    if primary not in followup.responses:
        raise ValueError(f"primary must be one of {sorted(followup.responses)}, got {primary!r}")
    timeline.validate()
    region = REGION_OF[followup.assessment]
    rows = []
    nadir_history: dict[str, list[dict]] = {}  # per series baseline: values of its evaluated visits so far
    for tp in timeline.ordered():
        response = followup.responses[primary][tp.id]
        series = response.baseline
        base_tp = timeline.get(series) if series else None
        values = _values(tp, followup.lesions.spd_mm2.get(tp.id), region)
        row: dict[str, Any] = {"timepoint": tp.id, "date": tp.date.isoformat(), "series_baseline": series,
                               "days_from_baseline": (tp.date - base_tp.date).days if base_tp else None,
                               "role": _role(response), "corrected": tp.corrected}
        _measure_columns(row, tp, tp.measurements, values)
        row["not_assessed"] = _not_assessed_text(tp.unassessed())
        history = nadir_history.setdefault(series, [])
        scored = response.category not in (ResponseCategory.BASELINE, ResponseCategory.PRE_BASELINE,
                                           ResponseCategory.NOT_EVALUABLE, ResponseCategory.AFTER_PROGRESSION)
        base = _values(base_tp, followup.lesions.spd_mm2.get(series), region) if base_tp and values else {}
        nadir = {key: min(h[key] for h in history if key in h) for key in values
                 if scored and any(key in h for h in history)}
        _change_columns(row, values, base, nadir)
        new, new_measurable = followup.lesions.new.get(tp.id, (None, None))
        row["new_lesions"], row["new_measurable_lesions"] = (new, new_measurable) if scored else (None, None)
        row["alignment"] = alignments[tp.id].method if alignments and tp.id in alignments else ""
        row["steroids"] = tp.steroids.value if tp.steroids else ""
        row["clinical_status"] = tp.clinical_status.value if tp.clinical_status else ""
        for method, by_visit in followup.responses.items():
            row[f"rano_{method}"] = by_visit[tp.id].category.value
            row[f"rano_{method}_confirmation"] = by_visit[tp.id].confirmation.value
        row.update(category=response.category.value, confirmation=response.confirmation.value,
                   category_method=primary, assessment=followup.assessment.value,
                   category_reasons="; ".join(response.reasons), note=IMAGING_ONLY if scored else "")
        rows.append(row)
        if values and response.category is not ResponseCategory.PRE_BASELINE:
            history.append(values)
    return rows


def _role(response) -> str:
    return {ResponseCategory.BASELINE: "baseline", ResponseCategory.PRE_BASELINE: "pre-baseline"}.get(
        response.category, "follow-up")


def lesion_rows(followup: FollowUp) -> list[dict]:
    """The per-lesion list: every followed lesion (target, non-target, new) at every visit."""
    return [row.as_dict() for row in followup.lesions.rows]


def _measure_columns(row: dict, tp: Timepoint, current: TimepointMeasurements | None, values: dict) -> None:
    """Volumes (with the AI interval, until the visit is edited), SPD and lesion counts of the visit."""
    for key in VOLUME_KEYS:
        row[f"{key}_ml"] = _rounded(values.get(key), 3)
        # The model's 5th-95th percentile volume; it describes the AI result, so not after hand edits.
        interval = tp.volume_intervals.get(key) if not tp.corrected and key in values else None
        row[f"{key}_interval_ml"] = f"{interval[0]:.2f}-{interval[1]:.2f}" if interval else None
    row["spd_mm2"] = _rounded(values.get("SPD"), 2)  # of the target lesions chosen at the series' baseline
    enhancing, t2_flair = current and "ET" in values, current and "WT" in values
    row["enhancing_lesions"] = len(current.lesions) if enhancing else None
    row["measurable_lesions"] = len(current.measurable_lesions) if enhancing else None
    row["t2_flair_lesions"] = len(current.t2_lesions) if t2_flair else None


def _change_columns(row: dict, values: dict, base: dict, nadir: dict) -> None:
    """Change of each volume and of the SPD vs baseline (when both are measured) and vs nadir (follow-ups)."""
    for key in (*VOLUME_KEYS, "SPD"):
        prefix, unit, digits = (key.lower(), "mm2", 2) if key == "SPD" else (key, "ml", 3)
        for name, reference in (("baseline", base.get(key)), ("nadir", nadir.get(key))):
            known = reference is not None and key in values
            row[f"{prefix}_change_vs_{name}_{unit}"] = round(values[key] - reference, digits) if known else None
            row[f"{prefix}_change_vs_{name}_pct"] = (_rounded(percent_change(reference, values[key]), 2) if known
                                                     else None)


def _values(tp: Timepoint, target_spd: float | None, region: str) -> dict[str, float]:
    """Volumes, and the SPD of the baseline's target lesions (of the assessed ``region``) as followed to this
    visit; what the visit's images cannot show is left out."""
    measurements, unassessed = tp.measurements, tp.unassessed()
    if measurements is None:
        return {}
    values = {key: float(measurements.volumes_ml.get(key, 0.0)) for key in VOLUME_KEYS if key not in unassessed}
    if region not in unassessed:
        values["SPD"] = target_spd if target_spd is not None else float(measurements.sum_of_products_mm2)
    return values


def _not_assessed_text(unassessed: Mapping[str, str]) -> str:
    """``"ED, WT: no T2/FLAIR"``: the volumes a visit cannot show, grouped by why."""
    reasons: dict[str, list[str]] = {}
    for key, why in unassessed.items():
        reasons.setdefault(why, []).append(key)
    return "; ".join(f"{', '.join(keys)}: {why}" for why, keys in reasons.items())


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


PRINTED_COLUMNS = ("timepoint", "date", "ET_ml", "TC_ml", "WT_ml", "not_assessed", "ET_change_vs_baseline_pct",
                   "spd_mm2", "spd_change_vs_baseline_pct", "spd_change_vs_nadir_pct", "new_lesions",
                   "rano_bidimensional", "rano_volumetric", "confirmation")


def format_rows(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] = PRINTED_COLUMNS) -> str:
    """A plain-text table of ``rows`` (for a terminal), with the imaging-only note underneath."""
    cells = [[str(column) for column in columns]]
    cells += [["" if row.get(column) is None else str(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(line[n]) for line in cells) for n in range(len(columns))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in cells]
    return "\n".join(lines + [f"Categories: RANO 2.0, {IMAGING_ONLY}."])
