"""Seconds and device memory of the default ensemble's inference on one prepared brain, on a GPU (or the CPU).

Made to run on a lent GPU machine inside ``scripts/train_gpu.sh``, where only PyTorch and MONAI are installed
(no SimpleITK or NIfTI readers): the input is a case of the training cache (already reoriented, resampled,
cropped and normalised, as ``tumorseg segment`` prepares it) or, without one, random data of a typical brain
crop. It times what the GPU does for a case (all members, sliding windows, host-to-device copies and the
probabilities back); ``segment_benchmark.py`` times the whole command on the CPU.

    python Testing/Benchmarks/gpu_inference_benchmark.py [--device cuda] [--case CACHE.npz] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from TumorSegLib.inference import Predictor  # noqa: E402
from TumorSegLib.models import get_model  # noqa: E402
from TumorSegLib.volume import Volume  # noqa: E402

TYPICAL_CROP = (150, 170, 143)  # the brain crop of a BraTS case at 1 mm (segment_benchmark.py's case)


def prepared_image(case: Path | None, channels: int, shape: tuple[int, ...]) -> np.ndarray:
    if case is not None:
        from TumorSegLib.training.data import load_cached_case

        image, _, _ = load_cached_case(case)
        return image.astype(np.float32)
    return np.random.default_rng(0).standard_normal((channels, *shape)).astype(np.float32)


def main(argv: list[str] | None = None) -> dict:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default=None, help="registry id (default: the default model)")
    parser.add_argument("--case", type=Path, help="a training-cache case (.npz); default: random data")
    parser.add_argument("--shape", type=int, nargs=3, default=TYPICAL_CROP, help="random input's spatial shape")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    spec = get_model(args.model)
    start = time.perf_counter()
    predictor = Predictor(spec, args.device)
    load_s = time.perf_counter() - start
    image = Volume(prepared_image(args.case, len(spec.sequences), tuple(args.shape)), (1.0, 1.0, 1.0))
    predictor(image)  # warm-up: kernels chosen, memory pools filled
    if args.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        predictor(image)  # returns numpy: the device work is finished when it returns
        times.append(time.perf_counter() - start)
    result = {
        "model": spec.id, "members": len(predictor.networks), "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "input_shape": list(image.shape), "input": str(args.case) if args.case else "random",
        "load_s": round(load_s, 2), "inference_s": round(min(times), 3),
        "inference_s_per_member": round(min(times) / len(predictor.networks), 3),
        "peak_device_memory_mb": round(torch.cuda.max_memory_allocated() / 2 ** 20) if args.device == "cuda" else None,
    }
    print(json.dumps(result, indent=2), flush=True)
    return result


if __name__ == "__main__":
    main()
