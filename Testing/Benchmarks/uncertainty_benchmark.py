"""Seconds per uncertainty method and sample count, as ratios to one plain pass measured in the same run.

The plain pass is one sliding-window pass of one network (what ``tumorseg segment --model
brats18-segresnet8`` runs). Each row runs :func:`TumorSegLib.uncertainty.estimate_uncertainty` on the same
model input: sampling, the per-sample post-processing behind the volume intervals, and the maps and scores.
On CUDA samples of one member run batched (``--batch``); the plain pass is a batch of one.

Input: a shared BraTS case prepared as the pipeline does (default), or ``--phantom I J K``: a z-scored
ellipsoid "brain" with a bright spherical lesion of that size, for machines without the data or SimpleITK.
On CUDA the run also reports how far batched samples are from the same samples run one by one.

    python Testing/Benchmarks/uncertainty_benchmark.py [--case DIR] [--device auto] [--samples 2 4]
        [--methods ensemble flips dropout intensity affine ensemble,flips] [--crop 128] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SHARED_CASE = ROOT.parent / "shared" / "data" / "brats2018" / "Brats18_CBICA_AQT_1"
METHODS = ["ensemble", "flips", "dropout", "intensity", "affine", "ensemble,flips"]


def load_input(args):
    """(model input Volume, brain mask, description) from a case folder, or a phantom of ``--phantom`` size."""
    from TumorSegLib.models import get_model
    from TumorSegLib.volume import Volume

    spec = get_model()
    if args.phantom:
        shape = tuple(args.phantom)
        rng = np.random.default_rng(0)
        grid = np.indices(shape, dtype=np.float32)
        centre = np.array(shape) / 2
        brain = sum(((g - c) / (0.45 * n)) ** 2 for g, c, n in zip(grid, centre, shape)) < 1
        lesion = sum((g - c - 12) ** 2 for g, c in zip(grid, centre)) < 18**2
        image = np.zeros((len(spec.sequences), *shape), np.float32)
        for c in range(len(spec.sequences)):
            values = brain * (1 + 2.5 * lesion + rng.normal(0, 0.3, shape))
            image[c][brain] = (values[brain] - values[brain].mean()) / values[brain].std()
        return Volume(image), brain, f"phantom {shape}"
    from TumorSegLib.geometry import crop
    from TumorSegLib.preprocessing import prepare_input
    from TumorSegLib.training import find_cases
    from TumorSegLib.volume import read_volume

    case = args.case or SHARED_CASE
    files = find_cases(case.parent)[case.name]
    prepared = prepare_input([read_volume(files[key]) for key in spec.sequences], spec.spacing, margin=4)
    image, mask = prepared.image, prepared.brain_mask
    if args.crop:
        box = tuple(slice(max(0, (n - args.crop) // 2), max(0, (n - args.crop) // 2) + min(n, args.crop))
                    for n in image.shape)
        image, mask = crop(image, box), mask[box]
    return image, mask, case.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", type=Path, help="a BraTS case folder (default: a shared case)")
    parser.add_argument("--phantom", type=int, nargs=3, metavar=("I", "J", "K"))
    parser.add_argument("--crop", type=int, default=0, help="centre crop of the model input (0: whole brain)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--samples", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--batch", type=int, nargs="+", default=[0],
                        help="CUDA batch sizes to compare (0: the library's default)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    from TumorSegLib.inference import Predictor
    from TumorSegLib.models import get_model
    from TumorSegLib.uncertainty import estimate_uncertainty

    image, mask, source = load_input(args)
    predictor = Predictor(get_model(), args.device)
    single = Predictor(predictor.spec, predictor.device, networks=predictor.networks[:1])

    def synchronise():
        if predictor.device == "cuda":
            torch.cuda.synchronize()

    def plain_pass() -> float:
        synchronise()
        start = time.perf_counter()
        for logits in single.logits_samples(image.array):
            logits.cpu()
        synchronise()
        return time.perf_counter() - start

    plain_pass()  # warm-up: kernels, allocator, oneDNN primitives
    plain = min(plain_pass() for _ in range(2))
    device_name = torch.cuda.get_device_name() if predictor.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{source}, model input {image.array.shape}, {device_name}: plain pass {plain:.2f} s", flush=True)
    print("| methods | samples | batch | run | seconds | × plain pass | × plain per sample |\n|---|---|---|---|---|---|---|")
    rows = []
    batches = args.batch if predictor.device == "cuda" else [0]
    for methods in args.methods:
        for samples in args.samples:
            for batch in batches:
                synchronise()
                start = time.perf_counter()
                result = estimate_uncertainty(predictor, image, methods, samples=samples, brain_mask=mask,
                                              batch_size=batch or None)
                synchronise()
                seconds = time.perf_counter() - start
                row = {"methods": methods, "samples": samples, "batch": batch or "default", "run": result.samples,
                       "seconds": round(seconds, 2), "ratio": round(seconds / plain, 2),
                       "ratio_per_sample": round(seconds / plain / result.samples, 2)}
                rows.append(row)
                print(f"| {methods} | {samples} | {row['batch']} | {result.samples} | {seconds:.1f} | "
                      f"{row['ratio']:.2f} | {row['ratio_per_sample']:.2f} |", flush=True)
    if predictor.device == "cuda":
        one = estimate_uncertainty(predictor, image, "flips", samples=4, brain_mask=mask, batch_size=1)
        four = estimate_uncertainty(predictor, image, "flips", samples=4, brain_mask=mask, batch_size=4)
        gap = float(np.abs(one.probabilities.array - four.probabilities.array).max())
        print(f"batched (4) vs one-by-one flips: max |Δ mean probability| {gap:.2e} (bfloat16 autocast)")
        rows.append({"check": "batched vs one-by-one", "max_abs_probability_difference": gap})
    results = {"input": source, "shape": list(image.array.shape), "device": device_name,
               "cpu_count": os.cpu_count(), "plain_pass_s": round(plain, 3), "rows": rows}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
