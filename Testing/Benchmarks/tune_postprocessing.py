"""Choose post-processing settings on the cross-validation probabilities (held-out cases only).

Reads the probabilities that ``cross_validation.py`` kept, applies each candidate setting and prints
mean Dice/HD95 per region, best first by mean Dice over WT/TC/ET (HD95 breaks ties).

    python Testing/Benchmarks/tune_postprocessing.py [--cv runs/cv]
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from TumorSegLib.labels import region_masks, to_internal_labels
from TumorSegLib.metrics import dice, hd95
from TumorSegLib.postprocessing import PostProcessing, postprocess
from TumorSegLib.training import find_cases
from TumorSegLib.volume import read_volume

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cv", default=str(ROOT / "runs" / "cv"))
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "brats2018"))
    args = parser.parse_args()
    cases = find_cases(Path(args.data))
    grid = list(itertools.product([0.5], [0.0, 0.1, 0.5, 1.0, 2.0], [0.0, 0.25, 0.5, 1.0]))
    scores = {setting: [] for setting in grid}
    for path in sorted(Path(args.cv, "probabilities").glob("*.npz")):
        label = read_volume(cases[path.stem]["label"])
        truth = region_masks(to_internal_labels(label.array))
        probabilities = label.with_array(np.load(path)["probabilities"].astype(np.float32) / 255)
        for setting in grid:
            labels = postprocess(probabilities, PostProcessing(*setting)).array
            predicted = region_masks(labels)
            scores[setting].append({r.value: (dice(predicted[r], truth[r]), hd95(predicted[r], truth[r]))
                                    for r in truth})
        print(f"{path.stem} done", flush=True)
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
