"""DICOM SEG of a label map (highdicom), and back: one binary segment per label, SNOMED CT coded, referencing
the series it was computed on."""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from ..labels import LABELS, Label
from ..volume import Volume
from .common import EQUIPMENT, Algorithm, frame_stack, frames_of

__all__ = ["SegmentSpec", "segment_specs", "build_seg", "seg_labels"]

_CATEGORY = ("49755003", "Morphologically Altered Structure")


@dataclass(frozen=True)
class SegmentSpec:
    """One segment: the label codes it covers, its name, SNOMED CT (category, type) and display colour."""

    labels: frozenset[int]
    name: str
    category: tuple[str, str]
    type: tuple[str, str]
    color: tuple[float, float, float]


def segment_specs(not_assessed: Collection[str] = ()) -> list[SegmentSpec]:
    """The segments of a result: NCR, ED, ET; without T1c (NCR and ET not assessed) the core is one
    segment, named for what it is; without T2/FLAIR (ED not assessed) there is no oedema segment."""
    specs = [SegmentSpec(frozenset({int(info.label)}), info.name, info.category, info.type, info.color)
             for info in LABELS if not (info.label == Label.ED and "ED" in not_assessed)]
    if {"NCR", "ET"} & set(not_assessed):
        core = SegmentSpec(frozenset({int(Label.NCR), int(Label.ET)}),
                           "Tumor core (necrosis and enhancement not assessed without T1c)", _CATEGORY,
                           ("108369006", "Neoplasm"), LABELS[0].color)
        specs = [core] + [s for s in specs if Label.ED in s.labels]
    return specs


def _keys(spec: SegmentSpec) -> set[str]:
    return {Label(code).name for code in spec.labels}


def _cielab(rgb: tuple[float, float, float]):
    import highdicom as hd

    return hd.color.CIELabColor(*_rgb_to_lab(rgb))


def _rgb_to_lab(rgb: tuple[float, float, float]) -> tuple[float, float, float]:
    """sRGB (0-1) → CIE L*a*b* (D65), as DICOM's recommended display colour wants."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    matrix = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = matrix @ np.array(linear) / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    return float(116 * f[1] - 16), float(500 * (f[0] - f[1])), float(200 * (f[1] - f[2]))


def build_seg(labels: Volume, sources: Sequence, segments: Sequence[SegmentSpec], algorithm: Algorithm,
              series_number: int = 9001, description: str = "TumorSeg tumour segmentation",
              edited: Collection[str] = ()):
    """A DICOM SEG dataset of ``labels`` (internal codes, on the grid of ``sources``' series); segments
    covering a label whose key is in ``edited`` (corrected by hand) are semi-automatic, the others automatic.

    Raises:
        ValueError: if ``sources`` are not the slices of the label map's grid.
    """
    import highdicom as hd
    from pydicom.sr.coding import Code
    from pydicom.uid import ExplicitVRLittleEndian

    frames = frames_of(labels, sources)
    masks = np.stack([np.isin(labels.array, sorted(s.labels)) for s in segments], axis=-1)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number, segment_label=spec.name[:64],
            segmented_property_category=Code(spec.category[0], "SCT", spec.category[1]),
            segmented_property_type=Code(spec.type[0], "SCT", spec.type[1]),
            algorithm_type=(hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC if _keys(spec) & set(edited)
                            else hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC),
            algorithm_identification=algorithm.segment_identification(),
            tracking_uid=hd.UID(), tracking_id=spec.name[:64],
            anatomic_regions=[Code("12738006", "SCT", "Brain")], display_color=_cielab(spec.color))
        for number, spec in enumerate(segments, start=1)]
    return hd.seg.Segmentation(
        source_images=[dataset for _, dataset in frames], pixel_array=frame_stack(masks, frames),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
        series_instance_uid=hd.UID(), series_number=series_number, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer_model_name=algorithm.model_id[:64], series_description=description,
        content_label="TUMORSEG", content_description=description[:64], transfer_syntax_uid=ExplicitVRLittleEndian,
        omit_empty_frames=False, **EQUIPMENT)


def seg_labels(seg, grid: Volume, sources: Sequence, segments: Sequence[SegmentSpec] | None = None) -> np.ndarray:
    """The label map a SEG encodes, on ``grid`` (I, J, K), each segment painted with the lowest code it covers.

    ``seg`` is a path or a dataset; ``sources`` are the images it references (to place its frames)."""
    import highdicom as hd

    seg = hd.seg.segread(seg) if isinstance(seg, (str, os.PathLike)) else hd.seg.Segmentation.from_dataset(seg)
    frames = frames_of(grid, sources)
    uids = [dataset.SOPInstanceUID for _, dataset in frames]
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=False,
                                               skip_overlap_checks=True)  # (frames, rows, columns, segments)
    labels = np.zeros(grid.shape, np.uint8)
    numbers = seg.segment_numbers
    for position, number in enumerate(numbers):
        code = min(segments[number - 1].labels) if segments else number
        for (k, _), frame in zip(frames, pixels[..., position]):
            labels[:, :, k][frame.T > 0] = code
    return labels
