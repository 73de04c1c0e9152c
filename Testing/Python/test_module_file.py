"""TumorSeg.py's logic class on a real MRML scene, with Slicer's Python-only GUI layers stubbed.

The Qt widget cannot run here. The module file is imported with small stand-ins for ``qt``,
``slicer.ScriptedLoadableModule`` and ``slicer.parameterNodeWrapper`` (storing values the way the real
wrapper does: strings as parameters, nodes as references named after the field), so every logic
method the widget calls runs against real MRML.
"""

import sys
import types

import numpy as np
import pytest

from Testing.conftest import brain_phantom
from Testing.script_modules import load_script
from TumorSegLib import scene as mrml


def _parameter_node_wrapper(cls):
    import slicer

    fields = dict(cls.__annotations__)
    defaults = {name: getattr(cls, name) for name in fields if hasattr(cls, name)}

    class Wrapped:
        fields = dict(cls.__annotations__)

        def __init__(self, node):
            object.__setattr__(self, "parameterNode", node)
            for name, value in defaults.items():
                if not node.HasParameter(name):
                    setattr(self, name, value)

        def __getattr__(self, name):
            node = self.parameterNode
            kind = fields[name]
            kind = getattr(kind, "__origin__", kind)
            if isinstance(kind, type) and issubclass(kind, slicer.vtkMRMLNode):
                return node.GetNodeReference(name)
            value = node.GetParameter(name)
            return value == "True" if kind is bool else value

        def __setattr__(self, name, value):
            node = self.parameterNode
            if isinstance(value, slicer.vtkMRMLNode) or value is None:
                node.SetParameter(name, "")
                node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
            else:
                node.SetParameter(name, str(value))

    return Wrapped


@pytest.fixture
def module(slicer_app, monkeypatch):
    import slicer

    class Logic:
        def __init__(self):
            pass

        def getParameterNode(self):
            node = slicer.mrmlScene.GetSingletonNode("TumorSeg", "vtkMRMLScriptedModuleNode")
            if node is None:
                node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
                node.SetSingletonTag("TumorSeg")
            return node

    class Base:
        def __init__(self, parent=None, *args):
            self.parent = parent  # as ScriptedLoadableModule and its widget do

    stubs = {
        "qt": types.SimpleNamespace(QTimer=object),
        "slicer.ScriptedLoadableModule": types.SimpleNamespace(
            ScriptedLoadableModule=Base, ScriptedLoadableModuleWidget=Base,
            ScriptedLoadableModuleLogic=Logic, ScriptedLoadableModuleTest=Base),
        "slicer.parameterNodeWrapper": types.SimpleNamespace(
            parameterNodeWrapper=_parameter_node_wrapper, Choice=lambda choices: ("Choice", tuple(choices))),
    }
    for name, stub in stubs.items():
        monkeypatch.setitem(sys.modules, name, stub)
    return load_script("TumorSeg/TumorSeg.py")  # loaded as "TumorSeg", the name Slicer gives it


def test_module_file_declares_title_category_and_citations(module):
    parent = types.SimpleNamespace()
    module.TumorSeg(parent)
    assert parent.title == "TumorSeg" and parent.categories == ["Segmentation"]
    assert "not a medical device" in parent.helpText
    assert "Menze" in module.CITATIONS and "Bakas" in module.CITATIONS
    assert module.CITATIONS in parent.acknowledgementText
    # The parameter node's choices come from the registry and the option contract.
    choices = {name: kind.__metadata__[0][1] for name, kind in module.TumorSegParameterNode.fields.items()
               if hasattr(kind, "__metadata__")}
    assert "brats18-segresnet8" in choices["modelId"] and choices["device"] == ("auto", "cpu", "cuda")
    assert choices["registrationKind"] == ("rigid", "affine") and "none" in choices["uncertaintyMethods"]


def add_result(scene, parameters, name: str, with_outputs: bool = False, seed: int = 0):
    """A segmented visit in the scene (phantom T1c + its segments) selected in the parameter node, as after a run."""
    images, labels = brain_phantom(seed=seed)
    reference = mrml.add_volume_node(scene, images["t1c"], f"{name} T1c")
    segmentation = mrml.create_segmentation_node(scene, labels, reference, f"{name} TumorSeg", show_3d=False)
    parameters.t1cVolume = reference
    parameters.outputSegmentation = segmentation
    if with_outputs:
        parameters.uncertaintyVolume = mrml.add_uncertainty_node(scene, labels.with_array(labels.array / 3.0),
                                                                 f"{name} uncertainty")
        parameters.resultsTable = mrml.create_results_table(scene, f"{name} volumes")
    return reference, segmentation


