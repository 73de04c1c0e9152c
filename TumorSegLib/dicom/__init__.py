"""DICOM in and out: studies read and classified (:mod:`.study`), SEG (:mod:`.seg`), SR TID 1500 (:mod:`.sr`),
the uncertainty Parametric Map and the Encapsulated PDF report (:mod:`.objects`), DICOMweb (:mod:`.web`).

highdicom, pydicom and dicomweb-client are imported only when a function needs them."""

from .common import Algorithm, frames_of, read_sources, save_dataset
from .objects import build_encapsulated_pdf, build_uncertainty_map
from .seg import SegmentSpec, build_seg, seg_labels, segment_specs
from .sr import LesionDiameters, RegionVolume, build_sr
from .study import (
                    IGNORED,
                    SeriesInfo,
                    StudyAssignment,
                    assign_series,
                    choose_study,
                    classify_series,
                    parse_assignments,
                    read_series,
                    scan_folder,
)

__all__ = ["Algorithm", "frames_of", "read_sources", "save_dataset", "build_encapsulated_pdf", "build_uncertainty_map",
           "SegmentSpec", "build_seg", "seg_labels", "segment_specs", "LesionDiameters", "RegionVolume", "build_sr",
           "IGNORED", "SeriesInfo", "StudyAssignment", "assign_series", "choose_study", "classify_series",
           "parse_assignments", "read_series", "scan_folder"]
