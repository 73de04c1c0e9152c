"""``tumorseg track``: follow one patient over visits (followed lesions, change, RANO 2.0 category, plot), from a
timeline file or straight from a folder of visits (segmenting the visits that need it)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import CommandError, FindingsPrinter, ProgressReport, check_model_and_device, labels_summary, log

__all__ = ["add_command"]


def _pairs(items: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        visit, sep, value = item.rpartition("=")
        if not sep or not visit or not value:
            raise CommandError(f"{option} {item}: write VISIT=VALUE (the visit's id, as in the timeline)")
        pairs[visit] = value
    return pairs


def _apply_clinical_inputs(timeline, args: argparse.Namespace) -> bool:
    """Record the clinical inputs given on the command line in the timeline; returns whether any was given."""
    from ..longitudinal import Assessment, ClinicalStatus, SteroidChange, parse_date

    changed = False
    for option, field, kind in (("--steroids", "steroids", SteroidChange),
                                ("--clinical-status", "clinical_status", ClinicalStatus)):
        for visit, value in _pairs(getattr(args, field), option).items():
            try:
                setattr(timeline.get(visit), field, kind(value))
            except ValueError:
                raise CommandError(f"{option} {visit}={value}: use one of {[k.value for k in kind]}") from None
            changed = True
    for visit in args.new_baseline:
        timeline.get(visit).new_baseline = changed = True
    if args.baseline:
        timeline.get(args.baseline)
        timeline.baseline_id, changed = args.baseline, True
    if args.assessment:
        timeline.assessment, changed = Assessment(args.assessment), True
    if args.rt_end:
        timeline.radiotherapy_end, changed = parse_date(args.rt_end), True
    return changed


def _visit_segmenter(options):
    """Segments a visit folder that has no segmentation (DICOM study or image files) into its output folder."""
    from ..export import Outputs, write_summary
    from ..longitudinal.visits import read_visit
    from ..pipeline import segment
    from ..provenance import input_record, provenance
    from ..volume import read_volume
    from .study import LABELS_FILE, SUMMARY_FILE, plan_study, segment_study

    def run(visit, target: Path):
        log(f"[track] segmenting visit {visit.name}")
        outputs = Outputs()
        staged = outputs.claim(target, folder=True)
        with outputs:
            if visit.kind == "study":
                segment_study(plan_study(visit.folder, None, []), options, staged)
            else:
                progress, show = ProgressReport(), FindingsPrinter()
                result = segment({key: read_volume(path) for key, path in visit.images.items()}, options.model,
                                 options.device, progress=progress, clinical=options.clinical, force=options.force,
                                 on_findings=show)
                progress.close()
                staged.mkdir(parents=True)
                summary = labels_summary(result, target / LABELS_FILE, staged / LABELS_FILE, options.label_convention)
                summary["output"] = LABELS_FILE
                summary["provenance"] = provenance(input_record(visit.images), options)
                write_summary(summary, staged / SUMMARY_FILE)
        return read_visit(target)

    return run


def _run(args: argparse.Namespace) -> int:
    from ..longitudinal import Timeline, build_timeline, format_rows, run_track
    from ..options import SegmentOptions

    source = Path(args.input)
    if source.is_dir():
        if not args.output:
            raise CommandError(f"{source} is a folder of visits: give -o OUT for the timeline, segmentations and table")
        options = SegmentOptions.from_args(args)
        check_model_and_device(options)
        timeline = build_timeline(source, args.output, _visit_segmenter(options), args.patient_id)
    elif source.is_file():
        timeline = Timeline.load(source)
    else:
        raise FileNotFoundError(f"{source}: no such timeline file or folder of visits")
    if _apply_clinical_inputs(timeline, args):
        timeline.save()
    result = run_track(timeline.path, args.output, register_visits=not args.no_register,
                       tolerance_mm=args.tolerance_mm, primary=args.primary, save_measurements=args.save_measurements)
    for finding in result["qa"]:
        print(f"[warning] {finding['message']}", flush=True)
    print(json.dumps(result["rows"], indent=2, default=str) if args.json else format_rows(result["rows"]))
    log(f"timeline: {timeline.path}\ntable: {result['table']} (and {result['json']})\nlesions: "
        f"{result['lesion_table']}\nplot: {result['plot']}")
    return 0


def add_command(commands) -> None:
    from ..longitudinal import Assessment, ClinicalStatus, SteroidChange
    from ..options import add_arguments

    p = commands.add_parser("track", help="follow one patient over visits: followed lesions, change, RANO 2.0 "
                            "category (imaging only), plot; from a timeline or a folder of visits")
    p.add_argument("input", help="a timeline JSON file, or a folder with one sub-folder per visit (a DICOM study, "
                   "image files, or an earlier TumorSeg result; dates from DICOM or the folder name)")
    p.add_argument("-o", "--output", default=None, help="folder for the table (CSV, JSON), lesion list, plot, "
                   "transforms/ (default: the timeline's); with a folder of visits also timeline.json and visits/")
    p.add_argument("--assessment", choices=[a.value for a in Assessment], help="follow enhancing disease "
                   "(default) or non-enhancing T2/FLAIR disease (lower-grade, IDH-mutant); kept in the timeline")
    p.add_argument("--rt-end", metavar="DATE", help="end of radiotherapy: progression within 12 weeks after it "
                   "needs a confirmation scan")
    p.add_argument("--baseline", metavar="VISIT", help="the baseline visit (default: the earliest)")
    p.add_argument("--new-baseline", metavar="VISIT", nargs="+", default=[], help="visits where a new series "
                   "starts (e.g. a new line of therapy after progression)")
    p.add_argument("--steroids", metavar="VISIT=" + "|".join(s.value for s in SteroidChange), nargs="+", default=[],
                   help="steroid dose vs baseline at a visit")
    p.add_argument("--clinical-status", metavar="VISIT=" + "|".join(c.value for c in ClinicalStatus), nargs="+",
                   default=[], help="neurological status at a visit")
    p.add_argument("--patient-id", help="with a folder of visits: the patient id (default: DICOM PatientID)")
    p.add_argument("--no-register", action="store_true", help="trust scanner coordinates; skip rigid registration "
                   "(repositioning can then make a lesion look new)")
    p.add_argument("--tolerance-mm", type=float, default=5.0,
                   help="a lesion within this distance of an earlier one is that lesion; farther, it is new")
    p.add_argument("--primary", choices=["bidimensional", "volumetric"], default="bidimensional",
                   help="method of the 'category' column")
    p.add_argument("--save-measurements", action="store_true", help="write measurements back into the timeline")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a text table")
    add_arguments(p)  # how visits that need segmenting are segmented
    p.set_defaults(func=_run, uncertainty=None)
