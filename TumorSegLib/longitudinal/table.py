"""The per-visit table: volumes, changes vs baseline and nadir, SPD, new lesions, categories; CSV and text."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..labels import VOLUME_KEYS
from ..volume import PathLike
from .lesions import Alignment, LesionStatus
from .measurements import TimepointMeasurements
from .rano import IMAGING_ONLY, RANO_2_0, RanoThresholds, ResponseCategory, classify_response, percent_change
from .timeline import Timeline, Timepoint

__all__ = ["timeline_rows", "write_table_csv", "format_rows", "PRINTED_COLUMNS"]



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
        _measure_columns(row, tp, current, values)
        following = position > start and current is not None and base is not None
        nadir = {key: min(_values(m)[key] for m in history) for key in values} if following and history else {}
        _change_columns(row, values, _values(base) if position >= start and current is not None else {}, nadir)
        statuses = (lesions or {}).get(tp.id)
        new = [s for s in statuses if s.new] if statuses is not None else None
        row["new_lesions"] = len(new) if new is not None and following else None
        row["new_measurable_lesions"] = sum(s.measurable for s in new) if new is not None and following else None
        row["alignment"] = alignments[tp.id].method if alignments and tp.id in alignments else ""
        row["steroids"] = tp.steroids.value if tp.steroids else ""
        row["clinical_status"] = tp.clinical_status.value if tp.clinical_status else ""
        status = ("before the baseline visit" if position < start else
                  "no segmentation measured at this visit" if current is None else
                  "" if tp.id == baseline.id else "the baseline visit has no measurements" if base is None else None)
        categories, reasons = _categories(row, tp, base, values, nadir, status, primary, thresholds)
        for method, category in categories.items():
            row[f"rano_{method}"] = category.value
        row.update(category=categories[primary].value, category_method=primary, category_reasons=reasons,
                   note=IMAGING_ONLY if following else "")
        rows.append(row)
        if position >= start and current is not None:
            history.append(current)
    return rows


def _measure_columns(row: dict, tp: Timepoint, current: TimepointMeasurements | None, values: dict) -> None:
    """Volumes (with the AI interval, until the visit is edited), SPD and lesion counts of the visit."""
    for key in VOLUME_KEYS:
        row[f"{key}_ml"] = _rounded(values.get(key), 3)
        # The model's 5th-95th percentile volume; it describes the AI result, so not after hand edits.
        interval = tp.volume_intervals.get(key) if not tp.corrected else None
        row[f"{key}_interval_ml"] = f"{interval[0]:.2f}-{interval[1]:.2f}" if interval else None
    row["spd_mm2"] = _rounded(values.get("SPD"), 2)
    row["enhancing_lesions"] = len(current.lesions) if current else None
    row["measurable_lesions"] = len(current.measurable_lesions) if current else None


def _change_columns(row: dict, values: dict, base: dict, nadir: dict) -> None:
    """Change of each volume and of the SPD vs baseline (when both are measured) and vs nadir (follow-ups)."""
    for key in (*VOLUME_KEYS, "SPD"):
        prefix, unit, digits = (key.lower(), "mm2", 2) if key == "SPD" else (key, "ml", 3)
        for name, reference in (("baseline", base.get(key)), ("nadir", nadir.get(key))):
            known = reference is not None and key in values
            row[f"{prefix}_change_vs_{name}_{unit}"] = round(values[key] - reference, digits) if known else None
            row[f"{prefix}_change_vs_{name}_pct"] = (_rounded(percent_change(reference, values[key]), 2) if known
                                                     else None)


def _categories(row: dict, tp: Timepoint, base: TimepointMeasurements | None, values: dict, nadir: dict,
                status: str | None, primary: str, thresholds: Mapping[str, RanoThresholds]
                ) -> tuple[dict[str, ResponseCategory], str]:
    """Each method's category of the visit and the primary method's reasons; ``status`` says why a visit gets
    no category (``None`` for an evaluable follow-up)."""
    if status is not None:
        role = {"before the baseline visit": ResponseCategory.PRE_BASELINE, "": ResponseCategory.BASELINE}
        return {method: role.get(status, ResponseCategory.NOT_EVALUABLE) for method in thresholds}, status
    current = tp.measurements
    responses = {}
    for method in thresholds:
        key = "SPD" if method == "bidimensional" else "ET"
        responses[method] = classify_response(
            method, _values(base)[key], nadir[key], values[key],
            enhancing_disease=current.has_enhancing_disease, baseline_enhancing_disease=base.has_enhancing_disease,
            measurable_disease=bool(current.measurable_lesions), new_lesions=row["new_lesions"] or 0,
            new_measurable_lesions=row["new_measurable_lesions"] or 0, steroids=tp.steroids,
            clinical_status=tp.clinical_status, thresholds=thresholds)
    return {method: response.category for method, response in responses.items()}, "; ".join(responses[primary].reasons)


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
