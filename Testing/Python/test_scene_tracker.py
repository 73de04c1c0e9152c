"""Longitudinal tracking in a real MRML scene: visits, table, chart, live edits, alignment, export."""

import numpy as np
import pytest
import SimpleITK as sitk

from TumorSegLib import scene as mrml
from TumorSegLib.labels import Label
from TumorSegLib.longitudinal import run_track
from TumorSegLib.volume import Volume


def visit(radius: float, shift=(0.0, 0.0, 0.0), satellite=None):
    """A phantom visit: T1c image and labels of a spherical enhancing lesion with oedema, moved by ``shift``;
    ``satellite`` = (offset from the lesion in voxels, radius) adds a second enhancing lesion."""
    shape = (80, 80, 60)
    grid = np.indices(shape).astype(float)
    centre = np.array([40, 40, 30]) + np.array(shift)
    distance = np.sqrt(((grid - centre[:, None, None, None]) ** 2).sum(0))
    head = np.sqrt(((grid - (np.array(shape) / 2 + np.array(shift))[:, None, None, None]) ** 2 /
                    (np.array([34, 34, 26]) ** 2)[:, None, None, None]).sum(0)) < 1
    labels = np.zeros(shape, np.uint8)
    labels[(distance < radius + 5) & head] = Label.ED
    if radius > 0:
        labels[distance < radius] = Label.ET
    if satellite is not None:
        offset, satellite_radius = satellite
        second = centre + np.array(offset, float)
        satellite_distance = np.sqrt(((grid - second[:, None, None, None]) ** 2).sum(0))
        labels[(satellite_distance < satellite_radius + 3) & head & (labels == 0)] = Label.ED
        labels[satellite_distance < satellite_radius] = Label.ET
    image = (100.0 * head + 60.0 * (labels == Label.ET) + 20 * (labels == Label.ED)).astype(np.float32)
    image += np.random.default_rng(0).normal(0, 2, shape).astype(np.float32) * head
    return Volume(image, (1.0, 1.0, 1.5)), Volume(labels, (1.0, 1.0, 1.5))


@pytest.fixture
def tracker(slicer_app):
    scene = slicer_app.scene
    tracker = mrml.LongitudinalTracker(scene, "Patient 7")
    for index, (date, radius) in enumerate((("2024-01-10", 12), ("20240410", 7), ("2024-07-09", 13))):
        image, labels = visit(radius)
        reference = mrml.add_volume_node(scene, image, f"v{index} T1c")
        segmentation = mrml.create_segmentation_node(scene, labels, reference, f"v{index} TumorSeg", show_3d=False)
        tracker.add_timepoint(f"v{index}", date, segmentation, reference)
    yield tracker
    tracker.stop()


def column(table, title):
    index = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())].index(title)
    return [table.GetCellText(r, index) for r in range(table.GetNumberOfRows())]


def test_each_visit_becomes_a_row_with_volumes_changes_and_a_category(tracker):
    table = tracker.table
    assert column(table, "Timepoint") == ["v0", "v1", "v2"]
    assert column(table, "Date")[1] == "2024-04-10"
    expected_et = [(visit(r)[1].array == Label.ET).sum() * 1.5 / 1000 for r in (12, 7, 13)]
    assert [float(v) for v in column(table, "ET (mL)")] == pytest.approx(expected_et, rel=1e-3)
    change = (expected_et[1] - expected_et[0]) / expected_et[0] * 100
    assert float(column(table, "ET vs baseline (%)")[1]) == pytest.approx(change, abs=0.01)
    # Shrinks by > 50 % SPD, then regrows from the nadir: PD, and the PR, not sustained at the next scan, is SD.
    assert column(table, "Category (imaging only)") == ["baseline", "SD", "PD"]
    assert column(table, "Confirmation")[1] == "not confirmed"
    assert "PR not sustained at v2" in tracker.rows[1]["category_reasons"]


