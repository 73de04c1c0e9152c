"""Is a retrained fold network better than the shipped one, on the cases both never saw? (before installing)

Segments each held-out case of fold ``k`` (the shipped split) through the full pipeline with the new weights
(e.g. ``runs/<run>/fold<k>/model.pt`` from ``tumorseg train --resume-from``, or a ``fold<k>.pt`` brought back
from a lent GPU) and with the shipped fold-``k`` member, with all four sequences and with T1c+FLAIR, and each
case made non-enhancing (false ET in mL). Prints per-case rows and the means side by side; writes JSON.

    python Testing/Benchmarks/compare_fold.py FOLD WEIGHTS [--data ../shared/data/brats2018] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from TumorSegLib.inference import Predictor
from TumorSegLib.labels import Label, to_internal_labels
from TumorSegLib.metrics import evaluate_labels
from TumorSegLib.models import MODELS_DIR, build_network, get_model
from TumorSegLib.pipeline import segment
from TumorSegLib.training import find_cases
from TumorSegLib.volume import read_volume

ROOT = Path(__file__).resolve().parents[2]
SUBSETS = {"all four": ("t1", "t1c", "t2", "flair"), "T1c+FLAIR": ("t1c", "flair")}
REGIONS = ("WT", "TC", "ET")


def load_predictor(spec, weights: Path) -> Predictor:
    import torch

    network = build_network(spec)
    state = torch.load(weights, map_location="cpu", weights_only=True)  # tensors only: nothing in it can run
    network.load_state_dict({key: value.float() for key, value in state.items()})
    return Predictor(spec, "cpu", networks=[network.eval()])


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from enhancement_study import made_non_enhancing

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fold", type=int)
    parser.add_argument("weights", type=Path)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "brats2018"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    spec = get_model()
    folds = json.loads((MODELS_DIR / "training" / "folds.json").read_text())["folds"]
    predictors = {"new": load_predictor(spec, args.weights), "shipped": Predictor(spec, "cpu", members=[args.fold + 1])}
    cases = find_cases(Path(args.data))
    rows = []
    for case in folds[args.fold]:
        images = {key: read_volume(cases[case][key]) for key in spec.sequences}
        truth = to_internal_labels(read_volume(cases[case]["label"]).array)
        altered, _ = made_non_enhancing(images, truth)
        for name, predictor in predictors.items():
            row = {"case": case, "weights": name}
            for subset, keys in SUBSETS.items():
                result = segment({key: images[key] for key in keys}, predictor=predictor)
                metrics = evaluate_labels(result.labels.array, truth, result.labels.spacing, lesion_metrics=False)
                row[subset] = {region: round(metrics[region]["dice"], 4) for region in REGIONS}
            labels = segment(altered, predictor=predictor).labels
            row["false_et_ml"] = round(float((labels.array == Label.ET).sum()) * labels.voxel_volume_ml, 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    means = {name: {**{subset: {region: round(float(np.mean([r[subset][region] for r in rows if r["weights"] == name])), 4)
                                for region in REGIONS} for subset in SUBSETS},
                    "false_et_ml_mean": round(float(np.mean([r["false_et_ml"] for r in rows if r["weights"] == name])), 2),
                    "false_et_over_1ml": sum(r["false_et_ml"] > 1 for r in rows if r["weights"] == name)}
             for name in predictors}
    print(json.dumps(means, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps({"fold": args.fold, "weights": str(args.weights), "means": means, "cases": rows},
                                       indent=2))


if __name__ == "__main__":
    main()
