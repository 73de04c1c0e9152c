"""The ``tumorseg`` command line: segment, evaluate, train, demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["main"]


class CommandError(Exception):
    """A user error: printed without a traceback, exit status 2."""


def _log(message: str) -> None:
    print(message, flush=True)


def _progress(fraction: float, message: str) -> None:
    # One line per step; the Slicer module parses "[progress NN%] message".
    print(f"[progress {round(100 * fraction):3d}%] {message}", flush=True)


def _json_path(output: Path) -> Path:
    name = output.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"):
        if name.endswith(suffix):
            return output.with_name(name[: -len(suffix)] + ".json")
    return output.with_name(name + ".json")


def _write_segmentation(result, output: Path, convention: str | None) -> dict:
    from .labels import from_internal_labels
    from .volume import write_volume

    convention = convention or result.model.label_convention
    write_volume(result.labels.with_array(from_internal_labels(result.labels.array, convention)), output)
    summary = {"output": str(output), "label_convention": convention, **result.summary()}
    _json_path(output).write_text(json.dumps(summary, indent=2))
    return summary


def _segment(args: argparse.Namespace) -> int:
    import time

    from .pipeline import segment
    from .volume import read_volume

    start = time.perf_counter()
    paths = {key: getattr(args, key) for key in ("t1", "t1c", "t2", "flair") if getattr(args, key)}
    if not paths:
        raise CommandError("give the input volumes: --t1 --t1c --t2 --flair (at least --t1c or --flair)")
    _progress(0.0, "reading images")
    images = {key: read_volume(path) for key, path in paths.items()}
    read_seconds = time.perf_counter() - start
    from .pipeline import ClinicalOptions, UncertaintyOptions

    clinical = ClinicalOptions(args.reference, args.register, args.skull_strip, args.n4, args.registration_kind)
    sampling = UncertaintyOptions(args.uncertainty_methods, args.uncertainty_samples, args.time_budget) \
        if args.uncertainty else None
    result = segment(images, args.model, args.device, flips=args.flips, progress=_progress, clinical=clinical,
                     uncertainty=sampling)
    result.timings_s = {"read": read_seconds, **result.timings_s}
    for finding in result.qa:
        print(f"[warning] {finding['message']}", flush=True)
    output = Path(args.output)
    summary = _write_segmentation(result, output, args.label_convention)
    if args.brain_mask and result.brain is not None:
        from .volume import write_volume

        write_volume(result.brain.mask.with_array(result.brain.mask.array.astype("uint8")), args.brain_mask)
        summary["brain_mask"] = str(args.brain_mask)
    if args.uncertainty:
        from .uncertainty import write_uncertainty

        summary["uncertainty"] = write_uncertainty(result.uncertainty, args.uncertainty)
    if args.uncertainty_map:
        from .uncertainty import class_probabilities, normalised_entropy
        from .volume import write_volume

        if result.uncertainty is not None:
            chosen = getattr(result.uncertainty, args.uncertainty_map_kind)
        else:  # no sampling: the entropy of the mean probabilities
            chosen = result.labels.with_array(normalised_entropy(class_probabilities(result.probabilities.array)))
        write_volume(chosen.with_array(chosen.array.astype("float32")), args.uncertainty_map)
        summary["uncertainty_map"] = str(args.uncertainty_map)
    summary["timings_s"]["total"] = round(time.perf_counter() - start, 2)
    _json_path(output).write_text(json.dumps(summary, indent=2))
    _log(json.dumps({"output": str(output), "volumes_ml": summary["volumes_ml"]}))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    predictions, truths = [Path(p) for p in args.pred], [Path(p) for p in args.gt]
    folders = [Path(f) for f in args.uncertainty] if args.uncertainty else []
    if len(predictions) != len(truths):
        raise CommandError(f"--pred has {len(predictions)} files but --gt has {len(truths)}: give one ground truth "
                           "per prediction, in the same order")
    if folders and len(folders) != len(predictions):
        raise CommandError(f"--uncertainty has {len(folders)} folders for {len(predictions)} cases: give one folder "
                           "per case (as 'tumorseg segment --uncertainty DIR' wrote it), in the --pred order")
    if len(predictions) == 1:
        metrics, curves = _evaluate_case(predictions[0], truths[0], not args.no_lesion,
                                         folders[0] if folders else None)
        if args.reliability and curves:
            metrics["uncertainty"]["reliability_diagram"] = str(_reliability_png(curves, args.reliability))
        result = metrics
    else:
        result = _evaluate_cases(predictions, truths, folders, not args.no_lesion, args.reliability)
    text = json.dumps(result, indent=2)
    if args.output:
        Path(args.output).write_text(text)
    print(text)
    return 0


def _evaluate_case(pred: Path, gt: Path, lesion_metrics: bool, uncertainty: Path | None) -> tuple[dict, dict]:
    """Metrics of one prediction against its ground truth, and its neighbourhood reliability curves (if scored)."""
    from .labels import to_internal_labels
    from .metrics import evaluate_labels
    from .volume import read_volume, same_grid

    prediction, truth = read_volume(pred), read_volume(gt)
    if not same_grid(prediction, truth, tolerance_mm=0.01):
        raise CommandError(f"--pred {pred} (shape {prediction.shape}, spacing {prediction.spacing}) and --gt "
                           f"{gt} (shape {truth.shape}, spacing {truth.spacing}) are not on the same grid")
    try:
        predicted_labels = to_internal_labels(prediction.array)
        true_labels = to_internal_labels(truth.array)
    except ValueError as error:
        raise CommandError(f"not a tumour label map: {error}") from error
    metrics = evaluate_labels(predicted_labels, true_labels, truth.spacing, lesion_metrics=lesion_metrics)
    curves: dict = {}
    if uncertainty is not None:
        metrics["uncertainty"], curves = _evaluate_uncertainty(uncertainty, predicted_labels, true_labels, truth)
    return metrics, curves


def _evaluate_cases(predictions: list[Path], truths: list[Path], folders: list[Path], lesion_metrics: bool,
                    reliability_png: str | None) -> dict:
    """Per-case metrics, their mean per region, and (with uncertainty folders) whether each region's
    uncertainty score rises with its error (1 - Dice) across the cases."""
    import numpy as np

    scores = _uncertainty_scores(folders)  # read first: a missing file should not wait for every case's metrics
    cases, merged = [], {}
    for index, (pred, gt) in enumerate(zip(predictions, truths)):
        metrics, curves = _evaluate_case(pred, gt, lesion_metrics, folders[index] if folders else None)
        cases.append({"pred": str(pred), "gt": str(gt), **metrics})
        for region, curve in curves.items():  # reliability sums merge exactly across cases
            merged[region] = merged[region] + curve if region in merged else curve
    regions = [key for key in cases[0] if key not in ("pred", "gt", "uncertainty")]
    mean = {region: {name: float(np.mean([case[region][name] for case in cases])) for name in cases[0][region]}
            for region in regions}
    result: dict = {"cases": cases, "mean": mean}
    if folders:
        result["uncertainty_vs_error"] = _uncertainty_vs_error(scores, cases, regions)
        if reliability_png:
            result["reliability_diagram"] = str(_reliability_png(merged, reliability_png, len(cases)))
    return result


def _uncertainty_scores(folders: list[Path]) -> list[dict[str, float]]:
    """Each folder's per-region uncertainty score ({region: score}) from its uncertainty.json."""
    scores = []
    for folder in folders:
        path = folder / "uncertainty.json"
        if not path.exists():
            raise CommandError(f"{path} not found: --uncertainty takes the folders written by "
                               "'tumorseg segment --uncertainty DIR'")
        try:
            scores.append({region: float(record["score"])
                           for region, record in json.loads(path.read_text())["regions"].items()})
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise CommandError(f"{path} has no per-region uncertainty scores ('regions' -> region -> 'score'): "
                               f"{error!r}") from error
    return scores


