"""The volume-over-time plot of a timeline (PNG, no display needed)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..labels import REGION_COLORS, Region
from ..volume import PathLike
from .rano import IMAGING_ONLY

__all__ = ["plot_volumes"]



def plot_volumes(rows: Sequence[Mapping[str, Any]], path: PathLike, title: str = "") -> Path:
    """Plot ET, TC and WT volume (mL) against visit date, each visit labelled with its category and, when it
    needs one, its confirmation state (preliminary, confirmed, not confirmed); PNG.

    Uses matplotlib's Agg canvas directly, so it never needs a display and never changes pyplot's backend.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(8, 4.5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    # Distinct markers and line styles keep regions visible where they coincide (e.g. TC = ET without necrosis).
    # Each region has the visits that measured it (a visit without T2/FLAIR has no WT, one without T1c no ET).
    for region, marker, style in ((Region.WT, "o", "-"), (Region.TC, "s", "--"), (Region.ET, "^", ":")):
        measured = [row for row in rows if row.get(f"{region.value}_ml") is not None]
        axes.plot([dt.date.fromisoformat(row["date"]) for row in measured],
                  [row[f"{region.value}_ml"] for row in measured], marker=marker, linestyle=style,
                  color=REGION_COLORS[region], label=region.value)
    for row in rows:
        height = next((row[key] for key in ("WT_ml", "TC_ml", "ET_ml") if row.get(key) is not None), None)
        if height is not None and row.get("role") in ("follow-up", "baseline") and row.get("category"):
            label = row["category"] + (f"\n({row['confirmation']})" if row.get("confirmation") else "")
            axes.annotate(label, (dt.date.fromisoformat(row["date"]), height), textcoords="offset points",
                          xytext=(0, 8), ha="center", fontsize=8, color="darkred" if row["category"] == "PD" else "black")
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
