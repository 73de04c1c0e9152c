"""The clinician's report: HTML with every section, a PDF a person can read (rendered with pdftoppm and looked
at as pages), "research use only" on each page, and the command line's --report."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from Testing.conftest import brain_phantom
from TumorSegLib.outputs import report_content, write_report_files
from TumorSegLib.report import RESEARCH_ONLY, ReportContent, key_images_png, render_html, tumour_slices


def summary(not_assessed=()):
    return {
        "model": "brats18-segresnet8", "model_sha256": ["a" * 64], "device": "cpu", "precision": "bfloat16",
        "sequences_used": ["t1c", "flair"],
        "sequences_missing": ["t1", "t2"], "not_assessed": list(not_assessed),
        "volumes_ml": {"NCR": None if "NCR" in not_assessed else 1.5, "ED": 20.25, "ET": None if "ET" in not_assessed
                       else 3.0, "TC": 4.5, "WT": 24.75},
        "uncertainty": {"flagged": ["ET"], "estimate_outside_interval": [],
                        "regions": {"ET": {"score": 0.45}},
                        "volumes_ml": {"WT": {"estimate": 24.75, "p5": 22.0, "p95": 27.0, "interval": [20.0, 30.0],
                                              "interval_coverage": 0.9}}},
        "qa": [{"severity": "warning", "code": "missing_sequence", "sequence": "t1", "message": "T1 <missing> & more"}],
        "provenance": {"versions": {"tumorseg": "0.2.0", "torch": "2.13.0", "monai": "1.6.1"},
                       "created_utc": "2026-11-28T12:00:00+00:00",
                       "inputs": {"t1c": {"path": "/data/t1c.nii.gz", "sha256": "b" * 64}},
                       "command": ["tumorseg", "segment"]},
    }


def test_the_html_has_every_section_and_escapes_what_it_shows():
    html = render_html(ReportContent(summary(), timeline_rows=[{"timepoint": "baseline", "date": "2026-01-01",
                                                                "WT_ml": 20.0, "rano_bidimensional": "SD"}]))
    for text in ("Tumor volumes", "Review flags", "Enhancing lesions", "Follow-up (RANO 2.0", "Input checks",
                 "Provenance", RESEARCH_ONLY, "20.0 to 30.0*", "uncertain: review", "b" * 64, "WT (mL)", "RANO (2D)",
                 "cpu (bfloat16)"):
        assert text in html, text
    assert "T1 &lt;missing&gt; &amp; more" in html and "<missing>" not in html


def test_without_t1c_necrosis_and_enhancement_say_not_assessed():
    html = render_html(ReportContent(summary(("NCR", "ET"))))
    assert html.count("not assessed") >= 2 and "No T1c (contrast) series" in html


def test_without_t2_or_flair_oedema_and_whole_tumour_say_not_assessed():
    html = render_html(ReportContent(summary(("ED", "WT"))))
    assert html.count("no T2/FLAIR") == 2 and "No T2 or FLAIR series" in html and "No T1c" not in html


def test_key_images_cut_through_the_tumour():
    images, labels = brain_phantom(shape=(48, 52, 40))
    i, j, k = tumour_slices(labels)
    assert labels.array[:, :, k].any() and labels.array[i].any() and labels.array[:, j].any()
    png = key_images_png(images["t1c"], labels, labels.with_array(labels.array / 3.0), title="Case")
    assert png.startswith(b"\x89PNG") and len(png) > 20_000


def test_the_pdf_reads_as_pages_with_the_banner_on_each(tmp_path):
    if not all(shutil.which(tool) for tool in ("pdftoppm", "pdftotext", "pdfimages")):
        pytest.skip("pdftoppm/pdftotext/pdfimages (Debian package poppler-utils) are not installed; .ci/run "
                    "installs them")
    images, labels = brain_phantom(shape=(48, 52, 40))
    content = report_content(summary(), images["t1c"], labels, labels.with_array(labels.array / 3.0),
                             study={"PatientID": "TS1", "PatientName": "Test^Glioma", "StudyDate": "20260314"})
    written = write_report_files(content, tmp_path / "report.html", tmp_path / "report.pdf")
    assert written == {"html": str(tmp_path / "report.html"), "pdf": str(tmp_path / "report.pdf")}
    text = subprocess.run(["pdftotext", "-layout", str(tmp_path / "report.pdf"), "-"], capture_output=True,
                          text=True, check=True).stdout
    pages = text.split("\f")[:-1]
    assert 1 <= len(pages) <= 4 and all("Research use only" in page for page in pages)
    subprocess.run(["pdftoppm", "-r", "50", "-png", str(tmp_path / "report.pdf"), str(tmp_path / "page")], check=True)
    from PIL import Image

    for page in sorted(tmp_path.glob("page-*.png")):
        grey = np.asarray(Image.open(page).convert("L"), dtype=float)
        assert grey.shape[0] > grey.shape[1]  # portrait A4
        assert (grey < 128).mean() > 0.002  # text or images, not a blank page
    # The key images are embedded at full resolution (legible when zoomed), not as a thumbnail.
    listing = subprocess.run(["pdfimages", "-list", str(tmp_path / "report.pdf")], capture_output=True, text=True,
                             check=True).stdout.splitlines()[2:]
    assert "Key images" in text and max(int(line.split()[3]) for line in listing) >= 1000
