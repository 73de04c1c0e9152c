"""MRML glue on a real scene from the slicer-core wheel: volumes, segments, tables, edits, persistence."""

import numpy as np
import pytest

from Testing.conftest import SlicerApplicationStub, brain_phantom
from TumorSegLib import scene as mrml
from TumorSegLib.labels import LABELS, Label
from TumorSegLib.volume import Volume, same_grid


def oblique(volume: Volume) -> Volume:
    angle = np.deg2rad(12)
    direction = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    return Volume(volume.array, (0.9, 1.1, 1.3), (12.0, -30.0, 7.5), direction @ np.diag([1, -1, 1]))


@pytest.fixture
def case():
    images, labels = brain_phantom()
    labels.array[20:24, 20:24, 20:24] = Label.NCR
    return {k: oblique(v) for k, v in images.items()}, oblique(labels)


def test_volume_nodes_keep_voxels_and_lps_geometry(slicer_app, case):
    images, _ = case
    node = mrml.add_volume_node(slicer_app.scene, images["t1c"], "T1c")
    back = mrml.volume_from_node(node)
    assert same_grid(back, images["t1c"]) and np.array_equal(back.array, images["t1c"].array)
    # Slicer stores RAS: the first voxel's RAS position is the LPS origin with x and y negated.
    ras = [0.0, 0.0, 0.0, 1.0]
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    point = matrix.MultiplyPoint(ras)
    assert np.allclose(point[:3], [-12.0, 30.0, 7.5])


def test_a_parent_linear_transform_moves_the_volume(slicer_app, case):
    import vtk

    images, _ = case
    node = mrml.add_volume_node(slicer_app.scene, images["t1c"], "T1c")
    transform = slicer_app.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 10.0)  # +10 mm towards R, i.e. -10 in LPS x
    transform.SetMatrixTransformToParent(matrix)
    node.SetAndObserveTransformNodeID(transform.GetID())
    assert np.allclose(mrml.volume_from_node(node).origin, np.array(images["t1c"].origin) + [-10, 0, 0])


def test_segments_match_the_label_map_voxel_for_voxel(slicer_app, case):
    images, labels = case
    reference = mrml.add_volume_node(slicer_app.scene, images["t1c"], "T1c")
    segmentation = mrml.create_segmentation_node(slicer_app.scene, labels, reference, "Case TumorSeg", show_3d=False)
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 3
    back = mrml.labels_from_segmentation(segmentation, reference)
    assert same_grid(back, labels)
    for label in (Label.NCR, Label.ED, Label.ET):
        assert (back.array == label).sum() == (labels.array == label).sum()
    assert np.array_equal(back.array, labels.array)


def test_segments_carry_names_colours_and_snomed_terminology(slicer_app, case):
    import slicer

    images, labels = case
    reference = mrml.add_volume_node(slicer_app.scene, images["t1c"], "T1c")
    segmentation = mrml.create_segmentation_node(slicer_app.scene, labels, reference, "Case TumorSeg", show_3d=False)
    for info in LABELS:
        segment = segmentation.GetSegmentation().GetSegment(info.key)
        assert segment.GetName() == info.name
        assert np.allclose(segment.GetColor(), info.color)
        entry = slicer.vtkSlicerTerminologyEntry()
        tag = mrml.segment_tag(segment, slicer.vtkSegment.GetTerminologyEntryTagName())
        assert slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(tag, entry)
        assert entry.GetTypeObject().GetCodeValue() == info.type[0]
        assert entry.GetCategoryObject().GetCodingSchemeDesignator() == "SCT"


def test_a_label_the_model_did_not_find_still_gets_an_empty_segment(slicer_app, case):
    images, labels = case
    labels.array[labels.array == Label.ET] = Label.NCR
    reference = mrml.add_volume_node(slicer_app.scene, images["t1c"], "T1c")
    segmentation = mrml.create_segmentation_node(slicer_app.scene, labels, reference, "Case", show_3d=False)
    assert segmentation.GetSegmentation().GetSegment("ET") is not None
    assert not (mrml.labels_from_segmentation(segmentation, reference).array == Label.ET).any()


