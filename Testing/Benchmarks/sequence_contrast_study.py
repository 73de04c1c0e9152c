"""Does the input check tell a wrong sequence in a slot? Measured on the shared BraTS cases, for the model card.

For every case: the tissue contrast of each sequence in the atlas regions (:mod:`TumorSegLib.qa.weighting`), the
T1 rank correlations and the exchange witnesses' margins (:func:`TumorSegLib.qa.weighting.rank_correlations`),
printed so the thresholds can be set beyond the most extreme correct volume; then every wrong assignment, "X given
as Y" for two different sequences, checked two ways:

* **alone**: the X image is the only volume, given as Y (as in a T1c-only or FLAIR-only run): is the slot
  flagged by its tissue contrast?
* **swapped in the study**: X and Y exchange places among the four: does any input check flag the study
  (swap, near-identical, T1 correlation, exchange by a third sequence or tissue-contrast warnings)?

A correct study must raise none of these. Thresholds were set on these same cases: the false-alarm figure is
optimistic for other sites, the detection figures are what it catches here.

    nice -n 10 python Testing/Benchmarks/sequence_contrast_study.py [--data ../shared/data/brats2018] [--cases N]
        [--out runs/sequence_contrast.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

from TumorSegLib.clinical.tissues import atlas_tissues
from TumorSegLib.intensity import foreground_mask
from TumorSegLib.qa import check_sequences
from TumorSegLib.qa.weighting import (
    EXCHANGE_WITNESSES,
    contrast_findings,
    exchange_findings,
    rank_correlations,
    t1_relation_findings,
    tissue_contrast,
)
from TumorSegLib.sequences import SEQUENCES
from TumorSegLib.training import find_cases
from TumorSegLib.volume import read_volume

SEQUENCE_FINDINGS = {"swapped_t2_flair", "swapped_t1_t1c", "near_identical_sequences", "identical_sequences",
                     "t1c_unlike_t1", "t2_like_t1", "unexpected_contrast",
                     *(f"swapped_{first}_{second}" for first, second in EXCHANGE_WITNESSES)}


def study_case(files: dict[str, Path]) -> dict:
    volumes = {key: read_volume(files[key]) for key in SEQUENCES}
    reference = volumes["t1c"]
    brain = foreground_mask(np.stack([v.array for v in volumes.values()]))
    tissues = atlas_tissues(reference.with_array(brain.astype(np.uint8)))
    contrast = {key: tissue_contrast(v, tissues, brain & (v.array != 0)) for key, v in volumes.items()}
    correlations = rank_correlations(volumes, brain)

    def study_codes(source_of: dict[str, str]) -> list[str]:
        """Codes of the sequence findings when each slot holds the image of ``source_of[slot]``."""
        assigned = {slot: volumes[source] for slot, source in source_of.items()}
        between = {(a, b): correlations[source_of[a], source_of[b]] for a, b in itertools.permutations(source_of, 2)}
        own = [f for slot, source in source_of.items() if contrast[source] is not None
               for f in contrast_findings(slot, contrast[source])]
        findings = check_sequences(assigned) + t1_relation_findings(between) + (own or exchange_findings(between))
        return sorted({f.code for f in findings} & SEQUENCE_FINDINGS)

    correct = {key: key for key in SEQUENCES}
    row = {"contrast": {k: (c.as_dict() if c else None) for k, c in contrast.items()},
           "t1_correlations": {key: correlations["t1", key] for key in ("t1c", "t2")},
           # corr(witness, first) - corr(witness, second), signed to be positive in a correct study
           "exchange_margins": {f"{first}/{second} by {witness}": sign * (correlations[witness, first]
                                                                         - correlations[witness, second])
                                for (first, second), witnesses in EXCHANGE_WITNESSES.items()
                                for witness, sign in witnesses.items()},
           "correct": study_codes(correct), "alone": {}, "swapped": {}}
    for image, slot in itertools.permutations(SEQUENCES, 2):
        own = contrast[image]
        row["alone"][f"{image}_as_{slot}"] = bool(own is not None and contrast_findings(slot, own))
        row["swapped"][f"{image}<->{slot}"] = study_codes({**correct, slot: image, image: slot})
    return row


def summarise(rows: dict[str, dict]) -> dict:
    count = len(rows)
    alone = {name: sum(r["alone"][name] for r in rows.values()) for name in next(iter(rows.values()))["alone"]}
    swapped = {name: sum(bool(r["swapped"][name]) for r in rows.values())
               for name in next(iter(rows.values()))["swapped"] if name.split("<->")[0] < name.split("<->")[1]}
    extremes = {}
    for key in SEQUENCES:
        values = [r["contrast"][key] for r in rows.values() if r["contrast"][key]]
        extremes[key] = {field: [min(v[field] for v in values), max(v[field] for v in values)]
                         for field in ("white_minus_grey", "fluid_minus_white")}
    correlations = {key: [min(r["t1_correlations"][key] for r in rows.values()),
                          max(r["t1_correlations"][key] for r in rows.values())] for key in ("t1c", "t2")}
    margins = {name: [min(r["exchange_margins"][name] for r in rows.values()),
                      max(r["exchange_margins"][name] for r in rows.values())]
               for name in next(iter(rows.values()))["exchange_margins"]}
    return {"cases": count, "false_alarms_on_correct_studies": sum(bool(r["correct"]) for r in rows.values()),
            "alone_flagged_of_cases": alone, "swapped_flagged_of_cases": swapped,
            "correct_contrast_range": extremes, "t1_correlation_range": correlations,
            "exchange_margin_range": margins}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/brats2018"))
    parser.add_argument("--cases", type=int, default=0, help="first N cases only (0: all)")
    parser.add_argument("--out", type=Path, default=Path("runs/sequence_contrast.json"))
    args = parser.parse_args(argv)
    cases = find_cases(args.data)
    names = sorted(cases)[: args.cases or None]
    rows = {}
    for name in names:
        rows[name] = study_case(cases[name])
        r = rows[name]
        print(name, json.dumps(r["contrast"]), json.dumps(r["t1_correlations"]), "correct:", r["correct"], flush=True)
    summary = summarise(rows)
    print(json.dumps(summary, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "cases": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
