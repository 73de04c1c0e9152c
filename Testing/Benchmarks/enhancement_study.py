"""Does the model invent enhancing tumour, and which enhancement check stops it? (held-out shared cases)

Every shared case has some enhancing tumour, so the study makes the non-enhancing cases itself: each case is
also segmented with its enhancement taken away (:func:`TumorSegLib.enhancement.remove_enhancement`: T1c inside
the expert's ET made to look like non-enhancing tumour, truth ET → NCR). Each case is segmented by the fold
network that never saw it. The probabilities are kept (``--out``), then every candidate
:class:`~TumorSegLib.enhancement.EnhancementRule` is scored: ET Dice on the original cases, and ET volume and
BraTS ET score on the made non-enhancing cases (an empty ET scores 1 there, any false ET 0). The best by a 3:1
mix of the two goes into the registry.

    python Testing/Benchmarks/enhancement_study.py [--data ../shared/data/brats2018] [--out runs/enhancement]
        [--without-t1] [--moved] [--no-n4]

As the pipeline does by default, every sequence is N4-corrected before anything else (``--no-n4``: not, as the
figures before N4 became the default); the choice is kept in ``OUT/study.json`` and every later read of the
kept probabilities sees the same images the network saw.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from nested_choice import chosen_on_other_folds  # beside this script
from scipy import ndimage

from TumorSegLib.clinical.bias import n4_bias_correction_all
from TumorSegLib.enhancement import (
    EnhancementRule,
    EnhancementRules,
    apply_rule,
    enhancement_contrast,
    remove_enhancement,
)
from TumorSegLib.inference import Predictor
from TumorSegLib.labels import Label, to_internal_labels
from TumorSegLib.metrics import dice
from TumorSegLib.models import MODELS_DIR, get_model
from TumorSegLib.options import ClinicalOptions
from TumorSegLib.pipeline import segment
from TumorSegLib.postprocessing import PostProcessing, postprocess
from TumorSegLib.training import find_cases
from TumorSegLib.volume import Volume, read_volume

ROOT = Path(__file__).resolve().parents[2]
CANDIDATES = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)


def made_non_enhancing(images: dict[str, Volume], truth: np.ndarray) -> tuple[dict[str, Volume], np.ndarray]:
    brain = np.any([v.array != 0 for v in images.values()], axis=0)
    t1c, labels = remove_enhancement(images["t1c"].array, images["t1"].array, truth, brain)
    return {**images, "t1c": images["t1c"].with_array(np.where(brain, t1c, 0).astype(np.float32))}, labels


def study_n4(out: Path) -> bool:
    """Whether the study kept in ``out`` N4-corrected its images (directories from before the marker: no)."""
    marker = out / "study.json"
    return bool(json.loads(marker.read_text())["n4"]) if marker.exists() else False


def case_images(case_files: dict, spec, n4: bool) -> dict[str, Volume]:
    """The case's sequences as the network saw them: N4-corrected on SimpleITK's Otsu foreground, as the
    pipeline does for skull-stripped input, when ``n4``."""
    images = {key: read_volume(case_files[key]) for key in spec.sequences}
    return n4_bias_correction_all(images) if n4 else images


def predict(out: Path, folds: list[list[str]], cases: dict, spec, n4: bool) -> None:
    """Held-out probabilities of every case, original and made non-enhancing (kept; reruns skip them)."""
    marker = out / "study.json"
    if (marker.exists() or any(out.glob("*.npz"))) and study_n4(out) != n4:
        raise SystemExit(f"{out} holds probabilities made {'with' if study_n4(out) else 'without'} N4: "
                         "choose another --out, or the matching --n4/--no-n4")
    marker.write_text(json.dumps({"n4": n4}))
    for k, fold_cases in enumerate(folds):
        predictor = None
        for case in fold_cases:
            if all((out / f"{case}_{kind}.npz").exists() for kind in ("original", "nonenhancing")):
                continue
            predictor = predictor or Predictor(spec, "cpu", members=[spec.member_index(f"fold{k}")])
            images = case_images(cases[case], spec, n4)
            truth = to_internal_labels(read_volume(cases[case]["label"]).array)
            for kind, (inputs, _) in (("original", (images, truth)), ("nonenhancing", made_non_enhancing(images, truth))):
                start = time.perf_counter()
                # Already corrected when n4: the pipeline's own N4 would run a second time.
                result = segment(inputs, predictor=predictor, clinical=ClinicalOptions(n4=False))
                np.savez_compressed(out / f"{case}_{kind}.npz",
                                    probabilities=np.round(result.probabilities.array * 255).astype(np.uint8))
                print(f"fold {k} {case} {kind}: {time.perf_counter() - start:.0f} s", flush=True)


def held_out_cases(out: Path, cases: dict, spec):
    """The cases whose held-out probabilities ``predict`` kept in ``out``: (case, images, truth, brain mask)."""
    n4 = study_n4(out)
    for path in sorted(out.glob("*_original.npz")):
        case = path.name[: -len("_original.npz")]
        images = case_images(cases[case], spec, n4)
        truth = to_internal_labels(read_volume(cases[case]["label"]).array)
        yield case, images, truth, np.any([v.array != 0 for v in images.values()], axis=0)


def kept_probabilities(out: Path, case: str, kind: str, grid: Volume) -> Volume:
    """The kept probabilities of ``case`` (``original`` or ``nonenhancing``) on the case's ``grid``."""
    return grid.with_array(np.load(out / f"{case}_{kind}.npz")["probabilities"].astype(np.float32) / 255)