def test_volume_intervals_of_the_ai_result_are_shown_until_a_visit_is_edited(slicer_app):
    import json

    import slicer

    tracker = mrml.LongitudinalTracker(slicer_app.scene, "Patient 10")
    image, labels = visit(10)
    reference = mrml.add_volume_node(slicer_app.scene, image, "t0")
    segmentation = mrml.create_segmentation_node(slicer_app.scene, labels, reference, "t0", show_3d=False)
    segmentation.SetAttribute(mrml.VOLUME_INTERVALS_ATTRIBUTE, json.dumps({"ET": [3.9, 4.6], "WT": [10.0, 12.5]}))
    tracker.add_timepoint("t0", "2024-01-01", segmentation, reference)
    assert column(tracker.table, "ET interval (mL)") == ["3.90-4.60"]
    et = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, "ET", reference)
    et[:30] = 0
    slicer.util.updateSegmentBinaryLabelmapFromArray(et, segmentation, "ET", reference)
    assert column(tracker.table, "ET interval (mL)") == [""]  # the interval described the AI result, not the edit
    tracker.stop()


def test_the_chart_plots_et_tc_wt_over_days(tracker):
    chart = tracker.chart
    assert chart.GetNumberOfPlotSeriesNodes() == 3
    names = {chart.GetNthPlotSeriesNode(i).GetYColumnName() for i in range(3)}
    assert names == {"ET (mL)", "TC (mL)", "WT (mL)"}
    assert chart.GetNthPlotSeriesNode(0).GetXColumnName() == "Days"


def test_visits_are_grouped_by_patient_and_study(tracker, slicer_app):
    import slicer

    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer_app.scene)
    segmentation, _ = tracker.nodes["v1"]
    study = hierarchy.GetItemParent(hierarchy.GetItemByDataNode(segmentation))
    assert hierarchy.GetItemAttribute(study, "DICOM.StudyDate") == "20240410"
    assert hierarchy.GetItemName(hierarchy.GetItemParent(study)) == "Patient 7"


def test_editing_a_visit_updates_its_row_live(tracker):
    import slicer

    segmentation, reference = tracker.nodes["v1"]
    et = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, "ET", reference)
    before = float(column(tracker.table, "ET (mL)")[1])
    et[:30] = 0  # the user erases the lower half of the enhancing lesion (arrays are [k, j, i])
    slicer.util.updateSegmentBinaryLabelmapFromArray(et, segmentation, "ET", reference)
    assert float(column(tracker.table, "ET (mL)")[1]) == pytest.approx(et.sum() * 1.5 / 1000, rel=1e-3)
    assert float(column(tracker.table, "ET (mL)")[1]) < before
    assert column(tracker.table, "Edited") == ["no", "yes", "no"]


def enhancing_then_none(scene, patient: str, second_not_assessed: str = "", second_unreported_ml: str = ""):
    """A tracker of two visits: an enhancing lesion, then none (the second's node marked with what its images
    could not show, or with the enhancing tumour left unreported as too little, as the AI run marks them)."""
    from TumorSegLib.scene.results import NOT_ASSESSED_ATTRIBUTE, UNREPORTED_ENHANCEMENT_ATTRIBUTE

    tracker = mrml.LongitudinalTracker(scene, patient)
    for index, radius in enumerate((10, 0)):
        image, labels = visit(radius)
        reference = mrml.add_volume_node(scene, image, f"{patient} {index}")
        segmentation = mrml.create_segmentation_node(scene, labels, reference, f"{patient} {index}", show_3d=False)
        if index == 1 and second_not_assessed:
            segmentation.SetAttribute(NOT_ASSESSED_ATTRIBUTE, second_not_assessed)
        if index == 1 and second_unreported_ml:
            segmentation.SetAttribute(UNREPORTED_ENHANCEMENT_ATTRIBUTE, second_unreported_ml)
        tracker.add_timepoint(f"w{index}", f"2024-0{index + 1}-01", segmentation, reference)
    return tracker


def test_a_visit_with_no_enhancing_tumour_is_a_complete_response(slicer_app):
    tracker = enhancing_then_none(slicer_app.scene, "Patient 8")
    assert column(tracker.table, "Category (imaging only)")[1] == "CR"
    tracker.stop()


def test_a_follow_up_segmented_without_t1c_is_not_evaluable_rather_than_a_complete_response(slicer_app):
    # The AI writes no enhancing tumour without T1c and records so on the node: the row says why, no CR.
    tracker = enhancing_then_none(slicer_app.scene, "Patient 9", second_not_assessed="NCR,ET")
    assert column(tracker.table, "Category (imaging only)")[1] == "NE"
    assert column(tracker.table, "Not assessed") == ["", "NCR, ET: no T1c"]
    assert column(tracker.table, "ET (mL)")[1] == "nan" and float(column(tracker.table, "WT (mL)")[1]) > 0
    assert "no T1c at this visit" in tracker.rows[1]["category_reasons"]
    tracker.stop()


