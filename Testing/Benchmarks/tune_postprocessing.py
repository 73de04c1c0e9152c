"""Choose post-processing settings on the cross-validation probabilities (held-out cases only).

Reads the probabilities that ``cross_validation.py`` kept, applies each candidate setting and prints
mean Dice/HD95 per region, best first by mean Dice over WT/TC/ET (HD95 breaks ties). With ``--components``,
instead the rules on which whole-tumour components to keep (after the registry's 1 mL minimum): all, only the
largest, those at least a share of the largest, those holding core, or grown by hysteresis to a lower threshold.
With ``--flair-growth``, whole tumour grown into FLAIR-bright tissue next to it (and, optionally, thinned where
FLAIR is not bright): every rule's mean WT Dice, and the rule chosen on four folds scored on the fifth.

    python Testing/Benchmarks/tune_postprocessing.py [--cv runs/cv] [--components | --flair-growth]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from TumorSegLib.labels import Region, labels_from_region_masks, region_masks, to_internal_labels
from TumorSegLib.metrics import dice, hd95
from TumorSegLib.models import MODELS_DIR, get_model
from TumorSegLib.postprocessing import PostProcessing, postprocess
from TumorSegLib.training import find_cases
from TumorSegLib.volume import read_volume

ROOT = Path(__file__).resolve().parents[2]


def held_out(cv: Path, cases: dict):
    """Per kept held-out prediction: (case, expert label volume, its region masks, (WT, TC, ET) probabilities)."""
    for path in sorted(Path(cv, "probabilities").glob("*.npz")):
        label = read_volume(cases[path.stem]["label"])
        probabilities = np.load(path)["probabilities"].astype(np.float32) / 255
        yield path.stem, label, region_masks(to_internal_labels(label.array)), probabilities


def region_scores(labels: np.ndarray, truth: dict) -> dict:
    """(Dice, HD95) per region of an internal label map against the expert's region masks."""
    predicted = region_masks(labels)
    return {r.value: (dice(predicted[r], truth[r]), hd95(predicted[r], truth[r])) for r in truth}


def component_rules(probabilities: np.ndarray, min_voxels: int) -> dict[str, np.ndarray]:
    """Internal label maps from (WT, TC, ET) probabilities (threshold 0.5), one per whole-tumour component rule."""
    wt, tc, et = (probabilities[c] > 0.5 for c in range(3))
    structure = np.ones((3, 3, 3), bool)
    components, count = ndimage.label(wt, structure)
    index = np.arange(1, count + 1)
    sizes = np.asarray(ndimage.sum_labels(np.ones(wt.shape), components, index))
    core_peak = np.asarray(ndimage.maximum(probabilities[1], components, index))
    largest = index == index[sizes.argmax()] if count else np.zeros(0, bool)

    def kept(chosen: np.ndarray) -> np.ndarray:
        return np.concatenate([[False], chosen & (sizes >= min_voxels)])[components]

    masks = {"all (registry)": kept(np.ones(count, bool)), "largest only": kept(largest)}
    for share in (0.05, 0.2):
        masks[f"at least {share:.0%} of the largest"] = kept(sizes >= share * sizes.max() if count else largest)
    masks["holding core (or largest)"] = kept((core_peak > 0.5) | largest)
    for low in (0.3, 0.4):  # grow the kept components through voxels above a lower threshold
        grown, _ = ndimage.label(probabilities[0] > low, structure)
        touched = np.unique(grown[masks["all (registry)"]])
        masks[f"hysteresis to {low}"] = np.isin(grown, touched[touched > 0])
    return {name: labels_from_region_masks(mask, tc & mask, et & mask) for name, mask in masks.items()}


def tune_components(cv: Path, cases: dict) -> None:
    min_component_ml = PostProcessing.from_dict(get_model().postprocessing).min_component_ml
    scores: dict[str, list] = {}
    for case, label, truth, probabilities in held_out(cv, cases):
        min_voxels = int(np.ceil(min_component_ml / label.voxel_volume_ml))
        for name, labels in component_rules(probabilities, min_voxels).items():
            scores.setdefault(name, []).append(region_scores(labels, truth))
        print(f"{case} " + " ".join(f"{s[-1]['WT'][0]:.3f}" for s in scores.values()), flush=True)
    for name, rows in scores.items():
        print(f"{name:28s} " + "  ".join(f"{r} {np.mean([row[r][0] for row in rows]):.4f}/"
                                         f"{np.mean([row[r][1] for row in rows]):.1f}" for r in ("WT", "TC", "ET")))


