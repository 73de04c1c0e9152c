"""One patient's visits in the scene: timeline, table and chart nodes, subject hierarchy, live edits.

Measurements are always made in each visit's own space. Follow-ups are aligned on the baseline as they are
added, and their lesions followed from the baseline as ``tumorseg track`` does.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..longitudinal import (
    Alignment,
    ClinicalStatus,
    SteroidChange,
    Timeline,
    Timepoint,
    assess_timeline,
    identity,
    measure_labels,
    parse_date,
    plot_volumes,
    register_visit,
    timeline_rows,
    write_table_csv,
)
from ..support import still_unassessed_why, unreported_enhancement, why_not_assessed
from ..volume import Volume
from .nodes import sitk_from_transform_node, transform_node_from_sitk, volume_from_node
from .results import UNREPORTED_ENHANCEMENT_ATTRIBUTE, ai_not_assessed
from .segments import VOLUME_INTERVALS_ATTRIBUTE, edited_labels, export_segmentation, labels_from_segmentation
from .timeline_nodes import create_timeline_table, create_volume_chart, fill_timeline_table

__all__ = ["ALIGNMENT_ATTRIBUTE", "ALIGNED_TO_ATTRIBUTE", "LongitudinalTracker"]

ALIGNMENT_ATTRIBUTE = "TumorSeg.AlignmentMethod"  # on transform nodes made by LongitudinalTracker.align
ALIGNED_TO_ATTRIBUTE = "TumorSeg.AlignedTo"  # ... and the baseline visit id they align on
_TIMELINE_PARAMETER = "TumorSeg.timeline"
_TABLE_REFERENCE = "TumorSeg.timelineTable"
_CHART_REFERENCE = "TumorSeg.timelineChart"


def _visit_reference(timepoint_id: str, role: str) -> str:
    return f"TumorSeg.visit.{timepoint_id}.{role}"


class LongitudinalTracker:
    """One patient's visits in the scene: a :class:`~TumorSegLib.longitudinal.Timeline`, its table node and
    chart, grouped in the subject hierarchy (patient → one study per visit), kept current while segments
    are edited. Measurements are always made in each visit's own space.

    Follow-ups are aligned on the baseline as they are added (:meth:`align`), and their lesions followed from
    the baseline's targets as ``tumorseg track`` does (:func:`~TumorSegLib.longitudinal.assess_timeline`), so a
    new lesion shows in the table and drives the category (a new measurable one is PD).
    """

    def __init__(self, scene, patient_id: str, primary: str = "bidimensional", tolerance_mm: float = 5.0, *,
                 table=None, chart=None):
        self.scene = scene
        self.timeline = Timeline(patient_id=patient_id)
        self.primary = primary
        self.tolerance_mm = tolerance_mm
        self.nodes: dict[str, tuple[object, object]] = {}  # visit id → (segmentation, reference volume)
        self.alignments: dict[str, Alignment] = {}  # follow-up id → Alignment on the baseline (native spaces)
        self._labels: dict[str, Volume] = {}  # visit id → native label map, for the new-lesion check
        self._observers: list[tuple[object, int]] = []
        self.rows: list[dict] = []
        self.followup = None
        self.table = table if table is not None else create_timeline_table(scene, patient_id)
        self.chart = chart

    def add_timepoint(self, timepoint_id: str, date, segmentation_node, reference_node, steroids: str | None = None,
                      clinical_status: str | None = None, align: bool = True) -> Timepoint:
        """Add a visit from its segmentation (AI or corrected); returns the timeline's Timepoint.

        ``steroids`` (increased, stable, decreased, off) and ``clinical_status`` (worse, stable, better) are the
        values of :class:`~TumorSegLib.longitudinal.SteroidChange` / ``ClinicalStatus``; ``None`` = unknown.
        With ``align`` (the default) follow-ups are registered to the baseline, so lesions are matched after
        registration (repositioning does not make a lesion new).
        """
        labels = labels_from_segmentation(segmentation_node, reference_node, world=False)
        intervals = json.loads(segmentation_node.GetAttribute(VOLUME_INTERVALS_ATTRIBUTE) or "{}")
        baseline_before = self.timeline.baseline.id if self.timeline.timepoints else None
        date = parse_date(date)
        same_day = [tp for tp in self.timeline.timepoints if tp.date == date]
        for number, earlier in enumerate(same_day, start=1):  # visits added on one date: in the order added
            earlier.order = earlier.order or number
        measurements = measure_labels(labels)
        timepoint = Timepoint(timepoint_id, date, measurements=measurements,
                              not_assessed=_not_assessed(segmentation_node, measurements.volumes_ml),
                              corrected=bool(edited_labels(segmentation_node, labels)),
                              volume_intervals={key: tuple(value) for key, value in intervals.items()},
                              steroids=SteroidChange(steroids) if steroids else None,
                              clinical_status=ClinicalStatus(clinical_status) if clinical_status else None,
                              order=len(same_day) + 1 if same_day else None)
        self.timeline.add(timepoint)
        if baseline_before is not None and self.timeline.baseline.id != baseline_before:
            self.alignments.clear()  # an earlier visit became the baseline: the alignments refer to the old one
        self.nodes[timepoint_id] = (segmentation_node, reference_node)
        self._labels[timepoint_id] = labels
        self._group_in_hierarchy(timepoint_id, timepoint.date, (segmentation_node, reference_node))
        self._watch(timepoint_id, segmentation_node)
        baseline = self.timeline.baseline.id
        unaligned = [tp.id for tp in self.timeline.timepoints if tp.id != baseline and tp.id not in self.alignments]
        if align and unaligned:
            for visit in unaligned:  # update() runs once, after the last
                self.align(visit, update=visit == unaligned[-1])
        else:
            self.update()
        return timepoint

    def _watch(self, timepoint_id: str, segmentation_node) -> None:
        import slicer

        tag = segmentation_node.AddObserver(slicer.vtkSegmentation.SegmentModified,
                                            lambda caller, event, tid=timepoint_id: self.remeasure(tid))
        self._observers.append((segmentation_node, tag))

    def _group_in_hierarchy(self, timepoint_id: str, date, nodes) -> None:
        import slicer

        hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(self.scene)
        if hierarchy is None:
            return
        patient = hierarchy.GetItemChildWithName(hierarchy.GetSceneItemID(), self.timeline.patient_id)
        if not patient:
            patient = hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), self.timeline.patient_id)
        study = hierarchy.CreateStudyItem(patient, f"{timepoint_id} ({date.isoformat()})")
        hierarchy.SetItemAttribute(study, "DICOM.StudyDate", date.strftime("%Y%m%d"))
        for node in nodes:
            item = hierarchy.GetItemByDataNode(node)
            if item:
                hierarchy.SetItemParent(item, study)
            else:  # Slicer's GUI adds items for new nodes; without it (slicer-core) create them here
                hierarchy.CreateItem(study, node)

    def _measure(self, timepoint: Timepoint) -> None:
        """Measure a visit from its current segments, in its own space."""
        segmentation, reference = self.nodes[timepoint.id]
        labels = labels_from_segmentation(segmentation, reference, world=False)
        self._labels[timepoint.id] = labels
        timepoint.measurements = measure_labels(labels)
        timepoint.corrected = bool(edited_labels(segmentation, labels))

    def remeasure(self, timepoint_id: str) -> None:
        """Measure a visit again from its current segments (called when they are edited)."""
        self._measure(self.timeline.get(timepoint_id))
        self.update()

    def assess(self):
        """The follow-up assessment of the scene's visits (:func:`~TumorSegLib.longitudinal.assess_timeline`):
        lesions followed from the baseline through each visit's alignment, categories of both methods."""
        alignments = {self.timeline.baseline.id: Alignment(identity(), "baseline"), **self.alignments}
        return assess_timeline(self.timeline, self._labels, alignments, self.tolerance_mm)

    def update(self) -> list[dict]:
        """Recompute rows (change, nadir, followed lesions, categories) and refresh the table and chart."""
        if not self.timeline.timepoints:
            self.rows = []
        else:
            self.followup = self.assess()
            self.rows = timeline_rows(self.timeline, self.followup, self.alignments or None, primary=self.primary)
        fill_timeline_table(self.table, self.rows, self.tolerance_mm)
        if self.chart is None:
            self.chart = create_volume_chart(self.scene, self.table, self.timeline.patient_id)
        self.chart.Modified()
        return self.rows

    def align(self, timepoint_id: str, update: bool = True):
        """Register a visit's reference volume to the baseline's (the visit recipe,
        :func:`~TumorSegLib.longitudinal.register_visit`) and parent the visit's nodes to the resulting transform,
        so the visits show aligned; measurements stay native, and the visit's lesions are then checked for new
        ones. Returns the transform node."""
        baseline_id = self.timeline.baseline.id
        _, fixed = self.nodes[baseline_id]
        segmentation, moving = self.nodes[timepoint_id]
        # Native grids: a visit aligned before must not be registered through its earlier transform.
        result = register_visit(volume_from_node(fixed, world=False), volume_from_node(moving, world=False))
        method = f"rigid, MI {result.metric_value:.3f}"
        node = transform_node_from_sitk(self.scene, result.transform, f"{timepoint_id} to {baseline_id}")
        node.SetAttribute(ALIGNMENT_ATTRIBUTE, method)
        node.SetAttribute(ALIGNED_TO_ATTRIBUTE, baseline_id)
        if fixed.GetTransformNodeID():  # the baseline is shown moved: follow it
            node.SetAndObserveTransformNodeID(fixed.GetTransformNodeID())
        previous = moving.GetParentTransformNode()
        for data_node in (segmentation, moving):
            data_node.SetAndObserveTransformNodeID(node.GetID())
        if previous is not None and previous.GetAttribute(ALIGNMENT_ATTRIBUTE):
            self.scene.RemoveNode(previous)  # this visit's earlier alignment
        self.alignments[timepoint_id] = Alignment(result.transform, method)
        if update:
            self.update()
        return node

    def export(self, csv_path, png_path) -> tuple:
        """The table as CSV and the volume plot as PNG (same content as ``tumorseg track``)."""
        return write_table_csv(self.rows, csv_path), plot_volumes(self.rows, png_path, self.timeline.patient_id)

    def save(self, path):
        """The timeline as its versioned JSON file (segmentations exported beside it as NRRD label maps)."""
        folder = Path(path).parent
        for timepoint in self.timeline.timepoints:
            if timepoint.id not in self.nodes:  # its nodes were deleted from the scene
                continue
            segmentation, reference = self.nodes[timepoint.id]
            timepoint.segmentation = export_segmentation(segmentation, reference, folder / f"{timepoint.id}_seg.nrrd",
                                                         world=False)  # native: measured in the visit's own space
            timepoint.label_convention = "brats2018"
        return self.timeline.save(path)

    def store(self, parameter_node) -> None:
        """Keep the tracker in a scripted module node (saved with the scene): timeline JSON and node
        references ``TumorSeg.visit.<id>.segmentation`` / ``.reference``, plus table and chart."""
        parameter_node.SetParameter(_TIMELINE_PARAMETER, json.dumps(
            {**self.timeline.to_dict(include_measurements=False), "primary": self.primary}))
        for timepoint_id, (segmentation, reference) in self.nodes.items():
            parameter_node.SetNodeReferenceID(_visit_reference(timepoint_id, "segmentation"), segmentation.GetID())
            parameter_node.SetNodeReferenceID(_visit_reference(timepoint_id, "reference"), reference.GetID())
        parameter_node.SetNodeReferenceID(_TABLE_REFERENCE, self.table.GetID())
        if self.chart is not None:
            parameter_node.SetNodeReferenceID(_CHART_REFERENCE, self.chart.GetID())

    def is_stored_in(self, parameter_node) -> bool:
        """Whether this tracker is the one ``parameter_node`` keeps (same table node, still in the scene):
        after a scene is closed and loaded again, the table is a new node even where its ID is reused."""
        table = parameter_node.GetNodeReference(_TABLE_REFERENCE) if parameter_node else None
        return table is not None and table is self.table and self.table.GetScene() is not None

    @classmethod
    def restore(cls, parameter_node) -> LongitudinalTracker | None:
        """The tracker :meth:`store` kept (e.g. after loading a scene), re-measured, re-aligned from its
        transform nodes and watching edits again. Visits whose nodes were deleted are not evaluable."""
        text = parameter_node.GetParameter(_TIMELINE_PARAMETER)
        if not text:
            return None
        data = json.loads(text)
        primary = data.pop("primary", "bidimensional")
        tracker = cls(parameter_node.GetScene(), data.get("patient_id") or "Patient", primary,
                      table=parameter_node.GetNodeReference(_TABLE_REFERENCE),
                      chart=parameter_node.GetNodeReference(_CHART_REFERENCE))
        tracker.timeline = Timeline.from_dict(data)
        for timepoint in tracker.timeline.timepoints:
            tracker._reattach(parameter_node, timepoint)
        if parameter_node.GetNodeReference(_TABLE_REFERENCE) is None:  # deleted: __init__ made a new one
            parameter_node.SetNodeReferenceID(_TABLE_REFERENCE, tracker.table.GetID())
        tracker.update()
        return tracker

    def _reattach(self, parameter_node, timepoint: Timepoint) -> None:
        """Find a restored visit's nodes, measure it (edits made after store() count), and take its alignment
        back from its transform node when that aligns it on the current baseline."""
        segmentation = parameter_node.GetNodeReference(_visit_reference(timepoint.id, "segmentation"))
        reference = parameter_node.GetNodeReference(_visit_reference(timepoint.id, "reference"))
        if segmentation is None or reference is None:
            timepoint.measurements = None
            return
        self.nodes[timepoint.id] = (segmentation, reference)
        self._measure(timepoint)
        baseline_id = self.timeline.baseline.id
        transform = reference.GetParentTransformNode()
        if (timepoint.id != baseline_id and transform is not None and transform.GetAttribute(ALIGNMENT_ATTRIBUTE)
                and transform.GetAttribute(ALIGNED_TO_ATTRIBUTE) == baseline_id):
            self.alignments[timepoint.id] = Alignment(sitk_from_transform_node(transform),
                                                      transform.GetAttribute(ALIGNMENT_ATTRIBUTE))
        self._watch(timepoint.id, segmentation)

    def stop(self) -> None:
        """Stop following edits (before the scene closes, or when the tracker is replaced)."""
        for node, tag in self._observers:
            node.RemoveObserver(tag)
        self._observers.clear()


def _not_assessed(segmentation_node, volumes_ml: dict) -> dict[str, str]:
    """What the visit's AI run could not show, with why, and enhancing tumour it left unreported (too little in
    all) unless a reader has since drawn enhancing tumour on the node."""
    unseen = why_not_assessed(ai_not_assessed(segmentation_node))
    unreported_ml = float(segmentation_node.GetAttribute(UNREPORTED_ENHANCEMENT_ATTRIBUTE) or 0.0)
    return still_unassessed_why({**unreported_enhancement(unreported_ml), **unseen},
                                ["ET"] if volumes_ml.get("ET") else [])
