"""Average a fine-tuned fold network with the weights it started from, as a new run folder to compare and install.

Reads ``RUN/fold<k>/model.pt`` (a ``make train-cpu`` or ``tumorseg train --resume-from`` run) and the weights the
run started from (by default the shipped member of that fold, which is what ``make train-cpu`` starts from until
its run is installed), and writes ``OUT/fold<k>/`` with the blend as ``model.pt`` beside the run's config and
history (the history gains a ``blend`` record: share, start file and its SHA-256), and the run's log. OUT is then
what ``Testing/Benchmarks/compare_fold.py`` compares and ``scripts/install_trained_weights.py`` installs. Nothing
is overwritten: OUT must not exist; it is written under a temporary name and renamed when complete.

    python scripts/blend_weights.py RUN FOLD [--weight 0.5] [--start WEIGHTS] [-o OUT (default RUN_blend50)]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from TumorSegLib.models import MODELS_DIR, get_model, sha256_of  # noqa: E402
from TumorSegLib.training import blend_weights, export_weights  # noqa: E402


def _share(text: str) -> float:
    share = float(text)
    if not 0.0 < share <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text}: give the tuned network's share in (0, 1], e.g. 0.5")
    return share


def _installed_from(tuned_sha: str, start_sha: str, fold: str) -> bool:
    """Whether ``start`` is the shipped member of ``fold`` made from the tuned weights: the tuned weights
    themselves, or a blend of them (its history says so). It is then no longer the weights the run started from."""
    if start_sha == tuned_sha:
        return True
    history = MODELS_DIR / "training" / f"history_fold{fold}.json"
    record = json.loads(history.read_text()).get("blend", {}) if history.is_file() else {}
    shipped = MODELS_DIR / get_model().member_runs[f"fold{fold}"].path
    return record.get("tuned_sha256") == tuned_sha and start_sha == sha256_of(shipped)


def blend_run(run: Path, fold: str, weight: float, start: Path, out: Path) -> Path:
    """Write ``out/fold<fold>/`` (blended ``model.pt``, config, history with the blend recorded) and the run's log."""
    import torch

    tuned_file = run / f"fold{fold}" / "model.pt"
    missing = [p for p in (tuned_file, run / f"fold{fold}" / "config.json", run / f"fold{fold}" / "history.json",
                           start) if not p.is_file()]
    if missing:
        raise SystemExit(f"{', '.join(map(str, missing))}: not found: give a finished run and the weights it "
                         "started from")
    if out.exists():
        raise SystemExit(f"{out} exists: give another -o (an earlier blend is never overwritten)")
    tuned_sha, start_sha = sha256_of(tuned_file), sha256_of(start)
    if _installed_from(tuned_sha, start_sha, fold):
        raise SystemExit(f"{start} is this run's own weights, or a blend of them installed already: give --start "
                         "the weights the run started from")
    load = dict(map_location="cpu", weights_only=True)  # tensors only: nothing in either file can run
    try:
        blended = blend_weights(torch.load(tuned_file, **load), torch.load(start, **load), weight)
    except ValueError as error:
        raise SystemExit(f"{tuned_file} with {start}: {error}") from None
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # a blend interrupted earlier
    (partial / f"fold{fold}").mkdir(parents=True)
    export_weights(blended, partial / f"fold{fold}" / "model.pt")
    shutil.copy2(run / f"fold{fold}" / "config.json", partial / f"fold{fold}" / "config.json")
    history = json.loads((run / f"fold{fold}" / "history.json").read_text())
    named = start.resolve()  # the repository's own files by their place in it: the record ships with the weights
    named = named.relative_to(ROOT) if named.is_relative_to(ROOT) else named
    history["blend"] = {"tuned_share": weight, "tuned_sha256": tuned_sha, "start": str(named),
                        "start_sha256": start_sha}
    (partial / f"fold{fold}" / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    if (run / "train.log").exists():
        shutil.copy2(run / "train.log", partial / "train.log")
    partial.rename(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run folder holding fold<k>/model.pt")
    parser.add_argument("fold", help="0-4 or all")
    parser.add_argument("--weight", type=_share, default=0.5, help="share of the tuned network (default 0.5)")
    parser.add_argument("--start", type=Path, help="weights the run started from (default: the shipped member)")
    parser.add_argument("-o", "--out", type=Path)
    args = parser.parse_args()
    members = get_model().member_runs
    if f"fold{args.fold}" not in members:
        parser.error(f"fold {args.fold!r}: give one of {', '.join(run.removeprefix('fold') for run in members)}")
    start = args.start or MODELS_DIR / members[f"fold{args.fold}"].path
    out = args.out or args.run.with_name(f"{args.run.name}_blend{round(args.weight * 100)}")
    print(blend_run(args.run, args.fold, args.weight, start, out))


if __name__ == "__main__":
    main()
