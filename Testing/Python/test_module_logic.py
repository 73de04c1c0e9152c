"""The module's logic end to end on a real MRML scene: child process, segments, table, cancel, save/reload."""

from dataclasses import replace

import numpy as np
import pytest

from TumorSegLib import scene as mrml
from TumorSegLib.labels import Label
from TumorSegLib.options import UncertaintyOptions
from TumorSegLib.scene import selftest
from TumorSegLib.scene.run import SegmentationRun, run_segmentation
from TumorSegLib.scene.selftest import FAST_OPTIONS, scene_snapshot
from TumorSegLib.training import find_cases

FAST_MODEL = FAST_OPTIONS.model


@pytest.fixture
def shared_case_nodes(slicer_app, shared_data):
    """The four sequences of a shared case, loaded by Slicer's own volume reader."""
    files = find_cases(shared_data)["Brats18_TCIA02_135_1"]
    volumes = slicer_app.logics["Volumes"]
    return {key: volumes.AddArchetypeVolume(str(files[key]), files[key].name.split(".")[0]) for key in
            ("t1", "t1c", "t2", "flair")}


@pytest.fixture
def synthetic_nodes(slicer_app, synthetic_case):
    return {key: mrml.add_volume_node(slicer_app.scene, volume, f"Synthetic_{key}")
            for key, volume in synthetic_case.images.items()}


@pytest.mark.realdata
def test_a_shared_case_becomes_segments_an_uncertainty_volume_and_a_table(slicer_app, shared_case_nodes):
    import slicer

    progress = []
    result = run_segmentation(slicer_app.scene, shared_case_nodes, FAST_OPTIONS,
                              progress=lambda fraction, step: progress.append(fraction))
    assert progress and progress[-1] == 1.0
    assert result.segmentation.GetName() == "Brats18_TCIA02_135_1 TumorSeg"
    segmentation = result.segmentation.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 3
    reference = shared_case_nodes["t1c"]
    for label in (Label.NCR, Label.ED, Label.ET):
        segment_voxels = slicer.util.arrayFromSegmentBinaryLabelmap(result.segmentation, label.name, reference).sum()
        assert segment_voxels == (result.labels.array == label).sum() > 0

    voxel_ml = float(np.prod(reference.GetSpacing())) / 1000
    rows = {result.table.GetCellText(r, 0): r for r in range(5)}
    for key, codes in {"NCR": [1], "ED": [2], "ET": [3], "TC": [1, 3], "WT": [1, 2, 3]}.items():
        expected = np.isin(result.labels.array, codes).sum() * voxel_ml
        assert float(result.table.GetCellText(rows[key], 1)) == pytest.approx(expected, rel=1e-3)
    uncertainty = mrml.volume_from_node(result.uncertainty)
    assert uncertainty.shape == result.labels.shape and 0 <= uncertainty.array.min() <= uncertainty.array.max() <= 1
    assert result.summary["model"] == FAST_MODEL and result.summary["device"] == "cpu"

    # A correction in the Segment Editor: the oedema loses a slab; the table follows and marks it.
    ed = slicer.util.arrayFromSegmentBinaryLabelmap(result.segmentation, "ED", reference)
    removed = int(ed[70:80].sum())
    ed[70:80] = 0
    slicer.util.updateSegmentBinaryLabelmapFromArray(ed, result.segmentation, "ED", reference)
    assert result.table.GetCellText(rows["ED"], 4) == "yes" and result.table.GetCellText(rows["ET"], 4) == "no"
    expected_ed = ((result.labels.array == Label.ED).sum() - removed) * voxel_ml
    assert float(result.table.GetCellText(rows["ED"], 1)) == pytest.approx(expected_ed, rel=1e-3)
    result.watcher.stop()


