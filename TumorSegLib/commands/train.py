"""The ``tumorseg train`` subcommand: k-fold training on BraTS-format folders (or a prepared cache).

User errors are ``ValueError`` (the command line prints them in one line, exit status 2).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import log

__all__ = ["add_command"]


def _write_split(path: Path, split: dict) -> None:
    from ..export import atomic_write

    # Atomic: parallel runs of single folds may all write the (identical) split at once.
    atomic_write(path, lambda partial: partial.write_text(json.dumps(split, indent=2)))


def _check_cache_n4(cache: Path, cases: list[str], n4: bool) -> None:
    """A prepared cache must match ``--n4``/``--no-n4``: the network would otherwise learn on images unlike those
    the pipeline gives it."""
    from ..training import cached_with_n4

    other = [case for case in cases if cached_with_n4(cache / f"{case}.npz") != n4]
    if other:
        raise ValueError(f"{len(other)} case(s) of the cache {cache} ({', '.join(other[:3])}) were prepared "
                         f"{'without' if n4 else 'with'} N4 bias correction, but training was asked "
                         f"{'with' if n4 else 'without'} it: pass {'--no-n4' if n4 else '--n4'}, or train on the "
                         "case folders (the cache is made again)")


def _training_cases(args: argparse.Namespace) -> tuple[Path, list[str], list[list[str]]]:
    """(cache folder, case names, folds): the cache built when needed, the split read or made once."""
    from ..training import cached_cases, extend_folds, make_folds, prepare_cache

    data, out = Path(args.data_dir), Path(args.output)
    cache = Path(args.cache) if args.cache else out / "cache"
    cases = cached_cases(data)
    if cases:  # already a preprocessed cache (e.g. carried to a GPU machine)
        cache = data
        _check_cache_n4(data, cases, args.n4)
    else:
        cases = prepare_cache(data, cache, log=log, skip_incomplete=args.skip_incomplete, n4=args.n4)
    folds_file = out / "folds.json"
    if folds_file.exists():
        split = json.loads(folds_file.read_text())
        folds, added = extend_folds(split["folds"], cases)
        for case, index in added.items():
            log(f"new case {case}: added to fold {index} of {folds_file} (the other folds keep their cases)")
        if added:
            _write_split(folds_file, {**split, "folds": folds})
    else:
        folds = make_folds(cases, args.folds, args.seed)
        _write_split(folds_file, {"seed": args.seed, "k": args.folds, "folds": folds})
    return cache, cases, folds


def _train(args: argparse.Namespace) -> int:
    from ..inference import inference_precision, resolve_device
    from ..training import TrainConfig, train_runs

    # Checked before the (slow) cache is built.
    if args.fold not in ("all", "every") and not args.fold.isdigit():
        raise ValueError(f"--fold {args.fold}: give a fold index (0, 1, ...), 'all' or 'every'")
    if args.init_filters < 8 or args.init_filters % 8:
        raise ValueError(f"--init-filters {args.init_filters}: give a multiple of 8 (SegResNet normalises "
                           "its features in 8 groups)")
    if not 0 <= args.remove_enhancement <= 1 or min(args.region_weights) < 0 or not sum(args.region_weights):
        raise ValueError("--remove-enhancement takes a probability (0-1) and --region-weights three weights "
                           "(WT TC ET), none negative, not all 0")
    if not 0 <= args.scanner_shift <= 1:
        raise ValueError(f"--scanner-shift {args.scanner_shift}: give a probability (0-1), e.g. 0.15")
    inference_precision(resolve_device(args.device))  # TUMORSEG_PRECISION understood (training computes in it too)
    cache, cases, folds = _training_cases(args)
    config = TrainConfig(init_filters=args.init_filters, patch_size=tuple(args.patch_size), batch_size=args.batch_size,
                         learning_rate=args.learning_rate, max_steps=args.max_steps, time_limit_s=args.time_limit,
                         seed=args.seed, device=args.device, sequence_dropout=args.sequence_dropout,
                         remove_enhancement=args.remove_enhancement, region_weights=tuple(args.region_weights),
                         scanner_shift=args.scanner_shift, checkpoint_every_s=args.checkpoint_every)
    if args.fold not in ("all", "every") and int(args.fold) >= len(folds):
        raise ValueError(f"--fold {args.fold}: the split has folds 0..{len(folds) - 1}")
    chosen = list(range(len(folds))) + ["all"] if args.fold == "every" else [args.fold]
    runs = {}
    for run in chosen:
        val_cases = [] if run == "all" else folds[int(run)]
        runs[f"fold{run}"] = ([c for c in cases if c not in val_cases], val_cases)
        log(f"[train] run {run}: {len(runs[f'fold{run}'][0])} training, {len(val_cases)} validation cases")
    # Every run in one process, together: the cases go to the device once and small networks share it.
    train_runs(cache, Path(args.output), config, runs, resume=not args.no_resume,
               resume_from=Path(args.resume_from) if args.resume_from else None, log=log)
    return 0



def add_command(commands) -> None:
    from ..options import Device, choices

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
    p.add_argument("--skip-incomplete", action="store_true", help="train without the case folders that lack a "
                   "sequence or the label (they are listed); otherwise they stop the command")
    p.add_argument("--resume-from", metavar="DIR", help="start each run from an earlier run's weights "
                   "(DIR/fold<k>/model.pt and history.json, e.g. brought back from a lent GPU)")
    p.add_argument("--checkpoint-every", type=float, default=60.0, help="seconds between checkpoints")
    p.add_argument("--remove-enhancement", type=float, default=0.0, help="chance (0-1) that a drawn case has its "
                   "enhancement taken away (T1c made non-enhancing, ET -> NCR): teaches that ET needs enhancement")
    p.add_argument("--region-weights", type=float, nargs=3, default=[1.0, 1.0, 1.0], metavar=("WT", "TC", "ET"),
                   help="loss weight of each region")
    p.add_argument("--scanner-shift", type=float, default=0.0, help="chance (0-1) of each simulated scanner or "
                   "protocol change per sequence (bias field, gamma, thick slices, low resolution, blur, noise)")
    p.add_argument("--n4", action=argparse.BooleanOptionalAction, default=True, help="N4 bias-field correction of "
                   "every sequence in the cache, as the pipeline does by default (--no-n4: without)")
    p.set_defaults(func=_train)
