"""The command line, end to end on real files: the synthetic sample and broken inputs."""

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from TumorSegLib.cli import main
from TumorSegLib.labels import to_internal_labels
from TumorSegLib.volume import Volume, read_volume, same_grid, write_volume

FAST_MODEL = "brats18-segresnet8"


def segment_args(files, output, *extra):
    return ["segment", "--t1", str(files["t1"]), "--t1c", str(files["t1c"]), "--t2", str(files["t2"]),
            "--flair", str(files["flair"]), "-o", str(output), "--model", FAST_MODEL, "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def segmented(synthetic_case_files, tmp_path_factory):
    output = tmp_path_factory.mktemp("out") / "case_seg.nii.gz"
    assert main(segment_args(synthetic_case_files, output)) == 0
    return output


def test_segment_writes_labels_on_the_input_grid_and_a_summary(segmented, synthetic_case_files, capsys):
    labels = read_volume(segmented)
    assert same_grid(labels, read_volume(synthetic_case_files["t1c"]))
    assert set(np.unique(labels.array)) <= {0, 1, 2, 4}  # the model writes BraTS 2018 codes by default
    summary = json.loads(segmented.with_name("case_seg.json").read_text())
    assert summary["model"] == FAST_MODEL and len(summary["model_sha256"][0]) == 64
    assert summary["device"] == "cpu" and summary["label_convention"] == "brats2018"
    assert set(summary["volumes_ml"]) == {"NCR", "ED", "ET", "TC", "WT"}
    voxels = (labels.array > 0).sum() * np.prod(labels.spacing) / 1000
    assert summary["volumes_ml"]["WT"] == pytest.approx(voxels, abs=1e-3)
    assert {"read", "preprocess", "inference", "postprocess", "total"} <= set(summary["timings_s"])


def test_the_sample_is_segmented_well(segmented, synthetic_case_files, capsys):
    assert main(["evaluate", "--pred", str(segmented), "--gt", str(synthetic_case_files["label"])]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["WT"]["dice"] > 0.85
    assert metrics["TC"]["dice"] > 0.4
    assert {"dice", "hd95", "sensitivity", "specificity", "lesion_dice", "lesion_hd95"} <= set(metrics["ET"])


def test_segment_reports_progress_lines(synthetic_case_files, tmp_path, capsys):
    assert main(segment_args(synthetic_case_files, tmp_path / "s.nrrd", "--label-convention", "brats2023")) == 0
    out = capsys.readouterr().out
    assert "[progress   0%] reading images" in out and "[progress 100%] done" in out
    assert set(np.unique(read_volume(tmp_path / "s.nrrd").array)) <= {0, 1, 2, 3}
    assert (tmp_path / "s.json").exists()


def test_segment_with_a_missing_sequence_still_runs_and_says_so(synthetic_case_files, tmp_path):
    files = dict(synthetic_case_files)
    args = ["segment", "--t1c", str(files["t1c"]), "--flair", str(files["flair"]), "-o", str(tmp_path / "x.nii.gz"),
            "--model", FAST_MODEL]
    assert main(args) == 0
    summary = json.loads((tmp_path / "x.json").read_text())
    assert summary["sequences_used"] == ["t1c", "flair"] and summary["sequences_missing"] == ["t1", "t2"]


def run_error(args, capsys):
    assert main(args) == 2
    return capsys.readouterr().err


def test_a_missing_file_is_named(synthetic_case_files, tmp_path, capsys):
    files = dict(synthetic_case_files, t2=tmp_path / "nope.nii.gz")
    error = run_error(segment_args(files, tmp_path / "o.nii.gz"), capsys)
    assert "image file not found" in error and "nope.nii.gz" in error
    assert not (tmp_path / "o.nii.gz").exists()


def test_a_2d_image_is_refused(synthetic_case_files, tmp_path, capsys):
    flat = tmp_path / "flat.nii.gz"
    sitk.WriteImage(sitk.Image(64, 64, sitk.sitkInt16), str(flat))
    files = dict(synthetic_case_files, flair=flat)
    assert "2D image" in run_error(segment_args(files, tmp_path / "o.nii.gz"), capsys)


def test_sequences_on_different_grids_are_refused_when_registration_is_off(synthetic_case_files, tmp_path, capsys):
    t2 = read_volume(synthetic_case_files["t2"])
    moved = write_volume(Volume(t2.array, t2.spacing, tuple(np.array(t2.origin) + 3), t2.direction),
                         tmp_path / "t2_moved.nii.gz")
    args = segment_args(dict(synthetic_case_files, t2=moved), tmp_path / "o.nii.gz", "--register", "off")
    error = run_error(args, capsys)
    assert "not on the same voxel grid" in error and "co-register" in error


def test_nan_voxels_are_refused(synthetic_case_files, tmp_path, capsys):
    t1 = read_volume(synthetic_case_files["t1"])
    array = t1.array.copy()
    array[50, 50, 50] = np.nan
    broken = write_volume(t1.with_array(array), tmp_path / "t1_nan.nii.gz")
    assert "NaN" in run_error(segment_args(dict(synthetic_case_files, t1=broken), tmp_path / "o.nii.gz"), capsys)


def test_no_t1c_and_no_flair_is_refused(synthetic_case_files, tmp_path, capsys):
    args = ["segment", "--t1", str(synthetic_case_files["t1"]), "-o", str(tmp_path / "o.nii.gz")]
    assert "at least a T1c or a FLAIR" in run_error(args, capsys)


def test_evaluate_refuses_a_file_that_is_not_a_label_map(synthetic_case_files, capsys):
    error = run_error(["evaluate", "--pred", str(synthetic_case_files["t1"]),
                       "--gt", str(synthetic_case_files["label"])], capsys)
    assert "not a tumour label map" in error


def test_evaluate_refuses_label_maps_on_different_grids(synthetic_case_files, tmp_path, capsys):
    label = read_volume(synthetic_case_files["label"])
    other = write_volume(Volume(label.array[:-1], label.spacing), tmp_path / "cut.nii.gz")
    assert "same grid" in run_error(["evaluate", "--pred", str(other), "--gt", str(synthetic_case_files["label"])],
                                    capsys)


def test_unknown_model_lists_the_known_ones(synthetic_case_files, tmp_path, capsys):
    args = segment_args(synthetic_case_files, tmp_path / "o.nii.gz")
    args[args.index(FAST_MODEL)] = "no-such-model"
    assert "known models" in run_error(args, capsys)


def test_demo_segments_the_sample_with_the_default_model(tmp_path, synthetic_case_files, capsys):
    # Reuse the already-built sample so the test times the model, not the generator.
    target = tmp_path / "TumorSeg_Synthetic_1"
    shutil.copytree(synthetic_case_files["t1"].parent, target)
    assert main(["demo", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "WT  whole tumour" in out
    summary = json.loads((tmp_path / "TumorSeg_Synthetic_1_tumorseg.json").read_text())
    assert summary["dice_vs_synthetic_truth"]["WT"] > 0.85
    truth = to_internal_labels(read_volume(synthetic_case_files["label"]).array)
    assert summary["volumes_ml"]["WT"] == pytest.approx((truth > 0).sum() / 1000, rel=0.25)


def test_track_prints_the_timeline_and_writes_table_and_plot(tmp_path, capsys):
    from TumorSegLib.labels import LabelConvention, from_internal_labels

    def sphere_labels(radius):
        grid = np.indices((60, 60, 40))
        distance = np.sqrt(((grid - np.array([30, 30, 20])[:, None, None, None]) ** 2).sum(0))
        labels = np.zeros((60, 60, 40), np.uint8)
        labels[distance < radius + 6] = 2
        labels[distance < radius] = 3
        return Volume(from_internal_labels(labels, LabelConvention.BRATS2018), (1.0, 1.0, 1.0))

    timepoints = []
    for index, (date, radius) in enumerate((("2024-01-10", 12), ("20240410", 8), ("2024-07-09", 11))):
        write_volume(sphere_labels(radius), tmp_path / f"v{index}_seg.nii.gz")
        timepoints.append({"id": f"v{index}", "date": date, "segmentation": f"v{index}_seg.nii.gz"})
    timeline = tmp_path / "timeline.json"
    timeline.write_text(json.dumps({"schema": "tumorseg-timeline", "schema_version": 1, "patient_id": "P1",
                                    "timepoints": timepoints}))
    assert main(["track", str(timeline), "--no-register", "--json"]) == 0
    out = capsys.readouterr().out
    rows = json.loads(out[: out.rindex("]") + 1])
    assert [row["timepoint"] for row in rows] == ["v0", "v1", "v2"]
    assert rows[1]["date"] == "2024-04-10"  # DICOM StudyDate form read as a date
    assert (tmp_path / "timeline_table.csv").exists() and (tmp_path / "timeline_volumes.png").exists()
    assert "imaging only" in out


def test_track_refuses_a_broken_timeline(tmp_path, capsys):
    timeline = tmp_path / "timeline.json"
    timeline.write_text("{not json")
    assert main(["track", str(timeline)]) == 2
    assert "timeline" in capsys.readouterr().err.lower()


def test_t1c_alone_runs_but_warns_that_oedema_is_unreliable(synthetic_case_files, tmp_path, capsys):
    args = ["segment", "--t1c", str(synthetic_case_files["t1c"]), "-o", str(tmp_path / "x.nii.gz"),
            "--model", FAST_MODEL]
    assert main(args) == 0
    assert "[warning] without T2 or FLAIR" in capsys.readouterr().out
    summary = json.loads((tmp_path / "x.json").read_text())
    assert [f["code"] for f in summary["qa"]] == ["no_t2_or_flair"]


def test_segment_with_uncertainty_writes_maps_scores_and_volume_intervals(synthetic_case_files, tmp_path):
    output = tmp_path / "u_seg.nii.gz"
    args = segment_args(synthetic_case_files, output, "--uncertainty", str(tmp_path / "maps"),
                        "--uncertainty-methods", "flips", "--uncertainty-samples", "2",
                        "--uncertainty-map", str(tmp_path / "entropy.nrrd"))
    assert main(args) == 0
    summary = json.loads(output.with_name("u_seg.json").read_text())
    record = summary["uncertainty"]
    assert record["methods"] == ["flips"] and record["samples"] == 2
    assert set(record["regions"]) == {"WT", "TC", "ET"} and "flagged" in record
    wt = record["volumes_ml"]["WT"]
    assert wt["p5"] <= wt["p95"] and len(wt["samples"]) == 2
    entropy = read_volume(tmp_path / "entropy.nrrd")
    assert same_grid(entropy, read_volume(synthetic_case_files["t1c"]))
    assert 0 <= entropy.array.min() and entropy.array.max() <= 1
    for name in record["maps"].values():
        assert same_grid(read_volume(tmp_path / "maps" / name), entropy)
    assert main(["evaluate", "--pred", str(output), "--gt", str(synthetic_case_files["label"]), "--no-lesion",
                 "--uncertainty", str(tmp_path / "maps"), "--reliability", str(tmp_path / "rel.png"),
                 "-o", str(tmp_path / "eval.json")]) == 0
    scores = json.loads((tmp_path / "eval.json").read_text())["uncertainty"]
    assert set(scores["ece"]) == {"WT", "TC", "ET"} and 0 <= scores["ece"]["WT"]["neighbourhood"] <= 1
    assert 0.5 < scores["error_auroc_entropy"]["neighbourhood"] <= 1  # uncertainty points at the errors
    assert (tmp_path / "rel.png").stat().st_size > 1000
