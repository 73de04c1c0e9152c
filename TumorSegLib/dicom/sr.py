"""DICOM SR TID 1500 measurement report (highdicom): the volume of each segment (± its interval when one was
estimated), the composite regions' volumes, and the bidimensional diameters of each enhancing lesion."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .common import EQUIPMENT, Algorithm

__all__ = ["RegionVolume", "LesionDiameters", "build_sr"]


@dataclass(frozen=True)
class RegionVolume:
    """A volume to report: ``key`` (NCR, ED, ET, TC, WT), its name, mL, interval (low, high) or ``None``, and
    the SEG segment it measures (``None`` for composite regions: the segments they are made of are named)."""

    key: str
    name: str
    volume_ml: float
    interval_ml: tuple[float, float] | None = None
    segment_number: int | None = None
    finding_type: tuple[str, str] = ("108369006", "Neoplasm")


@dataclass(frozen=True)
class LesionDiameters:
    """Bidimensional measurement of one enhancing lesion: diameters (mm) and their LPS end points."""

    index: int
    longest_mm: float
    perpendicular_mm: float
    longest_ends: tuple[tuple[float, float, float], tuple[float, float, float]]
    perpendicular_ends: tuple[tuple[float, float, float], tuple[float, float, float]]
    measurable: bool


def _milliliter():
    from pydicom.sr.coding import Code

    return Code("mL", "UCUM", "milliliter")


def _volume_measurement(region: RegionVolume, algorithm: Algorithm):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    properties = None
    if region.interval_ml is not None:
        low, high = region.interval_ml
        properties = hd.sr.MeasurementProperties(upper_measurement_uncertainty=round(max(high - region.volume_ml, 0), 3),
                                                 lower_measurement_uncertainty=round(max(region.volume_ml - low, 0), 3))
    return hd.sr.Measurement(name=codes.SCT.Volume, value=round(region.volume_ml, 3), unit=_milliliter(),
                             properties=properties, algorithm_id=algorithm.sr_identification())


def _lesion_group(lesion: LesionDiameters, frame_of_reference: str, algorithm: Algorithm):
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    def axis(name, value, ends):
        line = hd.sr.CoordinatesForMeasurement3D(graphic_type=hd.sr.GraphicTypeValues3D.POLYLINE,
                                                 graphic_data=np.array(ends, dtype=float),
                                                 frame_of_reference_uid=frame_of_reference)
        return hd.sr.Measurement(name=name, value=round(value, 2), unit=codes.UCUM.Millimeter,
                                 referenced_coordinates=[line], algorithm_id=algorithm.sr_identification())

    state = "measurable" if lesion.measurable else "not measurable"  # RANO 2.0 measurable disease
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"Enhancing lesion {lesion.index} "
                                                                              f"({state})"),
        finding_type=Code("108369006", "SCT", "Neoplasm"),
        measurements=[axis(codes.SCT.LongAxis, lesion.longest_mm, lesion.longest_ends),
                      axis(codes.SCT.ShortAxis, lesion.perpendicular_mm, lesion.perpendicular_ends)])


def build_sr(seg, sources: Sequence, regions: Sequence[RegionVolume], lesions: Sequence[LesionDiameters],
             algorithm: Algorithm, series_number: int = 9002, title: str = "TumorSeg tumour measurements"):
    """A Comprehensive 3D SR (TID 1500) with the volumes of ``regions`` and the lesions' diameters.

    ``seg`` is the SEG dataset the segment volumes refer to; ``sources`` its source images (evidence)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    source_series = hd.sr.SourceSeriesForSegmentation(sources[0].SeriesInstanceUID)
    groups = []
    for region in regions:
        tracking = hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"{region.key} {region.name}"[:64])
        finding = Code(region.finding_type[0], "SCT", region.finding_type[1])
        if region.segment_number is not None:
            reference = hd.sr.ReferencedSegment(sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID,
                                                segment_number=region.segment_number, source_series=source_series)
            groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking, referenced_segment=reference, finding_type=finding,
                measurements=[_volume_measurement(region, algorithm)]))
        else:
            groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking, finding_type=finding, measurements=[_volume_measurement(region, algorithm)]))
    frame_of_reference = sources[0].FrameOfReferenceUID
    groups += [_lesion_group(lesion, frame_of_reference, algorithm) for lesion in lesions]
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name=f"TumorSeg {algorithm.model_id}"[:64], manufacturer_name=EQUIPMENT["manufacturer"],
            model_name=algorithm.model_id[:64]))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.cid100.MultiparametricMRI, imaging_measurements=groups)
    return hd.sr.Comprehensive3DSR(
        evidence=[seg, *sources], content=report, series_instance_uid=hd.UID(), series_number=series_number,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=EQUIPMENT["manufacturer"],
        series_description=title[:64], is_complete=True, is_final=False, is_verified=False)
