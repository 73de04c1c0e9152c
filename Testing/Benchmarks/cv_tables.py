"""Print the model card's cross-validation tables (Markdown) from ``cross_validation.json``.

    python Testing/Benchmarks/cv_tables.py [runs/cv/cross_validation.json | runs/cv]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _figure(value: float | None, digits: int) -> str:
    return "not reported" if value is None else f"{value:.{digits}f}"  # e.g. ET without T1c


def row(name: str, count: int, m: dict) -> str:
    dice = " | ".join(_figure(m[r]["dice"], 3) for r in ("WT", "TC", "ET"))
    hd = " | ".join(_figure(m[r]["hd95"], 1) for r in ("WT", "TC", "ET"))
    return f"| {name} | {count} | {dice} | {hd} |"


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "runs" / "cv"
    path = path / "cross_validation.json" if path.is_dir() else path  # the folder cross_validation.py --out wrote
    if not path.is_file():
        sys.exit(f"{path}: not found: give the cross_validation.json that cross_validation.py wrote, or its folder")
    results = json.loads(path.read_text())
    cases = results["cases"]
    header = "| {} | Cases | WT Dice | TC Dice | ET Dice | WT HD95 | TC HD95 | ET HD95 |\n|---|---|---|---|---|---|---|---|"
    print(header.format("Fold"))
    full = [c for c in cases if c["subset"] == "all four" and c["fold"] != "unseen"]
    for fold, metrics in results["by_fold"].items():
        count = len(full) if fold == "mean" else sum(c["fold"] == int(fold) for c in full)
        print(row("**mean**" if fold == "mean" else fold, count, metrics))
    if len(results["by_subset"]) > 2:
        print()
        print(header.format("Sequences given"))
        for subset in ("all four", "T1c+FLAIR", "FLAIR only", "T1c only"):
            if subset in results["by_subset"]:
                count = sum(c["subset"] == subset and c["fold"] != "unseen" for c in cases)
                print(row(subset, count, results["by_subset"][subset]))
    unseen = results.get("unseen_by_subset") or {}
    if unseen:
        print()
        for case in sorted({c["case"] for c in cases if c["fold"] == "unseen"}):
            members = next(c.get("members") for c in cases if c["case"] == case)
            print(f"{case}, outside the split, segmented by the members that never trained on it: {', '.join(members)}"
                  if members else f"{case}, outside the split, segmented by the whole default model (an older run)")
        print(header.format("Sequences given"))
        for subset in ("all four", "T1c+FLAIR", "FLAIR only", "T1c only"):
            if subset in unseen:
                count = sum(c["subset"] == subset and c["fold"] == "unseen" for c in cases)
                print(row(subset, count, unseen[subset]))


if __name__ == "__main__":
    main()
