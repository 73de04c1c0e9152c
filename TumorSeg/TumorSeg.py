"""TumorSeg: brain tumour segmentation from T1, T1c, T2 and FLAIR, in 3D Slicer.

The module file stays thin: the widget binds the UI to a parameter node and polls a background run;
the work — running the model in a child process, building segments, the uncertainty volume and the
results table, following edits — is in TumorSegLib (``segmentation_run``, ``mrml``), which pytest
drives on a real MRML scene outside Slicer.
"""

import os
import shutil
import sys
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

# TumorSegLib is installed beside this file in the extension; in a source checkout it is one folder up.
_HERE = os.path.dirname(os.path.abspath(__file__))
for _folder in (_HERE, os.path.dirname(_HERE)):
    if os.path.isdir(os.path.join(_folder, "TumorSegLib")):
        if _folder not in sys.path:
            sys.path.append(_folder)
        break

from TumorSegLib import dependencies, mrml  # noqa: E402  (numpy-only imports: torch never loads here)
from TumorSegLib.models import default_model_id, load_registry  # noqa: E402
from TumorSegLib.segmentation_run import SegmentationRun, run_segmentation  # noqa: E402

CITATIONS = (
    "B. H. Menze et al., IEEE TMI 34(10), 2015; S. Bakas et al., Nature Scientific Data 4:170117, 2017; "
    "S. Bakas et al., arXiv:1811.02629, 2018; A. Myronenko, BrainLes 2018 (SegResNet); MONAI (monai.io)."
)


class TumorSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "TumorSeg"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["TumorSeg developers"]
        self.parent.helpText = (
            "Segments a glioma into necrotic/non-enhancing core, oedema and enhancing tumour from T1, T1c, T2 "
            "and FLAIR volumes (at least T1c or FLAIR), co-registered on one grid. The result is an editable "
            "segmentation on the T1c grid, an uncertainty map (0-1) and a table of volumes that follows your "
            "corrections. Research use only; not a medical device.")
        self.parent.acknowledgementText = (
            "Models trained on 28 cases of the BraTS 2018 training set. Please cite: " + CITATIONS)


UNKNOWN = "unknown"  # choice shown for a clinical input that was not recorded
DICOM_SEG_MISSING = (
    "Exporting DICOM SEG needs the QuantitativeReporting extension, which provides Slicer's DICOM "
    "Segmentation plugin. Install QuantitativeReporting from the Extensions Manager (View > Extensions Manager), "
    "restart Slicer, then export again. Meanwhile, 'Save label map...' writes NIfTI or NRRD.")


def _model_ids() -> list:
    # Read once when the module loads: the registry is a small JSON file shipped with the extension.
    return list(load_registry())


@parameterNodeWrapper
class TumorSegParameterNode:
    """All state of the module, saved with the scene."""

    t1Volume: vtkMRMLScalarVolumeNode
    t1cVolume: vtkMRMLScalarVolumeNode
    t2Volume: vtkMRMLScalarVolumeNode
    flairVolume: vtkMRMLScalarVolumeNode
    modelId: Annotated[str, Choice(_model_ids())] = default_model_id()
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    referenceSequence: Annotated[str, Choice(["t1c", "flair", "t2", "t1"])] = "t1c"
    registration: Annotated[str, Choice(["auto", "on", "off"])] = "auto"
    skullStrip: Annotated[str, Choice(["auto", "on", "off"])] = "auto"
    registrationKind: Annotated[str, Choice(["rigid", "affine"])] = "rigid"
    biasCorrection: bool = False
    uncertaintyMethods: Annotated[str, Choice(["none", "ensemble,flips", "ensemble", "flips", "dropout",
                                               "flips,intensity,affine"])] = "none"
    uncertaintyTimeBudget: float = 120.0
    uncertaintyMap: Annotated[str, Choice(["entropy", "mutual_information"])] = "entropy"
    showUncertainty: bool = True
    patientId: str = ""
    visitDate: str = ""
    # Per-visit clinical inputs of RANO (TumorSegLib.longitudinal.SteroidChange / ClinicalStatus values).
    steroidDose: Annotated[str, Choice([UNKNOWN, "decreased", "stable", "increased"])] = UNKNOWN
    clinicalStatus: Annotated[str, Choice([UNKNOWN, "better", "stable", "worse"])] = UNKNOWN
    outputSegmentation: vtkMRMLSegmentationNode
    uncertaintyVolume: vtkMRMLScalarVolumeNode
    resultsTable: vtkMRMLTableNode


class TumorSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._run = None
        self._timer = qt.QTimer()
        self._timer.setInterval(250)
        self._timer.connect("timeout()", self.onPollRun)

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/TumorSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = TumorSegLogic()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent, self.onSceneEndImport)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, self.onNodeAdded)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.autoAssignButton.connect("clicked(bool)", lambda: self.logic.autoAssign(self._parameterNode, True))
        self.ui.segmentEditorButton.connect("clicked(bool)", self.onSegmentEditor)
        self.ui.exportLabelmapButton.connect("clicked(bool)", self.onExportLabelmap)
        self.ui.exportDicomButton.connect("clicked(bool)", self.onExportDicom)
        self.ui.addTimepointButton.connect("clicked(bool)", self.onAddTimepoint)
        self.ui.alignVisitsButton.connect("clicked(bool)", self.onAlignVisits)
        self.ui.exportTimelineButton.connect("clicked(bool)", self.onExportTimeline)
        self.initializeParameterNode()

    def cleanup(self):
        self.removeObservers()
        self._timer.stop()  # it would poll a cancelled run
        if self._run is not None:
            self._run.cancel()
            self._run = None
        if self.logic:
            self.logic.resetSceneState()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)

    def onSceneStartClose(self, caller, event):
        if self._run is not None:
            self.onApplyButton()  # cancel: nothing of a run may land in the next scene
        self.setParameterNode(None)
        self.logic.resetSceneState()  # watchers and tracker observe nodes of the closing scene

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def onSceneEndImport(self, caller, event):
        if self._parameterNode:
            self.logic.restoreSceneState(self._parameterNode)
            self._updateGUI()

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def onNodeAdded(self, caller, event, calldata):
        # Loading a scene adds many nodes: onSceneEndImport handles it once. Label maps are never inputs.
        if (isinstance(calldata, vtkMRMLScalarVolumeNode) and not calldata.IsA("vtkMRMLLabelMapVolumeNode")
                and not slicer.mrmlScene.IsImporting()):
            # Deferred: readers and the DICOM plugin name the node and set its DICOM attributes after adding it.
            qt.QTimer.singleShot(0, self.onVolumeAdded)

    def onVolumeAdded(self):
        if self._parameterNode:
            self.logic.autoAssign(self._parameterNode, overwrite=False)

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        self.logic.autoAssign(self._parameterNode, overwrite=False)
        # Also here: a scene loaded while the module was closed had no one to restore it.
        self.logic.restoreSceneState(self._parameterNode)
        self._updateGUI()

    def setParameterNode(self, inputParameterNode: TumorSegParameterNode | None):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)
            self._updateGUI()

    def _updateGUI(self, caller=None, event=None):
        node = self._parameterNode
        ready = bool(node and (node.t1cVolume or node.flairVolume))
        self.ui.applyButton.enabled = ready or self._run is not None
        self.ui.applyButton.text = "Cancel" if self._run is not None else "Apply"
        self.ui.applyButton.toolTip = ("Segment the tumour" if ready else "Select at least a T1c or a FLAIR volume")
        self.ui.resultsTableView.setMRMLTableNode(node.resultsTable if node else None)
        hasResult = bool(node and node.outputSegmentation)
        for button in (self.ui.segmentEditorButton, self.ui.exportLabelmapButton, self.ui.exportDicomButton,
                       self.ui.addTimepointButton):
            button.enabled = hasResult
        tracker = self.logic.tracker
        self.ui.timelineTableView.setMRMLTableNode(tracker.table if tracker else None)
        self.ui.alignVisitsButton.enabled = self.ui.exportTimelineButton.enabled = bool(tracker)
        if node:
            self.logic.showResults(node)  # sets the slice views only when the result or the toggle changed

    def onApplyButton(self):
        if self._run is not None:  # the button reads "Cancel" while running
            self._timer.stop()
            self._run.cancel()
            self._run = None
            self.ui.statusLabel.text = "Cancelled: the scene is as it was."
            self.ui.progressBar.value = 0
            self._updateGUI()
            return
        with slicer.util.tryWithErrorDisplay("TumorSeg could not start.", waitCursor=True):
            if not self.logic.ensureDependencies(confirm=slicer.util.confirmOkCancelDisplay):
                return
            self._run = self.logic.startRun(self._parameterNode)
            self.ui.progressBar.value = 0
            self.ui.statusLabel.text = "Starting..."
            self._timer.start()
        self._updateGUI()

    def onPollRun(self):
        state = self._run.poll()
        self.ui.progressBar.value = int(100 * state.progress)
        if state.step:
            self.ui.statusLabel.text = state.step
        if state.running:
            return
        self._timer.stop()
        run, self._run = self._run, None
        if state.return_code == 0:
            with slicer.util.tryWithErrorDisplay("TumorSeg could not load the results.", waitCursor=True):
                summary = self.logic.finishRun(run, self._parameterNode)
                review = mrml.review_first(summary.get("uncertainty", {}))
                self.ui.statusLabel.text = (f"Done in {summary['timings_s'].get('total', 0):.0f} s on "
                                            f"{summary['device']}. " + (review or "Review the uncertainty, then "
                                                                        "correct the segments."))
        else:
            run.cleanup()
            message = run.error_message()
            self.ui.statusLabel.text = "Failed: " + message.splitlines()[-1]
            slicer.util.errorDisplay("TumorSeg failed; the scene was left unchanged.", detailedText=message)
        self._updateGUI()

    def onSegmentEditor(self):
        node = self._parameterNode
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(node.outputSegmentation)
        editor.setSourceVolumeNode(self.logic.resultReference(node))

    def onExportLabelmap(self):
        path = qt.QFileDialog.getSaveFileName(self.parent, "Save label map", "",
                                              "NIfTI (*.nii.gz);;NRRD (*.nrrd)")
        if path:
            with slicer.util.tryWithErrorDisplay("Could not save the label map.", waitCursor=True):
                self.logic.exportLabelmap(self._parameterNode, path)

    def onAddTimepoint(self):
        with slicer.util.tryWithErrorDisplay("Could not add the timepoint.", waitCursor=True):
            chart = self.logic.addTimepoint(self._parameterNode)
            slicer.modules.plots.logic().ShowChartInLayout(chart)
        self._updateGUI()

    def onAlignVisits(self):
        with slicer.util.tryWithErrorDisplay("Could not align the visits.", waitCursor=True):
            self.logic.alignVisits()

    def onExportTimeline(self):
        folder = qt.QFileDialog.getExistingDirectory(self.parent, "Folder for the timeline table and plot")
        if folder:
            with slicer.util.tryWithErrorDisplay("Could not export the timeline.", waitCursor=True):
                self.logic.exportTimeline(folder)

    def onExportDicom(self):
        if not self.logic.dicomSegExportAvailable():
            slicer.util.errorDisplay(DICOM_SEG_MISSING, windowTitle="DICOM SEG export")
            return
        import DICOMLib

        shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
        item = shNode.GetItemByDataNode(self._parameterNode.outputSegmentation)
        DICOMLib.DICOMExportDialog(item).execDialog()


