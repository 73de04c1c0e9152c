import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from Testing.script_modules import load_script
from TumorSegLib.inference import inference_precision
from TumorSegLib.training import QUANT_SCALE, TrainConfig, cache_case, find_cases, load_cached_case, make_folds, train


@pytest.fixture(scope="module")
def brats_folder(synthetic_case_files, tmp_path_factory):
    """A BraTS-format data folder holding two copies of the synthetic case."""
    root = tmp_path_factory.mktemp("brats")
    source = synthetic_case_files["t1"].parent
    for name in ("CaseA", "CaseB"):
        folder = root / name
        folder.mkdir()
        for path in source.iterdir():
            shutil.copy(path, folder / path.name.replace(source.name, name))
    return root


def test_find_cases_lists_complete_cases(brats_folder):
    cases = find_cases(brats_folder)
    assert sorted(cases) == ["CaseA", "CaseB"]
    assert cases["CaseA"]["t1c"].name == "CaseA_t1ce.nii.gz"


def test_find_cases_says_what_is_missing(tmp_path):
    (tmp_path / "Case1").mkdir()
    (tmp_path / "Case1" / "Case1_t1.nii.gz").write_bytes(b"")
    with pytest.raises(ValueError, match="Case1: no t1c, t2, flair, label"):
        find_cases(tmp_path)


def test_folds_are_disjoint_complete_and_reproducible():
    cases = [f"case{i}" for i in range(28)]
    folds = make_folds(cases, 5, seed=1)
    assert sorted(sum(folds, [])) == sorted(cases)
    assert [len(f) for f in folds] == [6, 6, 6, 5, 5]
    assert folds == make_folds(list(reversed(cases)), 5, seed=1)
    assert folds != make_folds(cases, 5, seed=2)


def test_cached_case_is_cropped_normalised_and_labelled(brats_folder, synthetic_case, tmp_path):
    files = find_cases(brats_folder)["CaseA"]
    info = cache_case(files, ("t1", "t1c", "t2", "flair"), (1.0, 1.0, 1.0), tmp_path / "CaseA.npz")
    image, label, brain = load_cached_case(tmp_path / "CaseA.npz")
    assert image.shape[0] == 4 and image.shape[1:] == label.shape == brain.shape
    assert image.shape[1:] < synthetic_case.labels.shape  # cropped to the brain
    # z-scores inside the brain, to within the cache's quantisation step
    assert abs(image[1][brain].mean()) < 2 / QUANT_SCALE and abs(image[1][brain].std() - 1) < 0.02
    truth = synthetic_case.labels.array
    assert info["voxels"]["ET"] == (truth == 3).sum() and set(np.unique(label)) == {0, 1, 2, 3}


def test_cache_is_n4_corrected_like_the_pipeline_and_remade_when_the_setting_changes(tiny_brats_folder, tmp_path,
                                                                                   capsys):
    # The pipeline N4-corrects by default, so the cache does too (and says so); a cache made the other way is
    # made again by prepare_cache, and refused by `tumorseg train` when given directly (never a mixed cache).
    from TumorSegLib.cli import main
    from TumorSegLib.training import cached_with_n4, prepare_cache

    cache = tmp_path / "cache"
    lines = []
    cases = prepare_cache(tiny_brats_folder, cache, log=lines.append, n4=False)
    assert len(lines) == 3 and not any(cached_with_n4(cache / f"{c}.npz") for c in cases)
    plain = load_cached_case(cache / "Tiny1.npz")[0]
    lines.clear()
    prepare_cache(tiny_brats_folder, cache, log=lines.append)
    assert len(lines) == 3 and all("(N4)" in line for line in lines)
    assert all(cached_with_n4(cache / f"{c}.npz") for c in cases)
    assert not np.array_equal(load_cached_case(cache / "Tiny1.npz")[0], plain)
    lines.clear()
    prepare_cache(tiny_brats_folder, cache, log=lines.append)
    assert lines == []  # kept: same setting
    args = ["train", str(cache), "-o", str(tmp_path / "run"), "--folds", "3", "--fold", "0", "--max-steps", "1",
            "--patch-size", "32", "32", "32", "--batch-size", "1", "--device", "cpu"]
    assert main([*args, "--no-n4"]) == 2
    assert "prepared with N4" in capsys.readouterr().err and not (tmp_path / "run" / "fold0").exists()
    assert main(args) == 0
    assert json.loads((tmp_path / "run" / "fold0" / "config.json").read_text())["n4_cache"] is True


