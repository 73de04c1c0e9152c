"""What a Dask worker does for one case: ``tumorseg segment`` in-process (the same code, so the same outputs),
into a staging folder that is renamed into place only when complete; the model stays loaded for the worker's
next cases. Never raises for a bad case: it returns a failed record with the command's message."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from ..memory import release_memory
from .cases import BatchCase
from .journal import checksums

__all__ = ["STAGING", "REPLACED", "FAILED_LOGS", "LOG_FILE", "segment_case", "case_argv", "summary_file"]

STAGING = ".staging"  # cases being written; removed when the batch ends, never read as results
REPLACED = ".replaced"  # earlier, unverified case folders moved aside (never deleted)
FAILED_LOGS = "failed_logs"
LOG_FILE = "tumorseg.log"
_prepared = False
# One case at a time per process, also on a cluster whose workers have several threads: a case redirects the
# process's output to its log, and the kept model's per-case notes (fallbacks) are the case's own.
_ONE_CASE = threading.Lock()


def summary_file(case: BatchCase, folder: Path) -> Path:
    """The case's summary JSON inside its output folder."""
    return folder / ("segmentation.json" if case.study else f"{case.case_id}_tumorseg.json")


def case_argv(case: BatchCase, folder: Path, segment_args: list[str], extras: tuple[str, ...] = ()) -> list[str]:
    """The ``tumorseg`` command line that segments ``case`` into ``folder`` (as the user would type it);
    ``extras`` adds per-case outputs: ``uncertainty`` (maps folder), ``report`` (HTML + PDF; a study always has it)."""
    if case.study:
        argv = ["segment", "--study", case.study, "-o", str(folder), *segment_args]
        if "uncertainty" in extras:  # the study command makes its folder itself: the maps go beside, moved in later
            argv += ["--uncertainty", str(_sidecar(folder))]
        return argv
    inputs = [item for key, path in case.files.items() for item in (f"--{key}", path)]
    argv = ["segment", *inputs, "-o", str(folder / f"{case.case_id}_tumorseg.nii.gz"), *segment_args]
    if "uncertainty" in extras:
        argv += ["--uncertainty", str(folder / "uncertainty")]
    if "report" in extras:
        argv += ["--report", str(folder / "report.html")]
    return argv


def _sidecar(folder: Path) -> Path:
    return folder.with_name(f"{folder.name}-uncertainty")


def _prepare_worker(torch_threads: int | None) -> None:
    """Once per worker process: keep the model loaded, share the cores without oversubscribing them, and take
    this worker's GPU when there are several."""
    global _prepared
    if _prepared:
        return
    import torch

    from ..inference import keep_predictors

    keep_predictors()
    if torch_threads:
        torch.set_num_threads(torch_threads)
    if torch.cuda.is_available() and torch.cuda.device_count() > 1:
        from distributed import get_worker

        name = str(get_worker().name)
        torch.cuda.set_device(int(name) % torch.cuda.device_count() if name.isdigit() else 0)
    _prepared = True


def segment_case(case: BatchCase, output: str, segment_args: list[str], extras: tuple[str, ...] = (),
                 torch_threads: int | None = None) -> dict:
    """Segment one case into ``output/<case_id>/``; returns its journal entry (status done or failed)."""
    start, output = time.perf_counter(), Path(output)
    entry = {"case_id": case.case_id, "request": {**case.request(), "args": [*segment_args, *extras]},
             "visit_date": case.visit_date, "worker_pid": os.getpid()}
    if case.problem:
        return {**entry, "status": "failed", "message": case.problem, "seconds": 0.0}
    with _ONE_CASE:
        _prepare_worker(torch_threads)
        try:
            return _segment_staged(case, output, segment_args, extras, entry, start)
        finally:
            release_memory()


def _segment_staged(case: BatchCase, output: Path, segment_args: list[str], extras: tuple[str, ...], entry: dict,
                    start: float) -> dict:
    from ..commands.segment import run_segment
    from ..inference import predictors_loaded

    token = f"{case.case_id}-{uuid.uuid4().hex[:8]}"
    staging, log_path = output / STAGING / token, output / STAGING / f"{token}.log"
    staging.parent.mkdir(parents=True, exist_ok=True)
    if not case.study:
        staging.mkdir()  # the study command makes its own (new) folder
    try:
        with log_path.open("w", encoding="utf-8") as log, redirect_stdout(log), redirect_stderr(log):
            code = run_segment(case_argv(case, staging, segment_args, extras)[1:])
        if code != 0:
            return {**entry, "status": "failed", "message": _failure(log_path, output, case.case_id, code),
                    "seconds": round(time.perf_counter() - start, 2)}
        shutil.move(str(log_path), staging / LOG_FILE)
        final = output / case.case_id
        if _sidecar(staging).exists():
            _sidecar(staging).rename(staging / "uncertainty")
        moves = {_sidecar(staging): final / "uncertainty", staging: final}
        _repoint(staging / LOG_FILE, moves)
        summary = json.loads(_repoint(summary_file(case, staging), moves))
        outputs = checksums(staging)
        _publish(staging, final, output)
        return {**entry, "status": "done", "outputs": outputs, "seconds": round(time.perf_counter() - start, 2),
                "model_loads": predictors_loaded(), "worker_rss_mb": _resident_mb(), **_highlights(summary)}
    finally:
        for leftover in (staging, _sidecar(staging)):
            shutil.rmtree(leftover, ignore_errors=True)
        log_path.unlink(missing_ok=True)


def _failure(log_path: Path, output: Path, case_id: str, code: int) -> str:
    """The command's own error line; its whole log is kept in ``output/failed_logs/``."""
    text = log_path.read_text(encoding="utf-8", errors="replace")
    logs = output / FAILED_LOGS
    logs.mkdir(exist_ok=True)
    (logs / f"{case_id}.log").write_text(text, encoding="utf-8")
    errors = [line for line in text.splitlines() if ": error: " in line]
    return errors[-1].split(": error: ", 1)[1] if errors else f"tumorseg segment stopped with exit status {code}"


def _repoint(path: Path, moves: dict[Path, Path]) -> str:
    """A text file (summary, log) with its paths pointing where the files end up (before the checksums)."""
    text = path.read_text(encoding="utf-8")
    for old, new in moves.items():  # most specific first: the sidecar's name starts with the staging folder's
        text = text.replace(json.dumps(str(old))[1:-1], json.dumps(str(new))[1:-1])
    path.write_text(text, encoding="utf-8")
    return text


def _resident_mb() -> float:
    """This worker's resident memory after the case (the batch benchmark checks that it stays flat)."""
    import psutil

    return round(psutil.Process().memory_info().rss / 2**20, 1)


def _publish(staging: Path, final: Path, output: Path) -> None:
    """Put the finished case in place in one rename; an earlier folder there (unverified) is moved aside."""
    if final.exists():
        aside = output / REPLACED / f"{final.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
        aside.parent.mkdir(exist_ok=True)
        final.rename(aside)
    staging.rename(final)


def _highlights(summary: dict) -> dict:
    """What the cohort table shows of one case's summary."""
    uncertainty = summary.get("uncertainty") or {}
    return {"volumes_ml": summary.get("volumes_ml", {}), "review": uncertainty.get("flagged", []),
            "qa": [f"{f['severity']}:{f['code']}" for f in summary.get("qa", []) if f.get("severity") != "info"],
            "not_assessed": summary.get("not_assessed", []), "device": summary.get("device"),
            "precision": summary.get("precision"), "timings_s": summary.get("timings_s", {})}