class TumorSegLogic(ScriptedLoadableModuleLogic):
    """Module logic: delegates to TumorSegLib and keeps one results watcher per segmentation."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self._watchers = {}  # segmentation node ID → ResultsWatcher
        self.tracker = None
        self._shownOverlay = None  # (uncertainty ID, background ID, visible) last put in the slice views

    def getParameterNode(self):
        return TumorSegParameterNode(super().getParameterNode())

    @staticmethod
    def seriesDescription(volumeNode):
        """DICOM series description (0008,103E) of a volume loaded from DICOM, else None."""
        uids = (volumeNode.GetAttribute("DICOM.instanceUIDs") or "").split()
        database = getattr(slicer, "dicomDatabase", None)
        if not uids or database is None:
            return None
        return database.fileValue(database.fileForInstance(uids[0]), "0008,103E") or None

    def autoAssign(self, parameterNode, overwrite: bool = True) -> list:
        """Pick the input volumes from node names and DICOM series descriptions; returns the fields set.

        With ``overwrite=False`` (module entered, volume added) only empty selectors are filled, and never
        with a volume the user already chose for another sequence.
        """
        if parameterNode is None:
            return []
        fields = ("t1Volume", "t1cVolume", "t2Volume", "flairVolume")
        chosen = {getattr(parameterNode, field) for field in fields} - {None}
        filled = []
        assigned = mrml.assign_volume_nodes(slicer.mrmlScene, self.seriesDescription)
        with slicer.util.NodeModify(parameterNode.parameterNode):
            for key, node in assigned.items():
                field = f"{key}Volume"
                if overwrite or (getattr(parameterNode, field) is None and node not in chosen):
                    setattr(parameterNode, field, node)
                    filled.append(field)
        return filled

    def ensureDependencies(self, confirm):
        """Install missing packages into Slicer's Python after the user agrees; False if declined."""
        missing = dependencies.missing_requirements()
        if not missing:
            return True
        try:
            import PyTorchUtils  # the PyTorch Utils extension
        except ImportError:
            PyTorchUtils = None
        plan = dependencies.install_plan(missing, PyTorchUtils is not None)
        if not confirm("TumorSeg needs these Python packages, which will be installed now:\n\n" + plan.describe()):
            return False
        if plan.torch_with_pytorch_utils is not None:
            torchRequirement = plan.torch_with_pytorch_utils.spec.replace("==", ">=")
            if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False,
                                                             torchVersionRequirement=torchRequirement) is None:
                raise RuntimeError("PyTorch could not be installed; install it with the PyTorch Utils module")
        if plan.pip:
            slicer.util.pip_install(list(plan.pip))
        return True

    @staticmethod
    def pythonExecutable():
        """PythonSlicer runs the child process with Slicer's Python and its packages."""
        return shutil.which("PythonSlicer") or sys.executable

    def startRun(self, parameterNode):
        volumes = {"t1": parameterNode.t1Volume, "t1c": parameterNode.t1cVolume, "t2": parameterNode.t2Volume,
                   "flair": parameterNode.flairVolume}
        clinical = {"reference": parameterNode.referenceSequence, "register": parameterNode.registration,
                    "registration_kind": parameterNode.registrationKind, "skull_strip": parameterNode.skullStrip,
                    "n4": parameterNode.biasCorrection}
        if volumes.get(clinical["reference"]) is None:  # e.g. no T1c: fall back to the first given
            clinical["reference"] = None
        uncertainty = None
        if parameterNode.uncertaintyMethods != "none":
            uncertainty = {"methods": parameterNode.uncertaintyMethods, "map": parameterNode.uncertaintyMap,
                           "time_budget_s": parameterNode.uncertaintyTimeBudget or None}
        run = SegmentationRun(slicer.mrmlScene, volumes, parameterNode.modelId or None, parameterNode.device,
                              python=self.pythonExecutable(), clinical=clinical, uncertainty=uncertainty)
        run.start()
        return run

    def finishRun(self, run, parameterNode):
        result = run.import_results()
        self._watchers[result.segmentation.GetID()] = result.watcher
        with slicer.util.NodeModify(parameterNode.parameterNode):
            parameterNode.outputSegmentation = result.segmentation
            parameterNode.uncertaintyVolume = result.uncertainty
            parameterNode.resultsTable = result.table
        return result.summary

    def resetSceneState(self) -> None:
        """Forget what belongs to the closing scene: stop the results watchers and the timeline's observers."""
        for watcher in self._watchers.values():
            watcher.stop()
        self._watchers.clear()
        if self.tracker is not None:
            self.tracker.stop()
            self.tracker = None
        self._shownOverlay = None

    def restoreSceneState(self, parameterNode) -> None:
        """After loading a scene (or entering the module on one): follow the saved results and timeline again."""
        self.restoreResults(parameterNode)
        self.restoreTimeline(parameterNode)

    @staticmethod
    def resultReference(parameterNode):
        """The volume the current result is on: the segmentation's own reference geometry (whichever sequence
        was the reference), else the T1c or FLAIR input for a segmentation made elsewhere."""
        if parameterNode is None:
            return None
        return (mrml.result_reference_volume(parameterNode.outputSegmentation) or parameterNode.t1cVolume
                or parameterNode.flairVolume)

    def restoreResults(self, parameterNode) -> None:
        """Watch the saved segmentation again so the table follows edits (once per segmentation node)."""
        segmentation = parameterNode.outputSegmentation if parameterNode else None
        table = parameterNode.resultsTable if parameterNode else None
        reference = self.resultReference(parameterNode)
        if segmentation is None or table is None or reference is None:
            return
        existing = self._watchers.get(segmentation.GetID())
        if existing is not None:
            # Node IDs are reused after a scene is closed and loaded again: only the same nodes count.
            if existing.segmentation_node is segmentation and existing.table_node is table:
                return
            existing.stop()
        self._watchers[segmentation.GetID()] = mrml.ResultsWatcher(
            segmentation, reference, table, parameterNode.uncertaintyVolume).start()

    def showResults(self, parameterNode) -> bool:
        """Show the uncertainty overlay on the slice views; True if they were set.

        Called on every parameter change: the views are only touched when the result, its background or
        the overlay toggle changed, so views the user arranged stay as they are while typing elsewhere.
        """
        uncertainty = parameterNode.uncertaintyVolume
        if uncertainty is None:
            return False
        background = self.resultReference(parameterNode)
        shown = (uncertainty.GetID(), background.GetID() if background else None, bool(parameterNode.showUncertainty))
        if shown == self._shownOverlay:
            return False
        mrml.set_uncertainty_overlay(slicer.mrmlScene, uncertainty, background, parameterNode.showUncertainty)
        self._shownOverlay = shown
        return True

    @staticmethod
    def dicomSegExportAvailable() -> bool:
        """DICOM SEG export comes from QuantitativeReporting's DICOMSegmentationPlugin (not in Slicer itself)."""
        return "DICOMSegmentationPlugin" in (getattr(slicer.modules, "dicomPlugins", None) or {})

    @staticmethod
    def studyDate(volumeNode):
        """DICOM study date (YYYYMMDD) of a volume loaded from DICOM, else None."""
        uids = (volumeNode.GetAttribute("DICOM.instanceUIDs") or "").split() if volumeNode else []
        database = getattr(slicer, "dicomDatabase", None)
        if not uids or database is None:
            return None
        return database.fileValue(database.fileForInstance(uids[0]), "0008,0020") or None

    def addTimepoint(self, parameterNode):
        """Add the current result as a visit of the patient's timeline; returns the chart node."""
        reference = self.resultReference(parameterNode)
        date = parameterNode.visitDate or self.studyDate(reference)
        if not date:
            raise ValueError("enter the visit date (YYYY-MM-DD): the volumes carry no DICOM study date")
        if self.tracker is None:
            self.tracker = mrml.LongitudinalTracker(slicer.mrmlScene, parameterNode.patientId or "Patient")
        timepointId = f"visit {len(self.tracker.timeline.timepoints) + 1}"
        self.tracker.add_timepoint(timepointId, date, parameterNode.outputSegmentation, reference,
                                   steroids=self._known(parameterNode.steroidDose),
                                   clinical_status=self._known(parameterNode.clinicalStatus))
        self.tracker.store(parameterNode.parameterNode)
        # They describe the visit just added: the next visit must not inherit e.g. "worse" (which means PD).
        with slicer.util.NodeModify(parameterNode.parameterNode):
            parameterNode.steroidDose = parameterNode.clinicalStatus = UNKNOWN
        return self.tracker.chart

    @staticmethod
    def _known(value):
        return None if not value or value == UNKNOWN else value

    def restoreTimeline(self, parameterNode) -> None:
        """Re-create the timeline the parameter node keeps, unless the current tracker is that one."""
        if parameterNode is None:
            return
        node = parameterNode.parameterNode
        if self.tracker is not None:
            if self.tracker.is_stored_in(node):
                return
            self.tracker.stop()  # from a closed scene
            self.tracker = None
        self.tracker = mrml.LongitudinalTracker.restore(node)

    def alignVisits(self):
        baseline = self.tracker.timeline.baseline.id
        return [self.tracker.align(t.id) for t in self.tracker.timeline.ordered() if t.id != baseline]

    def exportTimeline(self, folder):
        return self.tracker.export(os.path.join(folder, "timeline_table.csv"),
                                   os.path.join(folder, "timeline_volumes.png"))

    def exportLabelmap(self, parameterNode, path):
        return mrml.export_segmentation(parameterNode.outputSegmentation, self.resultReference(parameterNode), path)