def rules(current: EnhancementRule | None = None) -> list[EnhancementRule]:
    """The candidates: a voxel threshold, alone or with pieces needing strongly enhancing voxels, with or without
    smoothing, a smallest piece and a least total (the grid a first, wider search narrowed down to), and the
    registry's ``current`` rule, so that a new choice is always measured against it."""
    totals = (0.0, 1.5, 2.0, 3.0)
    grid = [EnhancementRule()]
    if current is not None and current.active:
        grid += [current] + [replace(current, min_total_ml=total) for total in totals]
    for smoothing in (0.0, 1.0):
        for low in (1.0, 1.5):
            for high, seeds in ((0.0, 0), (2.5, 50), (2.5, 200), (3.0, 200)):
                grid += [EnhancementRule(low, high, seeds, smoothing, piece, total)
                         for piece in (0.0, 1.0) for total in totals]
    return list(dict.fromkeys(grid))  # the current rule may be on the grid already


def summarise(et_dice: list[float], false_et_ml: list[float]) -> dict:
    """Mean ET Dice on the originals, false ET on the made-non-enhancing cases, and the objective: most glioma
    cases enhance, so the two sets weigh 3:1, as a mixed test set might."""
    et_score = float(np.mean([v == 0 for v in false_et_ml]))
    return {"mean_et_dice_original": round(float(np.mean(et_dice)), 4),
            "mean_false_et_ml": round(float(np.mean(false_et_ml)), 2),
            "cases_over_1ml": int(sum(v > 1 for v in false_et_ml)), "nonenhancing_et_score": round(et_score, 4),
            "objective": round(0.75 * float(np.mean(et_dice)) + 0.25 * et_score, 4)}


def score(out: Path, cases: dict, spec, with_t1: bool = True) -> list[dict]:
    """Per candidate rule: ET Dice (original cases), ET mL and BraTS ET score (made non-enhancing), per case;
    ``with_t1=False`` judges enhancement without the T1 (as for a study without one)."""
    settings = PostProcessing.from_dict({**spec.postprocessing, "enhancement": {}})
    registry = EnhancementRules.from_dict(spec.postprocessing.get("enhancement"))
    candidates = rules(registry.with_t1 if with_t1 else registry.without_t1)
    rows = [{"rule": asdict(rule), "cases": [], "original_et_dice": [], "false_et_ml": []} for rule in candidates]
    for case, images, truth, brain in held_out_cases(out, cases, spec):
        altered, _ = made_non_enhancing(images, truth)
        for kind, inputs in (("original", images), ("nonenhancing", altered)):
            labels = postprocess(kept_probabilities(out, case, kind, images["t1c"]), settings).array
            tumour = ndimage.binary_dilation(labels > 0, np.ones((3, 3, 3), bool), iterations=3)
            contrast = enhancement_contrast(inputs["t1c"].array, inputs["t1"].array if with_t1 else None,
                                            brain & ~tumour)
            per_piece: dict[EnhancementRule, np.ndarray] = {}  # rules differing only in the least total
            for row, rule in zip(rows, candidates):
                piecewise = replace(rule, min_total_ml=0.0)
                if piecewise not in per_piece:
                    per_piece[piecewise] = apply_rule(labels == Label.ET, contrast, piecewise)
                et = per_piece[piecewise]
                # As postprocess and the rule's least total: too little ET in all to be real.
                if et.sum() * 0.001 < max(settings.min_enhancing_ml, rule.min_total_ml):
                    et = np.zeros_like(et)
                if kind == "original":
                    row["cases"].append(case)
                    row["original_et_dice"].append(round(dice(et, truth == Label.ET), 4))
                else:
                    row["false_et_ml"].append(round(float(et.sum()) * 0.001, 2))
        print(f"{case} scored", flush=True)
    for row in rows:
        row.update(summarise(row["original_et_dice"], row["false_et_ml"]))
    return sorted(rows, key=lambda row: -row["objective"])


