"""One patient's tumour over many visits.

* :mod:`.timeline` — the visits and their versioned JSON file;
* :mod:`.measurements` (with :mod:`.diameters`) — volumes and automatic bidimensional lesion diameters per visit;
* :mod:`.lesions` — the visit-registration recipe and alignment to the baseline;
* :mod:`.targets` — lesion identity over visits: targets chosen at baseline, non-target and new lesions;
* :mod:`.rano` — RANO 2.0 rules and thresholds, in one place; :mod:`.followup` applies them to a timeline;
* :mod:`.table`, :mod:`.plots` — the per-visit table and per-lesion list (CSV, JSON, text) and the plot;
* :mod:`.visits` — a timeline built from a folder of visits;
* :mod:`.track` — ``tumorseg track``: all of the above from a timeline file.
"""

from .followup import METHODS, REGION_OF, FollowUp, assess_timeline
from .lesions import (
    REGISTRATION_SEQUENCES,
    VISIT_POOR_MI,
    Alignment,
    align_to_baseline,
    align_visits,
    identity,
    register_visit,
)
from .measurements import (
    MAX_TARGET_LESIONS,
    MIN_DIAMETER_MM,
    LesionMeasurement,
    TimepointMeasurements,
    label_lesions,
    lesion_mask,
    measure_labels,
    measure_lesions,
    read_label_map,
)
from .plots import plot_volumes
from .rano import (
    CONFIRMATION_DAYS,
    IMAGING_ONLY,
    RADIOTHERAPY_WINDOW_DAYS,
    RANO_2_0,
    THRESHOLDS,
    Assessment,
    ClinicalStatus,
    Confirmation,
    RanoThresholds,
    Response,
    ResponseCategory,
    SteroidChange,
    VisitFacts,
    assess_series,
    classify_response,
    percent_change,
)
from .table import PRINTED_COLUMNS, format_rows, lesion_rows, timeline_rows, write_table_csv
from .targets import LesionAtVisit, SeriesLesions, VisitLesions, track_series
from .timeline import SCHEMA_NAME, SCHEMA_VERSION, Timeline, TimelineError, Timepoint, parse_date
from .track import TRACK_FILES, run_track
from .visits import TIMELINE_FILE, VisitSource, build_timeline, find_visits, study_date_from_dicom

__all__ = [
    "SCHEMA_NAME", "SCHEMA_VERSION", "IMAGING_ONLY", "CONFIRMATION_DAYS", "RADIOTHERAPY_WINDOW_DAYS", "THRESHOLDS",
    "RANO_2_0", "TimelineError", "Assessment", "SteroidChange", "ClinicalStatus", "ResponseCategory", "Confirmation",
    "RanoThresholds", "VisitFacts", "Response", "Timepoint", "Timeline", "Alignment", "parse_date",
    "study_date_from_dicom", "percent_change", "classify_response", "assess_series", "identity", "register_visit",
    "align_to_baseline", "align_visits", "VISIT_POOR_MI", "REGISTRATION_SEQUENCES", "METHODS", "REGION_OF", "FollowUp",
    "assess_timeline", "VisitLesions", "LesionAtVisit", "SeriesLesions", "track_series", "timeline_rows",
    "lesion_rows", "write_table_csv", "format_rows", "PRINTED_COLUMNS", "plot_volumes", "run_track", "TRACK_FILES",
    "TIMELINE_FILE", "VisitSource", "build_timeline", "find_visits", "MIN_DIAMETER_MM", "MAX_TARGET_LESIONS",
    "LesionMeasurement", "TimepointMeasurements", "label_lesions", "lesion_mask", "measure_lesions", "measure_labels",
    "read_label_map",
]
