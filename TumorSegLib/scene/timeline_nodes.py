"""The timeline's table node and volume chart: rows of :func:`~TumorSegLib.longitudinal.timeline_rows` shown
in Slicer's table and plot views."""

from __future__ import annotations

from collections.abc import Sequence

from ..labels import REGION_COLORS, Region
from .nodes import ROLE_ATTRIBUTE

__all__ = ["TIMELINE_COLUMNS", "create_timeline_table", "fill_timeline_table", "create_volume_chart"]

TIMELINE_COLUMNS = (
    ("Timepoint", "timepoint"), ("Date", "date"), ("Days", "days_from_baseline"), ("ET (mL)", "ET_ml"),
    ("TC (mL)", "TC_ml"), ("WT (mL)", "WT_ml"), ("Not assessed", "not_assessed"),
    ("ET interval (mL)", "ET_interval_ml"), ("WT interval (mL)", "WT_interval_ml"), ("ET vs baseline (%)", "ET_change_vs_baseline_pct"),
    ("ET vs nadir (%)", "ET_change_vs_nadir_pct"), ("SPD (mm2)", "spd_mm2"),
    ("SPD vs baseline (%)", "spd_change_vs_baseline_pct"), ("New lesions", "new_lesions"),
    ("Category (imaging only)", "category"), ("Confirmation", "confirmation"), ("Steroids", "steroids"),
    ("Clinical status", "clinical_status"),
    ("Edited", "corrected"),
)
# Text, so that "not assessed" shows blank (new lesions before alignment) rather than as nan.
_TEXT_COLUMNS = frozenset({"timepoint", "date", "category", "confirmation", "corrected", "steroids",
                           "clinical_status", "new_lesions", "not_assessed"})
PLOTTED_REGIONS = (Region.ET, Region.TC, Region.WT)


def create_timeline_table(scene, patient_id: str):
    """An empty table node for a patient's timeline."""
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(f"{patient_id} timeline"))
    table.SetAttribute(ROLE_ATTRIBUTE, "timeline")
    return table


def _cell(value) -> str:
    return "yes" if value is True else "no" if value is False else "" if value is None else str(value)


def fill_timeline_table(table_node, rows: Sequence[dict], tolerance_mm: float) -> None:
    """Replace the table's columns with :data:`TIMELINE_COLUMNS` of ``rows`` (numbers as numbers, blanks as nan)."""
    import vtk

    table = table_node.GetTable()
    modifying = table_node.StartModify()
    table_node.RemoveAllColumns()
    for title, key in TIMELINE_COLUMNS:
        numeric = key not in _TEXT_COLUMNS and not key.endswith("_interval_ml")
        array = vtk.vtkDoubleArray() if numeric else vtk.vtkStringArray()
        array.SetName(title)
        array.SetNumberOfTuples(len(rows))
        for index, row in enumerate(rows):
            value = row.get(key)
            array.SetValue(index, (float("nan") if value is None else float(value)) if numeric else _cell(value))
        table.AddColumn(array)
    table_node.SetColumnDescription("Category (imaging only)",
                                    "RANO 2.0 imaging-only category: needs clinical confirmation")
    table_node.SetColumnDescription("New lesions", f"lesions farther than {tolerance_mm:g} mm from all earlier "
                                    "tumour of the series, after alignment on the baseline")
    table_node.Modified()
    table_node.EndModify(modifying)


def create_volume_chart(scene, table_node, patient_id: str):
    """A chart of ET, TC and WT volume (mL) against days from baseline, plotting ``table_node``'s columns."""
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", scene.GenerateUniqueName(f"{patient_id} volumes"))
    chart.SetTitle(f"{patient_id}: tumour volumes (imaging only)")
    chart.SetXAxisTitle("Days from baseline")
    chart.SetYAxisTitle("Volume (mL)")
    for region in PLOTTED_REGIONS:
        series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{patient_id} {region.value}")
        series.SetAndObserveTableNodeID(table_node.GetID())
        series.SetXColumnName("Days")
        series.SetYColumnName(f"{region.value} (mL)")
        series.SetPlotType(series.PlotTypeScatter)
        series.SetMarkerStyle(series.MarkerStyleCircle)
        series.SetColor(*REGION_COLORS[region])
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
    return chart
