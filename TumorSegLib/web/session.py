"""What the browser app does, without the browser: a :class:`~TumorSegLib.scene.SceneSession` on trame-slicer's
scene with :class:`~TumorSegLib.scene.SessionParameters`, plus the few things a web page needs (loading files
into the scene, plain rows for tables, the overlay settings, exports into a known folder). The UI
(:mod:`.ui`) only binds these to widgets; tests drive them directly."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..labels import LABELS
from ..scene import (
    RunStatus,
    SceneSession,
    SessionParameters,
    add_volume_node,
    assign_volume_nodes,
    set_uncertainty_overlay,
    table_rows,
)
from ..sequences import IMAGE_SUFFIXES, SEQUENCES, file_stem
from ..volume import PathLike, read_volume

__all__ = ["WebSession"]


class WebSession:
    """One browser session's work on a Slicer scene.

    Args:
        slicer_app: trame-slicer's ``SlicerApp`` (scene, views, segmentation editor).
        output_folder: where exports are written (label maps, DICOM, timelines).
        python: interpreter of the background segmentation (default: this one).
    """

    def __init__(self, slicer_app, output_folder: PathLike, python: str | None = None):
        self.app = slicer_app
        self.scene = slicer_app.scene
        # A scripted module node keeps the timeline with the scene, as the Slicer module's parameter node does.
        self.parameters = SessionParameters(parameterNode=self.scene.AddNewNodeByClass(
            "vtkMRMLScriptedModuleNode", "TumorSeg"))
        self.session = SceneSession(self.scene, python)
        if slicer_app.segmentation_editor.undo_stack is None:  # the page's editor logic brings its own
            from undo_stack import UndoStack

            slicer_app.segmentation_editor.set_undo_stack(UndoStack(undo_limit=20))
        self.output_folder = Path(output_folder)
        # Voxels surer than the threshold are not overlaid: the map is only drawn where the model doubts.
        self.opacity, self.threshold = 0.4, 0.1
        self.status = RunStatus(False, 0.0, "Load the four sequences of a case, then Run.")

    # --- inputs ----------------------------------------------------------------------------------------------

    def volumes(self) -> list[dict]:
        """The scalar volumes in the scene (id and name), for the input pickers; the uncertainty map is not one."""
        nodes = [self.scene.GetNthNodeByClass(n, "vtkMRMLScalarVolumeNode")
                 for n in range(self.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))]
        return [{"id": node.GetID(), "name": node.GetName()} for node in nodes
                if not node.IsA("vtkMRMLLabelMapVolumeNode") and not node.GetAttribute("TumorSeg.Role")]

    def load_files(self, paths: Iterable[PathLike]) -> list[str]:
        """Add image files to the scene (each fully read and checked first) and assign the sequences from
        their names; returns the new node IDs.

        Files whose names say which sequence they are make a new case: the four inputs are taken from them
        only (a sequence they lack is left empty, never filled from an earlier case in the scene)."""
        volumes = [(Path(path), read_volume(path)) for path in paths]  # all read before any node is added
        nodes = [add_volume_node(self.scene, volume, file_stem(path)) for path, volume in volumes]
        ids = [node.GetID() for node in nodes]
        assigned = assign_volume_nodes(self.scene, nodes=nodes)
        if assigned:
            for key in SEQUENCES:
                self.set_input(key, assigned[key].GetID() if key in assigned else None)
        if ids:
            self.app.display_manager.show_volume(self.scene.GetNodeByID(ids[0]), do_reset_views=True)
        return ids

    def load_folder(self, folder: PathLike) -> list[str]:
        """Add a case folder's image files (BraTS-style names), or a DICOM study's T1/T1c/T2/FLAIR series."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"folder not found: {folder}")
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES)
                       and "seg" not in file_stem(p).lower().split("_")[-1])
        if files:
            return self.load_files(files)
        from ..dicom import assign_series, choose_study, read_series, scan_folder

        assignment = assign_series(choose_study(scan_folder(folder)))
        volumes = {key: read_series(series) for key, series in assignment.chosen.items()}
        ids = {key: add_volume_node(self.scene, volume, assignment.chosen[key].description or key).GetID()
               for key, volume in volumes.items()}
        for key in SEQUENCES:  # the study's own series only, never an earlier case's
            self.set_input(key, ids.get(key))
        return list(ids.values())

    def set_input(self, key: str, node_id: str | None) -> None:
        if key not in SEQUENCES:
            raise ValueError(f"unknown sequence {key!r}; use one of {list(SEQUENCES)}")
        setattr(self.parameters, f"{key}Volume", self.scene.GetNodeByID(node_id) if node_id else None)

    def inputs(self) -> dict[str, str | None]:
        """The node ID chosen for each sequence."""
        return {key: (node.GetID() if (node := getattr(self.parameters, f"{key}Volume")) else None)
                for key in SEQUENCES}

    def auto_assign(self) -> list[str]:
        return self.session.auto_assign(self.parameters, overwrite=True)

    # --- the run ---------------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.session.running

    def start(self) -> RunStatus:
        if not (self.parameters.t1cVolume or self.parameters.flairVolume):
            raise ValueError("choose at least a T1c or a FLAIR volume before running")
        self.status = self.session.start(self.parameters)
        return self.status

    def poll(self) -> RunStatus:
        """Progress; when the run has ended, its results are in the scene and shown."""
        if not self.session.running:
            return self.status
        self.status = self.session.poll(self.parameters)
        if not self.status.running and self.parameters.outputSegmentation is not None and not self.status.error:
            self._show_result()
        return self.status

    def cancel(self) -> RunStatus:
        self.status = self.session.cancel()
        return self.status

    def _show_result(self) -> None:
        reference = self.session.result_reference(self.parameters)
        self.app.display_manager.show_volume(reference, do_reset_views=True)
        self.app.segmentation_editor.set_active_segmentation(self.parameters.outputSegmentation, reference)
        self.set_overlay(self.opacity, self.threshold)

    # --- results ---------------------------------------------------------------------------------------------

    def results_rows(self) -> list[dict]:
        """The live volume table (one row per region: volume, interval, uncertainty, edited)."""
        table = self.parameters.resultsTable
        if table is None:
            return []
        watcher = self.session.watchers.get(self.parameters.outputSegmentation.GetID())
        if watcher is not None:
            watcher.update()  # edits made through the browser's editor
        return table_rows(table)

    def review_flags(self) -> list[str]:
        """What to check first: uncertain regions, and the input checks' findings."""
        summary = self.session.last_summary or {}
        flagged = (summary.get("uncertainty") or {}).get("flagged", [])
        return ([f"{key}: uncertain contour, review it first" for key in flagged]
                + [finding["message"] for finding in summary.get("qa", [])])

    def set_overlay(self, opacity: float, threshold: float) -> None:
        """The uncertainty overlay: its opacity (0-1) and the uncertainty below which it is hidden (0-1)."""
        if not (0 <= opacity <= 1 and 0 <= threshold <= 1):
            raise ValueError("opacity and threshold are between 0 and 1")
        self.opacity, self.threshold = opacity, threshold
        uncertainty = self.parameters.uncertaintyVolume
        if uncertainty is None:
            return
        display = uncertainty.GetDisplayNode()
        display.SetApplyThreshold(1)  # at least the zero background stays clear
        display.SetLowerThreshold(max(threshold, 1e-3))
        display.SetUpperThreshold(1.0)
        set_uncertainty_overlay(self.scene, uncertainty, self.session.result_reference(self.parameters),
                                visible=opacity > 0, opacity=opacity)

    def undo(self) -> None:
        """Take back the last edit (each stroke or effect is one step)."""
        self.app.segmentation_editor.undo_stack.undo()

    def redo(self) -> None:
        self.app.segmentation_editor.undo_stack.redo()

    def revert(self, key: str) -> None:
        """Put one region (NCR, ED, ET) back to the AI result."""
        self.session.revert_region(self.parameters, key)

    def export_labelmap(self, name: str | None = None) -> Path:
        """The (possibly edited) result as a NIfTI label map in the output folder (never over an earlier one)."""
        self.output_folder.mkdir(parents=True, exist_ok=True)
        base = name or (self.parameters.outputSegmentation.GetName().replace(" ", "_") + "_labels")
        path = self._free_path(base, ".nii.gz")
        return self.session.export_labelmap(self.parameters, path)

    def export_dicom(self) -> dict[str, str]:
        """DICOM SEG, SR and uncertainty map into a new folder of the output folder (needs DICOM inputs)."""
        return self.session.export_dicom(self.parameters, self._free_path("dicom", ""))

    def _free_path(self, base: str, suffix: str) -> Path:
        path, number = self.output_folder / f"{base}{suffix}", 1
        while path.exists():
            number += 1
            path = self.output_folder / f"{base}_{number}{suffix}"
        return path

    # --- follow-up -------------------------------------------------------------------------------------------

    def add_visit(self, date: str | dt.date, steroids: str | None = None, clinical_status: str | None = None
                  ) -> list[dict]:
        """Add the current result as a visit of the patient's timeline; returns the timeline rows."""
        self.parameters.visitDate = str(date)
        if steroids:
            self.parameters.steroidDose = steroids
        if clinical_status:
            self.parameters.clinicalStatus = clinical_status
        self.session.add_timepoint(self.parameters)
        return self.timeline_rows()

    def timeline_rows(self) -> list[dict]:
        return list(self.session.tracker.rows) if self.session.tracker else []

    def timeline_chart(self) -> str:
        """The volume plot as a ``data:`` PNG URL ('' before the first visit)."""
        if self.session.tracker is None or not self.timeline_rows():
            return ""
        from ..longitudinal import plot_volumes

        path = self._free_path("timeline_volumes", ".png")
        self.output_folder.mkdir(parents=True, exist_ok=True)
        plot_volumes(self.timeline_rows(), path, self.session.tracker.timeline.patient_id)
        data = path.read_bytes()
        path.unlink()
        return "data:image/png;base64," + base64.b64encode(data).decode()


def region_names() -> Sequence[dict]:
    """The editable regions (segments) for the revert picker."""
    return [{"title": info.name, "value": info.key} for info in LABELS]
