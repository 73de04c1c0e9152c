"""DICOM in and out: study scanning and series classification, series reading, SEG/SR/Parametric Map/PDF objects
(round trip exact, dciodvfy clean), and ``tumorseg segment --study`` on a real shared case written as DICOM."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from Testing.conftest import brain_phantom
from Testing.dicom_fixtures import OTHER_SERIES, SeriesHeader, write_series, write_study
from TumorSegLib.dicom import (
    Algorithm,
    assign_series,
    build_encapsulated_pdf,
    build_seg,
    build_sr,
    build_uncertainty_map,
    choose_study,
    parse_assignments,
    read_series,
    read_sources,
    save_dataset,
    scan_folder,
    seg_labels,
    segment_specs,
)
from TumorSegLib.dicom.sr import LesionDiameters, RegionVolume
from TumorSegLib.volume import ImageReadError, Volume

ALGORITHM = Algorithm("test-model", ("ab" * 32,))


def oblique_phantom():
    """The phantom on an oblique, anisotropic grid (what a real axial acquisition looks like)."""
    images, labels = brain_phantom(shape=(48, 56, 30), spacing=(0.9, 0.9, 2.0))
    angle = np.deg2rad(12)
    direction = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    place = lambda v: Volume(v.array, v.spacing, (-20.0, -30.5, 12.25), direction)  # noqa: E731
    return {key: place(v) for key, v in images.items()}, place(labels)


@pytest.fixture(scope="module")
def phantom_study(tmp_path_factory):
    images, labels = oblique_phantom()
    folder = tmp_path_factory.mktemp("study")
    uids = write_study(images, folder, "ge", others=("localizer", "dwi", "adc", "perfusion"))
    return folder, uids, images, labels


def dciodvfy_errors(path) -> list[str]:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed; .ci/run installs it")
    run = subprocess.run(["dciodvfy", "-new", str(path)], capture_output=True, text=True)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


@pytest.mark.parametrize("style", ["ge", "siemens", "philips", "unnamed"])
def test_each_vendor_naming_assigns_the_four_sequences(style, tmp_path):
    images, _ = brain_phantom(shape=(24, 24, 12))
    uids = write_study(images, tmp_path, style, others=tuple(OTHER_SERIES))
    assignment = assign_series(choose_study(scan_folder(tmp_path)))
    assert {key: s.series_uid for key, s in assignment.chosen.items()} == {k: uids[k] for k in images}
    assert {s.series_uid for s, _ in assignment.ignored} == {uids[name] for name in OTHER_SERIES}
    reasons = {s.series_uid: why for s, why in assignment.ignored}
    assert reasons[uids["localizer"]] == "localiser" and reasons[uids["dwi"]] == "diffusion"
    assert reasons[uids["perfusion"]] == "perfusion" and reasons[uids["adc"]].startswith("derived")
    assert "T1c" in assignment.describe() and uids["t1c"] in assignment.describe()


def test_pre_contrast_names_are_never_t1c_and_the_agent_tag_decides_for_plain_t1_names(tmp_path):
    images, _ = brain_phantom(shape=(24, 24, 12))
    study = {"StudyInstanceUID": "1.2.3.4", "PatientID": "P", "PatientName": "X", "StudyDate": "20260101"}
    pre = write_series(images["t1"], tmp_path / "a", SeriesHeader("AX T1 PRE GAD", 600, 10, None, "GADAVIST"), 1,
                       study, "1.2.3.5")
    post = write_series(images["t1c"], tmp_path / "b", SeriesHeader("AX T1", 600, 10, None, "GADAVIST"), 2, study,
                        "1.2.3.5")
    assignment = assign_series(scan_folder(tmp_path))
    assert assignment.chosen["t1"].series_uid == pre and assignment.chosen["t1c"].series_uid == post
    assert "contrast agent" in assignment.reasons["t1c"]


def test_two_unnamed_t1_series_take_the_later_as_t1c_with_a_warning(tmp_path):
    images, _ = brain_phantom(shape=(24, 24, 12))
    study = {"StudyInstanceUID": "1.2.3.4", "PatientID": "P", "PatientName": "X", "StudyDate": "20260101"}
    first = write_series(images["t1"], tmp_path / "a", SeriesHeader("AX T1 SE", 600, 10), 3, study, "1.2.3.5")
    later = write_series(images["t1c"], tmp_path / "b", SeriesHeader("AX T1 SE", 600, 10), 7, study, "1.2.3.5")
    assignment = assign_series(scan_folder(tmp_path))
    assert assignment.chosen["t1"].series_uid == first and assignment.chosen["t1c"].series_uid == later
    assert assignment.warnings and "--assign t1c=" in assignment.warnings[0]


def test_overrides_win_and_unknown_uids_or_keys_are_named(phantom_study):
    folder, uids, _, _ = phantom_study
    series = scan_folder(folder)
    swapped = assign_series(series, parse_assignments([f"t1c={uids['t1']}", "t2=none"]))
    assert swapped.chosen["t1c"].series_uid == uids["t1"] and "t1" not in swapped.chosen and "t2" not in swapped.chosen
    assert swapped.reasons["t1c"] == "chosen with --assign"
    with pytest.raises(ValueError, match="--assign t1c=9.9.9: no such series"):
        assign_series(series, {"t1c": "9.9.9"})
    with pytest.raises(ValueError, match="--assign pd=1.2"):
        parse_assignments(["pd=1.2"])


def test_a_folder_with_two_studies_asks_which(tmp_path):
    images, _ = brain_phantom(shape=(24, 24, 12))
    write_study(images, tmp_path / "one", "ge", patient_id="A", study_date="20250101")
    write_study(images, tmp_path / "two", "ge", patient_id="A", study_date="20260101")
    series = scan_folder(tmp_path)
    with pytest.raises(ValueError, match="2 studies.*20250101.*--study-uid"):
        choose_study(series)
    uid = next(s.study_uid for s in series if s.patient["StudyDate"] == "20260101")
    assert {s.study_uid for s in choose_study(series, uid)} == {uid}


def test_no_dicom_in_the_folder_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("not dicom")
    with pytest.raises(ValueError, match="no DICOM image found"):
        scan_folder(tmp_path)


def test_a_series_reads_back_on_its_oblique_grid_whatever_the_file_order(phantom_study, tmp_path):
    folder, uids, images, _ = phantom_study
    series = next(s for s in scan_folder(folder) if s.series_uid == uids["flair"])
    shuffled = dataclasses.replace(series, files=tuple(reversed(series.files)))
    volume = read_series(shuffled)
    assert np.allclose(volume.direction, images["flair"].direction, atol=1e-5)
    assert np.allclose(volume.origin, images["flair"].origin, atol=1e-3)
    assert np.array_equal(volume.array, np.round(images["flair"].array).astype(np.int16))


def test_a_series_with_a_missing_slice_is_refused(phantom_study):
    folder, uids, _, _ = phantom_study
    series = next(s for s in scan_folder(folder) if s.series_uid == uids["t2"])
    holed = dataclasses.replace(series, files=series.files[:10] + series.files[11:])
    with pytest.raises(ImageReadError, match="slices are missing"):
        read_series(holed)


@pytest.fixture(scope="module")
def written_objects(phantom_study, tmp_path_factory):
    folder, uids, images, labels = phantom_study
    series = next(s for s in scan_folder(folder) if s.series_uid == uids["t1c"])
    sources = read_sources(series.files)
    out = tmp_path_factory.mktemp("objects")
    seg = build_seg(labels, sources, segment_specs(), ALGORITHM)
    regions = [RegionVolume("NCR", "Necrotic core", 0.0, None, 1), RegionVolume("ED", "Edema", 2.5, (2.0, 3.1), 2),
               RegionVolume("ET", "Enhancing tumor", 0.3, (0.1, 0.5), 3), RegionVolume("WT", "Whole tumor", 2.8)]
    lesion = LesionDiameters(1, 12.0, 10.5, ((0, 0, 0), (12, 0, 0)), ((6, -5, 0), (6, 5.5, 0)), True)
    sr = build_sr(seg, sources, regions, [lesion], ALGORITHM)
    doubt = labels.with_array(np.linspace(0, 1, labels.array.size).reshape(labels.shape).astype(np.float32))
    pmap = build_uncertainty_map(doubt, sources, ALGORITHM)
    pdf = build_encapsulated_pdf(b"%PDF-1.4 test", sources[0])
    paths = {name: save_dataset(ds, out / f"{name}.dcm") for name, ds in
             {"seg": seg, "sr": sr, "pmap": pmap, "pdf": pdf}.items()}
    return paths, labels, sources, seg


def test_the_seg_decodes_to_exactly_the_label_map(written_objects):
    paths, labels, sources, _ = written_objects
    decoded = seg_labels(paths["seg"], labels, sources, segment_specs())
    assert np.array_equal(decoded, labels.array)
    seg = pydicom.dcmread(paths["seg"])
    assert [s.SegmentedPropertyTypeCodeSequence[0].CodeValue for s in seg.SegmentSequence] == \
        ["6574001", "79654002", "108369006"]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == sources[0].SeriesInstanceUID


def content_items(sequence, depth=0):
    """(concept name, value) of every SR content item, depth first."""
    for item in sequence:
        name = item.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in item else ""
        value = (item.get("TextValue") or (item.ConceptCodeSequence[0].CodeMeaning if "ConceptCodeSequence" in item
                                           else None)
                 or (float(item.MeasuredValueSequence[0].NumericValue) if "MeasuredValueSequence" in item else None))
        yield name, value
        if "ContentSequence" in item:
            yield from content_items(item.ContentSequence, depth + 1)


def test_the_sr_holds_volumes_intervals_diameters_and_the_model(written_objects):
    paths, *_ = written_objects
    import highdicom as hd

    sr = hd.sr.srread(paths["sr"])
    groups = sr.content.get_volumetric_roi_measurement_groups()
    volumes = {g.tracking_identifier.split()[0]: g.get_measurements()[0].value for g in groups}
    assert volumes == {"NCR": 0.0, "ED": 2.5, "ET": 0.3}
    items = list(content_items(pydicom.dcmread(paths["sr"]).ContentSequence))
    assert ("+, range of upper measurement uncertainty", 0.6) in items
    assert ("-, range of lower measurement uncertainty", 0.5) in items
    assert ("Long axis", 12.0) in items and ("Short axis", 10.5) in items
    assert ("Tracking Identifier", "Enhancing lesion 1 (measurable)") in items
    assert ("Algorithm Parameters", "weights_sha256_1=" + "ab" * 32) in items


@pytest.mark.parametrize("name", ["seg", "sr", "pmap", "pdf"])
def test_every_object_passes_dciodvfy(written_objects, name):
    paths, *_ = written_objects
    assert dciodvfy_errors(paths[name]) == []


def test_the_core_is_one_segment_without_t1c():
    specs = segment_specs(("NCR", "ET"))
    assert len(specs) == 2 and "not assessed" in specs[0].name and specs[0].labels == {1, 3}


def test_there_is_no_oedema_segment_without_t2_or_flair():
    specs = segment_specs(("ED", "WT"))
    assert [set(spec.labels) for spec in specs] == [{1}, {3}]


def test_a_result_on_another_grid_is_not_written_against_the_series(written_objects):
    _, labels, sources, _ = written_objects
    shifted = Volume(labels.array, labels.spacing, tuple(np.add(labels.origin, 3.0)), labels.direction)
    with pytest.raises(ValueError, match="not a slice of the result's grid"):
        build_seg(shifted, sources, segment_specs(), ALGORITHM)


@pytest.mark.realdata
def test_segment_study_writes_a_valid_seg_sr_map_and_report_for_a_real_case(shared_data, tmp_path, capsys):
    from TumorSegLib.cli import main
    from TumorSegLib.volume import read_volume

    case = shared_data / "Brats18_CBICA_AQT_1"
    images = {key: read_volume(case / f"Brats18_CBICA_AQT_1_{suffix}.nii.gz")
              for key, suffix in (("t1", "t1"), ("t1c", "t1ce"), ("t2", "t2"), ("flair", "flair"))}
    uids = write_study(images, tmp_path / "study", "siemens", others=("localizer", "dwi"))
    earlier = {"schema": "tumorseg-timeline", "schema_version": 1, "patient_id": "TS0001",
               "timepoints": [{"id": "baseline", "date": "2026-01-10", "images": {"t1c": str(case / f"{case.name}_t1ce.nii.gz")},
                               "segmentation": str(case / f"{case.name}_seg.nii.gz")}]}
    (tmp_path / "timeline.json").write_text(json.dumps(earlier))
    out = tmp_path / "out"
    assert main(["segment", "--study", str(tmp_path / "study"), "-o", str(out), "--model", "brats18-segresnet8", "--no-n4",
                 "--timeline", str(tmp_path / "timeline.json")]) == 0
    printed = capsys.readouterr().out
    assert "T1c (contrast)  <- #" in printed and "ignored" in printed
    summary = json.loads((out / "segmentation.json").read_text())
    assert summary["provenance"]["inputs"]["t1c"]["SeriesInstanceUID"] == uids["t1c"]
    assert summary["study"]["PatientID"] == "TS0001" and len(summary["provenance"]["inputs"]["t1c"]["sha256"]) == 64
    labels = read_volume(out / "segmentation.nii.gz")
    sources = read_sources(sorted((tmp_path / "study" / "t1c").iterdir()))
    decoded = seg_labels(out / "segmentation.seg.dcm", labels, sources, segment_specs())
    brats = {0: 0, 1: 1, 2: 2, 4: 3}
    assert np.array_equal(decoded, np.vectorize(brats.get)(labels.array))
    for name in ("segmentation.seg.dcm", "measurements.sr.dcm", "uncertainty.pm.dcm", "report.pdf.dcm"):
        assert dciodvfy_errors(out / name) == [], name
    html = (out / "report.html").read_text()
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF") and "Research use only" in html
    # The earlier visit is followed: the report shows both visits, the output folder has the timeline with this one.
    assert [row["timepoint"] for row in summary["timeline"]["rows"]] == ["baseline", "2026-03-14 ATS0001"]
    assert "Follow-up (RANO 2.0" in html and json.loads((tmp_path / "timeline.json").read_text()) == earlier
    assert len(json.loads((out / "timeline.json").read_text())["timepoints"]) == 2
