"""Install trained weights as the shipped models: from a lent GPU (scripts/train_gpu.sh) or a `tumorseg train` run.

Copies ``<run>.pt`` (fold0 … fold4, foldall; or a run folder's ``<run>/model.pt``) over
``Resources/Models/brats18-segresnet8-<fold k | all>.pt``, writes their SHA-256 and size into every registry entry
that names them, and keeps the histories, configs and log in ``Resources/Models/training/`` (from the GPU's
``runs.tar.gz``, or the run folder's files). Re-run the cross-validation afterwards (``make cv``, or
``compare_fold.py`` for one fold) and update the model card: the registry's figures describe the weights only once
measured again.

    python scripts/install_trained_weights.py FOLDER   (the device tool's files_at folder, or `tumorseg train -o`)
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

from TumorSegLib.models import MODELS_DIR, REGISTRY_FILE, get_model, sha256_of  # noqa: E402


def weight_sources(folder: Path) -> dict[str, Path]:
    """``{run: weights}``: a GPU's ``fold0.pt`` … ``foldall.pt``, or a run folder's ``fold<k>/model.pt``."""
    sources = {p.stem: p for p in folder.glob("fold*.pt")}
    sources.update({p.parent.name: p for p in folder.glob("fold*/model.pt")})
    if not sources:
        raise SystemExit(f"{folder}: no fold*.pt or fold*/model.pt to install")
    return sources


def training_records(folder: Path, runs: list[str]) -> dict[str, bytes]:
    """``{file name in Resources/Models/training: content}``: histories, configs and the log, read before anything
    is installed so that a run missing them installs nothing."""
    if (folder / "runs.tar.gz").exists():  # from the GPU
        records = {}
        with tarfile.open(folder / "runs.tar.gz") as archive:
            for member in archive.getmembers():
                if member.isfile() and member.name.endswith((".json", ".log")):
                    run, _, name = member.name.rpartition("/")
                    stem = name.removesuffix(".json")
                    records[f"{stem}_{run}.json" if run else name.replace("train.log", "train_gpu.log")] = \
                        archive.extractfile(member).read()
        return records
    missing = [f"{run}/{name}.json" for run in runs for name in ("history", "config")
               if not (folder / run / f"{name}.json").exists()]
    if missing:
        raise SystemExit(f"{folder}: {', '.join(missing)} missing: install a run that has finished")
    records = {f"{name}_{run}.json": (folder / run / f"{name}.json").read_bytes()
               for run in runs for name in ("history", "config")}
    if (folder / "train.log").exists():
        records[f"train_{folder.name}.log"] = (folder / "train.log").read_bytes()
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    sources = weight_sources(args.folder)
    records = training_records(args.folder, sorted(sources))
    members = get_model(models_dir=MODELS_DIR).member_runs
    unknown = sorted(set(sources) - set(members))
    if unknown:
        raise SystemExit(f"{args.folder}: {', '.join(unknown)}: no shipped member is made by such a run "
                         f"(members: {', '.join(sorted(members))})")
    registry_file = MODELS_DIR / REGISTRY_FILE
    registry = json.loads(registry_file.read_text())
    installed = {}
    for run, source in sorted(sources.items()):
        target = MODELS_DIR / members[run].path
        shutil.copy2(source, target)
        installed[target.name] = (sha256_of(target), target.stat().st_size)
    for entry in registry["models"]:
        for weight in entry["weights"]:
            if weight.get("path") in installed:
                weight["sha256"], weight["size"] = installed[weight["path"]]
    registry_file.write_text(json.dumps(registry, indent=2) + "\n")
    for name, content in records.items():
        (MODELS_DIR / "training" / name).write_bytes(content)
    print(json.dumps({"installed": installed}, indent=2))


if __name__ == "__main__":
    main()