def test_input_findings_lead_the_finished_status_and_fill_a_dialog():
    # The module said only "Done" and the input findings stayed in the JSON; a T2 chosen as the T1c (what the
    # command line test in test_input_safety.py runs for real) now leads the status and is shown in a dialog.
    from TumorSegLib.scene.session import finished_status

    summary = {"timings_s": {"total": 41.7}, "device": "cpu", "uncertainty": {}, "qa": [
        {"severity": "warning", "code": "unexpected_contrast", "sequence": "t1c",
         "message": "the volume given as T1c (contrast) does not look like a T1c (contrast): ..."}]}
    status = finished_status(summary)
    assert status.message.startswith("Done in 42 s on cpu. Warnings (1): read them first.")
    [(kind, dialog)] = status.dialogs()  # what the widget shows: every finding, in the dialog's text
    assert kind == "warning" and summary["qa"][0]["message"] in dialog["text"]
    clean = finished_status({**summary, "qa": []})
    assert clean.warnings == () and "Warnings" not in clean.message and clean.dialogs() == []


def test_cancel_mid_run_leaves_the_scene_exactly_as_it_was(slicer_app):
    # The module's own self-test scenario (TumorSegTest runs it inside Slicer).
    selftest.cancel_leaves_the_scene_unchanged(slicer_app.scene)


def test_the_modules_self_test_segments_the_sample_and_the_table_follows_edits(slicer_app):
    selftest.segments_match_the_label_map_and_table_follows_edits(slicer_app.scene)


def test_a_failed_run_reports_the_error_and_changes_nothing(slicer_app, synthetic_nodes):
    before = scene_snapshot(slicer_app.scene)
    with pytest.raises(RuntimeError, match="unknown model 'no-such-model'"):
        run_segmentation(slicer_app.scene, synthetic_nodes, replace(FAST_OPTIONS, model="no-such-model"))
    assert scene_snapshot(slicer_app.scene) == before


@pytest.mark.parametrize("broken", ["summary is not JSON", "uncertainty map missing"])
def test_results_that_cannot_be_read_leave_no_temporary_folder_and_no_nodes(slicer_app, synthetic_nodes,
                                                                            synthetic_case, tmp_path, broken):
    import json

    from TumorSegLib.volume import write_volume

    run = SegmentationRun(slicer_app.scene, synthetic_nodes, FAST_OPTIONS)
    run.work_dir = tmp_path / "TumorSeg-run"  # as start() leaves it once the child process has written
    run.work_dir.mkdir()
    write_volume(synthetic_case.labels, run.output_path)
    if broken == "summary is not JSON":
        run.output_path.with_name("labels.json").write_text("{truncated")
        error = json.JSONDecodeError
    else:
        run.output_path.with_name("labels.json").write_text(json.dumps({"label_convention": "brats2023"}))
        error = FileNotFoundError
    before = scene_snapshot(slicer_app.scene)
    with pytest.raises(error):
        run.import_results()
    assert not (tmp_path / "TumorSeg-run").exists()
    assert scene_snapshot(slicer_app.scene) == before


def test_enhancement_left_unreported_is_marked_on_the_segmentation_for_follow_up(slicer_app, synthetic_nodes,
                                                                                 synthetic_case, tmp_path):
    import json

    import numpy as np

    from TumorSegLib.scene.results import UNREPORTED_ENHANCEMENT_ATTRIBUTE
    from TumorSegLib.volume import write_volume

    run = SegmentationRun(slicer_app.scene, synthetic_nodes, FAST_OPTIONS)
    run.work_dir = tmp_path / "TumorSeg-run"  # as start() leaves it once the child process has written
    run.work_dir.mkdir()
    write_volume(synthetic_case.labels, run.output_path)
    write_volume(synthetic_case.labels.with_array(np.zeros(synthetic_case.labels.shape, np.float32)),
                 run.work_dir / "uncertainty.nrrd")
    run.output_path.with_name("labels.json").write_text(json.dumps({"not_assessed": [],
                                                                    "enhancement": {"too_little_ml": 1.4}}))
    result = run.import_results()
    assert result.segmentation.GetAttribute(UNREPORTED_ENHANCEMENT_ATTRIBUTE) == "1.4"
    result.watcher.stop()


def test_a_run_needs_t1c_or_flair(slicer_app, synthetic_nodes):
    with pytest.raises(ValueError, match="at least a T1c or a FLAIR"):
        SegmentationRun(slicer_app.scene, {"t1": synthetic_nodes["t1"], "t2": synthetic_nodes["t2"]})