def timeline_column(logic, title):
    table = logic.session.tracker.table
    index = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())].index(title)
    return [table.GetCellText(r, index) for r in range(table.GetNumberOfRows())]


def test_steroid_dose_and_clinical_status_reach_the_timeline_for_that_visit_only(module, slicer_app):
    logic = module.TumorSegLogic()
    parameters = logic.getParameterNode()
    assert (parameters.steroidDose, parameters.clinicalStatus) == ("unknown", "unknown")
    parameters.patientId = "Patient 3"
    for index, (date, steroids, status) in enumerate((("2024-01-01", "unknown", "unknown"),
                                                      ("2024-03-01", "increased", "worse"),
                                                      ("2024-05-01", "unknown", "unknown"))):
        add_result(slicer_app.scene, parameters, f"visit{index}")
        parameters.visitDate = date
        parameters.steroidDose, parameters.clinicalStatus = steroids, status
        logic.session.add_timepoint(parameters)
        # Per-visit inputs: the next visit starts from "unknown" rather than inheriting "worse".
        assert (parameters.steroidDose, parameters.clinicalStatus) == ("unknown", "unknown")
    timeline = logic.session.tracker.timeline
    assert [(tp.steroids and tp.steroids.value, tp.clinical_status and tp.clinical_status.value)
            for tp in timeline.ordered()] == [(None, None), ("increased", "worse"), (None, None)]
    assert timeline_column(logic, "Steroids") == ["", "increased", ""]
    assert timeline_column(logic, "Clinical status") == ["", "worse", ""]
    # The same images each visit: only the clinical deterioration makes visit 2 progressive disease.
    categories = timeline_column(logic, "Category (imaging only)")
    assert categories[1] == "PD" and categories[2] != "PD"
    assert "clinical" in logic.session.tracker.rows[1]["category_reasons"].lower()


def test_a_volume_added_later_fills_only_empty_selectors_and_never_reuses_a_chosen_volume(module, slicer_app):
    import vtk

    scene = slicer_app.scene
    logic = module.TumorSegLogic()
    parameters = logic.getParameterNode()
    images, _ = brain_phantom(shape=(8, 8, 8))
    mine = mrml.add_volume_node(scene, images["t1c"], "my contrast scan")  # a name no rule recognises
    parameters.t1cVolume = mine
    assert logic.session.auto_assign(parameters, overwrite=False) == []
    # Volumes loaded while the module is open: the widget's NodeAddedEvent observer calls this.
    mrml.add_volume_node(scene, images["t1c"], "Patient_T1_POST_GD")
    flair = mrml.add_volume_node(scene, images["flair"], "Patient_AX_FLAIR")
    assert logic.session.auto_assign(parameters, overwrite=False) == ["flairVolume"]
    assert parameters.t1cVolume.GetID() == mine.GetID() and parameters.flairVolume.GetID() == flair.GetID()
    # The user puts the FLAIR in the T2 selector and clears FLAIR: it is not put back there too.
    parameters.t2Volume, parameters.flairVolume = flair, None
    t2 = mrml.add_volume_node(scene, images["t2"], "Patient_T2_TSE")
    assert logic.session.auto_assign(parameters, overwrite=False) == []
    assert parameters.flairVolume is None and parameters.t2Volume.GetID() == flair.GetID()
    assert set(logic.session.auto_assign(parameters, overwrite=True)) == {"t1cVolume", "t2Volume", "flairVolume"}
    assert parameters.t2Volume.GetID() == t2.GetID()
    assert module.TumorSegWidget.onNodeAdded.CallDataType == vtk.VTK_OBJECT  # receives the added node


