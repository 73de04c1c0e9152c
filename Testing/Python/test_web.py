"""The browser app: what it does, driven without a browser (a real scene from trame-slicer, a real background
run, edits through the segment editor with undo), and its safety options. The end-to-end run in Chromium is in
test_web_browser.py."""

from __future__ import annotations

import time

import pytest

from TumorSegLib.labels import LABELS
from TumorSegLib.volume import read_volume

pytest.importorskip("trame_slicer", reason="the web extra (trame-slicer) is not installed")


@pytest.fixture(scope="module")
def web(tmp_path_factory, synthetic_case_files):
    """A session on the synthetic case, segmented once by the single network on CPU."""
    import os

    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    from trame_slicer.core import SlicerApp

    from TumorSegLib.web import WebSession

    session = WebSession(SlicerApp(), tmp_path_factory.mktemp("web_out"))
    session.load_files(path for key, path in synthetic_case_files.items() if key != "label")
    session.parameters.modelId, session.parameters.device = "brats18-segresnet8", "cpu"
    session.parameters.biasCorrection = False  # the quicker run: what is checked here does not depend on N4
    session.start()
    deadline = time.monotonic() + 600
    while session.poll().running and time.monotonic() < deadline:
        time.sleep(0.5)
    assert session.parameters.outputSegmentation is not None, session.status
    return session


def rows_by_region(session):
    return {row["Region"]: row for row in session.results_rows()}