def test_results_of_a_run_survive_saving_and_reloading(slicer_app, synthetic_nodes, tmp_path):
    import slicer

    from Testing.conftest import SlicerApplicationStub

    result = run_segmentation(slicer_app.scene, synthetic_nodes, FAST_OPTIONS)
    parameters = slicer_app.scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "TumorSeg")
    parameters.SetNodeReferenceID("outputSegmentation", result.segmentation.GetID())
    parameters.SetNodeReferenceID("resultsTable", result.table.GetID())
    parameters.SetNodeReferenceID("uncertaintyVolume", result.uncertainty.GetID())
    parameters.SetNodeReferenceID("t1cVolume", synthetic_nodes["t1c"].GetID())
    assert slicer_app.scene.WriteToMRB(str(tmp_path / "run.mrb"))

    reloaded = SlicerApplicationStub(tmp_path / "cache2")
    slicer.mrmlScene = reloaded.scene
    assert reloaded.scene.ReadFromMRB(str(tmp_path / "run.mrb"))
    parameters2 = reloaded.scene.GetFirstNodeByName("TumorSeg")
    segmentation2, table2 = parameters2.GetNodeReference("outputSegmentation"), parameters2.GetNodeReference("resultsTable")
    reference2 = parameters2.GetNodeReference("t1cVolume")
    labels2 = mrml.labels_from_segmentation(segmentation2, reference2)
    assert [(labels2.array == code).sum() for code in (1, 2, 3)] == \
        [(result.labels.array == code).sum() for code in (1, 2, 3)]
    assert [table2.GetCellText(r, 1) for r in range(5)] == [result.table.GetCellText(r, 1) for r in range(5)]
    # The table follows edits again once the module re-attaches its watcher after loading.
    mrml.ResultsWatcher(segmentation2, reference2, table2, parameters2.GetNodeReference("uncertaintyVolume")).start()
    et = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation2, "ET", reference2)
    et[:4, :4, :4] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(et, segmentation2, "ET", reference2)
    assert table2.GetCellText(2, 4) == "yes"


def test_uncertainty_sampling_fills_intervals_scores_and_review_flags(slicer_app, synthetic_nodes):
    options = replace(FAST_OPTIONS, uncertainty=UncertaintyOptions(methods="flips", samples=2))
    result = run_segmentation(slicer_app.scene, synthetic_nodes, options)
    table = result.table
    columns = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    assert {"AI volume interval (mL)", "Uncertainty score", "Review first"} <= set(columns)
    wt = {columns[c]: table.GetCellText(4, c) for c in range(len(columns))}
    low, high = (float(x) for x in wt["AI volume interval (mL)"].split(" - "))
    assert low <= high and 0 <= float(wt["Uncertainty score"]) <= 1
    assert set(result.summary["uncertainty"]["flagged"]) == {
        table.GetCellText(r, 0) for r in range(5) if table.GetCellText(r, columns.index("Review first")) == "REVIEW"}
    assert result.summary["uncertainty"]["samples"] == 2


def test_patient_images_left_by_a_slicer_that_died_are_removed_at_the_next_run(slicer_app, synthetic_nodes, tmp_path,
                                                                               monkeypatch):
    import os
    import stat
    import tempfile

    from TumorSegLib.scene.run import OWNER_FILE, WORK_PREFIX

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = tmp_path / f"{WORK_PREFIX}crashed"
    dead.mkdir()
    (dead / OWNER_FILE).write_text("999999")  # no such process
    (dead / "t1c.nrrd").write_bytes(b"patient data")
    alive = tmp_path / f"{WORK_PREFIX}running"
    alive.mkdir()
    (alive / OWNER_FILE).write_text(str(os.getpid()))
    run = SegmentationRun(slicer_app.scene, synthetic_nodes, FAST_OPTIONS)
    run.start()
    try:
        assert not dead.exists() and alive.exists()
        assert stat.S_IMODE(run.work_dir.stat().st_mode) == 0o700  # other users cannot read the images
    finally:
        run.cancel()
    assert run.work_dir is None