def test_running_twice_never_overwrites_a_segmentation(slicer_app, case):
    images, labels = case
    reference = mrml.add_volume_node(slicer_app.scene, images["t1c"], "T1c")
    first = mrml.create_segmentation_node(slicer_app.scene, labels, reference, "Case TumorSeg", show_3d=False)
    second = mrml.create_segmentation_node(slicer_app.scene, labels, reference, "Case TumorSeg", show_3d=False)
    assert first.GetID() != second.GetID() and first.GetName() != second.GetName()


def test_results_table_lists_volumes_and_follows_edits(slicer_app, case):
    import slicer

    images, labels = case
    scene = slicer_app.scene
    reference = mrml.add_volume_node(scene, images["t1c"], "T1c")
    segmentation = mrml.create_segmentation_node(scene, labels, reference, "Case", show_3d=False)
    uncertainty = mrml.add_uncertainty_node(scene, labels.with_array((labels.array > 0) * 0.25), "Case uncertainty")
    table = mrml.create_results_table(scene, "Case volumes")
    watcher = mrml.ResultsWatcher(segmentation, reference, table, uncertainty).start()
    assert watcher.update()[1] == set()
    rows = {table.GetCellText(r, 0): r for r in range(table.GetNumberOfRows())}
    assert list(rows) == ["NCR", "ED", "ET", "TC", "WT"]
    voxel_ml = labels.voxel_volume_ml
    wt_voxels = int((labels.array > 0).sum())
    assert float(table.GetCellText(rows["WT"], 1)) == pytest.approx(wt_voxels * voxel_ml, rel=1e-3)
    assert int(table.GetCellText(rows["WT"], 2)) == wt_voxels
    assert float(table.GetCellText(rows["WT"], 3)) == pytest.approx(0.25, abs=1e-3)
    assert {table.GetCellText(r, 4) for r in range(5)} == {"no"}

    # The user paints more enhancing tumour: the table updates by itself and marks ET, TC and WT edited.
    et = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, "ET", reference)
    et[30:33, 30:33, 30:33] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(et, segmentation, "ET", reference)
    edited = {table.GetCellText(r, 0): table.GetCellText(r, 4) for r in range(5)}
    assert edited == {"NCR": "no", "ED": "no", "ET": "yes", "TC": "yes", "WT": "yes"}
    assert int(table.GetCellText(rows["ET"], 2)) == int(et.sum())
    watcher.stop()


def test_results_table_says_which_volumes_the_sequences_cannot_support_and_why(slicer_app, case):
    images, labels = case
    table = mrml.create_results_table(slicer_app.scene, "Case volumes")
    mrml.update_results_table(table, labels, None, (), ("ED", "WT"))  # T1c alone
    rows = {table.GetCellText(r, 0): r for r in range(table.GetNumberOfRows())}
    assert table.GetCellText(rows["ED"], 7) == table.GetCellText(rows["WT"], 7) == "not assessed (no T2/FLAIR)"
    assert float(table.GetCellText(rows["TC"], 1)) > 0 and table.GetCellText(rows["TC"], 7) == ""
    mrml.set_uncertainty_columns(table, {"flagged": ["WT", "TC"], "regions": {}, "volumes_ml": {}})
    assert table.GetCellText(rows["WT"], 7) == "not assessed (no T2/FLAIR)" and table.GetCellText(rows["TC"], 7) \
        == "REVIEW"
    mrml.update_results_table(table, labels, None, (), ("NCR", "ET"))  # no T1c
    assert table.GetCellText(rows["NCR"], 7) == "not assessed (no T1c)"
    # Oedema the reader paints on a T1c-only study is their finding: ED and WT get volumes again.
    from TumorSegLib.support import still_not_assessed

    assert still_not_assessed(("ED", "WT"), {"ED"}) == [] and still_not_assessed(("NCR", "ET"), {"ED"}) == ["NCR", "ET"]
    mrml.update_results_table(table, labels, None, {"ED"}, still_not_assessed(("ED", "WT"), {"ED"}))
    assert float(table.GetCellText(rows["WT"], 1)) > 0 and table.GetCellText(rows["ED"], 7) == ""


