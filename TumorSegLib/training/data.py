"""Training data: BraTS-format case discovery, the preprocessed cache, and k-fold splits.

The cache holds each case already reoriented, resampled to the model spacing, cropped to the brain and
z-scored, quantised to uint8 (1/16 SD steps, plus uniform de-quantisation noise while training) so a
whole data set fits in memory — and in one transfer to a lent GPU. Like the pipeline by default, each sequence is
N4-corrected first, so a network trains on the images it will be given; a cache remembers whether it was.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..labels import Label, to_internal_labels
from ..sequences import FILE_SUFFIXES, SEQUENCES

__all__ = ["QUANT_OFFSET", "QUANT_SCALE", "find_cases", "cache_case", "cached_cases", "cached_with_n4",
           "prepare_cache", "load_cached_case", "make_folds"]

LABEL_SUFFIXES = ("seg",)
QUANT_OFFSET = 64.0
QUANT_SCALE = 16.0  # levels per standard deviation


def _find_file(folder: Path, case: str, suffixes: Sequence[str]) -> Path | None:
    for suffix in suffixes:
        for ext in (".nii.gz", ".nii", ".nrrd", ".mha"):
            path = folder / f"{case}_{suffix}{ext}"
            if path.exists():
                return path
            path = folder / f"{case}-{suffix}{ext}"  # BraTS 2023 names, e.g. BraTS-GLI-00000-000-t1c.nii.gz
            if path.exists():
                return path
    return None


def find_cases(data_dir: Path, sequences: Sequence[str] = SEQUENCES, need_labels: bool = True,
               skip_incomplete: bool = True) -> dict[str, dict[str, Path]]:
    """Cases of a BraTS-format folder (one sub-folder per case), by case name.

    Returns ``{case: {"t1": path, ..., "label": path}}``.

    Raises:
        ValueError: if no folder holds a complete case, or (``skip_incomplete=False``) if any folder is
            incomplete, naming every incomplete case and what it lacks.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data folder not found: {data_dir}")
    cases, problems = {}, []
    for folder in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        files = {key: _find_file(folder, folder.name, FILE_SUFFIXES[key]) for key in sequences}
        if need_labels:
            files["label"] = _find_file(folder, folder.name, LABEL_SUFFIXES)
        missing = [key for key, path in files.items() if path is None]
        if missing:
            problems.append(f"{folder.name}: no {', '.join(missing)}")
            continue
        cases[folder.name] = files
    if not cases:
        raise ValueError(f"no complete BraTS case in {data_dir} (expect <case>/<case>_t1.nii.gz, _t1ce, _t2, _flair"
                         + (", _seg" if need_labels else "") + "). " + "; ".join(problems[:5]))
    if problems and not skip_incomplete:
        raise ValueError(f"{len(problems)} case folder(s) of {data_dir} are incomplete: {'; '.join(problems)}. "
                         "Complete them, or pass --skip-incomplete to train without them")
    return cases


def cache_case(files: dict[str, Path], sequences: Sequence[str], spacing: Sequence[float],
               out_path: Path, n4: bool = True) -> dict:
    """Preprocess one case into ``out_path`` (.npz holding ``image`` (C,I,J,K) uint8, ``label`` uint8, ``brain``
    and ``n4``). With ``n4``, each sequence is first N4-corrected as the pipeline corrects skull-stripped input
    (fitted on SimpleITK's Otsu foreground)."""
    from ..clinical.bias import n4_bias_correction_all
    from ..geometry import crop, reorient, resample_to_grid
    from ..preprocessing import check_same_grid, prepare_input
    from ..qa import run_qa
    from ..volume import atomic_write, read_volume

    volumes = [read_volume(files[key]) for key in sequences]
    run_qa(dict(zip(sequences, volumes))).raise_for_errors()
    check_same_grid(volumes, list(sequences))
    if n4:
        volumes = list(n4_bias_correction_all(dict(zip(sequences, volumes))).values())
    prepared = prepare_input(volumes, spacing, margin=2)
    label = read_volume(files["label"])
    label = label.with_array(to_internal_labels(label.array))
    label = resample_to_grid(reorient(label), prepared.model_grid, order=0)
    label = crop(label, prepared.box)
    image = np.clip(np.round(prepared.image.array * QUANT_SCALE + QUANT_OFFSET), 0, 255).astype(np.uint8)
    # Compressed: a case is ~4 MB instead of ~20 MB, so the cache crosses to a lent GPU in a few device calls.
    atomic_write(out_path, lambda partial: np.savez_compressed(
        partial, image=image, label=label.array.astype(np.uint8), brain=prepared.brain_mask, n4=np.bool_(n4)))
    return {"shape": list(image.shape[1:]), "voxels": {k.name: int((label.array == k).sum()) for k in Label}}


