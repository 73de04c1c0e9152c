"""Where the cases run: a Dask ``LocalCluster`` sized to this machine, or an existing cluster's scheduler.

One case at a time per worker (a segmentation uses several GB); workers × torch threads fill the cores without
oversubscribing them; with GPUs, one worker per GPU."""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["ClusterPlan", "plan_cluster", "open_client", "GB_PER_CASE"]

GB_PER_CASE = 5.0  # peak resident memory of one BraTS-sized case with the ensemble on CPU, rounded up


@dataclass(frozen=True)
class ClusterPlan:
    """Workers of a local cluster (or ``None`` for an existing one) and torch threads per worker."""

    workers: int | None
    torch_threads: int | None
    gpus: int = 0

    def describe(self) -> str:
        if self.workers is None:
            return "the given Dask scheduler's workers"
        where = f"{self.gpus} GPU(s)" if self.gpus else f"{self.torch_threads} torch thread(s) each"
        return f"a local Dask cluster of {self.workers} worker(s), {where}"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _memory_gb() -> float:
    import psutil  # a dependency of distributed

    return psutil.virtual_memory().total / 2**30


def _gpus(device: str) -> int:
    if device == "cpu":
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def plan_cluster(workers: int | None, device: str, scheduler: str | None = None) -> ClusterPlan:
    """Size a local cluster: ``workers`` when given, else one per GPU, else one per core as far as memory
    (:data:`GB_PER_CASE` each) allows. (On 2 cores, two single-threaded workers segmented 1.46× as many cases
    per hour as one worker with both threads: reading, registration and post-processing are single-threaded,
    so a second case fills the gaps; ``Testing/Benchmarks/batch_benchmark.py``.)

    Raises:
        ValueError: ``--workers`` below 1, or given with ``--scheduler`` (an existing cluster has its own).
    """
    if workers is not None and workers < 1:
        raise ValueError(f"--workers {workers}: give at least 1")
    if scheduler:
        if workers is not None:
            raise ValueError("--workers sizes a local cluster; with --scheduler the cluster's own workers run the "
                             "cases (start them with the number you want)")
        return ClusterPlan(None, None)
    cores, gpus = _cores(), _gpus(device)
    if workers is None:
        workers = gpus or max(1, min(cores, int(_memory_gb() // GB_PER_CASE)))
    return ClusterPlan(workers, max(1, cores // workers), gpus)


def open_client(plan: ClusterPlan, scheduler: str | None = None, dashboard: str | None = None):
    """A Dask client on ``scheduler`` (``tcp://host:8786``), or on a new local cluster per ``plan``.

    Local workers are separate processes under a nanny, so a worker that dies is restarted and its case run
    again elsewhere."""
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler, timeout="30s")
    cluster = LocalCluster(n_workers=plan.workers, threads_per_worker=1, processes=True,
                           dashboard_address=dashboard, memory_limit="auto", silence_logs=40)
    return Client(cluster)