def test_uncertainty_volume_is_windowed_zero_to_one_and_can_be_overlaid(slicer_app, case):
    images, labels = case
    scene = slicer_app.scene
    reference = mrml.add_volume_node(scene, images["t1c"], "T1c")
    uncertainty = mrml.add_uncertainty_node(scene, labels.with_array(labels.array / 3.0), "u")
    display = uncertainty.GetDisplayNode()
    assert (display.GetWindow(), display.GetLevel()) == (1.0, 0.5)
    # Without Slicer's colour files (no home directory here) Inferno is absent: the built-in Iron is used.
    assert scene.GetNodeByID("vtkMRMLColorTableNodeFileInferno.txt") is None
    assert display.GetColorNodeID() == "vtkMRMLColorTableNodeIron"
    composite = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
    assert mrml.set_uncertainty_overlay(scene, uncertainty, reference, visible=True) == 1
    assert composite.GetForegroundVolumeID() == uncertainty.GetID() and composite.GetForegroundOpacity() > 0
    mrml.set_uncertainty_overlay(scene, uncertainty, reference, visible=False)
    assert composite.GetForegroundVolumeID() is None


def test_uncertainty_prefers_the_perceptual_inferno_colour_map_when_slicer_has_it(slicer_app):
    import slicer

    _, labels = brain_phantom(shape=(8, 8, 8))
    inferno = slicer.vtkMRMLColorTableNode()
    inferno.SetTypeToGrey()
    inferno.SetSingletonTag("FileInferno.txt")  # Slicer's colour logic names its file colour tables so
    slicer_app.scene.AddNode(inferno)
    assert inferno.GetID() == "vtkMRMLColorTableNodeFileInferno.txt"
    uncertainty = mrml.add_uncertainty_node(slicer_app.scene, labels.with_array(labels.array / 3.0), "u")
    assert uncertainty.GetDisplayNode().GetColorNodeID() == inferno.GetID()


def test_results_survive_saving_and_reloading_the_scene(slicer_app, case, tmp_path):
    import slicer

    images, labels = case
    scene = slicer_app.scene
    reference = mrml.add_volume_node(scene, images["t1c"], "T1c")
    segmentation = mrml.create_segmentation_node(scene, labels, reference, "Case TumorSeg", show_3d=False)
    uncertainty = mrml.add_uncertainty_node(scene, labels.with_array(labels.array / 3.0), "Case uncertainty")
    table = mrml.create_results_table(scene, "Case volumes")
    mrml.ResultsWatcher(segmentation, reference, table, uncertainty).update()
    parameters = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "TumorSeg")
    parameters.SetParameter("modelId", "brats18-segresnet8")
    parameters.SetNodeReferenceID("outputSegmentation", segmentation.GetID())
    assert scene.WriteToMRB(str(tmp_path / "case.mrb"))

    reloaded = SlicerApplicationStub(tmp_path / "cache2")
    slicer.mrmlScene = reloaded.scene
    assert reloaded.scene.ReadFromMRB(str(tmp_path / "case.mrb"))
    scene2 = reloaded.scene
    parameters2 = scene2.GetFirstNodeByName("TumorSeg")
    segmentation2 = parameters2.GetNodeReference("outputSegmentation")
    reference2 = scene2.GetFirstNodeByName("T1c")
    assert parameters2.GetParameter("modelId") == "brats18-segresnet8"
    # Saving may store a left-handed grid with an axis flipped: compare in physical space.
    from TumorSegLib.geometry import resample_to_grid

    back = mrml.labels_from_segmentation(segmentation2, reference2)
    assert np.array_equal(resample_to_grid(back, labels, order=0).array, labels.array)
    et = segmentation2.GetSegmentation().GetSegment("ET")
    assert mrml.segment_tag(et, slicer.vtkSegment.GetTerminologyEntryTagName()) == mrml.terminology_entry(LABELS[2])
    assert mrml.edited_labels(segmentation2, back) == set()  # the AI checksums came back too
    uncertainty2 = scene2.GetFirstNodeByName("Case uncertainty")
    uncertainty_back = resample_to_grid(mrml.volume_from_node(uncertainty2), labels, order=0)
    assert np.allclose(uncertainty_back.array, labels.array / 3.0)
    table2 = scene2.GetFirstNodeByName("Case volumes")
    assert [table2.GetCellText(r, 2) for r in range(5)] == [table.GetCellText(r, 2) for r in range(5)]


