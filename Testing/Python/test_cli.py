"""The command line, end to end on real files: the synthetic sample and broken inputs."""

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from TumorSegLib.cli import main
from TumorSegLib.inference import inference_precision
from TumorSegLib.labels import to_internal_labels
from TumorSegLib.volume import Volume, read_volume, same_grid, write_volume

FAST_MODEL = "brats18-segresnet8"
# Runs that check the command's behaviour, not how well it segments, skip N4 (a third of a one-network run); the
# sample's accuracy and the demo are checked with it, as a user runs them.
NO_N4 = "--no-n4"


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
    assert summary["precision"] == inference_precision("cpu")  # bfloat16 where this CPU computes it natively
    assert summary["label_convention_why"] == "the model's"
    assert set(summary["volumes_ml"]) == {"NCR", "ED", "ET", "TC", "WT"}
    voxels = (labels.array > 0).sum() * np.prod(labels.spacing) / 1000
    assert summary["volumes_ml"]["WT"] == pytest.approx(voxels, abs=1e-3)
    assert {"read", "preprocess", "inference", "postprocess", "total"} <= set(summary["timings_s"])


def test_the_sample_is_segmented_well(segmented, synthetic_case_files, capsys):
    assert main(["evaluate", "--pred", str(segmented), "--gt", str(synthetic_case_files["label"])]) == 0
    metrics = json.loads(capsys.readouterr().out)
    # Bars a little below what brats18-segresnet8 measured on CPU (WT 0.929, TC 0.652, ET 0.653).
    assert metrics["WT"]["dice"] > 0.88
    assert metrics["TC"]["dice"] > 0.6
    assert metrics["ET"]["dice"] > 0.6
    assert {"dice", "hd95", "sensitivity", "specificity", "lesion_dice", "lesion_hd95"} <= set(metrics["ET"])


def test_segment_reports_progress_lines(synthetic_case_files, tmp_path, capsys):
    assert main(segment_args(synthetic_case_files, tmp_path / "s.nrrd", "--label-convention", "brats2023", NO_N4)) == 0
    out = capsys.readouterr().out
    assert "[progress   0%] reading images" in out and "[progress 100%] done" in out
    assert set(np.unique(read_volume(tmp_path / "s.nrrd").array)) <= {0, 1, 2, 3}
    assert (tmp_path / "s.json").exists()


def test_brats2023_named_inputs_get_brats2023_codes_unless_asked_otherwise(synthetic_case_files, tmp_path, capsys):
    names = {"t1": "t1n", "t1c": "t1c", "t2": "t2w", "flair": "t2f"}
    files = {key: tmp_path / f"BraTS-GLI-00042-000-{names[key]}.nii.gz" for key in names}
    for key, path in files.items():
        shutil.copy(synthetic_case_files[key], path)
    assert main(segment_args(files, tmp_path / "a.nii.gz", NO_N4)) == 0
    assert "3 ET), as the input files are named that way" in capsys.readouterr().out
    summary = json.loads((tmp_path / "a.json").read_text())
    assert summary["label_convention"] == "brats2023" and "BraTS 2023" in summary["label_convention_why"]
    codes = set(np.unique(read_volume(tmp_path / "a.nii.gz").array))
    assert 3 in codes and 4 not in codes
    assert main(segment_args(files, tmp_path / "b.nii.gz", "--label-convention", "brats2018", NO_N4)) == 0
    assert 4 in set(np.unique(read_volume(tmp_path / "b.nii.gz").array))
    assert json.loads((tmp_path / "b.json").read_text())["label_convention_why"] == "chosen"


def test_segment_with_a_missing_sequence_still_runs_and_says_so(synthetic_case_files, tmp_path):
    files = dict(synthetic_case_files)
    args = ["segment", "--t1c", str(files["t1c"]), "--flair", str(files["flair"]), "-o", str(tmp_path / "x.nii.gz"),
            "--model", FAST_MODEL, NO_N4]
    assert main(args) == 0
    summary = json.loads((tmp_path / "x.json").read_text())
    assert summary["sequences_used"] == ["t1c", "flair"] and summary["sequences_missing"] == ["t1", "t2"]


def run_error(args, capsys):
    assert main(args) == 2
    return capsys.readouterr().err


