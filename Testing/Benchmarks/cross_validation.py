"""Cross-validation of the embedded model with the full pipeline, on the shared BraTS 2018 cases.

Each case is segmented by the fold model that never saw it (the ensemble member made by run ``fold<k>``),
from the original NIfTI files, exactly as ``tumorseg segment`` would. Prints per-case and per-fold
Dice/HD95 for WT/TC/ET and writes them as JSON; keeps the probabilities (uint8, compressed) for
post-processing and calibration studies. Shared cases that the shipped split does not list are segmented by
the default model's members that never trained on them (a member's ``training/config_<run>.json`` lists its
training cases; a member without one was trained on the shipped split) and reported apart, as ``unseen``, never
mixed into the fold means; each row names the members used.

    python Testing/Benchmarks/cross_validation.py [--data ../shared/data/brats2018] [--out runs/cv]
        [--subsets]   also run every sequence subset the model card reports
        [--no-n4]     without N4 bias-field correction (the pipeline's default runs it; figures before it did)

The networks compute in the pipeline's number format (bfloat16 where the CPU has it natively; the JSON says
which); ``TUMORSEG_PRECISION=float32`` in the environment gives the float32 figures.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from TumorSegLib.inference import Predictor, inference_precision
from TumorSegLib.labels import to_internal_labels
from TumorSegLib.metrics import evaluate_labels
from TumorSegLib.models import MODELS_DIR, get_model
from TumorSegLib.options import ClinicalOptions
from TumorSegLib.pipeline import segment
from TumorSegLib.training import find_cases
from TumorSegLib.volume import read_volume

ROOT = Path(__file__).resolve().parents[2]
UNSEEN = "unseen"  # the fold of a case outside the shipped split, segmented by the members that never saw it
SUBSETS = {"all four": ("t1", "t1c", "t2", "flair"), "T1c+FLAIR": ("t1c", "flair"),
           "FLAIR only": ("flair",), "T1c only": ("t1c",)}


def summarise(rows: list[dict], key: str = "fold") -> dict:
    """Mean Dice/HD95 (official pooled HD95) per region, per group and overall; a region a case does not report
    (ET without T1c) is left out of its mean, and a group where no case reports it says so (None)."""
    def mean(group):
        out = {}
        for region in ("WT", "TC", "ET"):
            reported = [r for r in group if region not in r.get("not_assessed", [])]
            out[region] = {metric: round(float(np.mean([r["metrics"][region][metric] for r in reported])), 4)
                           if reported else None for metric in ("dice", "hd95")}
        return out
    groups = sorted({r[key] for r in rows})
    return {**{str(g): mean([r for r in rows if r[key] == g]) for g in groups}, "mean": mean(rows)}


def members_unseen_by(spec, case: str, folds: list[list[str]]) -> list[int]:
    """Indices of the members of ``spec`` that did not train on ``case``. A member's run config lists the cases it
    trained on; a member without one was trained on the shipped split ``folds`` less its own fold."""
    run_of = {weight.file_name: run for run, weight in spec.member_runs.items()}  # fold0 … foldall
    unseen = []
    for index, weight in enumerate(spec.weights):
        run = run_of.get(weight.file_name, "")
        config = MODELS_DIR / "training" / f"config_{run}.json"
        if config.is_file():
            trained_on = json.loads(config.read_text()).get("train_cases", [])
        else:
            trained_on = [c for k, fold in enumerate(folds) if run != f"fold{k}" for c in fold]
        if case not in trained_on:
            unseen.append(index)
    return unseen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "brats2018"))
    parser.add_argument("--out", default=str(ROOT / "runs" / "cv"))
    parser.add_argument("--model", default=None)
    parser.add_argument("--subsets", action="store_true")
    parser.add_argument("--flips", type=int, default=1)
    parser.add_argument("--no-n4", action="store_true", help="without N4 bias-field correction")
    args = parser.parse_args()
    clinical = ClinicalOptions(n4=not args.no_n4)

    spec = get_model(args.model)
    folds = json.loads((MODELS_DIR / "training" / "folds.json").read_text())["folds"]
    cases = find_cases(Path(args.data))
    out = Path(args.out)
    (out / "probabilities").mkdir(parents=True, exist_ok=True)
    subsets = SUBSETS if args.subsets else {"all four": SUBSETS["all four"]}
    rows = []
    partial = out / "cases.jsonl"  # one line per finished case: progress survives an interruption
    done = {}
    if partial.exists():
        for line in partial.read_text().splitlines():
            row = json.loads(line)
            done[(row["case"], row["subset"])] = row
    def run(case: str, fold, predictor: Predictor, members: list[str]) -> None:
        files = cases[case]
        images = {key: read_volume(files[key]) for key in spec.sequences}
        truth = to_internal_labels(read_volume(files["label"]).array)
        for subset_name, subset in subsets.items():
            if (case, subset_name) in done:
                rows.append(done[(case, subset_name)])
                continue
            start = time.perf_counter()
            result = segment({key: images[key] for key in subset}, predictor=predictor, flips=args.flips,
                             clinical=clinical)
            seconds = time.perf_counter() - start
            metrics = evaluate_labels(result.labels.array, truth, result.labels.spacing, lesion_metrics=False)
            rows.append({"case": case, "fold": fold, "subset": subset_name, "seconds": round(seconds, 1),
                         "metrics": metrics, "not_assessed": list(result.not_assessed),
                         "et_relabelled_ml": round(result.enhancement.relabelled_ml, 2), "members": members})
            with open(partial, "a") as f:
                f.write(json.dumps(rows[-1]) + "\n")
            print(f"fold {fold} {case} [{subset_name}] {seconds:.1f}s "
                  + " ".join(f"{r} {m['dice']:.3f}/{m['hd95']:.1f}" for r, m in metrics.items()), flush=True)
            if subset_name == "all four" and fold != UNSEEN:
                np.savez_compressed(out / "probabilities" / f"{case}.npz",
                                    probabilities=np.round(result.probabilities.array * 255).astype(np.uint8))

    def names(members: list[int]) -> list[str]:
        return [spec.weights[index].file_name for index in members]

    for k, fold_cases in enumerate(folds):
        member = spec.member_index(f"fold{k}")
        predictor = Predictor(spec, "cpu", members=[member])
        for case in fold_cases:
            run(case, k, predictor, names([member]))
    unseen = sorted(set(cases) - set(sum(folds, [])))
    for case in unseen:
        members = members_unseen_by(spec, case, folds)
        if not members:
            print(f"{case}: every member trained on it; not segmented")
            continue
        run(case, UNSEEN, Predictor(spec, "cpu", members=members), names(members))
    held_out = [r for r in rows if r["fold"] != UNSEEN]
    results = {"model": spec.id, "flips": args.flips, "n4": clinical.n4, "precision": inference_precision("cpu"),
               "by_fold": summarise([r for r in held_out if r["subset"] == "all four"]),
               "by_subset": summarise(held_out, "subset"),
               "unseen_by_subset": summarise([r for r in rows if r["fold"] == UNSEEN], "subset")
               if any(r["fold"] == UNSEEN for r in rows) else {},
               "cases": rows}
    (out / "cross_validation.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({key: results[key] for key in ("by_fold", "by_subset", "unseen_by_subset")}, indent=2))


if __name__ == "__main__":
    main()
