"""``tumorseg track``: follow one patient over visits (volumes, change, RANO 2.0 category, plot)."""

from __future__ import annotations

import argparse
import json

from .common import log

__all__ = ["add_command"]


def _run(args: argparse.Namespace) -> int:
    from ..longitudinal import format_rows, run_track

    result = run_track(args.timeline, args.output, register_visits=not args.no_register,
                       tolerance_mm=args.tolerance_mm, primary=args.primary,
                       save_measurements=args.save_measurements)
    print(json.dumps(result["rows"], indent=2, default=str) if args.json else format_rows(result["rows"]))
    log(f"table: {result['table']}\nplot: {result['plot']}")
    return 0


def add_command(commands) -> None:
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
    p.set_defaults(func=_run)
