"""The other objects a result goes back to the PACS as: the voxel uncertainty as a Parametric Map, and the
clinician's PDF report as an Encapsulated PDF."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np

from ..volume import Volume
from .common import EQUIPMENT, Algorithm, frame_stack, frames_of

__all__ = ["build_uncertainty_map", "build_encapsulated_pdf"]

ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"


def build_uncertainty_map(uncertainty: Volume, sources: Sequence, algorithm: Algorithm, kind: str = "entropy",
                          series_number: int = 9003):
    """A float Parametric Map (0-1) of ``uncertainty`` on the grid of ``sources``' series."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    frames = frames_of(uncertainty, sources)
    pixels = frame_stack(np.clip(uncertainty.array, 0, 1).astype(np.float32), frames)
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="UNCERTAINTY", lut_explanation=f"TumorSeg voxel uncertainty ({kind}, 0 sure - 1 unsure)",
        unit=codes.UCUM.NoUnits, value_range=(0.0, 1.0), slope=1.0, intercept=0.0,
        quantity_definition=Code("C0041883", "UMLS", "Uncertainty"))
    parametric_map = hd.pm.ParametricMap(
        source_images=[dataset for _, dataset in frames], pixel_array=pixels, series_instance_uid=hd.UID(),
        series_number=series_number, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer_model_name=algorithm.model_id[:64], contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=0.5, window_width=1.0)],
        content_label="UNCERTAINTY", content_description=f"TumorSeg {kind} uncertainty"[:64],
        series_description=f"TumorSeg uncertainty ({kind})"[:64], **EQUIPMENT)
    parametric_map.BodyPartExamined = "BRAIN"  # unpaired: no Laterality (General Series, Type 2C)
    return parametric_map


def build_encapsulated_pdf(pdf: bytes, study_source, title: str = "TumorSeg report", series_number: int = 9004):
    """An Encapsulated PDF Storage object of ``pdf`` in the study of ``study_source`` (a source image)."""
    import highdicom as hd
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    now = dt.datetime.now()
    document = Dataset()
    uid = hd.UID()
    document.file_meta = FileMetaDataset()
    document.file_meta.MediaStorageSOPClassUID = ENCAPSULATED_PDF_STORAGE
    document.file_meta.MediaStorageSOPInstanceUID = uid
    document.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    document.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                    "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription"):
        setattr(document, keyword, study_source.get(keyword, ""))
    document.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: patient names as the source wrote them
    document.SOPClassUID = ENCAPSULATED_PDF_STORAGE
    document.SOPInstanceUID = uid
    document.Modality = "DOC"
    document.SeriesInstanceUID = hd.UID()
    document.SeriesNumber = series_number
    document.SeriesDescription = title[:64]
    document.Manufacturer = EQUIPMENT["manufacturer"]
    document.SoftwareVersions = EQUIPMENT["software_versions"]
    document.ConversionType = "WSD"  # workstation
    document.InstanceNumber = 1
    document.ContentDate = now.strftime("%Y%m%d")
    document.ContentTime = now.strftime("%H%M%S")
    document.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    document.BurnedInAnnotation = "YES"  # the report names the patient
    document.DocumentTitle = title[:64]
    concept = Dataset()
    concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning = "18748-4", "LN", "Diagnostic imaging study"
    document.ConceptNameCodeSequence = [concept]
    document.MIMETypeOfEncapsulatedDocument = "application/pdf"
    document.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    document.EncapsulatedDocumentLength = len(pdf)
    return document