def robust_zscore(image: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """``image`` in robust SDs (IQR / 1.349) from the median of the ``normal`` voxels."""
    q1, median, q3 = np.percentile(image[normal], [25, 50, 75])
    return (image - median) / ((q3 - q1) / 1.349 + 1e-6)


def flair_growth_rules(wt_probability: np.ndarray, flair: np.ndarray) -> dict[tuple, np.ndarray]:
    """Whole-tumour masks per rule (min FLAIR z, max distance mm, min WT probability, thinning z or None): the
    thresholded whole tumour grown through voxels within the distance whose FLAIR is that bright (against the
    brain beyond 5 mm of the tumour) and whose probability is that high; thinning drops predicted voxels under
    0.8 probability whose FLAIR is below that z."""
    predicted, brain = wt_probability > 0.5, flair != 0
    distance = ndimage.distance_transform_edt(~predicted)
    z = robust_zscore(flair, brain & (distance > 5))
    masks = {}
    for min_z, max_mm, min_p, thin_z in itertools.product((1.0, 1.5, 2.0), (3, 8), (0.1, 0.2, 0.3), (None, 1.0)):
        candidates, _ = ndimage.label(predicted | ((z > min_z) & (distance <= max_mm) & (wt_probability > min_p)
                                                   & brain), np.ones((3, 3, 3), bool))
        touched = np.unique(candidates[predicted])
        grown = np.isin(candidates, touched[touched > 0])
        if thin_z is not None:
            grown &= ~(predicted & (z < thin_z) & (wt_probability < 0.8))
        masks[(min_z, max_mm, min_p, thin_z)] = grown
    return masks


def tune_flair_growth(cv: Path, cases: dict) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from enhancement_study import case_images  # N4-corrected as the pipeline gives them to the network
    from nested_choice import chosen_on_other_folds

    spec = get_model()
    fold_of = {case: k for k, fold in enumerate(json.loads((MODELS_DIR / "training" / "folds.json").read_text())
                                                ["folds"]) for case in fold}
    scores: dict[tuple, dict[str, float]] = {}
    for case, _, truth, probabilities in held_out(cv, cases):
        if case not in fold_of:
            continue
        flair = case_images(cases[case], spec, n4=True)["flair"].array
        scores.setdefault("none", {})[case] = dice(probabilities[0] > 0.5, truth[Region.WT])
        for rule, mask in flair_growth_rules(probabilities[0], flair).items():
            scores.setdefault(rule, {})[case] = dice(mask, truth[Region.WT])
        best = max(rule_scores[case] for rule_scores in scores.values())
        print(f"{case} WT {scores['none'][case]:.3f}, best rule {best:.3f}", flush=True)
    means = sorted(((float(np.mean(list(v.values()))), rule) for rule, v in scores.items()), key=lambda m: -m[0])
    for mean, rule in means[:10] + [m for m in means if m[1] == "none"]:
        print(f"{rule}: WT Dice {mean:.4f}")
    nested, scored = [], list(scores["none"])
    mean_on = lambda rule, mask: np.mean([scores[rule][c] for c, inside in zip(scored, mask) if inside])  # noqa: E731
    for k, chosen, held in chosen_on_other_folds(list(scores), [fold_of[c] for c in scored], mean_on):
        nested += [scores[chosen][c] for c, inside in zip(scored, held) if inside]
        print(f"fold {k}: chosen on the other folds {chosen}")
    print(f"chosen inside cross-validation: WT Dice {np.mean(nested):.4f} "
          f"(no growth {np.mean(list(scores['none'].values())):.4f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cv", default=str(ROOT / "runs" / "cv"))
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "brats2018"))
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--components", action="store_true", help="compare whole-tumour component rules")
    mode.add_argument("--flair-growth", action="store_true", help="whole tumour grown into FLAIR-bright tissue")
    args = parser.parse_args()
    cases = find_cases(Path(args.data))
    if args.components or args.flair_growth:
        (tune_components if args.components else tune_flair_growth)(Path(args.cv), cases)
        return
    grid = list(itertools.product([0.5], [0.0, 0.1, 0.5, 1.0, 2.0], [0.0, 0.25, 0.5, 1.0]))
    scores = {setting: [] for setting in grid}
    for case, label, truth, probabilities in held_out(Path(args.cv), cases):
        for setting in grid:
            labels = postprocess(label.with_array(probabilities), PostProcessing(*setting)).array
            scores[setting].append(region_scores(labels, truth))
        print(f"{case} done", flush=True)
    table = []
    for setting, rows in scores.items():
        means = {r: (float(np.mean([row[r][0] for row in rows])), float(np.mean([row[r][1] for row in rows])))
                 for r in ("WT", "TC", "ET")}
        table.append((np.mean([m[0] for m in means.values()]), -np.mean([m[1] for m in means.values()]), setting,
                      means))
    table.sort(reverse=True)
    for mean_dice, _, setting, means in table:
        print(f"threshold {setting[0]} min_component_ml {setting[1]} min_enhancing_ml {setting[2]}: mean Dice "
              f"{mean_dice:.4f}  " + "  ".join(f"{r} {d:.4f}/{h:.1f}" for r, (d, h) in means.items()))
    best = table[0][2]
    print(json.dumps({"threshold": best[0], "min_component_ml": best[1], "min_enhancing_ml": best[2]}))


if __name__ == "__main__":
    main()
