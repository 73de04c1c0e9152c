"""Cohorts: finding the cases (folder, DICOM studies, CSV manifest), the journal that makes a batch resumable, the
cluster's size, the cohort table, bad input stopping before any work; then real batches on Dask: two workers,
one killed mid-case by the test, a bad case isolated, outputs identical to `tumorseg segment`, a rerun that skips
everything, and a resume that redoes only what is not verifiably done."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from TumorSegLib.batch import COHORT_FILE, JOURNAL_FILE, PLOT_FILE, BatchCase, Journal, discover_cases, plan_cluster
from TumorSegLib.batch.cohort import cohort_rows, write_cohort
from TumorSegLib.batch.journal import checksums
from TumorSegLib.cli import main
from TumorSegLib.inference import inference_precision
from TumorSegLib.volume import read_volume

MODEL = "brats18-segresnet8"
# What the batch runs are checked for (scheduling, resuming, outputs equal to `tumorseg segment`) does not depend on
# N4, so the runs skip it (a third of a one-network run): the segment options pass through to every case as given.
RUN_OPTIONS = ["--model", MODEL, "--device", "cpu", "--no-n4"]
SEQUENCE_SUFFIXES = {"t1": "t1", "t1c": "t1ce", "t2": "t2", "flair": "flair"}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Three synthetic cases (different tumours) in BraTS layout, without their ground truth, and a bad one."""
    from TumorSegLib.synthetic import write_synthetic_case

    folder = tmp_path_factory.mktemp("cohort")
    for seed in (1, 2, 3):
        files = write_synthetic_case(folder, case=f"Synth_{seed}", seed=seed)
        Path(files["label"]).unlink()
    (folder / "Broken_1").mkdir()
    (folder / "Broken_1" / "Broken_1_t1ce.nii.gz").write_bytes(b"not an image")
    return folder


# --- finding the cases -------------------------------------------------------------------------------------------

def test_a_folder_of_cases_gives_one_case_per_sub_folder_with_its_sequences(cohort):
    cases = {case.case_id: case for case in discover_cases(cohort)}
    assert sorted(cases) == ["Broken_1", "Synth_1", "Synth_2", "Synth_3"]
    assert set(cases["Synth_1"].files) == {"t1", "t1c", "t2", "flair"}
    assert cases["Synth_1"].files["t1c"].endswith("Synth_1_t1ce.nii.gz") and cases["Synth_1"].problem is None
    assert cases["Broken_1"].files == {"t1c": str(cohort / "Broken_1" / "Broken_1_t1ce.nii.gz")}


def test_a_case_folder_with_two_files_for_one_sequence_is_a_problem_of_that_case_only(tmp_path):
    for name in ("a_t1ce.nii.gz", "a_T1_POST_GD.nii.gz", "a_flair.nii.gz"):
        (tmp_path / "A").mkdir(exist_ok=True)
        (tmp_path / "A" / name).write_bytes(b"")
    (tmp_path / "B").mkdir()
    (tmp_path / "B" / "notes.txt").write_text("DICOM would be here")
    cases = {case.case_id: case for case in discover_cases(tmp_path)}
    assert "T1c" in cases["A"].problem and "a_t1ce.nii.gz" in cases["A"].problem
    assert cases["B"].study == str(tmp_path / "B")  # not images: read as a DICOM study when it runs


def test_a_manifest_resolves_relative_paths_and_keeps_each_rows_problem(tmp_path, cohort):
    manifest = tmp_path / "cohort.csv"
    synth = cohort / "Synth_1"
    rows = [["case_id", "t1", "t1c", "t2", "flair", "visit_date"],
            ["P1 visit1", *(str(synth / f"Synth_1_{s}.nii.gz") for s in SEQUENCE_SUFFIXES.values()), "2024-03-01"],
            ["P2", "", "missing_t1ce.nii.gz", "", "", ""],
            ["P3", "", str(synth / "Synth_1_t1ce.nii.gz"), "", "", "01/03/2024"],
            ["P4", str(synth / "Synth_1_t1.nii.gz"), "", "", "", ""]]
    with manifest.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    cases = {case.case_id: case for case in discover_cases(manifest)}
    assert cases["P1_visit1"].visit_date == "2024-03-01" and cases["P1_visit1"].problem is None
    assert "line 3" in cases["P2"].problem and str(tmp_path / "missing_t1ce.nii.gz") in cases["P2"].problem
    assert "YYYY-MM-DD" in cases["P3"].problem
    assert "t1c or a flair" in cases["P4"].problem


