"""Calibration and usefulness of TumorSeg's uncertainty on the shared BraTS cases, for the model card.

Each case is predicted by the fold network that never saw it (the ensemble member made by run ``fold<k>``,
split from ``Resources/Models/training/folds.json``), with the registry temperature set to 1, and sampled
with :func:`TumorSegLib.uncertainty.estimate_uncertainty` (default: 4 test-time flips). Results are mapped
back to the case's own grid and compared with the expert labels:

* ECE per region (15 equal-width bins) of the sampled mean probability, over the brain and over the tumour
  neighbourhood (predicted ∪ true tumour dilated by 5 mm), pooled over cases; reliability diagrams (PNG);
* AUROC of voxel uncertainty (normalised predictive entropy, mutual information) for finding wrong voxels;
* per-region uncertainty score against 1 − Dice (Spearman, Pearson), Dice of flagged vs unflagged regions,
  and how often the 5–95 % volume interval holds the expert's volume;
* temperature scaling: single-pass logits of brain voxels (a uniform sample per case) fitted per region
  channel on the other folds' cases and scored on the held-out fold (ECE, NLL before/after), plus the
  temperature fitted on every case — the value to store in the registry if calibration is off.

The ensemble method cannot be judged here: every case was seen in training by member 0 and four folds.
Every sequence is N4-corrected first, as the pipeline does by default (``--no-n4``: not, as the figures before
N4 became the default); each row records which, and a folder of the other setting is refused, never mixed.

    nice -n 10 python Testing/Benchmarks/calibration_study.py [--cases N] [--samples 4] [--methods flips]
        [--data ../shared/data/brats2018] [--out runs/calibration] [--no-n4]

Per-case results go to ``OUT/cases.jsonl`` as they finish (a rerun resumes); the summary to
``OUT/calibration.json``, the diagrams to ``OUT/reliability_roi.png`` and ``OUT/reliability_brain.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from TumorSegLib.calibration import (
    DEFAULT_BINS,
    Reliability,
    binary_nll,
    error_detection_auroc,
    error_roi,
    fit_temperature,
    region_reliability,
    reliability,
    reliability_diagram,
    uncertainty_error_correlation,
)
from TumorSegLib.inference import Predictor
from TumorSegLib.labels import REGIONS, Region, region_masks, to_internal_labels
from TumorSegLib.metrics import dice
from TumorSegLib.models import MODELS_DIR, get_model
from TumorSegLib.preprocessing import prepare_input, to_reference_grid
from TumorSegLib.training import find_cases
from TumorSegLib.uncertainty import FLAG_THRESHOLDS, estimate_uncertainty
from TumorSegLib.volume import read_volume

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))
from enhancement_study import case_images  # noqa: E402  (the sequences as the network sees them)

REGION_NAMES = [r.value for r in Region]


def balanced_order(folds: list[list[str]]) -> list[tuple[str, int]]:
    """(case, fold) taking one case of each fold in turn, so any prefix spreads over the folds."""
    order = []
    for index in range(max(len(f) for f in folds)):
        order += [(cases[index], k) for k, cases in enumerate(folds) if index < len(cases)]
    return order


def study_case(case: str, fold: int, files: dict, predictor: Predictor, args, rng) -> tuple[dict, dict]:
    """Metrics of one case, and its voxel sample for the temperature fit."""
    spec = predictor.spec
    images = case_images(files, spec, args.n4)
    truth = to_internal_labels(read_volume(files["label"]).array)
    # As pipeline.segment prepares it; every sequence is present, so the channels are in model order already.
    prepared = prepare_input([images[key] for key in spec.sequences], spec.spacing, margin=4)
    kept = {}

    def keep_first_pass(draw, logits):
        if not kept:
            kept["logits"] = prepared.image.with_array(logits.cpu().numpy())

    start = time.perf_counter()
    result = estimate_uncertainty(predictor, prepared.image, args.methods, samples=args.samples,
                                  brain_mask=prepared.brain_mask, seed=args.seed, on_sample=keep_first_pass)
    seconds = time.perf_counter() - start
    back = result.mapped(lambda volume, order: to_reference_grid(volume, prepared, order))
    spacing = back.labels.spacing
    brain = np.any(np.stack([v.array != 0 for v in images.values()]), axis=0)
    labels = back.labels.array
    roi = error_roi(labels, truth, spacing, within=brain)

    predicted, true = region_masks(labels), region_masks(truth)
    dices = {r.value: dice(predicted[r], true[r]) for r in Region}
    curves = {name: region_reliability(back.probabilities.array, truth, mask, args.bins)
              for name, mask in (("brain", brain), ("roi", roi))}
    voxel_ml = float(np.prod(spacing)) / 1000.0
    true_volumes = {r.value: float(true[r].sum()) * voxel_ml for r in Region}
    row = {
        "case": case, "fold": fold, "n4": args.n4, "seconds": round(seconds, 1), "samples": result.samples,
        "dice": dices,
        "ece": {name: {r.value: c[r].ece for r in Region} for name, c in curves.items()},
        "reliability_sums": {name: {r.value: [c[r].counts.tolist(), c[r].probability_sums.tolist(),
                                               c[r].positive_sums.tolist()] for r in Region}
                             for name, c in curves.items()},
        "auroc": {f"{measure}_{name}": error_detection_auroc(getattr(back, measure).array, labels, truth, mask)
                  for measure in ("entropy", "mutual_information") for name, mask in (("roi", roi), ("brain", brain))},
        "regions": {r.value: u.as_dict() for r, u in back.regions.items()},
        "volumes": {r.value: {"estimate": back.volumes[r.value].estimate_ml, "p5": back.volumes[r.value].low_ml,
                              "p95": back.volumes[r.value].high_ml, "true": round(true_volumes[r.value], 3)}
                    for r in Region},
        "errors_in_roi": int(((labels != truth) & roi).sum()), "roi_voxels": int(roi.sum()),
    }
    # Uniform sample of brain voxels of the first (plain) pass, for the temperature fit.
    logits = to_reference_grid(kept["logits"], prepared, order=1).array
    where = np.flatnonzero(brain)
    chosen = rng.choice(where, size=min(args.voxels_per_case, where.size), replace=False)
    targets = np.stack([np.isin(truth.ravel()[chosen], [int(x) for x in REGIONS[r]]) for r in Region])
    sample = {"logits": logits.reshape(3, -1)[:, chosen].astype(np.float32), "targets": targets,
              "roi": roi.ravel()[chosen]}
    return row, sample


def pooled(rows: list[dict], name: str, bins: int) -> dict[str, Reliability]:
    edges = np.linspace(0, 1, bins + 1)
    out = {}
    for region in REGION_NAMES:
        sums = [np.array(row["reliability_sums"][name][region]) for row in rows]
        out[region] = Reliability(edges, *sum(sums))
    return out


def temperature_study(samples: dict[str, dict], folds: dict[str, int], bins: int) -> dict:
    """Leave-one-fold-out temperature fit on single-pass logits, and the fit on every case."""
    def stack(cases):
        return (np.concatenate([samples[c]["logits"] for c in cases], 1),
                np.concatenate([samples[c]["targets"] for c in cases], 1),
                np.concatenate([samples[c]["roi"] for c in cases]))

    cases = sorted(samples)
    used_folds = sorted({folds[c] for c in cases})
    logits, targets, roi = stack(cases)
    before = 1 / (1 + np.exp(-logits))
    after = np.empty_like(before)
    per_fold = {}
    for k in used_folds:
        held = [c for c in cases if folds[c] == k]
        train = [c for c in cases if folds[c] != k]
        if not train:
            continue
        t = fit_temperature(*stack(train)[:2])
        per_fold[k] = t.round(4).tolist()
        index = np.concatenate([np.full(samples[c]["roi"].size, c in held) for c in cases])
        after[:, index] = 1 / (1 + np.exp(-logits[:, index] / t[:, None]))
    everything = fit_temperature(logits, targets)
    out = {"temperature_all_cases": everything.round(4).tolist(), "temperature_per_held_out_fold": per_fold,
           "voxels": int(roi.size), "note": "single-pass logits (temperature 1) of a uniform sample of brain voxels"}
    if per_fold:
        covered = np.concatenate([np.full(samples[c]["roi"].size, folds[c] in per_fold) for c in cases])
        for name, mask in (("brain", covered), ("roi", covered & roi)):
            out[name] = {region: {
                "ece_before": round(reliability(before[i][mask], targets[i][mask], bins).ece, 5),
                "ece_after": round(reliability(after[i][mask], targets[i][mask], bins).ece, 5),
                "nll_before": round(binary_nll(logits[i][mask], targets[i][mask]), 5),
                "nll_after": round(float(np.mean(-np.log(np.clip(np.where(targets[i][mask], after[i][mask],
                                                                           1 - after[i][mask]), 1e-12, 1)))), 5)}
                for i, region in enumerate(REGION_NAMES)}
    return out


def case_level(rows: list[dict]) -> dict:
    """Uncertainty score against 1 − Dice, flags, and interval coverage of the true volume."""
    out = {}
    for region in REGION_NAMES:
        scores = [row["regions"][region]["score"] for row in rows]
        dices = [row["dice"][region] for row in rows]
        entry = {"score_mean": round(float(np.mean(scores)), 4), "dice_mean": round(float(np.mean(dices)), 4)}
        if len(rows) >= 3:
            for measure in ("score", "mean_entropy", "epistemic"):
                values = [row["regions"][region][measure] for row in rows]
                entry[f"correlation_{measure}_vs_1_minus_dice"] = {
                    k: round(v, 4) for k, v in uncertainty_error_correlation(values, dices).items()}
        threshold = FLAG_THRESHOLDS[Region(region)]
        flagged = [d for s, d in zip(scores, dices) if s >= threshold]
        unflagged = [d for s, d in zip(scores, dices) if s < threshold]
        entry["flag_threshold"] = threshold
        entry["flagged"] = {"cases": len(flagged), "dice_mean": round(float(np.mean(flagged)), 4) if flagged else None}
        entry["unflagged"] = {"cases": len(unflagged),
                              "dice_mean": round(float(np.mean(unflagged)), 4) if unflagged else None}
        volumes = [row["volumes"][region] for row in rows]
        entry["interval_holds_true_volume"] = round(float(np.mean([v["p5"] <= v["true"] <= v["p95"]
                                                                   for v in volumes])), 4)
        entry["interval_holds_estimate"] = round(float(np.mean([v["p5"] <= v["estimate"] <= v["p95"]
                                                               for v in volumes])), 4)
        out[region] = entry
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "brats2018"))
    parser.add_argument("--out", default=str(ROOT / "runs" / "calibration"))
    parser.add_argument("--cases", type=int, default=0, help="first N cases, spread over the folds (0: all)")
    parser.add_argument("--methods", default="flips")
    parser.add_argument("--samples", type=int, default=3)  # the model card's figures
    parser.add_argument("--bins", type=int, default=DEFAULT_BINS)
    parser.add_argument("--voxels-per-case", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=None)
    parser.add_argument("--n4", action=argparse.BooleanOptionalAction, default=True,
                        help="N4-correct every sequence first, as the pipeline does by default")
    args = parser.parse_args()

    spec = replace(get_model(args.model), temperature=())  # fit on raw logits: Predictor divides by these
    folds = json.loads((MODELS_DIR / "training" / "folds.json").read_text())["folds"]
    if len(spec.weights) < len(folds) + 1:
        raise SystemExit(f"model '{spec.id}' has no fold networks (needs {len(folds) + 1} weight files)")
    files = find_cases(Path(args.data))
    order = [(c, k) for c, k in balanced_order(folds) if c in files]
    order = order[: args.cases] if args.cases else order
    out = Path(args.out)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    partial = out / "cases.jsonl"
    rows = {}
    if partial.exists():
        for line in partial.read_text().splitlines():
            row = json.loads(line)
            if row.get("n4", False) != args.n4:  # rows from before the flag were made without N4
                raise SystemExit(f"{partial} holds cases made {'with' if row.get('n4') else 'without'} N4: "
                                 "choose another --out, or the matching --n4/--no-n4")
            rows[row["case"]] = row
    rng = np.random.default_rng(args.seed)
    predictors: dict[int, Predictor] = {}
    for case, k in order:
        if case in rows and (out / "samples" / f"{case}.npz").exists():
            continue
        predictor = predictors.setdefault(k, Predictor(spec, "cpu", members=[spec.member_index(f"fold{k}")]))
        row, sample = study_case(case, k, files[case], predictor, args, rng)
        np.savez_compressed(out / "samples" / f"{case}.npz", **sample)
        rows[case] = row
        with open(partial, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"fold {k} {case} {row['seconds']}s " + " ".join(
            f"{r} dice {row['dice'][r]:.3f} score {row['regions'][r]['score']:.3f} ece {row['ece']['roi'][r]:.3f}"
            for r in REGION_NAMES) + f" auroc(roi) {row['auroc']['entropy_roi']:.3f}", flush=True)

    chosen = [rows[c] for c, _ in order if c in rows]
    samples = {row["case"]: dict(np.load(out / "samples" / f"{row['case']}.npz")) for row in chosen}
    fold_of = {row["case"]: row["fold"] for row in chosen}
    curves = {name: pooled(chosen, name, args.bins) for name in ("brain", "roi")}
    for name, regions in curves.items():
        reliability_diagram(regions, out / f"reliability_{name}.png",
                            f"Held-out reliability ({name}, {len(chosen)} cases, {args.methods} ×{args.samples})")

    def mean_of(key):
        values = [row["auroc"][key] for row in chosen if not np.isnan(row["auroc"][key])]
        return round(float(np.mean(values)), 4) if values else None

    summary = {
        "model": spec.id, "n4": args.n4, "methods": args.methods, "samples": args.samples, "cases": len(chosen),
        "bins": args.bins,
        "ece_pooled": {name: {r: round(c.ece, 5) for r, c in regions.items()} for name, regions in curves.items()},
        "auroc_mean_over_cases": {key: mean_of(key) for key in chosen[0]["auroc"]} if chosen else {},
        "case_level": case_level(chosen),
        "temperature": temperature_study(samples, fold_of, args.bins) if len(chosen) >= 2 else {},
        "seconds_per_case": round(float(np.mean([row["seconds"] for row in chosen])), 1) if chosen else None,
        "reliability": {name: {r: c.as_dict() for r, c in regions.items()} for name, regions in curves.items()},
    }
    (out / "calibration.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "reliability"}, indent=2))


if __name__ == "__main__":
    main()
