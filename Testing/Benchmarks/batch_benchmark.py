"""`tumorseg batch` on this machine: throughput with 1 vs 2 workers, and worker memory over a long cohort.

1. Throughput: the same synthetic cases (default 8) with one worker (all cores to it) and with two (cores shared),
   each on a fresh local cluster; cases/hour for each, and their ratio.
2. Memory: a cohort of N synthetic cases (default 100) through one batch; every case's journal entry records its
   worker's resident memory after the case; flat means the last tenth of the cohort is no higher than the first.

    python Testing/Benchmarks/batch_benchmark.py [--cases 100] [--throughput-cases 8] [--model ID] [--json OUT]

Synthetic cases (the MNI template with a tumour of a different shape per seed) so the cohort can be as long as
needed; the single network keeps the run under an hour on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from TumorSegLib.batch import Journal, discover_cases, plan_cluster, run_batch  # noqa: E402


def write_cohort(folder: Path, count: int) -> Path:
    from TumorSegLib.synthetic import write_synthetic_case

    folder.mkdir(parents=True, exist_ok=True)
    for seed in range(1, count + 1):
        files = write_synthetic_case(folder, case=f"Synth_{seed:03d}", seed=seed)
        Path(files["label"]).unlink()
    return folder


def cases_per_hour(cohort: Path, output: Path, workers: int, args: list[str]) -> float:
    cases = discover_cases(cohort)
    start = time.perf_counter()
    report = run_batch(cases, output, args, plan_cluster(workers, "cpu"))
    seconds = time.perf_counter() - start
    if report.failed:
        raise RuntimeError(f"cases failed: {report.failed}")
    return 3600 * len(cases) / seconds


def memory_over_cohort(cohort: Path, output: Path, args: list[str]) -> dict:
    cases = discover_cases(cohort)
    run_batch(cases, output, args, plan_cluster(1, "cpu"))
    entries = Journal(output).entries
    rss = [entries[case.case_id]["worker_rss_mb"] for case in cases if entries[case.case_id]["status"] == "done"]
    tenth = max(1, len(rss) // 10)
    first, last = statistics.median(rss[:tenth]), statistics.median(rss[-tenth:])
    return {"cases": len(rss), "rss_first_tenth_mb": first, "rss_last_tenth_mb": last, "rss_max_mb": max(rss),
            "last_vs_first": last / first}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100, help="cases in the memory run")
    parser.add_argument("--throughput-cases", type=int, default=8)
    parser.add_argument("--model", default="brats18-segresnet8")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    segment_args = ["--model", args.model, "--device", "cpu"]
    figures: dict = {"model": args.model}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        cohort = write_cohort(work / "cohort", max(args.cases, args.throughput_cases))
        small = work / "small"
        small.mkdir()
        for case in sorted(cohort.iterdir())[:args.throughput_cases]:
            (small / case.name).symlink_to(case, target_is_directory=True)
        one = cases_per_hour(small, work / "one_worker", 1, segment_args)
        two = cases_per_hour(small, work / "two_workers", 2, segment_args)
        figures.update(cases_per_hour_1_worker=one, cases_per_hour_2_workers=two, two_vs_one=two / one)
        print(f"throughput on {args.throughput_cases} cases: 1 worker {one:.0f} cases/h, 2 workers {two:.0f} cases/h "
              f"({two / one:.2f}x)", flush=True)
        memory = memory_over_cohort(cohort, work / "memory", segment_args)
        figures["memory"] = memory
        print(f"worker memory over {memory['cases']} cases: first tenth {memory['rss_first_tenth_mb']:.0f} MB, last "
              f"tenth {memory['rss_last_tenth_mb']:.0f} MB ({memory['last_vs_first']:.2f}x), max "
              f"{memory['rss_max_mb']:.0f} MB")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