def cached_cases(cache_dir: Path) -> list[str]:
    """Names of the cases cached in ``cache_dir``, sorted; a write in progress or interrupted (a temporary name,
    hidden, or an older cache's ``.partial.npz``) is not a case."""
    return sorted(p.stem for p in Path(cache_dir).glob("*.npz")
                  if not p.name.startswith(".") and not p.name.endswith(".partial.npz"))


def cached_with_n4(path: Path) -> bool:
    """Whether the cached case was N4-corrected (caches from before the flag: not)."""
    with np.load(path) as data:
        return bool(data["n4"]) if "n4" in data.files else False


def prepare_cache(data_dir: Path, cache_dir: Path, sequences: Sequence[str] = SEQUENCES,
                  spacing: Sequence[float] = (1.0, 1.0, 1.0), log: Callable[[str], None] = print,
                  skip_incomplete: bool = False, n4: bool = True) -> list[str]:
    """Preprocess every case of ``data_dir`` into ``cache_dir``. Returns names.

    Cases already cached with the same ``n4`` setting are kept; those cached with the other are made again (a
    mixed cache would train on two kinds of image). An incomplete case folder stops it (naming every one) unless
    ``skip_incomplete``: a case silently left out changes the split and the model without anyone knowing."""
    cases = find_cases(Path(data_dir), sequences, skip_incomplete=skip_incomplete)
    cache_dir = Path(cache_dir)
    for index, (case, files) in enumerate(cases.items(), 1):
        target = cache_dir / f"{case}.npz"
        if target.exists() and cached_with_n4(target) == n4:
            continue
        info = cache_case(files, sequences, spacing, target, n4=n4)
        log(f"[prepare {index}/{len(cases)}] {case} {info['shape']}{' (N4)' if n4 else ''}")
    return list(cases)


def load_cached_case(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image float32 z-scores (C,I,J,K), label uint8 (I,J,K), brain bool) of a cached case."""
    with np.load(path) as data:
        image = (data["image"].astype(np.float32) - QUANT_OFFSET) / QUANT_SCALE
        return image, data["label"], data["brain"]


def make_folds(cases: Sequence[str], k: int, seed: int) -> list[list[str]]:
    """Split ``cases`` into ``k`` folds: sorted, shuffled with ``seed``, dealt round-robin."""
    if not 2 <= k <= len(cases):
        raise ValueError(f"cannot make {k} folds of {len(cases)} cases")
    order = sorted(cases)
    random.Random(seed).shuffle(order)
    return [sorted(order[i::k]) for i in range(k)]


def extend_folds(folds: Sequence[Sequence[str]], cases: Sequence[str]) -> tuple[list[list[str]], dict[str, int]]:
    """Keep an earlier split and deal the cases it lacks to its smallest folds (lowest index first), so each
    network resumed from that split stays held out on its own cases (and the fold given a new case, on that case
    too). Returns (folds, {case: fold}).
    Cases the split lists but ``cases`` lacks are an error: their data is missing."""
    missing = sorted(set(sum(map(list, folds), [])) - set(cases))
    if missing:
        raise ValueError(f"the split lists cases the data lacks: {', '.join(missing)}; restore them, or remove the "
                         "split's folds.json to make a new split")
    extended = [sorted(fold) for fold in folds]
    added: dict[str, int] = {}
    known = set(sum(extended, []))
    for case in sorted(set(cases) - known):
        index = min(range(len(extended)), key=lambda i: (len(extended[i]), i))
        extended[index] = sorted([*extended[index], case])
        added[case] = index
    return extended, added
