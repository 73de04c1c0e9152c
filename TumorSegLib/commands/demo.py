"""``tumorseg demo``: segment the built-in synthetic sample case (no data needed) and compare with its truth."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import ProgressReport, labels_summary, log

__all__ = ["add_command"]


def _run(args: argparse.Namespace) -> int:
    from ..export import json_path, write_summary
    from ..labels import region_masks, to_internal_labels
    from ..metrics import dice
    from ..pipeline import segment
    from ..sequences import FILE_SUFFIXES
    from ..synthetic import write_synthetic_case
    from ..volume import read_volume

    out = Path(args.output)
    case = "TumorSeg_Synthetic_1"
    suffixes = {**{key: names[0] for key, names in FILE_SUFFIXES.items()}, "label": "seg"}
    files = {key: out / case / f"{case}_{suffix}.nii.gz" for key, suffix in suffixes.items()}
    if not all(path.exists() for path in files.values()):
        print("[progress   0%] building the synthetic sample case on the MNI ICBM152 template", flush=True)
        files = write_synthetic_case(out, case)
    images = {key: read_volume(path) for key, path in files.items() if key != "label"}
    progress = ProgressReport()
    result = segment(images, args.model, args.device, progress=progress)
    progress.close()
    output = out / f"{case}_tumorseg.nii.gz"
    summary = labels_summary(result, output, output, None)
    truth = region_masks(to_internal_labels(read_volume(files["label"]).array))
    predicted = region_masks(result.labels.array)
    agreement = {region.value: round(dice(predicted[region], truth[region]), 3) for region in truth}
    summary["dice_vs_synthetic_truth"] = agreement
    write_summary(summary, json_path(output))
    log(f"\nSegmentation of the synthetic sample: {output}")
    log(f"Model {result.model.id} on {result.device} ({result.precision}), {sum(result.timings_s.values()):.1f} s")
    log("Region                                   Volume (mL)")
    names = {"NCR": "necrotic / non-enhancing core", "ED": "oedema", "ET": "enhancing tumour",
             "TC": "tumour core (NCR+ET)", "WT": "whole tumour (NCR+ED+ET)"}
    for key, value in summary["volumes_ml"].items():
        log(f"  {key:3s} {names[key]:34s} " + (f"{value:10.2f}" if value is not None else f"{'n/a':>10s}"))
    log(f"Dice against the synthetic ground truth: {agreement}")
    log(f"Summary: {json_path(output)}")
    return 0


def add_command(commands) -> None:
    from ..options import Device, choices

    p = commands.add_parser("demo", help="segment the built-in synthetic sample case")
    p.add_argument("-o", "--output", default="demo_output")
    p.add_argument("--model", default=None)
    p.add_argument("--device", default=Device.AUTO.value, choices=choices(Device))
    p.set_defaults(func=_run)