def edit(session, key: str, grow: bool = True) -> None:
    """A paint stroke as the editor applies it: the active segment's labelmap modified, through the editor
    (so it goes on the undo stack)."""
    editor = session.app.segmentation_editor
    editor.set_active_segment_id(key)
    labelmap = editor.create_modifier_labelmap()
    from vtk.util import numpy_support

    scalars = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars()).reshape(
        labelmap.GetDimensions()[::-1])
    k, j, i = (n // 2 for n in scalars.shape)
    scalars[k - 3:k + 3, j - 6:j + 6, i - 6:i + 6] = 1
    labelmap.Modified()
    editor.apply_labelmap(labelmap)


def test_a_case_loads_into_the_scene_with_the_sequences_assigned(web, synthetic_case_files):
    assert set(web.inputs()) == {"t1", "t1c", "t2", "flair"} and all(web.inputs().values())
    names = {volume["name"] for volume in web.volumes()}
    assert {"TumorSeg_Synthetic_1_t1ce", "TumorSeg_Synthetic_1_flair"} <= names


def test_the_result_is_segments_a_live_table_and_an_overlay(web):
    segmentation = web.parameters.outputSegmentation.GetSegmentation()
    assert [segmentation.GetNthSegmentID(n) for n in range(segmentation.GetNumberOfSegments())] == \
        [info.key for info in LABELS]
    rows = rows_by_region(web)
    assert list(rows) == ["NCR", "ED", "ET", "TC", "WT"] and rows["WT"]["Volume (mL)"] > 10
    assert all(row["Edited"] == "no" for row in rows.values())
    web.set_overlay(0.6, 0.3)
    display = web.parameters.uncertaintyVolume.GetDisplayNode()
    assert display.GetApplyThreshold() and display.GetLowerThreshold() == pytest.approx(0.3)
    with pytest.raises(ValueError, match="between 0 and 1"):
        web.set_overlay(1.5, 0.1)


def test_an_edit_marks_its_region_undo_takes_it_back_and_revert_restores_the_ai_result(web):
    before = rows_by_region(web)["ED"]["Volume (mL)"]
    edit(web, "ED")
    after = rows_by_region(web)
    assert after["ED"]["Edited"] == "yes" and after["WT"]["Edited"] == "yes" and after["NCR"]["Edited"] == "no"
    assert after["ED"]["Volume (mL)"] != before
    web.undo()
    assert rows_by_region(web)["ED"]["Edited"] == "no" and rows_by_region(web)["ED"]["Volume (mL)"] == before
    edit(web, "ED")
    web.revert("ED")
    assert rows_by_region(web)["ED"]["Edited"] == "no" and rows_by_region(web)["ED"]["Volume (mL)"] == before


@pytest.mark.parametrize("effect", ["islands", "smoothing", "threshold"])
def test_the_editors_effects_change_a_region_mark_it_edited_and_undo_takes_them_back(web, effect):
    """Islands, smoothing and threshold as the page's effect panels apply them (trame-slicer's effects on the
    active segment, through the editor, on the undo stack)."""
    from trame_slicer.segmentation import (
        SegmentationEffectIslands,
        SegmentationEffectSmoothing,
        SegmentationEffectThreshold,
    )

    editor = web.app.segmentation_editor
    key = "ET" if effect == "smoothing" else "ED"
    before = rows_by_region(web)[key]["Volume (mL)"]
    editor.set_active_segment_id(key)
    if effect == "islands":
        editor.set_active_effect_type(SegmentationEffectIslands).remove_small_islands(min_voxel_size=10**7)
    elif effect == "smoothing":
        editor.set_active_effect_type(SegmentationEffectSmoothing).apply_opening(6.0, key)
    else:
        threshold = editor.set_active_effect_type(SegmentationEffectThreshold)
        low, high = threshold.get_threshold_min_max_values()
        threshold.set_threshold_min_max_values((low + 0.8 * (high - low), high))
        threshold.apply()
    changed = rows_by_region(web)[key]
    assert changed["Edited"] == "yes" and changed["Volume (mL)"] != before
    web.undo()
    editor.deactivate_effect()
    assert rows_by_region(web)[key] == {**changed, "Edited": "no", "Volume (mL)": before,
                                        "Voxels": rows_by_region(web)[key]["Voxels"],
                                        "Mean uncertainty": rows_by_region(web)[key]["Mean uncertainty"]}


def test_cancel_leaves_the_scene_as_it_was(web):
    scene = web.scene
    segmentations = scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
    result = web.parameters.outputSegmentation
    web.start()
    assert web.running
    status = web.cancel()
    assert not web.running and status.message.startswith("Cancelled")
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == segmentations
    assert web.parameters.outputSegmentation is result


def test_pre_contrast_names_are_never_assigned_as_t1c(web, tmp_path, synthetic_case_files):
    import shutil

    files = {"AX_T1_PRE_GAD.nii.gz": "t1", "AX_T1_POST_GD.nii.gz": "t1c", "T2_TSE.nii.gz": "t2",
             "3D_FLAIR.nii.gz": "flair"}
    for name, key in files.items():
        shutil.copy(synthetic_case_files[key], tmp_path / name)
    web.load_files(sorted(tmp_path.iterdir()))
    names = {key: web.scene.GetNodeByID(node_id).GetName() for key, node_id in web.inputs().items()}
    assert names == {"t1": "AX_T1_PRE_GAD", "t1c": "AX_T1_POST_GD", "t2": "T2_TSE", "flair": "3D_FLAIR"}


def test_a_dicom_study_folder_fills_the_inputs_from_its_own_series_only(web, tmp_path, synthetic_case_files):
    """A study without T2 after a case with one: the T2 picker is left empty, never the earlier case's T2."""
    from Testing.dicom_fixtures import write_study

    write_study({key: read_volume(synthetic_case_files[key]) for key in ("t1", "t1c", "flair")}, tmp_path, "ge")
    before = set(web.inputs().values())
    new_ids = web.load_folder(tmp_path)
    inputs = web.inputs()
    assert inputs["t2"] is None and {inputs["t1"], inputs["t1c"], inputs["flair"]} == set(new_ids)
    assert not before & set(new_ids)


def test_the_exported_label_map_is_the_result_and_never_overwrites(web):
    first, second = web.export_labelmap(), web.export_labelmap()
    assert first != second and first.exists() and second.exists()
    exported = read_volume(first)
    rows = rows_by_region(web)
    voxel_ml = exported.voxel_volume_ml
    for key, code in (("NCR", 1), ("ED", 2), ("ET", 4)):  # BraTS 2018 codes in the file
        assert (exported.array == code).sum() * voxel_ml == pytest.approx(rows[key]["Volume (mL)"], abs=1e-3)


def test_visits_build_the_timeline_and_its_chart(web):
    rows = web.add_visit("2024-01-10")
    assert rows[0]["role"] == "baseline" and web.timeline_chart().startswith("data:image/png;base64,")


def test_only_loopback_serves_without_a_token():
    from TumorSegLib.web.server import WebOptionsError, check_host

    check_host("127.0.0.1", None)
    check_host("localhost", None)
    with pytest.raises(WebOptionsError, match="--host 0.0.0.0.*token"):
        check_host("0.0.0.0", None)
    with pytest.raises(WebOptionsError, match="16 characters"):
        check_host("10.0.0.5", "short")
    check_host("10.0.0.5", "x" * 16)


def test_the_web_command_refuses_an_open_interface_without_a_token(capsys, monkeypatch):
    from TumorSegLib.cli import main

    monkeypatch.delenv("TUMORSEG_WEB_TOKEN", raising=False)
    assert main(["web", "--host", "0.0.0.0"]) == 2
    assert "--token-file" in capsys.readouterr().err