def test_a_follow_up_whose_enhancement_was_too_little_to_report_is_not_a_complete_response(slicer_app):
    # The AI reported no ET because what enhanced (1.4 mL) was under the model's least total: not gone.
    tracker = enhancing_then_none(slicer_app.scene, "Patient 10", second_unreported_ml="1.4")
    assert column(tracker.table, "Category (imaging only)")[1] == "NE"
    assert "1.4 mL enhancing, under the model's reporting minimum" in column(tracker.table, "Not assessed")[1]
    assert "reporting minimum" in tracker.rows[1]["category_reasons"]
    tracker.stop()


def test_export_and_saved_timeline_match_the_command_line(tracker, tmp_path):
    csv, png = tracker.export(tmp_path / "table.csv", tmp_path / "plot.png")
    assert csv.read_text().count("\n") >= 4 and png.stat().st_size > 1000
    path = tracker.save(tmp_path / "timeline.json")
    result = run_track(path, tmp_path / "track", register_visits=False)
    assert [row["ET_ml"] for row in result["rows"]] == [row["ET_ml"] for row in tracker.rows]


def add_visits(scene, tracker, visits):
    """Add (id, date, (image, labels)) visits to ``tracker``; returns {id: (segmentation, reference)}."""
    nodes = {}
    for visit_id, date, (image, labels) in visits:
        reference = mrml.add_volume_node(scene, image, f"{visit_id} T1c")
        segmentation = mrml.create_segmentation_node(scene, labels, reference, f"{visit_id} TumorSeg", show_3d=False)
        tracker.add_timepoint(visit_id, date, segmentation, reference)
        nodes[visit_id] = (segmentation, reference)
    return nodes


def test_a_follow_up_is_shown_aligned_on_the_baseline_and_still_measured_natively(slicer_app):
    import slicer
    import vtk

    tracker = mrml.LongitudinalTracker(slicer_app.scene, "Patient 9")
    followup_image, followup_labels = visit(8, (5, -3, 2))
    add_visits(slicer_app.scene, tracker, [("u0", "2024-01-01", visit(10)), ("u1", "2024-02-01",
                                                                           (followup_image, followup_labels))])
    native_et_ml = (followup_labels.array == Label.ET).sum() * 1.5 / 1000
    assert tracker.rows[1]["ET_ml"] == pytest.approx(native_et_ml, rel=1e-3)
    spd_before = tracker.rows[1]["spd_mm2"]
    node = tracker.align("u1")

    matrix = vtk.vtkMatrix4x4()
    node.GetMatrixTransformToParent(matrix)
    translation_ras = np.array([matrix.GetElement(r, 3) for r in range(3)])
    # The follow-up content moved by (5, -3, 2) voxels in LPS index space (1, 1, 1.5 mm): undo it in RAS.
    expected = -np.array([5.0, -3.0, 3.0]) * np.array([-1, -1, 1])
    assert np.allclose(translation_ras, expected, atol=1.0)
    segmentation, reference = tracker.nodes["u1"]
    assert reference.GetTransformNodeID() == node.GetID() == segmentation.GetTransformNodeID()
    # Shown in baseline space, measured in its own: same volume and SPD as before aligning.
    assert not np.allclose(mrml.volume_from_node(reference).origin, followup_image.origin)
    assert np.allclose(mrml.volume_from_node(reference, world=False).origin, followup_image.origin)
    assert tracker.rows[1]["ET_ml"] == pytest.approx(native_et_ml, rel=1e-3)
    assert tracker.rows[1]["spd_mm2"] == spd_before
    assert tracker.rows[1]["alignment"].startswith("rigid")

    # The user erases part of the aligned follow-up's enhancing tumour: its row follows, in native voxels.
    et = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, "ET", reference)
    assert et.sum() == (followup_labels.array == Label.ET).sum()
    et[:32] = 0
    slicer.util.updateSegmentBinaryLabelmapFromArray(et, segmentation, "ET", reference)
    native = mrml.labels_from_segmentation(segmentation, reference, world=False)
    assert np.array_equal(native.array == Label.ET, (followup_labels.array == Label.ET) & (np.indices(et.shape[::-1])[2] >= 32))
    assert float(column(tracker.table, "ET (mL)")[1]) == pytest.approx(et.sum() * 1.5 / 1000, rel=1e-3)
    assert tracker.rows[1]["ET_ml"] < native_et_ml and column(tracker.table, "Edited") == ["no", "yes"]
    # Aligning again registers the native follow-up (not through its first transform) and replaces that transform.
    again = tracker.align("u1")
    again.GetMatrixTransformToParent(matrix)
    assert np.allclose([matrix.GetElement(r, 3) for r in range(3)], expected, atol=1.0)
    assert slicer_app.scene.GetNodeByID(node.GetID()) is None
    tracker.stop()