@pytest.mark.parametrize("reset_on_close", [True, False], ids=["widget-reset", "no-reset"])
def test_results_and_timeline_follow_the_new_nodes_after_the_scene_is_closed_and_loaded_again(
        module, slicer_app, tmp_path, reset_on_close):
    import slicer

    scene = slicer_app.scene
    logic = module.TumorSegLogic()
    parameters = logic.getParameterNode()
    reference, segmentation = add_result(scene, parameters, "Case", with_outputs=True)
    logic.session.restore_scene_state(parameters)
    assert list(logic.session.watchers) == [segmentation.GetID()]
    parameters.visitDate = "2024-01-01"
    logic.session.add_timepoint(parameters)
    bundle = tmp_path / "case.mrb"
    assert scene.WriteToMRB(str(bundle))
    old_watcher, old_tracker = logic.session.watchers[segmentation.GetID()], logic.session.tracker

    if reset_on_close:
        logic.session.reset_scene_state()  # what the widget does on the scene's StartCloseEvent
        assert logic.session.tracker is None and not logic.session.watchers
    scene.Clear(False)
    assert scene.ReadFromMRB(str(bundle))
    parameters = logic.getParameterNode()
    logic.session.restore_scene_state(parameters)  # the widget: on EndImportEvent, or when the module is entered
    segmentation2, reference2, table2 = parameters.outputSegmentation, parameters.t1cVolume, parameters.resultsTable
    # A new node under the old ID: a watcher keyed by ID alone would wrongly count as attached.
    assert segmentation2 is not segmentation and segmentation2.GetID() == segmentation.GetID()
    watcher = logic.session.watchers[segmentation2.GetID()]
    assert watcher is not old_watcher and watcher.segmentation_node is segmentation2 and watcher.table_node is table2
    assert logic.session.tracker is not old_tracker and logic.session.tracker.table.GetScene() is scene
    assert logic.session.tracker.nodes["visit 1"][0] is segmentation2
    assert timeline_column(logic, "Edited") == ["no"]
    logic.session.restore_scene_state(parameters)  # entering the module again changes nothing
    assert logic.session.watchers[segmentation2.GetID()] is watcher

    # An edit of the reloaded segmentation reaches both the results table and the timeline.
    et = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation2, "ET", reference2)
    et[:3, :3, :3] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(et, segmentation2, "ET", reference2)
    assert table2.GetCellText(2, 4) == "yes" and int(table2.GetCellText(2, 2)) == int(et.sum())
    assert timeline_column(logic, "Edited") == ["yes"]
    logic.session.reset_scene_state()


def test_the_overlay_is_set_again_only_when_the_result_or_the_toggle_changes(module, slicer_app):
    scene = slicer_app.scene
    logic = module.TumorSegLogic()
    parameters = logic.getParameterNode()
    reference, _ = add_result(scene, parameters, "Case", with_outputs=True)
    composite = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
    parameters.showUncertainty = True
    assert logic.session.show_results(parameters)
    assert composite.GetBackgroundVolumeID() == reference.GetID()
    assert composite.GetForegroundVolumeID() == parameters.uncertaintyVolume.GetID()
    other = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "other")
    composite.SetBackgroundVolumeID(other.GetID())  # the user looks at another volume ...
    parameters.patientId = "P 1"  # ... and types elsewhere in the module: the views stay as they are
    assert not logic.session.show_results(parameters)
    assert composite.GetBackgroundVolumeID() == other.GetID()
    parameters.showUncertainty = False
    assert logic.session.show_results(parameters)
    assert composite.GetForegroundVolumeID() is None and composite.GetBackgroundVolumeID() == reference.GetID()
    logic.session.reset_scene_state()  # a new scene: shown again even where node IDs repeat
    assert logic.session.show_results(parameters)


def test_a_result_made_on_the_flair_grid_is_watched_shown_and_exported_on_that_grid(module, slicer_app, tmp_path):
    from TumorSegLib.geometry import resample_to_spacing
    from TumorSegLib.volume import read_volume, same_grid

    scene = slicer_app.scene
    logic = module.TumorSegLogic()
    parameters = logic.getParameterNode()
    images, labels = brain_phantom()
    parameters.t1cVolume = mrml.add_volume_node(scene, images["t1c"], "Case T1c")
    flair_volume = resample_to_spacing(images["flair"], (1.0, 1.0, 3.0), order=1)  # thick-slice FLAIR
    flair = parameters.flairVolume = mrml.add_volume_node(scene, flair_volume, "Case FLAIR")
    flair_labels = resample_to_spacing(labels, (1.0, 1.0, 3.0), order=0)
    parameters.outputSegmentation = mrml.create_segmentation_node(scene, flair_labels, flair, "Case TumorSeg",
                                                                  show_3d=False)
    parameters.resultsTable = mrml.create_results_table(scene, "Case volumes")
    parameters.uncertaintyVolume = mrml.add_uncertainty_node(
        scene, flair_labels.with_array(flair_labels.array / 3.0), "Case uncertainty")
    assert logic.session.result_reference(parameters) is flair  # not the T1c, although one is selected
    logic.session.restore_results(parameters)
    assert logic.session.watchers[parameters.outputSegmentation.GetID()].reference_node is flair
    composite = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
    assert logic.session.show_results(parameters) and composite.GetBackgroundVolumeID() == flair.GetID()
    exported = read_volume(logic.session.export_labelmap(parameters, tmp_path / "case_seg.nrrd"))
    assert same_grid(exported, flair_volume) and (exported.array > 0).sum() == (flair_labels.array > 0).sum()


