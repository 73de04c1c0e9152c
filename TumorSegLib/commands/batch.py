"""``tumorseg batch``: a cohort (folder of cases or CSV manifest) segmented on Dask, resumable; exit 0 when every
case is done, 3 when some failed (listed in the cohort CSV with why), 2 for an input that is not a cohort."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import CommandError, check_model_and_device, log

__all__ = ["add_command"]


def _segment_args(args: argparse.Namespace) -> list[str]:
    """The per-case ``tumorseg segment`` option flags, checked now (a wrong option stops the batch before any
    case)."""
    from ..options import SegmentOptions

    options = SegmentOptions.from_args(args)
    check_model_and_device(options)
    return options.to_argv()


def _progress(total: int, enabled: bool):
    """A progress bar on the terminal (cases done, failed, ETA); one line per case otherwise."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit="case", disable=not enabled, file=sys.stderr, dynamic_ncols=True)
    failed = 0

    def on_plan(count: int) -> None:  # cases already done are not waited for
        bar.total = count
        bar.refresh()

    def on_case(entry: dict) -> None:
        nonlocal failed
        failed += entry["status"] == "failed"
        bar.update(1)
        bar.set_postfix(failed=failed)
        if not enabled:
            message = f" ({entry['message']})" if entry["status"] == "failed" else ""
            log(f"[case] {entry['case_id']}: {entry['status']}{message}")

    return bar, on_plan, on_case


def _run(args: argparse.Namespace) -> int:
    from ..batch import discover_cases, plan_cluster, run_batch

    output, source = Path(args.output).resolve(), Path(args.input).resolve()
    if source.is_dir() and (output == source or source in output.parents):
        raise CommandError(f"-o {args.output}: put the outputs outside the input folder (they would be read as cases)")
    cases = discover_cases(source)
    segment_args = _segment_args(args)
    extras = tuple(name for name in ("uncertainty", "report") if getattr(args, name))
    plan = plan_cluster(args.workers, args.device, args.scheduler)
    log(f"{len(cases)} case(s) from {source}; running on {plan.describe()}; outputs in {output}")
    bar, on_plan, on_case = _progress(len(cases), sys.stderr.isatty() and not args.no_progress)
    with bar:
        report = run_batch(cases, output, segment_args, plan, extras=extras, scheduler=args.scheduler,
                           retry_failed=args.retry_failed, dashboard=args.dashboard, on_case=on_case,
                           on_plan=on_plan)
    log(f"done {len(report.done)}, failed {len(report.failed)}, already done {len(report.skipped)}"
        + (f", failed earlier (not retried) {len(report.kept_failed)}" if report.kept_failed else "")
        + f"; cohort table {report.cohort}")
    if report.kept_failed:
        log("run again with --retry-failed to try the cases that failed before")
    return report.exit_status


def add_command(commands) -> None:
    from ..options import add_arguments

    p = commands.add_parser("batch", help="segment a cohort (folder of cases or CSV manifest) on Dask, resumable")
    p.add_argument("input", help="a folder with one sub-folder per case (four image files, BraTS names or scanner "
                   "names, or a DICOM study), or a CSV manifest: case_id,t1,t1c,t2,flair[,visit_date] (or a study "
                   "column), paths relative to the CSV")
    p.add_argument("-o", "--output", required=True, help="output folder: OUT/<case_id>/ per case, cohort.csv, "
                   "cohort_summary.png, batch_journal.jsonl")
    p.add_argument("--workers", type=int, help="local Dask workers (default: one per GPU, else sized to the cores "
                   "and memory); each runs one case at a time")
    p.add_argument("--scheduler", metavar="tcp://HOST:8786", help="an existing Dask cluster's scheduler instead of "
                   "a local cluster (its workers need TumorSeg installed and the input paths readable)")
    p.add_argument("--dashboard", metavar=":8787", help="serve the local cluster's Dask dashboard on this address")
    p.add_argument("--retry-failed", action="store_true", help="run again the cases that failed in an earlier run")
    p.add_argument("--no-progress", action="store_true", help="one line per case instead of a progress bar")
    p.add_argument("--uncertainty", action="store_true", help="sample the model per case and write its uncertainty "
                   "maps to OUT/<case_id>/uncertainty/")
    p.add_argument("--report", action="store_true", help="also write each case's clinician report (HTML + PDF)")
    add_arguments(p)
    p.set_defaults(func=_run)
