"""Label codes, tumour regions, colours and terminology: the one place these facts live.

TumorSeg works internally with the BraTS 2023 codes (1 NCR, 2 ED, 3 ET). Label maps written with the
BraTS 2018-2020 convention (4 = ET) are understood on input and can be written on request.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .volume import Volume

__all__ = [
    "Label",
    "LabelConvention",
    "Region",
    "REGIONS",
    "REGION_COLORS",
    "VOLUME_KEYS",
    "VOLUME_MEMBERS",
    "LABELS",
    "LabelInfo",
    "to_internal_labels",
    "from_internal_labels",
    "region_masks",
    "labels_from_region_masks",
    "region_volumes_ml",
]


class Label(int, Enum):
    """Internal label codes (BraTS 2023 convention)."""

    BACKGROUND = 0
    NCR = 1  # necrotic / non-enhancing tumour core
    ED = 2  # peritumoral oedema (invaded tissue)
    ET = 3  # enhancing tumour


class LabelConvention(str, Enum):
    """Label code conventions found in BraTS-format files."""

    BRATS2018 = "brats2018"  # {1 NCR/NET, 2 ED, 4 ET}
    BRATS2023 = "brats2023"  # {1 NCR, 2 ED, 3 ET}


_CODE_OF_ET = {LabelConvention.BRATS2018: 4, LabelConvention.BRATS2023: 3}


@dataclass(frozen=True)
class LabelInfo:
    """What a clinician sees for one label: name, colour and SNOMED CT terminology."""

    label: Label
    key: str
    name: str
    color: tuple[float, float, float]
    # SNOMED CT (category, type) codes as (code, meaning) pairs, used for Slicer terminology and DICOM SEG.
    category: tuple[str, str]
    type: tuple[str, str]


# Colours follow the usual BraTS figures: NCR red, ED green, ET yellow.
LABELS: tuple[LabelInfo, ...] = (
    LabelInfo(Label.NCR, "NCR", "Necrotic and non-enhancing tumor core", (1.0, 0.0, 0.0),
              ("49755003", "Morphologically Altered Structure"), ("6574001", "Necrosis")),
    LabelInfo(Label.ED, "ED", "Peritumoral edema", (0.0, 0.8, 0.0),
              ("49755003", "Morphologically Altered Structure"), ("79654002", "Edema")),
    LabelInfo(Label.ET, "ET", "Enhancing tumor", (1.0, 1.0, 0.0),
              ("49755003", "Morphologically Altered Structure"), ("108369006", "Neoplasm")),
)


class Region(str, Enum):
    """Evaluation and reporting regions, each a union of labels."""

    WT = "WT"  # whole tumour
    TC = "TC"  # tumour core
    ET = "ET"  # enhancing tumour


# Region definitions; the order (WT, TC, ET) is also the channel order of region-based models.
REGIONS: dict[Region, frozenset[Label]] = {
    Region.WT: frozenset({Label.NCR, Label.ED, Label.ET}),
    Region.TC: frozenset({Label.NCR, Label.ET}),
    Region.ET: frozenset({Label.ET}),
}
# Plot colours of the regions (charts and timeline plots); segments use each label's colour in LABELS.
REGION_COLORS: dict[Region, tuple[float, float, float]] = {
    Region.WT: (0.1, 0.7, 0.1),
    Region.TC: (0.9, 0.1, 0.1),
    Region.ET: (1.0, 0.85, 0.0),
}
# What a volume table lists, in this order: each label, then the composite regions (ET the region is ET the label).
VOLUME_KEYS: tuple[str, ...] = ("NCR", "ED", "ET", "TC", "WT")
VOLUME_MEMBERS: dict[str, frozenset[Label]] = {
    "NCR": frozenset({Label.NCR}),
    "ED": frozenset({Label.ED}),
    "ET": REGIONS[Region.ET],
    "TC": REGIONS[Region.TC],
    "WT": REGIONS[Region.WT],
}


def to_internal_labels(labels: np.ndarray, convention: LabelConvention | str | None = None) -> np.ndarray:
    """Convert a BraTS label map to internal codes {0,1,2,3}.

    Args:
        labels: integer array of any shape.
        convention: the file's convention; ``None`` detects it (4 present means BraTS 2018).

    Raises:
        ValueError: if the array holds codes that neither convention knows, or both 3 and 4.
    """
    codes = set(np.unique(labels).tolist())
    if convention is None:
        if {3, 4} <= codes:
            raise ValueError(f"label map holds both 3 and 4 ({sorted(codes)}): not a BraTS label map")
        convention = LabelConvention.BRATS2018 if 4 in codes else LabelConvention.BRATS2023
    convention = LabelConvention(convention)
    allowed = {0, 1, 2, _CODE_OF_ET[convention]}
    unknown = codes - allowed
    if unknown:
        raise ValueError(
            f"label map holds codes {sorted(unknown)} that the {convention.value} convention does not use "
            f"(expected a subset of {sorted(allowed)}); is this a tumour label file?"
        )
    out = labels.astype(np.uint8, copy=True)
    if convention is LabelConvention.BRATS2018:
        out[labels == 4] = Label.ET
    return out


def from_internal_labels(labels: np.ndarray, convention: LabelConvention | str) -> np.ndarray:
    """Convert internal codes to ``convention``'s codes."""
    out = labels.astype(np.uint8, copy=True)
    out[labels == Label.ET] = _CODE_OF_ET[LabelConvention(convention)]
    return out


def region_masks(labels: np.ndarray) -> dict[Region, np.ndarray]:
    """Boolean mask of every region for an internal label map."""
    return {region: np.isin(labels, [int(x) for x in members]) for region, members in REGIONS.items()}


def labels_from_region_masks(wt: np.ndarray, tc: np.ndarray, et: np.ndarray) -> np.ndarray:
    """Build an internal label map from region masks, enforcing ET ⊂ TC ⊂ WT.

    A voxel that a inner region claims is kept: the outer regions are extended to contain it, because
    enhancing tumour found outside the predicted whole tumour is still tumour.
    """
    et = et.astype(bool)
    tc = tc.astype(bool) | et
    wt = wt.astype(bool) | tc
    out = np.zeros(wt.shape, dtype=np.uint8)
    out[wt] = Label.ED
    out[tc] = Label.NCR
    out[et] = Label.ET
    return out


def region_volumes_ml(labels: Volume) -> dict[str, float]:
    """Volume in mL (3 decimals) of each entry of :data:`VOLUME_KEYS` in an internal label map."""
    voxel_ml = labels.voxel_volume_ml
    return {key: round(float(np.isin(labels.array, [int(m) for m in members]).sum()) * voxel_ml, 3)
            for key, members in VOLUME_MEMBERS.items()}