class TumorSegTest(ScriptedLoadableModuleTest):
    """The pytest scenario, inside Slicer: segment the synthetic sample, edit, cancel."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_segments_match_the_label_map_and_the_table_follows_edits()
        self.setUp()
        self.test_cancel_leaves_the_scene_unchanged()

    def _loadSyntheticCase(self):
        from TumorSegLib.synthetic import make_synthetic_case

        case = make_synthetic_case()
        nodes = {key: mrml.add_volume_node(slicer.mrmlScene, volume, f"Synthetic_{key}")
                 for key, volume in case.images.items()}
        return case, nodes

    @staticmethod
    def _sceneSnapshot():
        """Node IDs, names and a checksum of every volume's voxels: what 'the scene as it was' means."""
        import hashlib

        snapshot = []
        for index in range(slicer.mrmlScene.GetNumberOfNodes()):
            node = slicer.mrmlScene.GetNthNode(index)
            digest = ""
            if node.IsA("vtkMRMLVolumeNode") and node.GetImageData() is not None:
                digest = hashlib.sha1(slicer.util.arrayFromVolume(node).tobytes()).hexdigest()
            snapshot.append((node.GetID(), node.GetName(), digest))
        return snapshot

    def test_segments_match_the_label_map_and_the_table_follows_edits(self):
        import numpy as np

        from TumorSegLib.labels import Label

        self.delayDisplay("Segmenting the synthetic sample case")
        case, nodes = self._loadSyntheticCase()
        result = run_segmentation(slicer.mrmlScene, nodes, "brats18-segresnet8", "cpu",
                                  python=TumorSegLogic.pythonExecutable())
        self.assertEqual(result.segmentation.GetSegmentation().GetNumberOfSegments(), 3)
        # Compare with the label map file the child process wrote (result.labels), not with the segments.
        produced = result.labels.array
        for label in (Label.NCR, Label.ED, Label.ET):
            segment = slicer.util.arrayFromSegmentBinaryLabelmap(result.segmentation, label.name, nodes["t1c"])
            self.assertEqual(int(segment.sum()), int((produced == label).sum()))
        wt = int((produced > 0).sum())
        self.assertGreater(wt, 1000)
        self.assertEqual(result.table.GetCellText(4, 0), "WT")
        self.assertEqual(int(result.table.GetCellText(4, 2)), wt)
        et = slicer.util.arrayFromSegmentBinaryLabelmap(result.segmentation, "ET", nodes["t1c"])
        et[:5, :5, :5] = 1
        slicer.util.updateSegmentBinaryLabelmapFromArray(et, result.segmentation, "ET", nodes["t1c"])
        self.assertEqual(result.table.GetCellText(2, 4), "yes")
        self.assertEqual(int(result.table.GetCellText(2, 2)), int(et.sum()))
        self.assertTrue(np.isfinite(float(result.table.GetCellText(4, 3))))
        result.watcher.stop()
        self.delayDisplay("Test passed")

    def test_cancel_leaves_the_scene_unchanged(self):
        import time

        _, nodes = self._loadSyntheticCase()
        before = self._sceneSnapshot()
        run = SegmentationRun(slicer.mrmlScene, nodes, "brats18-segresnet8", "cpu",
                              python=TumorSegLogic.pythonExecutable())
        run.start()
        workDir = run.work_dir
        deadline = time.monotonic() + 60
        state = run.poll()
        while state.running and state.progress == 0 and time.monotonic() < deadline:  # until it really works
            slicer.app.processEvents()
            time.sleep(0.1)
            state = run.poll()
        self.assertTrue(state.running, "the run ended before it could be cancelled")
        run.cancel()
        self.assertIsNotNone(run.runner.poll().return_code)
        self.assertEqual(self._sceneSnapshot(), before)
        self.assertFalse(workDir.exists())
        self.delayDisplay("Test passed")