def test_training_runs_checkpoints_and_resumes(brats_folder, tmp_path):
    cache = tmp_path / "cache"
    for case, files in find_cases(brats_folder).items():
        cache_case(files, ("t1", "t1c", "t2", "flair"), (1.0, 1.0, 1.0), cache / f"{case}.npz")
    config = TrainConfig(patch_size=(32, 32, 32), batch_size=1, max_steps=2, warmup_steps=1, log_every=1,
                         device="cpu", init_filters=8)
    lines = []
    from monai.data import get_track_meta

    weights = train(cache, tmp_path / "run", config, ["CaseA"], ["CaseB"], log=lines.append)
    assert get_track_meta()  # MONAI's process-wide metadata switch is left as it was found
    assert weights.exists() and (tmp_path / "run" / "checkpoint.pt").exists()
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["summary"]["steps"] == 2 and "CaseB" in history["summary"]["validation"]
    assert history["summary"]["precision"] == inference_precision("cpu")  # as inference computes on this CPU
    assert any("step 2 loss" in line for line in lines)
    # Resuming with a longer schedule continues from step 2 rather than starting again.
    config.max_steps = 3
    lines.clear()
    train(cache, tmp_path / "run", config, ["CaseA"], log=lines.append)
    assert any("resumed from step 2" in line for line in lines)
    assert json.loads((tmp_path / "run" / "history.json").read_text())["summary"]["steps"] == 3


@pytest.fixture
def tiny_brats_folder(tmp_path):
    """Three small phantom cases (40 x 44 x 36 voxels of 1.5 mm: just above the QA's smallest head) in BraTS
    layout: enough for a 3-fold split."""
    from Testing.conftest import brain_phantom
    from TumorSegLib.labels import LabelConvention, from_internal_labels
    from TumorSegLib.volume import write_volume

    root = tmp_path / "data"
    for seed, case in enumerate(("Tiny1", "Tiny2", "Tiny3")):
        images, labels = brain_phantom(shape=(40, 44, 36), spacing=(1.5, 1.5, 1.5), seed=seed)
        for key, suffix in (("t1", "t1"), ("t1c", "t1ce"), ("t2", "t2"), ("flair", "flair")):
            write_volume(images[key], root / case / f"{case}_{suffix}.nii.gz")
        seg = labels.with_array(from_internal_labels(labels.array, LabelConvention.BRATS2018))
        write_volume(seg, root / case / f"{case}_seg.nii.gz")
    return root


def test_the_train_command_caches_splits_trains_one_fold_and_resumes(tiny_brats_folder, tmp_path, capsys):
    from TumorSegLib.cli import main

    out = tmp_path / "run"
    args = ["train", str(tiny_brats_folder), "-o", str(out), "--folds", "3", "--fold", "0", "--max-steps", "2",
            "--patch-size", "32", "32", "32", "--batch-size", "1", "--init-filters", "8", "--device", "cpu"]
    assert main(args) == 0
    split = json.loads((out / "folds.json").read_text())
    assert split["k"] == 3 and sorted(sum(split["folds"], [])) == ["Tiny1", "Tiny2", "Tiny3"]
    assert sorted(p.name for p in (out / "cache").glob("*.npz")) == ["Tiny1.npz", "Tiny2.npz", "Tiny3.npz"]
    held_out = split["folds"][0]
    config = json.loads((out / "fold0" / "config.json").read_text())
    assert config["val_cases"] == held_out and sorted(config["train_cases"] + held_out) == ["Tiny1", "Tiny2", "Tiny3"]
    assert config["init_filters"] == 8 and config["patch_size"] == [32, 32, 32]
    assert (out / "fold0" / "model.pt").exists() and (out / "fold0" / "checkpoint.pt").exists()
    history = json.loads((out / "fold0" / "history.json").read_text())
    assert history["summary"]["steps"] == 2 and set(history["summary"]["validation"]) == set(held_out)
    assert "[train] run 0: 2 training, 1 validation cases" in capsys.readouterr().out

    # A longer schedule on the same output continues from the checkpoint, on the same split and cache.
    args[args.index("--max-steps") + 1] = "3"
    assert main(args) == 0
    out_text = capsys.readouterr().out
    assert "resumed from step 2" in out_text and "[prepare" not in out_text  # cached cases are not redone
    assert json.loads((out / "fold0" / "history.json").read_text())["summary"]["steps"] == 3


