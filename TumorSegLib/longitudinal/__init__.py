"""One patient's tumour over many visits.

* :mod:`.timeline` — the visits and their versioned JSON file;
* :mod:`.measurements` (with :mod:`.diameters`) — volumes and automatic bidimensional lesion diameters per visit;
* :mod:`.lesions` — the visit-registration recipe, alignment to the baseline and new lesions;
* :mod:`.rano` — RANO 2.0 rules and thresholds, in one place;
* :mod:`.table`, :mod:`.plots` — the per-visit table (CSV, text) and the volume plot;
* :mod:`.track` — ``tumorseg track``: all of the above from a timeline file.
"""

from .lesions import (
    REGISTRATION_SEQUENCES,
    Alignment,
    LesionStatus,
    align_to_baseline,
    align_visits,
    identity,
    lesion_status,
    register_visit,
    track_lesions,
)
from .measurements import (
    MAX_TARGET_LESIONS,
    MIN_DIAMETER_MM,
    LesionMeasurement,
    TimepointMeasurements,
    label_lesions,
    measure_labels,
    measure_lesions,
    read_label_map,
)
from .plots import plot_volumes
from .rano import (
    IMAGING_ONLY,
    RANO_2_0,
    ClinicalStatus,
    RanoThresholds,
    Response,
    ResponseCategory,
    SteroidChange,
    classify_response,
    percent_change,
)
from .table import PRINTED_COLUMNS, format_rows, timeline_rows, write_table_csv
from .timeline import SCHEMA_NAME, SCHEMA_VERSION, Timeline, TimelineError, Timepoint, parse_date, study_date_from_dicom
from .track import run_track

__all__ = [
    "SCHEMA_NAME", "SCHEMA_VERSION", "IMAGING_ONLY", "TimelineError", "SteroidChange", "ClinicalStatus",
    "ResponseCategory", "RanoThresholds", "RANO_2_0", "Timepoint", "Timeline", "Response", "LesionStatus",
    "Alignment", "parse_date", "study_date_from_dicom", "percent_change", "classify_response", "identity",
    "register_visit", "align_to_baseline", "align_visits", "lesion_status", "track_lesions", "timeline_rows",
    "write_table_csv", "format_rows", "PRINTED_COLUMNS", "plot_volumes", "run_track", "REGISTRATION_SEQUENCES",
    "MIN_DIAMETER_MM", "MAX_TARGET_LESIONS", "LesionMeasurement", "TimepointMeasurements", "label_lesions",
    "measure_lesions", "measure_labels", "read_label_map",
]