def test_transform_nodes_give_back_the_registration_transform(slicer_app):
    transform = sitk.Euler3DTransform((10.0, -4.0, 3.0), 0.05, -0.1, 0.2, (2.0, -7.0, 4.5))
    node = mrml.transform_node_from_sitk(slicer_app.scene, transform, "t")
    back = mrml.sitk_from_transform_node(node)
    for point in ((0.0, 0.0, 0.0), (50.0, -20.0, 10.0), (-30.0, 40.0, -60.0)):
        assert np.allclose(back.TransformPoint(point), transform.TransformPoint(point), atol=1e-6)


def test_a_new_enhancing_lesion_appears_once_the_visits_are_aligned_and_makes_progression(slicer_app, tmp_path):
    import slicer

    from Testing.conftest import SlicerApplicationStub

    scene = slicer_app.scene
    tracker = mrml.LongitudinalTracker(scene, "Patient 11")
    # The main lesion shrinks a little while a measurable satellite appears 9 mm beyond its edge, in a shifted head:
    # the SPD barely changes (SD on size alone); the new measurable lesion makes it PD (RANO 2.0).
    add_visits(scene, tracker, [("b", "2024-01-01", visit(12)),
                                ("f", "2024-03-01", visit(10, (4, -3, 2), satellite=((19, 19, 0), 6)))])
    assert list(tracker.alignments) == ["f"]  # aligned on the baseline as it was added: registration by default
    lesions = {row.lesion: row for row in tracker.followup.lesions.at("f")}
    assert lesions["T1"].state == "present" and lesions["N1"].state == "new" and lesions["N1"].measurable
    assert tracker.rows[1]["new_lesions"] == 1 and tracker.rows[1]["new_measurable_lesions"] == 1
    assert column(tracker.table, "New lesions")[1] == "1"
    assert column(tracker.table, "Category (imaging only)") == ["baseline", "PD"]
    assert "new measurable" in tracker.rows[1]["category_reasons"]

    # Saved and loaded again: the alignment comes back from its transform node, and with it the new lesion.
    parameters = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "TumorSeg")
    tracker.store(parameters)
    assert scene.WriteToMRB(str(tmp_path / "patient.mrb"))
    tracker.stop()
    reloaded = SlicerApplicationStub(tmp_path / "cache2")
    slicer.mrmlScene = reloaded.scene
    assert reloaded.scene.ReadFromMRB(str(tmp_path / "patient.mrb"))
    restored = mrml.LongitudinalTracker.restore(reloaded.scene.GetFirstNodeByName("TumorSeg"))
    assert list(restored.alignments) == ["f"]
    assert restored.rows[1]["new_lesions"] == 1 and restored.rows[1]["category"] == "PD"
    restored.stop()


def test_the_timeline_comes_back_after_saving_and_reloading_the_scene(tracker, slicer_app, tmp_path):
    import slicer

    from Testing.conftest import SlicerApplicationStub

    parameters = slicer_app.scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "TumorSeg")
    tracker.store(parameters)
    rows = [dict(row) for row in tracker.rows]
    assert slicer_app.scene.WriteToMRB(str(tmp_path / "patient.mrb"))
    reloaded = SlicerApplicationStub(tmp_path / "cache2")
    slicer.mrmlScene = reloaded.scene
    assert reloaded.scene.ReadFromMRB(str(tmp_path / "patient.mrb"))
    restored = mrml.LongitudinalTracker.restore(reloaded.scene.GetFirstNodeByName("TumorSeg"))
    assert [r["ET_ml"] for r in restored.rows] == [r["ET_ml"] for r in rows]
    assert [r["category"] for r in restored.rows] == [r["category"] for r in rows]
    assert column(restored.table, "Timepoint") == ["v0", "v1", "v2"]
    restored.stop()