@pytest.mark.parametrize("content, expected", [
    ("id,t1\nA,x.nii.gz\n", "needs a case_id column"),
    ("case_id,t1c\nA,x.nii.gz\nA,y.nii.gz\n", "more than once"),
    ("case_id,t1c\n", "no cases found"),
])
def test_a_manifest_that_is_not_a_cohort_stops_everything_with_what_to_fix(tmp_path, content, expected):
    (tmp_path / "m.csv").write_text(content)
    with pytest.raises(ValueError, match=expected):
        discover_cases(tmp_path / "m.csv")


# --- the journal and the cluster ---------------------------------------------------------------------------------

def test_the_journal_counts_a_case_done_only_while_its_outputs_match_their_checksums(tmp_path):
    (tmp_path / "A").mkdir()
    (tmp_path / "A" / "labels.nii.gz").write_bytes(b"labels")
    request = {"files": {"t1c": "/x"}, "study": None, "args": []}
    journal = Journal(tmp_path)
    journal.record({"case_id": "A", "request": request, "status": "done", "outputs": checksums(tmp_path / "A")})
    journal.record({"case_id": "B", "request": request, "status": "failed", "message": "bad"})
    with (tmp_path / JOURNAL_FILE).open("a") as handle:
        handle.write('{"case_id": "C", "sta')  # the client killed while writing
    reread = Journal(tmp_path)
    assert reread.status("A", request) == "done" and reread.status("B", request) == "failed"
    assert reread.status("C", request) == "todo"
    assert reread.status("A", {**request, "args": ["--flips", "4"]}) == "todo"  # other options: made again
    (tmp_path / "A" / "labels.nii.gz").write_bytes(b"edited")
    assert reread.status("A", request) == "todo"