def test_an_earlier_split_keeps_its_folds_and_takes_new_cases_into_its_smallest_folds():
    from TumorSegLib.training import extend_folds

    folds, added = extend_folds([["b", "c"], ["a"], ["d"]], ["a", "b", "c", "d", "e", "f"])
    assert folds == [["b", "c"], ["a", "e"], ["d", "f"]] and added == {"e": 1, "f": 2}
    assert extend_folds([["a"], ["b"]], ["a", "b"]) == ([["a"], ["b"]], {})
    with pytest.raises(ValueError, match="lacks: b;"):
        extend_folds([["a"], ["b"]], ["a", "c"])


def test_a_case_added_to_the_data_joins_the_split_of_an_earlier_run(tiny_brats_folder, tmp_path, capsys):
    # New shared cases must not break resuming: the earlier folds keep their cases, the new case is held out by one.
    from TumorSegLib.cli import main

    out = tmp_path / "run"
    out.mkdir()
    (out / "folds.json").write_text(json.dumps({"seed": 1, "k": 2, "folds": [["Tiny1"], ["Tiny2"]]}))  # no Tiny3
    args = ["train", str(tiny_brats_folder), "-o", str(out), "--fold", "1", "--max-steps", "1",
            "--patch-size", "32", "32", "32", "--batch-size", "1", "--device", "cpu"]
    assert main(args) == 0
    assert "new case Tiny3: added to fold 0" in capsys.readouterr().out
    split = json.loads((out / "folds.json").read_text())
    assert split["folds"] == [["Tiny1", "Tiny3"], ["Tiny2"]] and split["seed"] == 1
    assert not list(out.rglob(".*partial*"))


def test_the_train_command_refuses_a_bad_fold_and_a_split_of_other_cases(tiny_brats_folder, tmp_path, capsys,
                                                                        monkeypatch):
    from TumorSegLib.cli import main

    out = tmp_path / "run"
    base = ["train", str(tiny_brats_folder), "-o", str(out), "--folds", "3", "--device", "cpu"]
    assert main([*base, "--fold", "first"]) == 2
    assert "--fold first: give a fold index" in capsys.readouterr().err
    assert main([*base, "--fold", "0", "--init-filters", "4"]) == 2
    assert "--init-filters 4: give a multiple of 8" in capsys.readouterr().err
    assert main([*base, "--fold", "0", "--scanner-shift", "1.5"]) == 2
    assert "--scanner-shift 1.5: give a probability (0-1)" in capsys.readouterr().err
    monkeypatch.setenv("TUMORSEG_PRECISION", "half")
    assert main([*base, "--fold", "0"]) == 2
    assert "TUMORSEG_PRECISION='half' is not understood" in capsys.readouterr().err
    assert not out.exists()  # all refused before any case was preprocessed
    out.mkdir()
    monkeypatch.delenv("TUMORSEG_PRECISION")
    (out / "folds.json").write_text(json.dumps({"seed": 1, "k": 2, "folds": [["Tiny1"], ["Other"]]}))
    assert main([*base, "--fold", "0"]) == 2
    error = capsys.readouterr().err
    assert "tumorseg train: error:" in error and "lists cases the data lacks: Other" in error and "remove" in error
    (out / "folds.json").unlink()
    assert main([*base, "--fold", "3"]) == 2
    assert "--fold 3: the split has folds 0..2" in capsys.readouterr().err