def chosen_inside_cv(table: list[dict], folds: list[list[str]]) -> dict:
    """The rule chosen by the objective on four folds' cases, scored on the fifth's, pooled over the folds: what
    choosing a rule on these cases is worth on cases it was not chosen on."""
    fold_of = {case: k for k, fold in enumerate(folds) for case in fold}
    column = lambda row, name, mask: np.array(row[name])[mask]  # noqa: E731
    objective = lambda row, mask: summarise(column(row, "original_et_dice", mask),  # noqa: E731
                                            column(row, "false_et_ml", mask))["objective"]
    et_dice, false_et_ml, chosen = [], [], []
    for _, best, held in chosen_on_other_folds(table, [fold_of.get(case) for case in table[0]["cases"]], objective):
        chosen.append(best["rule"])
        et_dice += list(column(best, "original_et_dice", held))
        false_et_ml += list(column(best, "false_et_ml", held))
    return {**summarise(et_dice, false_et_ml), "chosen_per_fold": chosen}


def moved_voxels(out: Path, cases: dict, spec) -> list[dict]:
    """Where the registry's rule moves ET that does not enhance, on the original held-out predictions: the
    expert's label of those voxels, and the mean TC Dice if they went to the core (as now) or to oedema."""
    settings = PostProcessing.from_dict({**spec.postprocessing, "enhancement": {}})
    rule = EnhancementRules.from_dict(spec.postprocessing.get("enhancement")).with_t1
    rows = []
    for case, images, truth, brain in held_out_cases(out, cases, spec):
        labels = postprocess(kept_probabilities(out, case, "original", images["t1c"]), settings).array
        tumour = ndimage.binary_dilation(labels > 0, np.ones((3, 3, 3), bool), iterations=3)
        contrast = enhancement_contrast(images["t1c"].array, images["t1"].array, brain & ~tumour)
        moved = (labels == Label.ET) & ~apply_rule(labels == Label.ET, contrast, rule)
        core, true_core = np.isin(labels, (Label.NCR, Label.ET)), np.isin(truth, (Label.NCR, Label.ET))
        rows.append({"case": case, "moved_ml_by_true_label": {
            name: round(float((moved & (truth == code)).sum()) * 0.001, 1)
            for name, code in (("background", 0), ("NCR", Label.NCR), ("ED", Label.ED), ("ET", Label.ET))},
            "tc_dice_moved_to_core": round(dice(core, true_core), 4),
            "tc_dice_moved_to_oedema": round(dice(core & ~moved, true_core), 4)})
        print(json.dumps(rows[-1]), flush=True)
    for key in ("tc_dice_moved_to_core", "tc_dice_moved_to_oedema"):
        print(f"mean {key}: {np.mean([row[key] for row in rows]):.3f}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "brats2018"))
    parser.add_argument("--out", default=str(ROOT / "runs" / "enhancement"))
    parser.add_argument("--model", default=None)
    parser.add_argument("--without-t1", action="store_true", help="judge enhancement without the T1")
    parser.add_argument("--moved", action="store_true", help="only: where the registry's rule moves non-enhancing "
                        "ET (the expert's labels there; core or oedema)")
    parser.add_argument("--n4", action=argparse.BooleanOptionalAction, default=True,
                        help="N4-correct every sequence first, as the pipeline does by default")
    args = parser.parse_args()
    spec = get_model(args.model)
    folds = json.loads((MODELS_DIR / "training" / "folds.json").read_text())["folds"]
    cases = find_cases(Path(args.data))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    predict(out, folds, cases, spec, args.n4)
    if args.moved:
        (out / "moved_voxels.json").write_text(json.dumps(moved_voxels(out, cases, spec), indent=2))
        return
    table = score(out, cases, spec, with_t1=not args.without_t1)
    nested = chosen_inside_cv(table, folds)
    name = f"enhancement_study{'_without_t1' if args.without_t1 else ''}"
    (out / f"{name}.json").write_text(json.dumps(table, indent=2))
    (out / f"{name}_nested.json").write_text(json.dumps(nested, indent=2))
    for row in table + [{"rule": "chosen inside cross-validation", **nested}]:
        print(f"{row['rule']}: ET Dice (original) {row['mean_et_dice_original']:.4f}, false ET on made non-enhancing "
              f"cases {row['mean_false_et_ml']:.2f} mL mean, {row['cases_over_1ml']} over 1 mL, BraTS ET score "
              f"{row['nonenhancing_et_score']:.3f}, objective {row['objective']:.4f}")


if __name__ == "__main__":
    main()