def _uncertainty_vs_error(scores: list[dict[str, float]], cases: list[dict], regions: list[str]) -> dict:
    """Per region: correlation of the cases' uncertainty score with 1 - Dice."""
    import math

    from .calibration import uncertainty_error_correlation

    out: dict = {}
    for region in regions:
        if len(cases) < 3:  # a correlation of two points is always ±1: report why there is none
            out[region] = {"cases": len(cases), "note": f"needs at least 3 cases, got {len(cases)}"}
            continue
        correlation = uncertainty_error_correlation([s[region] for s in scores],
                                                    [case[region]["dice"] for case in cases])
        # NaN (a constant score or Dice over the cases) is not JSON: written as null.
        out[region] = {key: (None if isinstance(value, float) and math.isnan(value) else value)
                       for key, value in correlation.items()}
        if out[region]["spearman"] is None:
            out[region]["note"] = "the score or the Dice is the same in every case: no correlation"
    return out


def _reliability_png(curves: dict, path: str, cases: int = 1) -> Path:
    from .calibration import reliability_diagram

    title = "Reliability, tumour neighbourhood" + (f" ({cases} cases)" if cases > 1 else "")
    return reliability_diagram(curves, path, title)


def _evaluate_uncertainty(folder: Path, predicted, truth_labels, truth) -> tuple[dict, dict]:
    """ECE per region and error-detection AUROC of the entropy (and of the mutual information where that
    map was written), over the whole image and the tumour neighbourhood (predicted ∪ true tumour + 5 mm),
    from the maps ``tumorseg segment --uncertainty`` wrote. Returns (scores, neighbourhood curves by region)."""
    import numpy as np

    from .calibration import error_detection_auroc, error_roi, region_reliability
    from .volume import read_volume, same_grid

    maps = {}
    required = ("probability_WT", "probability_TC", "probability_ET", "entropy")
    for name in (*required, "mutual_information"):
        path = folder / f"{name}.nii.gz"
        if not path.exists():
            if name not in required:  # optional: write_uncertainty may have been given a subset of maps
                continue
            raise CommandError(f"{path} not found: --uncertainty takes the folder written by "
                               "'tumorseg segment --uncertainty DIR'")
        maps[name] = read_volume(path)
        if not same_grid(maps[name], truth, tolerance_mm=0.01):
            raise CommandError(f"{path} is not on the grid of --gt")
    probabilities = np.stack([maps[f"probability_{r}"].array for r in ("WT", "TC", "ET")])
    neighbourhood = error_roi(predicted, truth_labels, truth.spacing)
    out: dict = {"ece": {}, "error_auroc_entropy": {}}
    # Mutual information is the epistemic part: does model disagreement alone point at the errors?
    auroc_maps = {"error_auroc_entropy": "entropy"}
    if "mutual_information" in maps:
        out["error_auroc_mutual_information"] = {}
        auroc_maps["error_auroc_mutual_information"] = "mutual_information"
    curves = {}
    for scope, mask in (("image", None), ("neighbourhood", neighbourhood)):
        for region, curve in region_reliability(probabilities, truth_labels, mask).items():
            out["ece"].setdefault(region.value, {})[scope] = round(float(curve.ece), 4)
            if scope == "neighbourhood":
                curves[region.value] = curve
        for key, name in auroc_maps.items():
            out[key][scope] = round(float(error_detection_auroc(maps[name].array, predicted, truth_labels, mask)), 4)
    return out, curves


