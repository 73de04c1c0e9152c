"""Prepare a training run on a lent GPU (scripts/train_gpu.sh), here, on the CPU: nothing is fetched there.

Writes, under ``.gpu/`` (ignored by git, carried by the device tool):

* ``part1/``, ``part2/``, ... — the preprocessed shared cases (``tumorseg train``'s cache, compressed), split so
  that each call's part (the first's with the wheels and weights) plus the working tree stays under the device
  tool's 64 MiB per call;
* ``whl/`` — the MONAI wheel (the GPU image has PyTorch but not MONAI);
* ``resume/fold<k>/`` — the shipped weights and their step counts, so training continues from them.

Then prints the device calls to make, in order.

    python scripts/gpu_prepare.py [--data ../shared/data/brats2018] [--budget-mb MB]
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
from TumorSegLib.training import cached_cases, prepare_cache  # noqa: E402

MONAI = "monai==1.6.1"
CALL_LIMIT_BYTES = 64 * 2**20  # what one device call may carry, the working tree included
MARGIN_BYTES = 2 * 2**20


def split_cache(cache: Path, gpu: Path, budget_bytes: int, first_budget_bytes: int | None = None) -> list[Path]:
    """Write the cached cases, compressed, into part folders of at most ``budget_bytes`` each (the first at most
    ``first_budget_bytes``: its call also carries the wheels and the resume weights)."""
    import numpy as np

    for old in gpu.glob("part*"):
        shutil.rmtree(old)
    gpu.mkdir(parents=True, exist_ok=True)
    parts: list[Path] = []
    size, budget = budget_bytes, budget_bytes
    for case in (cache / f"{name}.npz" for name in cached_cases(cache)):
        compressed = gpu / f".{case.name}"
        with np.load(case) as data:  # an older, uncompressed cache is compressed here
            np.savez_compressed(compressed, **{key: data[key] for key in data.files})
        if size + compressed.stat().st_size > budget:
            parts.append(gpu / f"part{len(parts) + 1}")
            parts[-1].mkdir(parents=True)
            size = 0
            budget = first_budget_bytes if len(parts) == 1 and first_budget_bytes is not None else budget_bytes
        if compressed.stat().st_size > budget:
            compressed.unlink()
            raise SystemExit(f"{case.name} alone is larger than a device call can carry ({budget / 2**20:.1f} MiB)")
        size += compressed.stat().st_size
        compressed.replace(parts[-1] / case.name)
    return parts


def travelling_tree_bytes() -> int:
    """Bytes of the working tree that travel with every device call (tracked and untracked, not ignored)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True).stdout.split(b"\0")
    return sum((ROOT / name.decode()).stat().st_size for name in listed if name and (ROOT / name.decode()).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def resume_folder(gpu: Path) -> Path:
    """The shipped members as ``resume/fold<k>/model.pt`` with their step counts (``history.json``)."""
    resume = gpu / "resume"
    shutil.rmtree(resume, ignore_errors=True)
    for run, weight in get_model().member_runs.items():
        (resume / run).mkdir(parents=True)
        shutil.copy2(MODELS_DIR / weight.path, resume / run / "model.pt")
        history = MODELS_DIR / "training" / f"history_{run}.json"
        if history.exists():
            shutil.copy2(history, resume / run / "history.json")
    return resume


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "brats2018"))
    parser.add_argument("--budget-mb", type=float, default=None,
                        help="MB carried per call (default: what the 64 MiB limit leaves beside the working tree)")
    args = parser.parse_args()
    gpu = ROOT / ".gpu"
    cache = gpu / "cache"
    prepare_cache(Path(args.data), cache)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d",
                    str(gpu / "whl"), MONAI], check=True)
    resume_folder(gpu)
    budget = int(args.budget_mb * 1e6) if args.budget_mb else CALL_LIMIT_BYTES - travelling_tree_bytes() - MARGIN_BYTES
    first = budget - folder_bytes(gpu / "whl") - folder_bytes(gpu / "resume")
    parts = split_cache(cache, gpu, budget, first)
    calls = [{"carry": [f".gpu/{parts[0].name}", ".gpu/whl", ".gpu/resume"], "command": "true"}]
    calls += [{"carry": [f".gpu/{part.name}"], "command": "true"} for part in parts[1:]]
    # The last call trains; what earlier calls carried stays there while the machine is held (call them
    # back to back: an idle machine is given back).
    calls[-1].update(command="TIME_LIMIT=330 bash scripts/train_gpu.sh", timeout_s=540)
    print(json.dumps({"parts": {p.name: folder_bytes(p) for p in parts}, "budget_bytes": budget,
                      "device_calls_in_order": calls,
                      "then": "python scripts/install_trained_weights.py <files_at>"}, indent=2))


if __name__ == "__main__":
    main()
