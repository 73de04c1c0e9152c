"""Seconds per preprocessing step on this CPU, and brain-extraction Dice on heads built around real brains.

For each shared case (``--cases N``): input QA; the alignment check of the three sequences; rigid
co-registration of a FLAIR moved by a known transform onto a 0.9×0.9×5 mm grid (and its error against
the mutual-information optimum of the unmoved pair composed with the motion); N4 of one sequence;
brain extraction of a synthetic head (CSF, skull, scalp) wrapped around the case's real brain, with
the Dice of the mask; and model-input preparation.

    python Testing/Benchmarks/preprocessing_benchmark.py [--cases 3] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - start


def main() -> None:
    import SimpleITK as sitk

    from TumorSegLib.clinical import coregister, extract_brain, is_aligned, n4_bias_correction
    from TumorSegLib.metrics import dice
    from TumorSegLib.preprocessing import prepare_input
    from TumorSegLib.qa import run_qa
    from TumorSegLib.registration import points_of, transform_error
    from TumorSegLib.synthetic import add_synthetic_head
    from TumorSegLib.training import find_cases
    from TumorSegLib.volume import Volume, read_volume

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "brats2018"))
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    for case, files in list(find_cases(Path(args.data)).items())[: args.cases]:
        images = {key: read_volume(files[key]) for key in ("t1", "t1c", "t2", "flair")}
        reference = images["t1c"]
        row = {"case": case}
        _, row["qa_s"] = timed(run_qa, images)
        _, row["alignment_check_s"] = timed(lambda fixed, volumes: [is_aligned(fixed, volumes[k]) for k in
                                                                    ("t1", "t2", "flair")], reference, images)
        centre = (reference.affine @ np.r_[np.array(reference.shape) / 2, 1])[:3]
        motion = sitk.Euler3DTransform([float(c) for c in centre], *np.deg2rad((4, -3, 6)), (6, -4, 3))
        source = sitk.Cast(images["flair"].to_sitk(), sitk.sitkFloat32)
        grid = sitk.Image([int(240 / 0.9), int(240 / 0.9), 31], sitk.sitkFloat32)
        grid.SetSpacing((0.9, 0.9, 5.0))
        grid.SetOrigin(source.GetOrigin())
        grid.SetDirection(source.GetDirection())
        moved = Volume.from_sitk(sitk.Resample(source, grid, motion.GetInverse(), sitk.sitkLinear, 0.0))
        (_, unmoved), _ = timed(coregister, {"t1c": reference, "flair": images["flair"]}, "t1c", "on")
        (_, records), row["coregistration_s"] = timed(coregister, {"t1c": reference, "flair": moved}, "t1c")
        error = transform_error(records[1].transform, sitk.CompositeTransform([motion, unmoved[1].transform]),
                                points_of(reference, reference.array > 0))
        row["registration_error_mean_mm"] = round(error.mean_displacement_mm, 2)
        row["registration_error_max_mm"] = round(error.max_displacement_mm, 2)
        row["registration_error_deg"] = round(error.rotation_deg, 2)
        _, row["n4_s"] = timed(n4_bias_correction, images["t1"])
        brain = images["t1"].array > 0
        head = add_synthetic_head(images["t1"], brain, "t1")
        extraction, row["brain_extraction_s"] = timed(extract_brain, head)
        row["brain_mask_dice"] = round(dice(extraction.mask.array, brain), 4)
        _, row["prepare_input_s"] = timed(prepare_input, list(images.values()), (1.0, 1.0, 1.0))
        rows.append({k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()})
        print(json.dumps(rows[-1]), flush=True)
    summary = {key: round(float(np.mean([r[key] for r in rows])), 3) for key in rows[0] if key != "case"}
    print("mean:", json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"cases": rows, "mean": summary}, indent=2))


if __name__ == "__main__":
    main()
