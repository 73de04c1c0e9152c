"""One batch over a cohort: skip what is verifiably done, run the rest on Dask, journal each case as it ends, then
write the cohort table and plot. One bad case never stops the others; an interrupted batch resumes."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .cases import BatchCase
from .cluster import ClusterPlan, open_client
from .cohort import COHORT_FILE, PLOT_FILE, cohort_rows, plot_cohort, write_cohort
from .journal import Journal
from .worker import STAGING, segment_case

__all__ = ["BatchReport", "run_batch", "LOCK_FILE"]

LOCK_FILE = ".batch.lock"


@dataclass
class BatchReport:
    """What one run of the batch did; ``exit_status`` 0 when every case is done, 3 when some failed."""

    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # done by an earlier run, outputs verified
    kept_failed: list[str] = field(default_factory=list)  # failed earlier; --retry-failed runs them again
    cohort: Path | None = None
    plot: Path | None = None

    @property
    def exit_status(self) -> int:
        return 3 if self.failed or self.kept_failed else 0


def _lock(output: Path) -> Path:
    """One batch at a time per output folder (two would interleave the journal)."""
    lock = output / LOCK_FILE
    if lock.exists():
        try:
            pid = int(lock.read_text().strip())
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError, PermissionError):
            lock.unlink()  # left by a batch that was killed
        else:
            raise RuntimeError(f"{output}: another batch (process {pid}) is writing here; wait for it or give "
                               f"another -o")
    lock.write_text(str(os.getpid()))
    return lock


def _plan(cases: list[BatchCase], journal: Journal, args: list[str], retry_failed: bool, report: BatchReport
          ) -> list[BatchCase]:
    todo = []
    for case in cases:
        status = journal.status(case.case_id, {**case.request(), "args": args})
        if status == "done":
            report.skipped.append(case.case_id)
        elif status == "failed" and not retry_failed:
            report.kept_failed.append(case.case_id)
        else:
            todo.append(case)
    return todo


def run_batch(cases: list[BatchCase], output: Path, segment_args: list[str], plan: ClusterPlan, *,
              extras: tuple[str, ...] = (), scheduler: str | None = None, retry_failed: bool = False, dashboard: str | None = None,
              on_case: Callable[[dict], None] | None = None, on_start: Callable[[object], None] | None = None,
              on_plan: Callable[[int], None] | None = None) -> BatchReport:
    """Segment every case not yet done into ``output/<case_id>/`` and write ``cohort.csv`` and its plot.

    ``segment_args`` are ``tumorseg segment`` option flags; ``extras`` per-case outputs (``uncertainty``, ``report``).

    ``on_plan(count)`` says how many cases will run; ``on_case(entry)`` is called as each ends (progress);
    ``on_start(client)`` once they are queued.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    lock = _lock(output)
    try:
        shutil.rmtree(output / STAGING, ignore_errors=True)  # whatever an interrupted run left half-written
        journal, report = Journal(output), BatchReport()
        todo = _plan(cases, journal, [*segment_args, *extras], retry_failed, report)
        if on_plan is not None:
            on_plan(len(todo))
        if todo:
            _run(todo, output, (segment_args, extras), plan, scheduler, dashboard, journal, report, on_case, on_start)
        rows = cohort_rows(cases, journal.entries)
        report.cohort = write_cohort(rows, output / COHORT_FILE)
        report.plot = plot_cohort(rows, output / PLOT_FILE)
        shutil.rmtree(output / STAGING, ignore_errors=True)
        return report
    finally:
        lock.unlink(missing_ok=True)


def _run(todo, output, arguments, plan, scheduler, dashboard, journal, report, on_case, on_start) -> None:
    from distributed import as_completed

    segment_args, extras = arguments
    with open_client(plan, scheduler, dashboard) as client:
        futures = {client.submit(segment_case, case, str(output.resolve()), segment_args, extras, plan.torch_threads,
                                 key=f"tumorseg-{case.case_id}-{os.urandom(4).hex()}", pure=False): case
                   for case in todo}
        if on_start is not None:
            on_start(client)
        try:
            for future in as_completed(futures):
                entry = _entry(future, futures[future], [*segment_args, *extras])
                journal.record(entry)
                (report.done if entry["status"] == "done" else report.failed).append(entry["case_id"])
                if on_case is not None:
                    on_case(entry)
        finally:
            for future in futures:
                future.cancel()
            if client.cluster is not None:
                client.cluster.close()


def _entry(future, case: BatchCase, segment_args: list[str]) -> dict:
    """The case's journal entry; a task Dask gave up on (its workers kept dying) is a failed case."""
    from distributed import KilledWorker

    try:
        return future.result()
    except KilledWorker:
        message = ("the workers running it kept dying (out of memory? see the Dask worker logs); it is not "
                   "retried until --retry-failed")
    except Exception as error:  # noqa: BLE001 - an unexpected error in TumorSeg: this case only, named
        message = f"unexpected error while segmenting it: {type(error).__name__}: {error}"
    return {"case_id": case.case_id, "request": {**case.request(), "args": segment_args},
            "visit_date": case.visit_date, "status": "failed", "seconds": "", "message": message}
