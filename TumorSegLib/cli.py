"""The ``tumorseg`` command line: segment, evaluate, train, demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["main"]


def _log(message: str) -> None:
    print(message, flush=True)


def _train(args: argparse.Namespace) -> int:
    from .training import TrainConfig, make_folds, prepare_cache, train

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
            raise SystemExit(f"{folds_file} lists other cases than {data}; remove it to make a new split")
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
    runs = list(range(len(folds))) + ["all"] if args.fold == "every" else [args.fold]
    for run in runs:
        if run == "all":
            train_cases, val_cases = cases, []
        else:
            k = int(run)
            if not 0 <= k < len(folds):
                raise SystemExit(f"--fold {k}: the split has folds 0..{len(folds) - 1}")
            val_cases = folds[k]
            train_cases = [c for c in cases if c not in val_cases]
        _log(f"[train] run {run}: {len(train_cases)} training, {len(val_cases)} validation cases")
        train(cache, out / f"fold{run}", config, train_cases, val_cases, resume=not args.no_resume, log=_log)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tumorseg", description="Brain tumour segmentation from T1, T1c, T2, FLAIR.")
    commands = parser.add_subparsers(dest="command", required=True)

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
    p.add_argument("--init-filters", type=int, default=8)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--sequence-dropout", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=20260)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--no-resume", action="store_true", help="start afresh even if a checkpoint exists")
    p.set_defaults(func=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
