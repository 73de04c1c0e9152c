"""The MRML scene: the only package that imports ``slicer``, ``vtk`` or ``qt`` (always inside functions).

Shared by the Slicer module and any other front end; pytest drives it on a real scene from the
``slicer-core`` wheel.

* :mod:`.nodes` — volume and transform nodes ↔ volumes and transforms; input assignment;
* :mod:`.segments` — segmentation nodes with terminology, edits, label-map export;
* :mod:`.results` — the results table, its watcher, the uncertainty overlay;
* :mod:`.tracker` (with :mod:`.timeline_nodes`) — the patient's visits, table and chart;
* :mod:`.run` (with :mod:`.process`) — a segmentation in a background process;
* :mod:`.dependencies` — packages to install on first use;
* :mod:`.session` — the module's logic on one scene, used by every front end.
"""

from .dicom_export import NOT_FROM_DICOM, export_dicom_results
from .nodes import (
    ROLE_ATTRIBUTE,
    add_uncertainty_node,
    add_volume_node,
    assign_volume_nodes,
    sitk_from_transform_node,
    transform_node_from_sitk,
    update_volume_node,
    volume_from_node,
)
from .parameters import UNKNOWN, SessionParameters
from .results import (
    TABLE_COLUMNS,
    ResultsWatcher,
    create_results_table,
    review_first,
    set_uncertainty_columns,
    set_uncertainty_overlay,
    table_rows,
    update_results_table,
)
from .run import RunResult, SegmentationRun, run_segmentation
from .segments import (
    AI_HASH_TAG,
    TERMINOLOGY_CONTEXT,
    VOLUME_INTERVALS_ATTRIBUTE,
    create_segmentation_node,
    edited_labels,
    export_segmentation,
    labels_from_segmentation,
    observe_segment_edits,
    result_reference_volume,
    segment_tag,
    terminology_entry,
)
from .session import RunStatus, SceneSession
from .timeline_nodes import TIMELINE_COLUMNS
from .tracker import ALIGNED_TO_ATTRIBUTE, ALIGNMENT_ATTRIBUTE, LongitudinalTracker

__all__ = [
    "ROLE_ATTRIBUTE", "volume_from_node", "add_volume_node", "update_volume_node", "add_uncertainty_node",
    "assign_volume_nodes", "transform_node_from_sitk", "sitk_from_transform_node", "TABLE_COLUMNS", "ResultsWatcher",
    "create_results_table", "update_results_table", "table_rows", "set_uncertainty_columns", "review_first",
    "set_uncertainty_overlay", "RunResult", "SegmentationRun", "run_segmentation", "AI_HASH_TAG",
    "TERMINOLOGY_CONTEXT", "VOLUME_INTERVALS_ATTRIBUTE", "terminology_entry", "create_segmentation_node",
    "result_reference_volume", "labels_from_segmentation", "observe_segment_edits", "edited_labels", "segment_tag", "export_segmentation",
    "UNKNOWN", "SessionParameters", "NOT_FROM_DICOM", "export_dicom_results", "RunStatus", "SceneSession", "TIMELINE_COLUMNS", "ALIGNMENT_ATTRIBUTE", "ALIGNED_TO_ATTRIBUTE",
    "LongitudinalTracker",
]
