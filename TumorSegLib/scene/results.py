"""The results table (volumes, edits, uncertainty per region), the watcher that keeps it right while the
user edits, and the uncertainty overlay in the slice views."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..labels import VOLUME_KEYS, VOLUME_MEMBERS
from ..support import VOLUME_NEEDS, still_not_assessed
from ..volume import Volume
from .nodes import ROLE_ATTRIBUTE, _slicer, volume_from_node
from .segments import edited_labels, labels_from_segmentation

__all__ = ["TABLE_COLUMNS", "INTERVAL_COLUMN", "NOT_ASSESSED_ATTRIBUTE", "UNREPORTED_ENHANCEMENT_ATTRIBUTE",
           "ai_not_assessed", "create_results_table", "update_results_table", "table_rows", "set_uncertainty_columns",
           "review_first", "ResultsWatcher", "set_uncertainty_overlay"]

INTERVAL_COLUMN = "AI volume interval (mL)"
TABLE_COLUMNS = ("Region", "Volume (mL)", "Voxels", "Mean uncertainty", "Edited", INTERVAL_COLUMN,
                 "Uncertainty score", "Review first")
NOT_ASSESSED_ATTRIBUTE = "TumorSeg.NotAssessed"  # on a segmentation node: volume keys the images cannot support
# On a segmentation node: mL of enhancing tumour the enhancement check left unreported (under its least total).
UNREPORTED_ENHANCEMENT_ATTRIBUTE = "TumorSeg.UnreportedEnhancementMl"


def ai_not_assessed(segmentation_node) -> list[str]:
    """The volume keys the AI run recorded as not assessed on ``segmentation_node`` (its images could not show
    them), before any hand edit."""
    return [key for key in (segmentation_node.GetAttribute(NOT_ASSESSED_ATTRIBUTE) or "").split(",") if key]
_NOT_ASSESSED = "not assessed"  # the table's words, with the reason in brackets, e.g. "not assessed (no T1c)"


def create_results_table(scene, name: str):
    """A table node with the results columns (one row per region: NCR, ED, ET, TC, WT)."""
    import vtk

    table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(name))
    for column, array_class in zip(TABLE_COLUMNS, (vtk.vtkStringArray, vtk.vtkDoubleArray, vtk.vtkIntArray,
                                                   vtk.vtkDoubleArray, vtk.vtkStringArray, vtk.vtkStringArray,
                                                   vtk.vtkDoubleArray, vtk.vtkStringArray)):
        array = array_class()
        array.SetName(column)
        table.AddColumn(array)
    table.SetColumnUnitLabel("Volume (mL)", "mL")
    table.SetColumnDescription("Mean uncertainty", "mean of the uncertainty volume (0-1) inside the region: "
                               "normalised entropy, or mutual information when that map was chosen")
    table.SetColumnDescription("Edited", "the region's segments differ from the AI result")
    table.SetColumnDescription(INTERVAL_COLUMN, "where the true volume should lie (calibrated on held-out "
                               "cross-validation to the coverage in the model card); without a calibration, the "
                               "5-95% spread of the AI volume over uncertainty samples")
    table.SetColumnDescription("Uncertainty score", "share of the region where the model is in doubt (0-1)")
    table.SetColumnDescription("Review first", "the region's uncertainty is high: review it before the others")
    for _ in VOLUME_KEYS:
        table.AddEmptyRow()
    table.SetAttribute(ROLE_ATTRIBUTE, "results")
    return table


def _review(table, row: int) -> str:
    # Through the table node: after a scene reload the column's array type is the reader's choice.
    return table.GetCellText(row, TABLE_COLUMNS.index("Review first")) or ""


def _set_review(table, row: int, text: str) -> None:
    table.SetCellText(row, TABLE_COLUMNS.index("Review first"), text)


def set_uncertainty_columns(table, record: dict) -> None:
    """Fill the interval, score and review columns from a ``tumorseg segment`` uncertainty record."""
    vtk_table = table.GetTable()
    flagged = set(record.get("flagged", []))
    for row, key in enumerate(VOLUME_KEYS):
        interval = record.get("volumes_ml", {}).get(key)
        low, high = (interval.get("interval") or (interval["p5"], interval["p95"])) if interval else (None, None)
        score = record.get("regions", {}).get(key, {}).get("score")
        vtk_table.GetColumnByName(INTERVAL_COLUMN).SetValue(row, f"{low:.2f} - {high:.2f}" if interval else "")
        vtk_table.GetColumnByName("Uncertainty score").SetValue(row, float("nan") if score is None else round(score, 3))
        if not _review(table, row).startswith(_NOT_ASSESSED):
            _set_review(table, row, "REVIEW" if key in flagged else "")
    vtk_table.Modified()
    table.Modified()


def table_rows(table_node) -> list[dict]:
    """A table node's rows as dicts (column name → value; numbers as numbers, NaN as ``None``)."""
    import math

    table = table_node.GetTable()
    rows = []
    for row in range(table.GetNumberOfRows()):
        values = {}
        for column in range(table.GetNumberOfColumns()):
            value = table.GetValue(row, column)
            value = value.ToDouble() if value.IsNumeric() else value.ToString()
            values[table.GetColumnName(column)] = None if isinstance(value, float) and math.isnan(value) else value
        rows.append(values)
    return rows


