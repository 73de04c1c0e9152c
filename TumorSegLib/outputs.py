"""What a segmentation delivers beside its label map: DICOM SEG, SR and uncertainty map for the PACS, the
clinician's HTML/PDF report (and the PDF as DICOM), from one result and its summary."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from .dicom import (
    Algorithm,
    LesionDiameters,
    RegionVolume,
    build_encapsulated_pdf,
    build_seg,
    build_sr,
    build_uncertainty_map,
    read_sources,
    save_dataset,
    segment_specs,
)
from .labels import Label
from .longitudinal import measure_labels
from .report import ReportContent, key_images_png, write_report
from .volume import PathLike, Volume

__all__ = ["DICOM_FILES", "REPORT_FILES", "report_content", "write_report_files", "write_dicom_outputs"]

# File names in an output folder.
DICOM_FILES = {"seg": "segmentation.seg.dcm", "sr": "measurements.sr.dcm", "uncertainty": "uncertainty.pm.dcm",
               "report": "report.pdf.dcm"}
REPORT_FILES = {"html": "report.html", "pdf": "report.pdf"}
_NAMES = {"NCR": "Necrotic core", "ED": "Edema", "ET": "Enhancing tumor", "TC": "Tumor core", "WT": "Whole tumor"}
_TYPES = {"NCR": ("6574001", "Necrosis"), "ED": ("79654002", "Edema")}


def _interval(summary: Mapping, key: str) -> tuple[float, float] | None:
    record = ((summary.get("uncertainty") or {}).get("volumes_ml") or {}).get(key) or {}
    bounds = record.get("interval") or ([record["p5"], record["p95"]] if "p5" in record else None)
    return (float(bounds[0]), float(bounds[1])) if bounds else None


def _region_volumes(summary: Mapping, not_assessed: Sequence[str]) -> list[RegionVolume]:
    """The SR's volumes: one per SEG segment (in segment order), then the composite regions."""
    volumes = summary["volumes_ml"]
    regions = []
    for number, spec in enumerate(segment_specs(not_assessed), start=1):
        if spec.labels == {int(Label.ED)}:
            key = "ED"
        elif len(spec.labels) > 1:
            key = "TC"  # the core as one segment (no T1c)
        else:
            key = {int(Label.NCR): "NCR", int(Label.ET): "ET"}[next(iter(spec.labels))]
        regions.append(RegionVolume(key, spec.name, volumes[key], _interval(summary, key), number, spec.type))
    segmented = {region.key for region in regions}
    for key in ("TC", "WT"):
        if key not in segmented and volumes.get(key) is not None:
            regions.append(RegionVolume(key, _NAMES[key], volumes[key], _interval(summary, key)))
    return regions


def _lesion_diameters(lesions: Sequence[Mapping]) -> list[LesionDiameters]:
    return [LesionDiameters(lesion["index"], lesion["longest_diameter_mm"], lesion["perpendicular_diameter_mm"],
                            tuple(map(tuple, lesion["longest_endpoints_mm"])),
                            tuple(map(tuple, lesion["perpendicular_endpoints_mm"])), lesion["measurable"])
            for lesion in lesions if lesion["longest_diameter_mm"] > 0]


def report_content(summary: Mapping, image: Volume, labels: Volume, uncertainty: Volume | None,
                   study: Mapping | None = None, timeline: Mapping | None = None) -> ReportContent:
    """The report's content: key images on ``image`` (the reference sequence), the enhancing lesions'
    measurements (none when enhancement was not assessed), the timeline when given (``run_track``'s result)."""
    lesions = [] if "ET" in summary.get("not_assessed", []) else [
        lesion.to_dict() for lesion in measure_labels(labels).lesions]
    plot = Path(timeline["plot"]).read_bytes() if timeline and timeline.get("plot") else None
    title = f"Patient {study.get('PatientID', '')}, study of {study.get('StudyDate', '')}" if study else ""
    return ReportContent(summary=summary, key_images_png=key_images_png(image, labels, uncertainty, title=title),
                         lesions=lesions, timeline_rows=timeline["rows"] if timeline else None,
                         timeline_plot_png=plot, study=study)


def write_report_files(content: ReportContent, html_path: PathLike, pdf_path: PathLike | None) -> dict[str, str]:
    """``report.html`` (and ``report.pdf``); returns their paths for the summary."""
    written = write_report(content, html_path, pdf_path)
    return {kind: str(path) for kind, path in zip(("html", "pdf"), written)}


def write_dicom_outputs(folder: PathLike, summary: Mapping, labels: Volume, uncertainty: Volume | None,
                        source_files: Sequence[PathLike], lesions: Sequence[Mapping], pdf: bytes | None,
                        uncertainty_kind: str = "entropy", edited: Collection[str] = ()) -> dict[str, tuple[str, object]]:
    """SEG, SR and, when given, the uncertainty Parametric Map and the Encapsulated PDF, written into
    ``folder``; the result must lie on the grid of ``source_files`` (the reference series). Segments whose keys
    are in ``edited`` (corrected by hand) are marked semi-automatic.

    Returns:
        ``{kind: (path, dataset)}`` (the datasets go on to a PACS).
    """
    folder = Path(folder)
    sources = read_sources(source_files)
    algorithm = Algorithm(summary["model"], tuple(summary["model_sha256"]))
    not_assessed = summary.get("not_assessed", [])
    seg = build_seg(labels, sources, segment_specs(not_assessed), algorithm, edited=edited)
    objects = {"seg": seg,
               "sr": build_sr(seg, sources, _region_volumes(summary, not_assessed), _lesion_diameters(lesions),
                              algorithm)}
    if uncertainty is not None:
        objects["uncertainty"] = build_uncertainty_map(uncertainty, sources, algorithm, uncertainty_kind)
    if pdf is not None:
        objects["report"] = build_encapsulated_pdf(pdf, sources[0])
    return {kind: (str(save_dataset(dataset, folder / DICOM_FILES[kind])), dataset)
            for kind, dataset in objects.items()}
