"""The module's logic on one scene, shared by every front end (the Slicer module, the browser app).

A :class:`SceneSession` works on a parameter object with the fields of the module's parameter node
(``t1Volume`` … ``flairVolume``, ``modelId``, ``device``, ``outputSegmentation``, ``uncertaintyVolume``,
``resultsTable``, ``showUncertainty``, ``patientId``, ``visitDate``, ``steroidDose``, ``clinicalStatus`` and the
options of :meth:`~TumorSegLib.options.SegmentOptions.from_parameters`), so state lives in one place. It
keeps one results watcher per segmentation and the patient's longitudinal tracker, and forgets or restores
them when the scene is closed or loaded.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..options import SegmentOptions
from ..sequences import SEQUENCES
from ..volume import Volume
from .dependencies import install_plan, missing_requirements
from .dicom_export import export_dicom_results
from .nodes import assign_volume_nodes
from .parameters import UNKNOWN
from .results import ResultsWatcher, review_first, set_uncertainty_overlay
from .run import SegmentationRun
from .segments import export_segmentation, result_reference_volume, revert_segment
from .tracker import LongitudinalTracker

__all__ = ["UNKNOWN", "RunStatus", "finished_status", "SceneSession"]

_VOLUME_FIELDS = tuple(f"{key}Volume" for key in SEQUENCES)


def _dicom_value(volume_node, tag: str) -> str | None:
    """A DICOM attribute of a volume loaded from DICOM (Slicer's DICOM database), else ``None``."""
    import slicer

    uids = (volume_node.GetAttribute("DICOM.instanceUIDs") or "").split() if volume_node else []
    database = getattr(slicer, "dicomDatabase", None)
    if not uids or database is None:
        return None
    return database.fileValue(database.fileForInstance(uids[0]), tag) or None


def _modifying(parameters):
    """One Modified event for many parameter changes (the wrapper's node), or nothing to batch."""
    import slicer

    node = getattr(parameters, "parameterNode", None)
    return slicer.util.NodeModify(node) if node is not None else contextlib.nullcontext()


@dataclass(frozen=True)
class RunStatus:
    """What a front end shows about the background run: progress bar, status line, and its dialogs."""

    running: bool
    progress: float
    message: str
    error: str = ""  # details of a failure (the process's error text), empty when none
    warnings: tuple[str, ...] = ()  # a finished run's QA findings (inputs and result), to be read before the result

    def dialogs(self) -> list[tuple[str, dict[str, str]]]:
        """(kind, arguments) of the message boxes to show: a failure's error, a finished run's warnings
        (``slicer.util.errorDisplay`` / ``warningDisplay``)."""
        shown = []
        if self.error:
            shown.append(("error", {"text": "TumorSeg failed; the scene was left unchanged.",
                                    "detailedText": self.error}))
        if self.warnings:
            shown.append(("warning", {"text": "Read these before trusting this result:\n\n"
                                      + "\n\n".join(self.warnings), "windowTitle": "TumorSeg warnings"}))
        return shown


def finished_status(summary: Mapping[str, Any]) -> RunStatus:
    """The status of a run brought into the scene: its time and device, then its QA findings before anything
    else (a wrong input makes a confident-looking result wrong; the result's own checks, e.g. enhancement not
    confirmed, are not all about the input, so they are called warnings, not input warnings), then what to
    review first."""
    warnings = tuple(finding["message"] for finding in summary.get("qa", []))
    lead = f"Warnings ({len(warnings)}): read them first. " if warnings else ""
    review = review_first(summary.get("uncertainty", {}))
    return RunStatus(False, 1.0, f"Done in {summary['timings_s'].get('total', 0):.0f} s on {summary['device']}. "
                     + lead + (review or "Review the uncertainty, then correct the segments."), warnings=warnings)


def _known(value: str | None) -> str | None:
    return None if not value or value == UNKNOWN else value


class SceneSession:
    """Segmentation, results, review and follow-up on one MRML scene.

    Args:
        scene: the MRML scene.
        python: interpreter of the background segmentation (default: ``PythonSlicer`` when found, else this one).
    """

    def __init__(self, scene, python: str | None = None):
        self.scene = scene
        self.python = python or shutil.which("PythonSlicer") or sys.executable
        self.watchers: dict[str, ResultsWatcher] = {}  # segmentation node ID → its watcher
        self.tracker: LongitudinalTracker | None = None
        self._shown_overlay = None  # (uncertainty ID, background ID, visible) last put in the slice views
        self.run: SegmentationRun | None = None  # the background segmentation, while one runs
        self.ai_labels: dict[str, Volume] = {}  # segmentation node ID → the AI result it was made from
        self.last_summary: dict | None = None  # the summary of the last run brought into the scene

    # --- inputs and the run --------------------------------------------------------------------------------

    def auto_assign(self, parameters, overwrite: bool = True) -> list[str]:
        """Pick the input volumes from node names and DICOM series descriptions; returns the fields set.

        With ``overwrite=False`` (module entered, volume added) only empty selectors are filled, and never
        with a volume the user already chose for another sequence.
        """
        if parameters is None:
            return []
        chosen = {getattr(parameters, name) for name in _VOLUME_FIELDS} - {None}
        filled = []
        assigned = assign_volume_nodes(self.scene, lambda node: _dicom_value(node, "0008,103E"))
        with _modifying(parameters):
            for key, node in assigned.items():
                name = f"{key}Volume"
                if overwrite or (getattr(parameters, name) is None and node not in chosen):
                    setattr(parameters, name, node)
                    filled.append(name)
        return filled

    @staticmethod
    def ensure_dependencies(confirm: Callable[[str], bool], pip_install: Callable[[list[str]], object]) -> bool:
        """Install missing packages (PyTorch through the PyTorch Utils extension when Slicer has it, which picks
        the right CUDA build; the rest with ``pip_install``) after the user agrees; ``False`` if declined."""
        missing = missing_requirements()
        if not missing:
            return True
        try:
            import PyTorchUtils as pytorch_utils  # the PyTorch Utils extension
        except ImportError:
            pytorch_utils = None
        plan = install_plan(missing, pytorch_utils is not None)
        if not confirm("TumorSeg needs these Python packages, which will be installed now:\n\n" + plan.describe()):
            return False
        if plan.torch_with_pytorch_utils is not None:
            requirement = plan.torch_with_pytorch_utils.spec.replace("==", ">=")
            if pytorch_utils.PyTorchUtilsLogic().installTorch(askConfirmation=False,
                                                              torchVersionRequirement=requirement) is None:
                raise RuntimeError("PyTorch could not be installed; install it with the PyTorch Utils module")
        if plan.pip:
            pip_install(list(plan.pip))
        return True

    def start_run(self, parameters) -> SegmentationRun:
        """Start segmenting the selected volumes in the background, with the parameters' options."""
        volumes = {key: getattr(parameters, f"{key}Volume") for key in SEQUENCES}
        options = SegmentOptions.from_parameters(lambda name: getattr(parameters, name),
                                                 given=lambda key: volumes.get(key) is not None)
        run = SegmentationRun(self.scene, volumes, options, python=self.python)
        run.start()
        return run

    @property
    def running(self) -> bool:
        return self.run is not None

    def start(self, parameters, confirm: Callable[[str], bool] | None = None,
              pip_install: Callable[[list[str]], object] | None = None) -> RunStatus | None:
        """Start the background run the front end then polls (:meth:`poll`). With ``confirm``, missing packages
        are installed first once the user agrees (:meth:`ensure_dependencies`); ``None`` if declined."""
        if confirm is not None and not self.ensure_dependencies(confirm, pip_install):
            return None
        self.run = self.start_run(parameters)
        return RunStatus(True, 0.0, "Starting...")

    def cancel(self) -> RunStatus:
        """Stop the background run; the scene is left as it was."""
        if self.run is not None:
            self.run.cancel()
            self.run = None
        return RunStatus(False, 0.0, "Cancelled: the scene is as it was.")

    def poll(self, parameters) -> RunStatus:
        """Progress of the background run; when it has ended, its results in the scene (or why not)."""
        state = self.run.poll()
        if state.running:
            return RunStatus(True, state.progress, state.step)
        run, self.run = self.run, None
        if state.return_code != 0:
            run.cleanup()
            message = run.error_message()
            return RunStatus(False, state.progress, "Failed: " + message.splitlines()[-1], message)
        try:
            summary = self.finish_run(run, parameters)
        except Exception as error:  # reading the results failed: the scene is unchanged (import_results)
            return RunStatus(False, 1.0, f"Failed: could not load the results: {error}", repr(error))
        return finished_status(summary)

    def finish_run(self, run: SegmentationRun, parameters) -> dict:
        """Bring a finished run's results into the scene and select them; returns the run's summary."""
        result = run.import_results()
        self.watchers[result.segmentation.GetID()] = result.watcher
        self.ai_labels[result.segmentation.GetID()] = result.labels
        self.last_summary = result.summary
        with _modifying(parameters):
            parameters.outputSegmentation = result.segmentation
            parameters.uncertaintyVolume = result.uncertainty
            parameters.resultsTable = result.table
        return result.summary

    # --- scene lifecycle -----------------------------------------------------------------------------------

    def reset_scene_state(self) -> None:
        """Forget what belongs to the closing scene: cancel a run, stop the results watchers and the timeline's
        observers (nothing of a run may land in the next scene)."""
        self.cancel()
        for watcher in self.watchers.values():
            watcher.stop()
        self.watchers.clear()
        if self.tracker is not None:
            self.tracker.stop()
            self.tracker = None
        self._shown_overlay = None

    def restore_scene_state(self, parameters) -> None:
        """After loading a scene (or entering the module on one): follow the saved results and timeline again."""
        self.restore_results(parameters)
        self.restore_timeline(parameters)

    @staticmethod
    def result_reference(parameters):
        """The volume the current result is on: the segmentation's own reference geometry (whichever sequence
        was the reference), else the T1c or FLAIR input for a segmentation made elsewhere."""
        if parameters is None:
            return None
        return (result_reference_volume(parameters.outputSegmentation) or parameters.t1cVolume
                or parameters.flairVolume)

    def restore_results(self, parameters) -> None:
        """Watch the saved segmentation again so the table follows edits (once per segmentation node)."""
        segmentation = parameters.outputSegmentation if parameters else None
        table = parameters.resultsTable if parameters else None
        reference = self.result_reference(parameters)
        if segmentation is None or table is None or reference is None:
            return
        existing = self.watchers.get(segmentation.GetID())
        if existing is not None:
            # Node IDs are reused after a scene is closed and loaded again: only the same nodes count.
            if existing.segmentation_node is segmentation and existing.table_node is table:
                return
            existing.stop()
        self.watchers[segmentation.GetID()] = ResultsWatcher(
            segmentation, reference, table, parameters.uncertaintyVolume).start()

    def show_results(self, parameters) -> bool:
        """Show the uncertainty overlay on the slice views; True if they were set.

        Called on every parameter change: the views are only touched when the result, its background or
        the overlay toggle changed, so views the user arranged stay as they are while typing elsewhere.
        """
        uncertainty = parameters.uncertaintyVolume
        if uncertainty is None:
            return False
        background = self.result_reference(parameters)
        shown = (uncertainty.GetID(), background.GetID() if background else None, bool(parameters.showUncertainty))
        if shown == self._shown_overlay:
            return False
        set_uncertainty_overlay(self.scene, uncertainty, background, parameters.showUncertainty)
        self._shown_overlay = shown
        return True

    def export_dicom(self, parameters, folder, file_for_instance=None) -> dict[str, str]:
        """DICOM SEG, SR and uncertainty map of the (possibly edited) result into ``folder``, with TumorSeg's own
        writer (no QuantitativeReporting needed); the source series comes from Slicer's DICOM database."""
        if parameters is None or parameters.outputSegmentation is None:
            raise ValueError("there is no result to export yet: run the segmentation first")
        return export_dicom_results(parameters.outputSegmentation, self.result_reference(parameters),
                                    parameters.uncertaintyVolume, folder, file_for_instance)

    def revert_region(self, parameters, key: str) -> None:
        """Put one region's segment (NCR, ED or ET) back to the AI result of this session's run."""
        segmentation = parameters.outputSegmentation if parameters else None
        labels = self.ai_labels.get(segmentation.GetID()) if segmentation is not None else None
        if labels is None:
            raise ValueError("the AI result of this segmentation is not in memory (it was made in another session); "
                             "run the segmentation again to revert to it")
        revert_segment(segmentation, labels, key)

    def open_segment_editor(self, parameters) -> None:
        """Switch Slicer to the Segment Editor on the result, with its reference volume as source."""
        import slicer

        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(parameters.outputSegmentation)
        editor.setSourceVolumeNode(self.result_reference(parameters))

    def export_labelmap(self, parameters, path) -> Path:
        """The (possibly edited) result as a label map file on its own grid."""
        return export_segmentation(parameters.outputSegmentation, self.result_reference(parameters), path)

    # --- follow-up -----------------------------------------------------------------------------------------

    def add_timepoint(self, parameters, show_chart: bool = False):
        """Add the current result as a visit of the patient's timeline; returns the chart node (shown in the
        application's layout with ``show_chart``, where Slicer has a plots module)."""
        reference = self.result_reference(parameters)
        date = parameters.visitDate or _dicom_value(reference, "0008,0020")
        if not date:
            raise ValueError("enter the visit date (YYYY-MM-DD): the volumes carry no DICOM study date")
        if self.tracker is None:
            self.tracker = LongitudinalTracker(self.scene, parameters.patientId or "Patient")
        timepoint_id = f"visit {len(self.tracker.timeline.timepoints) + 1}"
        self.tracker.add_timepoint(timepoint_id, date, parameters.outputSegmentation, reference,
                                   steroids=_known(parameters.steroidDose),
                                   clinical_status=_known(parameters.clinicalStatus))
        self.tracker.store(parameters.parameterNode)
        # They describe the visit just added: the next visit must not inherit e.g. "worse" (which means PD).
        with _modifying(parameters):
            parameters.steroidDose = parameters.clinicalStatus = UNKNOWN
        if show_chart:
            import slicer

            plots = getattr(slicer.modules, "plots", None)
            if plots is not None:
                plots.logic().ShowChartInLayout(self.tracker.chart)
        return self.tracker.chart

    def restore_timeline(self, parameters) -> None:
        """Re-create the timeline the parameter node keeps, unless the current tracker is that one."""
        if parameters is None:
            return
        node = parameters.parameterNode
        if self.tracker is not None:
            if self.tracker.is_stored_in(node):
                return
            self.tracker.stop()  # from a closed scene
            self.tracker = None
        self.tracker = LongitudinalTracker.restore(node)

    def align_visits(self) -> list:
        """Align every follow-up on the baseline; returns the transform nodes."""
        baseline = self.tracker.timeline.baseline.id
        return [self.tracker.align(t.id) for t in self.tracker.timeline.ordered() if t.id != baseline]

    def export_timeline(self, folder) -> tuple:
        """``timeline_table.csv`` and ``timeline_volumes.png`` in ``folder``."""
        return self.tracker.export(Path(folder) / "timeline_table.csv", Path(folder) / "timeline_volumes.png")
