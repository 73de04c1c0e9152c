"""Do TumorSeg's Dice and HD95 agree with the official BraTS evaluation (``brats-evaluation``, panoptica)?

The official package pins NumPy below 2.3, so it lives in its own virtual environment (``.venv-brats``, made
on first use, pinned). Both evaluate the same held-out predictions of shared cases (the probabilities
``enhancement_study.py`` kept, post-processed as the pipeline does) against the expert labels; the table gives
per case and region TumorSeg's ``dice``, ``hd95`` and ``hd95_max`` beside the official global DSC and HD95.

    python Testing/Benchmarks/official_metrics_check.py [--cases 6] [--runs runs/enhancement]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-brats"
OFFICIAL = ["brats-evaluation==0.0.10", "panoptica==2.1.7", "numpy==2.2.6"]
# Run inside .venv-brats: the official evaluator on (prediction, reference) pairs, global metrics per group.
RUNNER = """
import json, sys
from importlib.resources import files
from panoptica import Panoptica_Evaluator
evaluator = Panoptica_Evaluator.load_from_config(str(files("brats_evaluation").joinpath("configs", "config_gli.yaml")))
out = {}
for case, prediction, reference in json.loads(sys.argv[1]):
    results = evaluator.evaluate(prediction, reference)
    out[case] = {group: {"dsc": r.to_dict(True).get("global_bin_dsc"), "hd95": r.to_dict(True).get("global_bin_hd95")}
                 for group, r in results.items() if group in ("wt", "tc", "et")}
print(json.dumps(out))
"""


def official_python() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *OFFICIAL], check=True)
    return python


def main() -> None:
    from TumorSegLib.enhancement import check_enhancement
    from TumorSegLib.export import write_label_map
    from TumorSegLib.labels import LabelConvention, Region, to_internal_labels
    from TumorSegLib.metrics import evaluate_labels
    from TumorSegLib.models import get_model
    from TumorSegLib.postprocessing import PostProcessing, postprocess
    from TumorSegLib.training import find_cases
    from TumorSegLib.volume import read_volume

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "brats2018"))
    parser.add_argument("--runs", default=str(ROOT / "runs" / "enhancement"))
    parser.add_argument("--cases", type=int, default=6)
    args = parser.parse_args()
    spec = get_model()
    settings = PostProcessing.from_dict(spec.postprocessing)
    cases = find_cases(Path(args.data))
    ours, pairs = {}, []
    with tempfile.TemporaryDirectory() as folder:
        for path in sorted(Path(args.runs).glob("*_original.npz"))[: args.cases]:
            case = path.name[: -len("_original.npz")]
            images = {key: read_volume(cases[case][key]) for key in spec.sequences}
            truth = images["t1c"].with_array(to_internal_labels(read_volume(cases[case]["label"]).array))
            probabilities = truth.with_array(np.load(path)["probabilities"].astype(np.float32) / 255)
            brain = np.any([v.array != 0 for v in images.values()], axis=0)
            labels, _ = check_enhancement(postprocess(probabilities, settings), images, brain,
                                          settings.enhancement_rules)
            prediction, reference = Path(folder, f"{case}_pred.nii.gz"), Path(folder, f"{case}_gt.nii.gz")
            write_label_map(labels, prediction, LabelConvention.BRATS2023)
            write_label_map(truth, reference, LabelConvention.BRATS2023)
            pairs.append((case, str(prediction), str(reference)))
            ours[case] = evaluate_labels(labels.array, truth.array, truth.spacing, lesion_metrics=False)
        completed = subprocess.run([str(official_python()), "-c", RUNNER, json.dumps(pairs)], capture_output=True,
                                   text=True, check=True)
    official = json.loads(completed.stdout.strip().splitlines()[-1])
    rows = []
    for case in ours:
        for region in Region:
            mine, theirs = ours[case][region.value], official[case][region.value.lower()]
            rows.append({"case": case, "region": region.value, "dice": round(mine["dice"], 4),
                         "official_dsc": theirs["dsc"], "hd95": round(mine["hd95"], 2),
                         "official_hd95": theirs["hd95"], "hd95_max": round(mine["hd95_max"], 2)})
            print(json.dumps(rows[-1]))
    finite = [r for r in rows if r["official_hd95"] is not None and np.isfinite(r["official_hd95"])]
    print(json.dumps({"pairs": len(rows),
                      "max_dice_difference": max(abs(r["dice"] - r["official_dsc"]) for r in rows),
                      "max_hd95_difference_mm": max(abs(r["hd95"] - r["official_hd95"]) for r in finite),
                      "mean_hd95_max_minus_official_mm": round(float(np.mean([r["hd95_max"] - r["official_hd95"]
                                                                              for r in finite])), 2)}))


if __name__ == "__main__":
    main()
