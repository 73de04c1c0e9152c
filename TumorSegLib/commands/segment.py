"""``tumorseg segment``: one visit, from four image files (``--t1 … --flair``) or a DICOM study (``--study``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..sequences import IMAGE_SUFFIXES, SEQUENCES
from .common import (
    CommandError,
    FindingsPrinter,
    ProgressReport,
    check_model_and_device,
    labels_summary,
    log,
    run_parsed,
    secondary_outputs,
)

__all__ = ["add_command", "run_segment"]


def _preflight(args: argparse.Namespace, options) -> tuple[dict[str, Path], dict[str, Path], object]:
    """Everything that can be checked before any image is read, within seconds: the inputs exist, the model and
    its weights' SHA-256, the device, and every output path (never an input, never an earlier result unless
    --overwrite, in a folder that can be written). Returns (inputs, staged outputs, the outputs' transaction)."""
    from ..export import Outputs, json_path

    paths = {key: Path(getattr(args, key)) for key in SEQUENCES if getattr(args, key)}
    if not paths:
        raise CommandError("give the input volumes: --t1 --t1c --t2 --flair (at least --t1c or --flair), or a DICOM "
                           "study folder with --study")
    for key, path in paths.items():
        if not path.exists():
            raise FileNotFoundError(f"--{key} {path}: file not found")
    check_model_and_device(options)
    _check_image_names(args)
    outputs = Outputs(inputs=paths.values(), overwrite=args.overwrite)
    staged = {"labels": outputs.claim(args.output), "summary": outputs.claim(json_path(args.output))}
    for name in ("uncertainty", "uncertainty_map", "brain_mask"):
        if getattr(args, name):
            staged[name] = outputs.claim(getattr(args, name), folder=name == "uncertainty")
    if args.report:
        staged["report"] = outputs.claim(args.report)
        staged["report_pdf"] = outputs.claim(Path(args.report).with_suffix(".pdf"))
    return paths, staged, outputs


def _check_image_names(args: argparse.Namespace) -> None:
    """Image outputs need a file extension the image writer knows; found here, not after the inference."""
    for option, name in (("-o", "output"), ("--uncertainty-map", "uncertainty_map"), ("--brain-mask", "brain_mask")):
        value = getattr(args, name, None)
        if value and not str(value).lower().endswith(IMAGE_SUFFIXES):
            raise CommandError(f"{option} {value}: an image file name needs one of the extensions "
                               f"{', '.join(IMAGE_SUFFIXES)} (e.g. {value}.nii.gz)"
                               + ("; to write every output into a folder, segment a DICOM study with --study"
                                  if option == "-o" else ""))


def _segment_files(args: argparse.Namespace) -> int:
    from ..export import write_summary
    from ..options import SegmentOptions
    from ..pipeline import segment
    from ..provenance import input_record, provenance
    from ..volume import read_volume

    start = time.perf_counter()
    options = SegmentOptions.from_args(args)
    paths, staged, outputs = _preflight(args, options)
    progress = ProgressReport()
    progress(0.0, "reading images")
    images = {key: read_volume(path) for key, path in paths.items()}
    read_seconds = time.perf_counter() - start
    show = FindingsPrinter()
    with outputs:  # everything is put in place at the end, or nothing (failure, Ctrl-C)
        result = segment(images, options.model, options.device, flips=options.flips, progress=progress,
                         clinical=options.clinical, uncertainty=options.uncertainty, force=options.force,
                         on_findings=show)
        progress.close()
        show(result.qa)
        result.timings_s = {"read": read_seconds, **result.timings_s}
        output = Path(args.output)
        summary = labels_summary(result, output, staged["labels"], options.label_convention, paths.values())
        summary.update(secondary_outputs(result, args, options, staged))
        summary["provenance"] = provenance(input_record(paths), options, command=["tumorseg", *getattr(args, "argv", sys.argv[1:])])
        if args.report:
            summary["report"] = _file_report(result, summary, images[result.reference], options, staged, args)
        summary["timings_s"]["total"] = round(time.perf_counter() - start, 2)
        write_summary(summary, staged["summary"])
    log(json.dumps({"output": str(output), "volumes_ml": summary["volumes_ml"]}))
    return 0


def _file_report(result, summary: dict, image, options, staged: dict[str, Path], args) -> dict:
    from ..outputs import report_content, write_report_files

    content = report_content(summary, image, result.labels, result.uncertainty_map(options.uncertainty_map_kind.value))
    write_report_files(content, staged["report"], staged["report_pdf"])
    return {"html": str(args.report), "pdf": str(Path(args.report).with_suffix(".pdf"))}


def _run(args: argparse.Namespace) -> int:
    if args.study:
        if any(getattr(args, key) for key in SEQUENCES):
            raise CommandError("give either --study or the image files (--t1 --t1c --t2 --flair), not both")
        from .study import segment_study_command

        return segment_study_command(args)
    for name in ("study_uid", "assign", "timeline"):
        if getattr(args, name):
            raise CommandError(f"--{name.replace('_', '-')} goes with --study DICOM_FOLDER")
    return _segment_files(args)


def add_command(commands) -> None:
    from ..options import add_arguments

    p = commands.add_parser("segment", help="segment a glioma from T1, T1c, T2 and FLAIR volumes, or a DICOM study")
    for key, label in (("t1", "T1"), ("t1c", "T1 with contrast"), ("t2", "T2"), ("flair", "FLAIR")):
        p.add_argument(f"--{key}", help=f"{label} image: NIfTI, NRRD, MHA or a DICOM series folder")
    p.add_argument("--study", metavar="DICOM_FOLDER", help="a DICOM study (any folder tree): its series are "
                   "classified as T1/T1c/T2/FLAIR/other; -o is then a folder for the label map, summary, DICOM SEG, "
                   "SR, uncertainty map and the report")
    p.add_argument("--study-uid", help="with --study: the study to take when the folder holds several")
    p.add_argument("--assign", nargs="+", metavar="SEQUENCE=SERIES_UID", default=[],
                   help="with --study: override the automatic assignment, e.g. t1c=1.2.840... (or t1c=none)")
    p.add_argument("--timeline", metavar="JSON", help="with --study: the patient's timeline of earlier visits; the "
                   "report shows the follow-up with this visit added (the file itself is left as it is; the output "
                   "folder gets a copy with this visit)")
    p.add_argument("-o", "--output", required=True, help="label map to write, e.g. case_seg.nii.gz (+ case_seg.json); "
                   "with --study, the output folder")
    add_arguments(p)
    p.add_argument("--brain-mask", help="also write the brain mask used (when the brain was extracted)")
    p.add_argument("--uncertainty", metavar="DIR", help="sample the model and write uncertainty maps (entropy, "
                   "mutual information, variance, probabilities) to DIR; scores and volume intervals go in the JSON")
    p.add_argument("--uncertainty-map", help="also write one voxel uncertainty map (0-1) on the reference grid to "
                   "this file: the chosen map when sampling, else the label entropy of the mean probabilities")
    p.add_argument("--report", metavar="HTML", help="also write the clinician's report here (and its PDF beside it); "
                   "with --study it is always written into the output folder")
    p.add_argument("--overwrite", action="store_true", help="replace earlier results at the output paths (inputs are "
                   "never overwritten)")
    p.set_defaults(func=_run)


def run_segment(argv: list[str]) -> int:
    """``tumorseg segment ARGV`` in this process (a batch worker): the same parsing, work and exit status."""
    parser = argparse.ArgumentParser(prog="tumorseg")
    add_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["segment", *argv])
    args.argv = ["segment", *argv]
    return run_parsed(args)