def test_affine_co_registration_is_chosen_on_the_command_line_and_reported(synthetic_case_files, tmp_path):
    args = ["segment", "--t1c", str(synthetic_case_files["t1c"]), "--flair", str(synthetic_case_files["flair"]),
            "-o", str(tmp_path / "a.nii.gz"), "--model", FAST_MODEL, "--register", "on",
            "--registration-kind", "affine", NO_N4]
    assert main(args) == 0
    flair = json.loads((tmp_path / "a.json").read_text())["registration"][1]
    assert flair["sequence"] == "flair" and flair["registered"] and "affine" in flair["reason"]
    assert flair["transform"]["type"] == "AffineTransform" and len(flair["transform"]["parameters"]) == 12
    # The sample's sequences are aligned already: the affine found must be close to identity (shift_mm is the
    # largest displacement of the image box's corners, where a 0.3 % scale error already moves ~0.5 mm).
    matrix = np.reshape(flair["transform"]["parameters"][:9], (3, 3))
    assert np.allclose(matrix, np.eye(3), atol=0.02) and flair["shift_mm"] < 2.0


def test_a_missing_file_is_named(synthetic_case_files, tmp_path, capsys):
    files = dict(synthetic_case_files, t2=tmp_path / "nope.nii.gz")
    error = run_error(segment_args(files, tmp_path / "o.nii.gz"), capsys)
    assert "--t2" in error and "file not found" in error and "nope.nii.gz" in error
    assert not (tmp_path / "o.nii.gz").exists()


def test_an_output_name_without_an_image_extension_is_refused_before_any_work(synthetic_case_files, tmp_path,
                                                                             capsys):
    # Found on a shared case: "-o out" ran the whole model, then the image writer failed on the name.
    error = run_error(segment_args(synthetic_case_files, tmp_path / "result"), capsys)
    assert f"-o {tmp_path / 'result'}" in error and ".nii.gz" in error and "--study" in error
    args = segment_args(synthetic_case_files, tmp_path / "o.nii.gz", "--uncertainty-map", str(tmp_path / "u.txt"))
    error = run_error(args, capsys)
    assert "--uncertainty-map" in error and "u.txt.nii.gz" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_number_format_not_understood_is_refused_before_any_work(synthetic_case_files, tmp_path, capsys,
                                                                    monkeypatch):
    monkeypatch.setenv("TUMORSEG_PRECISION", "fp8")
    error = run_error(segment_args(synthetic_case_files, tmp_path / "o.nii.gz"), capsys)
    assert "TUMORSEG_PRECISION='fp8'" in error and "float32" in error
    assert "reading images" not in capsys.readouterr().out and sorted(tmp_path.iterdir()) == []


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
    # Bars a little below what the default ensemble measured on CPU (WT 0.937, TC 0.649, ET 0.636).
    dice = summary["dice_vs_synthetic_truth"]
    assert dice["WT"] > 0.88 and dice["TC"] > 0.6 and dice["ET"] > 0.58
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


def test_t1c_alone_reports_the_core_only_and_says_why(synthetic_case_files, tmp_path, capsys):
    args = ["segment", "--t1c", str(synthetic_case_files["t1c"]), "-o", str(tmp_path / "x.nii.gz"),
            "--report", str(tmp_path / "x.html")]  # the default ensemble: its members' spread gives intervals
    assert main(args) == 0
    assert "[warning] no T2 or FLAIR: oedema cannot be seen" in capsys.readouterr().out
    summary = json.loads((tmp_path / "x.json").read_text())
    codes = [f["code"] for f in summary["qa"]]
    assert "no_t2_or_flair" in codes and all(f["severity"] == "warning" for f in summary["qa"]), codes
    # Oedema and the whole tumour are not reported (no T2/FLAIR); the core and its parts are.
    assert summary["not_assessed"] == ["ED", "WT"]
    assert summary["not_assessed_why"] == {"ED": "no T2/FLAIR", "WT": "no T2/FLAIR"}
    assert summary["volumes_ml"]["ED"] is None and summary["volumes_ml"]["WT"] is None
    assert summary["volumes_ml"]["TC"] > 0 and {"ED", "WT"}.isdisjoint(summary["uncertainty"]["volumes_ml"])
    labels = read_volume(tmp_path / "x.nii.gz").array
    assert 2 not in np.unique(labels) and (labels > 0).any()
    report = (tmp_path / "x.html").read_text()
    assert "No T2 or FLAIR series" in report and "no T2/FLAIR" in report