def test_the_local_cluster_fills_the_cores_without_oversubscribing_them():
    cores = len(os.sched_getaffinity(0))
    plan = plan_cluster(None, "cpu")
    assert plan.workers >= 1 and plan.workers * plan.torch_threads <= max(cores, plan.workers)
    two = plan_cluster(2, "cpu")
    assert two.workers == 2 and two.torch_threads == max(1, cores // 2)
    assert plan_cluster(None, "cpu", "tcp://127.0.0.1:8786").workers is None
    with pytest.raises(ValueError, match="--workers 0"):
        plan_cluster(0, "cpu")
    with pytest.raises(ValueError, match="--scheduler"):
        plan_cluster(2, "cpu", "tcp://127.0.0.1:8786")


def test_the_cohort_table_lists_every_case_including_those_not_run(tmp_path):
    cases = [BatchCase("A", {"t1c": "a"}), BatchCase("B", {"t1c": "b"}, visit_date="2024-01-02")]
    entries = {"A": {"status": "done", "volumes_ml": {"NCR": 1.0, "ED": 2.0, "ET": 3.0, "TC": 4.0, "WT": 6.0},
                     "seconds": 12.5, "qa": ["warning:thick_slices"], "review": ["ET"]}}
    rows = cohort_rows(cases, entries)
    write_cohort(rows, tmp_path / COHORT_FILE)
    table = list(csv.DictReader((tmp_path / COHORT_FILE).open()))
    assert [row["status"] for row in table] == ["done", "not run"]
    assert table[0]["WT_ml"] == "6.0" and table[0]["qa"] == "warning:thick_slices" and table[1]["visit_date"] == "2024-01-02"


def test_a_case_whose_workers_keep_dying_or_that_hits_a_bug_is_a_failed_case_with_why():
    from distributed import KilledWorker

    from TumorSegLib.batch.run import _entry

    class Finished:
        def __init__(self, error):
            self.error = error

        def result(self):
            raise self.error

    case = BatchCase("A", {"t1c": "a.nii.gz"})
    died = _entry(Finished(KilledWorker("tumorseg-A", None, 3)), case, ["--flips", "2"])
    assert died["status"] == "failed" and "kept dying" in died["message"]
    assert died["request"] == {"files": {"t1c": "a.nii.gz"}, "study": None, "args": ["--flips", "2"]}
    bug = _entry(Finished(TypeError("bad operand")), case, [])
    assert bug["status"] == "failed" and "TypeError: bad operand" in bug["message"]


@pytest.mark.parametrize("argv, expected", [
    (["--flips", "0"], "--flips 0"),
    (["--model", "no-such-model"], "no-such-model"),
    (["--workers", "0"], "--workers 0"),
])
def test_a_wrong_option_stops_the_batch_before_any_case_runs(cohort, tmp_path, capsys, argv, expected):
    assert main(["batch", str(cohort), "-o", str(tmp_path / "out"), "--device", "cpu", *argv]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "out" / JOURNAL_FILE).exists()


def test_a_missing_input_or_an_output_inside_it_is_refused(cohort, tmp_path, capsys):
    assert main(["batch", str(tmp_path / "nowhere"), "-o", str(tmp_path / "out")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["batch", str(cohort), "-o", str(cohort / "results")]) == 2
    assert "outside the input folder" in capsys.readouterr().err


# --- real batches on Dask ----------------------------------------------------------------------------------------

def kill_a_worker_mid_case(client, output: Path, killed: list) -> threading.Thread:
    """Once a case is running (its log has progress lines), SIGKILL the worker process running it."""
    def watch():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            logs = [p for p in (output / ".staging").glob("*.log") if p.stat().st_size > 0] \
                if (output / ".staging").exists() else []
            busy = [address for address, keys in client.processing().items() if keys]
            if logs and busy:
                pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.2)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.fixture(scope="module")
def two_workers():
    """A local Dask cluster of two worker processes under nannies, reached through its scheduler's address."""
    distributed = pytest.importorskip("distributed", reason="the batch extra (dask[distributed]) is not installed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                       silence_logs=50)
    client = distributed.Client(cluster)
    yield cluster.scheduler_address, client
    client.close()
    cluster.close()


def test_a_batch_survives_a_killed_worker_isolates_a_bad_case_and_matches_tumorseg_segment(cohort, tmp_path,
                                                                                           two_workers):
    from TumorSegLib.batch import run_batch

    scheduler, client = two_workers
    output, killed = tmp_path / "out", []
    cases = discover_cases(cohort)
    watcher = []
    report = run_batch(cases, output, RUN_OPTIONS, plan_cluster(None, "cpu", scheduler),
                       scheduler=scheduler, on_start=lambda _: watcher.append(kill_a_worker_mid_case(client, output,
                                                                                                   killed)))
    watcher[0].join(timeout=5)
    assert killed, "the test did not manage to kill a worker mid-case"
    assert sorted(report.done) == ["Synth_1", "Synth_2", "Synth_3"] and report.failed == ["Broken_1"]
    assert report.exit_status == 3
    journal = Journal(output)
    assert all(journal.entries[c]["worker_pid"] not in killed for c in report.done)  # re-run after the kill
    assert {journal.entries[c]["model_loads"] for c in report.done} == {1}  # once per worker, not per case
    assert not (output / ".staging").exists() and not (output / ".batch.lock").exists()
    table = {row["case_id"]: row for row in csv.DictReader((output / COHORT_FILE).open())}
    assert table["Broken_1"]["status"] == "failed" and "not a NIfTI image" in table["Broken_1"]["message"]
    assert float(table["Synth_2"]["WT_ml"]) > 10 and (output / PLOT_FILE).stat().st_size > 10_000
    assert table["Synth_2"]["device"] == "cpu" and table["Synth_2"]["precision"] == inference_precision("cpu")

    files = {key: cohort / "Synth_2" / f"Synth_2_{suffix}.nii.gz" for key, suffix in SEQUENCE_SUFFIXES.items()}
    single = tmp_path / "single" / "Synth_2_seg.nii.gz"
    assert main(["segment", *sum(([f"--{k}", str(p)] for k, p in files.items()), []), "-o", str(single),
                 *RUN_OPTIONS]) == 0
    batch_labels = output / "Synth_2" / "Synth_2_tumorseg.nii.gz"
    assert np.array_equal(read_volume(batch_labels).array, read_volume(single).array)
    summary = json.loads((output / "Synth_2" / "Synth_2_tumorseg.json").read_text())
    assert summary["output"] == str(batch_labels)  # paths in the summary are the final ones, not the staging's
    assert summary["volumes_ml"] == json.loads(single.with_suffix("").with_suffix(".json").read_text())["volumes_ml"]

    # A rerun does nothing; a changed output and a case finished but never journaled (the client killed in
    # between) are made again, the earlier folder moved aside, never deleted.
    again = run_batch(cases, output, RUN_OPTIONS, plan_cluster(None, "cpu", scheduler),
                      scheduler=scheduler)
    assert sorted(again.skipped) == ["Synth_1", "Synth_2", "Synth_3"] and again.kept_failed == ["Broken_1"]
    (output / "Synth_1" / "Synth_1_tumorseg.nii.gz").write_bytes(b"edited by hand")
    lines = (output / JOURNAL_FILE).read_text().splitlines()
    (output / JOURNAL_FILE).write_text("\n".join(line for line in lines if '"Synth_3"' not in line) + "\n")
    (output / ".staging" / "Synth_3-deadbeef").mkdir(parents=True)  # half-written by the killed run
    resumed = run_batch(cases, output, RUN_OPTIONS, plan_cluster(None, "cpu", scheduler),
                        scheduler=scheduler, retry_failed=True)
    assert sorted(resumed.done) == ["Synth_1", "Synth_3"] and resumed.skipped == ["Synth_2"]
    assert resumed.failed == ["Broken_1"] and not (output / ".staging").exists()
    assert sorted(p.name.split("-")[0] for p in (output / ".replaced").iterdir()) == ["Synth_1", "Synth_3"]
    assert np.array_equal(read_volume(output / "Synth_3" / "Synth_3_tumorseg.nii.gz").array,
                          read_volume(next((output / ".replaced").glob("Synth_3-*")) / "Synth_3_tumorseg.nii.gz").array)


def test_uncertainty_maps_and_the_report_per_case_land_in_the_case_folder(cohort, tmp_path, two_workers):
    scheduler, _ = two_workers
    only = tmp_path / "one"
    only.mkdir()
    (only / "Synth_1").symlink_to(cohort / "Synth_1", target_is_directory=True)
    output = tmp_path / "out"
    assert main(["batch", str(only), "-o", str(output), "--scheduler", scheduler, *RUN_OPTIONS, "--uncertainty",
                 "--uncertainty-samples", "2", "--report", "--no-progress"]) == 0
    case = output / "Synth_1"
    summary = json.loads((case / "Synth_1_tumorseg.json").read_text())
    assert summary["uncertainty"]["samples"] == 2 and ".staging" not in json.dumps(summary)
    assert (case / "uncertainty" / "entropy.nii.gz").is_file()
    assert (case / "report.html").is_file() and (case / "report.pdf").stat().st_size > 10_000
    assert set(Journal(output).entries["Synth_1"]["outputs"]) >= {"report.html", "report.pdf", "tumorseg.log"}


@pytest.mark.realdata
def test_shared_cases_from_a_manifest_and_a_dicom_study_run_on_a_local_cluster(shared_data, tmp_path, capsys):
    """The command as a user runs it: a CSV manifest of two shared cases (one as a DICOM study, with its DICOM
    outputs), its own local cluster of two workers, the visit date in the cohort table; a second run only
    reports."""
    from Testing.dicom_fixtures import write_study

    names = ["Brats18_CBICA_AQT_1", "Brats18_2013_11_1"]
    paths = {name: {key: shared_data / name / f"{name}_{suffix}.nii.gz" for key, suffix in SEQUENCE_SUFFIXES.items()}
             for name in names}
    study = tmp_path / "study"
    write_study({key: read_volume(path) for key, path in paths[names[1]].items()}, study, "ge")
    manifest = tmp_path / "cohort.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "t1", "t1c", "t2", "flair", "study", "visit_date"])
        writer.writerow([names[0], *(str(paths[names[0]][k]) for k in SEQUENCE_SUFFIXES), "", "2018-05-01"])
        writer.writerow(["dicom_case", "", "", "", "", "study", ""])
    output = tmp_path / "out"
    assert main(["batch", str(manifest), "-o", str(output), *RUN_OPTIONS, "--workers", "2",
                 "--no-progress"]) == 0
    assert "done 2, failed 0" in capsys.readouterr().out
    summary = json.loads((output / names[0] / f"{names[0]}_tumorseg.json").read_text())
    assert summary["volumes_ml"]["WT"] > 10 and summary["provenance"]["command"][:2] == ["tumorseg", "segment"]
    dicom_outputs = {p.name for p in (output / "dicom_case").iterdir()}
    assert {"segmentation.json", "report.pdf", "tumorseg.log"} <= dicom_outputs and any("seg" in n.lower() and
                                                                                          n.endswith(".dcm")
                                                                                          for n in dicom_outputs)
    table = {row["case_id"]: row for row in csv.DictReader((output / COHORT_FILE).open())}
    assert table[names[0]]["visit_date"] == "2018-05-01" and float(table["dicom_case"]["WT_ml"]) > 10
    assert main(["batch", str(manifest), "-o", str(output), *RUN_OPTIONS, "--workers", "1",
                 "--no-progress"]) == 0
    assert "done 0, failed 0, already done 2" in capsys.readouterr().out
    shutil.rmtree(output)
