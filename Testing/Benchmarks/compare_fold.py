"""Is a retrained fold network better than the shipped one, on the cases both never saw? (before installing)

Segments each held-out case of fold ``k`` (the shipped split, and any shared case outside it that the new runs
also held out, by their ``config.json``) through the full pipeline with the new weights
(e.g. ``runs/<run>/fold<k>/model.pt`` from ``tumorseg train --resume-from``, or a ``fold<k>.pt`` brought back
from a lent GPU; several as NAME=PATH) and with the shipped fold-``k`` member, with all four sequences and with
T1c+FLAIR, and each case made non-enhancing (false ET in mL). With ``--shifts`` also each case as another
scanner or protocol might give it (``scanner_shifts.py``: bias field, gamma, noise, thick slices, low resolution,
mild or strong; all four sequences). Prints per-case rows and the means side by side; writes JSON.

FOLD ``all`` compares all-cases networks: on the shared cases outside the split that none of them trained on.

    python Testing/Benchmarks/compare_fold.py FOLD|all [[NAME=]WEIGHTS ...] [--shifts mild|strong|both]
        [--shift NAME] [--no-clean] [--no-shipped] [--no-n4] [--data ../shared/data/brats2018] [--out FILE]
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
from TumorSegLib.options import ClinicalOptions
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


def _named_weights(text: str) -> tuple[str, Path]:
    name, _, path = text.rpartition("=")
    return name or "new", Path(path)


def also_held_out(weights: list[tuple[str, Path]], folds: list[list[str]], cases) -> list[str]:
    """Shared cases outside the shipped split (no shipped member saw them) that no new run trained on either (by
    the training cases in the ``config.json`` beside its weights); none when a run has no ``config.json``."""
    unsplit = sorted(set(cases) - {case for fold in folds for case in fold})
    for _, path in weights:
        config = path.parent / "config.json"
        if not config.exists():
            return []
        trained = set(json.loads(config.read_text()).get("train_cases", cases))
        unsplit = [case for case in unsplit if case not in trained]
    return unsplit


def _fold(text: str) -> int | str:
    if text != "all" and not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: give a fold index (0, 1, ...) or all")
    return text if text == "all" else int(text)


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from enhancement_study import made_non_enhancing
    from scanner_shifts import SHIFTS, STRONG_SHIFTS, shifted

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fold", type=_fold, help="fold index, or all (the all-cases member)")
    parser.add_argument("weights", type=_named_weights, nargs="*", help="[NAME=]PATH of fold weights")
    parser.add_argument("--shifts", choices=("mild", "strong", "both"), help="also these scanner/protocol changes")
    parser.add_argument("--shift", action="append", default=[], metavar="NAME", help="also this one change (repeatable)")
    parser.add_argument("--no-clean", action="store_true", help="only the scanner/protocol changes")
    parser.add_argument("--no-shipped", action="store_true", help="leave out the shipped fold network")
    parser.add_argument("--no-n4", action="store_true", help="without N4 (as figures measured before it was default)")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "brats2018"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    spec = get_model()
    folds = json.loads((MODELS_DIR / "training" / "folds.json").read_text())["folds"]
    predictors = {name: load_predictor(spec, path) for name, path in args.weights}
    if not args.no_shipped:
        try:
            shipped = spec.member_index(f"fold{args.fold}")
        except ValueError as error:
            parser.error(str(error))
        predictors["shipped"] = Predictor(spec, "cpu", members=[shipped])
    subsets = {} if args.no_clean else dict(SUBSETS)
    every_shift = {**SHIFTS, **STRONG_SHIFTS}
    shifts = list({"mild": SHIFTS, "strong": STRONG_SHIFTS, "both": every_shift}.get(args.shifts, {}))
    for name in args.shift:
        if name not in every_shift:
            parser.error(f"--shift {name!r}: choose from {', '.join(every_shift)}")
        shifts += [] if name in shifts else [name]
    subsets.update({name: SUBSETS["all four"] for name in shifts})
    clinical = ClinicalOptions(n4=not args.no_n4)
    cases = find_cases(Path(args.data))
    extra = also_held_out(args.weights, folds, cases)
    if extra:
        print(f"also held out by every network compared (outside the shipped split): {', '.join(extra)}")
    rows = []
    held_out = ([] if args.fold == "all" else folds[args.fold]) + extra
    if not held_out:
        raise SystemExit(f"compare_fold.py: no shared case is held out by every network compared on fold {args.fold}")
    for case in held_out:
        images = {key: read_volume(cases[case][key]) for key in spec.sequences}
        truth = to_internal_labels(read_volume(cases[case]["label"]).array)
        inputs = {subset: {key: images[key] for key in keys} for subset, keys in subsets.items() if subset in SUBSETS}
        inputs.update({subset: shifted(images, subset) for subset in shifts})
        altered = None if args.no_clean else made_non_enhancing(images, truth)[0]
        for name, predictor in predictors.items():
            row = {"case": case, "weights": name}
            for subset, given in inputs.items():
                result = segment(given, predictor=predictor, clinical=clinical)
                metrics = evaluate_labels(result.labels.array, truth, result.labels.spacing, lesion_metrics=False)
                row[subset] = {region: round(metrics[region]["dice"], 4) for region in REGIONS}
            if altered is not None:
                labels = segment(altered, predictor=predictor, clinical=clinical).labels
                row["false_et_ml"] = round(float((labels.array == Label.ET).sum()) * labels.voxel_volume_ml, 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    means = {}
    for name in predictors:
        own = [r for r in rows if r["weights"] == name]
        means[name] = {subset: {region: round(float(np.mean([r[subset][region] for r in own])), 4)
                                for region in REGIONS} for subset in subsets}
        if altered is not None:
            means[name]["false_et_ml_mean"] = round(float(np.mean([r["false_et_ml"] for r in own])), 2)
            means[name]["false_et_over_1ml"] = sum(r["false_et_ml"] > 1 for r in own)
    print(json.dumps(means, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps({"fold": args.fold, "weights": {n: str(p) for n, p in args.weights}, "n4": not args.no_n4,
                                        "means": means, "cases": rows}, indent=2))


if __name__ == "__main__":
    main()