@pytest.fixture(scope="module")
def segmented_with_uncertainty(synthetic_case_files, tmp_path_factory):
    """The sample segmented with two flip samples: (label map, maps folder, entropy map)."""
    folder = tmp_path_factory.mktemp("uncertain")
    output = folder / "u_seg.nii.gz"
    args = segment_args(synthetic_case_files, output, "--uncertainty", str(folder / "maps"),
                        "--uncertainty-methods", "flips", "--uncertainty-samples", "2",
                        "--uncertainty-map", str(folder / "entropy.nrrd"), NO_N4)
    assert main(args) == 0
    return output, folder / "maps", folder / "entropy.nrrd"


def test_segment_with_uncertainty_writes_maps_scores_and_volume_intervals(segmented_with_uncertainty,
                                                                         synthetic_case_files, tmp_path):
    output, maps, entropy_map = segmented_with_uncertainty
    summary = json.loads(output.with_name("u_seg.json").read_text())
    record = summary["uncertainty"]
    assert record["methods"] == ["flips"] and record["samples"] == 2
    assert set(record["regions"]) == {"WT", "TC", "ET"}
    # The flagged list is exactly the regions whose score reached their threshold, most uncertain first.
    regions = record["regions"]
    assert all(r["flagged"] == (r["score"] >= r["threshold"]) for r in regions.values())
    assert record["flagged"] == sorted((k for k, r in regions.items() if r["flagged"]),
                                       key=lambda k: -regions[k]["score"])
    wt = record["volumes_ml"]["WT"]
    assert wt["p5"] <= wt["p95"] and len(wt["samples"]) == 2
    entropy = read_volume(entropy_map)
    assert same_grid(entropy, read_volume(synthetic_case_files["t1c"]))
    assert 0 <= entropy.array.min() and entropy.array.max() <= 1
    for name in record["maps"].values():
        assert same_grid(read_volume(maps / name), entropy)
    assert main(["evaluate", "--pred", str(output), "--gt", str(synthetic_case_files["label"]), "--no-lesion",
                 "--uncertainty", str(maps), "--reliability", str(tmp_path / "rel.png"),
                 "-o", str(tmp_path / "eval.json")]) == 0
    evaluation = json.loads((tmp_path / "eval.json").read_text())
    assert "cases" not in evaluation and set(evaluation) == {"WT", "TC", "ET", "uncertainty"}  # one case: as before
    scores = evaluation["uncertainty"]
    assert set(scores["ece"]) == {"WT", "TC", "ET"}
    # ECE recomputed here from the maps and the truth: the command reports the neighbourhood's calibration.
    from TumorSegLib.calibration import error_roi, expected_calibration_error

    truth = to_internal_labels(read_volume(synthetic_case_files["label"]).array)
    predicted = to_internal_labels(read_volume(output).array)
    roi = error_roi(predicted, truth, read_volume(output).spacing)
    expected = expected_calibration_error(read_volume(maps / "probability_WT.nii.gz").array, truth > 0, mask=roi)
    assert scores["ece"]["WT"]["neighbourhood"] == pytest.approx(expected, abs=1e-4)
    assert scores["ece"]["WT"]["image"] < scores["ece"]["WT"]["neighbourhood"]  # easy background dilutes the ECE
    assert 0.5 < scores["error_auroc_entropy"]["neighbourhood"] <= 1  # uncertainty points at the errors
    assert 0 <= scores["error_auroc_mutual_information"]["neighbourhood"] <= 1  # MI map present: scored too
    assert scores["reliability_diagram"] == str(tmp_path / "rel.png") and (tmp_path / "rel.png").stat().st_size > 1000


