"""Install weights trained on a lent GPU (scripts/train_gpu.sh) as the shipped models.

Copies ``<run>.pt`` (fold0 … fold4, foldall) over ``Resources/Models/brats18-segresnet8-<fold k | all>.pt``,
writes their SHA-256 and size into every registry entry that names them, and unpacks the histories, configs and
log into ``Resources/Models/training/``. Re-run the cross-validation afterwards (``make cv``) and update the
model card: the registry's figures describe the weights only once measured again.

    python scripts/install_trained_weights.py FOLDER   (the device tool's files_at folder)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from TumorSegLib.models import MODELS_DIR, REGISTRY_FILE, sha256_of  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    registry_file = MODELS_DIR / REGISTRY_FILE
    registry = json.loads(registry_file.read_text())
    installed = {}
    for source in sorted(args.folder.glob("fold*.pt")):
        run = source.stem  # fold0 … foldall
        target = MODELS_DIR / f"brats18-segresnet8-{'all' if run == 'foldall' else run}.pt"
        shutil.copy2(source, target)
        installed[target.name] = (sha256_of(target), target.stat().st_size)
    for entry in registry["models"]:
        for weight in entry["weights"]:
            if weight.get("path") in installed:
                weight["sha256"], weight["size"] = installed[weight["path"]]
    registry_file.write_text(json.dumps(registry, indent=2) + "\n")
    training = MODELS_DIR / "training"
    with tarfile.open(args.folder / "runs.tar.gz") as archive:
        for member in archive.getmembers():
            if member.isfile() and member.name.endswith((".json", ".log")):
                run, _, name = member.name.rpartition("/")
                stem = name.removesuffix(".json")
                destination = training / (f"{stem}_{run}.json" if run else name.replace("train.log", "train_gpu.log"))
                destination.write_bytes(archive.extractfile(member).read())
    print(json.dumps({"installed": installed}, indent=2))


if __name__ == "__main__":
    main()