def review_first(record: dict) -> str:
    """One line naming the regions an uncertainty record flags, most uncertain first ('' when none), for
    the module's status line: the table's "Review first" column is easy to miss."""
    regions = record.get("regions", {})
    flagged = sorted(record.get("flagged", []), key=lambda key: -regions.get(key, {}).get("score", 0.0))
    if not flagged:
        return ""
    return "Review first: " + ", ".join(f"{key} (score {regions[key]['score']:.2f})" if key in regions else key
                                        for key in flagged) + "."


def update_results_table(table, labels: Volume, uncertainty: Volume | None, edited: Iterable[str],
                         not_assessed: Iterable[str] = ()) -> None:
    """Fill the results table from an internal label map (and uncertainty map on the same grid); rows the
    images cannot support (``not_assessed``, e.g. NCR and ET without T1c) show no volume and say why
    (:mod:`~TumorSegLib.support`)."""
    edited, not_assessed = set(edited), set(not_assessed)
    vtk_table = table.GetTable()
    for row, key in enumerate(VOLUME_KEYS):
        members = VOLUME_MEMBERS[key]
        mask = np.isin(labels.array, [int(m) for m in members])
        voxels = int(mask.sum())
        mean_uncertainty = float(uncertainty.array[mask].mean()) if uncertainty is not None and voxels else float("nan")
        is_edited = any(m.name in edited for m in members)
        vtk_table.GetColumnByName("Region").SetValue(row, key)
        volume = float("nan") if key in not_assessed else round(voxels * labels.voxel_volume_ml, 3)
        vtk_table.GetColumnByName("Volume (mL)").SetValue(row, volume)
        vtk_table.GetColumnByName("Voxels").SetValue(row, voxels)
        if key in not_assessed:
            _set_review(table, row, f"{_NOT_ASSESSED} ({VOLUME_NEEDS[key][1]})")
        elif _review(table, row).startswith(_NOT_ASSESSED):  # assessed now (drawn by the reader)
            _set_review(table, row, "")
        vtk_table.GetColumnByName("Mean uncertainty").SetValue(row, round(mean_uncertainty, 4))
        vtk_table.GetColumnByName("Edited").SetValue(row, "yes" if is_edited else "no")
    vtk_table.Modified()
    table.Modified()


class ResultsWatcher:
    """Keeps a results table in step with a segmentation the user edits.

    Observes the segmentation node's segment events; on each change it re-exports the label map,
    recomputes volumes and marks edited regions.
    """

    def __init__(self, segmentation_node, reference_node, table_node, uncertainty_node=None):
        self.segmentation_node = segmentation_node
        self.reference_node = reference_node
        self.table_node = table_node
        self.uncertainty_node = uncertainty_node
        self._observers: list[int] = []
        self._uncertainty: Volume | None = None

    def start(self) -> ResultsWatcher:
        slicer = _slicer()
        for event in (slicer.vtkSegmentation.SegmentModified, slicer.vtkSegmentation.SegmentAdded,
                      slicer.vtkSegmentation.SegmentRemoved):
            self._observers.append(self.segmentation_node.AddObserver(event, self._on_segments_changed))
        return self

    def stop(self) -> None:
        for tag in self._observers:
            self.segmentation_node.RemoveObserver(tag)
        self._observers.clear()

    def _on_segments_changed(self, caller=None, event=None) -> None:
        self.update()

    def update(self) -> tuple[Volume, set[str]]:
        """Recompute the table now; returns (labels, edited keys)."""
        labels = labels_from_segmentation(self.segmentation_node, self.reference_node)
        if self.uncertainty_node is not None and self._uncertainty is None:
            self._uncertainty = volume_from_node(self.uncertainty_node)
        uncertainty = self._uncertainty if self._uncertainty is not None and \
            self._uncertainty.shape == labels.shape else None
        edited = edited_labels(self.segmentation_node, labels)
        update_results_table(self.table_node, labels, uncertainty, edited,
                             still_not_assessed(ai_not_assessed(self.segmentation_node), edited))
        return labels, edited


def set_uncertainty_overlay(scene, uncertainty_node, background_node=None, visible: bool = True,
                            opacity: float = 0.4) -> int:
    """Show (or hide) the uncertainty map as the foreground layer of every slice view; returns views set."""
    count = 0
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        composite = scene.GetNthNodeByClass(index, "vtkMRMLSliceCompositeNode")
        if background_node is not None:
            composite.SetBackgroundVolumeID(background_node.GetID())
        composite.SetForegroundVolumeID(uncertainty_node.GetID() if visible and uncertainty_node else None)
        composite.SetForegroundOpacity(opacity if visible else 0.0)
        count += 1
    return count
