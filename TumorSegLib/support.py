"""What the given sequences can show, and so which volumes a result reports.

Enhancement is seen only against contrast: without T1c, enhancing tumour and its split from necrosis are not
reported (the core is one region). Oedema is seen only on T2 or FLAIR: without both, oedema and with it the
whole tumour's extent are not reported (the label map holds the core alone). Everything that says "not
assessed" (summary JSON, Slicer table, report, DICOM SEG/SR) reads it from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .labels import Label
from .volume import Volume

__all__ = ["VOLUME_NEEDS", "not_assessed", "why_not_assessed", "recorded_not_assessed", "recorded_too_little_ml",
           "unreported_enhancement", "without_unseen_oedema", "still_not_assessed", "still_unassessed_why",
           "NOT_ASSESSED_WITHOUT_T2_FLAIR"]

# Volume key -> the sequences of which at least one is needed to see it, and the short reason when none is given.
VOLUME_NEEDS: dict[str, tuple[tuple[str, ...], str]] = {
    "NCR": (("t1c",), "no T1c"),
    "ET": (("t1c",), "no T1c"),
    "ED": (("t2", "flair"), "no T2/FLAIR"),
    "WT": (("t2", "flair"), "no T2/FLAIR"),
}
_UNDER_REPORTING_MINIMUM = "under the model's reporting minimum"  # in the reason, which follow-up records keep
NOT_ASSESSED_WITHOUT_T2_FLAIR = ("no T2 or FLAIR: oedema cannot be seen, so oedema and the whole tumour's extent "
                                 "are not reported; the label map holds the tumour core only")


def not_assessed(sequences: Iterable[str]) -> dict[str, str]:
    """Volume keys the ``sequences`` given cannot support, each with its short reason (e.g. ``"no T1c"``)."""
    given = set(sequences)
    return {key: why for key, (needs, why) in VOLUME_NEEDS.items() if not given & set(needs)}


def why_not_assessed(keys: Iterable[str]) -> dict[str, str]:
    """The short reason of each not-assessed volume key (e.g. ``{"ED": "no T2/FLAIR"}``), for records that keep
    only the keys (a segmentation node's attribute, an older summary)."""
    return {key: VOLUME_NEEDS[key][1] for key in keys if key in VOLUME_NEEDS}


def recorded_not_assessed(summary: Mapping[str, Any]) -> dict[str, str]:
    """What a result summary recorded as not assessed, with why (a summary older than ``not_assessed_why``
    keeps only the keys), for follow-up: also enhancing tumour that enhanced too little in all to be reported
    (``enhancement.too_little_ml``), so that a later visit does not read it as gone (a complete response)."""
    recorded = dict(summary.get("not_assessed_why") or why_not_assessed(summary.get("not_assessed") or []))
    return {**unreported_enhancement(recorded_too_little_ml(summary)), **recorded}


def recorded_too_little_ml(summary: Mapping[str, Any]) -> float:
    """mL of enhancing tumour a result summary's enhancement check left unreported (under its least total)."""
    return float((summary.get("enhancement") or {}).get("too_little_ml") or 0.0)


def unreported_enhancement(too_little_ml: float) -> dict[str, str]:
    """``{"ET": why}`` when the enhancement check left unreported ``too_little_ml`` of enhancing tumour (under the
    model's least total), else ``{}``: for a follow-up, that visit's enhancing disease is not known to be gone."""
    if too_little_ml <= 0:
        return {}
    return {"ET": f"{too_little_ml:.1f} mL enhancing, {_UNDER_REPORTING_MINIMUM}: review the T1c"}


def without_unseen_oedema(labels: Volume, sequences: Iterable[str]) -> Volume:
    """``labels`` without oedema when neither T2 nor FLAIR was given (a network's guess there is not a finding:
    cross-validated whole-tumour Dice 0.30 from T1c alone)."""
    if "ED" not in not_assessed(sequences):
        return labels
    return labels.with_array(np.where(labels.array == Label.ED, 0, labels.array).astype(labels.array.dtype))


def still_unassessed_why(why: Mapping[str, str], drawn: Iterable[str]) -> dict[str, str]:
    """``why`` (volume key: reason) less what a reader has since drawn: oedema (as :func:`still_not_assessed`),
    and enhancing tumour the AI left unreported as too little (the reader who drew it has reviewed the T1c);
    enhancing tumour without T1c stays unassessed."""
    drawn = set(drawn)
    return {key: why[key] for key in still_not_assessed(why, drawn)
            if not (key == "ET" and "ET" in drawn and _UNDER_REPORTING_MINIMUM in why[key])}


def still_not_assessed(not_assessed_keys: Iterable[str], edited: Iterable[str]) -> list[str]:
    """``not_assessed_keys`` less what a reader has since drawn by hand: oedema painted on a study without
    T2/FLAIR is the reader's finding, so ED and WT are reported again (and exported). NCR/ET without T1c stay
    one core: there is no contrast to split it by."""
    edited = set(edited)
    return [key for key in not_assessed_keys if not ("ED" in edited and key in ("ED", "WT"))]