def degraded_cases(segmented_with_uncertainty, synthetic_case_files, folder, dilations=(0, 2, 4)):
    """Cases of increasing error: the prediction grown by ``dilations`` voxels (every region grows, and the
    prediction is already larger than the truth), each with a copy of the maps whose uncertainty score is
    set to rise with the dilation. All are cropped around the tumour to keep the evaluation fast."""
    from scipy import ndimage

    from TumorSegLib.geometry import crop
    from TumorSegLib.labels import LabelConvention, from_internal_labels

    output, maps, _ = segmented_with_uncertainty
    prediction, truth = read_volume(output), read_volume(synthetic_case_files["label"])
    tumour = np.argwhere((prediction.array > 0) | (truth.array > 0))
    box = tuple(slice(max(0, lo - 12), hi + 13) for lo, hi in zip(tumour.min(0), tumour.max(0)))
    gt = write_volume(crop(truth, box), folder / "gt.nii.gz")
    cropped_maps = {path.name: crop(read_volume(path), box) for path in maps.glob("*.nii.gz")}
    preds, folders = [], []
    for case, size in enumerate(dilations):
        cropped = crop(prediction, box)
        labels = to_internal_labels(cropped.array)
        if size:  # grey dilation grows ET over its neighbours, TC with it, and the whole tumour outwards
            labels = ndimage.grey_dilation(labels, size=(2 * size + 1,) * 3)
        labels = from_internal_labels(labels, LabelConvention.BRATS2018)
        preds.append(write_volume(cropped.with_array(labels), folder / f"pred{case}.nii.gz"))
        case_maps = folder / f"maps{case}"
        for name, volume in cropped_maps.items():
            write_volume(volume, case_maps / name)
        record = json.loads((maps / "uncertainty.json").read_text())
        for region in record["regions"].values():
            region["score"] = 0.1 * (case + 1)
        (case_maps / "uncertainty.json").write_text(json.dumps(record))
        folders.append(case_maps)
    return preds, gt, folders


def test_evaluate_several_cases_gives_each_case_their_mean_and_uncertainty_against_error(
        segmented_with_uncertainty, synthetic_case_files, tmp_path, capsys):
    preds, gt, folders = degraded_cases(segmented_with_uncertainty, synthetic_case_files, tmp_path)
    assert main(["evaluate", "--pred", *map(str, preds), "--gt", *[str(gt)] * 3, "--no-lesion",
                 "--uncertainty", *map(str, folders), "--reliability", str(tmp_path / "all.png")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"cases", "mean", "uncertainty_vs_error", "reliability_diagram"}
    assert [case["pred"] for case in result["cases"]] == [str(p) for p in preds]  # paired in order
    assert all(case["gt"] == str(gt) and "error_auroc_mutual_information" in case["uncertainty"]
               for case in result["cases"])
    for region in ("WT", "TC", "ET"):
        dices = [case[region]["dice"] for case in result["cases"]]
        assert dices[0] > dices[1] > dices[2], (region, dices)  # the set-up: more dilation, more error
        assert result["mean"][region]["dice"] == pytest.approx(np.mean(dices))
        assert result["mean"][region]["hd95"] == pytest.approx(np.mean([c[region]["hd95"] for c in result["cases"]]))
        # Scores were set to rise with the error: a perfect rank correlation, each score paired with its case.
        correlation = result["uncertainty_vs_error"][region]
        assert correlation["cases"] == 3 and correlation["spearman"] == pytest.approx(1.0)
        assert 0.5 < correlation["pearson"] <= 1 and 0 <= correlation["pearson_p"] <= 1
    assert (tmp_path / "all.png").stat().st_size > 1000


def test_evaluate_two_cases_says_the_correlation_needs_three(segmented_with_uncertainty, synthetic_case_files,
                                                            tmp_path, capsys):
    preds, gt, folders = degraded_cases(segmented_with_uncertainty, synthetic_case_files, tmp_path, (0, 2))
    assert main(["evaluate", "--pred", *map(str, preds), "--gt", str(gt), str(gt), "--no-lesion",
                 "--uncertainty", *map(str, folders)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["cases"]) == 2
    assert result["uncertainty_vs_error"]["WT"] == {"cases": 2, "note": "needs at least 3 cases, got 2"}
    (folders[1] / "uncertainty.json").unlink()
    error = run_error(["evaluate", "--pred", *map(str, preds), "--gt", str(gt), str(gt),
                       "--uncertainty", *map(str, folders)], capsys)
    assert f"{folders[1] / 'uncertainty.json'} not found" in error


def test_evaluate_refuses_unpaired_files(synthetic_case_files, capsys):
    label = str(synthetic_case_files["label"])
    error = run_error(["evaluate", "--pred", label, label, "--gt", label], capsys)
    assert "--pred has 2 files but --gt has 1" in error
    error = run_error(["evaluate", "--pred", label, label, "--gt", label, label, "--uncertainty", "one"], capsys)
    assert "--uncertainty has 1 folders for 2 cases" in error
