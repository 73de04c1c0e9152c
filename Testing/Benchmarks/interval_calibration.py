"""Fit the volume intervals' calibration on held-out predictions, and measure their coverage honestly.

Reads the held-out probabilities ``enhancement_study.py`` kept (each case segmented by the fold network that
never saw it; original and made-non-enhancing cases), post-processes them as the pipeline does (with the
registry's enhancement check), and fits split-conformal quantiles
(:class:`TumorSegLib.uncertainty.IntervalCalibration`): per volume key, the score ``|true − estimate| /
(estimate + stabiliser)`` at the rank that covers the target share of cases. Coverage is measured leaving one
fold out (fit on four folds, count the fifth), so the reported figure is not the fitted one.

    python Testing/Benchmarks/interval_calibration.py [--runs runs/enhancement] [--coverage 0.9]

``--cv runs/cv`` instead counts, on ``cross_validation.py``'s held-out rows (the installed members, the 28
original cases, all four sequences), how many true WT/TC/ET volumes the registry's fitted intervals hold: as
fitted, and with the ET interval spanning the network's reading before the enhancement check moved ET to the
core, as the pipeline reports it.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from TumorSegLib.enhancement import check_enhancement
from TumorSegLib.labels import VOLUME_KEYS, region_volumes_ml
from TumorSegLib.models import MODELS_DIR, get_model
from TumorSegLib.postprocessing import PostProcessing, postprocess
from TumorSegLib.training import find_cases
from TumorSegLib.uncertainty import IntervalCalibration

ROOT = Path(__file__).resolve().parents[2]
STABILISER_ML = 1.0


def held_out_volumes(runs: Path, cases: dict, spec) -> list[dict]:
    """Per held-out prediction: case, kind, estimated and true volumes (mL) per key."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from enhancement_study import held_out_cases, kept_probabilities, made_non_enhancing

    settings = PostProcessing.from_dict(spec.postprocessing)
    rows = []
    for case, images, truth, brain in held_out_cases(runs, cases, spec):
        altered, altered_truth = made_non_enhancing(images, truth)
        for kind, inputs, true_labels in (("original", images, truth), ("nonenhancing", altered, altered_truth)):
            probabilities = kept_probabilities(runs, case, kind, images["t1c"])
            labels, _ = check_enhancement(postprocess(probabilities, settings), inputs, brain,
                                          settings.enhancement_rules)
            rows.append({"case": case, "kind": kind, "estimate": region_volumes_ml(labels),
                         "truth": region_volumes_ml(images["t1c"].with_array(true_labels))})
    return rows


def score(row: dict, key: str) -> float:
    return abs(row["truth"][key] - row["estimate"][key]) / (row["estimate"][key] + STABILISER_ML)


def quantile(scores: list[float], coverage: float) -> float:
    """The split-conformal quantile: the ceil((n + 1) · coverage)-th smallest score."""
    ordered = sorted(scores)
    rank = min(len(ordered), math.ceil((len(ordered) + 1) * coverage))
    return float(ordered[rank - 1])


def holds(bounds: tuple[float, float], truth: float) -> bool:
    return bounds[0] - 1e-9 <= truth <= bounds[1] + 1e-9


def covered(row: dict, key: str, q: float) -> bool:
    estimate = row["estimate"][key]
    calibration = IntervalCalibration(stabiliser_ml=STABILISER_ML, quantiles={key: q})
    return holds(calibration.bounds(key, estimate, estimate, estimate), row["truth"][key])


def cv_coverage(cv_dir: Path, calibration: IntervalCalibration) -> dict:
    """Per region, of the held-out all-four rows of ``cv_dir/cases.jsonl``: the cases, and how many true volumes
    the fitted interval holds around the reported estimate (and, for ET, spanning the reading before the move)."""
    rows = [json.loads(line) for line in (cv_dir / "cases.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["subset"] == "all four" and r["fold"] != "unseen"]
    out = {}
    for region in ("WT", "TC", "ET"):
        counted = {"cases": len(rows), "held": 0}
        if region == "ET":
            counted["held_spanning_the_reading"] = 0
        for row in rows:
            estimate, truth = (row["metrics"][region][k] for k in ("volume_pred_ml", "volume_true_ml"))
            bounds = calibration.bounds(region, estimate, estimate, estimate)
            counted["held"] += holds(bounds, truth)
            if region == "ET":
                reading = estimate + row.get("et_relabelled_ml", 0.0)  # the ET drawn before the check moved any
                counted["held_spanning_the_reading"] += holds(calibration.spanning(region, bounds, reading), truth)
        out[region] = counted
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "brats2018"))
    parser.add_argument("--runs", default=str(ROOT / "runs" / "enhancement"))
    parser.add_argument("--coverage", type=float, default=0.9)
    parser.add_argument("--cv", help="count the fitted intervals' hits on cross_validation.py's rows instead")
    args = parser.parse_args()
    spec = get_model()
    if args.cv:
        print(json.dumps(cv_coverage(Path(args.cv), IntervalCalibration.from_dict(spec.volume_intervals)), indent=2))
        return
    folds = json.loads((MODELS_DIR / "training" / "folds.json").read_text())["folds"]
    fold_of = {case: k for k, fold in enumerate(folds) for case in fold}
    rows = held_out_volumes(Path(args.runs), find_cases(Path(args.data)), spec)
    fitted = {key: round(quantile([score(r, key) for r in rows], args.coverage), 4) for key in VOLUME_KEYS}
    coverage = {}
    for key in VOLUME_KEYS:
        hits = []
        for k in range(len(folds)):
            q = quantile([score(r, key) for r in rows if fold_of[r["case"]] != k], args.coverage)
            hits += [covered(r, key, q) for r in rows if fold_of[r["case"]] == k]
        coverage[key] = round(float(np.mean(hits)), 3)
    result = {"calibration": {"coverage": args.coverage, "stabiliser_ml": STABILISER_ML, "quantiles": fitted},
              "leave_one_fold_out_coverage": coverage, "predictions": len(rows),
              "note": "held-out fold networks (one member); original and made-non-enhancing cases"}
    (Path(args.runs) / "interval_calibration.json").write_text(json.dumps({**result, "rows": rows}, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
