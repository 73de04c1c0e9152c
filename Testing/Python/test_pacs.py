"""PACS round trip against a real Orthanc: ``tumorseg pacs`` pulls a study over DICOMweb, segments it and stores
the SEG, SR, uncertainty map and PDF report back; the test reads them from Orthanc and checks their content."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pydicom
import pytest

from Testing.dicom_fixtures import write_study
from Testing.orthanc import orthanc_missing, running_orthanc
from TumorSegLib.cli import main


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    why = orthanc_missing()
    if why:
        pytest.skip(why)
    with running_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        yield server


def test_wrong_credentials_and_unknown_studies_are_clear_errors(orthanc, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TUMORSEG_PACS_PASSWORD", "wrong")
    code = main(["pacs", "--url", orthanc.dicomweb, "--study-uid", "1.2.3", "--username", orthanc.username,
                 "-o", str(tmp_path / "out")])
    assert code == 2 and "HTTP 401" in capsys.readouterr().err
    monkeypatch.setenv("TUMORSEG_PACS_PASSWORD", orthanc.password)
    code = main(["pacs", "--url", orthanc.dicomweb, "--study-uid", "1.2.3", "--username", orthanc.username,
                 "-o", str(tmp_path / "out")])
    assert code == 2 and "no study 1.2.3" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_password_never_goes_over_plain_http_to_another_host(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TUMORSEG_PACS_PASSWORD", "x")
    code = main(["pacs", "--url", "http://pacs.example.org/dicom-web", "--study-uid", "1.2", "--username", "u",
                 "-o", str(tmp_path / "out")])
    assert code == 2 and "use https" in capsys.readouterr().err


def test_pacs_round_trip_stores_seg_sr_map_and_report_on_orthanc(orthanc, synthetic_case_files, tmp_path, capsys,
                                                                 monkeypatch):
    from TumorSegLib.volume import read_volume

    images = {key: read_volume(path) for key, path in synthetic_case_files.items() if key != "label"}
    uids = write_study(images, tmp_path / "study", "philips", others=("localizer",))
    assert orthanc.upload(sorted((tmp_path / "study").rglob("*.dcm"))) > 0
    study_uid = pydicom.dcmread(next((tmp_path / "study" / "t1c").iterdir())).StudyInstanceUID
    monkeypatch.setenv("TUMORSEG_PACS_PASSWORD", orthanc.password)
    downloads_before = set(Path(tempfile.gettempdir()).glob("tumorseg-pacs-*"))
    out = tmp_path / "out"
    code = main(["pacs", "--url", orthanc.dicomweb, "--study-uid", study_uid, "--username", orthanc.username,
                 "-o", str(out), "--model", "brats18-segresnet8", "--no-n4"])
    assert code == 0, capsys.readouterr().err
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(printed["stored"]) == 4

    session = orthanc.session()
    series = session.get(f"{orthanc.dicomweb}/studies/{study_uid}/series", timeout=30).json()
    modalities = sorted(item["00080060"]["Value"][0] for item in series)
    # The four sequences and the localiser, then ours: PDF report, uncertainty Parametric Map, SEG, SR.
    assert modalities == ["DOC"] + ["MR"] * 5 + ["OT", "SEG", "SR"]
    summary = json.loads((out / "segmentation.json").read_text())
    seg_uid = summary["dicom"]["seg"]["SOPInstanceUID"]
    instance = session.post(f"{orthanc.url}/tools/find", json={"Level": "Instance", "Query": {"SOPInstanceUID": seg_uid}},
                            timeout=30).json()
    assert len(instance) == 1
    stored = pydicom.dcmread(io.BytesIO(session.get(f"{orthanc.url}/instances/{instance[0]}/file",
                                                                  timeout=30).content))
    assert stored.ReferencedSeriesSequence[0].SeriesInstanceUID == uids["t1c"]
    assert [s.SegmentLabel for s in stored.SegmentSequence][2] == "Enhancing tumor"
    local = pydicom.dcmread(out / "segmentation.seg.dcm")
    assert np.array_equal(stored.pixel_array, local.pixel_array)
    assert set(Path(tempfile.gettempdir()).glob("tumorseg-pacs-*")) == downloads_before  # patient data removed
