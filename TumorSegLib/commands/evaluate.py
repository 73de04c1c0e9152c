"""``tumorseg evaluate``: compare label maps with ground truths (Dice, HD95, lesion-wise, uncertainty)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import CommandError

__all__ = ["add_command"]


def _run(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate_case, evaluate_cases, reliability_png

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


def add_command(commands) -> None:
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
    p.set_defaults(func=_run)
