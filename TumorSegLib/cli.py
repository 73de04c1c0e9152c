"""The ``tumorseg`` command line: segment, evaluate, track, train, demo.

The segmentation options come from :mod:`.options` (one contract with the Slicer module); the work is in
the library; this file parses, reports and maps errors to exit status 2 with one line.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

__all__ = ["main", "build_parser"]


class CommandError(Exception):
    """A user error: printed without a traceback, exit status 2."""


def _log(message: str) -> None:
    print(message, flush=True)


class _ProgressReport:
    """Progress of a long command: a live bar with the time left on a terminal (tqdm), plain
    ``[progress NN%] step`` lines when the output is piped (the Slicer module parses them), one per change."""

    def __init__(self) -> None:
        self.last: tuple[int, str] | None = None
        self.bar = None
        if sys.stdout.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=100, unit="%", bar_format="{percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")

    def __call__(self, fraction: float, message: str) -> None:
        percent = round(100 * fraction)
        if (percent, message) == self.last:
            return
        self.last = (percent, message)
        if self.bar is None:
            print(f"[progress {percent:3d}%] {message}", flush=True)
            return
        self.bar.n = percent
        self.bar.set_postfix_str(message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()



def _summary_of(result, output: Path, written_to: Path, convention) -> dict:
    """The label map written (to ``written_to``, staged for ``output``) with ``convention``'s codes (default: the
    model's), and its summary record."""
    from .export import write_label_map

    convention = convention or result.model.label_convention
    write_label_map(result.labels, written_to, convention)
    convention = getattr(convention, "value", convention)
    return {"output": str(output), "label_convention": convention, **result.summary()}


def _preflight(args: argparse.Namespace, options) -> tuple[dict[str, Path], dict[str, Path], object]:
    """Everything that can be checked before any image is read, within seconds: the inputs exist, the model and
    its weights' SHA-256, the device, and every output path (never an input, never an earlier result unless
    --overwrite, in a folder that can be written). Returns (inputs, staged outputs, the outputs' transaction)."""
    from .export import Outputs, json_path
    from .inference import resolve_device
    from .models import get_model, weights_paths

    paths = {key: Path(getattr(args, key)) for key in ("t1", "t1c", "t2", "flair") if getattr(args, key)}
    if not paths:
        raise CommandError("give the input volumes: --t1 --t1c --t2 --flair (at least --t1c or --flair)")
    for key, path in paths.items():
        if not path.exists():
            raise FileNotFoundError(f"--{key} {path}: file not found")
    weights_paths(get_model(options.model))  # unknown id, missing or altered weights: now, not after the work
    resolve_device(options.device)
    outputs = Outputs(inputs=paths.values(), overwrite=args.overwrite)
    staged = {"labels": outputs.claim(args.output), "summary": outputs.claim(json_path(args.output))}
    for name in ("uncertainty", "uncertainty_map", "brain_mask"):
        if getattr(args, name):
            staged[name] = outputs.claim(getattr(args, name), folder=name == "uncertainty")
    return paths, staged, outputs


def _segment(args: argparse.Namespace) -> int:
    from .export import write_summary
    from .options import SegmentOptions
    from .pipeline import segment
    from .provenance import input_record, provenance
    from .volume import read_volume

    start = time.perf_counter()
    options = SegmentOptions.from_args(args)
    paths, staged, outputs = _preflight(args, options)
    progress = _ProgressReport()
    progress(0.0, "reading images")
    images = {key: read_volume(path) for key, path in paths.items()}
    read_seconds = time.perf_counter() - start
    printed: list[dict] = []

    def show(findings: list[dict]) -> None:  # each finding once, as soon as it is known
        for finding in findings[len(printed):]:
            print(f"[warning] {finding['message']}", flush=True)
        printed[:] = findings

    with outputs:  # everything is put in place at the end, or nothing (failure, Ctrl-C)
        result = segment(images, options.model, options.device, flips=options.flips, progress=progress,
                         clinical=options.clinical, uncertainty=options.uncertainty, force=options.force,
                         on_findings=show)
        progress.close()
        show(result.qa)
        result.timings_s = {"read": read_seconds, **result.timings_s}
        output = Path(args.output)
        summary = _summary_of(result, output, staged["labels"], options.label_convention)
        summary.update(_secondary_outputs(result, args, options, staged))
        summary["provenance"] = provenance(input_record(paths), options, command=["tumorseg", *sys.argv[1:]])
        summary["timings_s"]["total"] = round(time.perf_counter() - start, 2)
        write_summary(summary, staged["summary"])
    _log(json.dumps({"output": str(output), "volumes_ml": summary["volumes_ml"]}))
    return 0