def test_the_result_goes_out_as_dicom_seg_and_sr_with_edits_marked_and_no_extension_needed(module, slicer_app,
                                                                                            tmp_path):
    import pydicom
    import slicer

    from Testing.dicom_fixtures import write_study
    from TumorSegLib.dicom import read_series, scan_folder, seg_labels, segment_specs
    from TumorSegLib.scene import NOT_FROM_DICOM

    images, labels = brain_phantom(shape=(40, 44, 24))
    uids = write_study(images, tmp_path / "study", "ge")
    series = next(s for s in scan_folder(tmp_path / "study") if s.series_uid == uids["t1c"])
    by_uid = {pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID: str(path) for path in series.files}

    scene, logic = slicer_app.scene, module.TumorSegLogic()
    parameters = logic.getParameterNode()
    reference = mrml.add_volume_node(scene, read_series(series), "AX T1 POST GAD")
    parameters.t1cVolume = reference
    parameters.outputSegmentation = mrml.create_segmentation_node(scene, labels, reference, "Case TumorSeg", show_3d=False)
    parameters.outputSegmentation.SetAttribute("TumorSeg.Model", "brats18-segresnet8")
    with pytest.raises(ValueError, match="not loaded from DICOM"):
        logic.session.export_dicom(parameters, tmp_path / "out")
    assert "Save label map" in NOT_FROM_DICOM
    reference.SetAttribute("DICOM.instanceUIDs", " ".join(by_uid))  # as Slicer's DICOM plugin sets it
    ed = slicer.util.arrayFromSegmentBinaryLabelmap(parameters.outputSegmentation, "ED", reference)
    ed[2:5, 2:5, 2:5] = 1  # the user corrects the oedema
    slicer.util.updateSegmentBinaryLabelmapFromArray(ed, parameters.outputSegmentation, "ED", reference)

    written = logic.session.export_dicom(parameters, tmp_path / "out", file_for_instance=by_uid.get)
    assert set(written) == {"seg", "sr"}
    seg = pydicom.dcmread(written["seg"])
    assert [s.SegmentAlgorithmType for s in seg.SegmentSequence] == ["AUTOMATIC", "SEMIAUTOMATIC", "AUTOMATIC"]
    edited = mrml.labels_from_segmentation(parameters.outputSegmentation, reference)
    decoded = seg_labels(written["seg"], read_series(series), [pydicom.dcmread(f, stop_before_pixels=True)
                                                              for f in series.files], segment_specs())
    assert np.array_equal(decoded, edited.array)


def test_logic_assigns_runs_shows_and_exports(module, slicer_app, synthetic_case, tmp_path):
    logic = module.TumorSegLogic()
    parameters = logic.getParameterNode()
    assert parameters.modelId == "brats18-segresnet8-ensemble" and parameters.device == "auto"
    nodes = {key: mrml.add_volume_node(slicer_app.scene, volume, f"Patient7_{name}") for (key, volume), name in
             zip(synthetic_case.images.items(), ("T1_MPRAGE", "T1_POST_GD", "T2_TSE", "FLAIR_3D"))}
    logic.session.auto_assign(parameters, overwrite=False)
    assert [getattr(parameters, f"{k}Volume").GetID() for k in nodes] == [n.GetID() for n in nodes.values()]

    parameters.modelId = "brats18-segresnet8"
    parameters.device = "cpu"
    parameters.skullStrip = "off"  # the synthetic sample is skull-stripped; "auto" would decide the same
    parameters.biasCorrection = False  # the quicker run; the unticked box must reach the command
    run = logic.session.start_run(parameters)
    state = run.runner.wait(timeout=600)
    assert state.return_code == 0, run.error_message()
    summary = logic.session.finish_run(run, parameters)
    assert summary["model"] == "brats18-segresnet8" and summary["n4_bias_correction"] is False
    assert parameters.outputSegmentation.GetSegmentation().GetNumberOfSegments() == 3
    assert parameters.resultsTable.GetNumberOfRows() == 5

    composite = slicer_app.scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
    parameters.showUncertainty = True
    logic.session.show_results(parameters)
    assert composite.GetForegroundVolumeID() == parameters.uncertaintyVolume.GetID()

    parameters.patientId = "Patient 7"
    parameters.visitDate = "2024-03-01"
    chart = logic.session.add_timepoint(parameters)
    assert chart.GetNumberOfPlotSeriesNodes() == 3 and logic.session.tracker.table.GetNumberOfRows() == 1
    csv, png = logic.session.export_timeline(str(tmp_path))
    assert csv.exists() and png.exists()

    written = logic.session.export_labelmap(parameters, tmp_path / "edited.nii.gz")
    assert written.exists()
    # A reloaded scene has no watcher yet: restoreResults attaches one (once).
    logic.session.watchers.clear()
    logic.session.restore_results(parameters)
    logic.session.restore_results(parameters)
    assert list(logic.session.watchers) == [parameters.outputSegmentation.GetID()]
