"""Seconds and peak memory per case for `tumorseg segment` on this machine, with a reference.

Runs, in one session and on one input case (a shared BraTS case when present, else the synthetic sample):

1. ``tumorseg segment`` end to end for the default model and the fast single model, each in its own
   process: wall seconds and peak resident memory (from the OS, for that process alone); then the default
   model again with glibc's default allocator (``TUMORSEG_KEEP_FREED_MEMORY=0``, see ``memory.py``),
   without N4 bias-field correction (``--no-n4``) and in float32 (``TUMORSEG_PRECISION=float32``; the default
   computes in bfloat16 where the CPU has it natively, see ``inference.inference_precision``), each for its
   ratio to the default.
2. The network alone on the same preprocessed input and sliding window (128³, overlap 0.25), in float32: our
   SegResNet (8 initial filters) against the architecture of MONAI's ``brats_mri_segmentation`` bundle
   (SegResNet, 16 initial filters, blocks 1-2-2-4, random weights), and that bundle's own whole-volume
   setting (240×240×160 window); and ours in bfloat16 where this CPU has it natively. Figures are ratios to
   our network measured in the same run.

    python Testing/Benchmarks/segment_benchmark.py [--case DIR] [--repeats 2] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED_CASE = ROOT.parent / "shared" / "data" / "brats2018" / "Brats18_CBICA_AQT_1"

_MEASURE = """
import resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
seconds = time.perf_counter() - start
print(code, seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
"""


def measure_command(command: list[str], env: dict | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of ``command``, run as the only child of a fresh interpreter."""
    output = subprocess.run([sys.executable, "-c", _MEASURE, *command], capture_output=True, text=True, check=True,
                            env={**os.environ, **(env or {})})
    code, seconds, peak_mb = output.stdout.split()
    if code != "0":
        raise RuntimeError(f"{' '.join(command)} failed with exit code {code}")
    return float(seconds), float(peak_mb)


def case_files(case: Path | None) -> dict[str, Path]:
    if case is None and SHARED_CASE.is_dir():
        case = SHARED_CASE
    if case is None:
        from TumorSegLib.synthetic import write_synthetic_case

        return write_synthetic_case(Path(tempfile.mkdtemp()))
    from TumorSegLib.training import find_cases

    return find_cases(case.parent)[case.name]


def time_network(network, image, roi, repeats: int, bfloat16: bool = False) -> float:
    import torch
    from monai.inferers import sliding_window_inference

    network.eval()
    times = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
        for _ in range(repeats):
            start = time.perf_counter()
            sliding_window_inference(image, roi, 1, network, overlap=0.25, mode="gaussian")
            times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", type=Path, help="a BraTS case folder (default: a shared case, else synthetic)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import numpy as np
    import torch
    from monai.networks.nets import SegResNet

    from TumorSegLib.inference import inference_precision
    from TumorSegLib.memory import keep_freed_memory
    from TumorSegLib.models import build_network, get_model
    from TumorSegLib.preprocessing import prepare_input
    from TumorSegLib.volume import read_volume

    files = case_files(args.case)
    tumorseg = str(Path(sys.executable).with_name("tumorseg"))
    results: dict = {"case": str(files["t1"].parent.name), "cpu_threads": torch.get_num_threads(),
                     "cpu_count": os.cpu_count(), "segment": {}}
    # The last rows are the default model with glibc's default allocator (memory.py), without N4 and in float32,
    # for ratios.
    default_model = "brats18-segresnet8-ensemble"
    glibc, no_n4 = f"{default_model} (glibc defaults)", f"{default_model} (no N4)"
    float32 = f"{default_model} (float32)"
    results["precision"] = inference_precision("cpu")
    settings = [(default_model, default_model, {}, []), ("brats18-segresnet8", "brats18-segresnet8", {}, []),
                (glibc, default_model, {"TUMORSEG_KEEP_FREED_MEMORY": "0"}, []),
                (no_n4, default_model, {}, ["--no-n4"]),
                (float32, default_model, {"TUMORSEG_PRECISION": "float32"}, [])]
    with tempfile.TemporaryDirectory() as out:
        for name, model, env, extra in settings:
            runs = []
            for repeat in range(args.repeats):  # a new output each time: tumorseg never overwrites one
                command = [tumorseg, "segment", *sum(([f"--{k}", str(files[k])] for k in ("t1", "t1c", "t2", "flair")),
                                                     []),
                           "-o", f"{out}/{len(results['segment'])}-{repeat}.nii.gz", "--model", model, "--device", "cpu",
                           *extra]
                runs.append(measure_command(command, env))
            seconds, peak = min(r[0] for r in runs), max(r[1] for r in runs)
            results["segment"][name] = {"seconds": round(seconds, 1), "peak_rss_mb": round(peak)}
            print(f"tumorseg segment --model {name:46s} {seconds:7.1f} s  peak RSS {peak:7.0f} MB", flush=True)
    default, before = results["segment"][default_model], results["segment"][glibc]
    results["allocator_ratio"] = {"seconds": round(before["seconds"] / default["seconds"], 2),
                                  "peak_rss": round(default["peak_rss_mb"] / before["peak_rss_mb"], 2)}
    print(f"keeping freed memory: {results['allocator_ratio']['seconds']}x faster, peak memory "
          f"x{results['allocator_ratio']['peak_rss']}", flush=True)
    results["n4_ratio"] = round(default["seconds"] / results["segment"][no_n4]["seconds"], 2)
    print(f"N4 of every sequence (default): x{results['n4_ratio']} the time without it", flush=True)
    results["float32_ratio"] = {key: round(results["segment"][float32][key] / default[key], 2)
                                for key in ("seconds", "peak_rss_mb")}
    print(f"float32 against the default ({results['precision']}): x{results['float32_ratio']['seconds']} the time, "
          f"x{results['float32_ratio']['peak_rss_mb']} the peak memory", flush=True)

    keep_freed_memory()  # as tumorseg does; the same for both networks
    spec = get_model("brats18-segresnet8")
    volumes = [read_volume(files[k]) for k in spec.sequences]
    prepared = prepare_input(volumes, spec.spacing, margin=4)
    image = torch.from_numpy(prepared.image.array)[None]
    ours = time_network(build_network(spec), image, spec.patch_size, args.repeats)
    reference = SegResNet(spatial_dims=3, in_channels=4, out_channels=3, init_filters=16, blocks_down=(1, 2, 2, 4),
                          blocks_up=(1, 1, 1), dropout_prob=0.2)
    theirs = time_network(reference, image, spec.patch_size, args.repeats)
    full = torch.from_numpy(np.stack([v.array.astype(np.float32) for v in volumes]))[None]
    bundle_setting = time_network(reference, full, (240, 240, 160), args.repeats)
    results["network"] = {
        "input_crop": list(prepared.image.shape),
        "ours_segresnet8_s": round(ours, 2),
        "monai_brats_segresnet16_s": round(theirs, 2),
        "monai_brats_segresnet16_bundle_window_s": round(bundle_setting, 2),
        "ratio_reference_to_ours": round(theirs / ours, 2),
        "ratio_bundle_setting_to_ours": round(bundle_setting / ours, 2),
    }
    if results["precision"] == "bfloat16":
        ours_bfloat16 = time_network(build_network(spec), image, spec.patch_size, args.repeats, bfloat16=True)
        results["network"]["ours_segresnet8_bfloat16_s"] = round(ours_bfloat16, 2)
        results["network"]["ratio_float32_to_bfloat16"] = round(ours / ours_bfloat16, 2)
        print(f"our network in bfloat16: {ours_bfloat16:.2f} s (float32 ×{ours / ours_bfloat16:.2f})")
    print(f"network only, crop {prepared.image.shape}, 128³ windows: ours {ours:.2f} s, MONAI BraTS SegResNet "
          f"{theirs:.2f} s (×{theirs / ours:.2f}); bundle's 240×240×160 window {bundle_setting:.2f} s "
          f"(×{bundle_setting / ours:.2f})")
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
