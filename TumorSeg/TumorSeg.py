"""TumorSeg: brain tumour segmentation from T1, T1c, T2 and FLAIR, in 3D Slicer.

Thin: the widget binds the UI to a parameter node and polls a background run; all the work is in
``TumorSegLib.scene.SceneSession``, which pytest drives on a real MRML scene and the browser app shares.
"""

import os
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

# The extension installs TumorSegLib beside this file (on Slicer's module path); a source checkout, one folder up.
# Only numpy-level imports follow: torch never loads in Slicer's GUI process.
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(_CHECKOUT, "TumorSegLib")) and _CHECKOUT not in sys.path:
    sys.path.append(_CHECKOUT)
from TumorSegLib import models, options  # noqa: E402
from TumorSegLib.longitudinal.rano import ClinicalStatus, SteroidChange  # noqa: E402
from TumorSegLib.scene import UNKNOWN, SceneSession, selftest  # noqa: E402
from TumorSegLib.sequences import REFERENCE_ORDER  # noqa: E402

CITATIONS = models.get_model().citation + "; MONAI (monai.io)."  # the default model's data and architecture
_DEFAULTS, _CLINICAL, choices = options.SegmentOptions(), options.ClinicalOptions(), options.choices


class TumorSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "TumorSeg"
        self.parent.categories = ["Segmentation"]
        self.parent.contributors = ["TumorSeg developers"]
        self.parent.helpText = (
            "Segments a glioma into necrotic/non-enhancing core, oedema and enhancing tumour from T1, T1c, T2 and FLAIR "
            "(at least T1c or FLAIR): editable segments, an uncertainty map (0-1) and a table of volumes that follows "
            "your corrections. Research use only; not a medical device.")
        self.parent.acknowledgementText = "Models trained on the shared BraTS 2018 cases. Please cite: " + CITATIONS


@parameterNodeWrapper
class TumorSegParameterNode:
    """All state of the module, saved with the scene; option choices come from TumorSegLib.options."""

    t1Volume: vtkMRMLScalarVolumeNode
    t1cVolume: vtkMRMLScalarVolumeNode
    t2Volume: vtkMRMLScalarVolumeNode
    flairVolume: vtkMRMLScalarVolumeNode
    modelId: Annotated[str, Choice(list(models.load_registry()))] = models.default_model_id()
    device: Annotated[str, Choice(choices(options.Device))] = _DEFAULTS.device.value
    referenceSequence: Annotated[str, Choice(list(REFERENCE_ORDER))] = REFERENCE_ORDER[0]
    registration: Annotated[str, Choice(choices(options.Mode))] = _CLINICAL.register.value
    skullStrip: Annotated[str, Choice(choices(options.Mode))] = _CLINICAL.skull_strip.value
    registrationKind: Annotated[str, Choice(choices(options.TransformKind))] = _CLINICAL.registration_kind.value
    biasCorrection: bool = _CLINICAL.n4
    uncertaintyMethods: Annotated[str, Choice(list(options.UNCERTAINTY_PRESETS))] = options.NO_UNCERTAINTY
    uncertaintyTimeBudget: float = 120.0
    uncertaintyMap: Annotated[str, Choice(choices(options.UncertaintyMap))] = _DEFAULTS.uncertainty_map_kind.value
    showUncertainty: bool = True
    patientId: str = ""
    visitDate: str = ""
    steroidDose: Annotated[str, Choice([UNKNOWN, *choices(SteroidChange)])] = UNKNOWN
    clinicalStatus: Annotated[str, Choice([UNKNOWN, *choices(ClinicalStatus)])] = UNKNOWN
    outputSegmentation: vtkMRMLSegmentationNode
    uncertaintyVolume: vtkMRMLScalarVolumeNode
    resultsTable: vtkMRMLTableNode


class TumorSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = self._parameterNode = self._parameterNodeGuiTag = None
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
        scene, session = slicer.mrmlScene, self.logic.session
        for event, handler in ((scene.StartCloseEvent, self.onSceneStartClose), (scene.EndCloseEvent, self.onSceneEndClose),
                               (scene.EndImportEvent, self.onSceneEndImport), (scene.NodeAddedEvent, self.onNodeAdded)):
            self.addObserver(scene, event, handler)
        node = lambda: self._parameterNode  # noqa: E731  (the current one, when the button is pressed)
        actions = (  # button, what failed (shown with the error), action
            (self.ui.autoAssignButton, "Could not assign the volumes.", lambda: session.auto_assign(node())),
            (self.ui.segmentEditorButton, "Could not open the Segment Editor.", lambda: session.open_segment_editor(node())),
            (self.ui.exportLabelmapButton, "Could not save the label map.", self.onExportLabelmap),
            (self.ui.exportDicomButton, "Could not export DICOM.", lambda: self._inFolder(
                "Folder for the DICOM SEG, SR and uncertainty map", lambda folder: session.export_dicom(node(), folder))),
            (self.ui.addTimepointButton, "Could not add the visit.", lambda: session.add_timepoint(node(), True)),
            (self.ui.alignVisitsButton, "Could not align the visits.", session.align_visits),
            (self.ui.exportTimelineButton, "Could not export the timeline.",
             lambda: self._inFolder("Folder for the timeline table and plot", session.export_timeline)))
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        for button, failure, action in actions:
            button.connect("clicked(bool)", lambda _=False, failure=failure, action=action: self._attempt(failure, action))
        self.initializeParameterNode()

    def onReload(self):  # the library too, so *Reload and Test* runs the code on disk
        for name in [n for n in sys.modules if n == "TumorSegLib" or n.startswith("TumorSegLib.")]:
            del sys.modules[name]
        ScriptedLoadableModuleWidget.onReload(self)

    def cleanup(self):
        self.removeObservers()
        self._timer.stop()  # it would poll a cancelled run
        if self.logic:
            self.logic.session.reset_scene_state()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):  # as Slicer's template: keep the node, stop syncing the GUI while hidden
        self.setParameterNode(self._parameterNode, connect=False)

    def onSceneStartClose(self, caller, event):
        self._timer.stop()
        self.setParameterNode(None)
        self.logic.session.reset_scene_state()  # cancels a run; watchers and tracker observe the closing scene

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def onSceneEndImport(self, caller, event):
        if self._parameterNode:
            self.logic.session.restore_scene_state(self._parameterNode)
            self._updateGUI()

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def onNodeAdded(self, caller, event, calldata):  # a loading scene: onSceneEndImport, once; label maps: never
        if (isinstance(calldata, vtkMRMLScalarVolumeNode) and not calldata.IsA("vtkMRMLLabelMapVolumeNode")
                and not slicer.mrmlScene.IsImporting()):
            # Deferred: readers and the DICOM plugin name the node and set its DICOM attributes after adding it.
            qt.QTimer.singleShot(0, lambda: self.logic.session.auto_assign(self._parameterNode, overwrite=False))

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        self.logic.session.auto_assign(self._parameterNode, overwrite=False)
        self.logic.session.restore_scene_state(self._parameterNode)  # a scene loaded while the module was closed
        self._updateGUI()

    def setParameterNode(self, inputParameterNode, connect: bool = True):
        if self._parameterNode and self._parameterNodeGuiTag:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)
        self._parameterNode, self._parameterNodeGuiTag = inputParameterNode, None
        if self._parameterNode and connect:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)
            self._updateGUI()

    def _updateGUI(self, caller=None, event=None):
        node, session = self._parameterNode, self.logic.session
        ready = bool(node and (node.t1cVolume or node.flairVolume))
        self.ui.applyButton.enabled = ready or session.running
        self.ui.applyButton.text = "Cancel" if session.running else "Apply"
        self.ui.applyButton.toolTip = "Segment the tumour" if ready else "Select at least a T1c or a FLAIR volume"
        self.ui.resultsTableView.setMRMLTableNode(node.resultsTable if node else None)
        for button in (self.ui.segmentEditorButton, self.ui.exportLabelmapButton, self.ui.exportDicomButton,
                       self.ui.addTimepointButton):
            button.enabled = bool(node and node.outputSegmentation)
        self.ui.timelineTableView.setMRMLTableNode(session.tracker.table if session.tracker else None)
        self.ui.alignVisitsButton.enabled = self.ui.exportTimelineButton.enabled = bool(session.tracker)
        if node:
            session.show_results(node)  # sets the slice views only when the result or the toggle changed

    def onApplyButton(self):
        session = self.logic.session
        if session.running:  # the button reads "Cancel" while running
            self._show(session.cancel())
        elif self._show(self._attempt("TumorSeg could not start.", session.start, self._parameterNode,
                                      slicer.util.confirmOkCancelDisplay, slicer.util.pip_install)):
            self._timer.start()

    def onPollRun(self):
        self._show(self.logic.session.poll(self._parameterNode))

    def _show(self, status):
        """Progress and status line of the run (the timer polls while it runs), then its error or warnings."""
        if status is None:
            return False
        self.ui.progressBar.value = int(100 * status.progress)
        self.ui.statusLabel.text = status.message or self.ui.statusLabel.text
        if not status.running:
            self._timer.stop()
            self._updateGUI()
        for kind, arguments in status.dialogs():  # a failure's error, a finished run's warnings
            getattr(slicer.util, f"{kind}Display")(**arguments)
        return status.running

    def _attempt(self, failure: str, action, *args):
        try:
            with slicer.util.tryWithErrorDisplay(failure, waitCursor=True):
                return action(*args)
        finally:
            self._updateGUI()

    def onExportLabelmap(self):
        path = qt.QFileDialog.getSaveFileName(self.parent, "Save label map", "", "NIfTI (*.nii.gz);;NRRD (*.nrrd)")
        if path:
            self.logic.session.export_labelmap(self._parameterNode, path)

    def _inFolder(self, title, action):
        folder = qt.QFileDialog.getExistingDirectory(self.parent, title)
        if folder:
            action(folder)


class TumorSegLogic(ScriptedLoadableModuleLogic):
    """The parameter node; the work is in :class:`SceneSession`."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.session = SceneSession(slicer.mrmlScene)

    def getParameterNode(self):
        return TumorSegParameterNode(super().getParameterNode())


class TumorSegTest(ScriptedLoadableModuleTest):
    """The pytest scenarios of TumorSegLib.scene.selftest inside Slicer: segment the sample, edit, cancel."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        python = SceneSession(slicer.mrmlScene).python
        for scenario, *more in ((selftest.segments_match_the_label_map_and_table_follows_edits,),
                                (selftest.cancel_leaves_the_scene_unchanged, slicer.app.processEvents)):
            self.setUp()
            self.delayDisplay(scenario.__doc__.splitlines()[0])
            scenario(slicer.mrmlScene, python, *more)
        self.delayDisplay("Test passed")