@pytest.mark.parametrize("names, descriptions, expected", [
    (["Brats18_CBICA_AQT_1_t1", "Brats18_CBICA_AQT_1_t1ce", "Brats18_CBICA_AQT_1_t2", "Brats18_CBICA_AQT_1_flair"],
     {}, {"t1": 0, "t1c": 1, "t2": 2, "flair": 3}),
    (["BraTS-GLI-00042-000-t2f", "BraTS-GLI-00042-000-t1n", "BraTS-GLI-00042-000-t1c", "BraTS-GLI-00042-000-t2w"],
     {}, {"flair": 0, "t1": 1, "t1c": 2, "t2": 3}),
    (["3: AX T2 FLAIR", "5: Sag T1 MPRAGE", "8: AX T1 POST GD", "4: t2_tse_tra", "2: localizer"],
     {}, {"flair": 0, "t1": 1, "t1c": 2, "t2": 3}),
    (["601", "602", "603", "604"],  # numbered series: the DICOM series description decides
     {"601": "T1W_3D_TFE", "602": "T1W_3D_TFE +C", "603": "T2W_TSE", "604": "3D_Brain_VIEW_FLAIR"},
     {"t1": 0, "t1c": 1, "t2": 2, "flair": 3}),
])
def test_inputs_are_assigned_from_realistic_names(slicer_app, names, descriptions, expected):
    images, _ = brain_phantom(shape=(8, 8, 8))
    nodes = [mrml.add_volume_node(slicer_app.scene, images["t1"], name) for name in names]
    assigned = mrml.assign_volume_nodes(slicer_app.scene, lambda node: descriptions.get(node.GetName()))
    assert {key: nodes.index(node) for key, node in assigned.items()} == expected


def test_label_maps_and_tumorseg_outputs_are_not_inputs(slicer_app):
    images, labels = brain_phantom(shape=(8, 8, 8))
    mrml.add_volume_node(slicer_app.scene, labels, "t1ce_seg", node_class="vtkMRMLLabelMapVolumeNode")
    mrml.add_uncertainty_node(slicer_app.scene, labels.with_array(labels.array * 0.1), "FLAIR uncertainty")
    assert mrml.assign_volume_nodes(slicer_app.scene) == {}


def test_an_edited_segmentation_exports_as_a_label_map_file(slicer_app, case, tmp_path):
    from TumorSegLib.labels import to_internal_labels
    from TumorSegLib.volume import read_volume

    images, labels = case
    reference = mrml.add_volume_node(slicer_app.scene, images["t1c"], "T1c")
    segmentation = mrml.create_segmentation_node(slicer_app.scene, labels, reference, "Case", show_3d=False)
    for suffix in (".nii.gz", ".nrrd"):
        written = read_volume(mrml.export_segmentation(segmentation, reference, tmp_path / f"edited{suffix}"))
        assert set(np.unique(written.array)) <= {0, 1, 2, 4}
        assert same_grid(written, labels) and np.array_equal(to_internal_labels(written.array), labels.array)


def test_the_status_line_names_flagged_regions_most_uncertain_first():
    record = {"flagged": ["TC", "ET"], "regions": {"WT": {"score": 0.1}, "TC": {"score": 0.31},
                                                   "ET": {"score": 0.52}}}
    assert mrml.review_first(record) == "Review first: ET (score 0.52), TC (score 0.31)."
    assert mrml.review_first({"flagged": [], "regions": {}}) == "" and mrml.review_first({}) == ""