def _secondary_outputs(result, args: argparse.Namespace, options, staged: dict[str, Path]) -> dict:
    """Brain mask, uncertainty maps and the single uncertainty map, as asked; their entries for the summary."""
    from .export import write_map, write_uncertainty_maps

    entries: dict = {}
    if args.brain_mask and result.brain is not None:
        write_map(result.brain.mask, staged["brain_mask"], dtype="uint8")
        entries["brain_mask"] = str(args.brain_mask)
    if args.uncertainty:
        entries["uncertainty"] = write_uncertainty_maps(result.uncertainty, staged["uncertainty"])
    if args.uncertainty_map:
        write_map(result.uncertainty_map(options.uncertainty_map_kind.value), staged["uncertainty_map"])
        entries["uncertainty_map"] = str(args.uncertainty_map)
    return entries


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_case, evaluate_cases, reliability_png

    predictions, truths = [Path(p) for p in args.pred], [Path(p) for p in args.gt]
    folders = [Path(f) for f in args.uncertainty] if args.uncertainty else []
    if len(predictions) != len(truths):
        raise CommandError(f"--pred has {len(predictions)} files but --gt has {len(truths)}: give one ground truth "
                           "per prediction, in the same order")
    if folders and len(folders) != len(predictions):
        raise CommandError(f"--uncertainty has {len(folders)} folders for {len(predictions)} cases: give one folder "
                           "per case (as 'tumorseg segment --uncertainty DIR' wrote it), in the --pred order")
    if len(predictions) == 1:
        result, curves = evaluate_case(predictions[0], truths[0], not args.no_lesion, folders[0] if folders else None)
        if args.reliability and curves:
            result["uncertainty"]["reliability_diagram"] = str(reliability_png(curves, args.reliability))
    else:
        result = evaluate_cases(predictions, truths, folders, not args.no_lesion, args.reliability)
    text = json.dumps(result, indent=2)
    if args.output:
        Path(args.output).write_text(text)
    print(text)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .export import json_path, write_summary
    from .labels import region_masks, to_internal_labels
    from .metrics import dice
    from .pipeline import segment
    from .sequences import FILE_SUFFIXES
    from .synthetic import write_synthetic_case
    from .volume import read_volume

    out = Path(args.output)
    case = "TumorSeg_Synthetic_1"
    suffixes = {**{key: names[0] for key, names in FILE_SUFFIXES.items()}, "label": "seg"}
    files = {key: out / case / f"{case}_{suffix}.nii.gz" for key, suffix in suffixes.items()}
    if not all(path.exists() for path in files.values()):
        print("[progress   0%] building the synthetic sample case on the MNI ICBM152 template", flush=True)
        files = write_synthetic_case(out, case)
    images = {key: read_volume(path) for key, path in files.items() if key != "label"}
    progress = _ProgressReport()
    result = segment(images, args.model, args.device, progress=progress)
    progress.close()
    output = out / f"{case}_tumorseg.nii.gz"
    summary = _summary_of(result, output, output, None)
    truth = region_masks(to_internal_labels(read_volume(files["label"]).array))
    predicted = region_masks(result.labels.array)
    agreement = {region.value: round(dice(predicted[region], truth[region]), 3) for region in truth}
    summary["dice_vs_synthetic_truth"] = agreement
    write_summary(summary, json_path(output))
    _log(f"\nSegmentation of the synthetic sample: {output}")
    _log(f"Model {result.model.id} on {result.device}, {sum(result.timings_s.values()):.1f} s")
    _log("Region                                   Volume (mL)")
    names = {"NCR": "necrotic / non-enhancing core", "ED": "oedema", "ET": "enhancing tumour",
             "TC": "tumour core (NCR+ET)", "WT": "whole tumour (NCR+ED+ET)"}
    for key, value in summary["volumes_ml"].items():
        _log(f"  {key:3s} {names[key]:34s} " + (f"{value:10.2f}" if value is not None else f"{'n/a':>10s}"))
    _log(f"Dice against the synthetic ground truth: {agreement}")
    _log(f"Summary: {json_path(output)}")
    return 0


def _track(args: argparse.Namespace) -> int:
    from .longitudinal import format_rows, run_track

    result = run_track(args.timeline, args.output, register_visits=not args.no_register,
                       tolerance_mm=args.tolerance_mm, primary=args.primary,
                       save_measurements=args.save_measurements)
    print(json.dumps(result["rows"], indent=2, default=str) if args.json else format_rows(result["rows"]))
    _log(f"table: {result['table']}\nplot: {result['plot']}")
    return 0


