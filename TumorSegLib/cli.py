"""The ``tumorseg`` command line: segment, evaluate, track, train, demo.

The segmentation options come from :mod:`.options` (one contract with the Slicer module); the work is in
the library; this file parses, reports and maps errors to exit status 2 with one line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

__all__ = ["main", "build_parser"]


class CommandError(Exception):
    """A user error: printed without a traceback, exit status 2."""


def _log(message: str) -> None:
    print(message, flush=True)


def _progress(fraction: float, message: str) -> None:
    # One line per step; the Slicer module parses "[progress NN%] message".
    print(f"[progress {round(100 * fraction):3d}%] {message}", flush=True)


def _summary_of(result, output: Path, convention) -> dict:
    """The label map written with ``convention``'s codes (default: the model's), and its summary record."""
    from .export import write_label_map

    convention = convention or result.model.label_convention
    write_label_map(result.labels, output, convention)
    convention = getattr(convention, "value", convention)
    return {"output": str(output), "label_convention": convention, **result.summary()}


def _segment(args: argparse.Namespace) -> int:
    from .export import json_path, write_summary
    from .options import SegmentOptions
    from .pipeline import segment
    from .volume import read_volume

    start = time.perf_counter()
    options = SegmentOptions.from_args(args)
    paths = {key: getattr(args, key) for key in ("t1", "t1c", "t2", "flair") if getattr(args, key)}
    if not paths:
        raise CommandError("give the input volumes: --t1 --t1c --t2 --flair (at least --t1c or --flair)")
    _progress(0.0, "reading images")
    images = {key: read_volume(path) for key, path in paths.items()}
    read_seconds = time.perf_counter() - start
    result = segment(images, options.model, options.device, flips=options.flips, progress=_progress,
                     clinical=options.clinical, uncertainty=options.uncertainty)
    result.timings_s = {"read": read_seconds, **result.timings_s}
    for finding in result.qa:
        print(f"[warning] {finding['message']}", flush=True)
    output = Path(args.output)
    summary = _summary_of(result, output, options.label_convention)
    summary.update(_secondary_outputs(result, args, options))
    summary["timings_s"]["total"] = round(time.perf_counter() - start, 2)
    write_summary(summary, json_path(output))
    _log(json.dumps({"output": str(output), "volumes_ml": summary["volumes_ml"]}))
    return 0


def _secondary_outputs(result, args: argparse.Namespace, options) -> dict:
    """Brain mask, uncertainty maps and the single uncertainty map, as asked; their entries for the summary."""
    from .export import write_map, write_uncertainty_maps

    entries: dict = {}
    if args.brain_mask and result.brain is not None:
        write_map(result.brain.mask, args.brain_mask, dtype="uint8")
        entries["brain_mask"] = str(args.brain_mask)
    if args.uncertainty:
        entries["uncertainty"] = write_uncertainty_maps(result.uncertainty, args.uncertainty)
    if args.uncertainty_map:
        from .uncertainty import class_probabilities, normalised_entropy

        if result.uncertainty is not None:
            chosen = getattr(result.uncertainty, options.uncertainty_map_kind.value)
        else:  # no sampling: the entropy of the mean probabilities
            chosen = result.labels.with_array(normalised_entropy(class_probabilities(result.probabilities.array)))
        write_map(chosen, args.uncertainty_map)
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
        _progress(0.0, "building the synthetic sample case on the MNI ICBM152 template")
        files = write_synthetic_case(out, case)
    images = {key: read_volume(path) for key, path in files.items() if key != "label"}
    result = segment(images, args.model, args.device, progress=_progress)
    output = out / f"{case}_tumorseg.nii.gz"
    summary = _summary_of(result, output, None)
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
        _log(f"  {key:3s} {names[key]:34s} {value:10.2f}")
    _log(f"Dice against the synthetic ground truth: {agreement}")
    _log(f"Summary: {json_path(output)}")
    return 0


def _training_cases(args: argparse.Namespace) -> tuple[Path, list[str], list[list[str]]]:
    """(cache folder, case names, folds): the cache built when needed, the split read or made once."""
    from .training import make_folds, prepare_cache

    data, out = Path(args.data_dir), Path(args.output)
    cache = Path(args.cache) if args.cache else out / "cache"
    if any(data.glob("*.npz")):  # already a preprocessed cache (e.g. carried to a GPU machine)
        cache = data
        cases = sorted(p.stem for p in data.glob("*.npz") if not p.name.endswith(".partial.npz"))
    else:
        cases = prepare_cache(data, cache, log=_log)
    folds_file = out / "folds.json"
    if folds_file.exists():
        folds = json.loads(folds_file.read_text())["folds"]
        if sorted(sum(folds, [])) != sorted(cases):
            raise CommandError(f"{folds_file} lists other cases than {data}; remove it to make a new split")
    else:
        folds = make_folds(cases, args.folds, args.seed)
        out.mkdir(parents=True, exist_ok=True)
        # Atomic: parallel runs of single folds may all write the (identical) split at once.
        partial = folds_file.with_name(f"folds.json.{os.getpid()}.partial")
        partial.write_text(json.dumps({"seed": args.seed, "k": args.folds, "folds": folds}, indent=2))
        os.replace(partial, folds_file)
    return cache, cases, folds


def _train(args: argparse.Namespace) -> int:
    from .training import TrainConfig, train

    # Checked before the (slow) cache is built.
    if args.fold not in ("all", "every") and not args.fold.isdigit():
        raise CommandError(f"--fold {args.fold}: give a fold index (0, 1, ...), 'all' or 'every'")
    if args.init_filters < 8 or args.init_filters % 8:
        raise CommandError(f"--init-filters {args.init_filters}: give a multiple of 8 (SegResNet normalises "
                           "its features in 8 groups)")
    cache, cases, folds = _training_cases(args)
    config = TrainConfig(init_filters=args.init_filters, patch_size=tuple(args.patch_size), batch_size=args.batch_size,
                         learning_rate=args.learning_rate, max_steps=args.max_steps, time_limit_s=args.time_limit,
                         seed=args.seed, device=args.device, sequence_dropout=args.sequence_dropout)
    if args.fold not in ("all", "every") and int(args.fold) >= len(folds):
        raise CommandError(f"--fold {args.fold}: the split has folds 0..{len(folds) - 1}")
    runs = list(range(len(folds))) + ["all"] if args.fold == "every" else [args.fold]
    for run in runs:
        val_cases = [] if run == "all" else folds[int(run)]
        train_cases = [c for c in cases if c not in val_cases]
        _log(f"[train] run {run}: {len(train_cases)} training, {len(val_cases)} validation cases")
        train(cache, Path(args.output) / f"fold{run}", config, train_cases, val_cases, resume=not args.no_resume,
              log=_log)
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


def _add_train(commands) -> None:
    from .options import Device, choices

    p = commands.add_parser("train", help="train a model on BraTS-format folders (k-fold cross-validation)")
    p.add_argument("data_dir", help="folder of case folders (<case>/<case>_t1.nii.gz ...), or a prepared cache")
    p.add_argument("-o", "--output", default="runs/train", help="output folder (folds.json, fold*/model.pt)")
    p.add_argument("--cache", help="where preprocessed cases are kept (default: OUTPUT/cache)")
    p.add_argument("--folds", type=int, default=5, help="number of cross-validation folds")
    p.add_argument("--fold", default="every", help="fold index to train, 'all' (every case), or 'every' (each fold, then all)")
    p.add_argument("--max-steps", type=int, default=4000)
    p.add_argument("--time-limit", type=float, default=0.0, help="seconds; the schedule ends at this time if sooner")
    p.add_argument("--patch-size", type=int, nargs=3, default=[128, 128, 128])
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--init-filters", type=int, default=8, help="features of the first layer, a multiple of 8")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--sequence-dropout", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=20260)
    p.add_argument("--device", default=Device.AUTO.value, choices=choices(Device))
    p.add_argument("--no-resume", action="store_true", help="start afresh even if a checkpoint exists")
    p.set_defaults(func=_train)


def build_parser() -> argparse.ArgumentParser:
    """The ``tumorseg`` parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="tumorseg", description="Brain tumour segmentation from T1, T1c, T2, FLAIR.")
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (_add_segment, _add_evaluate, _add_track, _add_demo, _add_train):
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .models import WeightsError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CommandError, ValueError, KeyError, FileNotFoundError, WeightsError, RuntimeError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"tumorseg {args.command}: error: {message}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
