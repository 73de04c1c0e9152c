import json
import shutil

import numpy as np
import pytest

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
    assert any("[train] step 2" in line for line in lines)
    # Resuming with a longer schedule continues from step 2 rather than starting again.
    config.max_steps = 3
    lines.clear()
    train(cache, tmp_path / "run", config, ["CaseA"], log=lines.append)
    assert "resumed from step 2" in lines
    assert json.loads((tmp_path / "run" / "history.json").read_text())["summary"]["steps"] == 3
