"""``tumorseg segment --study``: a DICOM study in; label map, summary, DICOM SEG + SR + uncertainty map and the
clinician's report out, in one folder (put in place together, or not at all). ``tumorseg pacs`` uses it too."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

from .common import (
    CommandError,
    FindingsPrinter,
    ProgressReport,
    check_model_and_device,
    labels_summary,
    log,
    secondary_outputs,
)

__all__ = ["LABELS_FILE", "plan_study", "segment_study", "segment_study_command"]

LABELS_FILE = "segmentation.nii.gz"
SUMMARY_FILE = "segmentation.json"
UNCERTAINTY_FILE = "uncertainty.nii.gz"
TIMELINE_FILE = "timeline.json"


def plan_study(folder: Path, study_uid: str | None, assign: list[str]):
    """Scan the study's headers, choose the study and assign the sequences (seconds; no pixel read); print it.

    Raises:
        ValueError: for no DICOM, several studies without ``study_uid``, a bad ``--assign``, or no usable sequence.
    """
    from ..dicom import assign_series, choose_study, parse_assignments, scan_folder
    from ..sequences import REQUIRED_ANY

    overrides = parse_assignments(assign)
    assignment = assign_series(choose_study(scan_folder(folder), study_uid), overrides)
    log(f"Series of the study in {folder}:\n{assignment.describe()}")
    if not set(assignment.chosen) & set(REQUIRED_ANY):
        raise CommandError(f"--study {folder}: no T1c or FLAIR series was recognised (see the list above); name one "
                           "with --assign t1c=SERIES_UID or --assign flair=SERIES_UID")
    return assignment


def _series_record(series) -> dict:
    from ..provenance import files_sha256

    return {**series.identity(), "files": len(series.files), "sha256": files_sha256(series.files)}


def _timeline_with_visit(timeline_path: Path, study: dict, labels_path: Path, image_path: Path, reference: str,
                         folder: Path, not_assessed: dict[str, str]) -> dict:
    """The patient's follow-up with this visit added: a copy of the timeline in ``folder`` (the user's file is
    left as it is), tracked there."""
    from ..longitudinal import Timeline, Timepoint, parse_date, run_track

    timeline = Timeline.load(timeline_path)
    date = parse_date(study.get("StudyDate") or dt.date.today().isoformat())
    visit = Timepoint(id=f"{date.isoformat()} {study.get('AccessionNumber') or 'this study'}".strip(), date=date,
                      images={reference: image_path}, segmentation=labels_path, not_assessed=dict(not_assessed))
    if any(tp.date == date for tp in timeline.timepoints):
        visit.order = 1 + max((tp.order or 1) for tp in timeline.timepoints if tp.date == date)
    timeline.add(visit)
    timeline.path = folder / TIMELINE_FILE
    timeline.save()
    return run_track(timeline.path, folder / "timeline")


def segment_study(assignment, options, folder: Path, *, timeline: Path | None = None, args=None,
                  staged_extra: dict | None = None) -> dict:
    """Segment the assigned series and write every output into ``folder`` (a staged, empty folder).

    Returns the summary (also written to ``folder/segmentation.json``)."""
    from ..dicom import read_series
    from ..export import write_map, write_summary, write_volume
    from ..outputs import REPORT_FILES, report_content, write_dicom_outputs, write_report_files
    from ..pipeline import segment
    from ..provenance import provenance
    from ..support import recorded_not_assessed

    start = time.perf_counter()
    progress = ProgressReport()
    progress(0.0, "reading the series")
    images = {key: read_series(series) for key, series in assignment.chosen.items()}
    show = FindingsPrinter()
    for warning in assignment.warnings:
        print(f"[warning] {warning}", flush=True)
    result = segment(images, options.model, options.device, flips=options.flips, progress=progress,
                     clinical=options.clinical, uncertainty=options.uncertainty, force=options.force,
                     on_findings=show)
    progress.close()
    show(result.qa)
    folder.mkdir(parents=True, exist_ok=True)
    summary = labels_summary(result, folder / LABELS_FILE, folder / LABELS_FILE, options.label_convention)
    summary["output"] = LABELS_FILE  # relative: the folder is renamed into place at the end
    summary["qa"] += [{"severity": "warning", "code": "series_assignment", "sequence": None, "message": warning}
                      for warning in assignment.warnings]
    if args is not None and staged_extra:
        summary.update(secondary_outputs(result, args, options, staged_extra))
    uncertainty = result.uncertainty_map(options.uncertainty_map_kind.value)
    write_map(uncertainty, folder / UNCERTAINTY_FILE)
    reference_series = assignment.chosen[result.reference]
    study = {key: value for key, value in reference_series.identity().items()
             if key not in ("SeriesInstanceUID", "SeriesNumber", "SeriesDescription")}
    summary["study"] = study
    summary["series_assignment"] = assignment.as_dict()
    summary["provenance"] = provenance({key: _series_record(s) for key, s in assignment.chosen.items()}, options,
                                       command=["tumorseg", *getattr(args, "argv", sys.argv[1:])], study=study)
    # The reference image beside its labels: follow-up visits register to it (tumorseg track).
    image_path = write_volume(images[result.reference], folder / f"{result.reference}.nii.gz")
    tracked = None
    if timeline is not None:
        tracked = _timeline_with_visit(timeline, study, folder / LABELS_FILE, image_path, result.reference, folder,
                                       recorded_not_assessed(summary))
        summary["timeline"] = {"file": TIMELINE_FILE, "rows": tracked["rows"]}
    content = report_content(summary, images[result.reference], result.labels, uncertainty, study, tracked)
    summary["report"] = write_report_files(content, folder / REPORT_FILES["html"], folder / REPORT_FILES["pdf"])
    written = write_dicom_outputs(folder, summary, result.labels, uncertainty, reference_series.files,
                                  content.lesions, (folder / REPORT_FILES["pdf"]).read_bytes(),
                                  options.uncertainty_map_kind.value)
    summary["dicom"] = {kind: {"file": Path(path).name, "SOPInstanceUID": str(dataset.SOPInstanceUID),
                               "SeriesInstanceUID": str(dataset.SeriesInstanceUID)}
                        for kind, (path, dataset) in written.items()}
    summary["report"] = {kind: Path(path).name for kind, path in summary["report"].items()}
    summary["timings_s"]["total"] = round(time.perf_counter() - start, 2)
    write_summary(summary, folder / SUMMARY_FILE)
    summary["datasets"] = {kind: dataset for kind, (_, dataset) in written.items()}  # for a PACS; not in the JSON
    return summary


def segment_study_command(args: argparse.Namespace) -> int:
    from ..export import Outputs
    from ..options import SegmentOptions

    options = SegmentOptions.from_args(args)
    folder = Path(args.study)
    if args.report:
        raise CommandError("--report: with --study the report is written into the output folder (report.html, "
                           "report.pdf)")
    if args.timeline and not Path(args.timeline).is_file():
        raise FileNotFoundError(f"--timeline {args.timeline}: file not found")
    assignment = plan_study(folder, args.study_uid, args.assign)
    check_model_and_device(options)
    outputs = Outputs(inputs=[folder], overwrite=args.overwrite)
    staged = outputs.claim(args.output, folder=True)
    extra = {name: outputs.claim(getattr(args, name), folder=name == "uncertainty")
             for name in ("uncertainty", "uncertainty_map", "brain_mask") if getattr(args, name)}
    with outputs:  # the folder is put in place complete, or removed (failure, Ctrl-C)
        summary = segment_study(assignment, options, staged, timeline=Path(args.timeline) if args.timeline else None,
                                args=args, staged_extra=extra)
    log(json.dumps({"output": str(args.output), "volumes_ml": summary["volumes_ml"],
                    "dicom": {kind: item["file"] for kind, item in summary["dicom"].items()},
                    "report": summary["report"]}))
    return 0
