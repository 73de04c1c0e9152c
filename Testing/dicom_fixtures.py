"""DICOM studies for tests: volumes written as classic MR series with the header variants hospitals produce.

Only for tests and benchmarks (TumorSeg reads DICOM; it never makes MR images)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from TumorSegLib.volume import Volume

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


@dataclass(frozen=True)
class SeriesHeader:
    """What distinguishes one series of a study: its name and acquisition attributes (``None`` leaves a tag out)."""

    description: str | None
    tr: float | None = None
    te: float | None = None
    ti: float | None = None
    contrast_agent: str | None = None
    acquisition: str = "2D"
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "M", "ND")
    extra: dict = field(default_factory=dict)


# Vendor styles for the four sequences (names, timings, contrast tags as scanners write them).
VENDOR_STYLES: dict[str, dict[str, SeriesHeader]] = {
    "ge": {"t1": SeriesHeader("AX T1 PRE GAD", 600, 10), "t1c": SeriesHeader("AX T1 POST GAD", 600, 10, None, "GADAVIST"),
           "t2": SeriesHeader("AX T2 FSE", 4000, 100), "flair": SeriesHeader("AX T2 FLAIR", 9000, 120, 2500)},
    "siemens": {"t1": SeriesHeader("t1_se_tra", 550, 9), "t1c": SeriesHeader("t1_mprage_tra_KM", 1900, 2.5, 900, "Dotarem",
                                                                             "3D"),
                "t2": SeriesHeader("t2_tse_tra", 5000, 95), "flair": SeriesHeader("t2_tirm_tra_dark-fluid", 8000, 85, 2370)},
    "philips": {"t1": SeriesHeader("T1W_SE", 500, 12), "t1c": SeriesHeader("T1W_SE +C", 500, 12, None, "Gadovist"),
                "t2": SeriesHeader("T2W_TSE", 3500, 90), "flair": SeriesHeader("T2W_FLAIR", 11000, 125, 2800)},
    # No descriptions at all: the classification must come from TR/TE/TI and the contrast agent tag.
    "unnamed": {"t1": SeriesHeader(None, 520, 11), "t1c": SeriesHeader(None, 520, 11, None, "GADOTERATE"),
                "t2": SeriesHeader(None, 4500, 105), "flair": SeriesHeader(None, 9500, 110, 2500)},
}
# Series a study also holds, all to be ignored.
OTHER_SERIES: dict[str, SeriesHeader] = {
    "localizer": SeriesHeader("3-Plane Loc", 5, 1.5, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER")),
    "dwi": SeriesHeader("AX DWI B1000", 6000, 80, extra={"DiffusionBValue": 1000}),
    "adc": SeriesHeader("ADC map", 6000, 80, image_type=("DERIVED", "SECONDARY", "ADC")),
    "perfusion": SeriesHeader("ep2d_perf_DSC", 1500, 30, None, "GADAVIST"),
}


def _study_attributes(patient_id: str, study_uid: str, study_date: str) -> dict:
    return {"PatientName": "Test^Glioma", "PatientID": patient_id, "PatientBirthDate": "19700101", "PatientSex": "O",
            "StudyInstanceUID": study_uid, "StudyDate": study_date, "StudyTime": "101500",
            "ReferringPhysicianName": "", "StudyID": "1", "AccessionNumber": f"A{patient_id}",
            "StudyDescription": "MR BRAIN WITH AND WITHOUT CONTRAST"}


def write_series(volume: Volume, folder: Path, header: SeriesHeader, number: int, study: dict,
                 frame_of_reference: str, slices: int | None = None) -> str:
    """Write ``volume`` as a classic MR series (one int16 file per slice) under ``folder``; returns its UID."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    array = np.clip(np.round(volume.array), -32768, 32767).astype(np.int16)
    direction, spacing, origin = np.asarray(volume.direction), volume.spacing, np.asarray(volume.origin)
    count = volume.shape[2] if slices is None else slices
    for k in range(count):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        for key, value in study.items():
            setattr(ds, key, value)
        ds.SOPClassUID, ds.SOPInstanceUID = MR_IMAGE_STORAGE, ds.file_meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = "MR", series_uid, number, k + 1
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame_of_reference, ""
        ds.Manufacturer, ds.ImageType = "TestVendor", list(header.image_type)
        if header.description is not None:
            ds.SeriesDescription = header.description
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "SE", "NONE", ""
        ds.MRAcquisitionType = header.acquisition
        for keyword, value in (("RepetitionTime", header.tr), ("EchoTime", header.te), ("InversionTime", header.ti),
                               ("ContrastBolusAgent", header.contrast_agent)):
            if value is not None:
                setattr(ds, keyword, value)
        for keyword, value in header.extra.items():
            setattr(ds, keyword, value)
        ds.EchoTrainLength, ds.MagneticFieldStrength = 1, 3.0
        ds.AcquisitionTime = ds.SeriesTime = f"{10 + number // 60:02d}{number % 60:02d}00"
        ds.SliceThickness = spacing[2]
        ds.ImagePositionPatient = [float(v) for v in origin + k * spacing[2] * direction[:, 2]]
        ds.ImageOrientationPatient = [float(v) for v in np.concatenate([direction[:, 0], direction[:, 1]])]
        ds.PixelSpacing = [spacing[1], spacing[0]]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = np.ascontiguousarray(array[:, :, k].T).tobytes()
        pydicom.dcmwrite(folder / f"IM{number:03d}_{k + 1:04d}.dcm", ds, enforce_file_format=True)
    return series_uid


def write_study(images: dict[str, Volume], folder: Path, style: str = "ge", others: tuple[str, ...] = (),
                patient_id: str = "TS0001", study_date: str | None = None) -> dict[str, str]:
    """Write a study: the given sequences in ``style``'s naming, plus ``others`` (localizer, dwi, adc, perfusion).

    Returns ``{sequence key or other name: series UID}``."""
    from pydicom.uid import generate_uid

    study = _study_attributes(patient_id, generate_uid(), study_date or dt.date(2026, 3, 14).strftime("%Y%m%d"))
    frame_of_reference = generate_uid()
    uids = {}
    number = 1
    any_image = next(iter(images.values()))
    for name in others:
        volume = any_image
        if name == "localizer":
            uids[name] = write_series(volume, folder / name, OTHER_SERIES[name], number, study, frame_of_reference, 3)
        else:
            uids[name] = write_series(volume, folder / name, OTHER_SERIES[name], number, study, frame_of_reference)
        number += 1
    for key in ("t1", "t2", "flair", "t1c"):  # the usual order: post-contrast last
        if key in images:
            uids[key] = write_series(images[key], folder / key, VENDOR_STYLES[style][key], number, study,
                                     frame_of_reference)
            number += 1
    return uids