def test_the_gpu_cache_is_compressed_into_parts_that_each_fit_one_device_call(tmp_path):
    gpu_prepare = load_script("scripts/gpu_prepare.py")
    cache, gpu = tmp_path / "cache", tmp_path / ".gpu"
    cache.mkdir()
    rng = np.random.default_rng(0)
    for n in range(6):  # uncompressed, as older caches are: a smooth image and a mostly empty label
        image = np.repeat(rng.integers(0, 255, (4, 40, 40, 1), dtype=np.uint8), 40, axis=3)
        np.savez(cache / f"Case{n}.npz", image=image, label=np.zeros((40, 40, 40), np.uint8),
                 brain=np.ones((40, 40, 40), bool))
    (cache / "Case9.npz.partial.npz").write_bytes(b"")  # interrupted writes (an older cache's, and today's)
    (cache / ".4242.partial.Case8.npz").write_bytes(b"")  # are not cases
    one = (cache / "Case0.npz").stat().st_size
    parts = gpu_prepare.split_cache(cache, gpu, budget_bytes=one // 4, first_budget_bytes=one // 8)
    sizes = [gpu_prepare.folder_bytes(part) for part in parts]
    assert sum(len(list(part.iterdir())) for part in parts) == 6 and sizes[0] <= one // 8
    assert all(size <= one // 4 for size in sizes) and len(parts) < 6  # several compressed cases per part
    with np.load(parts[0] / "Case0.npz") as data:
        assert np.array_equal(data["image"], np.load(cache / "Case0.npz")["image"])
    assert not list(gpu.glob(".*"))
    with pytest.raises(SystemExit, match="Case0.npz alone is larger"):
        gpu_prepare.split_cache(cache, gpu, budget_bytes=100)
    assert gpu_prepare.travelling_tree_bytes() < gpu_prepare.CALL_LIMIT_BYTES - 30 * 2**20


def test_every_fold_trains_together_in_one_process_and_a_later_session_starts_from_its_weights(
        tiny_brats_folder, tmp_path, capsys):
    # The GPU recipe: all runs at once (cases on the device once), then, on another lent GPU, more steps starting
    # from the weights that came back, the step count adding up.
    from TumorSegLib.cli import main

    first = tmp_path / "session1"
    args = ["train", str(tiny_brats_folder), "--folds", "3", "--fold", "every", "--max-steps", "2",
            "--patch-size", "32", "32", "32", "--batch-size", "1", "--device", "cpu", "--remove-enhancement", "0.5",
            "--region-weights", "1", "1", "2"]
    assert main([*args, "-o", str(first)]) == 0
    runs = sorted(p.name for p in first.iterdir() if p.is_dir() and p.name.startswith("fold"))
    assert runs == ["fold0", "fold1", "fold2", "foldall"]
    config = json.loads((first / "fold0" / "config.json").read_text())
    assert config["remove_enhancement"] == 0.5 and config["region_weights"] == [1.0, 1.0, 2.0]
    assert all(json.loads((first / run / "history.json").read_text())["summary"]["runs_together"] == 4 for run in runs)
    capsys.readouterr()
    second = tmp_path / "session2"
    brought_back = tmp_path / "brought_back"
    for run in runs:  # what a lent GPU sends back: weights and history, not the optimiser state
        (brought_back / run).mkdir(parents=True)
        for name in ("model.pt", "history.json"):
            shutil.copy(first / run / name, brought_back / run / name)
    assert main([*args, "-o", str(second), "--resume-from", str(brought_back)]) == 0
    assert "started foldall from" in capsys.readouterr().out
    summary = json.loads((second / "foldall" / "history.json").read_text())["summary"]
    assert summary["steps"] == 4 and summary["steps_this_run"] == 2


def test_enhancement_taken_away_in_training_patches_turns_et_into_ncr(brats_folder, tmp_path):
    import torch

    from TumorSegLib.training import PatchSampler, device_cases

    cache = tmp_path / "cache"
    files = find_cases(brats_folder)["CaseA"]
    cache_case(files, ("t1", "t1c", "t2", "flair"), (1.0, 1.0, 1.0), cache / "CaseA.npz")
    config = TrainConfig(patch_size=(32, 32, 32), batch_size=8, device="cpu", remove_enhancement=1.0,
                         tumour_fraction=1.0, sequence_dropout=0.0)
    cases = device_cases([load_cached_case(cache / "CaseA.npz")], config, "cpu")
    assert "plain" in cases[0] and not (cases[0]["plain"]["label"] == 3).any()
    t1c = config.sequences.index("t1c")
    enhancing = cases[0]["label"][0] == 3
    assert cases[0]["plain"]["image"][t1c][enhancing].float().mean() < cases[0]["image"][t1c][enhancing].float().mean() - 0.5
    _, targets = PatchSampler(cases, config, "cpu").batch()
    assert targets[:, 0].sum() > 0 and targets[:, 2].sum() == 0  # tumour in every patch, never enhancing
    assert torch.equal(targets[:, 1], targets[:, 1].bool().float())


def test_simulated_scanner_changes_alter_each_sequence_inside_the_brain_only(brats_folder, tmp_path):
    # Bias field, gamma, thick slices, low resolution, blur and noise, all forced on: outside the brain stays 0 as
    # inference writes it, each sequence keeps its in-brain mean and SD (what normalisation restores), the
    # labels are untouched, and one seed gives one result.
    import torch

    from TumorSegLib.training import PatchSampler, device_cases
    from TumorSegLib.training.sampler import _scanner_shift_transform

    cache = tmp_path / "cache"
    cache_case(find_cases(brats_folder)["CaseA"], ("t1", "t1c", "t2", "flair"), (1.0, 1.0, 1.0), cache / "A.npz")
    image, label, brain = load_cached_case(cache / "A.npz")
    config = TrainConfig(scanner_shift=1.0)
    sample = {"image": torch.from_numpy(image), "brain": torch.from_numpy(brain[None].astype(np.uint8))}
    changed = [_scanner_shift_transform(config, "cpu").set_random_state(7)(sample)["image"] for _ in range(2)]
    assert torch.equal(changed[0], changed[1])
    inside = torch.from_numpy(brain)
    for c in range(image.shape[0]):
        before, after = torch.from_numpy(image[c]), changed[0][c]
        assert (after[~inside] == 0).all()
        assert torch.allclose(after[inside].mean(), before[inside].mean(), atol=1e-3)
        assert torch.allclose(after[inside].std(), before[inside].std(), rtol=1e-3)
        assert (after[inside] - before[inside]).abs().mean() > 0.05
    config = TrainConfig(patch_size=(32, 32, 32), batch_size=2, device="cpu", scanner_shift=1.0, tumour_fraction=1.0)
    _, targets = PatchSampler(device_cases([(image, label, brain)], config, "cpu"), config, "cpu").batch()
    assert targets[:, 0].sum() > 0 and torch.equal(targets, targets.bool().float())


def test_a_crafted_checkpoint_cannot_run_code_when_training_resumes(tiny_brats_folder, tmp_path, capsys):
    import pickle

    from TumorSegLib.cli import main

    out = tmp_path / "run"
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            import os
            return os.system, (f"touch {marker}",)

    (out / "fold0").mkdir(parents=True)
    (out / "fold0" / "checkpoint.pt").write_bytes(pickle.dumps(Payload()))
    args = ["train", str(tiny_brats_folder), "-o", str(out), "--folds", "3", "--fold", "0", "--max-steps", "1",
            "--patch-size", "32", "32", "32", "--batch-size", "1", "--device", "cpu"]
    assert main(args) == 2
    assert not marker.exists()  # weights_only loading refused the pickle before anything ran
    assert "checkpoint" in capsys.readouterr().err


def test_the_gpu_training_script_runs_end_to_end_on_the_cpu_in_a_tiny_configuration(tiny_brats_folder, tmp_path,
                                                                                   monkeypatch):
    # scripts/train_gpu.sh as a lent GPU runs it, here on the CPU: parts of the cache gathered, every run in one
    # process started from earlier weights, and what comes back fits the device tool (at most 8 files) and installs.
    import subprocess
    import sys
    import tarfile

    from TumorSegLib.cli import main

    root = Path(__file__).resolve().parents[2]
    earlier = tmp_path / "earlier"
    tiny = ["--folds", "3", "--fold", "every", "--max-steps", "1", "--patch-size", "32", "32", "32",
            "--batch-size", "1", "--device", "cpu"]
    assert main(["train", str(tiny_brats_folder), "-o", str(earlier), *tiny]) == 0
    gpu = tmp_path / ".gpu"
    for index, case in enumerate(sorted((earlier / "cache").glob("*.npz"))):
        (gpu / f"part{index % 2 + 1}").mkdir(parents=True, exist_ok=True)
        shutil.copy(case, gpu / f"part{index % 2 + 1}" / case.name)
    for run in ("fold0", "fold1", "fold2", "foldall"):
        (gpu / "resume" / run).mkdir(parents=True)
        for name in ("model.pt", "history.json"):
            shutil.copy(earlier / run / name, gpu / "resume" / run / name)
    out = tmp_path / "out"
    env = {**os.environ, "GPU_DIR": str(gpu), "OUT_DIR": str(out), "DEVICE": "cpu", "MAX_STEPS": "1",
           "BATCH": "1", "FOLDS": str(earlier / "folds.json"), "PYTHON": sys.executable,
           "EXTRA_ARGS": "--patch-size 32 32 32", "BENCH_REPEATS": "1"}
    completed = subprocess.run(["bash", str(root / "scripts" / "train_gpu.sh")], env=env, capture_output=True,
                               text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "started foldall from" in completed.stdout
    returned = sorted(p.name for p in out.iterdir())
    assert returned == ["fold0.pt", "fold1.pt", "fold2.pt", "foldall.pt", "inference_benchmark.json",
                        "runs.tar.gz"] and len(returned) <= 8
    timing = json.loads((out / "inference_benchmark.json").read_text())  # the shipped ensemble, on that device
    assert timing["members"] == 6 and timing["device"] == "cpu" and timing["inference_s"] > 0
    with tarfile.open(out / "runs.tar.gz") as archive:
        history = json.loads(archive.extractfile("foldall/history.json").read())
        config = json.loads(archive.extractfile("foldall/config.json").read())
    assert history["summary"]["steps"] == 2  # one step earlier, one now
    assert config["scanner_shift"] == 0.15 and config["remove_enhancement"] == 0.3  # the GPU recipe's defaults
    assert config["n4_cache"] is True  # on the images the pipeline gives the network
    check_installing(out, earlier, tmp_path / "models", monkeypatch)


def check_installing(gpu_out: Path, run_folder: Path, models: Path, monkeypatch) -> None:
    """scripts/install_trained_weights.py into a copy of the registry: what a GPU brought back, then a run folder."""
    import hashlib
    import sys

    from TumorSegLib.models import MODELS_DIR, REGISTRY_FILE

    install = load_script("scripts/install_trained_weights.py")
    (models / "training").mkdir(parents=True)
    shutil.copy(MODELS_DIR / REGISTRY_FILE, models / REGISTRY_FILE)
    monkeypatch.setattr(install, "MODELS_DIR", models)

    def registered() -> dict:
        weights = json.loads((models / REGISTRY_FILE).read_text())["models"][0]["weights"]
        return {w["path"]: w["sha256"] for w in weights}

    def installed(folder: Path) -> dict:
        monkeypatch.setattr(sys, "argv", ["install_trained_weights.py", str(folder)])
        install.main()
        return registered()

    registry = installed(gpu_out)
    digest = hashlib.sha256((gpu_out / "fold1.pt").read_bytes()).hexdigest()
    assert registry["brats18-segresnet8-fold1.pt"] == digest and (models / "brats18-segresnet8-fold1.pt").exists()
    assert json.loads((models / "training" / "history_foldall.json").read_text())["summary"]["steps"] == 2
    (run_folder / "fold2" / "history.json").unlink()  # an unfinished run installs nothing
    with pytest.raises(SystemExit, match="fold2/history.json missing"):
        installed(run_folder)
    assert registered() == registry and hashlib.sha256((models / "brats18-segresnet8-fold1.pt").read_bytes()) \
        .hexdigest() == digest
    shutil.rmtree(run_folder / "fold2")
    stray = models.parent / "stray"  # a run no shipped member comes from installs nothing
    shutil.copytree(run_folder / "fold1", stray / "fold7")
    with pytest.raises(SystemExit, match="fold7: no shipped member is made by such a run"):
        installed(stray)
    assert registered() == registry and not (models / "brats18-segresnet8-fold7.pt").exists()
    registry = installed(run_folder)
    digest = hashlib.sha256((run_folder / "fold1" / "model.pt").read_bytes()).hexdigest()
    assert registry["brats18-segresnet8-fold1.pt"] == digest
    assert json.loads((models / "training" / "config_fold1.json").read_text())["train_cases"]


def test_an_incomplete_case_stops_training_naming_it_unless_asked_to_skip(tiny_brats_folder, tmp_path, capsys):
    from TumorSegLib.cli import main

    (tiny_brats_folder / "Tiny4").mkdir()
    shutil.copy(tiny_brats_folder / "Tiny1" / "Tiny1_t1.nii.gz", tiny_brats_folder / "Tiny4" / "Tiny4_t1.nii.gz")
    args = ["train", str(tiny_brats_folder), "-o", str(tmp_path / "run"), "--folds", "3", "--fold", "0",
            "--max-steps", "1", "--patch-size", "32", "32", "32", "--batch-size", "1", "--device", "cpu"]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "Tiny4: no t1c, t2, flair, label" in error and "--skip-incomplete" in error
    assert main([*args, "--skip-incomplete"]) == 0
    assert sorted(sum(json.loads((tmp_path / "run" / "folds.json").read_text())["folds"], [])) == \
        ["Tiny1", "Tiny2", "Tiny3"]


def test_the_cpu_training_script_carries_a_shipped_member_on_and_resumes(tiny_brats_folder, tmp_path):
    # scripts/train_cpu.sh in a tiny configuration: it starts from the shipped fold-0 member (its steps carried
    # on), with the recipe's enhancement removal, on an N4 cache; run again, it resumes from its checkpoint.
    import subprocess
    import sys

    from TumorSegLib.models import MODELS_DIR

    root = Path(__file__).resolve().parents[2]
    folds = tmp_path / "folds.json"
    folds.write_text(json.dumps({"seed": 1, "k": 3, "folds": [["Tiny1"], ["Tiny2"], ["Tiny3"]]}))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "DATA": str(tiny_brats_folder), "GPU_DIR": str(tmp_path / "gpu"),
           "OUT_DIR": str(out), "FOLDS": str(folds), "EXTRA_ARGS": "--patch-size 32 32 32 --batch-size 1 --max-steps 1"}

    def run(fold: str = "0", code: int = 0) -> str:
        completed = subprocess.run(["bash", str(root / "scripts" / "train_cpu.sh"), fold, "600"], env=env,
                                   capture_output=True, text=True, timeout=600)
        assert completed.returncode == code, completed.stdout + completed.stderr
        return completed.stdout + completed.stderr

    assert "fold '3': give 0-2" in run("3", code=2) and not out.exists()  # refused before anything is written
    assert "started fold0 from" in run()
    shipped = json.loads((MODELS_DIR / "training" / "history_fold0.json").read_text())["summary"]["steps"]
    history = json.loads((out / "fold0" / "history.json").read_text())["summary"]
    config = json.loads((out / "fold0" / "config.json").read_text())
    assert history["steps"] == shipped + 1 and history["validation"].keys() == {"Tiny1"}
    assert config["remove_enhancement"] == 0.3 and config["learning_rate"] == 5e-4 and config["n4_cache"] is True
    assert "resumed from step 1: fold0" in run()
    assert (out / "train.log").read_text().count("[train] fold0 done") == 2


def test_a_tuned_member_blended_with_its_start_becomes_a_run_folder_that_installs(tmp_path, monkeypatch):
    # scripts/blend_weights.py on a shipped member and a "tuned" copy of it: the blend is the tensors' mean, the run's
    # records travel with it, and nothing is overwritten or blended with the wrong weights.
    import sys

    import torch

    from TumorSegLib.models import MODELS_DIR
    from TumorSegLib.training import blend_weights, export_weights

    start_file = MODELS_DIR / "brats18-segresnet8-fold1.pt"
    start = torch.load(start_file, map_location="cpu", weights_only=True)
    tuned = {key: value.float() + 0.25 if value.is_floating_point() else value for key, value in start.items()}
    run = tmp_path / "cpu_fold1"
    (run / "fold1").mkdir(parents=True)
    export_weights(tuned, run / "fold1" / "model.pt")
    (run / "fold1" / "config.json").write_text(json.dumps({"train_cases": ["A"], "val_cases": ["B"]}))
    (run / "fold1" / "history.json").write_text(json.dumps({"summary": {"steps": 2140}, "history": []}))
    (run / "train.log").write_text("[train] fold1 done\n")
    blend = load_script("scripts/blend_weights.py")

    def blended(*extra: str) -> Path:
        monkeypatch.setattr(sys, "argv", ["blend_weights.py", str(run), "1", *extra])
        blend.main()
        return tmp_path / "cpu_fold1_blend50"

    out = blended()
    weights = torch.load(out / "fold1" / "model.pt", map_location="cpu", weights_only=True)
    key = "convInit.conv.weight"
    assert weights[key].dtype == torch.float16 and set(weights) == set(start)
    assert torch.allclose(weights[key].float(), start[key].float() + 0.125, atol=2e-3)  # halfway, in float16
    history = json.loads((out / "fold1" / "history.json").read_text())
    assert history["summary"]["steps"] == 2140 and history["blend"]["tuned_share"] == 0.5
    assert history["blend"]["start"] == "Resources/Models/brats18-segresnet8-fold1.pt"  # not this machine's path
    assert len(history["blend"]["start_sha256"]) == 64
    assert json.loads((out / "fold1" / "config.json").read_text())["val_cases"] == ["B"]
    assert (out / "train.log").exists() and not list(tmp_path.glob("*.partial"))
    before = (out / "fold1" / "model.pt").read_bytes()
    with pytest.raises(SystemExit, match="exists: give another -o"):
        blended()
    assert (out / "fold1" / "model.pt").read_bytes() == before  # an earlier blend is kept
    with pytest.raises(SystemExit, match="this run's own weights"):  # e.g. the run installed already
        blended("--start", str(run / "fold1" / "model.pt"), "-o", str(tmp_path / "again"))
    with pytest.raises(SystemExit, match="differ in their tensors"):
        torch.save({"other.weight": torch.zeros(1)}, tmp_path / "other.pt")
        blended("--start", str(tmp_path / "other.pt"), "-o", str(tmp_path / "again"))
    with pytest.raises(SystemExit):  # argparse: a share outside (0, 1]
        blended("--weight", "0", "-o", str(tmp_path / "again"))
    assert not (tmp_path / "again").exists()
    installed = tmp_path / "models"  # the shipped member is this run's blend already: no longer its start
    (installed / "training").mkdir(parents=True)
    shutil.copy(out / "fold1" / "model.pt", installed / start_file.name)
    (installed / "training" / "history_fold1.json").write_text(json.dumps(history))
    monkeypatch.setattr(blend, "MODELS_DIR", installed)
    with pytest.raises(SystemExit, match="a blend of them installed already"):
        blended("-o", str(tmp_path / "again"))
    with pytest.raises(SystemExit, match="a blend of them installed already"):  # named, too
        blended("--start", str(installed / start_file.name), "-o", str(tmp_path / "again"))
    with pytest.raises(SystemExit):  # a fold the model has no member for
        monkeypatch.setattr(sys, "argv", ["blend_weights.py", str(run), "7"])
        blend.main()
    assert not (tmp_path / "again").exists()
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        blend_weights(tuned, start, 1.5)
    assert torch.equal(blend_weights(tuned, start, 1.0)[key], tuned[key])
