"""The cohort's table (one row per case: status, message, volumes, review flags, QA, seconds, device and number
format) and its summary plot (volume distributions per region, seconds per case), from the journal's latest entry
of every case."""

from __future__ import annotations

import csv
from pathlib import Path

from ..export import atomic_write
from ..labels import VOLUME_KEYS
from .cases import BatchCase

__all__ = ["COHORT_FILE", "PLOT_FILE", "cohort_rows", "write_cohort", "plot_cohort"]

COHORT_FILE = "cohort.csv"
PLOT_FILE = "cohort_summary.png"


def cohort_rows(cases: list[BatchCase], entries: dict[str, dict]) -> list[dict]:
    """One row per input case, in input order (``not run`` when the batch stopped before it)."""
    rows = []
    for case in cases:
        entry = entries.get(case.case_id, {})
        volumes = entry.get("volumes_ml", {})
        rows.append({
            "case_id": case.case_id,
            "visit_date": case.visit_date or "",
            "status": entry.get("status", "not run"),
            "message": entry.get("message", ""),
            **{f"{key}_ml": "" if volumes.get(key) is None else volumes[key] for key in VOLUME_KEYS},
            "not_assessed": " ".join(entry.get("not_assessed", [])),
            "review_first": " ".join(entry.get("review", [])),
            "qa": " ".join(entry.get("qa", [])),
            "seconds": entry.get("seconds", ""),
            "device": entry.get("device") or "",
            "precision": entry.get("precision") or "",  # the workers of a cluster may differ (inference_precision)
            "output": f"{case.case_id}/" if entry.get("status") == "done" else "",
        })
    return rows


def write_cohort(rows: list[dict], path: Path) -> Path:
    """The cohort CSV (the batch's own summary: rewritten by every run of the batch)."""
    def write(target: Path) -> None:
        with target.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write)
    return path


def plot_cohort(rows: list[dict], path: Path) -> Path:
    """Volume distribution per region (done cases) and seconds per case, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [row for row in rows if row["status"] == "done"]
    figure, (volumes, seconds) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    data = [[float(row[f"{key}_ml"]) for row in done if row[f"{key}_ml"] != ""] for key in VOLUME_KEYS]
    if any(data):
        volumes.boxplot([values or [float("nan")] for values in data], tick_labels=list(VOLUME_KEYS), showfliers=True)
    volumes.set(title=f"Volumes, {len(done)} case(s) done", ylabel="mL")
    timed = [row for row in rows if row["seconds"] != ""]
    colours = ["tab:blue" if row["status"] == "done" else "tab:red" for row in timed]
    seconds.bar(range(len(timed)), [float(row["seconds"]) for row in timed], color=colours)
    failed = sum(row["status"] == "failed" for row in rows)
    seconds.set(title=f"Seconds per case ({failed} failed, red)", xlabel="case (input order)", ylabel="s")
    figure.suptitle("TumorSeg cohort — research use only", fontsize=10)
    figure.tight_layout()
    atomic_write(path, lambda target: figure.savefig(target, format="png"))
    plt.close(figure)
    return path