def _demo(args: argparse.Namespace) -> int:
    from .labels import region_masks, to_internal_labels
    from .metrics import dice
    from .pipeline import segment
    from .synthetic import write_synthetic_case
    from .volume import read_volume

    out = Path(args.output)
    case = "TumorSeg_Synthetic_1"
    folder = out / case
    suffixes = {"t1": "t1", "t1c": "t1ce", "t2": "t2", "flair": "flair", "label": "seg"}
    files = {key: folder / f"{case}_{suffix}.nii.gz" for key, suffix in suffixes.items()}
    if not all(path.exists() for path in files.values()):
        _progress(0.0, "building the synthetic sample case on the MNI ICBM152 template")
        files = write_synthetic_case(out, case)
    images = {key: read_volume(path) for key, path in files.items() if key != "label"}
    result = segment(images, args.model, args.device, progress=_progress)
    output = out / f"{case}_tumorseg.nii.gz"
    summary = _write_segmentation(result, output, None)
    truth = region_masks(to_internal_labels(read_volume(files["label"]).array))
    predicted = region_masks(result.labels.array)
    agreement = {region.value: round(dice(predicted[region], truth[region]), 3) for region in truth}
    summary["dice_vs_synthetic_truth"] = agreement
    _json_path(output).write_text(json.dumps(summary, indent=2))
    _log(f"\nSegmentation of the synthetic sample: {output}")
    _log(f"Model {result.model.id} on {result.device}, {sum(result.timings_s.values()):.1f} s")
    _log("Region                                   Volume (mL)")
    names = {"NCR": "necrotic / non-enhancing core", "ED": "oedema", "ET": "enhancing tumour",
             "TC": "tumour core (NCR+ET)", "WT": "whole tumour (NCR+ED+ET)"}
    for key, value in summary["volumes_ml"].items():
        _log(f"  {key:3s} {names[key]:34s} {value:10.2f}")
    _log(f"Dice against the synthetic ground truth: {agreement}")
    _log(f"Summary: {_json_path(output)}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from .training import TrainConfig, make_folds, prepare_cache, train

    # Checked before the (slow) cache is built.
    if args.fold not in ("all", "every") and not args.fold.isdigit():
        raise CommandError(f"--fold {args.fold}: give a fold index (0, 1, ...), 'all' or 'every'")
    if args.init_filters < 8 or args.init_filters % 8:
        raise CommandError(f"--init-filters {args.init_filters}: give a multiple of 8 (SegResNet normalises "
                           "its features in 8 groups)")
    data = Path(args.data_dir)
    out = Path(args.output)
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
    config = TrainConfig(init_filters=args.init_filters, patch_size=tuple(args.patch_size), batch_size=args.batch_size,
                         learning_rate=args.learning_rate, max_steps=args.max_steps, time_limit_s=args.time_limit,
                         seed=args.seed, device=args.device, sequence_dropout=args.sequence_dropout)
    if args.fold not in ("all", "every") and int(args.fold) >= len(folds):
        raise CommandError(f"--fold {args.fold}: the split has folds 0..{len(folds) - 1}")
    runs = list(range(len(folds))) + ["all"] if args.fold == "every" else [args.fold]
    for run in runs:
        if run == "all":
            train_cases, val_cases = cases, []
        else:
            k = int(run)
            val_cases = folds[k]
            train_cases = [c for c in cases if c not in val_cases]
        _log(f"[train] run {run}: {len(train_cases)} training, {len(val_cases)} validation cases")
        train(cache, out / f"fold{run}", config, train_cases, val_cases, resume=not args.no_resume, log=_log)
    return 0


def _track(args: argparse.Namespace) -> int:
    from .longitudinal import format_rows, run_track

    result = run_track(args.timeline, args.output, register_visits=not args.no_register,
                       tolerance_mm=args.tolerance_mm, primary=args.primary,
                       save_measurements=args.save_measurements)
    print(json.dumps(result["rows"], indent=2, default=str) if args.json else format_rows(result["rows"]))
    _log(f"table: {result['table']}\nplot: {result['plot']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .registration import TRANSFORM_KINDS  # numpy-only: keeps --help fast
    parser = argparse.ArgumentParser(prog="tumorseg", description="Brain tumour segmentation from T1, T1c, T2, FLAIR.")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("segment", help="segment a glioma from T1, T1c, T2 and FLAIR volumes")
    for key, label in (("t1", "T1"), ("t1c", "T1 with contrast"), ("t2", "T2"), ("flair", "FLAIR")):
        p.add_argument(f"--{key}", help=f"{label} image: NIfTI, NRRD, MHA or a DICOM series folder")
    p.add_argument("-o", "--output", required=True, help="label map to write, e.g. case_seg.nii.gz (+ case_seg.json)")
    p.add_argument("--model", default=None, help="registry id (default: the registry's default model)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--flips", type=int, default=1, help="test-time flip passes per model, 1-8 (default 1)")
    p.add_argument("--reference", choices=["t1", "t1c", "t2", "flair"],
                   help="sequence whose grid the result is written on (default: T1c, else FLAIR, T2, T1)")
    p.add_argument("--register", choices=["auto", "on", "off"], default="auto",
                   help="co-register sequences onto the reference: auto = when on another grid or not aligned")
    p.add_argument("--registration-kind", choices=list(TRANSFORM_KINDS), default="rigid",
                   help="rigid (default) or affine (adds scaling and shear, e.g. scans from another scanner)")
    p.add_argument("--skull-strip", choices=["auto", "on", "off"], default="auto",
                   help="brain extraction (MNI template): auto = when the reference is not skull-stripped")
    p.add_argument("--n4", action="store_true", help="N4 bias-field correction of every sequence")
    p.add_argument("--brain-mask", help="also write the brain mask used (when the brain was extracted)")
    p.add_argument("--uncertainty", metavar="DIR", help="sample the model and write uncertainty maps (entropy, "
                   "mutual information, variance, probabilities) to DIR; scores and volume intervals go in the JSON")
    p.add_argument("--uncertainty-methods", default="ensemble,flips",
                   help="comma-separated: ensemble, flips, intensity, affine, dropout (default: ensemble,flips)")
    p.add_argument("--uncertainty-samples", type=int, help="number of samples (default 12)")
    p.add_argument("--time-budget", type=float, help="seconds for uncertainty sampling, on any device: sampling "
                   "stops when the next sample would not fit (at least 2 samples always run)")
    p.add_argument("--uncertainty-map", help="also write one voxel uncertainty map (0-1) on the reference grid to "
                   "this file: the chosen map when sampling, else the label entropy of the mean probabilities")
    p.add_argument("--uncertainty-map-kind", default="entropy", choices=["entropy", "mutual_information"],
                   help="which map --uncertainty-map writes when sampling")
    p.add_argument("--label-convention", choices=["brats2018", "brats2023"],
                   help="codes of the written label map (default: the model's; brats2018 = 1/2/4)")
    p.set_defaults(func=_segment)

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

    p = commands.add_parser("demo", help="segment the built-in synthetic sample case")
    p.add_argument("-o", "--output", default="demo_output")
    p.add_argument("--model", default=None)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=_demo)

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
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--no-resume", action="store_true", help="start afresh even if a checkpoint exists")
    p.set_defaults(func=_train)
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
