"""Prepare a training run on a lent GPU (scripts/train_gpu.sh), here, on the CPU: nothing is fetched there.

Writes, under ``.gpu/`` (ignored by git, carried by the device tool):

* ``part1/``, ``part2/``, ... — the preprocessed shared cases (``tumorseg train``'s cache), split so that each
  part plus the tracked tree stays under the device tool's 64 MiB per call;
* ``whl/`` — the MONAI wheel (the GPU image has PyTorch but not MONAI);
* ``resume/fold<k>/`` — the shipped weights and their step counts, so training continues from them.

Then prints the device calls to make, in order.

    python scripts/gpu_prepare.py [--data ../shared/data/brats2018] [--budget-mb 40]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from TumorSegLib.models import MODELS_DIR, get_model  # noqa: E402
from TumorSegLib.training import prepare_cache  # noqa: E402

MONAI = "monai==1.6.1"


def split_cache(cache: Path, gpu: Path, budget_bytes: int) -> list[Path]:
    """Copy the cached cases into part folders of at most ``budget_bytes`` each."""
    for old in gpu.glob("part*"):
        shutil.rmtree(old)
    parts: list[Path] = []
    size = budget_bytes
    for case in sorted(cache.glob("*.npz")):
        if size + case.stat().st_size > budget_bytes:
            parts.append(gpu / f"part{len(parts) + 1}")
            parts[-1].mkdir(parents=True)
            size = 0
        shutil.copy2(case, parts[-1] / case.name)
        size += case.stat().st_size
    return parts


def resume_folder(gpu: Path) -> Path:
    """The shipped members as ``resume/fold<k>/model.pt`` with their step counts (``history.json``)."""
    resume = gpu / "resume"
    shutil.rmtree(resume, ignore_errors=True)
    spec = get_model()
    for weight in spec.weights:
        run = weight.path.rsplit("-", 1)[-1].removesuffix(".pt")  # brats18-segresnet8-fold0.pt -> fold0
        run = "foldall" if run == "all" else run
        (resume / run).mkdir(parents=True)
        shutil.copy2(MODELS_DIR / weight.path, resume / run / "model.pt")
        history = MODELS_DIR / "training" / f"history_{run}.json"
        if history.exists():
            shutil.copy2(history, resume / run / "history.json")
    return resume


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "brats2018"))
    parser.add_argument("--budget-mb", type=float, default=40.0, help="MB per carried part")
    args = parser.parse_args()
    gpu = ROOT / ".gpu"
    cache = gpu / "cache"
    prepare_cache(Path(args.data), cache)
    parts = split_cache(cache, gpu, int(args.budget_mb * 1e6))
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d",
                    str(gpu / "whl"), MONAI], check=True)
    resume_folder(gpu)
    calls = [{"carry": [f".gpu/{part.name}"], "command": "true"} for part in parts[:-1]]
    calls.append({"carry": [f".gpu/{parts[-1].name}", ".gpu/whl", ".gpu/resume"],
                  "command": "TIME_LIMIT=330 bash scripts/train_gpu.sh", "timeout_s": 540})
    print(json.dumps({"parts": {p.name: sum(f.stat().st_size for f in p.iterdir()) for p in parts},
                      "device_calls_in_order": calls,
                      "then": "python scripts/install_trained_weights.py <files_at>"}, indent=2))


if __name__ == "__main__":
    main()