def _add_segment(commands) -> None:
    from .options import add_arguments

    p = commands.add_parser("segment", help="segment a glioma from T1, T1c, T2 and FLAIR volumes")
    for key, label in (("t1", "T1"), ("t1c", "T1 with contrast"), ("t2", "T2"), ("flair", "FLAIR")):
        p.add_argument(f"--{key}", help=f"{label} image: NIfTI, NRRD, MHA or a DICOM series folder")
    p.add_argument("-o", "--output", required=True, help="label map to write, e.g. case_seg.nii.gz (+ case_seg.json)")
    add_arguments(p)
    p.add_argument("--brain-mask", help="also write the brain mask used (when the brain was extracted)")
    p.add_argument("--uncertainty", metavar="DIR", help="sample the model and write uncertainty maps (entropy, "
                   "mutual information, variance, probabilities) to DIR; scores and volume intervals go in the JSON")
    p.add_argument("--uncertainty-map", help="also write one voxel uncertainty map (0-1) on the reference grid to "
                   "this file: the chosen map when sampling, else the label entropy of the mean probabilities")
    p.add_argument("--overwrite", action="store_true", help="replace earlier results at the output paths (inputs are "
                   "never overwritten)")
    p.set_defaults(func=_segment)


def _add_evaluate(commands) -> None:
    p = commands.add_parser("evaluate", help="compare label maps with ground truths (Dice, HD95, ...): one case, "
                            "or several paired in order (per-case metrics, their mean, uncertainty vs error)")
    p.add_argument("--pred", required=True, nargs="+", help="predicted label map(s), one per case")
    p.add_argument("--gt", required=True, nargs="+",
                   help="ground-truth label map(s) (BraTS 2018 or 2023 codes), in the order of --pred")
    p.add_argument("--no-lesion", action="store_true", help="skip the lesion-wise metrics")
    p.add_argument("--uncertainty", metavar="DIR", nargs="+", help="also score the uncertainty maps that "
                   "'tumorseg segment --uncertainty DIR' wrote, one folder per case in the order of --pred: ECE "
                   "per region, error-detection AUROC; with 3 or more cases, also the correlation of each "
                   "region's uncertainty score with its 1 - Dice")
    p.add_argument("--reliability", metavar="PNG", help="with --uncertainty: write the reliability diagram "
                   "(of all cases together when there are several)")
    p.add_argument("-o", "--output", help="also write the JSON here")
    p.set_defaults(func=_evaluate)


def _add_track(commands) -> None:
    p = commands.add_parser("track", help="follow one patient over visits: volumes, change, RANO 2.0 category "
                            "(imaging only), plot")
    p.add_argument("timeline", help="timeline JSON file (schema tumorseg-timeline, version 1)")
    p.add_argument("-o", "--output", default=None,
                   help="folder for timeline_table.csv, timeline_volumes.png, transforms/ (default: the timeline's)")
    p.add_argument("--no-register", action="store_true", help="trust scanner coordinates; skip rigid registration")
    p.add_argument("--tolerance-mm", type=float, default=5.0,
                   help="a lesion farther than this from earlier enhancing tumour is new")
    p.add_argument("--primary", choices=["bidimensional", "volumetric"], default="bidimensional",
                   help="method of the 'category' column")
    p.add_argument("--save-measurements", action="store_true", help="write measurements back into the timeline")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a text table")
    p.set_defaults(func=_track)


def _add_demo(commands) -> None:
    from .options import Device, choices

    p = commands.add_parser("demo", help="segment the built-in synthetic sample case")
    p.add_argument("-o", "--output", default="demo_output")
    p.add_argument("--model", default=None)
    p.add_argument("--device", default=Device.AUTO.value, choices=choices(Device))
    p.set_defaults(func=_demo)


def build_parser() -> argparse.ArgumentParser:
    """The ``tumorseg`` parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="tumorseg", description="Brain tumour segmentation from T1, T1c, T2, FLAIR.")
    commands = parser.add_subparsers(dest="command", required=True)
    from .training.command import add_train_command

    for add in (_add_segment, _add_evaluate, _add_track, _add_demo, add_train_command):
        add(commands)
    return parser


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM (a cancel) cleans up as Ctrl-C does


def main(argv: list[str] | None = None) -> int:
    """Run one command; user errors print one line and give 2, an interruption (Ctrl-C, SIGTERM) 130."""
    import signal

    from .models import WeightsError

    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _interrupt) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        return args.func(args)
    except (CommandError, ValueError, KeyError, OSError, WeightsError, RuntimeError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"tumorseg {args.command}: error: {message}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print(f"tumorseg {args.command}: interrupted; nothing partial was left behind", file=sys.stderr, flush=True)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
