"""Cohorts: ``tumorseg batch`` over many cases on Dask, resumable from its journal, one bad case never stopping
the rest. Data flows cases → worker (``tumorseg segment`` in-process, staged) → journal → cohort table and plot."""

from .cases import MANIFEST_COLUMNS, BatchCase, discover_cases
from .cluster import ClusterPlan, plan_cluster
from .cohort import COHORT_FILE, PLOT_FILE
from .journal import JOURNAL_FILE, Journal
from .run import BatchReport, run_batch

__all__ = ["BatchCase", "discover_cases", "MANIFEST_COLUMNS", "ClusterPlan", "plan_cluster", "COHORT_FILE",
           "PLOT_FILE", "JOURNAL_FILE", "Journal", "BatchReport", "run_batch"]
